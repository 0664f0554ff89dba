"""Failures that need a misbehaving peer, staged with a TUN device (:mod:`tcpref.peer`).

Each function runs one experiment inside a private network namespace of its own
(:func:`tcpref.netns.run`, so any user may), with the kernel on one side and a
:class:`tcpref.peer.TunPeer`, played in Python, on the other:

* :func:`vanished_peer`: the peer completes the handshake and then says nothing
  ever again, as a host that lost power would.  With keepalive on, the kernel
  probes, gets no answer, and ends the connection with ETIMEDOUT.
* :func:`unacknowledged_fin`: the kernel's application closes; the peer never
  acknowledges the FIN, and the kernel retransmits it until it gives up.
* :func:`old_duplicate_syn`: an old SYN reaches a listener, as in RFC 9293
  Figure 8: the peer answers the listener's SYN+ACK with RST, and then connects
  for real.  A SYN that reaches an established connection gets a challenge ACK
  (RFC 5961 Section 4).

Times are measured from the segment that started the wait, when the peer read it.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tcpref import netns
from tcpref.kernel import connections, state_of
from tcpref.peer import KERNEL_ADDRESS, PEER_ADDRESS, Received, TunPeer
from tcpref.segment import Flags, Segment

__all__ = [
    "OldDuplicateSyn",
    "UnacknowledgedFin",
    "VanishedPeer",
    "old_duplicate_syn",
    "unacknowledged_fin",
    "vanished_peer",
]

_PEER_PORT = 80
_PEER_ISN = 5000
_TIMEOUT = 5.0


def _flags(segment: Segment) -> str:
    return "|".join(flag.name or "" for flag in Flags if flag in segment.flags)


def _errno_name(code: int | None) -> str | None:
    return None if code is None else errno.errorcode.get(code, str(code))


def _listen_while(peer: TunPeer, work: threading.Thread, seconds: float) -> None:
    """Read what the kernel sends to the peer until ``work`` ends (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    # Ends: each pass waits at most 0.05 s, and the deadline bounds them all.
    while work.is_alive() and time.monotonic() < deadline:
        peer.receive(0.05)
    work.join(max(deadline - time.monotonic(), 0.1))
    # Ends: a few passes, until the device has nothing more to read.
    while peer.receive(0.1) is not None:
        pass


def _connect_to_peer(peer: TunPeer, sock: socket.socket) -> tuple[Received, Received]:
    """Let ``sock`` connect to the peer, which answers the handshake; return SYN and ACK."""
    sock.setblocking(False)
    sock.connect_ex((PEER_ADDRESS, _PEER_PORT))
    syn = peer.expect(Flags.SYN, _TIMEOUT)
    ack = peer.answer_handshake(syn, _PEER_ISN)
    sock.setblocking(True)
    return syn, ack


def _in_thread(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, name="kernel-side")
    thread.start()
    return thread


# == A peer that vanishes: keepalive ====================================================


@dataclass(frozen=True)
class VanishedPeer:
    """What the kernel did once its peer went silent, with keepalive on.

    Attributes:
        settings: ``(TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)`` as set.
        probes: When each probe was sent, in seconds after the handshake's ACK.
        probe_seq: Each probe's sequence number, relative to the kernel's ISN:
            0, one before the next byte, so that a live peer must answer it.
        error: The errno symbol the blocked ``recv`` ended with.
        last: The flags of the last segment, sent as the kernel gave up.
        computed: When the probes are due: idle, then every interval.
        gives_up_at: When the kernel is due to give up: idle + count * interval.
    """

    settings: tuple[int, int, int]
    probes: tuple[float, ...]
    probe_seq: tuple[int, ...]
    error: str | None
    last: str
    computed: tuple[float, ...]
    gives_up_at: float


def vanished_peer(idle: int = 1, interval: int = 1, count: int = 3) -> VanishedPeer:
    """Connect to a peer that then goes silent, with keepalive on, and watch.

    Raises:
        ValueError: if a setting is below 1 or above 60 (keep the run short).
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if the peer never sees the kernel's SYN.
    """
    for name, value in (("idle", idle), ("interval", interval), ("count", count)):
        if not (isinstance(value, int) and 1 <= value <= 60):
            raise ValueError(f"{name} must be a whole number of 1 to 60, not {value!r}")
    limit = idle + count * interval + 10.0
    return netns.run(_vanished_peer, idle, interval, count, timeout=limit + 10)


def _vanished_peer(idle: int, interval: int, count: int) -> VanishedPeer:
    outcome: dict[str, int | None] = {}
    with TunPeer() as peer, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        syn, ack = _connect_to_peer(peer, sock)
        limit = idle + count * interval + 10.0
        sock.settimeout(limit)

        def wait_for_data() -> None:
            try:
                sock.recv(100)
                outcome["errno"] = None
            except OSError as exc:
                outcome["errno"] = exc.errno

        _listen_while(peer, _in_thread(wait_for_data), limit)
    after = [r for r in peer.received if r.time > ack.time]
    probes = [r for r in after if r.segment.flags == Flags.ACK and not r.segment.payload]
    return VanishedPeer(
        settings=(idle, interval, count),
        probes=tuple(round(r.time - ack.time, 3) for r in probes),
        probe_seq=tuple((r.segment.seq - syn.segment.seq) % 2**32 for r in probes),
        error=_errno_name(outcome.get("errno")),
        last=_flags(after[-1].segment) if after else "",
        computed=tuple(float(idle + k * interval) for k in range(count)),
        gives_up_at=float(idle + count * interval),
    )


# == A peer that never acknowledges the FIN ==============================================


@dataclass(frozen=True)
class UnacknowledgedFin:
    """An orphan's FIN, retransmitted until the kernel gives up.

    Attributes:
        orphan_retries: ``tcp_orphan_retries`` as set in the namespace.
        fins: When each FIN was sent, in seconds after the first.
        states: The orphan's state in /proc after the first FIN, and at the end
            (``None``: gone from the table).
        last: The flags of the last segment the kernel sent.
    """

    orphan_retries: int
    fins: tuple[float, ...]
    states: tuple[str | None, str | None]
    last: str


def unacknowledged_fin(orphan_retries: int = 2) -> UnacknowledgedFin:
    """Close a connection whose peer never acknowledges the FIN, and count the FINs.

    The namespace's ``tcp_orphan_retries`` is set to ``orphan_retries`` (0 would
    mean 8, as in the kernel).

    Raises:
        ValueError: if ``orphan_retries`` is not 1 to 4 (keep the run short).
        NamespaceUnavailableError: if no namespace can be made here.
    """
    if not (isinstance(orphan_retries, int) and 1 <= orphan_retries <= 4):
        raise ValueError(f"orphan_retries must be 1 to 4 here, not {orphan_retries!r}")
    return netns.run(_unacknowledged_fin, orphan_retries, timeout=60)


def _unacknowledged_fin(orphan_retries: int) -> UnacknowledgedFin:
    with open("/proc/sys/net/ipv4/tcp_orphan_retries", "w") as setting:
        setting.write(str(orphan_retries))
    with TunPeer() as peer:
        sock = socket.socket()
        try:
            _connect_to_peer(peer, sock)
            local = sock.getsockname()
        finally:
            sock.close()  # the application is gone: the connection is an orphan
        first = peer.expect(Flags.FIN | Flags.ACK, _TIMEOUT)
        state_after_first = state_of(local, (PEER_ADDRESS, _PEER_PORT))
        deadline = time.monotonic() + 40
        # Ends: at the deadline, or once the orphan has left the table.
        while time.monotonic() < deadline and _orphan_remains(local):
            peer.receive(0.1)
        while peer.receive(0.3) is not None:
            pass
        final = state_of(local, (PEER_ADDRESS, _PEER_PORT))
    fins = [r for r in peer.received if r.segment.flags == Flags.FIN | Flags.ACK]
    return UnacknowledgedFin(
        orphan_retries=orphan_retries,
        fins=tuple(round(r.time - first.time, 2) for r in fins),
        states=(state_after_first, final),
        last=_flags(peer.received[-1].segment),
    )


def _orphan_remains(local: tuple[str, int]) -> bool:
    return any(c.local == local for c in connections(local[1]))


# == An old duplicate SYN ================================================================


@dataclass(frozen=True)
class OldDuplicateSyn:
    """A listener meets an old SYN, then the real one; an established connection, a SYN.

    Attributes:
        exchange: The segments, as ``(sender, flags, relative seq, relative ack)``,
            numbers relative to the real SYN's and the listener's ISNs.
        listener_states: The listener's connection entries from the peer's port
            after the RST (none: the stale request is gone) and after the real
            handshake.
        challenge: The kernel's answer to a SYN on the established connection,
            as ``(flags, relative seq, relative ack)``: an ACK that says where the
            connection really is (RFC 5961 Section 4).
    """

    exchange: tuple[tuple[str, str, int, int], ...]
    listener_states: tuple[tuple[str, ...], tuple[str, ...]]
    challenge: tuple[str, int, int]


def old_duplicate_syn() -> OldDuplicateSyn:
    """Send a listener an old SYN, reset its answer, then connect; then send a SYN again.

    Raises:
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if an expected segment never comes (named in the message).
    """
    return netns.run(_old_duplicate_syn, timeout=60)


def _peer_segment(port: int, seq: int, ack: int, flags: Flags) -> Segment:
    return Segment(_PEER_PORT, port, seq=seq % 2**32, ack=ack % 2**32, flags=flags, window=65535)


def _old_duplicate_syn() -> OldDuplicateSyn:
    isn = 100  # the peer's real ISN; the old SYN's was 10 lower
    with TunPeer() as peer, socket.socket() as listener:
        listener.bind((KERNEL_ADDRESS, 0))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
        kernel = listener.getsockname()
        port = kernel[1]
        peer.send(_peer_segment(port, isn - 10, 0, Flags.SYN), kernel)
        stale = peer.expect(Flags.SYN | Flags.ACK, _TIMEOUT)
        # The peer's TCP never sent that SYN: the ACK is not for it, so it resets.
        peer.send(_peer_segment(port, stale.segment.ack, 0, Flags.RST), kernel)
        time.sleep(0.05)
        after_reset = _entries_from_peer(port)
        peer.send(_peer_segment(port, isn, 0, Flags.SYN), kernel)
        real = peer.expect(Flags.SYN | Flags.ACK, _TIMEOUT)
        server_isn = real.segment.seq
        peer.send(_peer_segment(port, isn + 1, server_isn + 1, Flags.ACK), kernel)
        accepted, _ = listener.accept()
        with accepted:
            after_handshake = _entries_from_peer(port)
            peer.send(_peer_segment(port, isn + 1000, 0, Flags.SYN), kernel)
            challenge = peer.expect(Flags.ACK, _TIMEOUT)
    sent = [
        ("peer", "SYN", -10, 0),
        ("kernel", "SYN|ACK", 0, _relative(stale.segment.ack, isn)),
        ("peer", "RST", _relative(stale.segment.ack, isn), 0),
        ("peer", "SYN", 0, 0),
        ("kernel", "SYN|ACK", 0, _relative(real.segment.ack, isn)),
        ("peer", "ACK", 1, 1),
    ]
    return OldDuplicateSyn(
        exchange=tuple(sent),
        listener_states=(after_reset, after_handshake),
        challenge=(
            _flags(challenge.segment),
            _relative(challenge.segment.seq, server_isn),
            _relative(challenge.segment.ack, isn),
        ),
    )


def _relative(number: int, isn: int) -> int:
    offset = (number - isn) % 2**32
    return offset - 2**32 if offset >= 2**31 else offset


def _entries_from_peer(port: int) -> tuple[str, ...]:
    with contextlib.suppress(OSError):
        return tuple(c.state for c in connections(port) if c.remote == (PEER_ADDRESS, _PEER_PORT))
    return ()
