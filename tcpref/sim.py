"""A deterministic simulator of two TCP endpoints joined by one link.

Some things a reader must see cannot be provoked on loopback: a lost SYN+ACK, a
lost final ACK, a window that fills and drains step by step.  This model shows
them exactly and repeatably.  It is pure: no socket, no clock, no randomness.
Time is an integer count of microseconds, so two runs of the same scenario give
the same trace, to the microsecond.

What is modelled, and where it comes from:

* **States** come from the one table in :mod:`tcpref.states`: every state change
  is a call to :meth:`tcpref.states.StateMachine.handle`, and the segment the
  table says to send is sent.
* **Sequence numbers** follow RFC 9293 Section 3.4: SYN and FIN each take one
  number, data one per byte, all modulo 2**32.  Segments are checked for
  acceptability against the receive window (Section 3.10.7.4); an unacceptable
  one is answered with an ACK and dropped.  That single rule is how duplicates
  are recovered, how a zero-window probe gets its answer, and how a stale
  segment from an old connection is rejected.
* **Segments** are :class:`tcpref.segment.Segment` records, at most one MSS of data
  each, the MSS being the smaller of the two announced in the SYNs.
* **Windows**: each side advertises its free receive buffer.  The application
  reads at a configurable rate, and the receiver sends a window update when the
  window has grown by at least min(MSS, buffer / 2) (Section 3.8.6.2.2).  A sender
  facing a zero window probes it as Linux does, with an empty segment one byte
  below the left edge of the window, on a backed-off timer.
* **Acknowledgments** of data wait up to ``ack_delay`` (Linux's delayed ACK, 40 ms)
  unless another segment carries them first.  An acknowledgment the state table
  asks for (of a SYN or a FIN) leaves at once, once the application has reacted:
  a FIN the application sends at the same moment carries it, which is how a
  teardown shrinks to three segments.
* **Retransmission** uses the limits of Linux's settings (:class:`Limits`): the
  SYN's schedule of ``net/ipv4/tcp_timer.c`` (computed by
  :func:`tcpref.kernel.syn_retry_schedule`, pure arithmetic), ``tcp_synack_retries`` with a
  doubling timeout, ``tcp_orphan_retries`` for a connection whose application has
  closed it and ``tcp_retries2`` otherwise (each as the kernel's time budget, not
  a count: see :func:`tcpref.kernel.model_timeout`), ``tcp_fin_timeout`` for an
  orphan in FIN_WAIT_2, and the 60-second TIME_WAIT.  After the handshake the
  timeout is RFC 6298's, from the handshake's round trip, never below
  ``min_rto``.

What is left out: congestion control (the sender is limited by the receiver's
window only), SACK, timestamps, window scaling, Nagle's algorithm, and the
delayed-ACK rule that acknowledges every second full segment at once.

>>> run = simulate(Endpoint(port=40000, isn=1000), Endpoint(port=80, isn=5000, opens="passive"))
>>> print(run)  # doctest: +NORMALIZE_WHITESPACE
   time  dir     segment                                   client        server
  0.000  C -> S  SYN seq=0 win=65535 [MSS=1460]            SYN_SENT      SYN_RECEIVED
  0.010  C <- S  SYN|ACK seq=0 ack=1 win=65535 [MSS=1460]  ESTABLISHED   SYN_RECEIVED
  0.020  C -> S  ACK seq=1 ack=1 win=65535                 ESTABLISHED   ESTABLISHED
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tcpref.kernel import model_timeout, syn_retry_schedule
from tcpref.segment import Flags, MaxSegmentSize, Segment
from tcpref.states import Event, State, StateMachine
from tcpref.trace import Side, TraceEntry, format_trace

__all__ = [
    "Delay",
    "Drop",
    "Endpoint",
    "Inject",
    "Limits",
    "Run",
    "SimulationError",
    "simulate",
]

_MOD = 1 << 32
_HALF = 1 << 31
_MICROSECONDS = 1_000_000
_FALLBACK_RTO = 3 * _MICROSECONDS  # RFC 6298 Section 5.7, Linux's TCP_TIMEOUT_FALLBACK


class SimulationError(ValueError):
    """A simulation that cannot run, or ran past its bound on events."""


# -- sequence-number arithmetic, modulo 2**32 (RFC 9293 Section 3.4) ------------------


def _add(number: int, count: int) -> int:
    return (number + count) % _MOD


def _before(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes before ``b`` (less than half the space away)."""
    return 0 < (b - a) % _MOD < _HALF


def _at_or_before(a: int, b: int) -> bool:
    return a == b or _before(a, b)


