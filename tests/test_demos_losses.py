"""tcpref.demos.losses: its scenarios, and its errors (the live runs are compared with the
model in tests/test_model_vs_kernel_losses.py)."""

from __future__ import annotations

import pytest

from tcpref import netns
from tcpref.demos import losses
from tcpref.segment import Flags
from tcpref.sim import Drop
from tcpref.trace import TraceEntry

needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


def test_live_scenarios_are_the_models_loss_scenarios() -> None:
    from tcpref.scenarios import SCENARIOS

    lost = {name for name in SCENARIOS if name.startswith(("lost-", "syn-never"))}
    assert set(losses.LIVE_SCENARIOS) == lost


def test_live_scenario_plans_are_ones_the_kernel_can_carry_out() -> None:
    from tcpref.faults import check_plan

    for scenario in losses.LIVE_SCENARIOS.values():
        assert check_plan(scenario.plan) is scenario.plan


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no live scenario 'lost-everything'; the live scenarios"):
        losses.run_live("lost-everything")
    with pytest.raises(KeyError, match="lost-teardown-4"):
        losses.model_of("nope")


def _as_captured(name: str, order: list[int]) -> losses.LiveRun:
    """The model's run of ``name`` as a capture would give it, in the order given.

    Every segment of the model's second burst leaves at the same moment, as on
    loopback, and no entry carries a state or an arrival time.
    """
    model = losses.model_of(name)
    segments = [entry for entry in model.trace if entry.segment is not None]
    first_of_second = next(e.time for e in segments if e.time > losses.BURST)
    captured = [
        TraceEntry(
            first_of_second
            if first_of_second <= e.time <= first_of_second + losses.BURST
            else e.time,
            e.sender,
            e.segment,
            note=e.note,
        )
        for e in segments
    ]
    return losses.LiveRun(
        name=name,
        plan=losses.LIVE_SCENARIOS[name].plan,
        entries=tuple(captured[i] for i in order),
        client_isn=model.client_isn,
        server_isn=model.server_isn,
        states_after_loss=(None, None),
        final_states=(None, None),
        connect_error=None,
        lost=1,
        sysctls={},
        connect_seconds=1.0,
    )


def test_outline_lists_a_burst_by_progress_whatever_order_it_was_captured_in() -> None:
    # The lost SYN+ACK: the client's SYN and the server's SYN+ACK go again together,
    # and a capture may show either first.  The outline is the same, and the model's.
    model = losses.outline(losses.model_of("lost-handshake-2"))
    as_sent = _as_captured("lost-handshake-2", list(range(11)))
    server_first = _as_captured("lost-handshake-2", [0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10])
    assert losses.outline(as_sent) == losses.outline(server_first) == model
    assert model.splitlines()[3:8] == [
        "    2  C -> S  SYN seq=0  (retransmission)",
        "    2  C <- S  SYN|ACK seq=0 ack=1  (retransmission)",
        "    2  C <- S  SYN|ACK seq=0 ack=1  (retransmission)",
        "    2  C -> S  ACK seq=1 ack=1",
        "    2  C -> S  ACK seq=1 ack=1",
    ]


def test_outline_leaves_out_times_windows_and_options() -> None:
    text = losses.outline(losses.model_of("lost-handshake-1"))
    for machine_dependent in ("win=", "MSS", "0.000"):
        assert machine_dependent not in text
    assert text.splitlines()[1] == "    1  C -> S  SYN seq=0  (lost)"


def test_retransmissions_of_a_model_run_and_of_a_live_run_agree_in_form() -> None:
    model = losses.model_of("lost-handshake-2")
    assert sorted(losses.retransmissions(model)) == [
        ("client", "SYN", 1.0),
        ("server", "SYN|ACK", 1.0),
        ("server", "SYN|ACK", 1.0),
    ]
    captured = _as_captured("lost-handshake-2", list(range(11)))
    assert captured.retransmissions() == losses.retransmissions(captured)
    assert sorted(side for side, _, _ in captured.retransmissions()) == [
        "client",
        "server",
        "server",
    ]


@needs_netns
def test_run_live_says_what_it_awaited_when_the_planned_loss_never_happens() -> None:
    # Nobody sends a RST in this exchange, so a plan to lose one never acts.
    never = losses.LiveScenario("no RST", Drop(1, sender="server", flags=Flags.RST | Flags.ACK))
    with pytest.raises(TimeoutError, match=r"the planned loss never happened: Drop\(nth=1"):
        netns.run(losses._run_inside, "no-rst", never, timeout=20)


@needs_netns
def test_run_live_reports_a_lost_syn_and_its_retransmission() -> None:
    run = losses.run_live("lost-handshake-1")
    notes = [entry.note for entry in run.entries[:2]]
    assert notes == ["lost", "retransmission"]
    assert run.lost == 1
    assert run.states_after_loss == ("SYN_SENT", "LISTEN")
    ((side, flags, delay),) = run.retransmissions()
    assert (side, flags) == ("client", "SYN")
    assert 0.9 < delay < 1.5
    assert 0.9 < run.connect_seconds < 1.5  # connect() waited for the second SYN
    assert "SYN seq=0" in run.table().splitlines()[1]
    assert losses.outline(run) == losses.outline(losses.model_of("lost-handshake-1"))
