"""Opening a connection on loopback: the handshake, the backlog, no accept, no listen.

Each function sets up one scenario on 127.0.0.1 with port 0, watches the kernel's
tables (:func:`tcpref.kernel.state_of`, :func:`tcpref.kernel.connections`,
:func:`tcpref.kernel.tcp_info`) and returns what it saw as a frozen dataclass.
Every wait is bounded and every socket is closed before the function returns.
These are Linux's answers: the functions read ``/proc`` and ``TCP_INFO``.

A handshake on loopback takes microseconds, so the transient states are held on
purpose:

* SYN_SENT: the client connects to a listener whose accept queue is full.  Linux
  then drops the SYN without an answer, and the client waits for its
  retransmission timer.
* SYN_RECV: the listener sets ``TCP_DEFER_ACCEPT``, so the kernel ignores the
  bare ACK that ends the handshake and keeps the request until data arrives.
* Simultaneous open: a socket filter on the first socket drops the RST its SYN
  provokes, so it stays in SYN_SENT until the second socket's SYN reaches it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tcpref import capture as _capture
from tcpref import faults
from tcpref.kernel import (
    Connection,
    SynSchedule,
    connections,
    state_of,
    syn_retry_schedule,
    sysctls,
    tcp_info,
)
from tcpref.segment import Flags

__all__ = [
    "SYN_QUEUE_COUNTERS",
    "Backlog",
    "BacklogCap",
    "DemoSetupError",
    "Handshake",
    "HandshakeSegments",
    "Segment",
    "SelfConnect",
    "SimultaneousOpen",
    "SynQueue",
    "SynQueueOverflow",
    "SynRetries",
    "SynSent",
    "backlog",
    "backlog_cap",
    "handshake",
    "handshake_segments",
    "self_connect",
    "simultaneous_open",
    "syn_queue",
    "syn_queue_overflow",
    "syn_retransmissions",
    "syn_sent",
]

LOOPBACK = "127.0.0.1"
#: How long a handshake on loopback may take before we call its SYN dropped.  It
#: is far below the 1 s retransmission timeout, and far above the microseconds a
#: loopback handshake takes.
HANDSHAKE_WAIT = 0.3
#: How long a state change the kernel makes at once may take to show in ``/proc``.
STATE_WAIT = 2.0


class DemoSetupError(RuntimeError):
    """A scenario could not be set up as described: the kernel did something else."""


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code)) if code else "0"


def _listener(backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _start_connect(
    address: tuple[str, int], *, syncnt: int = 1, bind: tuple[str, int] | None = None
) -> tuple[socket.socket, str]:
    """Start a non-blocking connect; return the socket and connect's errno symbol."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Few retransmissions, so that a forgotten socket would fail fast.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, syncnt)
        if bind is not None:
            sock.bind(bind)
        sock.setblocking(False)
        result = sock.connect_ex(address)
    except BaseException:
        sock.close()
        raise
    return sock, _errno_name(result)


def _wait_connected(sock: socket.socket, seconds: float) -> bool:
    """Whether a non-blocking connect finishes (becomes writable) within ``seconds``."""
    _, writable, _ = select.select([], [sock], [], seconds)
    return bool(writable)


def _wait_for_state(local: tuple[str, int], remote: tuple[str, int], wanted: str) -> str | None:
    """Poll ``/proc`` until the connection is in ``wanted``, or STATE_WAIT passes."""
    deadline = time.monotonic() + STATE_WAIT
    while True:
        state = state_of(local, remote)
        if state == wanted or time.monotonic() >= deadline:
            return state
        time.sleep(0.001)


def _on_port(port: int, state: str) -> list[Connection]:
    return [c for c in connections(port) if c.local[1] == port and c.state == state]


def _listener_entry(listener: socket.socket) -> Connection:
    port = listener.getsockname()[1]
    [entry] = _on_port(port, "LISTEN")
    return entry


def _inode(sock: socket.socket) -> int:
    link = os.readlink(f"/proc/self/fd/{sock.fileno()}")  # 'socket:[12345]'
    return int(link.removeprefix("socket:[").removesuffix("]"))


