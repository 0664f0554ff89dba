"""SO_REUSEADDR and SO_REUSEPORT on Linux, tried on loopback.

Each option relaxes the rule that one local address and port belong to one
socket, and each relaxes it for a different holder of the port:

* :func:`listener` opens a listening socket with options set before ``bind``,
  through :mod:`tcpref.wrap`, so that a refusal carries its message.
* :func:`rebind` holds a port (by a listener, or by the TIME_WAIT entry that a
  stopped server left) and tries to listen on it again.
* :func:`open_group` binds several listeners to one port with SO_REUSEPORT;
  :func:`spread` counts how the kernel divides connections among them, and
  :func:`same_client_port` connects from one client port over and over.
* :func:`member_closes` closes one member of a group while connections wait in
  its accept queue, with ``tcp_migrate_req`` off or on, in a private network
  namespace (:func:`tcpref.netns.run`) where any user may set it.

Connections that these functions open only to count them are closed with a
reset (``SO_LINGER`` 0), so that they leave no TIME_WAIT entry behind.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tcpref import netns, wrap
from tcpref.kernel import Connection, connections

__all__ = [
    "OPTIONS",
    "DemoError",
    "Holder",
    "MemberCloses",
    "Option",
    "listener",
    "member_closes",
    "open_group",
    "rebind",
    "same_client_port",
    "spread",
]

Option = Literal["SO_REUSEADDR", "SO_REUSEPORT"]
Holder = Literal["listener", "time_wait"]

#: The two options, by name, with their ``SOL_SOCKET`` numbers on this system.
#: ``SO_REUSEPORT`` is missing where the system has none (Windows).
OPTIONS: dict[str, int] = {
    name: getattr(socket, name)
    for name in ("SO_REUSEADDR", "SO_REUSEPORT")
    if hasattr(socket, name)
}

_LOCALHOST = ("127.0.0.1", 0)
#: How long any one wait (a connection, an accept, a state) may take, in seconds.
_DEADLINE = 3.0
# Room for every connection a demo makes while none is accepted yet.
_BACKLOG = 256
# SO_LINGER on, with a time of 0: close() sends RST and keeps no TIME_WAIT.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
_MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


class DemoError(RuntimeError):
    """The kernel did not reach the state a demo waits for, within its deadline."""


def _option_numbers(options: Iterable[str]) -> list[int]:
    numbers = []
    for name in options:
        if name not in OPTIONS:
            raise ValueError(f"option must be one of {sorted(OPTIONS)}, not {name!r}")
        numbers.append(OPTIONS[name])
    return numbers


def listener(
    *options: Option, address: tuple[str, int] = _LOCALHOST, backlog: int = _BACKLOG
) -> socket.socket:
    """Listen on ``address`` with each of ``options`` switched on before ``bind``.

    The options must be set before ``bind``: that is the call they change.

    Args:
        *options: ``'SO_REUSEADDR'``, ``'SO_REUSEPORT'``, both or neither.
        address: Where to listen; port 0 lets the kernel choose a free port.
        backlog: The ``listen`` backlog.

    Returns:
        The listening socket, with a timeout of 3 s for ``accept``.

    Raises:
        ValueError: if an option is not one of :data:`OPTIONS`.
        tcpref.errors.SocketCallError: if ``bind`` or ``listen`` fails, as
            EADDRINUSE when another socket holds the port; the socket is closed.
    """
    numbers = _option_numbers(options)
    sock = wrap.tcp_socket()
    try:
        for number in numbers:
            sock.setsockopt(socket.SOL_SOCKET, number, 1)
        wrap.bind(sock, address)
        wrap.listen(sock, backlog)
    except BaseException:
        sock.close()  # a failed attempt must not leak its descriptor
        raise
    sock.settimeout(_DEADLINE)
    return sock


def _outcome(options: Sequence[Option], address: tuple[str, int]) -> str:
    """``'listening'`` if a new listener gets ``address``, else the errno's symbol."""
    try:
        listener(*options, address=address).close()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "listening"


def _wait_for(port: int, remote_port: int, state: str) -> None:
    """Wait until the kernel lists the connection from ``port`` to ``remote_port`` in ``state``."""
    deadline = time.monotonic() + _DEADLINE
    # Ends: at the deadline, each pass after a 5 ms sleep.
    while time.monotonic() < deadline:
        for conn in connections(port):
            if (conn.local[1], conn.remote[1], conn.state) == (port, remote_port, state):
                return
        time.sleep(0.005)
    raise DemoError(f"no {state} entry from port {port} to port {remote_port} appeared")


def _leave_time_wait(old: socket.socket) -> None:
    """Serve one connection on ``old`` and close it first, so TIME_WAIT is on ``old``'s port."""
    port = old.getsockname()[1]
    with socket.create_connection(old.getsockname(), timeout=_DEADLINE) as client:
        client_port = client.getsockname()[1]
        conn, _ = wrap.accept(old)
        conn.close()  # the server closes first: the TIME_WAIT will be its own
        client.recv(1)  # end of stream; then the client closes too
    _wait_for(port, client_port, "TIME_WAIT")


