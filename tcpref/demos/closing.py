"""How TCP connections end, watched in the kernel's own tables (Linux).

Each function here plays one ending on loopback and returns what the kernel
reported on the way, read from ``/proc/net/tcp`` with :mod:`tcpref.kernel`:

* :func:`teardown`: the four-way close, started by either side.
* :func:`hold_fin_wait1`, :func:`hold_last_ack` and :func:`simultaneous_close`:
  the states that last only a moment on loopback (FIN_WAIT1, LAST_ACK, CLOSING),
  held still by a full receive window, which keeps a FIN queued behind data.
* :func:`time_wait_timer` and :func:`fin_timeout_experiment`: how long
  TIME_WAIT lasts, read from the kernel's timer instead of waited out.
* :func:`restart_after_time_wait` and :func:`reuseport_listeners`: rebinding a
  port after a server stops, and sharing one among listeners.
* :func:`close_wait_pile`: a server that never closes, and the same server fixed.
* :func:`teardown_segments`: the FIN and ACK segments themselves (needs
  CAP_NET_RAW).

One computation sits beside them: :func:`max_connection_rate`, the port-range
arithmetic that limits connections to one destination.

A state that the kernel no longer lists is reported as ``'CLOSED'``, RFC 9293's
name for "no connection at all".
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from tcpref import netns, wrap
from tcpref.capture import capture_exchange, flag_names, packet_capture, parse_ipv4_tcp
from tcpref.kernel import Connection, connections, state_of, sysctls
from tcpref.segment import Flags

__all__ = [
    "AckDelays",
    "DemoError",
    "FinTimeoutExperiment",
    "FinWait2Timers",
    "Pile",
    "Restart",
    "ReusePort",
    "Segment",
    "Step",
    "TimerReading",
    "Trace",
    "close_wait_pile",
    "fin_ack_delay",
    "fin_timeout_experiment",
    "fin_wait2_timers",
    "hold_fin_wait1",
    "hold_last_ack",
    "max_connection_rate",
    "restart_after_time_wait",
    "reuseport_listeners",
    "simultaneous_close",
    "teardown",
    "teardown_segments",
    "time_wait_timer",
]

Side = Literal["client", "server"]

#: How long a demo waits for the kernel to reach a state before it gives up.
DEADLINE_SECONDS = 3.0
# The smallest buffers the kernel grants (it doubles what we ask and rounds up to
# its minimum), so that a few kilobytes fill a receive window.
_SMALL_BUFFER = 4096
_LOCALHOST = ("127.0.0.1", 0)


class DemoError(RuntimeError):
    """A scenario could not be set up, or the kernel never reached a state it needs."""


# == What the demos return ==========================================================


@dataclass(frozen=True)
class Step:
    """The states of both ends of one connection right after something happened.

    Attributes:
        event: What happened, such as ``"client: close()"``.
        client: The state of the client's end (the side that called ``connect``).
        server: The state of the server's end (the side ``accept`` returned).
    """

    event: str
    client: str
    server: str

    def __str__(self) -> str:
        return f"{self.event:<44} {self.client:<12} {self.server}"


@dataclass(frozen=True)
class Trace:
    """A scenario as a list of steps; ``print`` shows it as a table.

    Attributes:
        steps: What happened, in order, with the states that followed.
    """

    steps: tuple[Step, ...]

    @property
    def client_states(self) -> tuple[str, ...]:
        """The client's state after each step."""
        return tuple(step.client for step in self.steps)

    @property
    def server_states(self) -> tuple[str, ...]:
        """The server's state after each step."""
        return tuple(step.server for step in self.steps)

    def __str__(self) -> str:
        header = f"{'event':<44} {'client':<12} server"
        return "\n".join([header, *(str(step) for step in self.steps)])


@dataclass(frozen=True)
class TimerReading:
    """The timer the kernel runs for one connection, as ``/proc/net/tcp`` shows it.

    Attributes:
        state: The connection's state, such as ``'TIME_WAIT'``.
        timer: Which timer runs (a value of :data:`tcpref.kernel.TCP_TIMERS`).
        seconds: How long until it fires, read right after the state began.
    """

    state: str
    timer: str
    seconds: float


