"""Half-close, resets and crashes, each set up on loopback and observed in the kernel.

Every function here builds one connection on 127.0.0.1, does one thing to it
(``shutdown``, a ``close`` with unread data, ``kill -9`` of the process that holds
it, keepalive options), and returns what it saw as a frozen dataclass: the
states ``/proc/net/tcp`` listed for each end, what each ``recv`` returned, and
errors as errno symbols such as ``'ECONNRESET'``.

States are read with :func:`tcpref.kernel.state_of`; ``None`` means the kernel
lists no such socket any more.  A socket that received a reset, or whose owner
closed it after a reset, is in the CLOSE state, which ``/proc/net/tcp`` does not
list: so ``None`` is what a reset leaves behind.

Each wait polls the kernel's tables until a deadline instead of sleeping a fixed
time, every socket is closed and every child reaped before a function returns.
A function that cannot set up its scenario raises :class:`ScenarioError`.
Linux only: the states come from ``/proc``, and the socket options are Linux's.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from tcpref.errors import errno_symbol
from tcpref.kernel import connections, state_of, sysctls

__all__ = [
    "LOOPBACK",
    "Addresses",
    "HalfClose",
    "KeepaliveSettings",
    "KilledProcess",
    "Refused",
    "Reset",
    "ScenarioError",
    "SharedClose",
    "ShutdownBoth",
    "ShutdownRead",
    "UserTimeout",
    "close_shared",
    "connect_refused",
    "half_close",
    "keepalive_detection_time",
    "keepalive_settings",
    "kill_holder",
    "reset",
    "shutdown_both",
    "shutdown_read",
    "user_timeout",
]

#: The only address these scenarios use; the kernel picks the ports.
LOOPBACK = "127.0.0.1"

# How long a scenario waits for the kernel to reach a state, or for a read.
_DEADLINE = 5.0
# How long "nothing arrives" is watched before it counts as nothing.
_QUIET = 0.2
# How often the kernel's table is read while waiting.
_POLL = 0.005

#: A connection end's ``(local, remote)`` addresses, as ``getsockname()`` and
#: ``getpeername()`` give them.  Kept apart from the socket because a socket that
#: was reset or closed can no longer say who its peer was.
Addresses = tuple[tuple[Any, ...], tuple[Any, ...]]


class ScenarioError(RuntimeError):
    """A scenario could not be set up, or the kernel never reached a state it needs.

    The message says which step failed and what was seen instead.
    """


# -- helpers --------------------------------------------------------------------


def _addresses(sock: socket.socket) -> Addresses:
    return sock.getsockname(), sock.getpeername()


def _state(end: Addresses) -> str | None:
    return state_of(*end)


def _wait_for(description: str, probe: Callable[[], Any], wanted: Callable[[Any], bool]) -> Any:
    """Call ``probe`` until ``wanted`` accepts its value; give up after ``_DEADLINE``."""
    deadline = time.monotonic() + _DEADLINE
    value = probe()
    # Ends: each pass sleeps _POLL, and the deadline is fixed.
    while not wanted(value):
        if time.monotonic() > deadline:
            raise ScenarioError(f"waited {_DEADLINE} s for {description}; last saw {value!r}")
        time.sleep(_POLL)
        value = probe()
    return value


def _wait_for_state(end: Addresses, wanted: str | None) -> str | None:
    result: str | None = _wait_for(
        f"{end[0]} -> {end[1]} to be {wanted}", lambda: _state(end), lambda s: s == wanted
    )
    return result


def _wait_for_unread(end: Addresses, count: int) -> None:
    """Wait until ``count`` bytes sit unread in the receive queue of ``end``."""

    def unread() -> int | None:
        for conn in connections(end[0][1]):
            if conn.local[1] == end[0][1] and conn.remote[1] == end[1][1]:
                return conn.rx_queue
        return None

    _wait_for(f"{count} unread bytes at {end[0]}", unread, lambda n: n == count)


def _connected_pair(stack: ExitStack) -> tuple[socket.socket, socket.socket]:
    """A connected ``(client, server)`` pair, both closed when ``stack`` closes."""
    listener = stack.enter_context(socket.create_server((LOOPBACK, 0)))
    listener.settimeout(_DEADLINE)
    client = stack.enter_context(socket.create_connection(listener.getsockname(), _DEADLINE))
    server = stack.enter_context(listener.accept()[0])
    server.settimeout(_DEADLINE)
    # The listener is not needed any more; closing it keeps the tables short.
    listener.close()
    return client, server


def _read(sock: socket.socket, size: int = 1024) -> bytes | str:
    """``recv`` once: the bytes, or the errno symbol of the error it raised."""
    try:
        return sock.recv(size)
    except OSError as exc:
        return errno_symbol(exc.errno)


def _read_if_any(sock: socket.socket) -> bytes | str | None:
    """Read only if something (data, end of stream, an error) arrives within ``_QUIET``."""
    readable, _, _ = select.select([sock], [], [], _QUIET)
    return _read(sock) if readable else None


def _send(sock: socket.socket, data: bytes) -> int | str:
    """``send`` once: the count sent, or the errno symbol of the error it raised."""
    try:
        return sock.send(data)
    except OSError as exc:
        return errno_symbol(exc.errno)


def _send_until_error(sock: socket.socket, attempts: int = 10) -> str | None:
    """Send a few times, returning the first error's symbol (``None`` if none came).

    The first send after a reset can still succeed (the reset may not have been
    seen yet); the bound keeps a peer that never resets from looping forever.
    """
    for _ in range(attempts):
        result = _send(sock, b"x")
        if isinstance(result, str):
            return result
        time.sleep(_POLL)
    return None


# -- half-close -------------------------------------------------------------------


@dataclass(frozen=True)
class HalfClose:
    """What :func:`half_close` saw.

    Attributes:
        server_read: Everything the server read: the request, then ``b''``.
        client_state: The client's state after its ``shutdown(SHUT_WR)`` was
            acknowledged (``'FIN_WAIT2'``).
        server_state: The server's state then, while it still sends
            (``'CLOSE_WAIT'``).
        reply: What the half-closed client received from the server.
        client_send: What a ``send`` on the half-closed client gave: an errno
            symbol (``'EPIPE'``).
        client_read_after_server_close: What the client read once the server closed.
        client_state_at_end: The client's state once both sides are done
            (``'TIME_WAIT'``).
    """

    server_read: tuple[bytes, ...]
    client_state: str | None
    server_state: str | None
    reply: bytes
    client_send: int | str
    client_read_after_server_close: bytes | str
    client_state_at_end: str | None


def half_close(request: bytes = b"2 + 2", reply: bytes = b"4") -> HalfClose:
    """Send a request, ``shutdown(SHUT_WR)``, and still receive the reply.

    The client's end of stream (its FIN) tells the server the request is
    complete; the server reads ``b''`` yet can still send.  The states are held
    because the server does not close until it has answered.

    Raises:
        ScenarioError: if the kernel does not reach the expected states in time.
        OSError: if a socket call fails unexpectedly.
    """
    with ExitStack() as stack:
        client, server = _connected_pair(stack)
        client_end, server_end = _addresses(client), _addresses(server)
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)  # sends FIN: "no more from me"
        server_read = []
        # Ends: a request of n bytes takes at most n reads before b''.
        for _ in range(len(request) + 1):
            chunk = server.recv(1024)
            server_read.append(chunk)
            if not chunk:
                break
        client_state = _wait_for_state(client_end, "FIN_WAIT2")
        server_state = _state(server_end)
        server.sendall(reply)  # the half-closed connection still carries this
        received = client.recv(1024)
        client_send = _send(client, b"more")
        server.close()
        after_close = _read(client)
        state_at_end = _wait_for_state(client_end, "TIME_WAIT")
    return HalfClose(
        server_read=tuple(server_read),
        client_state=client_state,
        server_state=server_state,
        reply=received,
        client_send=client_send,
        client_read_after_server_close=after_close,
        client_state_at_end=state_at_end,
    )


@dataclass(frozen=True)
class ShutdownRead:
    """What :func:`shutdown_read` saw.

    Attributes:
        first_read: The client's ``recv`` right after ``shutdown(SHUT_RD)``.
        client_state: The client's state then.
        server_state: The server's state then: no FIN was sent.
        server_send: What the server's ``send`` of ``late`` returned after that
            (the count of bytes, or an errno symbol).
        queued: How many of those bytes the kernel queued for the client.
        late_read: What the client's next ``recv`` returned.
        read_when_empty: What a ``recv`` returned once the queue was empty again.
        client_send: What the client's own ``send`` returned.
        server_read_at_close: What the server read after the client closed with
            unread data in its queue.
    """

    first_read: bytes | str
    client_state: str | None
    server_state: str | None
    server_send: int | str
    queued: int
    late_read: bytes | str
    read_when_empty: bytes | str
    client_send: int | str
    server_read_at_close: bytes | str


def shutdown_read(late: bytes = b"late data") -> ShutdownRead:
    """``shutdown(SHUT_RD)``, then let data arrive anyway, and see what Linux does.

    Nothing is sent to the peer: TCP has no segment that says "stop sending".
    On Linux, ``recv`` returns ``b''`` at once while nothing is queued, but data
    that arrives later is still acknowledged and queued, and ``recv`` returns it.

    Raises:
        ScenarioError: if the data never shows up in the client's receive queue.
        OSError: if a socket call fails unexpectedly.
    """
    with ExitStack() as stack:
        client, server = _connected_pair(stack)
        client_end, server_end = _addresses(client), _addresses(server)
        client.shutdown(socket.SHUT_RD)
        first_read = _read(client)
        client_state, server_state = _state(client_end), _state(server_end)
        server_send = _send(server, late)
        _wait_for_unread(client_end, len(late))
        late_read = _read(client)
        empty_read = _read(client)
        client_send = _send(client, b"hello")
        server.recv(1024)
        server.sendall(late)
        _wait_for_unread(client_end, len(late))
        client.close()  # with data unread: a reset
        at_close = _read(server)
    return ShutdownRead(
        first_read=first_read,
        client_state=client_state,
        server_state=server_state,
        server_send=server_send,
        queued=len(late),
        late_read=late_read,
        read_when_empty=empty_read,
        client_send=client_send,
        server_read_at_close=at_close,
    )


@dataclass(frozen=True)
class ShutdownBoth:
    """What :func:`shutdown_both` saw.

    Attributes:
        client_read: The client's own ``recv`` after ``shutdown(SHUT_RDWR)``.
        server_read: The server's ``recv``: end of stream.
        client_state: The client's state (``'FIN_WAIT2'``).
        server_state: The server's state (``'CLOSE_WAIT'``).
        client_send: The client's ``send`` afterwards, as an errno symbol.
    """

    client_read: bytes | str
    server_read: bytes | str
    client_state: str | None
    server_state: str | None
    client_send: int | str


def shutdown_both() -> ShutdownBoth:
    """``shutdown(SHUT_RDWR)``: both directions at once, the socket still open.

    Raises:
        ScenarioError: if the kernel does not reach the expected states in time.
        OSError: if a socket call fails unexpectedly.
    """
    with ExitStack() as stack:
        client, server = _connected_pair(stack)
        client_end, server_end = _addresses(client), _addresses(server)
        client.shutdown(socket.SHUT_RDWR)
        client_read, server_read = _read(client), _read(server)
        client_state = _wait_for_state(client_end, "FIN_WAIT2")
        server_state = _state(server_end)
        client_send = _send(client, b"x")
    return ShutdownBoth(client_read, server_read, client_state, server_state, client_send)


# -- close versus shutdown on a descriptor shared with a child --------------------


@dataclass(frozen=True)
class SharedClose:
    """What :func:`close_shared` saw.

    Attributes:
        how: ``'close'`` or ``'shutdown'``: what the parent did.
        peer_read: What the peer read within a short wait: ``b''`` for end of
            stream, ``None`` if nothing arrived.
        state_while_child_holds: The parent's connection end's state while the
            child still holds the descriptor.
        peer_state: The peer's state then.
        peer_read_after_child_exit: What the peer read after the child exited.
        state_after_child_exit: The connection end's state then.
        child_exit_status: The child's exit status, from ``waitpid``.
    """

    how: str
    peer_read: bytes | str | None
    state_while_child_holds: str | None
    peer_state: str | None
    peer_read_after_child_exit: bytes | str | None
    state_after_child_exit: str | None
    child_exit_status: int


def _fork_holder(drop: list[socket.socket]) -> tuple[int, int]:
    """Fork a child that holds every open descriptor until told to exit through a pipe.

    Returns ``(pid, write end of the pipe)``; closing the pipe tells the child to
    exit.  The child closes the sockets in ``drop`` first, so only the one it is
    meant to hold is shared.  It also exits by itself after ``_DEADLINE`` seconds, so a parent that
    fails cannot leave it behind for long.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(write_end)
            for sock in drop:
                sock.close()
            select.select([read_end], [], [], _DEADLINE)
            status = 0
        finally:
            os._exit(status)
    os.close(read_end)
    return pid, write_end


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return status


