"""The opening scenarios of tcpref.demos.opening, each asserted exactly on the live kernel."""

from __future__ import annotations

import sys

import pytest

from tcpref.demos import opening

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the demos read Linux's /proc and TCP_INFO"
)
# Capturing needs CAP_NET_RAW and the RST filter CAP_NET_ADMIN: any user has both in a
# private network namespace (tests/conftest.py skips, saying why, where none can be made).
in_netns = pytest.mark.netns


def test_handshake_completes_both_sides_before_accept() -> None:
    seen = opening.handshake()
    assert (seen.client_before, seen.listener_state) == ("CLOSE", "LISTEN")
    assert (seen.client_after, seen.server_after) == ("ESTABLISHED", "ESTABLISHED")
    assert (seen.server_inode, seen.accept_queue) == (0, 1)
    assert (seen.accepted_state, seen.accept_queue_after) == ("ESTABLISHED", 0)
    assert seen.inode_is_accepted_socket


def test_syn_sent_is_held_by_a_full_accept_queue() -> None:
    seen = opening.syn_sent()
    assert seen == opening.SynSent(
        backlog=0,
        queued=1,
        connect_result="EINPROGRESS",
        client_state="SYN_SENT",
        server_side=None,
        retransmits=0,
    )


@pytest.mark.parametrize("n", [0, 1, 4])
def test_backlog_completes_n_plus_one_handshakes(n: int) -> None:
    seen = opening.backlog(n)
    assert seen == opening.Backlog(
        backlog=n,
        completed=n + 1,
        accept_queue=n + 1,
        unacked=n + 1,
        limit=n,
        next_state="SYN_SENT",
        next_error="0",
        next_server_side=None,
    )


def test_backlog_rejects_a_negative_backlog() -> None:
    with pytest.raises(ValueError, match="n must be an int in range 0-62, not -1"):
        opening.backlog(-1)


def test_backlog_cap_is_somaxconn() -> None:
    seen = opening.backlog_cap(10**6)
    assert seen.granted == min(seen.requested, seen.somaxconn) == seen.somaxconn


def test_syn_queue_holds_a_deferred_request() -> None:
    assert opening.syn_queue() == opening.SynQueue(
        client_state="ESTABLISHED",
        request_state="SYN_RECV",
        request_inode=0,
        syn_queue=1,
        accept_queue=0,
        after_data_state="ESTABLISHED",
        accept_queue_after=1,
        received=b"hello",
    )


def test_self_connect_is_established_with_itself() -> None:
    assert opening.self_connect() == opening.SelfConnect(
        state="ESTABLISHED", peer_is_self=True, table_entries=1, echoed=b"hello, me"
    )


@in_netns
def test_simultaneous_open_needs_no_listener() -> None:
    seen = opening.simultaneous_open()
    assert (seen.first_connect, seen.first_state, seen.second_connect) == (
        "EINPROGRESS",
        "SYN_SENT",
        "EINPROGRESS",
    )
    assert seen.states == ("ESTABLISHED", "ESTABLISHED")
    assert (seen.errors, seen.listeners, seen.segments) == (("0", "0"), 0, None)


@in_netns
def test_simultaneous_open_segments_on_the_wire() -> None:
    seen = opening.simultaneous_open(capture=True)
    assert seen.segments == ("a>b SYN", "b>a RST+ACK", "b>a SYN", "a>b SYN+ACK", "b>a ACK")


@in_netns
def test_handshake_segments_third_is_x_plus_one_y_plus_one() -> None:
    seen = opening.handshake_segments()
    relative = [(s.sender, s.flags, s.relative_seq, s.relative_ack) for s in seen.segments]
    assert relative == [
        ("client", "SYN", 0, None),
        ("server", "SYN+ACK", 0, 1),
        ("client", "ACK", 1, 1),
    ]
    third = seen.segments[2]
    assert (third.seq, third.ack) == ((seen.client_isn + 1) % 2**32, (seen.server_isn + 1) % 2**32)


def _close_to(measured: tuple[float, ...], computed: tuple[float, ...]) -> bool:
    return len(measured) == len(computed) and all(
        abs(m - c) < 0.3 for m, c in zip(measured, computed, strict=True)
    )


@pytest.mark.parametrize("capture", [pytest.param(True, marks=in_netns), False])
def test_syn_retransmissions_follow_the_computed_schedule(capture: bool) -> None:
    seen = opening.syn_retransmissions(1, capture=capture)
    assert seen.error == "ETIMEDOUT"
    assert _close_to(seen.measured, seen.computed.retransmissions)
    assert abs(seen.failed_after - seen.computed.gives_up_at) < 0.3
    if capture:
        assert seen.captured is not None
        assert _close_to(seen.captured, seen.computed.retransmissions)
    else:
        assert seen.captured is None
