"""Window scaling, SACK and timestamps on the live kernel (RFC 7323, RFC 2018).

Three TCP options carry most of what a modern connection agrees in its handshake
besides the MSS: the window scale shift (RFC 7323 Section 2), permission to send
selective acknowledgments (RFC 2018) and timestamps (RFC 7323 Sections 3 to 5).
This module shows each of them on real sockets, inside a private network namespace
(:func:`tcpref.netns.run`), where any user may capture packets, attach socket
filters and change the namespace's own TCP sysctls without touching the host's:

* :func:`handshakes` captures a connection's first segments under chosen settings of
  ``tcp_window_scaling``, ``tcp_sack`` and ``tcp_timestamps``, with both ends'
  ``tcp_info``;
* :func:`sack_after_loss` loses one data segment with a
  :class:`tcpref.faults.LossInjector`, so that the next arrives out of order and
  the receiver's ACK carries a SACK block, then follows the retransmission;
* :func:`syn_ack_options` sends the kernel SYNs with chosen options from a scripted
  peer (:class:`tcpref.peer.TunPeer`) and returns the SYN+ACK of each;
* :func:`paws` has that peer send data with an old timestamp, which the kernel
  drops (PAWS, RFC 7323 Section 5).

The arithmetic is pure: :func:`largest_window`, :func:`throughput_bound` and
:func:`window_scale_for`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from tcpref import capture, netns
from tcpref.faults import LossInjector
from tcpref.kernel import TcpInfo, tcp_info
from tcpref.peer import KERNEL_ADDRESS, TunPeer
from tcpref.segment import (
    Flags,
    MaxSegmentSize,
    NoOperation,
    Option,
    Sack,
    Segment,
    Timestamps,
)
from tcpref.sim import Drop
from tcpref.trace import Side

__all__ = [
    "MAX_SHIFT",
    "OPTION_SYSCTLS",
    "Handshake",
    "Paws",
    "SackLine",
    "SackRun",
    "handshakes",
    "largest_window",
    "paws",
    "sack_after_loss",
    "syn_ack_options",
    "throughput_bound",
    "window_scale_for",
]

#: The largest window scale shift that RFC 7323 Section 2.3 allows.  The window
#: then reaches just under 2**30 bytes, which keeps it below half the sequence space.
MAX_SHIFT = 14
#: The sysctls that turn each option off (0) or on (1), in one network namespace.
OPTION_SYSCTLS = ("tcp_window_scaling", "tcp_sack", "tcp_timestamps")

_TIMEOUT = 5.0
_QUIET = 0.02  # seconds without a segment after which a capture is read to its end
_DATA = Flags.PSH | Flags.ACK
_SEGMENTS = 5  # data segments in sack_after_loss: the second is lost
_U32 = 2**32


# == The arithmetic ======================================================================


def largest_window(shift: int) -> int:
    """The largest window the 16-bit field can announce with ``shift``, in bytes.

    >>> largest_window(0), largest_window(14)
    (65535, 1073725440)

    Raises:
        ValueError: if ``shift`` is not 0 to :data:`MAX_SHIFT`.
    """
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= MAX_SHIFT:
        raise ValueError(f"shift must be an int from 0 to {MAX_SHIFT}, not {shift!r}")
    return 0xFFFF << shift


def throughput_bound(window: int, rtt: float) -> float:
    """The most bytes per second one connection can move with ``window`` bytes in flight.

    A sender may have at most one window unacknowledged, and an acknowledgment
    takes a round trip to come back, so no more than a window leaves per round trip.

    >>> throughput_bound(65535, 0.1)
    655350.0

    Raises:
        ValueError: if ``window`` is negative or ``rtt`` is not positive.
    """
    if window < 0 or not rtt > 0:
        raise ValueError(f"need window >= 0 and rtt > 0, not {window!r} and {rtt!r}")
    return window / rtt


def window_scale_for(space: int) -> int:
    """The shift Linux announces for a receive buffer that may grow to ``space`` bytes.

    ``tcp_select_initial_window`` in ``net/ipv4/tcp_output.c`` takes the largest
    buffer the socket could get (``tcp_rmem``'s maximum or ``net.core.rmem_max``,
    whichever is larger) and picks ``ilog2(space) - 15``, between 0 and 14: the
    smallest shift with which the 16-bit field covers that buffer.

    >>> window_scale_for(6 * 2**20), window_scale_for(32 * 2**20), window_scale_for(65535)
    (7, 10, 0)

    Raises:
        ValueError: if ``space`` is not a positive int.
    """
    if isinstance(space, bool) or not isinstance(space, int) or space < 1:
        raise ValueError(f"space must be a positive number of bytes, not {space!r}")
    return max(0, min(MAX_SHIFT, space.bit_length() - 1 - 15))


# == Small helpers shared by the experiments ============================================


def _set_sysctl(name: str, value: int) -> None:
    """Write one TCP sysctl of this network namespace (only ever inside netns.run)."""
    with open(f"/proc/sys/net/ipv4/{name}", "w") as file:
        file.write(f"{value}\n")


def _read_ints(path: str) -> tuple[int, ...]:
    with open(path) as file:
        return tuple(int(word) for word in file.read().split())


def _check_settings(settings: Mapping[str, int]) -> dict[str, int]:
    """Fill in every option sysctl (1 where not given), refusing unknown names or values."""
    unknown = set(settings) - set(OPTION_SYSCTLS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {', '.join(OPTION_SYSCTLS)}")
    for name, value in settings.items():
        if value not in (0, 1) or isinstance(value, bool):
            raise ValueError(f"{name} must be 0 or 1, not {value!r}")
    return {name: settings.get(name, 1) for name in OPTION_SYSCTLS}


def _side(found: capture.AddressedSegment, client: tuple[str, int]) -> Side | None:
    """Which end sent ``found``, or None if it belongs to another connection."""
    if found.src == client:
        return "client"
    return "server" if found.dst == client else None


def _segments(cap: socket.socket, quiet: float) -> Iterator[capture.AddressedSegment]:
    """Yield what ``cap`` holds, until no segment has come for ``quiet`` seconds."""
    # Ends: each pass reads a segment or stops after a quiet pause.
    while (got := capture.receive_segment(cap, quiet)) is not None:
        yield got[1]


# == The handshake's options and the windows they scale ================================


@dataclass(frozen=True)
class Handshake:
    """A short connection captured under chosen option settings.

    Attributes:
        settings: The three :data:`OPTION_SYSCTLS` as set in the namespace.
        space: The largest receive buffer a socket may grow to there: the larger of
            ``tcp_rmem``'s maximum and ``net.core.rmem_max``.
        segments: ``(sender, segment)`` for every segment captured before the
            ``tcp_info`` of both ends was read: the handshake, the client's data and
            the server's ACK of it.
        client: The client's ``tcp_info`` after the server's ACK of the data.
        server: The server's ``tcp_info`` at the same moment.
    """

    settings: dict[str, int]
    space: int
    segments: tuple[tuple[Side, Segment], ...]
    client: TcpInfo
    server: TcpInfo

    def first(self, flags: Flags) -> Segment:
        """The first captured segment whose flags are exactly ``flags``.

        Raises:
            LookupError: if none was captured.
        """
        for _, segment in self.segments:
            if segment.flags == flags:
                return segment
        raise LookupError(f"no segment with flags {flags!r} was captured")

    @property
    def syn(self) -> Segment:
        """The client's SYN."""
        return self.first(Flags.SYN)

    @property
    def syn_ack(self) -> Segment:
        """The server's SYN+ACK."""
        return self.first(Flags.SYN | Flags.ACK)

    def last_from(self, sender: Side) -> Segment:
        """The last segment ``sender`` sent before ``tcp_info`` was read.

        Raises:
            LookupError: if ``sender`` sent nothing.
        """
        for side, segment in reversed(self.segments):
            if side == sender:
                return segment
        raise LookupError(f"the {sender} sent nothing")