def close_shared(how: str) -> SharedClose:
    """Close (or shut down) a connected socket that a forked child also holds.

    ``close`` only drops this process's descriptor: the kernel sends FIN when
    the *last* descriptor goes, so the peer sees nothing while the child lives.
    ``shutdown(SHUT_WR)`` acts on the connection itself and sends FIN at once.
    The child is then told to exit and is reaped.

    Args:
        how: ``'close'`` or ``'shutdown'``.

    Raises:
        ValueError: if ``how`` is neither.
        ScenarioError: if the kernel does not reach the expected state in time.
        OSError: if ``fork`` or a socket call fails.
    """
    if how not in ("close", "shutdown"):
        raise ValueError(f"how must be 'close' or 'shutdown', not {how!r}")
    with ExitStack() as stack:
        peer, conn = _connected_pair(stack)
        conn_end, peer_end = _addresses(conn), _addresses(peer)
        pid, pipe = _fork_holder(drop=[peer])
        try:
            if how == "shutdown":
                conn.shutdown(socket.SHUT_WR)
            conn.close()
            peer_read = _read_if_any(peer)
            holding = _wait_for_state(conn_end, "FIN_WAIT2" if how == "shutdown" else "ESTABLISHED")
            peer_state = _state(peer_end)
        finally:
            os.close(pipe)  # the child exits ...
            status = _reap(pid)  # ... and is reaped
        # The last descriptor is gone: now the kernel sends FIN in any case.
        peer_read_after = peer_read if peer_read == b"" else _read(peer)
        after = _wait_for_state(conn_end, "FIN_WAIT2")
    return SharedClose(how, peer_read, holding, peer_state, peer_read_after, after, status)