def rebind(holder: Holder, old: Sequence[Option], new: Sequence[Option]) -> str:
    """Let ``holder`` hold a port, then try to listen on it with a new socket.

    The old socket is a listener with the options ``old``.  With ``holder``
    ``'listener'`` it keeps listening; with ``'time_wait'`` it serves one
    connection, closes it first (so that the connection's TIME_WAIT entry is on
    the listener's port) and stops, as a server does before it is restarted.

    Args:
        holder: ``'listener'`` or ``'time_wait'``.
        old: The options the old listener set before its ``bind``.
        new: The options the new socket sets before its ``bind``.

    Returns:
        ``'listening'`` if the new socket listens on the port, or the symbol of the
        errno its ``bind`` failed with, such as ``'EADDRINUSE'``.

    Raises:
        ValueError: if ``holder`` or an option is unknown.
        DemoError: if the TIME_WAIT entry does not appear in time.
    """
    if holder not in ("listener", "time_wait"):
        raise ValueError(f"holder must be 'listener' or 'time_wait', not {holder!r}")
    _option_numbers(new)  # refuse a bad name before any socket is opened
    with listener(*old) as first:
        address = first.getsockname()
        if holder == "listener":
            return _outcome(new, address)
        _leave_time_wait(first)
    return _outcome(new, address)


def open_group(count: int) -> list[socket.socket]:
    """Open ``count`` listeners on one port of 127.0.0.1, each with SO_REUSEPORT.

    The first binds port 0, and the others the port the kernel gave it.  The
    caller closes them.

    Raises:
        ValueError: if ``count`` is not 1 to 16.
        tcpref.errors.SocketCallError: if a ``bind`` fails; all are closed.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 16:
        raise ValueError(f"count must be 1 to 16, not {count!r}")
    group = [listener("SO_REUSEPORT")]
    try:
        address = group[0].getsockname()
        for _ in range(count - 1):
            group.append(listener("SO_REUSEPORT", address=address))
    except BaseException:
        for sock in group:
            sock.close()
        raise
    return group


def _reset_on_close(*socks: socket.socket) -> None:
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        sock.close()


def _accept_one(group: Sequence[socket.socket]) -> tuple[int, socket.socket]:
    """Wait for a connection on any member; return the member's index and the connection."""
    ready, _, _ = select.select(list(group), [], [], _DEADLINE)
    if not ready:
        raise DemoError(f"no member of the group had a connection within {_DEADLINE:g} s")
    conn, _ = wrap.accept(ready[0])
    return list(group).index(ready[0]), conn


def _check_group(group: Sequence[socket.socket], times: int, what: str) -> None:
    if not group:
        raise ValueError("the group has no listener")
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 1000:
        raise ValueError(f"{what} must be 1 to 1000, not {times!r}")


def spread(group: Sequence[socket.socket], clients: int) -> tuple[int, ...]:
    """Connect ``clients`` clients, one after another, and count who accepts each.

    Each client connects from a port the kernel chooses, and is accepted before
    the next one connects, so exactly one member has a connection waiting; then
    both ends are closed with a reset.

    Args:
        group: Listeners sharing one port, as from :func:`open_group`.
        clients: How many connections to make, 1 to 1000.

    Returns:
        How many connections each member accepted, in the order of ``group``.

    Raises:
        ValueError: if ``group`` is empty or ``clients`` out of range.
        DemoError: if a connection reaches no member in time.
    """
    _check_group(group, clients, "clients")
    address = group[0].getsockname()
    counts = [0] * len(group)
    for _ in range(clients):
        client = socket.create_connection(address, timeout=_DEADLINE)
        try:
            index, conn = _accept_one(group)
            counts[index] += 1
            _reset_on_close(conn)
        finally:
            _reset_on_close(client)
    return tuple(counts)


def same_client_port(group: Sequence[socket.socket], times: int) -> tuple[int, ...]:
    """Connect ``times`` times from one client port; say which member accepted each.

    Every connection has the same four addresses and ports.  Both ends of each are
    closed with a reset, which frees the 4-tuple at once (no TIME_WAIT), so the
    next client can bind the same port.

    Returns:
        The index in ``group`` of the member that accepted each connection.

    Raises:
        ValueError: if ``group`` is empty or ``times`` is not 1 to 1000.
        DemoError: if a connection reaches no member in time.
    """
    _check_group(group, times, "times")
    address = group[0].getsockname()
    source = _LOCALHOST
    chosen = []
    for _ in range(times):
        client = wrap.tcp_socket()
        try:
            wrap.bind(client, source)
            source = client.getsockname()  # the first port the kernel chose, kept
            wrap.connect(client, address, timeout=_DEADLINE)
            index, conn = _accept_one(group)
            chosen.append(index)
            _reset_on_close(conn)
        finally:
            _reset_on_close(client)
    return tuple(chosen)