@dataclass(frozen=True)
class FinTimeoutExperiment:
    """Timers read with ``tcp_fin_timeout`` set to a chosen value.

    Attributes:
        fin_timeout: The ``tcp_fin_timeout`` in force, in seconds.
        fin_wait2: The timer of a closed socket waiting in FIN_WAIT2 for the
            peer's FIN.
        time_wait: The timer of a connection that has just entered TIME_WAIT.
    """

    fin_timeout: int
    fin_wait2: TimerReading
    time_wait: TimerReading


@dataclass(frozen=True)
class Restart:
    """A server stopped and started again at once, on the same port.

    Attributes:
        reuseaddr: Whether both listeners set ``SO_REUSEADDR`` before ``bind``.
        states_before: The states on the port when the new listener binds.
        outcome: ``'listening'``, or the errno symbol ``bind`` failed with.
    """

    reuseaddr: bool
    states_before: tuple[str, ...]
    outcome: str


@dataclass(frozen=True)
class ReusePort:
    """Several listeners on one port with ``SO_REUSEPORT``.

    Attributes:
        states: The state of each listener.
        accepted: How many of the clients' connections each listener accepted.
    """

    states: tuple[str, ...]
    accepted: tuple[int, ...]


@dataclass(frozen=True)
class Pile:
    """How many connections on a server's port are in each state.

    Attributes:
        server_closes: Whether the server closed each connection on end of stream.
        server: Counts of the server's ends, by state.
        client: Counts of the clients' ends, by state.
    """

    server_closes: bool
    server: dict[str, int]
    client: dict[str, int]


@dataclass(frozen=True)
class Segment:
    """One captured TCP segment of a teardown.

    Attributes:
        sender: ``'client'`` or ``'server'``.
        flags: The flags that matter to a teardown, such as ``'FIN+ACK'``.
    """

    sender: str
    flags: str

    def __str__(self) -> str:
        arrow = "->" if self.sender == "client" else "<-"
        return f"client {arrow} server  {self.flags}"


# == Helpers =========================================================================