# -- resets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reset:
    """What :func:`reset` saw: the kernel's tables before and after a close.

    The *closer* is the server end that closes; the *peer* is the client.

    Attributes:
        how: ``'orderly'``, ``'unread data'`` or ``'linger 0'``.
        states_before: ``(closer, peer)`` states just before the close.
        states_after_close: ``(closer, peer)`` states right after it.
        peer_read: What the peer's ``recv`` gave: ``b''`` or ``'ECONNRESET'``.
        peer_send: After a reset, the first error a few ``send`` calls by the
            peer raised (``'EPIPE'``); ``None`` after an orderly close, where it
            is not tried.
        left_on_port: The states of the connection's two ends left once the
            peer has closed too: a TIME_WAIT after an orderly close, nothing
            after a reset.  (Older, unrelated entries may share the port number;
            they are not counted.)
    """

    how: str
    states_before: tuple[str | None, str | None]
    states_after_close: tuple[str | None, str | None]
    peer_read: bytes | str
    peer_send: str | None
    left_on_port: tuple[str, ...]


_RESET_WAYS = ("orderly", "unread data", "linger 0")


def reset(how: str) -> Reset:
    """Close the server end of a connection in one of three ways, and watch the tables.

    * ``'orderly'``: a plain ``close`` with nothing unread: FIN.
    * ``'unread data'``: a ``close`` while the client's bytes sit unread: RST.
    * ``'linger 0'``: ``SO_LINGER`` on with a zero timeout, then ``close``: RST.

    Args:
        how: One of the three ways above.

    Raises:
        ValueError: if ``how`` is not one of them.
        ScenarioError: if the kernel does not reach the expected states in time.
        OSError: if a socket call fails unexpectedly.
    """
    if how not in _RESET_WAYS:
        raise ValueError(f"how must be one of {_RESET_WAYS}, not {how!r}")
    with ExitStack() as stack:
        client, server = _connected_pair(stack)
        server_end, client_end = _addresses(server), _addresses(client)
        port = server_end[0][1]
        if how == "unread data":
            client.sendall(b"never read")
            _wait_for_unread(server_end, len(b"never read"))
        if how == "linger 0":
            server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        before = (_state(server_end), _state(client_end))
        server.close()
        # A FIN leaves the peer in CLOSE_WAIT; a reset leaves it unlisted (None).
        peer_after = _wait_for_state(client_end, "CLOSE_WAIT" if how == "orderly" else None)
        # The peer acknowledges a FIN a moment after it arrives (Linux delays that
        # ACK by a tick or more), so the closer is in FIN_WAIT1 until then.
        closer_after = _wait_for_state(server_end, "FIN_WAIT2" if how == "orderly" else None)
        after = (closer_after, peer_after)
        peer_read = _read(client)
        # After a FIN, a send would itself draw a reset (the closer is gone), so
        # only the reset cases try it.
        peer_send = None if how == "orderly" else _send_until_error(client)
        client.close()
        # After a FIN exchange the closer's TIME_WAIT stays; wait until the
        # peer's LAST_ACK is gone.  After a reset nothing should stay.
        expected = ("TIME_WAIT",) if how == "orderly" else ()
        ends = (server_end, client_end)
        left: tuple[str, ...] = _wait_for(
            f"the sockets on port {port} to be {expected}",
            lambda: tuple(c.state for c in connections(port) if (c.local, c.remote) in ends),
            lambda states: states == expected,
        )
    return Reset(how, before, after, peer_read, peer_send, left)


