"""Tests for tcpref.sim and tcpref.scenarios: the deterministic model of a connection."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpref.kernel import syn_retry_schedule
from tcpref.scenarios import SCENARIOS, client, run_scenario, server
from tcpref.segment import Flags, Segment
from tcpref.sim import (
    Delay,
    Drop,
    Endpoint,
    Inject,
    Limits,
    Run,
    SimulationError,
    simulate,
)
from tcpref.states import State
from tcpref.trace import TraceEntry

SYN, ACK, FIN, RST, PSH = Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST, Flags.PSH


def flags_of(run: Run) -> list[tuple[str, Flags, str]]:
    """Each segment's sender, flags and note."""
    return [
        (entry.sender, entry.segment.flags, entry.note)
        for entry in run.trace
        if entry.segment is not None
    ]


def relative(run: Run, entry: TraceEntry) -> tuple[int, int]:
    assert entry.segment is not None
    own, peer = (
        (run.client_isn, run.server_isn)
        if entry.sender == "client"
        else (run.server_isn, run.client_isn)
    )
    return (entry.segment.seq - own) % 2**32, (entry.segment.ack - peer) % 2**32


def test_simulate_normal_connection_has_seven_segments() -> None:
    run = run_scenario("handshake-and-teardown")
    assert [(sender, flags) for sender, flags, _ in flags_of(run)] == [
        ("client", SYN),
        ("server", SYN | ACK),
        ("client", ACK),
        ("client", FIN | ACK),
        ("server", ACK),
        ("server", FIN | ACK),
        ("client", ACK),
    ]
    numbers = [relative(run, entry) for entry in run.segments()]
    assert numbers[1:] == [(0, 1), (1, 1), (1, 1), (1, 2), (1, 2), (2, 2)]
    assert run.final_states == {"client": State.CLOSED, "server": State.CLOSED}
    assert run.errors == {}


def test_simulate_client_waits_in_time_wait_for_sixty_seconds() -> None:
    run = run_scenario("handshake-and-teardown")
    last_ack = run.segments("client")[-1]
    ends = [entry for entry in run.trace if entry.note == "TIME_WAIT ends"]
    assert len(ends) == 1
    assert ends[0].sender == "client"
    assert ends[0].time == pytest.approx(last_ack.time + 60)


def test_simulate_states_follow_each_segment() -> None:
    run = run_scenario("handshake-and-teardown")
    states = [(entry.client_state, entry.server_state) for entry in run.trace]
    assert states[:3] == [
        (State.SYN_SENT, State.SYN_RECEIVED),
        (State.ESTABLISHED, State.SYN_RECEIVED),
        (State.ESTABLISHED, State.ESTABLISHED),
    ]
    assert (State.FIN_WAIT_2, State.CLOSE_WAIT) in states
    assert (State.TIME_WAIT, State.LAST_ACK) in states


def test_simulate_runs_are_identical() -> None:
    for name in SCENARIOS:
        assert run_scenario(name) == run_scenario(name), name


def test_simulate_three_segment_teardown_merges_fin_and_ack() -> None:
    run = run_scenario("three-segment-teardown")
    teardown = flags_of(run)[3:]
    assert [(sender, flags) for sender, flags, _ in teardown] == [
        ("client", FIN | ACK),
        ("server", FIN | ACK),
        ("client", ACK),
    ]


def test_simulate_simultaneous_open_passes_through_syn_received() -> None:
    run = run_scenario("simultaneous-open")
    assert [flags for _, flags, _ in flags_of(run)] == [SYN, SYN, SYN | ACK, SYN | ACK]
    assert (State.SYN_RECEIVED, State.SYN_RECEIVED) in [
        (entry.client_state, entry.server_state) for entry in run.trace
    ]
    assert run.final_states == {"client": State.ESTABLISHED, "server": State.ESTABLISHED}


def test_simulate_simultaneous_close_leaves_both_in_time_wait() -> None:
    run = run_scenario("simultaneous-close")
    states = [(entry.client_state, entry.server_state) for entry in run.trace]
    assert (State.CLOSING, State.CLOSING) in states
    assert (State.TIME_WAIT, State.TIME_WAIT) in states
    assert sum(entry.note == "TIME_WAIT ends" for entry in run.trace) == 2


