"""Lost segments on the live kernel: the simulator's loss scenarios, run for real.

Each scenario in :data:`LIVE_SCENARIOS` is a loss plan (a :class:`tcpref.sim.Drop`
that names its sender and exact flags) and the two applications' timing, the same
as the model's ``tcpref.scenarios`` run of that name.  :func:`run_live` runs it in
a private network namespace (:func:`tcpref.netns.run`), where any user may
capture packets and attach socket filters:

* a listener and a client on the namespace's own loopback, and a packet capture
  of the listener's port;
* a :class:`tcpref.faults.LossInjector` that makes the kernel lose the planned
  segment, on the socket that would have received it;
* the client connects, waits, and sends its FIN (``shutdown(SHUT_WR)``); the
  server reads to end-of-file, waits, and sends its own.

The result holds every captured segment in the trace format, which ones were
lost and retransmitted and when, each side's state from /proc just after the
loss, and the kernel settings read inside the namespace; :func:`model_of` runs
the simulator with the same plan and those settings, so a page can put the two
side by side.

Both sides end with ``shutdown`` and keep their sockets open until the capture is
done, instead of ``close``: a closed socket keeps its filter, and nothing could
then take it off.  On the wire the segments are the same.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from tcpref import capture, netns
from tcpref.faults import LossInjector
from tcpref.kernel import state_of, sysctls
from tcpref.scenarios import client as model_client
from tcpref.scenarios import server as model_server
from tcpref.segment import Flags
from tcpref.sim import Drop, Limits, Run, simulate
from tcpref.states import State
from tcpref.trace import Side, TraceEntry, format_trace

__all__ = [
    "BURST",
    "LIVE_SCENARIOS",
    "LiveRun",
    "LiveScenario",
    "model_of",
    "outline",
    "proc_name",
    "retransmissions",
    "run_live",
    "run_live_many",
]

_TIMEOUT = 10.0
#: How long after the lost segment was captured the states are read from /proc.
STATE_DELAY = 0.05
#: How long the capture waits, once both applications are done, for a late segment.
QUIET = 0.6
#: Segments that leave within this many seconds of the first of a burst belong to it.
BURST = 0.05


@dataclass(frozen=True)
class LiveScenario:
    """One lost-segment experiment: the loss plan and the applications' timing.

    Attributes:
        title: What is lost, in words.
        plan: The segment to lose, by sender and exact flags.
        close_after: Seconds after ``connect()`` returns that the client sends its FIN.
        close_on_eof: Seconds after reading end-of-file that the server sends its FIN.
        syn_retries: ``tcp_syn_retries`` to set inside the namespace, or ``None``
            for the kernel's default.
    """

    title: str
    plan: Drop
    close_after: float = 0.1
    close_on_eof: float = 0.5
    syn_retries: int | None = None


_SYN, _ACK, _FIN = Flags.SYN, Flags.ACK, Flags.FIN

#: The note's seven questions, one experiment each, named as in ``tcpref.scenarios``.
LIVE_SCENARIOS: dict[str, LiveScenario] = {
    "lost-handshake-1": LiveScenario("The SYN is lost", Drop(1, sender="client", flags=_SYN)),
    "lost-handshake-2": LiveScenario(
        "The SYN+ACK is lost", Drop(1, sender="server", flags=_SYN | _ACK)
    ),
    # The client sends nothing for a while, so only the server can notice the loss.
    "lost-handshake-3": LiveScenario(
        "The handshake's ACK is lost", Drop(1, sender="client", flags=_ACK), close_after=1.5
    ),
    "syn-never-answered": LiveScenario(
        "Every SYN is lost: connect() times out",
        Drop(1, sender="client", flags=_SYN, count=None),
        syn_retries=1,
    ),
    "lost-teardown-1": LiveScenario(
        "The client's FIN is lost", Drop(1, sender="client", flags=_FIN | _ACK)
    ),
    "lost-teardown-2": LiveScenario(
        "The server's ACK of that FIN is lost", Drop(1, sender="server", flags=_ACK)
    ),
    "lost-teardown-3": LiveScenario(
        "The server's FIN is lost", Drop(1, sender="server", flags=_FIN | _ACK)
    ),
    # The client's first pure ACK ends the handshake; its second is the last one.
    "lost-teardown-4": LiveScenario(
        "The client's last ACK is lost", Drop(2, sender="client", flags=_ACK)
    ),
}

#: The simulator's state names (RFC 9293's) as /proc/net/tcp prints them.
_PROC_NAMES = {
    "SYN_RECEIVED": "SYN_RECV",
    "FIN_WAIT_1": "FIN_WAIT1",
    "FIN_WAIT_2": "FIN_WAIT2",
    "CLOSED": "CLOSE",
}


def proc_name(state: State | str | None) -> str | None:
    """A simulator state written as /proc prints it: ``FIN_WAIT_1`` -> ``FIN_WAIT1``.

    >>> from tcpref.states import State
    >>> proc_name(State.SYN_RECEIVED), proc_name("ESTABLISHED"), proc_name(None)
    ('SYN_RECV', 'ESTABLISHED', None)
    """
    if state is None:
        return None
    name = state.name if isinstance(state, State) else state
    return _PROC_NAMES.get(name, name)


@dataclass(frozen=True)
class LiveRun:
    """What a live experiment captured and measured.

    Attributes:
        name: The scenario's name.
        plan: The loss plan it carried out.
        entries: Every captured segment, in order, as trace entries; a lost one has
            the note ``"lost"``, a segment sent again ``"retransmission"``, and a
            segment sent again and lost ``"retransmission, lost"``, as the model's.
        client_isn: The client's initial sequence number.
        server_isn: The server's, or ``None`` if no SYN+ACK was captured.
        states_after_loss: The client's and server's states, from /proc,
            ``STATE_DELAY`` seconds after the first lost segment was captured
            (the server's is its listener's, LISTEN, while it has no connection).
        final_states: The connection's entries in /proc once the capture was quiet,
            client's then server's (``None``: no entry, the connection is gone).
        connect_error: The errno symbol ``connect()`` failed with, or ``None``.
        lost: How many segments the kernel dropped.
        sysctls: The settings the model needs, read inside the namespace.
        connect_seconds: How long ``connect()`` took to return or fail, in seconds.
    """

    name: str
    plan: Drop
    entries: tuple[TraceEntry, ...]
    client_isn: int
    server_isn: int | None
    states_after_loss: tuple[str | None, str | None]
    final_states: tuple[str | None, str | None]
    connect_error: str | None
    lost: int
    sysctls: dict[str, int]
    connect_seconds: float

    def retransmissions(self) -> tuple[tuple[Side, str, float], ...]:
        """Each segment sent again: its sender, its flags, and the seconds since the first.

        The same as :func:`retransmissions` of this run.
        """
        return retransmissions(self)

    def table(self) -> str:
        """The captured segments, as :func:`tcpref.trace.format_trace` prints them."""
        return format_trace(self.entries, self.client_isn, self.server_isn)


def _flag_names(flags: Flags) -> str:
    return "|".join(flag.name or "" for flag in Flags if flag in flags)


def _entries_of(run: LiveRun | Run) -> tuple[tuple[TraceEntry, ...], int, int]:
    """A run's entries and both initial sequence numbers (0 for a server never heard)."""
    if isinstance(run, LiveRun):
        return run.entries, run.client_isn, run.server_isn or 0
    return run.trace, run.client_isn, run.server_isn