@dataclass(frozen=True)
class Refused:
    """What :func:`connect_refused` saw.

    Attributes:
        error: The errno symbol ``connect`` failed with (``'ECONNREFUSED'``).
        listed_on_port: The states of the attempt's sockets afterwards: those
            whose local port is the refusing port or the client's.  The client's
            socket is not listed: it never left CLOSED for long.  (An earlier
            connection's TIME_WAIT can have the refusing port as its *remote*
            port, from when some client used it; that is not this attempt's.)
    """

    error: str
    listed_on_port: tuple[str, ...]


def connect_refused() -> Refused:
    """Connect to a port that is bound but not listening: the SYN gets a reset.

    Raises:
        ScenarioError: if the connection unexpectedly succeeds.
        OSError: if a socket call other than ``connect`` fails.
    """
    with ExitStack() as stack:
        holder = stack.enter_context(socket.socket())  # holds the port, never listens
        holder.bind((LOOPBACK, 0))
        port = holder.getsockname()[1]
        client = stack.enter_context(socket.socket())
        client.bind((LOOPBACK, 0))  # its port now, so that its socket can be looked for
        client_port = client.getsockname()[1]
        client.settimeout(_DEADLINE)
        try:
            client.connect((LOOPBACK, port))
        except OSError as exc:
            error = errno_symbol(exc.errno)
        else:
            raise ScenarioError(f"connect to {LOOPBACK}:{port} succeeded; nothing should listen")
        ours = (port, client_port)
        listed = tuple(conn.state for conn in connections(port) if conn.local[1] in ours)
    return Refused(error, listed)