@contextmanager
def _full_accept_queue(listener: socket.socket, most: int) -> Iterator[list[socket.socket]]:
    """Connect clients, never accepted, until one's handshake does not complete.

    Yields the clients whose handshake completed; the last one tried (still in
    SYN_SENT) is closed before the yield.  All are closed afterwards.

    Raises:
        DemoSetupError: if ``most`` clients all complete their handshake.
    """
    clients: list[socket.socket] = []
    try:
        for _ in range(most):
            client, _result = _start_connect(listener.getsockname())
            if not _wait_connected(client, HANDSHAKE_WAIT):
                client.close()
                yield clients
                return
            clients.append(client)
        raise DemoSetupError(f"the accept queue took {most} connections and was not full")
    finally:
        for client in clients:
            client.close()


# == The handshake =====================================================================


@dataclass(frozen=True)
class Handshake:
    """The states on each side of one connection, before and after ``connect``.

    Attributes:
        client_before: The client socket's state before ``connect`` (``TCP_INFO``).
        listener_state: The listener's state in ``/proc/net/tcp``.
        client_after: The client's state when ``connect`` has returned.
        server_after: The server side's state then, before any ``accept``.
        server_inode: The server side's inode then: 0, as no descriptor refers to it.
        accept_queue: Connections waiting in the listener's accept queue then.
        accepted_state: The state of the socket ``accept`` returns.
        accept_queue_after: The accept queue once ``accept`` has returned.
        inode_is_accepted_socket: Whether the server side's inode is then that of
            the socket ``accept`` returned.
    """

    client_before: str
    listener_state: str
    client_after: str
    server_after: str
    server_inode: int
    accept_queue: int
    accepted_state: str
    accept_queue_after: int
    inode_is_accepted_socket: bool


def handshake(timeout: float = 5.0) -> Handshake:
    """Connect to a listener, look at both sides, and only then ``accept``.

    ``connect`` returns once the SYN+ACK has arrived and the client has sent its
    ACK; the kernel completes the server side by itself when that ACK arrives, and
    puts it in the accept queue.  ``accept`` only takes it out.

    Raises:
        DemoSetupError: if a side is not ESTABLISHED within a bounded wait.
        OSError: if a socket call fails.
    """
    with ExitStack() as stack:
        listener = stack.enter_context(_listener(1))
        listener.settimeout(timeout)
        server_address = listener.getsockname()
        client = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        client.settimeout(timeout)
        client_before = tcp_info(client).state
        client.connect(server_address)
        client_address = client.getsockname()
        client_after = state_of(client_address, server_address) or "absent"
        server_after = _wait_for_state(server_address, client_address, "ESTABLISHED")
        if server_after != "ESTABLISHED":
            raise DemoSetupError(f"the server side is {server_after}, not ESTABLISHED")
        [server_side] = [
            c
            for c in connections(server_address[1])
            if c.remote == client_address and c.local == server_address
        ]
        queued = _listener_entry(listener).rx_queue
        accepted, _ = listener.accept()
        stack.enter_context(accepted)
        [after] = [
            c
            for c in connections(server_address[1])
            if c.remote == client_address and c.local == server_address
        ]
        return Handshake(
            client_before=client_before,
            listener_state=_listener_entry(listener).state,
            client_after=client_after,
            server_after=server_after,
            server_inode=server_side.inode,
            accept_queue=queued,
            accepted_state=after.state,
            accept_queue_after=_listener_entry(listener).rx_queue,
            inode_is_accepted_socket=after.inode == _inode(accepted),
        )
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack swallows nothing)


@dataclass(frozen=True)
class SynSent:
    """A client held in SYN_SENT by a listener whose accept queue is full.

    Attributes:
        backlog: The listener's ``listen`` argument.
        queued: Connections in its accept queue, none of them accepted.
        connect_result: The errno symbol of the non-blocking ``connect``.
        client_state: The client's state in ``/proc/net/tcp``.
        server_side: The listener side's state for this client: ``None``, the
            listener kept nothing of the dropped SYN.
        retransmits: The client's ``tcp_info`` retransmission count then.
    """

    backlog: int
    queued: int
    connect_result: str
    client_state: str | None
    server_side: str | None
    retransmits: int