def handshakes(
    configurations: Sequence[Mapping[str, int]], *, data: int = 1000, pause: float = 0.0
) -> tuple[Handshake, ...]:
    """Open one connection per configuration in a namespace, and capture its start.

    Each configuration sets some of :data:`OPTION_SYSCTLS` (the others are 1, the
    default); the client connects, waits ``pause`` seconds, sends ``data`` bytes,
    and the server reads them.  All run in one namespace, one after the other.

    Raises:
        ValueError: naming the setting, for a name outside :data:`OPTION_SYSCTLS` or a
            value other than 0 and 1; or if ``data`` is not 1 to 65000 bytes or
            ``pause`` not 0 to 1 s.
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if an awaited segment never comes.
    """
    checked = [_check_settings(settings) for settings in configurations]
    if not (isinstance(data, int) and 1 <= data <= 65000):
        raise ValueError(f"data must be 1 to 65000 bytes, not {data!r}")
    if not 0 <= pause <= 1:
        raise ValueError(f"pause must be 0 to 1 second, not {pause!r}")
    return netns.run(_handshakes, checked, data, pause, timeout=30)


def _handshakes(
    configurations: list[dict[str, int]], data: int, pause: float
) -> tuple[Handshake, ...]:
    return tuple(_handshake(settings, data, pause) for settings in configurations)