@pytest.mark.parametrize(
    ("name", "lost", "recovered_by"),
    [
        ("lost-handshake-1", ("client", SYN), ("client", SYN, "retransmission")),
        ("lost-handshake-2", ("server", SYN | ACK), ("client", SYN, "retransmission")),
        ("lost-handshake-3", ("client", ACK), ("server", SYN | ACK, "retransmission")),
        ("lost-teardown-1", ("client", FIN | ACK), ("client", FIN | ACK, "retransmission")),
        ("lost-teardown-2", ("server", ACK), ("client", FIN | ACK, "retransmission")),
        ("lost-teardown-3", ("server", FIN | ACK), ("server", FIN | ACK, "retransmission")),
        ("lost-teardown-4", ("client", ACK), ("server", FIN | ACK, "retransmission")),
    ],
)
def test_simulate_lost_segment_is_recovered(
    name: str, lost: tuple[str, Flags], recovered_by: tuple[str, Flags, str]
) -> None:
    run = run_scenario(name)
    segments = flags_of(run)
    losses = [(sender, flags) for sender, flags, note in segments if "lost" in note]
    assert losses == [lost]
    assert recovered_by in segments
    assert run.final_states == {"client": State.CLOSED, "server": State.CLOSED}
    assert run.errors == {}


def test_simulate_lost_syn_is_retransmitted_after_one_second() -> None:
    run = run_scenario("lost-handshake-1")
    first, second = run.segments("client")[:2]
    assert second.time - first.time == pytest.approx(1.0)


def test_simulate_lost_syn_ack_makes_both_sides_retransmit() -> None:
    run = run_scenario("lost-handshake-2")
    retransmitted = [
        (sender, flags) for sender, flags, note in flags_of(run) if note == "retransmission"
    ]
    assert ("client", SYN) in retransmitted
    assert ("server", SYN | ACK) in retransmitted


@pytest.mark.parametrize(
    ("syn_retries", "linear"), [(6, 4), (6, 0), (5, 0), (2, 0), (8, 4), (1, 1)]
)
def test_simulate_syn_schedule_matches_kernel_arithmetic(syn_retries: int, linear: int) -> None:
    limits = Limits(syn_retries=syn_retries, syn_linear_timeouts=linear)
    run = simulate(
        client(),
        server(),
        faults=[Drop(1, flags=SYN, count=None)],
        limits=limits,
        until=10_000,
    )
    expected = syn_retry_schedule(syn_retries, linear)
    sent = [entry.time for entry in run.segments("client")]
    assert tuple(sent[1:]) == pytest.approx(expected.retransmissions)
    give_up = [entry for entry in run.trace if entry.note == "gives up: ETIMEDOUT"]
    assert give_up[0].time == pytest.approx(expected.gives_up_at)
    assert limits.syn_schedule() == (
        pytest.approx(expected.retransmissions),
        pytest.approx(expected.gives_up_at),
    )
    assert run.errors == {"client": "ETIMEDOUT"}


def test_simulate_server_gives_up_syn_ack_after_synack_retries() -> None:
    # Every handshake ACK is lost and the client stays silent, so only the
    # server's timer drives the SYN+ACKs: 1, 3, 7, 15 and 31 s after the first.
    run = simulate(
        client(close_after=None),
        server(close_on_eof=None),
        faults=[Drop(1, sender="client", flags=ACK, count=None)],
    )
    synacks = [entry.time for entry in run.segments("server") if entry.segment.flags == SYN | ACK]
    assert [round(time - synacks[0], 6) for time in synacks] == [0, 1, 3, 7, 15, 31]
    gave_up = next(entry for entry in run.trace if entry.segment is None)
    assert gave_up.note == "gives up the handshake; the listener stays"
    assert gave_up.time == pytest.approx(synacks[0] + 63)
    assert gave_up.server_state is State.LISTEN
    assert run.final_states == {"client": State.ESTABLISHED, "server": State.LISTEN}


def test_simulate_repeated_syn_restarts_the_syn_ack_timer() -> None:
    run = simulate(
        client(), server(), faults=[Drop(1, sender="server", flags=SYN | ACK, count=None)]
    )
    assert run.errors == {"client": "ETIMEDOUT"}
    answered = [entry for entry in run.segments("server") if entry.segment.flags == SYN | ACK]
    client_syns = [entry.arrival for entry in run.segments("client")][1:]
    # Each of the client's retransmitted SYNs is answered at once.
    for arrival in client_syns:
        assert any(entry.time == pytest.approx(arrival) for entry in answered), arrival