def syn_sent(backlog: int = 0) -> SynSent:
    """Hold a client in SYN_SENT: its listener's accept queue is full.

    Clients connect, and are never accepted, until one handshake does not
    complete.  Then one more client connects without blocking; Linux drops its
    SYN, so it stays in SYN_SENT until its retransmission timer (1 s) fires.  It
    has ``TCP_SYNCNT`` 1, and is closed long before that.

    Raises:
        DemoSetupError: if the accept queue never fills, or the client is not in
            SYN_SENT.
        OSError: if a socket call fails.
    """
    with _listener(backlog) as listener, _full_accept_queue(listener, 64):
        server_address = listener.getsockname()
        client, result = _start_connect(server_address)
        with client:
            local = client.getsockname()
            state = state_of(local, server_address)
            if state != "SYN_SENT":
                raise DemoSetupError(f"the client is {state}, not SYN_SENT")
            return SynSent(
                backlog=backlog,
                queued=_listener_entry(listener).rx_queue,
                connect_result=result,
                client_state=state,
                server_side=state_of(server_address, local),
                retransmits=tcp_info(client).retransmits,
            )


# == The listen backlog ================================================================


@dataclass(frozen=True)
class Backlog:
    """How many handshakes a listener completes for ``listen(backlog)``, unaccepted.

    Attributes:
        backlog: The argument given to ``listen``.
        completed: How many clients' handshakes completed, none accepted.
        accept_queue: The listener's receive queue in ``/proc/net/tcp``: the
            connections waiting for ``accept``.
        unacked: ``tcp_info(listener).unacked``: the same count.
        limit: ``tcp_info(listener).sacked``: the backlog the kernel granted.
        next_state: The state of one more client, a moment after its ``connect``.
        next_error: Its pending error (``SO_ERROR``) then: ``'0'``, none.
        next_server_side: The listener side's state for that client: ``None``.
    """

    backlog: int
    completed: int
    accept_queue: int
    unacked: int
    limit: int
    next_state: str | None
    next_error: str
    next_server_side: str | None