def _wait_until(what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` every few milliseconds; raise DemoError after ``timeout``."""
    deadline = time.monotonic() + timeout
    # Ends: each pass sleeps, and the deadline is fixed.
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"the kernel did not reach {what} within {timeout} s")
        time.sleep(0.005)


@dataclass(frozen=True)
class _Pair:
    """Both ends of one loopback connection, with their addresses kept.

    ``getpeername`` fails once a socket is shut down and its peer is gone, so the
    addresses are saved while the connection is up.
    """

    client: socket.socket
    server: socket.socket
    client_address: tuple[str, int]
    server_address: tuple[str, int]

    def states(self) -> tuple[str, str]:
        client = state_of(self.client_address, self.server_address)
        server = state_of(self.server_address, self.client_address)
        return client or "CLOSED", server or "CLOSED"

    def step(self, event: str) -> Step:
        return Step(event, *self.states())

    def wait_for(self, client: str, server: str, event: str) -> Step:
        """Wait until both ends reach the states, then record the step."""
        _wait_until(
            f"client {client} and server {server} after {event!r} (last seen: {self.states()})",
            lambda: self.states() == (client, server),
            DEADLINE_SECONDS,
        )
        return self.step(event)


def _listener(*options: int, address: tuple[str, int] = _LOCALHOST) -> socket.socket:
    sock = wrap.tcp_socket()
    try:
        for option in options:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        wrap.bind(sock, address)
        wrap.listen(sock, 64)
    except OSError:
        sock.close()
        raise
    sock.settimeout(DEADLINE_SECONDS)
    return sock


@contextmanager
def _connection(small_buffers: bool = False) -> Iterator[_Pair]:
    """One connection on loopback; closes whatever is still open on exit.

    With ``small_buffers``, both ends get the smallest send and receive buffers,
    set before the handshake (the window scale is chosen then).
    """
    listener = wrap.tcp_socket()
    client = wrap.tcp_socket()
    server: socket.socket | None = None
    try:
        if small_buffers:
            for sock in (listener, client):  # an accepted socket inherits the listener's
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SMALL_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SMALL_BUFFER)
        wrap.bind(listener, _LOCALHOST)
        wrap.listen(listener, 1)
        listener.settimeout(DEADLINE_SECONDS)
        wrap.connect(client, listener.getsockname(), timeout=DEADLINE_SECONDS)
        server, _ = wrap.accept(listener)
        server.settimeout(DEADLINE_SECONDS)
        yield _Pair(client, server, client.getsockname(), server.getsockname())
    finally:
        listener.close()
        client.close()
        if server is not None:
            server.close()


def _fill_window(sender: socket.socket) -> int:
    """Send until the peer's receive window and our send buffer are full.

    The peer does not read, so what it has not acknowledged stays queued here,
    and anything queued after it (a FIN) waits too.  Returns the bytes sent.
    """
    sender.setblocking(False)
    sent = 0
    try:
        for _ in range(10_000):  # ends long before: the buffers hold kilobytes
            sent += sender.send(b"x" * 65536)
        raise DemoError("the peer's receive window never filled")
    except BlockingIOError:
        return sent
    finally:
        sender.settimeout(DEADLINE_SECONDS)


def _read_to_end(sock: socket.socket) -> int:
    """Read until end of stream; return how many bytes came before it."""
    total = 0
    for _ in range(100_000):  # ends: the peer sent a few kilobytes, then FIN
        data = sock.recv(65536)
        if not data:
            return total
        total += len(data)
    raise DemoError("end of stream never came")


# == Teardown ========================================================================


def teardown(first: Side = "client") -> Trace:
    """Close a connection normally, ``first`` side first, and record each state.

    The active closer calls ``close()``; the passive side reads end of stream
    (``b''``) and then closes too.  Between the two, FIN_WAIT2 and CLOSE_WAIT
    hold as long as the passive side does not close.

    Args:
        first: Which side closes first, ``'client'`` or ``'server'``.

    Raises:
        ValueError: if ``first`` is neither.
        DemoError: if the kernel does not reach an expected state in time.
    """
    if first not in ("client", "server"):
        raise ValueError(f"first must be 'client' or 'server', not {first!r}")
    with _connection() as pair:
        active, passive = (pair.client, pair.server)
        if first == "server":
            active, passive = passive, active
        second: Side = "server" if first == "client" else "client"

        def ordered(active_state: str, passive_state: str) -> tuple[str, str]:
            if first == "client":
                return active_state, passive_state
            return passive_state, active_state

        steps = [pair.step("connected")]
        wrap.close(active)
        steps.append(pair.wait_for(*ordered("FIN_WAIT2", "CLOSE_WAIT"), f"{first}: close()"))
        if passive.recv(100) != b"":
            raise DemoError(f"the {second} read data instead of end of stream")
        steps.append(pair.step(f"{second}: recv() returns b''"))
        wrap.close(passive)
        steps.append(pair.wait_for(*ordered("TIME_WAIT", "CLOSED"), f"{second}: close()"))
    return Trace(tuple(steps))


def hold_fin_wait1() -> Trace:
    """Hold the active closer in FIN_WAIT1: its FIN waits behind unsent data.

    The server never reads, so the client's data fills the server's receive
    window and stays queued in the client's send buffer.  ``shutdown(SHUT_WR)``
    puts the FIN at the end of that queue: the client is in FIN_WAIT1 (FIN
    "sent" as far as the state machine goes) until the server reads.

    Raises:
        DemoError: if the kernel does not reach an expected state in time.
    """
    with _connection(small_buffers=True) as pair:
        steps = [pair.step("connected")]
        _fill_window(pair.client)
        steps.append(pair.step("client: send until the window is full"))
        wrap.shutdown(pair.client, socket.SHUT_WR)
        steps.append(pair.wait_for("FIN_WAIT1", "ESTABLISHED", "client: shutdown(SHUT_WR)"))
        time.sleep(0.1)  # not a wait for anything: a pause to show the state holds
        steps.append(pair.step("0.1 s later, nothing read yet"))
        _read_to_end(pair.server)
        steps.append(pair.wait_for("FIN_WAIT2", "CLOSE_WAIT", "server: read all, then b''"))
        wrap.close(pair.server)
        steps.append(pair.wait_for("TIME_WAIT", "CLOSED", "server: close()"))
    return Trace(tuple(steps))


def hold_last_ack() -> Trace:
    """Hold the passive closer in LAST_ACK: its FIN waits behind unsent data.

    The client half-closes with ``shutdown(SHUT_WR)``, so it can still read (a
    client that called ``close()`` would answer further data with RST).  The
    server reads end of stream, sends until the client's receive window is full,
    and closes: its FIN stays queued, unacknowledged, until the client reads.

    Raises:
        DemoError: if the kernel does not reach an expected state in time.
    """
    with _connection(small_buffers=True) as pair:
        steps = [pair.step("connected")]
        wrap.shutdown(pair.client, socket.SHUT_WR)
        steps.append(pair.wait_for("FIN_WAIT2", "CLOSE_WAIT", "client: shutdown(SHUT_WR)"))
        if pair.server.recv(100) != b"":
            raise DemoError("the server read data instead of end of stream")
        _fill_window(pair.server)
        steps.append(pair.step("server: b'', then send until window full"))
        wrap.close(pair.server)
        steps.append(pair.wait_for("FIN_WAIT2", "LAST_ACK", "server: close()"))
        time.sleep(0.1)  # a pause to show the state holds
        steps.append(pair.step("0.1 s later, nothing read yet"))
        _read_to_end(pair.client)
        steps.append(pair.wait_for("TIME_WAIT", "CLOSED", "client: read all, then b''"))
    return Trace(tuple(steps))


def simultaneous_close() -> Trace:
    """Close both ends at once, so that each FIN meets the other: CLOSING.

    On loopback a FIN arrives while the ``shutdown`` that sent it is still
    running, so two threads closing "at once" almost never overlap.  Here each
    side first fills the other's receive window, so both FINs stay queued; both
    sides shut down (both FIN_WAIT1).  The client then reads everything: the
    server's FIN reaches it while its own FIN is still unsent, which is the
    simultaneous close of RFC 9293 (section 3.6, figure 13), and the client enters
    CLOSING.  When the server reads, both ends finish in TIME_WAIT.

    Raises:
        DemoError: if the kernel does not reach an expected state in time.
    """
    with _connection(small_buffers=True) as pair:
        steps = [pair.step("connected")]
        _fill_window(pair.client)
        _fill_window(pair.server)
        steps.append(pair.step("both: send until the window is full"))
        wrap.shutdown(pair.client, socket.SHUT_WR)
        wrap.shutdown(pair.server, socket.SHUT_WR)
        steps.append(pair.wait_for("FIN_WAIT1", "FIN_WAIT1", "both: shutdown(SHUT_WR)"))
        _read_to_end(pair.client)
        steps.append(pair.wait_for("CLOSING", "FIN_WAIT2", "client: read all, then b''"))
        _read_to_end(pair.server)
        steps.append(pair.wait_for("TIME_WAIT", "TIME_WAIT", "server: read all, then b''"))
    return Trace(tuple(steps))


# == TIME_WAIT =======================================================================


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _timer_of(conn: Connection) -> TimerReading:
    return TimerReading(conn.state, conn.timer, conn.timer_expires / _clock_ticks())


def _find(local_port: int, remote_port: int, state: str) -> Connection | None:
    # Match both ports: an older, unrelated entry may share one port number.
    for conn in connections(local_port):
        if (conn.local[1], conn.remote[1], conn.state) == (local_port, remote_port, state):
            return conn
    return None


def _wait_for_entry(local_port: int, remote_port: int, state: str) -> Connection:
    found: list[Connection] = []

    def present() -> bool:
        conn = _find(local_port, remote_port, state)
        if conn is not None:
            found.append(conn)
        return conn is not None

    _wait_until(f"{state} from port {local_port} to {remote_port}", present, DEADLINE_SECONDS)
    return found[-1]


def time_wait_timer(first: Side = "client") -> TimerReading:
    """Close a connection and read the TIME_WAIT timer of the side that closed first.

    Args:
        first: Which side closes first; that side's end enters TIME_WAIT.

    Raises:
        ValueError: if ``first`` is neither ``'client'`` nor ``'server'``.
        DemoError: if no TIME_WAIT entry appears in time.
    """
    if first not in ("client", "server"):
        raise ValueError(f"first must be 'client' or 'server', not {first!r}")
    with _connection() as pair:
        active, passive = pair.client, pair.server
        closer, other = pair.client_address[1], pair.server_address[1]
        if first == "server":
            active, passive, closer, other = passive, active, other, closer
        wrap.close(active)
        passive.recv(100)  # end of stream: the FIN has arrived
        wrap.close(passive)
        return _timer_of(_wait_for_entry(closer, other, "TIME_WAIT"))


def _timers_in_this_namespace(fin_timeout: int) -> FinTimeoutExperiment:
    """The namespace child's half of :func:`fin_timeout_experiment`.

    It sets ``tcp_fin_timeout`` of the network namespace it runs in, and never
    restores it: the namespace ends with the child.

    Raises:
        OSError: if the setting cannot be written.
        DemoError: if the kernel does not reach FIN_WAIT2 or TIME_WAIT in time.
    """
    with open("/proc/sys/net/ipv4/tcp_fin_timeout", "w") as setting:
        setting.write(str(fin_timeout))
    with _connection() as pair:
        port, client_port = pair.server_address[1], pair.client_address[1]
        wrap.close(pair.client)  # an orphan in FIN_WAIT2: the server does not close yet
        fin_wait2 = _timer_of(_wait_for_entry(client_port, port, "FIN_WAIT2"))
        wrap.close(pair.server)
        time_wait = _timer_of(_wait_for_entry(client_port, port, "TIME_WAIT"))
    value = sysctls()["tcp_fin_timeout"].value
    if not isinstance(value, int):  # pragma: no cover (the kernel has just taken an int)
        raise DemoError(f"tcp_fin_timeout reads back as {value!r}")
    return FinTimeoutExperiment(fin_timeout=value, fin_wait2=fin_wait2, time_wait=time_wait)


def fin_timeout_experiment(fin_timeout: int = 5) -> FinTimeoutExperiment:
    """Set ``tcp_fin_timeout``, then read the FIN_WAIT2 and TIME_WAIT timers.

    The setting is changed only inside a private network namespace, made for the
    purpose by :func:`tcpref.netns.run`, so the machine's own setting is never
    touched, and any user may run it: inside the namespace an ordinary user holds
    CAP_NET_ADMIN over it, which writing the setting needs.  Called inside another
    such namespace, it makes one of its own within it, and leaves the caller's
    setting alone too.

    Args:
        fin_timeout: The value to set, in seconds (1-59, so that it differs from
            TIME_WAIT's 60 s).

    Raises:
        TypeError: if ``fin_timeout`` is not an int.
        ValueError: if it is outside 1-59.
        NamespaceUnavailableError: if no network namespace can be made here; the
            message says why.
        DemoError: if the kernel does not reach FIN_WAIT2 or TIME_WAIT in time.
        TimeoutError: if the namespace child does not finish in time.
        NamespaceChildError: if the namespace child dies without an answer.
    """
    if isinstance(fin_timeout, bool) or not isinstance(fin_timeout, int):
        raise TypeError(f"fin_timeout must be an int, not {fin_timeout!r}")
    if not 1 <= fin_timeout <= 59:
        raise ValueError(f"fin_timeout must be in range 1-59, not {fin_timeout!r}")
    return netns.run(_timers_in_this_namespace, fin_timeout, timeout=4 * DEADLINE_SECONDS)


def max_connection_rate(port_range: tuple[int, int], time_wait_seconds: float = 60.0) -> float:
    """How many new connections per second one client address can open to one server.

    Each connection to the same server address and port needs its own local
    port, and a port stays taken while its connection sits in TIME_WAIT (when
    the client closes first).  In the steady state, at most the whole range can
    be in TIME_WAIT at once.

    >>> max_connection_rate((32768, 60999))
    470.53333333333336

    Args:
        port_range: ``ip_local_port_range``: the first and last port.
        time_wait_seconds: How long TIME_WAIT lasts (60 s on Linux).

    Raises:
        ValueError: if the range is empty or out of 1-65535, or the time not positive.
    """
    first, last = port_range
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"port_range must be (first, last) within 1-65535, not {port_range!r}")
    if not time_wait_seconds > 0:
        raise ValueError(f"time_wait_seconds must be > 0, not {time_wait_seconds!r}")
    return (last - first + 1) / time_wait_seconds


# == Rebinding a port ================================================================


def restart_after_time_wait(reuseaddr: bool) -> Restart:
    """Stop a server whose connection is in TIME_WAIT, and bind its port again.

    The server accepts one connection and closes it first (so the TIME_WAIT is
    on the server's port), the client closes too, and the listener closes.
    With ``reuseaddr`` both listeners set ``SO_REUSEADDR``; the cases where only
    one does are in the errors page.

    Raises:
        DemoError: if no TIME_WAIT entry appears in time.
    """
    options = (socket.SO_REUSEADDR,) if reuseaddr else ()
    old = _listener(*options)
    address = old.getsockname()
    try:
        client = wrap.tcp_socket()
        try:
            wrap.connect(client, address, timeout=DEADLINE_SECONDS)
            client_port = client.getsockname()[1]
            conn, _ = wrap.accept(old)
            wrap.close(conn)  # the server closes first ...
            client.settimeout(DEADLINE_SECONDS)
            client.recv(100)  # ... the client reads end of stream and closes too
        finally:
            client.close()
        _wait_for_entry(address[1], client_port, "TIME_WAIT")
    finally:
        old.close()
    # Only the server's own entries: the port number may also appear in older,
    # unrelated connections (as some client's local port, say).
    states = tuple(
        sorted(
            c.state
            for c in connections(address[1])
            if c.local[1] == address[1] and c.remote[1] in (0, client_port)
        )
    )
    try:
        wrap.close(_listener(*options, address=address))
        outcome = "listening"
    except OSError as exc:
        outcome = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return Restart(reuseaddr, states, outcome)


def reuseport_listeners(listeners: int = 2, clients: int = 20) -> ReusePort:
    """Bind several listeners to one port with ``SO_REUSEPORT``; connect clients.

    The kernel picks a listener for each new connection by a hash of its
    addresses and ports, so the counts differ from run to run.

    Raises:
        ValueError: if a count is below 1.
        DemoError: if a connection does not arrive.
    """
    if listeners < 1 or clients < 1:
        raise ValueError(f"need at least one listener and one client, not {listeners}, {clients}")
    group = [_listener(socket.SO_REUSEPORT)]
    opened: list[socket.socket] = []
    try:
        address = group[0].getsockname()
        for _ in range(listeners - 1):
            group.append(_listener(socket.SO_REUSEPORT, address=address))
        states = tuple(state_of(address, ("0.0.0.0", 0)) or "CLOSED" for _ in group)
        for _ in range(clients):
            client = wrap.tcp_socket()
            opened.append(client)
            wrap.connect(client, address, timeout=DEADLINE_SECONDS)
        accepted = [0] * len(group)
        remaining = clients
        deadline = time.monotonic() + DEADLINE_SECONDS
        # Ends: each pass accepts at least one connection, or the deadline passes.
        while remaining:
            if time.monotonic() > deadline:
                raise DemoError(f"{remaining} connections never reached a listener")
            ready, _, _ = select.select(group, [], [], DEADLINE_SECONDS)
            for listener in ready:
                conn, _ = wrap.accept(listener)
                opened.append(conn)
                accepted[group.index(listener)] += 1
                remaining -= 1
        return ReusePort(states, tuple(accepted))
    finally:
        for sock in opened + group:
            sock.close()


# == CLOSE_WAIT ======================================================================


def _count_states(conns: list[Connection]) -> dict[str, int]:
    return dict(sorted(Counter(conn.state for conn in conns).items()))


def close_wait_pile(clients: int = 5, server_closes: bool = False) -> Pile:
    """Let clients connect and close; count the states on the server's port.

    A server that never closes a connection after end of stream leaves it in
    CLOSE_WAIT, and the client's end in FIN_WAIT2.  With ``server_closes``, the
    server reads ``b''`` and closes, as it should: nothing is left on its side.

    Args:
        clients: How many clients connect, 1-50.
        server_closes: Whether the server closes each connection on ``b''``.

    Raises:
        ValueError: if ``clients`` is out of range.
        DemoError: if the states are not reached in time.
    """
    if not 1 <= clients <= 50:
        raise ValueError(f"clients must be in range 1-50, not {clients!r}")
    listener = _listener()
    port = listener.getsockname()[1]
    opened: list[socket.socket] = []
    client_ports: set[int] = set()
    try:
        for _ in range(clients):
            client = wrap.tcp_socket()
            opened.append(client)
            wrap.connect(client, ("127.0.0.1", port), timeout=DEADLINE_SECONDS)
            client_ports.add(client.getsockname()[1])
            conn, _ = wrap.accept(listener)
            opened.append(conn)
            wrap.close(client)  # the client is done and closes
            conn.settimeout(DEADLINE_SECONDS)
            if conn.recv(100) != b"":
                raise DemoError("the server read data instead of end of stream")
            if server_closes:
                wrap.close(conn)  # the fix: close on end of stream
        wanted = "TIME_WAIT" if server_closes else "FIN_WAIT2"

        # Only this demo's connections: older, unrelated entries may share the port.
        def ends() -> tuple[list[Connection], list[Connection]]:
            found = connections(port)
            server = [c for c in found if c.local[1] == port and c.remote[1] in client_ports]
            client = [c for c in found if c.remote[1] == port and c.local[1] in client_ports]
            return server, client

        def settled() -> bool:
            return [c.state for c in ends()[1]] == [wanted] * clients

        _wait_until(f"{clients} client ends in {wanted}", settled, DEADLINE_SECONDS)
        server_ends, client_ends = ends()
        return Pile(server_closes, _count_states(server_ends), _count_states(client_ends))
    finally:
        for sock in opened:
            sock.close()
        listener.close()


# == The segments on the wire ========================================================


def teardown_segments(wait_for_ack: bool) -> tuple[Segment, ...]:
    """Capture the segments of a teardown that the client starts (needs CAP_NET_RAW).

    The client sends a little data and closes.  The server reads end of stream
    and closes; with ``wait_for_ack`` it first waits until the client is in
    FIN_WAIT2, that is, until its kernel's ACK of the FIN has arrived.  Without
    the wait, the server's FIN leaves before the delayed ACK would, and the two
    travel in one segment.

    Returns:
        The segments from the client's FIN on.

    Raises:
        PermissionCallError: without CAP_NET_RAW.
        DemoError: if a state or segment does not arrive in time.
    """
    with _connection() as pair:
        port = pair.server_address[1]
        with packet_capture("lo", port=port, timeout=DEADLINE_SECONDS) as capture:
            wrap.close(pair.client)
            if pair.server.recv(100) != b"":
                raise DemoError("the server read data instead of end of stream")
            if wait_for_ack:
                pair.wait_for("FIN_WAIT2", "CLOSE_WAIT", "the ACK of the client's FIN")
            wrap.close(pair.server)
            pair.wait_for("TIME_WAIT", "CLOSED", "server: close()")
            segments: list[Segment] = []
            capture.setblocking(False)
            for _ in range(100):  # ends: the buffer holds a handful of packets
                try:
                    packet, address = capture.recvfrom(256)
                except BlockingIOError:
                    break
                parsed = parse_ipv4_tcp(packet)
                if address[2] == socket.PACKET_OUTGOING or parsed is None:
                    continue
                sender = "client" if parsed.dst[1] == port else "server"
                segments.append(Segment(sender, flag_names(parsed.flags)))
    return tuple(segments)


# == When the passive closer's kernel acknowledges a FIN ================================


@dataclass(frozen=True)
class AckDelays:
    """How long the passive closer's kernel took to acknowledge data, and then a FIN.

    Attributes:
        data_ack: Seconds from the client's data segment to the server's ACK of it,
            or ``None`` when the client sent no data.
        fin_ack: Seconds from the client's FIN to the server's bare ACK of it.
        segments: Each captured segment from the client's data (or FIN) on, as
            ``'client FIN|ACK'``.
    """

    data_ack: float | None
    fin_ack: float
    segments: tuple[str, ...]


def fin_ack_delay(send_data: bool = True, *, server_waits: float = 0.5) -> AckDelays:
    """Capture a teardown whose server closes late, and time the ACK of the client's FIN.

    The client sends ``b'question'`` (unless ``send_data`` is false) and
    half-closes with ``shutdown(SHUT_WR)``; the server reads the data and end of
    stream at once, then waits ``server_waits`` seconds before it closes, so the
    ACK of the FIN leaves on its own and its delay can be read from the capture
    (:func:`tcpref.capture.capture_exchange`, which needs CAP_NET_RAW: run it in
    :func:`tcpref.netns.run`).

    Raises:
        PermissionCallError: without CAP_NET_RAW.
        DemoError: if the segments are not the expected ones.
    """

    def exchange() -> tuple[tuple[str, int], tuple[str, int]]:
        with _connection() as pair:
            if send_data:
                wrap.write_all(pair.client, b"question")
                if pair.server.recv(100) != b"question":
                    raise DemoError("the server did not read the question")
            wrap.shutdown(pair.client, socket.SHUT_WR)
            if pair.server.recv(100) != b"":
                raise DemoError("the server read data instead of end of stream")
            time.sleep(server_waits)
            wrap.close(pair.server)
            pair.wait_for("TIME_WAIT", "CLOSED", "server: close()")
            return pair.client_address, pair.server_address
        raise AssertionError("unreachable")  # pragma: no cover

    captured = capture_exchange(exchange, count=9, timeout=DEADLINE_SECONDS)
    entries = [entry for entry in captured.entries[3:] if entry.segment is not None]

    def answer(index: int) -> float:
        """Seconds from entry ``index`` (the client's) to the server's bare ACK of it."""
        sent = entries[index]
        assert sent.segment is not None
        length = len(sent.segment.payload) + (Flags.FIN in sent.segment.flags)
        for later in entries[index + 1 :]:
            segment = later.segment
            if (
                later.sender == "server"
                and segment is not None
                and segment.flags == Flags.ACK
                and segment.ack == (sent.segment.seq + length) % 2**32
            ):
                return later.time - sent.time
        raise DemoError(f"no ACK of the client's segment {index} was captured")

    fin = next(
        (
            i
            for i, e in enumerate(entries)
            if e.segment is not None and Flags.FIN in e.segment.flags
        ),
        None,
    )
    if fin is None or entries[fin].sender != "client":
        raise DemoError("the client's FIN was not captured")
    return AckDelays(
        data_ack=answer(0) if send_data else None,
        fin_ack=answer(fin),
        segments=tuple(
            f"{e.sender} {e.segment.describe().split()[0]}" for e in entries if e.segment
        ),
    )


# == FIN_WAIT2 has a timer only for an orphan ===========================================


@dataclass(frozen=True)
class FinWait2Timers:
    """The timer ``/proc/net/tcp`` shows for two clients in FIN_WAIT2.

    Attributes:
        closed: ``(state, timer)`` of a client that called ``close()``: an orphan.
        shut_down: ``(state, timer)`` of a client that called ``shutdown(SHUT_WR)``
            and keeps its socket open.
    """

    closed: tuple[str, str]
    shut_down: tuple[str, str]


def fin_wait2_timers() -> FinWait2Timers:
    """Put two clients in FIN_WAIT2, one by ``close()`` and one by ``shutdown``; read their timers.

    Neither server closes, so each client waits for a FIN that does not come.

    Raises:
        DemoError: if a client does not reach FIN_WAIT2 in time.
    """

    def reading(pair: _Pair) -> tuple[str, str]:
        pair.wait_for("FIN_WAIT2", "CLOSE_WAIT", "the ACK of the client's FIN")
        [entry] = [
            c
            for c in connections(pair.server_address[1])
            if c.local == pair.client_address and c.remote == pair.server_address
        ]
        return entry.state, entry.timer

    with _connection() as orphaned, _connection() as half_closed:
        wrap.close(orphaned.client)
        wrap.shutdown(half_closed.client, socket.SHUT_WR)
        return FinWait2Timers(closed=reading(orphaned), shut_down=reading(half_closed))
    raise AssertionError("unreachable")  # pragma: no cover