def retransmissions(run: LiveRun | Run) -> tuple[tuple[Side, str, float], ...]:
    """Each segment sent again in a live or simulated run: who, what, and after how long.

    Only segments that take sequence space (SYN, FIN or data) are retransmitted; a
    pure ACK sent again is a new answer, not a retransmission.  The delay is counted
    from the first time the same segment was sent, in seconds rounded to 1 ms.

    >>> retransmissions(model_of("lost-teardown-1"))
    (('client', 'FIN|ACK', 0.22),)
    """
    entries, _, _ = _entries_of(run)
    found = []
    for index, entry in enumerate(entries):
        if "retransmission" not in entry.note or entry.segment is None:
            continue
        first = next(e for e in entries[:index] if _same(e, entry))
        found.append(
            (entry.sender, _flag_names(entry.segment.flags), round(entry.time - first.time, 3))
        )
    return tuple(found)


def outline(run: LiveRun | Run) -> str:
    """A run's segments burst by burst, with only what every machine shows alike.

    Each line gives the burst, the direction, the flags, the sequence and
    acknowledgment numbers relative to each side's initial sequence number, the
    payload's length if any, and the note (``lost``, ``retransmission``).  Times,
    windows and options are left out: they depend on the link and the machine.

    A burst is the segments that leave within :data:`BURST` seconds of its first
    one.  Inside a burst the captured order is not a fact the kernel keeps (on
    loopback a whole burst leaves within microseconds, and two timers that run out
    together fire in either order), so a burst's segments are listed by how far the
    exchange had got when each was sent: relative sequence plus acknowledgment
    number, which grows with every SYN and FIN sent and acknowledged.  Segments
    that tie keep their order.  A model run and a live run of the same plan then
    print the same outline where they agree:

    >>> print(outline(model_of("lost-teardown-1")))
    burst  dir     segment
        1  C -> S  SYN seq=0
        1  C <- S  SYN|ACK seq=0 ack=1
        1  C -> S  ACK seq=1 ack=1
        2  C -> S  FIN|ACK seq=1 ack=1  (lost)
        3  C -> S  FIN|ACK seq=1 ack=1  (retransmission)
        3  C <- S  ACK seq=1 ack=2
        4  C <- S  FIN|ACK seq=1 ack=2
        4  C -> S  ACK seq=2 ack=2
    """
    entries, client_isn, server_isn = _entries_of(run)
    rows: list[tuple[int, int, str]] = []
    burst, start = 0, 0.0
    for entry in entries:
        segment = entry.segment
        if segment is None:
            continue  # an event, such as a timer running out: not on the wire
        if not burst or entry.time - start > BURST:
            burst, start = burst + 1, entry.time
        own, peer = client_isn, server_isn
        if entry.sender == "server":
            own, peer = peer, own
        seq = (segment.seq - own) % 2**32
        ack = (segment.ack - peer) % 2**32 if Flags.ACK in segment.flags else 0
        text = f"{_flag_names(segment.flags)} seq={seq}"
        if Flags.ACK in segment.flags:
            text += f" ack={ack}"
        if segment.payload:
            text += f" len={len(segment.payload)}"
        if entry.note:
            text += f"  ({entry.note})"
        arrow = "C -> S" if entry.sender == "client" else "C <- S"
        rows.append((burst, seq + ack, f"{burst:5}  {arrow}  {text}"))
    rows.sort(key=lambda row: row[:2])  # stable: ties keep their order
    return "\n".join(["burst  dir     segment", *(row[2] for row in rows)])


