"""tcpref.demos.congestion: the arithmetic, the TCP_CONGESTION option, and the live runs."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpref import netns
from tcpref.capture import AddressedSegment
from tcpref.demos import congestion
from tcpref.errors import PermissionCallError, SocketCallError
from tcpref.kernel import TcpInfo, decode_tcp_info, tcp_info
from tcpref.segment import Flags, Segment

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's TCP")
needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


# == Arithmetic ==========================================================================


def test_rfc6928_window_bounds_bytes_not_segments() -> None:
    assert congestion.rfc6928_window(1460) == 14600
    assert congestion.rfc6928_window(536) == 5360
    # A large MSS gets max(2*MSS, 14600) bytes: two segments.
    assert congestion.rfc6928_window(8960) == 2 * 8960
    assert congestion.rfc6928_window(65483) // 65483 == 2


@pytest.mark.parametrize(
    ("mss", "error"), [(0, ValueError), (True, TypeError), ("1460", TypeError)]
)
def test_rfc6928_window_rejects_what_is_not_a_segment_size(mss: object, error: type) -> None:
    with pytest.raises(error, match="mss must"):
        congestion.rfc6928_window(mss)  # type: ignore[arg-type]


def test_reno_ssthresh_halves_with_a_floor_of_two() -> None:
    assert [congestion.reno_ssthresh(cwnd) for cwnd in (1, 3, 4, 67, 80)] == [2, 2, 2, 33, 40]


def test_cubic_ssthresh_keeps_seven_tenths_with_a_floor_of_two() -> None:
    assert [congestion.cubic_ssthresh(cwnd) for cwnd in (2, 20, 67, 100)] == [2, 14, 46, 70]
    with pytest.raises(ValueError, match="cwnd must be at least 1"):
        congestion.cubic_ssthresh(0)


# == The settings and the socket option ==================================================


def _canned(tmp_path: Path, default: str, available: str, allowed: str) -> str:
    folder = tmp_path / "sys" / "net" / "ipv4"
    folder.mkdir(parents=True)
    (folder / "tcp_congestion_control").write_text(default)
    (folder / "tcp_available_congestion_control").write_text(available)
    (folder / "tcp_allowed_congestion_control").write_text(allowed)
    return str(tmp_path)


def test_parse_names_splits_on_any_whitespace() -> None:
    assert congestion.parse_names("reno\tcubic  bbr\n") == ("reno", "cubic", "bbr")
    assert congestion.parse_names("") == ()
    with pytest.raises(TypeError, match="text must be a str"):
        congestion.parse_names(b"reno")  # type: ignore[arg-type]


def test_algorithms_reads_the_three_settings(tmp_path: Path) -> None:
    proc = _canned(tmp_path, "cubic\n", "reno cubic bbr\n", "reno cubic\n")
    assert congestion.algorithms(proc) == congestion.Algorithms(
        "cubic", ("reno", "cubic", "bbr"), ("reno", "cubic")
    )


def test_algorithms_rejects_a_default_that_is_not_one_name(tmp_path: Path) -> None:
    proc = _canned(tmp_path, "reno cubic\n", "reno cubic\n", "reno\n")
    with pytest.raises(ValueError, match="should hold one name"):
        congestion.algorithms(proc)


def test_algorithms_without_procfs_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        congestion.algorithms(str(tmp_path))


@linux_only
def test_algorithms_live_default_is_available_and_reno_is_allowed() -> None:
    live = congestion.algorithms()
    assert live.default in live.available
    assert "reno" in live.available
    assert "reno" in live.allowed


@linux_only
def test_congestion_of_a_new_socket_is_the_default() -> None:
    with socket.socket() as sock:
        assert congestion.congestion(sock) == congestion.algorithms().default


@linux_only
def test_set_congestion_switches_a_socket_to_reno() -> None:
    with socket.socket() as sock:
        congestion.set_congestion(sock, "reno")
        assert congestion.congestion(sock) == "reno"
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        assert raw == b"reno" + bytes(12)


@linux_only
def test_set_congestion_unknown_name_is_enoent_with_a_hint() -> None:
    with socket.socket() as sock, pytest.raises(SocketCallError) as caught:
        congestion.set_congestion(sock, "nosuch")
    error = caught.value
    assert isinstance(error, OSError)
    assert error.errno == errno.ENOENT
    assert error.call == "set_congestion"
    assert error.address is None
    assert str(error).startswith("set_congestion(): [Errno 2] ENOENT: No such file or directory.")
    assert "named 'nosuch'" in error.hint
    assert isinstance(error.__cause__, FileNotFoundError)


@linux_only
def test_set_congestion_names_the_peer_of_a_connected_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = pair
    with pytest.raises(SocketCallError) as caught:
        congestion.set_congestion(client, "nosuch")
    assert caught.value.address == client.getpeername()


class _Refusing(socket.socket):
    """A socket whose kernel refuses TCP_CONGESTION as it does without the privilege."""

    def setsockopt(self, *args: object) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


def test_set_congestion_eperm_is_a_permission_error_naming_the_allowed_list() -> None:
    with _Refusing() as sock, pytest.raises(PermissionCallError) as caught:
        congestion.set_congestion(sock, "cubic")
    assert isinstance(caught.value, PermissionError)
    assert "tcp_allowed_congestion_control" in caught.value.hint


@pytest.mark.parametrize(
    ("name", "error"),
    [("", ValueError), ("x" * 16, ValueError), ("rén", ValueError), (b"reno", TypeError)],
)
def test_set_congestion_rejects_impossible_names(name: object, error: type) -> None:
    with socket.socket() as sock, pytest.raises(error, match="name must"):
        congestion.set_congestion(sock, name)  # type: ignore[arg-type]


def test_set_congestion_rejects_what_is_not_a_tcp_socket() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        pytest.raises(ValueError, match="TCP socket"),
    ):
        congestion.set_congestion(udp, "reno")
    with pytest.raises(TypeError, match=r"socket\.socket"):
        congestion.congestion(3)  # type: ignore[arg-type]


@linux_only
def test_congestion_of_a_closed_socket_is_ebadf() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(SocketCallError) as caught:
        congestion.congestion(sock)
    assert caught.value.errno == errno.EBADF


# == Live runs ===========================================================================


@linux_only
def test_slow_start_grows_cwnd_from_the_initial_window() -> None:
    windows = congestion.slow_start((64 << 10, 8 << 20))
    assert [window.sent for window in windows] == [0, 64 << 10, (64 << 10) + (8 << 20)]
    assert windows[0].cwnd == congestion.INITIAL_WINDOW
    assert windows[1].cwnd == congestion.INITIAL_WINDOW  # two segments: never cwnd-limited
    assert windows[-1].cwnd > congestion.INITIAL_WINDOW
    assert {window.ssthresh for window in windows} == {congestion.INFINITE_SSTHRESH}


@linux_only
def test_slow_start_puts_the_processors_back() -> None:
    before = os.sched_getaffinity(0)
    congestion.slow_start((64 << 10,))
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize(
    ("amounts", "error"),
    [((), ValueError), ((0,), ValueError), ((65 << 20,), ValueError), ((1.5,), TypeError)],
)
def test_slow_start_rejects_bad_amounts(amounts: tuple[object, ...], error: type) -> None:
    with pytest.raises(error):
        congestion.slow_start(amounts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"algorithm": ""}, ValueError),
        ({"algorithm": 5}, TypeError),
        ({"warmup": 1000}, ValueError),
        ({"following": 0}, ValueError),
        ({"following": 17}, ValueError),
    ],
)
def test_fast_retransmit_rejects_bad_arguments(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        congestion.fast_retransmit(**kwargs)  # type: ignore[arg-type]


def _data(seq: int, flags: Flags, length: int) -> AddressedSegment:
    segment = Segment(src_port=40000, dst_port=80, seq=seq, ack=1, flags=flags, window=512)
    return AddressedSegment(("127.0.0.1", 40000), ("127.0.0.1", 80), segment, length)


def test_a_reaction_counts_the_copies_of_the_first_segment_and_what_followed() -> None:
    info = tcp_info_stub()
    seen = [
        (1.0, _data(100, Flags.PSH | Flags.ACK, 1000)),
        (1.2, _data(1100, Flags.ACK, 500)),
        (1.2, _data(1600, Flags.PSH | Flags.ACK, 500)),
        (1.5, _data(100, Flags.PSH | Flags.ACK, 1000)),
    ]
    reaction = congestion._reaction("reno", "fast retransmit", (info, None, info), {}, seen)
    assert (reaction.lost_flags, reaction.lost_length, reaction.copies) == ("PSH|ACK", 1000, 2)
    assert reaction.waits == (0.5,)
    assert reaction.following == ("ACK", "PSH|ACK")
    assert reaction.largest == 1000


def tcp_info_stub() -> TcpInfo:
    return decode_tcp_info(bytes([1, 0, 0, 0, 0, 0, 0, 0]) + bytes(96))


@needs_netns
def test_default_in_namespace_changes_new_sockets_there_only() -> None:
    host = congestion.algorithms().default
    seen = congestion.default_in_namespace("reno")
    assert (seen.after, seen.new_socket) == ("reno", "reno")
    assert seen.old_socket == seen.before
    assert congestion.algorithms().default == host


@needs_netns
@pytest.mark.parametrize(
    ("algorithm", "ssthresh"),
    [("reno", congestion.reno_ssthresh), ("cubic", congestion.cubic_ssthresh)],
)
def test_fast_retransmit_lowers_ssthresh_and_cwnd_to_it(
    algorithm: str, ssthresh: Callable[[int], int]
) -> None:
    if algorithm not in congestion.algorithms().available:
        pytest.skip(f"this kernel has no {algorithm}")
    reaction = congestion.fast_retransmit(algorithm)
    assert reaction.after.snd_ssthresh == ssthresh(reaction.before.snd_cwnd)
    assert reaction.after.snd_cwnd == reaction.after.snd_ssthresh < reaction.before.snd_cwnd
    assert reaction.counters["TCPSackRecovery"] == 1
    assert reaction.counters["TCPTimeouts"] == 0
    assert (reaction.lost_flags, reaction.copies) == ("PSH|ACK", 2)
    assert reaction.largest <= reaction.before.snd_mss


@needs_netns
def test_timeout_loss_falls_to_one_segment_and_starts_again() -> None:
    reaction = congestion.timeout_loss()
    during = reaction.during
    assert during is not None
    assert (during.ca_state, during.snd_cwnd) == ("Loss", 1)
    assert during.snd_ssthresh == congestion.reno_ssthresh(reaction.before.snd_cwnd)
    assert reaction.after.ca_state == "Open"
    assert reaction.after.snd_cwnd < reaction.after.snd_ssthresh  # slow start again
    assert reaction.counters["TCPTimeouts"] >= 1
    assert (
        reaction.copies == 1 + reaction.counters["TCPLossProbes"] + reaction.counters["TCPTimeouts"]
    )


@linux_only
def test_a_new_connection_starts_at_the_initial_window(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = pair
    info = tcp_info(client)
    assert (info.snd_cwnd, info.snd_ssthresh) == (
        congestion.INITIAL_WINDOW,
        congestion.INFINITE_SSTHRESH,
    )
