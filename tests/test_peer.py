"""tcpref.peer and tcpref.demos.peers: a scripted peer behind a TUN device, and the
failures it stages (each compared, where the model has them, with the model)."""

from __future__ import annotations

import socket

import pytest

from tcpref import netns
from tcpref.demos import peers
from tcpref.peer import KERNEL_ADDRESS, PEER_ADDRESS, TunPeer, ipv4_packet
from tcpref.scenarios import client, run_scenario, server
from tcpref.segment import Flags, internet_checksum
from tcpref.sim import Drop, Limits, simulate

needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


def test_ipv4_packet_has_a_valid_header_around_the_segment() -> None:
    packet = ipv4_packet(PEER_ADDRESS, KERNEL_ADDRESS, b"\x01" * 20, ident=7)
    assert len(packet) == 40
    assert packet[:4] == bytes([0x45, 0, 0, 40])
    assert packet[6] & 0x40  # Don't Fragment
    assert (packet[8], packet[9]) == (64, 6)  # TTL, TCP
    assert packet[12:16] == socket.inet_aton(PEER_ADDRESS)
    assert internet_checksum(packet[:20]) == 0
    assert packet[20:] == b"\x01" * 20


def test_ipv4_packet_rejects_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="at most 65535"):
        ipv4_packet(PEER_ADDRESS, KERNEL_ADDRESS, b"x" * 65516)
    with pytest.raises(ValueError, match=r"src must be an IPv4 address, not '::1'"):
        ipv4_packet("::1", KERNEL_ADDRESS, b"")


def test_tun_peer_refuses_the_hosts_network() -> None:
    with pytest.raises(PermissionError, match="never on the host's network"):
        TunPeer()


@pytest.mark.netns
def test_tun_peer_answers_a_handshake_and_the_kernel_connects() -> None:
    with TunPeer() as peer, socket.socket() as sock:
        sock.setblocking(False)
        sock.connect_ex((PEER_ADDRESS, 80))
        syn = peer.expect(Flags.SYN, 5)
        assert (syn.src[0], syn.dst) == (KERNEL_ADDRESS, (PEER_ADDRESS, 80))
        ack = peer.answer_handshake(syn, 1000)
        assert ack.segment.ack == 1001
        sock.setblocking(True)
        assert sock.getpeername() == (PEER_ADDRESS, 80)


@pytest.mark.netns
def test_tun_peer_expect_says_what_it_waited_for() -> None:
    with TunPeer() as peer, pytest.raises(TimeoutError, match=r"0\.2 s for a FIN segment"):
        peer.expect(Flags.FIN, 0.2)


@needs_netns
def test_vanished_peer_is_probed_then_given_up_on() -> None:
    seen = peers.vanished_peer(idle=1, interval=1, count=3)
    assert seen.error == "ETIMEDOUT"
    assert seen.probe_seq == (0, 0, 0)  # one below the next byte: the peer must answer
    assert len(seen.probes) == 3
    for measured, due in zip(seen.probes, seen.computed, strict=True):
        assert abs(measured - due) < 0.15
    assert seen.last == "RST|ACK"


def test_vanished_peer_rejects_a_long_experiment() -> None:
    with pytest.raises(ValueError, match="idle must be a whole number of 1 to 60"):
        peers.vanished_peer(idle=600)


@needs_netns
def test_unacknowledged_fin_matches_the_models_time_budget() -> None:
    # tcp_orphan_retries=2 is a time budget, not a count: from a 200 ms timeout it
    # allows three retransmissions, in the kernel and in the model.
    seen = peers.unacknowledged_fin(orphan_retries=2)
    model = simulate(
        client(close_after=0.1),
        server(close_on_eof=None),
        faults=[Drop(1, sender="server", flags=Flags.ACK, count=None)],
        limits=Limits(orphan_retries=2),
    )
    fins = [e.time for e in model.segments("client") if e.segment.flags == Flags.FIN | Flags.ACK]
    computed = [round(t - fins[0], 2) for t in fins]
    assert len(seen.fins) == len(computed) == 4
    for measured, due in zip(seen.fins, computed, strict=True):
        assert abs(measured - due) <= 0.05 + 0.1 * due
    assert seen.states == ("FIN_WAIT1", None)


def test_unacknowledged_fin_rejects_a_long_experiment() -> None:
    with pytest.raises(ValueError, match="orphan_retries must be 1 to 4"):
        peers.unacknowledged_fin(0)


@needs_netns
def test_old_duplicate_syn_is_reset_as_in_the_models_stale_syn() -> None:
    seen = peers.old_duplicate_syn()
    assert seen.listener_states == ((), ("ESTABLISHED",))
    assert seen.challenge == ("ACK", 1, 1)
    # The model's stale-syn run: the old SYN, the listener's SYN+ACK for it, the RST.
    model = run_scenario("stale-syn")
    flags = [
        "|".join(f.name or "" for f in Flags if f in e.segment.flags)
        for e in model.trace
        if e.segment is not None
    ]
    assert [flag for _, flag, _, _ in seen.exchange[:3]] == flags[1:4]
    assert seen.exchange[1][3] == seen.exchange[2][2]  # the RST's seq is the SYN+ACK's ack
