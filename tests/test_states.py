"""tcpref.states: the RFC 9293 state machine table, walked event by event."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpref.states import (
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    StateMachine,
    Transition,
    path,
    transitions_from,
)

E = Event
S = State


# -- the table ---------------------------------------------------------------------


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(State)


def test_table_every_entry_is_a_transition_to_a_state() -> None:
    for events in TRANSITIONS.values():
        for event, transition in events.items():
            assert isinstance(event, Event)
            assert isinstance(transition, Transition)
            assert isinstance(transition.new_state, State)
            assert transition.send in (None, "SYN", "SYN+ACK", "ACK", "FIN", "RST")


def test_table_origin_dependence_only_for_reset_in_syn_received() -> None:
    dependent = [
        (state, event)
        for state, events in TRANSITIONS.items()
        for event, transition in events.items()
        if transition.new_state_if_active is not None
    ]
    assert dependent == [(S.SYN_RECEIVED, E.RECV_RST)]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_handle_every_pair_follows_table_or_raises_unchanged(state: State, event: Event) -> None:
    machine = StateMachine(state)
    expected = TRANSITIONS[state].get(event)
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            machine.handle(event)
        assert str(raised.value) == f"can't handle event {event.name} in state {state.name}"
        assert machine.state is state
    else:
        assert machine.handle(event) is expected
        assert machine.state is expected.new_state  # opened passively by default


def test_handle_illegal_event_message_and_state_unchanged() -> None:
    machine = StateMachine(S.LISTEN)
    with pytest.raises(IllegalTransition, match=r"^can't handle event RECV_FIN in state LISTEN$"):
        machine.handle(E.RECV_FIN)
    assert machine.state is S.LISTEN


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_handle_rejects_non_event() -> None:
    machine = StateMachine()
    with pytest.raises(TypeError, match="event must be an Event, not 'RECV_FIN'"):
        machine.handle("RECV_FIN")  # type: ignore[arg-type]
    assert machine.state is S.CLOSED


def test_state_machine_rejects_non_state() -> None:
    with pytest.raises(TypeError, match="state must be a State, not 'CLOSED'"):
        StateMachine("CLOSED")  # type: ignore[arg-type]


# -- paths -------------------------------------------------------------------------


def test_path_client_normal_connection() -> None:
    events = [
        E.ACTIVE_OPEN,
        E.RECV_SYN_ACK,
        E.CLOSE,
        E.RECV_ACK_OF_FIN,
        E.RECV_FIN,
        E.TIME_WAIT_EXPIRY,
    ]
    assert path(events) == [
        S.CLOSED,
        S.SYN_SENT,
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.TIME_WAIT,
        S.CLOSED,
    ]


def test_path_server_normal_connection() -> None:
    events = [
        E.PASSIVE_OPEN,
        E.RECV_SYN,
        E.RECV_ACK_OF_SYN,
        E.RECV_FIN,
        E.CLOSE,
        E.RECV_ACK_OF_FIN,
    ]
    assert path(events) == [
        S.CLOSED,
        S.LISTEN,
        S.SYN_RECEIVED,
        S.ESTABLISHED,
        S.CLOSE_WAIT,
        S.LAST_ACK,
        S.CLOSED,
    ]


def test_handle_client_sends_syn_then_ack() -> None:
    machine = StateMachine()
    sent = [machine.handle(event).send for event in (E.ACTIVE_OPEN, E.RECV_SYN_ACK, E.CLOSE)]
    assert sent == ["SYN", "ACK", "FIN"]


def test_path_simultaneous_open() -> None:
    events = [E.ACTIVE_OPEN, E.RECV_SYN, E.RECV_SYN_ACK]
    assert path(events) == [S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED]


def test_path_simultaneous_close() -> None:
    events = [E.CLOSE, E.RECV_FIN, E.RECV_ACK_OF_FIN, E.TIME_WAIT_EXPIRY]
    assert path(events, S.ESTABLISHED) == [
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.CLOSING,
        S.TIME_WAIT,
        S.CLOSED,
    ]


def test_path_fin_with_ack_of_fin_skips_fin_wait_2() -> None:
    assert path([E.CLOSE, E.RECV_FIN_ACK], S.ESTABLISHED) == [
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.TIME_WAIT,
    ]


def test_path_illegal_event_raises() -> None:
    with pytest.raises(IllegalTransition, match="can't handle event CLOSE in state CLOSED"):
        path([E.PASSIVE_OPEN, E.CLOSE, E.CLOSE])


def test_handle_reset_in_syn_received_after_passive_open_returns_to_listen() -> None:
    assert path([E.PASSIVE_OPEN, E.RECV_SYN, E.RECV_RST])[-1] is S.LISTEN


def test_handle_reset_in_syn_received_after_active_open_closes() -> None:
    assert path([E.ACTIVE_OPEN, E.RECV_SYN, E.RECV_RST])[-1] is S.CLOSED


def test_handle_reset_closes_every_synchronized_state() -> None:
    synchronized = [
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.CLOSE_WAIT,
        S.CLOSING,
        S.LAST_ACK,
        S.TIME_WAIT,
    ]
    for state in synchronized:
        assert path([E.RECV_RST], state) == [state, S.CLOSED]


def test_shutdown_write_maps_like_close() -> None:
    for state, events in TRANSITIONS.items():
        if E.SHUTDOWN_WRITE in events:
            assert events[E.SHUTDOWN_WRITE] == events[E.CLOSE], state


def test_every_state_reachable_from_closed() -> None:
    reached = {S.CLOSED}
    frontier = [S.CLOSED]
    while frontier:
        state = frontier.pop()
        for transition in transitions_from(state).values():
            for new_state in (transition.new_state, transition.new_state_if_active):
                if new_state is not None and new_state not in reached:
                    reached.add(new_state)
                    frontier.append(new_state)
    assert reached == set(State)


def test_transitions_from_returns_a_copy() -> None:
    events = transitions_from(S.LISTEN)
    events.clear()
    assert E.RECV_SYN in TRANSITIONS[S.LISTEN]


def test_transitions_from_rejects_non_state() -> None:
    with pytest.raises(TypeError, match="state must be a State, not 3"):
        transitions_from(3)  # type: ignore[arg-type]


# -- properties --------------------------------------------------------------------


@given(
    start=st.sampled_from(State),
    opened_actively=st.booleans(),
    events=st.lists(st.sampled_from(Event), max_size=30),
)
def test_random_events_never_corrupt_state(
    start: State, opened_actively: bool, events: list[Event]
) -> None:
    machine = StateMachine(start, opened_actively=opened_actively)
    for event in events:
        before = machine.state
        allowed = TRANSITIONS[before].get(event)
        if allowed is None:
            with pytest.raises(IllegalTransition):
                machine.handle(event)
            assert machine.state is before
        else:
            assert machine.handle(event) is allowed
            assert machine.state in (allowed.new_state, allowed.new_state_if_active)
