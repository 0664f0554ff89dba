"""tcpref.demos.losses: its scenarios, and its errors (the live runs are compared with the
model in tests/test_model_vs_kernel_losses.py)."""

from __future__ import annotations

import pytest

from tcpref import netns
from tcpref.demos import losses
from tcpref.segment import Flags
from tcpref.sim import Drop

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
    assert "SYN seq=0" in run.table().splitlines()[1]