def _us(seconds: float, name: str) -> int:
    """Convert seconds to whole microseconds, checking the value."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {seconds!r}")
    if not 0 <= seconds < 1e9:
        raise ValueError(f"{name} must be between 0 and 1e9 seconds, not {seconds!r}")
    return round(seconds * _MICROSECONDS)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in range {low}-{high}, not {value!r}")
    return value


# -- the settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The kernel settings that bound retransmission and waiting, Linux's defaults.

    Attributes:
        syn_retries: ``tcp_syn_retries``: SYN retransmissions of ``connect()``.
        syn_linear_timeouts: ``tcp_syn_linear_timeouts``: how many of those wait
            ``initial_rto`` each before the timeout starts doubling (0 before
            Linux 6.5; it does not apply to a SYN+ACK).
        synack_retries: ``tcp_synack_retries``: SYN+ACK retransmissions of a server.
        orphan_retries: ``tcp_orphan_retries``: retransmissions of a connection whose
            application has called ``close()``; 0 means 8, as in the kernel.
        retries2: ``tcp_retries2``: retransmissions of any other data or FIN.
        fin_timeout: ``tcp_fin_timeout``: seconds an orphan waits in FIN_WAIT_2.
        time_wait: Seconds in TIME_WAIT (``TCP_TIMEWAIT_LEN``, fixed at 60 in Linux).
        initial_rto: The retransmission timeout before any round trip is measured
            (``TCP_TIMEOUT_INIT``, RFC 6298's 1 second).
        min_rto: The smallest timeout after that (``TCP_RTO_MIN``).
        max_rto: The largest timeout (``TCP_RTO_MAX``).
        ack_delay: The longest an acknowledgment of data waits (delayed ACK).

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if a count or a time is out of range.
    """

    syn_retries: int = 6
    syn_linear_timeouts: int = 4
    synack_retries: int = 5
    orphan_retries: int = 0
    retries2: int = 15
    fin_timeout: float = 60.0
    time_wait: float = 60.0
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    ack_delay: float = 0.04

    def __post_init__(self) -> None:
        _check_int("syn_retries", self.syn_retries, 1, 127)
        _check_int("syn_linear_timeouts", self.syn_linear_timeouts, 0, 127)
        _check_int("synack_retries", self.synack_retries, 1, 127)
        _check_int("orphan_retries", self.orphan_retries, 0, 127)
        _check_int("retries2", self.retries2, 1, 127)
        for name in ("fin_timeout", "time_wait", "initial_rto", "min_rto", "max_rto"):
            if _us(getattr(self, name), name) == 0:
                raise ValueError(f"{name} must be at least 1 microsecond")
        _us(self.ack_delay, "ack_delay")
        if not self.min_rto <= self.initial_rto <= self.max_rto:
            raise ValueError(
                f"need min_rto <= initial_rto <= max_rto, not {self.min_rto!r}, "
                f"{self.initial_rto!r}, {self.max_rto!r}"
            )

    @classmethod
    def from_sysctls(cls, values: Mapping[str, object]) -> Limits:
        """Build limits from sysctl values, such as ``tcpref.kernel.sysctls()``'s.

        Keys are the settings' short names (``"tcp_syn_retries"``); a value may be a
        number or an object with a ``value`` attribute (a ``tcpref.kernel.Sysctl``).
        Missing keys and ``None`` values keep the defaults.

        Raises:
            TypeError: if a value is not a number.
            ValueError: if a value is out of range.
        """
        names = {
            "tcp_syn_retries": "syn_retries",
            "tcp_syn_linear_timeouts": "syn_linear_timeouts",
            "tcp_synack_retries": "synack_retries",
            "tcp_orphan_retries": "orphan_retries",
            "tcp_retries2": "retries2",
            "tcp_fin_timeout": "fin_timeout",
        }
        chosen: dict[str, object] = {}
        for key, attribute in names.items():
            value = values.get(key)
            value = getattr(value, "value", value)
            if value is not None:
                chosen[attribute] = value
            elif key == "tcp_syn_linear_timeouts" and key in values:
                # Listed but absent: a kernel before 6.5, whose SYN backoff doubles at once.
                chosen[attribute] = 0
        return cls(**chosen)  # type: ignore[arg-type]

    def orphan_retry_count(self) -> int:
        """The retransmissions an orphan gets: ``orphan_retries``, with 0 meaning 8."""
        return self.orphan_retries or 8

    def syn_schedule(self) -> tuple[tuple[float, ...], float]:
        """When an unanswered SYN is retransmitted, and when ``connect()`` gives up.

        This is :func:`tcpref.kernel.syn_retry_schedule`, the arithmetic of
        ``net/ipv4/tcp_timer.c``, with these limits; the simulator follows it.

        Returns:
            The seconds of each retransmission after the first SYN, and of giving up.
        """
        schedule = syn_retry_schedule(
            self.syn_retries,
            self.syn_linear_timeouts,
            initial_rto=self.initial_rto,
            max_rto=self.max_rto,
        )
        return schedule.retransmissions, schedule.gives_up_at