@dataclass(frozen=True)
class MemberCloses:
    """What became of the connections queued at a member of a group that closed.

    Attributes:
        default_migrate_req: ``tcp_migrate_req`` in the fresh namespace, before
            the demo set it.
        migrate_req: The value the demo ran with.
        clients: How many clients connected, none of them accepted before the close.
        queued: How many of them waited in the closed member's accept queue, read
            from ``/proc/net/tcp`` just before the close.
        reset: How many clients then received a reset.
        accepted_by_others: How many the members left open accepted.
    """

    default_migrate_req: int
    migrate_req: int
    clients: int
    queued: int
    reset: int
    accepted_by_others: int


def member_closes(migrate_req: int, members: int = 2, clients: int = 32) -> MemberCloses:
    """Close one member of a SO_REUSEPORT group that has connections waiting.

    Runs in a private network namespace of its own (:func:`tcpref.netns.run`),
    whose ``net.ipv4.tcp_migrate_req`` it sets: the host's is never touched.
    ``clients`` clients connect; the kernel spreads them over the members' accept
    queues; nobody accepts.  The first member closes.  With ``migrate_req`` 0 (the
    kernel's default) the connections in its queue are reset; with 1 the kernel
    moves them to the queue of another member.

    Args:
        migrate_req: 0 or 1.
        members: The size of the group, 2 to 8.
        clients: How many clients connect, 1 to 64.

    Returns:
        What the clients and the remaining members saw.

    Raises:
        ValueError: if an argument is out of range.
        tcpref.netns.NamespaceUnavailableError: if no namespace can be made here.
        DemoError: if the connections do not settle in time.
    """
    if isinstance(migrate_req, bool) or migrate_req not in (0, 1):
        raise ValueError(f"migrate_req must be 0 or 1, not {migrate_req!r}")
    if isinstance(members, bool) or not isinstance(members, int) or not 2 <= members <= 8:
        raise ValueError(f"members must be 2 to 8, not {members!r}")
    if isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= 64:
        raise ValueError(f"clients must be 1 to 64, not {clients!r}")
    return netns.run(_member_closes, migrate_req, members, clients)


def _set_migrate_req(value: int) -> int:
    """Set this namespace's ``tcp_migrate_req``; return its value before."""
    if not netns.inside():
        raise DemoError("member_closes sets a sysctl: it runs only in tcpref.netns.run")
    with open(_MIGRATE_REQ) as setting:
        before = int(setting.read())
    with open(_MIGRATE_REQ, "w") as setting:
        setting.write(f"{value}\n")
    return before


def _listeners_on(port: int) -> list[Connection]:
    return [c for c in connections(port) if c.local[1] == port and c.state == "LISTEN"]


def _wait_until_queued(port: int, clients: int) -> list[Connection]:
    """Wait until the members' accept queues hold all ``clients``; return their entries."""
    deadline = time.monotonic() + _DEADLINE
    # Ends: at the deadline, each pass after a 5 ms sleep.
    while time.monotonic() < deadline:
        entries = _listeners_on(port)
        if sum(entry.rx_queue for entry in entries) == clients:
            return entries
        time.sleep(0.005)
    raise DemoError(f"the {clients} connections did not all reach an accept queue")


def _was_reset(client: socket.socket) -> bool:
    """Whether a reset has arrived on ``client``, without waiting or reading data."""
    try:
        client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return False


def _accept_ready(sock: socket.socket) -> socket.socket | None:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return None
    return conn


def _member_closes(migrate_req: int, members: int, clients: int) -> MemberCloses:
    default = _set_migrate_req(migrate_req)
    group = open_group(members)
    opened: list[socket.socket] = []
    try:
        port = group[0].getsockname()[1]
        for _ in range(clients):
            client = socket.create_connection(group[0].getsockname(), timeout=_DEADLINE)
            opened.append(client)
            client.setblocking(False)  # with a timeout, recv would wait for data first
        entries = _wait_until_queued(port, clients)
        closing_inode = os.fstat(group[0].fileno()).st_ino
        queued = sum(e.rx_queue for e in entries if e.inode == closing_inode)
        group.pop(0).close()
        for sock in group:
            sock.setblocking(False)
        reset: set[int] = set()
        accepted = 0
        deadline = time.monotonic() + _DEADLINE
        # Ends: once every client is either reset or accepted, or at the deadline.
        while len(reset) + accepted < clients:
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{clients - len(reset) - accepted} clients neither reset nor accepted"
                )
            for sock in group:
                # Ends: each pass accepts one connection, and there are at most `clients`.
                while (conn := _accept_ready(sock)) is not None:
                    opened.append(conn)
                    accepted += 1
            # The first `clients` sockets opened are the clients; a reset counts once.
            reset.update([i for i in range(clients) if i not in reset and _was_reset(opened[i])])
            time.sleep(0.002)
        return MemberCloses(default, migrate_req, clients, queued, len(reset), accepted)
    finally:
        for sock in opened + group:
            sock.close()