def test_simulate_orphan_gives_up_after_eight_fin_retransmissions() -> None:
    run = simulate(
        client(), server(), faults=[Drop(1, sender="client", flags=FIN | ACK, count=None)]
    )
    fins = [entry for entry in run.segments("client") if entry.segment.flags == FIN | ACK]
    assert len(fins) == 1 + 8  # tcp_orphan_retries = 0 means 8
    assert run.errors == {"client": "ETIMEDOUT"}
    assert run.final_states["client"] is State.CLOSED
    # Each retransmission waits twice as long as the one before.
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(fins)]
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(gaps))


def test_simulate_orphan_in_fin_wait_2_closes_after_fin_timeout() -> None:
    run = simulate(client(), server(close_on_eof=None), limits=Limits(fin_timeout=30))
    reached = next(entry for entry in run.trace if entry.client_state is State.FIN_WAIT_2)
    ended = next(entry for entry in run.trace if entry.note == "tcp_fin_timeout ends FIN_WAIT_2")
    assert ended.time == pytest.approx(reached.arrival + 30)
    assert run.final_states == {"client": State.CLOSED, "server": State.CLOSE_WAIT}


def test_simulate_shutdown_leaves_fin_wait_2_unbounded() -> None:
    run = simulate(
        client(close_after=None, shutdown_after=0.1), server(close_on_eof=None), until=500
    )
    assert run.final_states == {"client": State.FIN_WAIT_2, "server": State.CLOSE_WAIT}


def test_simulate_short_time_wait_turns_a_late_fin_into_rst() -> None:
    faults = [Drop(7)]  # the client's last ACK
    lost_last_ack = simulate(client(), server(), faults=faults)
    assert lost_last_ack.final_states == {"client": State.CLOSED, "server": State.CLOSED}
    assert RST not in [flags for _, flags, _ in flags_of(lost_last_ack)]
    short = simulate(client(), server(), faults=faults, limits=Limits(time_wait=0.1))
    assert ("client", RST, "") in flags_of(short)


def test_simulate_time_wait_restarts_on_repeated_fin() -> None:
    run = run_scenario("lost-teardown-4")
    repeated = next(entry for entry in run.segments("server") if entry.note == "retransmission")
    ends = next(entry for entry in run.trace if entry.note == "TIME_WAIT ends")
    assert ends.time == pytest.approx(repeated.arrival + 60)


def test_sliding_window_reproduces_note_002() -> None:
    run = run_scenario("sliding-window")
    segments = run.segments()
    assert len(segments) == 18
    syn, syn_ack = segments[0].segment, segments[1].segment
    assert syn.window == 4096
    assert syn_ack.window == 6144
    data = [entry for entry in segments[3:9]]
    assert [len(entry.segment.payload) for entry in data] == [1024] * 6
    assert [relative(run, entry)[0] for entry in data] == [1, 1025, 2049, 3073, 4097, 5121]
    updates = [(relative(run, e)[1], e.segment.window) for e in segments[9:11]]
    assert updates == [(6145, 2048), (6145, 4096)]
    fin = segments[12].segment
    assert FIN in fin.flags
    assert len(fin.payload) == 1024
    fourteenth = segments[13]
    assert relative(run, fourteenth)[1] == 8194
    assert fourteenth.segment.window == 2048
    assert [segment.segment.window for segment in segments[14:16]] == [4096, 6144]
    assert segments[16].segment.flags == FIN | ACK
    assert segments[17].sender == "client"
    assert run.received["server"] == bytes(8192)


def test_zero_window_probe_ends_the_stall() -> None:
    run = run_scenario("zero-window")
    probes = [entry for entry in run.segments("client") if entry.note == "window probe"]
    assert len(probes) >= 3
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(probes)]
    assert all(b > a for a, b in itertools.pairwise(gaps))  # backed off
    lost = [entry for entry in run.segments("server") if "lost" in entry.note]
    assert len(lost) == 1
    assert lost[0].segment.window > 0
    answer = next(entry for entry in run.segments("server") if entry.time > probes[-1].time)
    assert answer.segment.window > 0
    assert run.received["server"] == bytes(8192)