def _handshake(settings: dict[str, int], data: int, pause: float) -> Handshake:
    for name, value in settings.items():
        _set_sysctl(name, value)
    space = max(
        _read_ints("/proc/sys/net/ipv4/tcp_rmem")[2], *_read_ints("/proc/sys/net/core/rmem_max")
    )
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        listener.settimeout(_TIMEOUT)
        cap = stack.enter_context(capture.packet_capture(port=listener.getsockname()[1]))
        client = stack.enter_context(socket.create_connection(listener.getsockname(), _TIMEOUT))
        server = stack.enter_context(listener.accept()[0])
        server.settimeout(_TIMEOUT)
        time.sleep(pause)
        client.sendall(b"x" * data)
        received = 0
        # Ends: each pass reads at least a byte, or the timeout raises.
        while received < data:
            received += len(server.recv(data))
        # Read the capture up to the server's ACK of the data, then both ends' view.
        segments = _until_acked(cap, client.getsockname(), data)
        return Handshake(settings, space, segments, tcp_info(client), tcp_info(server))


def _until_acked(
    cap: socket.socket, client: tuple[str, int], data: int
) -> tuple[tuple[Side, Segment], ...]:
    """The connection's segments, up to the server's ACK of ``data`` bytes and a quiet pause."""
    seen: list[tuple[Side, Segment]] = []
    isn: int | None = None
    deadline = time.monotonic() + _TIMEOUT
    # Ends: at the ACK of the data, or the deadline raises.
    while time.monotonic() < deadline:
        got = capture.receive_segment(cap, _TIMEOUT)
        side = None if got is None else _side(got[1], client)
        if got is None or side is None:
            continue
        segment = got[1].segment
        seen.append((side, segment))
        isn = segment.seq if isn is None else isn
        if side == "server" and segment.ack == (isn + 1 + data) % _U32:
            seen.extend(
                (s, found.segment)
                for found in _segments(cap, _QUIET)
                if (s := _side(found, client))
            )
            return tuple(seen)
    raise TimeoutError(f"the server's ACK of {data} bytes was not captured within {_TIMEOUT:g} s")


# == SACK blocks after a staged loss ====================================================


@dataclass(frozen=True)
class SackLine:
    """One captured segment of :func:`sack_after_loss`.

    Attributes:
        sender: ``"client"`` (the data's sender) or ``"server"``.
        segment: The segment as captured (the payload cut to the capture's length).
        length: The payload's length on the wire.
        note: ``"lost"``, ``"retransmission"`` or ``""``.
    """

    sender: Side
    segment: Segment
    length: int
    note: str