# -- the endpoints and the link ---------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One end of the connection: its kernel's choices and its application's script.

    Times are in seconds.  "After" means after the connection is established
    for this endpoint; "at" and "from" count from the start of the run.

    Attributes:
        port: The endpoint's port.
        isn: Its initial sequence number.
        mss: The MSS it announces in its SYN.
        buffer: Its receive buffer in bytes, the window it announces when empty
            (at most 65535: the model does not scale windows).
        opens: ``"active"`` (``connect()``, the default) or ``"passive"``
            (``listen()``, then ``accept()``).
        open_at: When it calls ``connect()`` or ``listen()``.
        write: Bytes its application writes once established.
        write_after: When it writes them.
        close_after: When it calls ``close()``, or ``None``.
        close_at: When it calls ``close()``, from the start of the run, or ``None``.
        shutdown_after: When it calls ``shutdown(SHUT_WR)``, or ``None``.
        close_on_eof: How long after reading end-of-file it calls ``close()``
            (``0`` at once); ``None`` never, which is the CLOSE_WAIT bug.
        reply_on_eof: Bytes it writes on reading end-of-file, before closing.
        read_size: Bytes it reads per read, or ``None`` for all that is there.
        read_every: Seconds between its reads; 0 reads as soon as data arrives.
        read_from: When it starts reading, from the start of the run.
        read_at: Times, from the start of the run, of its first reads; a read with
            nothing to read waits for data.  After the last, ``read_every`` applies.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if a field is out of range.
    """

    port: int
    isn: int
    mss: int = 1460
    buffer: int = 65535
    opens: Literal["active", "passive"] = "active"
    open_at: float = 0.0
    write: bytes = b""
    write_after: float = 0.0
    close_after: float | None = None
    close_at: float | None = None
    shutdown_after: float | None = None
    close_on_eof: float | None = 0.0
    reply_on_eof: bytes = b""
    read_size: int | None = None
    read_every: float = 0.0
    read_from: float = 0.0
    read_at: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_int("port", self.port, 1, 65535)
        _check_int("isn", self.isn, 0, _MOD - 1)
        _check_int("mss", self.mss, 1, 65495)
        _check_int("buffer", self.buffer, 1, 65535)
        if self.opens not in ("active", "passive"):
            raise ValueError(f"opens must be 'active' or 'passive', not {self.opens!r}")
        for name in ("write", "reply_on_eof"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"{name} must be bytes, not {getattr(self, name)!r}")
        for name in ("open_at", "write_after", "read_every", "read_from"):
            _us(getattr(self, name), name)
        for name in ("close_after", "close_at", "shutdown_after", "close_on_eof"):
            if getattr(self, name) is not None:
                _us(getattr(self, name), name)
        if self.read_size is not None:
            _check_int("read_size", self.read_size, 1, 1 << 30)
        if not isinstance(self.read_at, tuple):
            raise TypeError(f"read_at must be a tuple of times, not {self.read_at!r}")
        for time in self.read_at:
            _us(time, "read_at")
        if list(self.read_at) != sorted(self.read_at):
            raise ValueError(f"read_at must be in increasing order, not {self.read_at!r}")


Match = Callable[[Segment], bool]


@dataclass(frozen=True)
class Drop:
    """A loss: drop the ``nth`` segment that matches, and the ``count - 1`` after it.

    A segment matches if it comes from ``sender`` (any if ``None``), its flags are
    exactly ``flags`` (any if ``None``), and ``when(segment)`` is true (if given).
    ``Drop(3)`` drops the third segment on the link; ``Drop(1, sender="server",
    flags=Flags.SYN | Flags.ACK)`` the first SYN+ACK; ``count=None`` every match
    from the ``nth`` on.  Injected segments are neither counted nor dropped.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if ``nth`` or ``count`` is below 1, or ``sender`` is not a side.
    """

    nth: int = 1
    sender: Side | None = None
    flags: Flags | None = None
    count: int | None = 1
    when: Match | None = None

    def __post_init__(self) -> None:
        _check_int("nth", self.nth, 1, 1 << 30)
        if self.count is not None:
            _check_int("count", self.count, 1, 1 << 30)
        if self.sender not in (None, "client", "server"):
            raise ValueError(f"sender must be 'client', 'server' or None, not {self.sender!r}")
        if self.flags is not None and not isinstance(self.flags, Flags):
            raise TypeError(f"flags must be a Flags value, not {self.flags!r}")

    def matches(self, sender: Side, segment: Segment) -> bool:
        """Whether ``segment`` from ``sender`` is one this rule counts."""
        return (
            (self.sender is None or self.sender == sender)
            and (self.flags is None or segment.flags == self.flags)
            and (self.when is None or self.when(segment))
        )

    def hits(self, match_number: int) -> bool:
        """Whether the rule acts on its ``match_number``-th match (1-based)."""
        last = None if self.count is None else self.nth + self.count - 1
        return match_number >= self.nth and (last is None or match_number <= last)


@dataclass(frozen=True)
class Delay(Drop):
    """A late segment: like :class:`Drop`, but the segment arrives ``by`` seconds late.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: as for :class:`Drop`, or if ``by`` is negative.
    """

    by: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _us(self.by, "by")


@dataclass(frozen=True)
class Inject:
    """A segment put on the link from outside the two endpoints, such as an old duplicate.

    Attributes:
        at: When it is sent.
        sender: The side it seems to come from; it travels to the other side.
        segment: The segment.
        note: How the trace labels it.

    Raises:
        TypeError: if ``segment`` is not a Segment.
        ValueError: if ``sender`` is not a side or ``at`` is out of range.
    """

    at: float
    sender: Side
    segment: Segment
    note: str = "old duplicate"

    def __post_init__(self) -> None:
        _us(self.at, "at")
        if self.sender not in ("client", "server"):
            raise ValueError(f"sender must be 'client' or 'server', not {self.sender!r}")
        if not isinstance(self.segment, Segment):
            raise TypeError(f"segment must be a Segment, not {self.segment!r}")


# -- a run's result ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a simulation produced.

    Attributes:
        trace: One entry per segment or event, in the order they happened.
        client_isn: The client's initial sequence number.
        server_isn: The server's initial sequence number.
        received: The bytes each side's application read.
        errors: The error each side's application saw (``"ECONNREFUSED"``,
            ``"ECONNRESET"``, ``"ETIMEDOUT"``), if any.
        final_states: Each side's state when the run ended.
        ended_at: When the last event happened, in seconds.
    """

    trace: tuple[TraceEntry, ...]
    client_isn: int
    server_isn: int
    received: Mapping[Side, bytes]
    errors: Mapping[Side, str]
    final_states: Mapping[Side, State]
    ended_at: float

    def segments(self, sender: Side | None = None) -> list[TraceEntry]:
        """The entries that are segments, from ``sender`` only if it is given."""
        return [
            entry
            for entry in self.trace
            if entry.segment is not None and (sender is None or entry.sender == sender)
        ]

    def table(self, *, relative: bool = True) -> str:
        """The trace as :func:`tcpref.trace.format_trace` prints it.

        Args:
            relative: Print sequence numbers relative to each side's ISN.
        """
        if relative:
            return format_trace(self.trace, self.client_isn, self.server_isn)
        return format_trace(self.trace)

    def __str__(self) -> str:
        return self.table()


# -- the simulation ---------------------------------------------------------------------


@dataclass
class _Record:
    """A trace entry while the run is still going: its states are filled in later."""

    time: int
    sender: Side
    segment: Segment | None
    note: str
    arrival: int | None = None
    states: tuple[State, State] | None = None


@dataclass
class _Outstanding:
    """A sent segment that takes sequence space and waits for its acknowledgment."""

    seq: int
    flags: Flags
    payload: bytes
    retransmissions: int = 0
    first_retransmitted_at: int | None = None

    @property
    def end(self) -> int:
        length = len(self.payload) + (Flags.SYN in self.flags) + (Flags.FIN in self.flags)
        return _add(self.seq, length)


class _Clock:
    """The event queue: actions run in time order, ties in the order they were queued."""

    def __init__(self, max_events: int) -> None:
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._max_events = max_events

    def at(self, time: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (time, next(self._order), action))

    def run(self, until: int) -> None:
        # Bounded twice: by the time limit and by the number of events.
        for _ in range(self._max_events):
            if not self._queue or self._queue[0][0] > until:
                return
            self.now, _, action = heapq.heappop(self._queue)
            action()
        raise SimulationError(
            f"the run took more than {self._max_events} events; raise max_events or "
            "shorten it with until"
        )