def _same(first: TraceEntry, later: TraceEntry) -> bool:
    """Whether ``later`` sends again what ``first`` sent: the same sequence space."""
    a, b = first.segment, later.segment
    return (
        a is not None
        and b is not None
        and bool(a.flags & (Flags.SYN | Flags.FIN) or a.payload)
        and first.sender == later.sender
        and (a.seq, a.flags, len(a.payload)) == (b.seq, b.flags, len(b.payload))
    )


def model_of(name: str, settings: dict[str, int] | None = None) -> Run:
    """The simulator's run of the live scenario ``name``: the same plan and timing.

    Args:
        name: A key of :data:`LIVE_SCENARIOS`.
        settings: Kernel settings (``"tcp_syn_retries"`` and friends), such as a
            :class:`LiveRun`'s ``sysctls``; Linux's defaults where absent.

    Raises:
        KeyError: if ``name`` is not a live scenario.
    """
    scenario = _scenario(name)
    limits = Limits.from_sysctls(settings or {})
    return simulate(
        model_client(close_after=scenario.close_after),
        model_server(close_on_eof=scenario.close_on_eof),
        faults=[scenario.plan],
        limits=limits,
    )


def _scenario(name: str) -> LiveScenario:
    try:
        return LIVE_SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(LIVE_SCENARIOS))
        raise KeyError(f"no live scenario {name!r}; the live scenarios are: {known}") from None


def run_live(name: str, *, timeout: float = 30.0) -> LiveRun:
    """Run the live scenario ``name`` in a private network namespace.

    Raises:
        KeyError: if ``name`` is not a live scenario.
        NamespaceUnavailableError: if no namespace can be made here (the message
            says why).
        TimeoutError: if an awaited segment never comes, naming what was awaited,
            or if the whole run takes longer than ``timeout`` seconds.
        OSError: if a socket call fails.
    """
    scenario = _scenario(name)
    return netns.run(_run_inside, name, scenario, timeout=timeout)