@dataclass(frozen=True)
class SackRun:
    """A transfer in which one data segment was lost, as captured.

    Attributes:
        lines: The segments after the handshake, in the order captured.
        client_isn: The sender's initial sequence number.
        server_isn: The receiver's.
        mss: The size of each data segment: the sender's ``snd_mss``.
        intact: Whether the receiver read every byte, in order.
        retransmitted: The sender's ``tcpi_total_retrans`` at the end.
        out_of_order: The receiver's ``tcpi_rcv_ooopack``: segments that came out of order.
    """

    lines: tuple[SackLine, ...]
    client_isn: int
    server_isn: int
    mss: int
    intact: bool
    retransmitted: int
    out_of_order: int

    def outline(self) -> str:
        """One line per segment: direction, flags, relative numbers, length, SACK blocks.

        Windows and timestamps are left out: they differ from machine to machine.
        """
        rows = ["dir     segment"]
        for line in self.lines:
            rows.append(f"{'C -> S' if line.sender == 'client' else 'C <- S'}  {self._text(line)}")
        return "\n".join(rows)

    def sack_blocks(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """The SACK blocks of each of the receiver's ACKs that carry any, relative."""
        found = []
        for line in self.lines:
            for option in line.segment.options:
                if isinstance(option, Sack):
                    found.append(tuple((self._rel(a), self._rel(b)) for a, b in option.blocks))
        return tuple(found)

    def _rel(self, number: int) -> int:
        return (number - self.client_isn) % _U32

    def _text(self, line: SackLine) -> str:
        segment = line.segment
        names = "|".join(flag.name or "" for flag in Flags if flag in segment.flags)
        if line.sender == "client":
            text = f"{names} seq={self._rel(segment.seq)}"
        else:
            text = f"{names} ack={self._rel(segment.ack)}"
        if line.length:
            text += f" len={line.length}"
        for option in segment.options:
            if isinstance(option, Sack):
                text += " SACK=" + " ".join(
                    f"{self._rel(a)}-{self._rel(b)}" for a, b in option.blocks
                )
        return text + (f"  ({line.note})" if line.note else "")


def sack_after_loss(*, maxseg: int = 1000) -> SackRun:
    """Lose the second of five data segments, and capture the SACK and the repair.

    In a namespace, the client sets ``TCP_MAXSEG`` and ``TCP_NODELAY`` and writes five
    segments of its ``snd_mss`` bytes, one write each, so that loopback's large MSS
    cannot merge them.  A :class:`tcpref.faults.LossInjector` with the plan
    ``Drop(2, sender="client", flags=PSH|ACK)`` makes the server's socket lose the
    second; the client writes it, waits until the capture shows it gone, then writes
    the rest.

    Raises:
        ValueError: if ``maxseg`` is not 536 to 8000.
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if the planned loss never happened, or the data never arrived.
    """
    if not (isinstance(maxseg, int) and 536 <= maxseg <= 8000):
        raise ValueError(f"maxseg must be 536 to 8000 bytes, not {maxseg!r}")
    return netns.run(_sack_after_loss, maxseg, timeout=30)


class _Watch:
    """Read the capture in the calling thread, feed the injector, and note each segment."""

    def __init__(self, cap: socket.socket, client: tuple[str, int], injector: LossInjector):
        self.cap, self.client, self.injector = cap, client, injector
        self.seen: list[tuple[Side, capture.AddressedSegment, bool]] = []

    def until_data(self, count: int) -> None:
        """Read until the client's ``count``-th data segment has been seen.

        Raises:
            TimeoutError: if it does not come within the timeout.
        """
        deadline = time.monotonic() + _TIMEOUT
        # Ends: once enough data segments were seen, or the deadline raises.
        while (
            sum(side == "client" and found.payload_length > 0 for side, found, _ in self.seen)
            < count
        ):
            left = deadline - time.monotonic()
            got = capture.receive_segment(self.cap, left) if left > 0 else None
            if got is None:
                raise TimeoutError(f"data segment {count} was not captured within {_TIMEOUT:g} s")
            self._note(got[1])

    def rest(self) -> None:
        """Read what the capture still holds, until a quiet pause."""
        for found in _segments(self.cap, _QUIET):
            self._note(found)

    def _note(self, found: capture.AddressedSegment) -> None:
        side = _side(found, self.client)
        if side is not None:
            self.seen.append((side, found, self.injector.saw(side, found.segment)))


def _sack_after_loss(maxseg: int) -> SackRun:
    injector = LossInjector(Drop(2, sender="client", flags=_DATA))
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        listener.settimeout(_TIMEOUT)
        cap = stack.enter_context(capture.packet_capture(port=listener.getsockname()[1]))
        client = stack.enter_context(socket.socket())
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(_TIMEOUT)
        client.connect(listener.getsockname())
        server = stack.enter_context(listener.accept()[0])
        server.settimeout(_TIMEOUT)
        mss = tcp_info(client).snd_mss
        chunks = [bytes([ord("a") + n]) * mss for n in range(_SEGMENTS)]
        injector.add_receiver(server)
        injector.start()
        watch = _Watch(cap, client.getsockname(), injector)
        try:
            # One segment at a time while the filter changes: the injector arms after
            # the first and disarms after the second, each once the capture shows it.
            for number, chunk in enumerate(chunks[:2], start=1):
                client.send(chunk)
                watch.until_data(number)
            for chunk in chunks[2:]:
                client.send(chunk)
            got = _read_exactly(server, mss * _SEGMENTS)
            watch.rest()
        finally:
            injector.stop()
        if not injector.lost:
            raise TimeoutError("the planned loss never happened")
        return _sack_run(watch, mss, got == b"".join(chunks), tcp_info(client), tcp_info(server))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    # Ends: each pass reads at least a byte, or the socket's timeout raises.
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def _sack_run(watch: _Watch, mss: int, intact: bool, sender: TcpInfo, receiver: TcpInfo) -> SackRun:
    syn = next(found.segment for side, found, _ in watch.seen if found.segment.flags == Flags.SYN)
    syn_ack = next(f.segment for _, f, _ in watch.seen if f.segment.flags == Flags.SYN | Flags.ACK)
    lines: list[SackLine] = []
    sent: set[int] = set()
    for side, found, dropped in watch.seen:
        segment = found.segment
        if Flags.SYN in segment.flags or (
            side == "client" and not found.payload_length and not lines
        ):
            continue  # the handshake, and its last ACK
        again = side == "client" and found.payload_length > 0 and segment.seq in sent
        if side == "client" and found.payload_length:
            sent.add(segment.seq)
        note = "lost" if dropped else "retransmission" if again else ""
        lines.append(SackLine(side, segment, found.payload_length, note))
    return SackRun(
        lines=tuple(lines),
        client_isn=syn.seq,
        server_isn=syn_ack.seq,
        mss=mss,
        intact=intact,
        retransmitted=sender.total_retrans,
        out_of_order=receiver.rcv_ooopack or 0,
    )


# == A scripted peer: what the kernel answers, and PAWS ==================================

_PEER_ISN = 5000
_FIRST_PEER_PORT = 40000


def _peer_syn(port: int, source: int, options: tuple[Option, ...]) -> Segment:
    return Segment(
        source, port, seq=_PEER_ISN, ack=0, flags=Flags.SYN, window=65535, options=options
    )


def syn_ack_options(offers: Sequence[tuple[Option, ...]]) -> tuple[Segment, ...]:
    """Send a listener one SYN per entry of ``offers``, with those options; return each SYN+ACK.

    A peer played in Python behind a TUN device (:class:`tcpref.peer.TunPeer`) sends
    the SYNs, each from a port of its own, and resets each half-open connection once
    the SYN+ACK has come.

    Raises:
        TypeError: if an entry is not a tuple of option records.
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if a SYN+ACK never comes.
    """
    for options in offers:
        if not isinstance(options, tuple):
            raise TypeError(f"each offer must be a tuple of options, not {options!r}")
    return netns.run(_syn_ack_options, list(offers), timeout=30)


def _syn_ack_options(offers: list[tuple[Option, ...]]) -> tuple[Segment, ...]:
    answers = []
    with TunPeer() as peer, socket.socket() as listener:
        listener.bind((KERNEL_ADDRESS, 0))
        listener.listen(len(offers))
        kernel = listener.getsockname()
        for number, options in enumerate(offers):
            source = _FIRST_PEER_PORT + number
            peer.send(_peer_syn(kernel[1], source, options), kernel)
            answer = peer.expect(Flags.SYN | Flags.ACK, _TIMEOUT).segment
            answers.append(answer)
            # The peer gives up the connection: a reset at the sequence number expected.
            reset = Segment(source, kernel[1], seq=answer.ack, ack=0, flags=Flags.RST, window=0)
            peer.send(reset, kernel)
    return tuple(answers)


@dataclass(frozen=True)
class Paws:
    """What the kernel did with a segment whose timestamp was older than the last one.

    Attributes:
        answers: For each data segment the peer sent, ``(TSval sent, the kernel's
            ACK relative to the peer's ISN, the TSecr of that ACK)``.
        received: What the kernel's application read.
        rejected: How much ``PAWSEstab`` in ``/proc/net/netstat`` grew: segments
            an established connection dropped for an old timestamp.
    """

    answers: tuple[tuple[int, int, int], ...]
    received: bytes
    rejected: int


def paws(*, first: int = 1000, old: int = 900) -> Paws:
    """Open a connection from a scripted peer with timestamps, and send an old one.

    The peer's SYN carries TSval ``first``; it then sends ``one`` with ``first + 2``,
    ``two`` with ``old``, and ``two`` again with ``first + 3``.

    Raises:
        ValueError: if ``old`` is not below ``first`` (no timestamp would be old).
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if the kernel does not answer.
    """
    if not (isinstance(first, int) and isinstance(old, int) and 0 < old < first < _U32 - 10):
        raise ValueError(f"need 0 < old < first, not old={old!r}, first={first!r}")
    return netns.run(_paws, first, old, timeout=30)


def _tcp_ext(name: str) -> int:
    """One ``TcpExt`` counter of ``/proc/net/netstat``: a line of names, then one of values."""
    with open("/proc/net/netstat") as file:
        lines = file.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(counters.get(name, 0))
    return 0


def _paws(first: int, old: int) -> Paws:
    before = _tcp_ext("PAWSEstab")
    with TunPeer() as peer, socket.socket() as listener:
        listener.bind((KERNEL_ADDRESS, 0))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
        kernel = listener.getsockname()
        syn = (MaxSegmentSize(1460), NoOperation(), NoOperation(), Timestamps(first, 0))
        peer.send(_peer_syn(kernel[1], _FIRST_PEER_PORT, syn), kernel)
        syn_ack = peer.expect(Flags.SYN | Flags.ACK, _TIMEOUT).segment
        ack = (syn_ack.seq + 1) % _U32

        def send(seq: int, tsval: int, payload: bytes = b"") -> Segment:
            stamp = (NoOperation(), NoOperation(), Timestamps(tsval, _tsval(syn_ack)))
            flags = _DATA if payload else Flags.ACK
            segment = Segment(
                _FIRST_PEER_PORT,
                kernel[1],
                seq=seq,
                ack=ack,
                flags=flags,
                window=65535,
                options=stamp,
                payload=payload,
            )
            peer.send(segment, kernel)
            return peer.expect(Flags.ACK, _TIMEOUT).segment if payload else segment

        send(_PEER_ISN + 1, first + 1)  # the handshake's ACK: no answer comes
        with listener.accept()[0] as accepted:
            accepted.settimeout(_TIMEOUT)
            answers = []
            for offset, tsval, payload in (
                (1, first + 2, b"one"),
                (4, old, b"two"),
                (4, first + 3, b"two"),
            ):
                reply = send(_PEER_ISN + offset, tsval, payload)
                answers.append((tsval, (reply.ack - _PEER_ISN) % _U32, _tsecr(reply)))
            received = _read_exactly(accepted, 6)
    return Paws(tuple(answers), received, _tcp_ext("PAWSEstab") - before)


def _tsval(segment: Segment) -> int:
    return next(option.value for option in segment.options if isinstance(option, Timestamps))


def _tsecr(segment: Segment) -> int:
    return next(option.echo_reply for option in segment.options if isinstance(option, Timestamps))
