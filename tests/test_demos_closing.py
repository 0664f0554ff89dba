"""tcpref.demos.closing: every teardown scenario, with the exact states the kernel reports."""

from __future__ import annotations

import sys

import pytest

from tcpref.demos import closing
from tcpref.demos.closing import (
    Step,
    close_wait_pile,
    fin_timeout_experiment,
    hold_fin_wait1,
    hold_last_ack,
    max_connection_rate,
    restart_after_time_wait,
    reuseport_listeners,
    simultaneous_close,
    teardown,
    teardown_segments,
    time_wait_timer,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads Linux's /proc/net/tcp"
)
# Capturing (CAP_NET_RAW) and setting tcp_fin_timeout (CAP_NET_ADMIN over the network
# namespace): any user may do both in a private network namespace.
in_netns = pytest.mark.netns


@linux_only
def test_teardown_client_first_passes_fin_wait2_and_ends_in_time_wait() -> None:
    trace = teardown("client")
    assert trace.client_states == ("ESTABLISHED", "FIN_WAIT2", "FIN_WAIT2", "TIME_WAIT")
    assert trace.server_states == ("ESTABLISHED", "CLOSE_WAIT", "CLOSE_WAIT", "CLOSED")


@linux_only
def test_teardown_server_first_puts_time_wait_on_the_server() -> None:
    trace = teardown("server")
    assert trace.server_states == ("ESTABLISHED", "FIN_WAIT2", "FIN_WAIT2", "TIME_WAIT")
    assert trace.client_states == ("ESTABLISHED", "CLOSE_WAIT", "CLOSE_WAIT", "CLOSED")


def test_teardown_rejects_an_unknown_side() -> None:
    with pytest.raises(ValueError, match="first must be 'client' or 'server', not 'peer'"):
        teardown("peer")  # type: ignore[arg-type]


@linux_only
def test_hold_fin_wait1_holds_until_the_server_reads() -> None:
    trace = hold_fin_wait1()
    assert trace.client_states == (
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
    )
    assert trace.server_states[-3:] == ("ESTABLISHED", "CLOSE_WAIT", "CLOSED")


@linux_only
def test_hold_last_ack_holds_until_the_client_reads() -> None:
    trace = hold_last_ack()
    assert trace.server_states == (
        "ESTABLISHED",
        "CLOSE_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LAST_ACK",
        "CLOSED",
    )
    assert trace.client_states[-1] == "TIME_WAIT"


@linux_only
def test_simultaneous_close_passes_closing_and_leaves_both_in_time_wait() -> None:
    trace = simultaneous_close()
    assert trace.client_states == (
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT1",
        "CLOSING",
        "TIME_WAIT",
    )
    assert trace.server_states == (
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
    )


def test_trace_prints_one_row_per_step() -> None:
    trace = closing.Trace((Step("connected", "ESTABLISHED", "ESTABLISHED"),))
    assert str(trace).splitlines()[1].split() == ["connected", "ESTABLISHED", "ESTABLISHED"]


@linux_only
@pytest.mark.parametrize("first", ["client", "server"])
def test_time_wait_timer_is_sixty_seconds(first: closing.Side) -> None:
    reading = time_wait_timer(first)
    assert (reading.state, reading.timer) == ("TIME_WAIT", "time_wait")
    assert 59.0 <= reading.seconds <= 60.0


@in_netns
def test_fin_timeout_sets_the_fin_wait2_timer_but_not_time_wait() -> None:
    with open("/proc/sys/net/ipv4/tcp_fin_timeout") as setting:
        before = setting.read()
    result = fin_timeout_experiment(5)
    assert result.fin_timeout == 5
    assert result.fin_wait2.state == "FIN_WAIT2"
    assert 4.0 <= result.fin_wait2.seconds <= 5.0
    assert 59.0 <= result.time_wait.seconds <= 60.0
    # The machine's own setting is untouched: the change lived in a namespace.
    with open("/proc/sys/net/ipv4/tcp_fin_timeout") as setting:
        assert setting.read() == before


@pytest.mark.parametrize("bad", [0, 60, -1])
def test_fin_timeout_experiment_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match=f"fin_timeout must be in range 1-59, not {bad}"):
        fin_timeout_experiment(bad)


def test_fin_timeout_experiment_rejects_a_non_int() -> None:
    with pytest.raises(TypeError, match="fin_timeout must be an int"):
        fin_timeout_experiment(5.0)  # type: ignore[arg-type]


def test_max_connection_rate_divides_ports_by_time_wait() -> None:
    assert max_connection_rate((32768, 60999)) == 28232 / 60
    assert max_connection_rate((1024, 65535), 30) == 64512 / 30


@pytest.mark.parametrize("bad", [(2000, 1000), (0, 10), (1, 65536)])
def test_max_connection_rate_rejects_bad_ranges(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="port_range must be"):
        max_connection_rate(bad)


@linux_only
@pytest.mark.parametrize(("reuseaddr", "outcome"), [(False, "EADDRINUSE"), (True, "listening")])
def test_restart_after_time_wait(reuseaddr: bool, outcome: str) -> None:
    restart = restart_after_time_wait(reuseaddr)
    assert restart.states_before == ("TIME_WAIT",)
    assert restart.outcome == outcome


@linux_only
def test_reuseport_listeners_share_the_connections() -> None:
    result = reuseport_listeners(listeners=2, clients=20)
    assert result.states == ("LISTEN", "LISTEN")
    assert sum(result.accepted) == 20


@linux_only
def test_close_wait_piles_up_when_the_server_never_closes() -> None:
    pile = close_wait_pile(5, server_closes=False)
    assert pile.server == {"CLOSE_WAIT": 5}
    assert pile.client == {"FIN_WAIT2": 5}


@linux_only
def test_close_wait_pile_is_gone_when_the_server_closes_on_eof() -> None:
    pile = close_wait_pile(5, server_closes=True)
    assert pile.server == {}
    assert pile.client == {"TIME_WAIT": 5}


def test_close_wait_pile_rejects_a_bad_count() -> None:
    with pytest.raises(ValueError, match="clients must be in range 1-50, not 0"):
        close_wait_pile(0)


@in_netns
def test_teardown_shrinks_to_three_segments_when_the_server_closes_at_once() -> None:
    flags = [(s.sender, s.flags) for s in teardown_segments(wait_for_ack=False)]
    assert flags == [("client", "FIN+ACK"), ("server", "FIN+ACK"), ("client", "ACK")]


@in_netns
def test_teardown_takes_four_segments_when_the_ack_leaves_first() -> None:
    flags = [(s.sender, s.flags) for s in teardown_segments(wait_for_ack=True)]
    assert flags == [
        ("client", "FIN+ACK"),
        ("server", "ACK"),
        ("server", "FIN+ACK"),
        ("client", "ACK"),
    ]
