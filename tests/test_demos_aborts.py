"""Tests for tcpref.demos.aborts: each scenario, with exact states, on the live kernel."""

from __future__ import annotations

import socket
import sys

import pytest

from tcpref import kernel
from tcpref.demos import aborts
from tcpref.kernel import Connection

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/net/tcp and Linux socket options"
)


@linux_only
def test_half_close_peer_reads_eof_and_still_replies() -> None:
    seen = aborts.half_close(b"2 + 2", b"4")
    assert seen.server_read == (b"2 + 2", b"")
    assert (seen.client_state, seen.server_state) == ("FIN_WAIT2", "CLOSE_WAIT")
    assert seen.reply == b"4"
    assert seen.client_send == "EPIPE"
    assert seen.client_read_after_server_close == b""
    assert seen.client_state_at_end == "TIME_WAIT"


@linux_only
def test_shutdown_read_sends_nothing_and_still_queues_late_data() -> None:
    seen = aborts.shutdown_read(b"late data")
    assert seen == aborts.ShutdownRead(
        first_read=b"",
        client_state="ESTABLISHED",
        server_state="ESTABLISHED",
        server_send=9,
        queued=9,
        late_read=b"late data",
        read_when_empty=b"",
        client_send=5,
        server_read_at_close="ECONNRESET",
    )


@linux_only
def test_shutdown_both_sends_fin_and_stops_both_directions() -> None:
    assert aborts.shutdown_both() == aborts.ShutdownBoth(
        b"", b"", "FIN_WAIT2", "CLOSE_WAIT", "EPIPE"
    )


@linux_only
def test_close_shared_sends_no_fin_while_child_holds_descriptor() -> None:
    assert aborts.close_shared("close") == aborts.SharedClose(
        "close", None, "ESTABLISHED", "ESTABLISHED", b"", "FIN_WAIT2", 0
    )


@linux_only
def test_close_shared_shutdown_sends_fin_at_once() -> None:
    assert aborts.close_shared("shutdown") == aborts.SharedClose(
        "shutdown", b"", "FIN_WAIT2", "CLOSE_WAIT", b"", "FIN_WAIT2", 0
    )


def test_close_shared_rejects_unknown_way() -> None:
    with pytest.raises(ValueError, match="'drop'"):
        aborts.close_shared("drop")


@linux_only
def test_reset_orderly_close_leaves_time_wait() -> None:
    assert aborts.reset("orderly") == aborts.Reset(
        "orderly",
        ("ESTABLISHED", "ESTABLISHED"),
        ("FIN_WAIT2", "CLOSE_WAIT"),
        b"",
        None,
        ("TIME_WAIT",),
    )


@linux_only
@pytest.mark.parametrize("how", ["unread data", "linger 0"])
def test_reset_leaves_no_socket_behind(how: str) -> None:
    assert aborts.reset(how) == aborts.Reset(
        how, ("ESTABLISHED", "ESTABLISHED"), (None, None), "ECONNRESET", "EPIPE", ()
    )


def test_reset_rejects_unknown_way() -> None:
    with pytest.raises(ValueError, match="'abort'"):
        aborts.reset("abort")


@linux_only
def test_connect_refused_leaves_nothing_listed() -> None:
    assert aborts.connect_refused() == aborts.Refused("ECONNREFUSED", ())


@linux_only
def test_connect_refused_ignores_an_earlier_connections_time_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI once saw bind(0) hand out a port that an earlier connection's TIME_WAIT still
    # named as its remote port.  Such a line is listed for the port, but is not ours.
    real_connections = kernel.connections

    def with_a_leftover(port: int) -> list[Connection]:
        leftover = Connection(
            socket.AF_INET, ("127.0.0.1", 45678), ("127.0.0.1", port), "TIME_WAIT",
            0, 0, "time_wait", 100, 0, 0, 0, 0,
        )  # fmt: skip
        return [*real_connections(port), leftover]

    monkeypatch.setattr(aborts, "connections", with_a_leftover)
    assert aborts.connect_refused() == aborts.Refused("ECONNREFUSED", ())


@linux_only
def test_kill_holder_kernel_sends_fin() -> None:
    assert aborts.kill_holder() == aborts.KilledProcess(
        0, ("ESTABLISHED", "ESTABLISHED"), "SIGKILL", b"", ("FIN_WAIT2", "CLOSE_WAIT"), True
    )


@linux_only
def test_kill_holder_with_unread_data_resets() -> None:
    assert aborts.kill_holder(b"unread") == aborts.KilledProcess(
        6, ("ESTABLISHED", "ESTABLISHED"), "SIGKILL", "ECONNRESET", (None, None), None
    )


def test_keepalive_detection_time_adds_probing_to_idle() -> None:
    assert aborts.keepalive_detection_time(7200, 75, 9) == 7875
    assert aborts.keepalive_detection_time(10, 2, 3) == 16


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0, 75, 9), ValueError, "idle must be >= 1, not 0"),
        ((7200, 75, True), TypeError, "count must be an int, not True"),
        ((7200, 1.5, 9), TypeError, "interval must be an int, not 1.5"),
    ],
)
def test_keepalive_detection_time_rejects_bad_values(
    args: tuple[int, int, int], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        aborts.keepalive_detection_time(*args)


@linux_only
def test_keepalive_settings_read_back_and_arm_the_timer() -> None:
    seen = aborts.keepalive_settings(10, 2, 3)
    assert seen.inherited == (0, *seen.sysctl)
    assert seen.chosen == (1, 10, 2, 3)
    assert (seen.timer_before, seen.timer_after) == ("none", "keepalive")
    assert seen.detection_chosen == 16
    assert seen.detection_default == seen.sysctl[0] + seen.sysctl[1] * seen.sysctl[2]


def test_keepalive_settings_rejects_out_of_range_count() -> None:
    with pytest.raises(ValueError, match="count must be in range 1-127, not 128"):
        aborts.keepalive_settings(10, 2, 128)


@linux_only
def test_user_timeout_ends_a_stalled_connection_silently() -> None:
    seen = aborts.user_timeout(200)
    assert seen.timer_while_stalled == "zero_window_probe"
    assert seen.error == "ETIMEDOUT"
    assert 0.2 <= seen.seconds < 3
    assert (seen.sender_state, seen.receiver_state) == (None, "ESTABLISHED")


@pytest.mark.parametrize(
    ("value", "error"), [(99, ValueError), (3001, ValueError), ("1", TypeError)]
)
def test_user_timeout_rejects_bad_timeout(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="milliseconds must be"):
        aborts.user_timeout(value)  # type: ignore[arg-type]
