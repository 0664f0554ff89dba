"""tcpref.demos.nagle: the write-write-read stall, each of its cures, and its traces."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tcpref.demos.nagle import (
    STALL,
    RoundTrips,
    ScenarioError,
    StalledRound,
    capture_stalled_round,
    corked_hold,
    pingpong_patterns,
    round_trips,
    socketserver_round_trips,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="TCP_CORK, TCP_QUICKACK and TCP_INFO are Linux's"
)
# Setting tcp_pingpong_thresh (CAP_NET_ADMIN over the namespace), capturing
# (CAP_NET_RAW) and counting delayed ACKs of one connection alone.
in_netns = pytest.mark.netns

# Far below the 40 ms of a stall, far above a loopback round trip.
FAST = 0.010


def test_round_trips_record_says_which_rounds_stalled_and_skips_the_warmup() -> None:
    run = RoundTrips(times=(0.0001, 0.041, 0.043, 0.0002), warmup=1, ato=40000, data_segments=8)
    assert run.stalled == (False, True, True, False)
    assert run.warm == (0.041, 0.043, 0.0002)
    assert run.median == 0.041


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rounds": 0}, "rounds must be an int in range 1-100, not 0"),
        ({"rounds": True}, "rounds must be an int in range 1-100, not True"),
        ({"rounds": 3, "warmup": 3}, "warmup must be an int in range 0-2, not 3"),
        ({"writes": "writev"}, "writes must be one of"),
        ({"quickack": "always"}, "quickack must be one of"),
    ],
)
def test_round_trips_rejects_arguments_out_of_range(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        round_trips(**arguments)


@linux_only
def test_round_trips_stall_on_every_warm_round_with_nagle_on() -> None:
    run = round_trips(4)
    assert run.stalled == (False, True, True, True)
    assert run.median > STALL
    # Each piece of each request left on its own; the server's ATO is TCP_ATO_MIN.
    assert (run.data_segments, run.ato) == (8, 40000)


@linux_only
def test_round_trips_nodelay_removes_the_stall_but_keeps_two_segments() -> None:
    run = round_trips(4, nodelay=True)
    assert not any(run.stalled)
    assert run.median < FAST
    assert run.data_segments == 8


@linux_only
@pytest.mark.parametrize("writes", ["one sendall", "sendmsg", "corked"])
def test_round_trips_whole_request_goes_in_one_segment_without_a_stall(writes: Any) -> None:
    run = round_trips(4, writes=writes)
    assert not any(run.stalled)
    assert run.data_segments == 4


@linux_only
def test_round_trips_quickack_after_every_read_removes_the_stall() -> None:
    run = round_trips(4, quickack="every read")
    assert not any(run.stalled)
    assert run.median < FAST


@linux_only
def test_round_trips_quickack_once_still_stalls() -> None:
    assert round_trips(3, quickack="once").stalled == (False, True, True)


@linux_only
def test_round_trips_server_nodelay_still_stalls() -> None:
    assert round_trips(3, server_nodelay=True).stalled == (False, True, True)


@linux_only
def test_socketserver_round_trips_stall_unless_nagle_is_disabled() -> None:
    stalled = socketserver_round_trips(3)
    cured = socketserver_round_trips(3, disable_nagle_algorithm=True)
    assert stalled.stalled == (False, True, True)
    assert not any(cured.stalled)
    # The client received both pieces of each answer apart, either way.
    assert (stalled.data_segments, cured.data_segments) == (6, 6)


def test_socketserver_round_trips_rejects_a_warmup_of_every_round() -> None:
    with pytest.raises(ValueError, match="warmup must be an int in range 0-1, not 2"):
        socketserver_round_trips(2, warmup=2)


@linux_only
def test_corked_hold_waits_for_the_probe_timer() -> None:
    hold = corked_hold()
    # The probe timer: the larger of the RTO and TCP_RTO_MIN, a few ticks late at most.
    wait = max(hold.rto, 0.2)
    assert wait - 0.01 < hold.held < wait + 0.15


def test_pingpong_patterns_refuses_to_run_on_the_host() -> None:
    with pytest.raises(ScenarioError, match=r"must run inside tcpref\.netns\.run\(\)"):
        pingpong_patterns()


def test_capture_stalled_round_refuses_to_run_on_the_host() -> None:
    with pytest.raises(ScenarioError, match=r"must run inside tcpref\.netns\.run\(\)"):
        capture_stalled_round()


@in_netns
def test_pingpong_patterns_follow_the_threshold_and_restore_it() -> None:
    with open("/proc/sys/net/ipv4/tcp_pingpong_thresh") as setting:
        before = setting.read()
    assert pingpong_patterns((1, 2, 3), rounds=5) == {1: ".SSSS", 2: "..S.S", 3: "...S."}
    with open("/proc/sys/net/ipv4/tcp_pingpong_thresh") as setting:
        assert setting.read() == before


@in_netns
def test_pingpong_patterns_rejects_a_threshold_out_of_range() -> None:
    with pytest.raises(ValueError, match="each threshold must be an int in range 1-10, not 0"):
        pingpong_patterns((0,))


@in_netns
def test_capture_stalled_round_shows_the_held_body_and_counts_delayed_acks() -> None:
    stalled = capture_stalled_round(2)
    assert [(sender, what) for sender, what, _ in stalled.rows] == [
        ("client", "b'head'"),
        ("server", "ACK of b'head'"),
        ("client", "b'body'"),
        ("server", "b'reply'"),
    ]
    gaps = [gap for _, _, gap in stalled.rows]
    assert gaps[1] > STALL  # the delayed ACK
    assert gaps[2] < FAST  # the body leaves as soon as the ACK arrives
    assert stalled.delayed_acks == 2


def test_stalled_round_outline_names_only_pauses() -> None:
    rows = (
        ("client", "b'head'", 0.0),
        ("server", "ACK of b'head'", 0.041),
        ("client", "b'body'", 0.00001),
        ("server", "b'reply'", 0.00008),
    )
    assert StalledRound(rows, 1, 1).outline().splitlines() == [
        "sender  segment           after the one before",
        "client  b'head'           -",
        "server  ACK of b'head'    a pause",
        "client  b'body'           no pause",
        "server  b'reply'          no pause",
    ]
