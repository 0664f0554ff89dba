"""The TCP connection state machine of RFC 9293, as one table.

Two rules, borrowed from h11's ``_state.py``:

* Everything that affects the state machine lives in this file.  The special
  cases (the origin-dependent reset in SYN_RECEIVED, the retransmitted FIN in
  TIME_WAIT) are entries in :data:`TRANSITIONS`, never code beside it.
* This file knows nothing of sockets.  It is pure: events go in, states and the
  segment to send come out, so every claim about it is checked without a network.

The states are those of RFC 9293 Section 3.3.2 (Figure 5); the transitions follow
Figure 5 and the event processing of Section 3.10.  :class:`StateMachine` walks the
table one event at a time, and :func:`transitions_from` and :func:`path` read it.

>>> machine = StateMachine()
>>> machine.handle(Event.ACTIVE_OPEN)
Transition(new_state=<State.SYN_SENT>, send='SYN')
>>> machine.state
<State.SYN_SENT>
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "TRANSITIONS",
    "Event",
    "IllegalTransition",
    "Segment",
    "State",
    "StateMachine",
    "Transition",
    "path",
    "transitions_from",
]


class State(enum.Enum):
    """The eleven states of a TCP connection (RFC 9293 Section 3.3.2), an ``enum.Enum``."""

    CLOSED = enum.auto()
    LISTEN = enum.auto()
    SYN_SENT = enum.auto()
    SYN_RECEIVED = enum.auto()
    ESTABLISHED = enum.auto()
    FIN_WAIT_1 = enum.auto()
    FIN_WAIT_2 = enum.auto()
    CLOSE_WAIT = enum.auto()
    CLOSING = enum.auto()
    LAST_ACK = enum.auto()
    TIME_WAIT = enum.auto()

    def __repr__(self) -> str:
        return f"<State.{self.name}>"


class Event(enum.Enum):
    """What can happen to a connection (an ``enum.Enum``): a user call, a segment, a timer.

    User calls (RFC 9293 Section 3.10.1 to 3.10.4):

    * ``PASSIVE_OPEN``: ``listen()``; wait for a SYN.
    * ``ACTIVE_OPEN``: ``connect()``; send a SYN.
    * ``CLOSE``: ``close()``; the application sends no more and reads no more.
    * ``SHUTDOWN_WRITE``: ``shutdown(SHUT_WR)``, the half-close.  The table maps it
      exactly as the RFC maps a CLOSE, because the RFC's CLOSE only means "I have
      no more data to send": both send a FIN and move to the same state.  The
      difference is in what the application may still do.  After
      ``SHUTDOWN_WRITE`` it keeps its socket and may still *read* what the peer
      sends, up to the peer's FIN.  After ``close()`` the socket is gone: data that
      arrives later has no reader (Linux answers it with RST).

    Segments received (each one acceptable, RFC 9293 Section 3.10.7):

    * ``RECV_SYN``: a SYN (without ACK).
    * ``RECV_SYN_ACK``: a SYN that also acknowledges our SYN.
    * ``RECV_ACK_OF_SYN``: an ACK that acknowledges our SYN (the third segment of
      the handshake).
    * ``RECV_ACK_OF_FIN``: an ACK that acknowledges our FIN.
    * ``RECV_FIN``: a FIN that does not acknowledge our FIN (or we sent none).
    * ``RECV_FIN_ACK``: a FIN that also acknowledges our FIN for the first time.
    * ``RECV_RST``: a reset.

    Timers (RFC 9293 Section 3.10.8):

    * ``RETRANSMISSION_LIMIT``: the retransmissions of an unacknowledged segment
      gave up (the user timeout, or RFC 1122's R2 threshold).
    * ``TIME_WAIT_EXPIRY``: 2 MSL have passed in TIME_WAIT.
    * ``FIN_WAIT_2_TIMEOUT``: an orphaned connection (its application called
      ``close()``) has waited ``tcp_fin_timeout`` seconds in FIN_WAIT_2 for the
      peer's FIN.  This timer is Linux's, not the RFC's: RFC 9293 lets FIN_WAIT_2
      last for ever, which is still what happens after ``shutdown(SHUT_WR)``.
    """

    PASSIVE_OPEN = enum.auto()
    ACTIVE_OPEN = enum.auto()
    CLOSE = enum.auto()
    SHUTDOWN_WRITE = enum.auto()
    RECV_SYN = enum.auto()
    RECV_SYN_ACK = enum.auto()
    RECV_ACK_OF_SYN = enum.auto()
    RECV_ACK_OF_FIN = enum.auto()
    RECV_FIN = enum.auto()
    RECV_FIN_ACK = enum.auto()
    RECV_RST = enum.auto()
    RETRANSMISSION_LIMIT = enum.auto()
    TIME_WAIT_EXPIRY = enum.auto()
    FIN_WAIT_2_TIMEOUT = enum.auto()

    def __repr__(self) -> str:
        return f"<Event.{self.name}>"


#: The segment an endpoint sends on a transition.
Segment = Literal["SYN", "SYN+ACK", "ACK", "FIN", "RST"]


@dataclass(frozen=True)
class Transition:
    """One entry of the table: where an event leads and what the endpoint sends.

    Attributes:
        new_state: The state after the event.
        send: The segment sent, or ``None`` when nothing is sent.
        new_state_if_active: Set only where the RFC makes the new state depend on
            how the connection was opened.  It replaces ``new_state`` when the
            connection began with ``ACTIVE_OPEN`` (for example a simultaneous
            open); ``new_state`` applies after ``PASSIVE_OPEN``.
    """

    new_state: State
    send: Segment | None = None
    new_state_if_active: State | None = None

    def __repr__(self) -> str:
        fields = f"new_state={self.new_state!r}, send={self.send!r}"
        if self.new_state_if_active is not None:
            fields += f", new_state_if_active={self.new_state_if_active!r}"
        return f"Transition({fields})"


S = State
E = Event
T = Transition

#: Every legal (state, event) pair, and nothing else.  A pair missing here is an
#: error: :meth:`StateMachine.handle` raises :class:`IllegalTransition`.
#: The page "The state machine, as one table" prints it state by state.
#:
#: :meta hide-value:
TRANSITIONS: dict[State, dict[Event, Transition]] = {
    S.CLOSED: {
        E.PASSIVE_OPEN: T(S.LISTEN),
        E.ACTIVE_OPEN: T(S.SYN_SENT, "SYN"),
        # No connection: a SYN is refused with a reset (3.10.7.1).
        E.RECV_SYN: T(S.CLOSED, "RST"),
    },
    S.LISTEN: {
        E.RECV_SYN: T(S.SYN_RECEIVED, "SYN+ACK"),
        E.CLOSE: T(S.CLOSED),
        # Any acknowledgment is bad in LISTEN: answer with RST, keep listening (3.10.7.2).
        E.RECV_SYN_ACK: T(S.LISTEN, "RST"),
        # A reset cannot concern a connection that does not exist yet: ignore it (3.10.7.2).
        E.RECV_RST: T(S.LISTEN),
    },
    S.SYN_SENT: {
        E.RECV_SYN_ACK: T(S.ESTABLISHED, "ACK"),
        # Simultaneous open: the peer's SYN crossed ours (3.10.7.3, Figure 7).
        E.RECV_SYN: T(S.SYN_RECEIVED, "SYN+ACK"),
        E.RECV_RST: T(S.CLOSED),
        E.CLOSE: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.SYN_RECEIVED: {
        E.RECV_ACK_OF_SYN: T(S.ESTABLISHED),
        # Simultaneous open: the peer's SYN+ACK completes it, nothing more is sent (Figure 7).
        E.RECV_SYN_ACK: T(S.ESTABLISHED),
        # The one origin-dependent rule (3.10.7.4): back to LISTEN after a passive
        # open, to CLOSED after an active one.
        E.RECV_RST: T(S.LISTEN, new_state_if_active=S.CLOSED),
        E.RECV_FIN: T(S.CLOSE_WAIT, "ACK"),
        E.CLOSE: T(S.FIN_WAIT_1, "FIN"),
        E.SHUTDOWN_WRITE: T(S.FIN_WAIT_1, "FIN"),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.ESTABLISHED: {
        E.CLOSE: T(S.FIN_WAIT_1, "FIN"),
        E.SHUTDOWN_WRITE: T(S.FIN_WAIT_1, "FIN"),
        E.RECV_FIN: T(S.CLOSE_WAIT, "ACK"),
        E.RECV_RST: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.FIN_WAIT_1: {
        E.RECV_ACK_OF_FIN: T(S.FIN_WAIT_2),
        # Simultaneous close: the peer's FIN crossed ours (Figure 13).
        E.RECV_FIN: T(S.CLOSING, "ACK"),
        E.RECV_FIN_ACK: T(S.TIME_WAIT, "ACK"),
        E.RECV_RST: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.FIN_WAIT_2: {
        E.RECV_FIN: T(S.TIME_WAIT, "ACK"),
        E.RECV_RST: T(S.CLOSED),
        # Linux only: an orphaned socket gives up waiting after tcp_fin_timeout.
        E.FIN_WAIT_2_TIMEOUT: T(S.CLOSED),
    },
    S.CLOSE_WAIT: {
        E.CLOSE: T(S.LAST_ACK, "FIN"),
        E.SHUTDOWN_WRITE: T(S.LAST_ACK, "FIN"),
        E.RECV_RST: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.CLOSING: {
        E.RECV_ACK_OF_FIN: T(S.TIME_WAIT),
        E.RECV_RST: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.LAST_ACK: {
        E.RECV_ACK_OF_FIN: T(S.CLOSED),
        E.RECV_RST: T(S.CLOSED),
        E.RETRANSMISSION_LIMIT: T(S.CLOSED),
    },
    S.TIME_WAIT: {
        E.TIME_WAIT_EXPIRY: T(S.CLOSED),
        # The peer did not get our ACK and sent its FIN again: ACK it again and
        # restart the 2 MSL timer (3.10.7.4, "eighth, check the FIN bit").
        E.RECV_FIN: T(S.TIME_WAIT, "ACK"),
        E.RECV_RST: T(S.CLOSED),
    },
}

del S, E, T


class IllegalTransition(ValueError):  # noqa: N818 (named for the event it refuses)
    """An event that the table does not allow in the current state.

    It is a ``ValueError``.  Like h11's ``LocalProtocolError``, it leaves the machine
    that raised it unchanged.
    """


class StateMachine:
    """One endpoint of a TCP connection, moved from state to state by the table.

    Args:
        state: The state to start in (``CLOSED`` by default).
        opened_actively: How the connection was opened, for a machine that starts
            past the open; it matters only for a reset in ``SYN_RECEIVED``.

    >>> machine = StateMachine()
    >>> machine.handle(Event.RECV_FIN)
    Traceback (most recent call last):
      ...
    tcpref.states.IllegalTransition: can't handle event RECV_FIN in state CLOSED
    """

    def __init__(self, state: State = State.CLOSED, *, opened_actively: bool = False) -> None:
        if not isinstance(state, State):
            raise TypeError(f"state must be a State, not {state!r}")
        self.state = state
        self.opened_actively = opened_actively

    def handle(self, event: Event) -> Transition:
        """Apply one event and return the table's entry for it.

        Args:
            event: What happened.

        Returns:
            The :class:`Transition` taken; ``self.state`` is now the state it led to.

        Raises:
            TypeError: ``event`` is not an :class:`Event`.
            IllegalTransition: The table has no entry for ``event`` in the current
                state; the state is unchanged.
        """
        if not isinstance(event, Event):
            raise TypeError(f"event must be an Event, not {event!r}")
        try:
            transition = TRANSITIONS[self.state][event]
        except KeyError:
            raise IllegalTransition(
                f"can't handle event {event.name} in state {self.state.name}"
            ) from None
        # Remember how the connection was opened: the table may ask (new_state_if_active).
        if event is Event.ACTIVE_OPEN:
            self.opened_actively = True
        elif event is Event.PASSIVE_OPEN:
            self.opened_actively = False
        if self.opened_actively and transition.new_state_if_active is not None:
            self.state = transition.new_state_if_active
        else:
            self.state = transition.new_state
        return transition

    def __repr__(self) -> str:
        return f"<StateMachine state={self.state.name}>"


def transitions_from(state: State) -> dict[Event, Transition]:
    """Return the legal events in ``state`` and where each leads, read from the table.

    Args:
        state: A state.

    Returns:
        A new dict from event to transition, in the table's order.

    Raises:
        TypeError: ``state`` is not a :class:`State`.

    >>> sorted(event.name for event in transitions_from(State.TIME_WAIT))
    ['RECV_FIN', 'RECV_RST', 'TIME_WAIT_EXPIRY']
    """
    if not isinstance(state, State):
        raise TypeError(f"state must be a State, not {state!r}")
    return dict(TRANSITIONS[state])


def path(events: Iterable[Event], start: State = State.CLOSED) -> list[State]:
    """Replay events from ``start`` and return every state visited, ``start`` first.

    Args:
        events: The events, in order.
        start: The state to start in.

    Returns:
        ``[start, state after the first event, ...]``.

    Raises:
        TypeError: ``start`` is not a :class:`State`, or an event is not an :class:`Event`.
        IllegalTransition: An event is illegal in the state it meets.

    >>> [state.name for state in path([Event.PASSIVE_OPEN, Event.CLOSE])]
    ['CLOSED', 'LISTEN', 'CLOSED']
    """
    machine = StateMachine(start)
    visited = [machine.state]
    for event in events:
        machine.handle(event)
        visited.append(machine.state)
    return visited