# -- crashes: a killed process, keepalive, TCP_USER_TIMEOUT -------------------------


@dataclass(frozen=True)
class KilledProcess:
    """What :func:`kill_holder` saw.

    Attributes:
        unread: How many bytes the killed process left unread.
        states_before: ``(killed side, peer)`` states before the kill.
        killed_by: The signal's name, from ``waitpid``.
        peer_read: What the peer's ``recv`` gave: ``b''`` or ``'ECONNRESET'``.
        states_after: ``(killed side, peer)`` states after the kill.
        orphaned: Whether the killed side's socket is still listed with inode 0,
            that is, held by the kernel alone; ``None`` if it is not listed.
    """

    unread: int
    states_before: tuple[str | None, str | None]
    killed_by: str
    peer_read: bytes | str
    states_after: tuple[str | None, str | None]
    orphaned: bool | None


def kill_holder(unread: bytes = b"") -> KilledProcess:
    """``kill -9`` the only process holding a connection, and read at the peer.

    A child process holds the server end (the parent closes its copy); the
    parent keeps the client end.  SIGKILL gives the child no chance to run any
    code, yet the kernel closes its descriptors, and closing the last one starts
    the normal teardown, or a reset if data was left unread.

    Args:
        unread: Bytes the client sends first, which the child never reads.

    Raises:
        ScenarioError: if the kernel does not reach the expected states in time.
        OSError: if ``fork``, ``kill`` or a socket call fails.
    """
    with ExitStack() as stack:
        client, server = _connected_pair(stack)
        server_end, client_end = _addresses(server), _addresses(client)
        pid, pipe = _fork_holder(drop=[client])
        try:
            server.close()  # the child's descriptor is now the only one
            if unread:
                client.sendall(unread)
                _wait_for_unread(server_end, len(unread))
            before = (_state(server_end), _state(client_end))
            os.kill(pid, signal.SIGKILL)
        finally:
            os.close(pipe)
            status = _reap(pid)
        killed_by = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else "-"
        peer_read = _read(client)
        closer_after = _wait_for_state(server_end, None if unread else "FIN_WAIT2")
        after = (closer_after, _state(client_end))
        listed = [c for c in connections(server_end[0][1]) if c.remote[1] == client_end[0][1]]
        orphaned = listed[0].inode == 0 if listed else None
    return KilledProcess(len(unread), before, killed_by, peer_read, after, orphaned)