def test_stale_syn_is_answered_with_rst() -> None:
    run = run_scenario("stale-syn")
    flags = flags_of(run)
    assert flags[2] == ("server", SYN | ACK, "")
    assert flags[3] == ("client", RST, "")
    rst = next(entry.segment for entry in run.segments("client") if entry.segment.flags == RST)
    assert rst.seq == 91
    states = [entry.server_state for entry in run.trace]
    assert State.LISTEN in states
    assert run.final_states == {"client": State.ESTABLISHED, "server": State.ESTABLISHED}


def test_stale_data_accepted_only_when_isn_is_reused() -> None:
    assert run_scenario("stale-data-same-isn").received["server"] == b"OLD DATA"
    assert run_scenario("stale-data-new-isn").received["server"] == b"new data"


def test_half_close_delivers_reply_after_client_fin() -> None:
    run = run_scenario("half-close")
    assert run.received == {"client": b"pong", "server": b"ping"}
    assert run.final_states == {"client": State.CLOSED, "server": State.CLOSED}


def test_simulate_delay_rule_makes_segment_late() -> None:
    run = simulate(client(), server(), faults=[Delay(2, by=0.5)])
    syn_ack = run.segments("server")[0]
    assert syn_ack.note == "delayed"
    assert syn_ack.arrival == pytest.approx(syn_ack.time + 0.51)


def test_simulate_refused_connection_reports_econnrefused() -> None:
    run = simulate(client(), server(opens="active", open_at=5.0), until=2)
    assert run.errors == {"client": "ECONNREFUSED"}
    assert run.final_states["client"] is State.CLOSED


@settings(max_examples=150, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=14), max_size=5))
def test_simulate_any_loss_plan_delivers_or_reports(lost: set[int]) -> None:
    data = bytes(range(256)) * 20
    run = simulate(
        client(write=data, close_after=0.05),
        server(mss=1000, buffer=3000, reply_on_eof=b"bye", close_on_eof=0),
        faults=[Drop(nth) for nth in sorted(lost)],
    )
    if not run.errors:
        assert run.received["server"] == data
        assert run.received["client"] == b"bye"
    assert run.final_states["client"] in (State.CLOSED, State.TIME_WAIT)


def test_endpoint_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="port must be in range 1-65535, not 0"):
        Endpoint(port=0, isn=1)
    with pytest.raises(ValueError, match="isn must be in range"):
        Endpoint(port=1, isn=2**32)
    with pytest.raises(TypeError, match="write must be bytes"):
        Endpoint(port=1, isn=1, write="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opens must be"):
        Endpoint(port=1, isn=1, opens="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="read_at must be in increasing order"):
        Endpoint(port=1, isn=1, read_at=(2.0, 1.0))


def test_rules_and_limits_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="nth must be in range"):
        Drop(0)
    with pytest.raises(ValueError, match="sender must be"):
        Drop(1, sender="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="syn_retries must be in range 1-127, not 0"):
        Limits(syn_retries=0)
    with pytest.raises(ValueError, match="need min_rto <= initial_rto <= max_rto"):
        Limits(initial_rto=500)
    with pytest.raises(TypeError, match="segment must be a Segment"):
        Inject(0.0, "client", b"raw")  # type: ignore[arg-type]


def test_simulate_rejects_passive_client_and_bounds_events() -> None:
    with pytest.raises(ValueError, match="the client must open actively"):
        simulate(server(), server())
    with pytest.raises(TypeError, match="faults must be Drop or Delay rules"):
        simulate(client(), server(), faults=["drop"])  # type: ignore[list-item]
    with pytest.raises(SimulationError, match="more than 5 events"):
        simulate(client(), server(), max_events=5)


def test_limits_from_sysctls_reads_values_and_objects() -> None:
    class Setting:
        value = 3

    limits = Limits.from_sysctls(
        {"tcp_syn_retries": Setting(), "tcp_fin_timeout": 30, "tcp_retries2": None}
    )
    assert (limits.syn_retries, limits.fin_timeout, limits.retries2) == (3, 30, 15)


def test_run_scenario_names_the_choices() -> None:
    with pytest.raises(KeyError, match="no scenario 'nope'; the scenarios are"):
        run_scenario("nope")


def test_inject_bypasses_the_loss_plan() -> None:
    old = Segment(40000, 8000, seq=5, ack=0, flags=SYN, window=100)
    run = simulate(
        client(open_at=1.0),
        server(),
        faults=[Drop(1, count=None)],
        inject=[Inject(0.0, "client", old)],
        until=0.5,
    )
    assert run.trace[0].note == "old duplicate"
    assert run.trace[0].arrival is not None
