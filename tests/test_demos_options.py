"""tcpref.demos.options: the window arithmetic, and the options on the live kernel."""

from __future__ import annotations

import pytest

from tcpref import netns
from tcpref.demos import options
from tcpref.segment import (
    Flags,
    MaxSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
)
from tcpref.trace import Side

needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


def test_largest_window_shifts_the_16_bit_field() -> None:
    assert options.largest_window(0) == 65535
    assert options.largest_window(7) == 65535 * 128
    assert options.largest_window(options.MAX_SHIFT) < 2**30


@pytest.mark.parametrize("shift", [-1, 15, 1.0, True])
def test_largest_window_refuses_a_shift_outside_rfc_7323(shift: object) -> None:
    with pytest.raises(ValueError, match="shift must be an int from 0 to 14"):
        options.largest_window(shift)  # type: ignore[arg-type]


def test_throughput_bound_is_one_window_per_round_trip() -> None:
    assert options.throughput_bound(65535, 0.1) == pytest.approx(655350.0)
    assert options.throughput_bound(1000, 0.5) == pytest.approx(2000.0)


def test_throughput_bound_refuses_a_round_trip_of_zero() -> None:
    with pytest.raises(ValueError, match="rtt > 0"):
        options.throughput_bound(65535, 0.0)


def test_window_scale_for_is_the_smallest_shift_that_covers_the_buffer() -> None:
    for space in (65535, 65536, 131072, 6 * 2**20, 32 * 2**20, 2**40):
        shift = options.window_scale_for(space)
        assert 0 <= shift <= options.MAX_SHIFT
        # Linux's ilog2(space) - 15: the field, shifted, reaches at least half the buffer.
        assert shift == options.MAX_SHIFT or 0xFFFF << shift >= space // 2
    assert [options.window_scale_for(2**n) for n in (16, 22, 25, 29, 30)] == [1, 7, 10, 14, 14]


def test_window_scale_for_refuses_an_empty_buffer() -> None:
    with pytest.raises(ValueError, match="positive number of bytes, not 0"):
        options.window_scale_for(0)


def test_handshakes_refuses_an_unknown_sysctl_before_forking() -> None:
    with pytest.raises(ValueError, match=r"unknown settings \['tcp_ecn'\]"):
        options.handshakes([{"tcp_ecn": 1}])
    with pytest.raises(ValueError, match="tcp_sack must be 0 or 1, not 2"):
        options.handshakes([{"tcp_sack": 2}])


def _line(
    sender: Side, seq: int, ack: int, length: int, note: str = "", sack: bool = False
) -> options.SackLine:
    extra = (Sack(((1977, 2965),)),) if sack else ()
    segment = Segment(1, 2, seq=seq, ack=ack, flags=Flags.ACK, window=1, options=extra)
    return options.SackLine(sender, segment, length, note)


def test_sack_run_outline_counts_from_the_senders_isn() -> None:
    run = options.SackRun(
        lines=(
            _line("client", 989, 0, 988, "lost"),
            _line("server", 0, 989, 0, sack=True),
        ),
        client_isn=0,
        server_isn=0,
        mss=988,
        intact=True,
        retransmitted=1,
        out_of_order=1,
    )
    assert run.outline().splitlines() == [
        "dir     segment",
        "C -> S  ACK seq=989 len=988  (lost)",
        "C <- S  ACK ack=989 SACK=1977-2965",
    ]
    assert run.sack_blocks() == (((1977, 2965),),)


def test_paws_refuses_a_timestamp_that_is_not_old() -> None:
    with pytest.raises(ValueError, match="need 0 < old < first"):
        options.paws(first=1000, old=1000)


@needs_netns
def test_handshakes_show_only_the_options_left_on() -> None:
    everything, nothing = options.handshakes(
        [{}, {"tcp_window_scaling": 0, "tcp_sack": 0, "tcp_timestamps": 0}]
    )
    kinds = [type(option) for option in everything.syn.options]
    assert kinds == [MaxSegmentSize, SackPermitted, Timestamps, NoOperation, WindowScale]
    assert everything.client.option_names == ("TIMESTAMPS", "SACK", "WSCALE")
    assert [type(option) for option in nothing.syn.options] == [MaxSegmentSize]
    assert nothing.client.option_names == ()


@needs_netns
def test_handshakes_scaled_window_field_is_the_senders_window() -> None:
    (run,) = options.handshakes([{}])
    shift = next(o.shift for o in run.syn_ack.options if isinstance(o, WindowScale))
    assert shift == run.client.snd_wscale == options.window_scale_for(run.space)
    assert run.last_from("server").window << shift == run.client.snd_wnd


@needs_netns
def test_sack_after_loss_reports_the_block_then_fills_the_hole() -> None:
    run = options.sack_after_loss()
    notes = [line.note for line in run.lines]
    assert notes.count("lost") == 1
    assert notes.count("retransmission") == 1
    assert notes.index("lost") < notes.index("retransmission")
    assert run.sack_blocks() == (((1 + 2 * run.mss, 1 + 3 * run.mss),),)
    assert run.lines[-1].segment.ack == (run.client_isn + 1 + 5 * run.mss) % 2**32
    assert run.intact
    assert run.retransmitted == 1


@needs_netns
def test_syn_ack_options_answers_only_what_the_syn_offered() -> None:
    bare, stamped = options.syn_ack_options(
        [(MaxSegmentSize(1460),), (MaxSegmentSize(1460), SackPermitted())]
    )
    assert bare.options == (MaxSegmentSize(1460),)
    assert SackPermitted() in stamped.options
    assert not any(isinstance(o, (Timestamps, WindowScale)) for o in stamped.options)


@needs_netns
def test_paws_drops_the_segment_with_the_old_timestamp() -> None:
    seen = options.paws(first=5000, old=4000)
    assert [ack for _, ack, _ in seen.answers] == [4, 4, 7]
    assert [echo for _, _, echo in seen.answers] == [5002, 5002, 5003]
    assert seen.received == b"onetwo"
    assert seen.rejected == 1