class _Link:
    """Carries segments between the two endpoints, applying the loss plan."""

    def __init__(self, simulation: _Simulation, delay: int, faults: Sequence[Drop]) -> None:
        self.simulation = simulation
        self.delay = delay
        self.faults = tuple(faults)
        self.matches = [0] * len(self.faults)

    def carry(self, sender: Side, segment: Segment, note: str, injected: bool = False) -> None:
        clock = self.simulation.clock
        record = _Record(clock.now, sender, segment, note)
        self.simulation.records.append(record)
        extra = 0
        if not injected:
            for index, rule in enumerate(self.faults):
                if not rule.matches(sender, segment):
                    continue
                self.matches[index] += 1
                if not rule.hits(self.matches[index]):
                    continue
                if isinstance(rule, Delay):
                    extra += _us(rule.by, "by")
                    record.note = _join(record.note, "delayed")
                else:
                    record.note = _join(record.note, "lost")
                    record.states = self.simulation.states()
                    return
        arrival = clock.now + self.delay + extra
        record.arrival = arrival
        receiver = self.simulation.other(sender)

        def deliver() -> None:
            receiver.receive(segment)
            record.states = self.simulation.states()

        clock.at(arrival, deliver)


def _join(note: str, more: str) -> str:
    return f"{note}, {more}" if note else more


class _Simulation:
    def __init__(
        self,
        client: Endpoint,
        server: Endpoint,
        delay: int,
        faults: Sequence[Drop],
        limits: Limits,
        max_events: int,
    ) -> None:
        self.clock = _Clock(max_events)
        self.records: list[_Record] = []
        self.limits = limits
        self.link = _Link(self, delay, faults)
        # The server first: at equal times, listen() runs before connect().
        self.server = _Tcb(self, "server", server, client.port)
        self.client = _Tcb(self, "client", client, server.port)

    def other(self, side: Side) -> _Tcb:
        return self.server if side == "client" else self.client

    def states(self) -> tuple[State, State]:
        return self.client.machine.state, self.server.machine.state

    def note(self, side: Side, text: str) -> None:
        self.records.append(_Record(self.clock.now, side, None, text, states=self.states()))