def run_live_many(names: Iterable[str], *, timeout: float = 30.0) -> dict[str, LiveRun]:
    """Run several live scenarios side by side, each in a namespace of its own.

    Each namespace has its own loopback interface and its own timers, so the runs
    cannot disturb one another, and the whole takes about as long as the longest.

    Raises:
        KeyError: if a name is not a live scenario (before anything starts).
        NamespaceUnavailableError: if no namespace can be made here.
        TimeoutError: if a run takes longer than ``timeout`` seconds.
        OSError: if a socket call fails.
    """
    chosen = [(name, _scenario(name)) for name in names]
    children: list[tuple[str, netns.Child]] = []
    try:
        for name, scenario in chosen:
            children.append((name, netns.start(_run_inside, name, scenario, timeout=timeout)))
        return {name: child.result() for name, child in children}
    finally:
        for _, child in children:
            child.kill()


# == Inside the namespace ================================================================

_SETTINGS = ("tcp_syn_retries", "tcp_syn_linear_timeouts", "tcp_synack_retries")


def _settings(scenario: LiveScenario) -> dict[str, int]:
    if scenario.syn_retries is not None:
        with open("/proc/sys/net/ipv4/tcp_syn_retries", "w") as setting:
            setting.write(str(scenario.syn_retries))
    found = sysctls()
    values = {name: found[name].value for name in _SETTINGS if name in found}
    return {name: value for name, value in values.items() if isinstance(value, int)}


class _Watch:
    """Read the capture in a thread, feed the injector, and note what it saw."""

    def __init__(self, cap: socket.socket, injector: LossInjector, listener: socket.socket):
        self.cap, self.injector, self.listener = cap, injector, listener
        self.server = listener.getsockname()
        self.client: tuple[str, int] = ("", 0)
        self.seen: list[tuple[float, Side, capture.AddressedSegment, bool]] = []
        self.states: tuple[str | None, str | None] = (None, None)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="loss-watch")
        self.timer: threading.Timer | None = None

    def join(self) -> None:
        self.done.set()
        self.thread.join(5)
        if self.timer is not None:
            self.timer.join(5)

    def _read_states(self) -> None:
        self.states = _states(self.client, self.server, self.listener)

    def _run(self) -> None:
        try:
            # Ends: each pass waits at most 0.05 s, and the main thread sets done.
            while not self.done.is_set():
                got = capture.receive_segment(self.cap, 0.05)
                if got is not None:
                    self._note(*got)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _note(self, when: float, found: capture.AddressedSegment) -> None:
        if self.client not in (found.src, found.dst):
            return
        sender: Side = "client" if found.src == self.client else "server"
        dropped = self.injector.saw(sender, found.segment)
        self.seen.append((when, sender, found, dropped))
        if dropped and self.timer is None:
            # The kernel has dropped it by now; give both sides a moment to react.
            self.timer = threading.Timer(STATE_DELAY, self._read_states)
            self.timer.start()


def _entries(seen: list[tuple[float, Side, capture.AddressedSegment, bool]]) -> list[TraceEntry]:
    """The captured segments as trace entries, noted as the model notes its own."""
    start = seen[0][0] if seen else 0.0
    entries: list[TraceEntry] = []
    for when, sender, found, dropped in seen:
        seconds = round(when - start, 6)
        entry = TraceEntry(seconds, sender, found.segment, arrival=None if dropped else seconds)
        again = any(_same(earlier, entry) for earlier in entries)
        notes = ["retransmission"] * again + ["lost"] * dropped
        entries.append(replace(entry, note=", ".join(notes)))
    return entries


def _states(
    client: tuple[str, int], server: tuple[str, int], listener: socket.socket
) -> tuple[str | None, str | None]:
    server_side = state_of(server, client)
    if server_side is None and listener.fileno() != -1:
        server_side = "LISTEN"  # no connection yet: the server is its listener
    return state_of(client, server), server_side