def keepalive_detection_time(idle: int, interval: int, count: int) -> int:
    """Seconds from the last segment until keepalive declares a silent peer dead.

    The first probe leaves after ``idle`` seconds of silence; then ``count``
    probes go unanswered, ``interval`` seconds apart, and the kernel gives up when
    the last one's interval runs out.

    >>> keepalive_detection_time(7200, 75, 9)
    7875

    Raises:
        TypeError: if a value is not an int.
        ValueError: if a value is below 1.
    """
    for name, value in (("idle", idle), ("interval", interval), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, not {value!r}")
    return idle + interval * count


@dataclass(frozen=True)
class KeepaliveSettings:
    """What :func:`keepalive_settings` read back.

    Attributes:
        sysctl: ``(tcp_keepalive_time, tcp_keepalive_intvl, tcp_keepalive_probes)``
            from ``/proc/sys``, the defaults for every socket.
        inherited: ``(SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)`` read
            from a fresh connected socket.
        chosen: The same four read back after ``setsockopt``.
        timer_before: The pending timer ``/proc/net/tcp`` lists for the socket
            before keepalive is on.
        timer_after: The pending timer after: ``'keepalive'``.
        detection_default: :func:`keepalive_detection_time` with the sysctl values.
        detection_chosen: :func:`keepalive_detection_time` with the chosen values.
    """

    sysctl: tuple[int, int, int]
    inherited: tuple[int, int, int, int]
    chosen: tuple[int, int, int, int]
    timer_before: str
    timer_after: str
    detection_default: int
    detection_chosen: int


_KEEPALIVE_OPTIONS = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", 4)),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", 5)),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", 6)),
)


def _keepalive_options(sock: socket.socket) -> tuple[int, int, int, int]:
    on, idle, interval, count = (sock.getsockopt(*option) for option in _KEEPALIVE_OPTIONS)
    return on, idle, interval, count


def _timer(end: Addresses) -> str:
    for conn in connections(end[0][1]):
        if conn.local[1] == end[0][1] and conn.remote[1] == end[1][1]:
            return conn.timer
    raise ScenarioError(f"{end[0]} -> {end[1]} is not in /proc/net/tcp")