class _Tcb:
    """One endpoint's transmission control block (RFC 9293 Section 3.3.1) and its app."""

    def __init__(self, simulation: _Simulation, side: Side, config: Endpoint, peer_port: int):
        self.sim = simulation
        self.clock = simulation.clock
        self.limits = simulation.limits
        self.side: Side = side
        self.config = config
        self.peer_port = peer_port
        self.machine = StateMachine()
        # Send sequence variables.
        self.iss = config.isn
        self.snd_una = config.isn
        self.snd_nxt = config.isn
        self.snd_wnd = 0
        self.send_mss = config.mss
        self.unsent = b""
        self.fin_queued = False
        self.fin_sent = False
        self.outstanding: list[_Outstanding] = []
        # Receive sequence variables.
        self.irs: int | None = None
        self.rcv_nxt = 0
        self.unread = 0
        self.received_data = b""
        self.pending = b""  # arrived, not yet read by the application
        self.fin_received = False
        self.out_of_order: dict[int, Segment] = {}
        # The right edge of the window we last advertised: ack + window.
        self.advertised_edge = 0
        # Timers are (generation) counters: a stale timer finds the count moved on.
        self.rto = _us(self.limits.initial_rto, "initial_rto")
        self.rtx_generation = 0
        self.rtx_running = False
        self.persist_generation = 0
        self.persist_backoff = 0
        self.delack_generation = 0
        self.delack_running = False
        self.wait_generation = 0
        self.read_scheduled = False
        self.planned_reads = [_us(time, "read_at") for time in config.read_at]
        # The handshake's round trip sets the timeout after it (RFC 6298, one sample).
        self.syn_sent_at: int | None = None
        self.first_syn_at: int | None = None
        self.outstanding_was_retransmitted = False
        # Application-side facts.
        self.orphan = False
        self.eof_read = False
        self.established_once = False
        self.ack_now = False
        self.error = ""
        self.schedule_open()

    # -- the application ------------------------------------------------------------

    def schedule_open(self) -> None:
        def do_open() -> None:
            if self.config.opens == "passive":
                self.apply(Event.PASSIVE_OPEN)
            else:
                self.apply(Event.ACTIVE_OPEN)

        self.clock.at(_us(self.config.open_at, "open_at"), do_open)
        if self.config.close_at is not None:
            self.clock.at(_us(self.config.close_at, "close_at"), self.app_close)

    def on_established(self) -> None:
        if self.established_once:
            return
        self.established_once = True
        now, config = self.clock.now, self.config
        if config.write:
            self.clock.at(now + _us(config.write_after, "write_after"), self.app_write_data)
        if config.shutdown_after is not None:
            self.clock.at(now + _us(config.shutdown_after, "shutdown_after"), self.app_shutdown)
        if config.close_after is not None:
            self.clock.at(now + _us(config.close_after, "close_after"), self.app_close)
        self.schedule_read()

    def app_write_data(self) -> None:
        self.app_write(self.config.write)

    def app_write(self, data: bytes) -> None:
        if self.fin_queued or self.machine.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return
        self.unsent += data
        self.output()

    def app_shutdown(self) -> None:
        if self.machine.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.SYN_RECEIVED):
            self.apply(Event.SHUTDOWN_WRITE)

    def app_close(self) -> None:
        if self.orphan:
            return
        self.orphan = True
        state = self.machine.state
        if state in (State.ESTABLISHED, State.CLOSE_WAIT, State.SYN_RECEIVED):
            self.apply(Event.CLOSE)
        elif state in (State.LISTEN, State.SYN_SENT):
            self.apply(Event.CLOSE)
            self.sim.note(self.side, "close()")
        elif state is State.FIN_WAIT_2:
            self.arm_fin_wait_2_timer()

    def schedule_read(self) -> None:
        """Queue the application's next read, if it has something to read."""
        if self.read_scheduled or self.eof_read:
            return
        if not self.pending and not self.fin_received:
            return
        now = self.clock.now
        start = _us(self.config.read_from, "read_from")
        every = _us(self.config.read_every, "read_every")
        if self.planned_reads:
            when = max(now, self.planned_reads.pop(0))
        elif every == 0:
            when = max(now, start)
        elif now < start:
            when = start
        else:
            when = start + ((now - start) // every + 1) * every
        self.read_scheduled = True
        if when == now:
            self.app_read()
        else:
            self.clock.at(when, self.app_read)

    def app_read(self) -> None:
        self.read_scheduled = False
        if self.pending:
            size = self.config.read_size or len(self.pending)
            chunk, self.pending = self.pending[:size], self.pending[size:]
            self.received_data += chunk
            self.unread -= len(chunk)
            self.maybe_update_window()
        elif self.fin_received and not self.eof_read:
            self.eof_read = True
            self.on_eof()
        self.schedule_read()

    def on_eof(self) -> None:
        if self.config.reply_on_eof:
            self.app_write(self.config.reply_on_eof)
        if self.config.close_on_eof is not None:
            delay = _us(self.config.close_on_eof, "close_on_eof")
            if delay == 0:
                self.app_close()
            else:
                self.clock.at(self.clock.now + delay, self.app_close)

    def maybe_update_window(self) -> None:
        # What the peer may still send, as far as it knows, against what we could offer.
        offered = (self.advertised_edge - self.rcv_nxt) % _MOD
        window = self.window()
        threshold = min(self.send_mss, self.config.buffer // 2)
        if window - offered >= threshold or (offered == 0 and window > 0):
            self.ack_now = True
            self.flush()

    # -- the state table --------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply one event through the table and send what the table says to send."""
        before = self.machine.state
        transition = self.machine.handle(event)
        if transition.send == "SYN":
            self.send_syn(with_ack=False)
        elif transition.send == "SYN+ACK":
            self.send_syn(with_ack=True)
        elif transition.send == "ACK":
            self.ack_now = True
        elif transition.send == "FIN":
            self.fin_queued = True
            self.output()
        after = self.machine.state
        if after is State.ESTABLISHED and before is not State.ESTABLISHED:
            self.on_established()
        if after is State.TIME_WAIT:
            self.arm_time_wait_timer()
        if after is State.FIN_WAIT_2 and self.orphan:
            self.arm_fin_wait_2_timer()
        if after is State.CLOSED:
            self.stop_timers()

    # -- sending ----------------------------------------------------------------------

    def window(self) -> int:
        return self.config.buffer - self.unread

    def transmit(self, flags: Flags, seq: int, payload: bytes = b"", note: str = "") -> None:
        if self.irs is not None and Flags.RST not in flags:
            flags |= Flags.ACK
        options = (MaxSegmentSize(self.config.mss),) if Flags.SYN in flags else ()
        ack = self.rcv_nxt if Flags.ACK in flags else 0
        window = 0 if Flags.RST in flags else self.window()
        segment = Segment(
            self.config.port,
            self.peer_port,
            seq,
            ack,
            flags,
            window,
            options=options,
            payload=payload,
        )
        if Flags.SYN in flags and note == "retransmission":
            self.outstanding_was_retransmitted = True
        if Flags.ACK in flags:
            self.advertised_edge = _add(self.rcv_nxt, window)
            self.ack_now = False
            self.delack_generation += 1
            self.delack_running = False
        self.sim.link.carry(self.side, segment, note)

    def send_syn(self, *, with_ack: bool) -> None:
        flags = Flags.SYN | Flags.ACK if with_ack else Flags.SYN
        self.snd_nxt = _add(self.iss, 1)
        self.outstanding = [_Outstanding(self.iss, flags, b"")]
        self.syn_sent_at = self.clock.now
        self.outstanding_was_retransmitted = False
        if self.first_syn_at is None:
            self.first_syn_at = self.clock.now
        self.transmit(flags, self.iss)
        self.restart_rtx_timer(self.rto)

    def output(self) -> None:
        """Send the data the window allows, then the FIN if it is due (RFC 9293 3.8.6)."""
        if self.irs is None or self.fin_sent:
            return
        if self.machine.state in (State.SYN_SENT, State.SYN_RECEIVED):
            return
        sent_any = False
        # Ends: each pass sends at least one byte of unsent data, or breaks.
        while self.unsent:
            in_flight = (self.snd_nxt - self.snd_una) % _MOD
            usable = self.snd_wnd - in_flight
            size = min(self.send_mss, len(self.unsent))
            if usable < size:
                # Wait for a full segment (sender-side silly window avoidance), unless
                # nothing is in flight: then no ACK will come to open the window further.
                if usable <= 0 or self.outstanding:
                    break
                size = usable
            payload, self.unsent = self.unsent[:size], self.unsent[size:]
            flags = Flags.ACK
            if not self.unsent:
                flags |= Flags.PSH
                if self.fin_queued:
                    flags |= Flags.FIN
            self.send_sequenced(flags, payload)
            sent_any = True
        if self.fin_queued and not self.fin_sent and not self.unsent and not sent_any:
            self.send_sequenced(Flags.FIN | Flags.ACK, b"")
        if self.unsent and not self.outstanding:
            self.arm_persist_timer()

    def send_sequenced(self, flags: Flags, payload: bytes) -> None:
        record = _Outstanding(self.snd_nxt, flags, payload)
        self.outstanding.append(record)
        self.snd_nxt = record.end
        if Flags.FIN in flags:
            self.fin_sent = True
        self.transmit(flags, record.seq, payload)
        if not self.rtx_running:
            self.restart_rtx_timer(self.rto)

    def flush(self) -> None:
        """Send a pure ACK if one is owed now and nothing else carried it."""
        if self.ack_now and self.irs is not None:
            self.transmit(Flags.ACK, self.snd_nxt)

    def send_reset_for(self, segment: Segment) -> None:
        """Answer a segment for no connection with RST (RFC 9293 Section 3.10.7.1)."""
        if Flags.ACK in segment.flags:
            reply = Segment(self.config.port, self.peer_port, segment.ack, 0, Flags.RST, 0)
        else:
            length = (
                len(segment.payload) + (Flags.SYN in segment.flags) + (Flags.FIN in segment.flags)
            )
            reply = Segment(
                self.config.port,
                self.peer_port,
                0,
                _add(segment.seq, length),
                Flags.RST | Flags.ACK,
                0,
            )
        self.sim.link.carry(self.side, reply, "")

    # -- timers -----------------------------------------------------------------------

    def restart_rtx_timer(self, timeout: int) -> None:
        self.rtx_generation += 1
        generation = self.rtx_generation
        self.rtx_running = True
        self.clock.at(self.clock.now + timeout, lambda: self.on_rtx_timer(generation))

    def stop_timers(self) -> None:
        self.rtx_generation += 1
        self.rtx_running = False
        self.persist_generation += 1
        self.delack_generation += 1
        self.delack_running = False
        self.wait_generation += 1

    def retry_limit(self, head: _Outstanding) -> int:
        if head.flags == Flags.SYN | Flags.ACK:
            return self.limits.synack_retries
        if self.orphan:
            return self.limits.orphan_retry_count()
        return self.limits.retries2

    def out_of_time(self, head: _Outstanding) -> bool:
        """Whether the kernel gives up on ``head`` rather than send it again.

        A SYN+ACK gets a count of retransmissions, ``tcp_synack_retries``.  Data and
        FINs get a time budget (``retransmits_timed_out()`` in tcp_timer.c): the time
        that ``tcp_retries2`` (or, for an orphan, ``tcp_orphan_retries``) doubling
        timeouts from ``min_rto`` would take, counted from the first retransmission.
        So the count of retransmissions depends on the timeout: from 200 ms, one more
        than the setting; from a longer timeout, fewer.
        """
        limit = self.retry_limit(head)
        if head.flags == Flags.SYN | Flags.ACK:
            return head.retransmissions >= limit
        if head.first_retransmitted_at is None:
            return False  # the first expiry always retransmits
        budget = model_timeout(limit, self.limits.min_rto, self.limits.max_rto)
        return self.clock.now - head.first_retransmitted_at >= _us(budget, "budget")

    def on_rtx_timer(self, generation: int) -> None:
        if generation != self.rtx_generation or not self.outstanding:
            return
        self.rtx_running = False
        head = self.outstanding[0]
        if head.flags == Flags.SYN:
            self.retransmit_syn(head)
            return
        if self.out_of_time(head):
            self.give_up()
            return
        head.retransmissions += 1
        if head.first_retransmitted_at is None:
            head.first_retransmitted_at = self.clock.now
        self.rto = min(self.rto * 2, _us(self.limits.max_rto, "max_rto"))
        self.transmit(head.flags, head.seq, head.payload, "retransmission")
        self.restart_rtx_timer(self.rto)

    def retransmit_syn(self, head: _Outstanding) -> None:
        retransmissions, gives_up_at = self.limits.syn_schedule()
        times = [_us(time, "retransmission") for time in retransmissions]
        give_up = _us(gives_up_at, "gives_up_at")
        started = self.first_syn_at or 0
        if head.retransmissions >= len(times):
            self.give_up()
            return
        head.retransmissions += 1
        self.transmit(head.flags, head.seq, note="retransmission")
        following = times[head.retransmissions] if head.retransmissions < len(times) else give_up
        self.restart_rtx_timer(started + following - self.clock.now)

    def give_up(self) -> None:
        passive_handshake = self.machine.state is State.SYN_RECEIVED and not (
            self.machine.opened_actively
        )
        self.error = "ETIMEDOUT"
        self.apply(Event.RETRANSMISSION_LIMIT)
        if passive_handshake:
            # The kernel drops the half-open connection; the listener is still there.
            self.error = ""
            self.reset_to_listen()
            self.machine.handle(Event.PASSIVE_OPEN)
            self.sim.note(self.side, "gives up the handshake; the listener stays")
        else:
            self.sim.note(self.side, "gives up: ETIMEDOUT")

    def reset_to_listen(self) -> None:
        """Forget a half-open connection: the listener starts afresh for the next SYN."""
        self.irs = None
        self.outstanding = []
        self.snd_una = self.snd_nxt = self.iss
        self.rto = _us(self.limits.initial_rto, "initial_rto")
        self.syn_sent_at = self.first_syn_at = None
        self.stop_timers()

    def arm_persist_timer(self) -> None:
        self.persist_generation += 1
        generation = self.persist_generation
        timeout = min(self.rto << self.persist_backoff, _us(self.limits.max_rto, "max_rto"))
        self.clock.at(self.clock.now + timeout, lambda: self.on_persist_timer(generation))

    def on_persist_timer(self, generation: int) -> None:
        if generation != self.persist_generation or not self.unsent:
            return
        if self.snd_wnd > 0 or self.outstanding:
            return
        # Linux's zero-window probe: no data, one below the next byte the peer expects,
        # so the peer finds it unacceptable and answers with an ACK and its window.
        self.transmit(Flags.ACK, _add(self.snd_una, -1), note="window probe")
        self.persist_backoff += 1
        self.arm_persist_timer()

    def arm_time_wait_timer(self) -> None:
        self.wait_generation += 1
        generation = self.wait_generation
        timeout = _us(self.limits.time_wait, "time_wait")
        self.clock.at(self.clock.now + timeout, lambda: self.on_wait_timer(generation))

    def arm_fin_wait_2_timer(self) -> None:
        if self.machine.state is not State.FIN_WAIT_2:
            return
        self.wait_generation += 1
        generation = self.wait_generation
        timeout = _us(self.limits.fin_timeout, "fin_timeout")
        self.clock.at(self.clock.now + timeout, lambda: self.on_wait_timer(generation))

    def on_wait_timer(self, generation: int) -> None:
        if generation != self.wait_generation:
            return
        if self.machine.state is State.TIME_WAIT:
            self.apply(Event.TIME_WAIT_EXPIRY)
            self.sim.note(self.side, "TIME_WAIT ends")
        elif self.machine.state is State.FIN_WAIT_2:
            self.apply(Event.FIN_WAIT_2_TIMEOUT)
            self.sim.note(self.side, "tcp_fin_timeout ends FIN_WAIT_2")

    def arm_delayed_ack(self) -> None:
        if self.delack_running:
            return
        self.delack_running = True
        self.delack_generation += 1
        generation = self.delack_generation
        delay = _us(self.limits.ack_delay, "ack_delay")

        def fire() -> None:
            if generation == self.delack_generation:
                self.delack_running = False
                self.ack_now = True
                self.flush()

        self.clock.at(self.clock.now + delay, fire)

    # -- receiving (RFC 9293 Section 3.10.7) ------------------------------------------

    def receive(self, segment: Segment) -> None:
        state = self.machine.state
        if state is State.CLOSED:
            if Flags.RST not in segment.flags:
                if segment.flags == Flags.SYN:
                    self.machine.handle(Event.RECV_SYN)  # the table: answer with RST
                self.send_reset_for(segment)
        elif state is State.LISTEN:
            self.receive_in_listen(segment)
        elif state is State.SYN_SENT:
            self.receive_in_syn_sent(segment)
        else:
            self.receive_synchronized(segment)
        self.schedule_read()
        self.output()
        self.flush()

    def learn_peer(self, segment: Segment) -> None:
        self.irs = segment.seq
        self.rcv_nxt = _add(segment.seq, 1)
        self.snd_wnd = segment.window
        for option in segment.options:
            if isinstance(option, MaxSegmentSize):
                self.send_mss = min(self.config.mss, option.mss)

    def receive_in_listen(self, segment: Segment) -> None:
        flags = segment.flags
        if Flags.RST in flags:
            self.apply(Event.RECV_RST)  # ignored: the table keeps LISTEN
        elif Flags.SYN in flags and Flags.ACK in flags:
            self.apply(Event.RECV_SYN_ACK)  # the table: answer with RST
            self.send_reset_for(segment)
        elif Flags.ACK in flags:
            self.send_reset_for(segment)  # any acknowledgment is bad here (3.10.7.2)
        elif Flags.SYN in flags:
            self.learn_peer(segment)
            self.apply(Event.RECV_SYN)

    def measure_rtt(self) -> None:
        """Set the timeout from the handshake's round trip (RFC 6298, one sample).

        Karn's rule (RFC 6298 Section 3): a retransmitted SYN gives no sample, since
        the answer may be to either copy; the timeout falls back to 3 s (Section 5.7).
        """
        if self.syn_sent_at is None:
            return
        if self.outstanding_was_retransmitted:
            self.syn_sent_at = None
            self.rto = max(self.rto, _FALLBACK_RTO)
            return
        sample = self.clock.now - self.syn_sent_at
        self.syn_sent_at = None
        variation = max(_us(self.limits.min_rto, "min_rto"), 2 * sample)
        self.rto = min(sample + variation, _us(self.limits.max_rto, "max_rto"))

    def receive_in_syn_sent(self, segment: Segment) -> None:
        flags = segment.flags
        expected_ack = _add(self.iss, 1)
        if Flags.ACK in flags and segment.ack != expected_ack:
            if Flags.RST not in flags:
                # An acknowledgment of something we never sent: an old duplicate.
                self.send_reset_for(segment)
            return
        if Flags.RST in flags:
            if Flags.ACK in flags:
                self.error = "ECONNREFUSED"
                self.apply(Event.RECV_RST)
            return
        if Flags.SYN not in flags:
            return
        self.learn_peer(segment)
        if Flags.ACK in flags:
            self.acknowledge(segment.ack)
            self.measure_rtt()
            self.apply(Event.RECV_SYN_ACK)
        else:
            # Simultaneous open: our SYN crossed the peer's (RFC 9293 Figure 7).
            self.apply(Event.RECV_SYN)

    def acceptable(self, segment: Segment) -> bool:
        """RFC 9293 Section 3.10.7.4's first check: is the segment in the window?"""
        length = len(segment.payload) + (Flags.SYN in segment.flags) + (Flags.FIN in segment.flags)
        window = self.window()
        offset = (segment.seq - self.rcv_nxt) % _MOD
        if length == 0:
            return offset == 0 if window == 0 else offset < window
        if window == 0:
            return False
        end_offset = (offset + length - 1) % _MOD
        return offset < window or end_offset < window

    def receive_synchronized(self, segment: Segment) -> None:
        flags = segment.flags
        state = self.machine.state
        if state is State.SYN_RECEIVED and Flags.SYN in flags and segment.seq == self.irs:
            if Flags.ACK not in flags:
                # The client sent its SYN again: our SYN+ACK was lost or is late.
                # Linux answers with the SYN+ACK again (tcp_check_req).
                self.transmit(Flags.SYN | Flags.ACK, self.iss, note="retransmission")
                self.restart_rtx_timer(self.rto)  # as Linux does (tcp_check_req)
            elif segment.ack == _add(self.iss, 1):
                # Simultaneous open: the peer's SYN+ACK completes it (RFC 9293 Figure 7).
                self.acknowledge(segment.ack)
                self.measure_rtt()
                self.snd_wnd = segment.window
                self.apply(Event.RECV_SYN_ACK)
            else:
                self.send_reset_for(segment)
            return
        if self.is_repeated_fin(segment):
            if state is State.TIME_WAIT:
                self.apply(Event.RECV_FIN)  # the table: ACK again, restart 2 MSL
            else:
                self.ack_now = True
            return
        if not self.acceptable(segment):
            if Flags.RST not in flags:
                self.ack_now = True  # an old or out-of-window segment: say where we are
            return
        if Flags.RST in flags:
            self.error = "ECONNRESET" if state is not State.SYN_RECEIVED else ""
            self.apply(Event.RECV_RST)
            if self.machine.state is State.LISTEN:
                self.reset_to_listen()
            return
        if Flags.SYN in flags:
            self.ack_now = True  # a SYN in a synchronized state: a challenge ACK (RFC 5961)
            return
        if Flags.ACK not in flags:
            return
        if not self.process_ack(segment):
            return
        self.process_data_and_fin(segment)

    def is_repeated_fin(self, segment: Segment) -> bool:
        if not self.fin_received or Flags.FIN not in segment.flags:
            return False
        return _add(segment.seq, len(segment.payload) + 1) == self.rcv_nxt

    def process_ack(self, segment: Segment) -> bool:
        """Handle the acknowledgment field; return whether to go on with the segment."""
        state = self.machine.state
        ack = segment.ack
        if _before(self.snd_nxt, ack):
            self.ack_now = True  # acknowledges what we never sent
            return False
        if state is State.SYN_RECEIVED:
            if ack != _add(self.iss, 1):
                self.send_reset_for(segment)
                return False
            self.acknowledge(ack)
            self.measure_rtt()
            self.snd_wnd = segment.window
            self.apply(Event.RECV_ACK_OF_SYN)
            return True
        if _at_or_before(self.snd_una, ack):
            self.acknowledge(ack)
            self.snd_wnd = segment.window
            if self.snd_wnd > 0:
                self.persist_backoff = 0
        fin_acked = self.fin_sent and ack == self.snd_nxt
        carries_fin = Flags.FIN in segment.flags and self.fin_is_next(segment)
        if state is State.FIN_WAIT_1 and fin_acked:
            if carries_fin:
                self.take_data(segment)
                self.fin_received = True
                self.rcv_nxt = _add(self.rcv_nxt, 1)
                self.apply(Event.RECV_FIN_ACK)
                return False
            self.apply(Event.RECV_ACK_OF_FIN)
        elif state in (State.CLOSING, State.LAST_ACK) and fin_acked:
            self.apply(Event.RECV_ACK_OF_FIN)
            return False
        return self.machine.state not in (State.CLOSED, State.TIME_WAIT)

    def fin_is_next(self, segment: Segment) -> bool:
        return segment.seq == self.rcv_nxt or (
            _before(segment.seq, self.rcv_nxt)
            and _add(segment.seq, len(segment.payload)) == self.rcv_nxt
        )

    def acknowledge(self, ack: int) -> None:
        """Forget the segments ``ack`` covers, and restart or stop the timer."""
        if not _before(self.snd_una, ack):
            return
        self.snd_una = ack
        self.outstanding = [item for item in self.outstanding if _before(ack, item.end)]
        if self.outstanding:
            self.restart_rtx_timer(self.rto)
        else:
            self.rtx_generation += 1
            self.rtx_running = False

    def take_data(self, segment: Segment) -> None:
        """Accept the segment's new bytes, if it is the next in order."""
        if segment.seq != self.rcv_nxt or not segment.payload:
            return
        self.rcv_nxt = _add(self.rcv_nxt, len(segment.payload))
        self.pending += segment.payload
        self.unread += len(segment.payload)

    def process_data_and_fin(self, segment: Segment) -> None:
        if segment.seq != self.rcv_nxt:
            if segment.payload or Flags.FIN in segment.flags:
                self.out_of_order[segment.seq] = segment
                self.ack_now = True  # a duplicate ACK points at the gap
            return
        self.consume(segment)
        # Ends: each pass removes one queued segment.
        while self.rcv_nxt in self.out_of_order and not self.fin_received:
            self.consume(self.out_of_order.pop(self.rcv_nxt))

    def consume(self, segment: Segment) -> None:
        self.take_data(segment)
        if segment.payload:
            self.arm_delayed_ack()
        if Flags.FIN in segment.flags:
            self.fin_received = True
            self.rcv_nxt = _add(self.rcv_nxt, 1)
            self.apply(Event.RECV_FIN)


def _validate_pair(client: Endpoint, server: Endpoint) -> None:
    for name, value in (("client", client), ("server", server)):
        if not isinstance(value, Endpoint):
            raise TypeError(f"{name} must be an Endpoint, not {value!r}")
    if client.opens == "passive":
        raise ValueError("the client must open actively (opens='active')")


def simulate(
    client: Endpoint,
    server: Endpoint,
    *,
    delay: float = 0.01,
    faults: Sequence[Drop] = (),
    inject: Sequence[Inject] = (),
    limits: Limits | None = None,
    until: float = 600.0,
    max_events: int = 100_000,
) -> Run:
    """Run one connection between ``client`` and ``server`` and return its trace.

    Args:
        client: The endpoint that opens actively.
        server: The other endpoint: ``opens="passive"`` for a server, or
            ``"active"`` too for a simultaneous open.
        delay: The link's one-way delay in seconds.
        faults: The loss plan: :class:`Drop` and :class:`Delay` rules.
        inject: Segments put on the link from outside, such as old duplicates.
        limits: The kernel settings; Linux's defaults if ``None``.
        until: Stop at this time (seconds), even if timers are still running.
        max_events: A bound on the events processed.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument is out of range.
        SimulationError: if the run needs more than ``max_events`` events.
    """
    _validate_pair(client, server)
    if limits is None:
        limits = Limits()
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, not {limits!r}")
    for rule in faults:
        if not isinstance(rule, Drop):
            raise TypeError(f"faults must be Drop or Delay rules, not {rule!r}")
    _check_int("max_events", max_events, 1, 10_000_000)
    simulation = _Simulation(client, server, _us(delay, "delay"), faults, limits, max_events)
    for item in inject:
        if not isinstance(item, Inject):
            raise TypeError(f"inject must hold Inject records, not {item!r}")
        simulation.clock.at(
            _us(item.at, "at"),
            _injector(simulation, item),
        )
    simulation.clock.run(_us(until, "until"))
    return _result(simulation)


def _injector(simulation: _Simulation, item: Inject) -> Callable[[], None]:
    def send() -> None:
        simulation.link.carry(item.sender, item.segment, item.note, injected=True)

    return send


def _result(simulation: _Simulation) -> Run:
    records = sorted(simulation.records, key=lambda record: record.time)
    final = simulation.states()
    entries = []
    for record in records:
        client_state, server_state = record.states or final
        entries.append(
            TraceEntry(
                time=record.time / _MICROSECONDS,
                sender=record.sender,
                segment=record.segment,
                note=record.note,
                arrival=None if record.arrival is None else record.arrival / _MICROSECONDS,
                client_state=client_state,
                server_state=server_state,
            )
        )
    client, server = simulation.client, simulation.server
    errors: dict[Side, str] = {}
    for tcb in (client, server):
        if tcb.error:
            errors[tcb.side] = tcb.error
    last = max((record.arrival or record.time for record in records), default=0)
    return Run(
        trace=tuple(entries),
        client_isn=client.iss,
        server_isn=server.iss,
        received={"client": client.received_data, "server": server.received_data},
        errors=errors,
        final_states={"client": client.machine.state, "server": server.machine.state},
        ended_at=last / _MICROSECONDS,
    )
