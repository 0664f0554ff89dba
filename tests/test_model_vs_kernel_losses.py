"""The model against the kernel when segments are lost: every loss scenario, both ways.

Each live scenario (tcpref.demos.losses) carries out, on real loopback sockets in a
private network namespace, the same Drop plan as its model run
(tcpref.demos.losses.model_of, with the kernel settings read in that namespace).
All eight run side by side, each in a namespace of its own, once for the module.
"""

from __future__ import annotations

import pytest
from test_model_vs_kernel import Row, _row  # one row per segment, as the lossless test writes it

from tcpref import netns
from tcpref.demos.losses import LIVE_SCENARIOS, LiveRun, model_of, proc_name, run_live_many
from tcpref.segment import Flags
from tcpref.sim import Run
from tcpref.trace import TraceEntry

pytestmark = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


# What must agree:
#
# * the segments, burst by burst: the segments that leave within BURST seconds of the
#   first of a burst, compared as a multiset of rows.  Inside a burst the order is not
#   a fact either side can be held to: on loopback a segment arrives as it is sent,
#   while the model's link takes 10 ms, and two timers that expire together (the
#   client's SYN and the server's SYN+ACK, when the SYN+ACK was lost) fire in either
#   order;
# * the state of each side just after the loss, and at the end;
# * which side retransmits which segment, and after how long, within
#   RETRANSMIT_TOLERANCE of the model's time (plus 10% of it).

BURST = 0.05
RETRANSMIT_TOLERANCE = 0.05


def _bursts(entries: tuple[TraceEntry, ...], client_isn: int, server_isn: int) -> list[list[Row]]:
    bursts: list[list[Row]] = []
    start: float | None = None
    for entry in entries:
        if entry.segment is None:
            continue
        if start is None or entry.time - start > BURST:
            bursts.append([])
            start = entry.time
        bursts[-1].append(_row(entry, client_isn, server_isn))
    return [sorted(burst) for burst in bursts]


def _model_retransmissions(run: Run) -> list[tuple[str, str, float]]:
    found = []
    for index, entry in enumerate(run.trace):
        if "retransmission" not in entry.note or entry.segment is None:
            continue
        segment = entry.segment
        first = next(
            e
            for e in run.trace[:index]
            if e.segment is not None
            and e.sender == entry.sender
            and (e.segment.seq, e.segment.flags) == (segment.seq, segment.flags)
        )
        flags = "|".join(flag.name or "" for flag in Flags if flag in segment.flags)
        found.append((entry.sender, flags, round(entry.time - first.time, 3)))
    return found


def _model_states_after_loss(run: Run) -> tuple[str | None, str | None]:
    lost = next(entry for entry in run.trace if "lost" in entry.note)
    return proc_name(lost.client_state), proc_name(lost.server_state)


def _model_final_states(run: Run) -> tuple[str | None, str | None]:
    last = [entry for entry in run.trace if entry.segment is not None][-1]
    gone = {"CLOSE", "LISTEN"}  # no connection entry left in /proc
    client, server = proc_name(last.client_state), proc_name(last.server_state)
    if run.trace[-1].note.startswith("gives up"):
        client = proc_name(run.trace[-1].client_state)
    return (None if client in gone else client, None if server in gone else server)


def _assert_same_retransmissions(
    kernel: tuple[tuple[str, str, float], ...], model: list[tuple[str, str, float]]
) -> None:
    assert sorted((side, flags) for side, flags, _ in kernel) == sorted(
        (side, flags) for side, flags, _ in model
    )
    for (side, flags, measured), (_, _, computed) in zip(
        sorted(kernel), sorted(model), strict=True
    ):
        slack = RETRANSMIT_TOLERANCE + 0.1 * computed
        assert abs(measured - computed) <= slack, (
            f"{side}'s {flags} was sent again after {measured} s; the model says {computed} s"
        )


@pytest.fixture(scope="module")
def live_runs() -> dict[str, LiveRun]:
    # All eight side by side, each in a namespace of its own: about 4 s in all.
    return run_live_many(LIVE_SCENARIOS)


@pytest.mark.parametrize("name", sorted(LIVE_SCENARIOS))
def test_model_agrees_with_kernel_on_lost_segments(
    name: str, live_runs: dict[str, LiveRun]
) -> None:
    live = live_runs[name]
    model = model_of(name, live.sysctls)
    assert live.server_isn is not None or name == "syn-never-answered"
    kernel_bursts = _bursts(live.entries, live.client_isn, live.server_isn or 0)
    assert kernel_bursts == _bursts(model.trace, model.client_isn, model.server_isn)
    assert live.states_after_loss == _model_states_after_loss(model)
    assert live.final_states == _model_final_states(model)
    _assert_same_retransmissions(live.retransmissions(), _model_retransmissions(model))


def test_lost_segment_check_fails_for_a_wrong_model(live_runs: dict[str, LiveRun]) -> None:
    # A model that loses the server's FIN where the kernel lost the client's FIN,
    # or that retransmits after 1 s instead of 0.2 s, does not pass.
    live = live_runs["lost-teardown-1"]
    wrong = model_of("lost-teardown-3", live.sysctls)
    with pytest.raises(AssertionError):
        assert _bursts(live.entries, live.client_isn, live.server_isn or 0) == _bursts(
            wrong.trace, wrong.client_isn, wrong.server_isn
        )
    with pytest.raises(AssertionError):
        _assert_same_retransmissions(live.retransmissions(), [("client", "FIN|ACK", 1.0)])
    with pytest.raises(AssertionError):
        assert live.states_after_loss == _model_states_after_loss(wrong)