def keepalive_settings(idle: int = 10, interval: int = 2, count: int = 3) -> KeepaliveSettings:
    """Switch keepalive on for one socket with its own timings, and read them back.

    Nothing is waited for: keepalive on loopback would only show probes being
    answered.  What the kernel shows at once is the keepalive timer armed.

    Args:
        idle: ``TCP_KEEPIDLE``, seconds of silence before the first probe (1-32767).
        interval: ``TCP_KEEPINTVL``, seconds between probes (1-32767).
        count: ``TCP_KEEPCNT``, unanswered probes before giving up (1-127).

    Raises:
        TypeError: if a value is not an int.
        ValueError: if a value is out of the kernel's range.
        OSError: if a socket call fails.
    """
    keepalive_detection_time(idle, interval, count)  # checks the types
    for name, value, most in (("idle", idle, 32767), ("interval", interval, 32767)):
        if value > most:
            raise ValueError(f"{name} must be in range 1-{most}, not {value!r}")
    if count > 127:
        raise ValueError(f"count must be in range 1-127, not {count!r}")
    settings = sysctls()
    defaults = tuple(
        settings[name].value
        for name in ("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes")
    )
    default_idle, default_interval, default_count = defaults
    if not (
        isinstance(default_idle, int)
        and isinstance(default_interval, int)
        and isinstance(default_count, int)
    ):
        raise ScenarioError(f"keepalive sysctls are missing or not numbers: {defaults!r}")
    with ExitStack() as stack:
        client, _server = _connected_pair(stack)
        end = _addresses(client)
        inherited = _keepalive_options(client)
        timer_before = _timer(end)
        for option, value in zip(_KEEPALIVE_OPTIONS, (1, idle, interval, count), strict=True):
            client.setsockopt(*option, value)
        chosen = _keepalive_options(client)
        timer_after = _timer(end)
    return KeepaliveSettings(
        sysctl=(default_idle, default_interval, default_count),
        inherited=inherited,
        chosen=chosen,
        timer_before=timer_before,
        timer_after=timer_after,
        detection_default=keepalive_detection_time(default_idle, default_interval, default_count),
        detection_chosen=keepalive_detection_time(idle, interval, count),
    )


@dataclass(frozen=True)
class UserTimeout:
    """What :func:`user_timeout` saw.

    Attributes:
        milliseconds: The ``TCP_USER_TIMEOUT`` that was set.
        timer_while_stalled: The sender's pending timer while the peer's window
            is closed (``'zero_window_probe'``).
        error: The errno symbol the sender's socket reported (``'ETIMEDOUT'``).
        seconds: How long after the window closed the error came, rounded to
            0.1 s (at least the timeout; the kernel checks when a probe is due).
        sender_state: The sender's state afterwards: ``None``, gone.
        receiver_state: The receiver's state afterwards: still ``'ESTABLISHED'``,
            because giving up sends nothing.
    """

    milliseconds: int
    timer_while_stalled: str
    error: str
    seconds: float
    sender_state: str | None
    receiver_state: str | None


def user_timeout(milliseconds: int = 500) -> UserTimeout:
    """Let ``TCP_USER_TIMEOUT`` end a connection whose peer stopped reading.

    On loopback no segment is ever lost, so the case ``TCP_USER_TIMEOUT`` is
    made for (data that stays unacknowledged) cannot be staged.  A receiver that
    stops reading can: its buffer fills, it advertises a zero window, and the
    sender probes it.  Linux applies the user timeout to that probing too
    (``tcp_probe_timer`` in ``net/ipv4/tcp_timer.c``), so the sender gives up
    with ETIMEDOUT while the receiver is alive and answering.

    Args:
        milliseconds: The timeout, 100-3000 ms (kept short: a test waits for it).

    Raises:
        TypeError: if ``milliseconds`` is not an int.
        ValueError: if it is out of range.
        ScenarioError: if the window never closes or no error comes in time.
        OSError: if a socket call fails.
    """
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int):
        raise TypeError(f"milliseconds must be an int, not {milliseconds!r}")
    if not 100 <= milliseconds <= 3000:
        raise ValueError(f"milliseconds must be in range 100-3000, not {milliseconds!r}")
    with ExitStack() as stack:
        sender, receiver = _connected_pair(stack)
        sender_end, receiver_end = _addresses(sender), _addresses(receiver)
        sender.setblocking(False)
        chunk = b"x" * 65536
        # Ends: the buffers of both ends hold a few MiB at most; the bound is far above.
        for _ in range(10_000):
            try:
                sender.send(chunk)
            except BlockingIOError:
                break
        else:
            raise ScenarioError("the receiver's window never closed")
        stalled = time.monotonic()
        timer = _wait_for(
            "the zero-window probe timer",
            lambda: _timer(sender_end),
            lambda t: t == "zero_window_probe",
        )
        # Set only now: set earlier, a slow machine could see the connection time
        # out before it had read the probe timer in /proc.
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        code = _wait_for(
            "the user timeout",
            lambda: sender.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR),
            lambda c: c != 0,
        )
        seconds = round(time.monotonic() - stalled, 1)
        states = (_state(sender_end), _state(receiver_end))
    return UserTimeout(milliseconds, timer, errno.errorcode[code], seconds, *states)