def backlog(n: int, *, most: int = 64) -> Backlog:
    """Fill the accept queue of ``listen(n)`` without accepting, and count.

    Args:
        n: The backlog to pass to ``listen``; 0 to ``most - 2``.
        most: How many clients to try at most.

    Raises:
        ValueError: if ``n`` is negative or not below ``most - 1``.
        DemoSetupError: if ``most`` clients all complete their handshake.
        OSError: if a socket call fails.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < most - 1:
        raise ValueError(f"n must be an int in range 0-{most - 2}, not {n!r}")
    with _listener(n) as listener, _full_accept_queue(listener, most) as queued:
        server_address = listener.getsockname()
        info = tcp_info(listener)
        client, _ = _start_connect(server_address)
        with client:
            time.sleep(0.05)  # far longer than a loopback handshake, far below 1 s
            local = client.getsockname()
            return Backlog(
                backlog=n,
                completed=len(queued),
                accept_queue=_listener_entry(listener).rx_queue,
                unacked=info.unacked,
                limit=info.sacked,
                next_state=state_of(local, server_address),
                next_error=_errno_name(client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
                next_server_side=state_of(server_address, local),
            )


@dataclass(frozen=True)
class BacklogCap:
    """The backlog asked of ``listen`` beside the one the kernel granted.

    Attributes:
        requested: The argument given to ``listen``.
        somaxconn: The live ``net.core.somaxconn``.
        granted: ``tcp_info(listener).sacked``: ``min(requested, somaxconn)``.
    """

    requested: int
    somaxconn: int
    granted: int


def backlog_cap(requested: int) -> BacklogCap:
    """Listen with ``requested`` as the backlog and read what the kernel granted.

    Raises:
        OSError: if a socket call fails.
    """
    somaxconn = sysctls()["somaxconn"].value
    if not isinstance(somaxconn, int):
        raise DemoSetupError(f"net.core.somaxconn is not one number: {somaxconn!r}")
    with _listener(requested) as listener:
        return BacklogCap(requested, somaxconn, tcp_info(listener).sacked)


@dataclass(frozen=True)
class SynQueue:
    """A connection request held in the SYN queue, then moved to the accept queue.

    Attributes:
        client_state: The client's state after its ``connect`` returned.
        request_state: The listener side's state then: SYN_RECV.
        request_inode: Its inode: 0.
        syn_queue: Requests (SYN_RECV entries) on the listener's port then.
        accept_queue: The listener's accept queue then.
        after_data_state: The listener side's state once the client sent data.
        accept_queue_after: The accept queue then.
        received: What ``accept``-ed socket then reads.
    """

    client_state: str | None
    request_state: str | None
    request_inode: int
    syn_queue: int
    accept_queue: int
    after_data_state: str | None
    accept_queue_after: int
    received: bytes


def syn_queue(timeout: float = 5.0) -> SynQueue:
    """Hold a connection request in the SYN queue with ``TCP_DEFER_ACCEPT``.

    With ``TCP_DEFER_ACCEPT`` the listener's kernel ignores the bare ACK that ends
    the handshake: the request stays in SYN_RECV, in the SYN queue, although the
    client is ESTABLISHED.  The first data from the client completes it.

    Raises:
        DemoSetupError: if the request is not seen in SYN_RECV, or not moved.
        OSError: if a socket call fails.
    """
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        # Ten seconds, not one: once the deferral runs out the kernel completes the
        # request anyway, and a loaded machine can take a second to read /proc.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 10)
        listener.bind((LOOPBACK, 0))
        listener.listen(4)
        listener.settimeout(timeout)
        server_address = listener.getsockname()
        port = server_address[1]
        client = stack.enter_context(socket.create_connection(server_address, timeout))
        local = client.getsockname()
        client_state = state_of(local, server_address)
        request_state = _wait_for_state(server_address, local, "SYN_RECV")
        if request_state != "SYN_RECV":
            raise DemoSetupError(f"the request is {request_state}, not SYN_RECV")
        [request] = [
            c for c in connections(port) if c.remote == local and c.local == server_address
        ]
        syn_queued = len(_on_port(port, "SYN_RECV"))
        accept_queued = _listener_entry(listener).rx_queue
        client.sendall(b"hello")
        after = _wait_for_state(server_address, local, "ESTABLISHED")
        queued_after = _listener_entry(listener).rx_queue
        accepted, _ = listener.accept()
        stack.enter_context(accepted)
        accepted.settimeout(timeout)
        return SynQueue(
            client_state=client_state,
            request_state=request_state,
            request_inode=request.inode,
            syn_queue=syn_queued,
            accept_queue=accept_queued,
            after_data_state=after,
            accept_queue_after=queued_after,
            received=accepted.recv(100),
        )
    raise AssertionError("unreachable")  # pragma: no cover


# == No accept, no listen ==============================================================


@dataclass(frozen=True)
class SelfConnect:
    """A socket connected to its own address.

    Attributes:
        state: Its state in ``/proc/net/tcp``.
        peer_is_self: Whether ``getpeername()`` equals ``getsockname()``.
        table_entries: How many sockets ``/proc/net/tcp`` lists with its address as
            local address: one, whose remote address is the same.
        echoed: What ``recv`` returned after the socket sent ``b'hello, me'``.
    """

    state: str | None
    peer_is_self: bool
    table_entries: int
    echoed: bytes


def self_connect(timeout: float = 5.0) -> SelfConnect:
    """Bind a socket to a port, then connect it to that same address.

    Its SYN arrives at itself while it is in SYN_SENT: a simultaneous open with
    one socket (RFC 9293 Section 3.5).  No ``listen`` and no ``accept``.

    Raises:
        OSError: if a socket call fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.bind((LOOPBACK, 0))
        address = sock.getsockname()
        sock.connect(address)
        sock.sendall(b"hello, me")
        return SelfConnect(
            state=state_of(address, address),
            peer_is_self=sock.getpeername() == address,
            # Other connections may use the port as their *remote* port; only
            # this socket can have it as its local one.
            table_entries=len([c for c in connections(address[1]) if c.local == address]),
            echoed=sock.recv(100),
        )


