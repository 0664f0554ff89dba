"""The model against the kernel: a capture of real loopback connections must agree
with the simulator's trace of the same exchange, on flags and on relative seq and ack.

These tests need Linux and the CAP_NET_RAW capability to capture on loopback.  They
run in a private network namespace (tcpref.netns), where any user has it; where no
namespace can be made, they skip and say why.

What "agree" means:

* The segments that carry sequence space (SYN, FIN or data) must be the same, in
  the same order: sender, flags, relative sequence and acknowledgment numbers, and
  payload length.
* The last segment (the final ACK) must be the same.
* Every pure ACK the kernel sent must acknowledge nothing the model's sender
  does not: the model's sender must send a segment with the same sequence number
  that acknowledges as much or more.  The kernel may send a few more pure ACKs
  than the model: Linux acknowledges the first segments of a connection at once
  ("quick ACK" mode), where the model waits for its delayed-ACK timer and then
  acknowledges them all together.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from tcpref.demos.exchanges import half_close, handshake_and_teardown
from tcpref.scenarios import run_scenario
from tcpref.segment import Flags
from tcpref.sim import Run
from tcpref.trace import TraceEntry

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (AF_PACKET)"),
    # Capturing needs CAP_NET_RAW, which any user has in a private network namespace.
    pytest.mark.netns,
]

Row = tuple[str, str, int, int, int]


def _row(entry: TraceEntry, client_isn: int, server_isn: int) -> Row:
    segment = entry.segment
    assert segment is not None
    own, peer = (client_isn, server_isn) if entry.sender == "client" else (server_isn, client_isn)
    names = "|".join(flag.name or "" for flag in Flags if flag in segment.flags)
    ack = (segment.ack - peer) % 2**32 if Flags.ACK in segment.flags else 0
    return (entry.sender, names, (segment.seq - own) % 2**32, ack, len(segment.payload))


def _rows(entries: tuple[TraceEntry, ...], client_isn: int, server_isn: int) -> list[Row]:
    return [_row(entry, client_isn, server_isn) for entry in entries if entry.segment]


def _takes_sequence_space(row: Row) -> bool:
    _, flags, _, _, length = row
    return "SYN" in flags or "FIN" in flags or length > 0


def _model_rows(run: Run) -> list[Row]:
    return _rows(run.trace, run.client_isn, run.server_isn)


def _kernel_rows(script: Callable[[], tuple[tuple[str, int], tuple[str, int]]]) -> list[Row]:
    from tcpref.capture import capture_exchange

    exchange = capture_exchange(script, count=12, timeout=2.0)
    assert exchange.client_isn is not None, "the client's SYN was not captured"
    assert exchange.server_isn is not None, "the server's SYN+ACK was not captured"
    return _rows(exchange.entries, exchange.client_isn, exchange.server_isn)


def _assert_agree(kernel: list[Row], model: list[Row]) -> None:
    kernel_sequenced = [row for row in kernel if _takes_sequence_space(row)]
    model_sequenced = [row for row in model if _takes_sequence_space(row)]
    assert kernel_sequenced == model_sequenced
    assert kernel[-1] == model[-1]
    for sender, flags, seq, ack, length in kernel:
        if flags == "ACK" and length == 0:
            covered = [row for row in model if row[0] == sender and row[2] == seq and row[3] >= ack]
            assert covered, f"the model's {sender} never acknowledges {ack} at seq {seq}"


def test_model_agrees_with_kernel_on_handshake_and_teardown() -> None:
    # The live server closes 0.3 s after end-of-file, the model's after 0.5 s: both
    # long enough for the server's ACK of the client's FIN to leave on its own.
    kernel = _kernel_rows(handshake_and_teardown)
    model = _model_rows(run_scenario("handshake-and-teardown"))
    assert len(model) == 7
    assert kernel == model  # here even the pure ACKs match, one for one


def test_model_agrees_with_kernel_on_half_close() -> None:
    kernel = _kernel_rows(half_close)
    model = _model_rows(run_scenario("half-close"))
    _assert_agree(kernel, model)
    sequenced = [row for row in kernel if _takes_sequence_space(row)]
    assert [flags for _, flags, _, _, _ in sequenced] == [
        "SYN",
        "SYN|ACK",
        "PSH|ACK",
        "FIN|ACK",
        "PSH|ACK",
        "FIN|ACK",
    ]


def test_agreement_check_can_fail() -> None:
    # The comparison itself must be able to fail: a model that forgot the FIN's
    # sequence number, or a kernel ACK the model never sends, is caught.
    model = _model_rows(run_scenario("handshake-and-teardown"))
    wrong_fin = [(s, f, q, a + 1 if f == "ACK" and a == 2 else a, n) for s, f, q, a, n in model]
    with pytest.raises(AssertionError):
        _assert_agree(wrong_fin, model)
    extra_ack = [*model[:-1], ("server", "ACK", 1, 5, 0), model[-1]]
    with pytest.raises(AssertionError):
        _assert_agree(extra_ack, model)