@contextlib.contextmanager
def _server_thread(
    listener: socket.socket, injector: LossInjector, close_on_eof: float
) -> Iterator[list[socket.socket]]:
    """Accept one connection, read to end-of-file, wait, send FIN; keep it open.

    The caller closes what it accepted, after the filters are off: a socket closed
    with its filter on would go on losing segments, with no descriptor left to
    take the filter off.
    """
    accepted: list[socket.socket] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except (TimeoutError, OSError):
            return  # the client never connected (every SYN lost)
        accepted.append(connection)
        if injector.receiver == "server":
            injector.add_receiver(connection)  # it inherited the listener's filter
        connection.settimeout(_TIMEOUT)
        with contextlib.suppress(OSError):
            while connection.recv(4096):
                pass
            threading.Event().wait(close_on_eof)
            connection.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve, name="loss-server")
    thread.start()
    try:
        yield accepted
    finally:
        thread.join(3 * _TIMEOUT)


def _run_inside(name: str, scenario: LiveScenario) -> LiveRun:
    settings = _settings(scenario)
    injector = LossInjector(scenario.plan)
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
        client_sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        client_sock.bind(("127.0.0.1", 0))
        injector.add_receiver(client_sock if injector.receiver == "client" else listener)
        cap = stack.enter_context(
            capture.packet_capture(port=listener.getsockname()[1], timeout=1.0)
        )
        watch = _Watch(cap, injector, listener)
        watch.client = client_sock.getsockname()
        injector.start()
        watch.thread.start()
        accepted: list[socket.socket] = []
        try:
            error, connect_seconds = _exchange(
                scenario, listener, client_sock, injector, watch, accepted
            )
            client, server = client_sock.getsockname(), listener.getsockname()
            final = (state_of(client, server), state_of(server, client))
        finally:
            watch.join()
            injector.stop()
            for connection in accepted:
                connection.close()
    if watch.error is not None:
        raise watch.error
    if not injector.lost:
        raise TimeoutError(f"{name}: the planned loss never happened: {scenario.plan!r}")
    entries = _entries(watch.seen)
    first = entries[0].segment
    assert first is not None  # every entry is a captured segment
    server_isn = next(
        (e.segment.seq for e in entries if e.segment and e.segment.flags == _SYN | _ACK), None
    )
    return LiveRun(
        name=name,
        plan=scenario.plan,
        entries=tuple(entries),
        client_isn=first.seq,
        server_isn=server_isn,
        states_after_loss=watch.states,
        final_states=final,
        connect_error=error,
        lost=injector.lost,
        sysctls=settings,
        connect_seconds=connect_seconds,
    )


def _exchange(
    scenario: LiveScenario,
    listener: socket.socket,
    client_sock: socket.socket,
    injector: LossInjector,
    watch: _Watch,
    accepted: list[socket.socket],
) -> tuple[str | None, float]:
    """Run both applications to the end.

    Returns connect()'s errno symbol if it failed (else ``None``), and how long it
    took.  What the server accepted is added to ``accepted``, for the caller to close.
    """
    error: str | None = None
    with _server_thread(listener, injector, scenario.close_on_eof) as connections:
        client_sock.settimeout(3 * _TIMEOUT)
        started = time.monotonic()
        try:
            client_sock.connect(listener.getsockname())
        except OSError as exc:
            connect_seconds = time.monotonic() - started
            error = errno.errorcode.get(exc.errno or 0, str(exc))
            # Wake the server's accept(): on Linux, shutdown makes it fail with EINVAL.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
        else:
            connect_seconds = time.monotonic() - started
            _client_script(client_sock, scenario.close_after)
    accepted.extend(connections)
    _wait_until_quiet(watch)
    return error, round(connect_seconds, 3)


def _client_script(client_sock: socket.socket, close_after: float) -> None:
    threading.Event().wait(close_after)
    client_sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        # Ends: each pass reads at least a byte, or meets end-of-file or the timeout.
        while client_sock.recv(4096):
            pass


def _wait_until_quiet(watch: _Watch) -> None:
    """Wait until no segment has come for :data:`QUIET` seconds (at most _TIMEOUT)."""
    deadline = time.monotonic() + _TIMEOUT
    seen = -1
    # Ends: at the deadline, or once a QUIET pause adds nothing.
    while time.monotonic() < deadline and seen != len(watch.seen):
        seen = len(watch.seen)
        time.sleep(QUIET)