# A classic BPF program for a TCP socket, which sees each segment from its TCP
# header on: drop a segment whose RST flag (bit 0x04 of byte 13) is set.
_DROP_RST = (
    (0x30, 0, 0, 13),  # A = the flags byte
    (0x45, 0, 1, 0x04),  # RST set: go on to drop, else skip to keep
    (0x06, 0, 0, 0),  # drop
    (0x06, 0, 0, 0xFFFFFFFF),  # keep the whole segment
)
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def _drop_resets(sock: socket.socket) -> None:
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_RST)
    buffer = ctypes.create_string_buffer(program, len(program))
    # The kernel copies the program during setsockopt: the buffer may go after it.
    fprog = struct.pack("HP", len(_DROP_RST), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


@dataclass(frozen=True)
class SimultaneousOpen:
    """Two sockets that connect to each other, with no listener anywhere.

    Attributes:
        first_connect: The errno symbol of the first socket's non-blocking ``connect``.
        first_state: The first socket's state before the second connects.
        second_connect: The errno symbol of the second socket's ``connect``.
        states: The two sockets' states afterwards.
        errors: Their pending errors (``SO_ERROR``) afterwards.
        listeners: Listening sockets on either port: none.
        segments: The segments on the wire, as ``'a>b SYN'``, when captured
            (with CAP_NET_RAW, as in a namespace of :mod:`tcpref.netns`);
            ``None`` otherwise.
    """

    first_connect: str
    first_state: str | None
    second_connect: str
    states: tuple[str | None, str | None]
    errors: tuple[str, str]
    listeners: int
    segments: tuple[str, ...] | None


def simultaneous_open(*, capture: bool = False) -> SimultaneousOpen:
    """Connect two bound sockets to each other with non-blocking connects.

    On loopback the first SYN arrives at once, while the second socket is only
    bound, and its kernel answers with RST.  A socket filter on the first socket
    drops that RST, so the first socket stays in SYN_SENT; the second socket's SYN
    then reaches it there, it answers SYN+ACK (RFC 9293 Section 3.5, Figure 7), and
    both end ESTABLISHED.

    Args:
        capture: Also capture the segments on loopback (needs CAP_NET_RAW).

    Raises:
        DemoSetupError: if a socket is not in the expected state.
        PermissionCallError: with ``capture`` and without CAP_NET_RAW.
        OSError: if a socket call fails.
    """
    with ExitStack() as stack:
        a = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        b = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        a.bind((LOOPBACK, 0))
        b.bind((LOOPBACK, 0))
        a_address, b_address = a.getsockname(), b.getsockname()
        cap = (
            stack.enter_context(_capture.packet_capture(port=a_address[1], timeout=1))
            if capture
            else None
        )
        _drop_resets(a)
        a.setblocking(False)
        b.setblocking(False)
        first = _errno_name(a.connect_ex(b_address))
        first_state = state_of(a_address, b_address)
        if first_state != "SYN_SENT":
            raise DemoSetupError(f"the first socket is {first_state}, not SYN_SENT")
        second = _errno_name(b.connect_ex(a_address))
        for sock in (a, b):
            if not _wait_connected(sock, STATE_WAIT):
                raise DemoSetupError("a socket did not connect")
        names = {a_address: "a", b_address: "b"}
        segments = None
        if cap is not None:
            segments = tuple(
                f"{names[s.src]}>{names[s.dst]} {_capture.flag_names(s.flags)}"
                for s in _read_segments(cap, a_address[1], count=5, timeout=1.0)
            )
        ports = (a_address[1], b_address[1])
        return SimultaneousOpen(
            first_connect=first,
            first_state=first_state,
            second_connect=second,
            states=(state_of(a_address, b_address), state_of(b_address, a_address)),
            errors=(
                _errno_name(a.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
                _errno_name(b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)),
            ),
            listeners=sum(len(_on_port(port, "LISTEN")) for port in ports),
            segments=segments,
        )
    raise AssertionError("unreachable")  # pragma: no cover


# == Segments on the wire (CAP_NET_RAW) ================================================


def _read_segments(
    cap: socket.socket, port: int, *, count: int, timeout: float
) -> list[_capture.CapturedSegment]:
    """Read up to ``count`` TCP segments from or to ``port``, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    found: list[_capture.CapturedSegment] = []
    while len(found) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        cap.settimeout(remaining)
        try:
            packet, address = cap.recvfrom(256)
        except TimeoutError:
            break
        if address[2] == socket.PACKET_OUTGOING:
            continue
        segment = _capture.parse_ipv4_tcp(packet)
        if segment is not None and port in (segment.src[1], segment.dst[1]):
            found.append(segment)
    return found


@dataclass(frozen=True)
class Segment:
    """One handshake segment, its numbers also relative to the two ISNs.

    Attributes:
        sender: ``'client'`` or ``'server'``.
        flags: Such as ``'SYN+ACK'``.
        seq: The sequence number, as on the wire.
        ack: The acknowledgment number, as on the wire (0 without ACK).
        relative_seq: ``seq`` minus the sender's ISN, modulo 2**32.
        relative_ack: ``ack`` minus the receiver's ISN, modulo 2**32; ``None``
            without ACK.
    """

    sender: str
    flags: str
    seq: int
    ack: int
    relative_seq: int
    relative_ack: int | None


@dataclass(frozen=True)
class HandshakeSegments:
    """The three segments of one handshake, captured on loopback.

    Attributes:
        client_isn: The client's initial sequence number, x.
        server_isn: The server's initial sequence number, y.
        segments: The segments in the order they were captured.
    """

    client_isn: int
    server_isn: int
    segments: tuple[Segment, ...]


def handshake_segments(timeout: float = 5.0) -> HandshakeSegments:
    """Capture the three segments of a handshake on loopback (needs CAP_NET_RAW).

    Raises:
        PermissionCallError: without the CAP_NET_RAW capability.
        DemoSetupError: if three segments (SYN, SYN+ACK, ACK) are not captured.
        OSError: if a socket call fails.
    """
    with ExitStack() as stack:
        listener = stack.enter_context(_listener(1))
        port = listener.getsockname()[1]
        cap = stack.enter_context(_capture.packet_capture(port=port, timeout=timeout))
        client = stack.enter_context(socket.create_connection((LOOPBACK, port), timeout))
        client_address = client.getsockname()
        found = [
            s
            for s in _read_segments(cap, port, count=3, timeout=timeout)
            if client_address in (s.src, s.dst)
        ]
        flags = [_capture.flag_names(s.flags) for s in found]
        if flags != ["SYN", "SYN+ACK", "ACK"]:
            raise DemoSetupError(f"expected SYN, SYN+ACK, ACK; captured {flags}")
        isns = {client_address: found[0].seq, (LOOPBACK, port): found[1].seq}
        segments = tuple(
            Segment(
                sender="client" if s.src == client_address else "server",
                flags=name,
                seq=s.seq,
                ack=s.ack,
                relative_seq=(s.seq - isns[s.src]) % 2**32,
                relative_ack=(
                    (s.ack - isns[s.dst]) % 2**32 if _capture.TcpFlag.ACK in s.flags else None
                ),
            )
            for s, name in zip(found, flags, strict=True)
        )
        return HandshakeSegments(found[0].seq, found[1].seq, segments)
    raise AssertionError("unreachable")  # pragma: no cover


# == SYN retransmission ================================================================


@dataclass(frozen=True)
class SynRetries:
    """When an unanswered ``connect`` sent its SYNs again, measured and computed.

    Attributes:
        syncnt: The socket's ``TCP_SYNCNT``.
        linear_timeouts: The live ``tcp_syn_linear_timeouts`` (0 if missing).
        measured: Seconds after ``connect`` at which ``tcp_info``'s
            ``retransmits`` went up by one.
        captured: Seconds after the first SYN at which each further SYN was
            captured on loopback; ``None`` without capture.
        error: The errno symbol ``connect`` finally failed with.
        failed_after: Seconds after ``connect`` at which it failed.
        computed: :func:`tcpref.kernel.syn_retry_schedule` for the same settings.
    """

    syncnt: int
    linear_timeouts: int
    measured: tuple[float, ...]
    captured: tuple[float, ...] | None
    error: str
    failed_after: float
    computed: SynSchedule


def syn_retransmissions(syncnt: int = 1, *, capture: bool = False) -> SynRetries:
    """Let a ``connect`` with ``TCP_SYNCNT`` ``syncnt`` time out against a full queue.

    The listener's accept queue is full, so every SYN is dropped.  The loop samples
    ``tcp_info(client)`` every few milliseconds until ``connect`` fails, bounded by
    the computed give-up time plus two seconds.  With ``syncnt`` 1 and the default
    ``tcp_syn_linear_timeouts`` it takes about 3 s.

    Args:
        syncnt: ``TCP_SYNCNT`` for the client, 1-127.
        capture: Also capture the SYNs on loopback (needs CAP_NET_RAW).

    Raises:
        DemoSetupError: if ``connect`` does not fail within the bound.
        PermissionCallError: with ``capture`` and without CAP_NET_RAW.
        OSError: if a socket call fails.
    """
    linear = sysctls()["tcp_syn_linear_timeouts"].value
    linear_timeouts = linear if isinstance(linear, int) else 0
    computed = syn_retry_schedule(syncnt, linear_timeouts)
    with ExitStack() as stack:
        listener = stack.enter_context(_listener(0))
        port = listener.getsockname()[1]
        stack.enter_context(_full_accept_queue(listener, 64))
        cap = (
            stack.enter_context(_capture.packet_capture(port=port, timeout=1)) if capture else None
        )
        started = time.monotonic()
        client, _ = _start_connect((LOOPBACK, port), syncnt=syncnt)
        stack.enter_context(client)
        measured: list[float] = []
        syn_times: list[float] = []
        seen = 0
        deadline = started + computed.gives_up_at + 2.0
        # Each pass samples the kernel and sleeps 2 ms; the deadline bounds the passes.
        while time.monotonic() < deadline:
            if cap is not None:
                syn_times += _drain_syns(cap, port)
            pending = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if pending:
                failed_after = time.monotonic() - started
                break
            retransmits = tcp_info(client).retransmits
            if retransmits > seen:
                measured.append(time.monotonic() - started)
                seen = retransmits
            time.sleep(0.002)
        else:
            raise DemoSetupError(f"connect did not fail within {deadline - started:.1f} s")
        captured = None
        if cap is not None:
            syn_times += _drain_syns(cap, port)
            captured = tuple(t - syn_times[0] for t in syn_times[1:])
        return SynRetries(
            syncnt=syncnt,
            linear_timeouts=linear_timeouts,
            measured=tuple(measured),
            captured=captured,
            error=_errno_name(pending),
            failed_after=failed_after,
            computed=computed,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _drain_syns(cap: socket.socket, port: int) -> list[float]:
    """Read the SYNs to ``port`` queued on ``cap`` now; return when each was read."""
    times: list[float] = []
    cap.settimeout(0)
    # Ends: each pass reads one queued packet; the queue holds few (the filter
    # keeps only our port's segments) and no read waits.
    while True:
        try:
            packet, address = cap.recvfrom(256)
        except (BlockingIOError, TimeoutError):
            return times
        if address[2] == socket.PACKET_OUTGOING:
            continue
        segment = _capture.parse_ipv4_tcp(packet)
        if segment is not None and segment.is_syn and segment.dst[1] == port:
            times.append(time.monotonic())


# == The SYN queue's bound, and SYN cookies (a namespace's own sysctls) ================

#: The counters of ``/proc/net/netstat`` that :func:`syn_queue_overflow` reports
#: (its ``TcpExt`` lines; inside a network namespace they count that namespace).
SYN_QUEUE_COUNTERS = (
    "SyncookiesSent",
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDoCookies",
    "TCPReqQFullDrop",
)


def _tcp_ext_counters(proc: str = "/proc") -> dict[str, int]:
    """The ``TcpExt`` counters of ``/proc/net/netstat``: a line of names, then one of values."""
    with open(f"{proc}/net/netstat") as file:
        lines = file.read().splitlines()
    counters: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            counters.update(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
    return counters


def _set_sysctl(name: str, value: int) -> int:
    """Write a TCP sysctl of this network namespace; return its value before."""
    path = f"/proc/sys/net/ipv4/{name}"
    with open(path) as file:
        before = int(file.read())
    if before != value:
        with open(path, "w") as file:
            file.write(f"{value}\n")
    return before


@dataclass(frozen=True)
class SynQueueOverflow:
    """What a listener did with more SYNs than its SYN queue admits.

    Attributes:
        backlog: The ``listen`` backlog.
        clients: How many clients sent a SYN.
        syncookies: The namespace's ``net.ipv4.tcp_syncookies`` during the run.
        max_syn_backlog: Its ``net.ipv4.tcp_max_syn_backlog`` during the run.
        requests: Connection requests (SYN_RECV entries) on the listener's port.
        counters: How much each of :data:`SYN_QUEUE_COUNTERS` grew during the run.
    """

    backlog: int
    clients: int
    syncookies: int
    max_syn_backlog: int
    requests: int
    counters: dict[str, int]


def syn_queue_overflow(
    backlog: int,
    clients: int,
    *,
    syncookies: int = 1,
    max_syn_backlog: int | None = None,
) -> SynQueueOverflow:
    """Send ``clients`` SYNs to a ``listen(backlog)`` socket whose SYN+ACKs are never answered.

    Each client carries a socket filter (:func:`tcpref.faults.drop_program`) that
    drops every SYN|ACK it receives, so it never sends the handshake's last ACK and
    its request stays in the listener's SYN queue.  The demo sets the namespace's
    ``tcp_syncookies`` (and ``tcp_max_syn_backlog`` if given), counts the requests
    in ``/proc/net/tcp`` and reads how the counters of ``/proc/net/netstat`` grew,
    well within the clients' first retransmission timeout of 1 s.

    It changes sysctls, so it refuses to run anywhere but in a fresh network
    namespace, whose only interface is ``lo``: call it through
    :func:`tcpref.netns.run`, where any user may set them and holds the
    CAP_NET_ADMIN that a filter on a TCP socket needs.

    Raises:
        ValueError: if ``backlog`` is not 1-64 or ``clients`` not 1-64.
        DemoSetupError: outside a fresh network namespace.
        OSError: if a socket call or a sysctl write fails.
    """
    if not (isinstance(backlog, int) and 1 <= backlog <= 64):
        raise ValueError(f"backlog must be 1-64, not {backlog!r}")
    if not (isinstance(clients, int) and 1 <= clients <= 64):
        raise ValueError(f"clients must be 1-64, not {clients!r}")
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        raise DemoSetupError(
            "syn_queue_overflow changes sysctls: run it in tcpref.netns.run, not on the host"
        )
    drop_syn_ack = faults.drop_program(Flags.SYN | Flags.ACK)
    with ExitStack() as stack:
        old_cookies = _set_sysctl("tcp_syncookies", syncookies)
        stack.callback(_set_sysctl, "tcp_syncookies", old_cookies)
        if max_syn_backlog is not None:
            old_max = _set_sysctl("tcp_max_syn_backlog", max_syn_backlog)
            stack.callback(_set_sysctl, "tcp_max_syn_backlog", old_max)
        with open("/proc/sys/net/ipv4/tcp_max_syn_backlog") as file:
            max_now = int(file.read())
        listener = stack.enter_context(_listener(backlog))
        port = listener.getsockname()[1]
        before = _tcp_ext_counters()
        for _ in range(clients):
            client = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            faults.attach(client, drop_syn_ack)
            client.setblocking(False)
            client.connect_ex((LOOPBACK, port))
        # Loopback delivers each SYN and SYN+ACK within the connect_ex call; wait a
        # little all the same, far below the 1 s after which the SYNs are repeated.
        time.sleep(0.1)
        after = _tcp_ext_counters()
        return SynQueueOverflow(
            backlog=backlog,
            clients=clients,
            syncookies=syncookies,
            max_syn_backlog=max_now,
            requests=len(_on_port(port, "SYN_RECV")),
            counters={
                name: after.get(name, 0) - before.get(name, 0) for name in SYN_QUEUE_COUNTERS
            },
        )
    raise AssertionError("unreachable")  # pragma: no cover
