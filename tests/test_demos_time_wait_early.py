"""tcpref.demos.time_wait_early: the ways a TIME_WAIT ends before its 60 seconds."""

from __future__ import annotations

import pytest

from tcpref import netns
from tcpref.capture import AddressedSegment
from tcpref.demos import time_wait_early
from tcpref.demos.closing import DemoError
from tcpref.demos.time_wait_early import (
    MAX_DATA,
    namespace_default,
    reset_time_wait,
    reuse_time_wait,
    time_wait_overflow,
)
from tcpref.segment import Flags, Segment, Timestamps

# Each live experiment changes TCP settings, which any user may do in a namespace.
needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)
_SIXTEEN_MIB = 16 * 2**20
_CLIENT = ("127.0.0.1", 40000)
_SERVER = ("127.0.0.1", 8000)


def _addressed(src: tuple[str, int], seq: int, ack: int, flags: Flags) -> AddressedSegment:
    dst = _SERVER if src == _CLIENT else _CLIENT
    segment = Segment(src[1], dst[1], seq=seq, ack=ack, flags=flags, window=65535)
    return AddressedSegment(src, dst, segment, 0)


# == Pure parts ========================================================================


def test_relative_wraps_round_sequence_space() -> None:
    assert time_wait_early._relative(5, 2**32 - 5) == 10
    assert time_wait_early._relative(2**32 - 5, 5) == -10
    assert time_wait_early._relative(7, 7) == 0


def test_label_names_the_old_connections_numbers() -> None:
    ack = _addressed(_SERVER, 100, 900, Flags.ACK)
    assert time_wait_early._label(ack, _CLIENT, 100, 900) == (
        "server ACK seq=old SND.NXT ack=old RCV.NXT"
    )
    reset = _addressed(_CLIENT, 900, 0, Flags.RST)
    assert time_wait_early._label(reset, _CLIENT, 100, 900) == "client RST seq=old RCV.NXT"


def test_label_ignores_the_ack_field_without_the_ack_flag() -> None:
    syn = _addressed(_CLIENT, 5, 900, Flags.SYN)
    assert time_wait_early._label(syn, _CLIENT, 100, 900) == "client SYN"


def test_compare_timestamps_wraps_and_needs_both() -> None:
    def stamped(value: int | None) -> Segment:
        options = () if value is None else (Timestamps(value, 0),)
        return Segment(1, 2, seq=0, ack=0, flags=Flags.SYN, window=0, options=options)

    assert time_wait_early._compare_timestamps(stamped(3), stamped(2**32 - 3)) == "newer"
    assert time_wait_early._compare_timestamps(stamped(1), stamped(2)) == "older"
    assert time_wait_early._compare_timestamps(stamped(1), stamped(1)) == "equal"
    assert time_wait_early._compare_timestamps(stamped(1), stamped(None)) is None


def test_set_sysctl_refuses_the_hosts_settings() -> None:
    with pytest.raises(DemoError, match=r"only inside tcpref\.netns\.run, never on the host"):
        time_wait_early._set_sysctl("tcp_rfc1337", 1)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"data": -1}, ValueError),
        ({"data": MAX_DATA + 1}, ValueError),
        ({"data": True}, ValueError),
        ({"connect_timeout": 0.05}, ValueError),
        ({"connect_timeout": 6}, ValueError),
        ({"timestamps": 1}, TypeError),
        ({"rfc1337": "yes"}, TypeError),
    ],
)
def test_reuse_time_wait_rejects_bad_arguments(arguments: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        reuse_time_wait(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("limit", "count"), [(-1, 5), (17, 5), (2, 0), (2, 33), (True, 5)])
def test_time_wait_overflow_rejects_bad_arguments(limit: int, count: int) -> None:
    with pytest.raises(ValueError, match=r"must be a whole number from (0 to 16|1 to 32), not"):
        time_wait_overflow(limit, count)


def test_reset_time_wait_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="from -65535 to 65535, not 65536"):
        reset_time_wait(seq_offset=65536)
    with pytest.raises(TypeError, match="rfc1337 must be a bool, not 0"):
        reset_time_wait(rfc1337=0)  # type: ignore[arg-type]


def test_namespace_default_rejects_a_path() -> None:
    with pytest.raises(ValueError, match=r"not '\.\./tcp_rfc1337'"):
        namespace_default("../tcp_rfc1337")


# == Live, each in a namespace of its own =============================================


@needs_netns
def test_namespace_default_is_the_kernels_not_the_hosts() -> None:
    assert namespace_default("tcp_retries2") == 15
    assert namespace_default("tcp_rfc1337") == 0


@needs_netns
def test_reuse_time_wait_takes_over_the_time_wait_entry() -> None:
    seen = reuse_time_wait()
    assert seen.before == ("TIME_WAIT", None)
    assert (seen.syn, seen.timestamp) == ("above", "newer")
    assert seen.exchange == ("client SYN", "server SYN|ACK", "client ACK")
    assert seen.isn_step == 65537  # the old SND.NXT + 65535 + 2
    assert seen.connected
    assert seen.after == ("ESTABLISHED", "ESTABLISHED")
    assert seen.time_waits_after == 0


@needs_netns
def test_reuse_time_wait_accepts_a_syn_below_when_its_timestamp_is_newer() -> None:
    seen = reuse_time_wait(data=_SIXTEEN_MIB)
    assert (seen.syn, seen.timestamp) == ("below", "newer")
    assert seen.exchange == ("client SYN", "server SYN|ACK", "client ACK")


@needs_netns
def test_reuse_time_wait_without_timestamps_answers_a_syn_below_with_the_old_ack() -> None:
    seen = reuse_time_wait(timestamps=False, data=_SIXTEEN_MIB)
    assert (seen.syn, seen.timestamp) == ("below", None)
    assert seen.exchange[:3] == (
        "client SYN",
        "server ACK seq=old SND.NXT ack=old RCV.NXT",
        "client RST seq=old RCV.NXT",
    )
    assert seen.exchange[3:] == ("client SYN", "server SYN|ACK", "client ACK")
    assert seen.connected
    assert seen.connect_seconds < 0.5
    assert seen.after == ("ESTABLISHED", "ESTABLISHED")


@needs_netns
def test_reuse_time_wait_with_rfc1337_leaves_connect_waiting() -> None:
    seen = reuse_time_wait(timestamps=False, data=_SIXTEEN_MIB, rfc1337=True, connect_timeout=0.3)
    assert not seen.connected
    assert seen.after == ("TIME_WAIT", "SYN_SENT")
    assert seen.time_waits_after == 1


@needs_netns
def test_time_wait_overflow_keeps_at_most_the_limit() -> None:
    seen = time_wait_overflow(limit=2, connections=5)
    assert seen.states == {"TIME_WAIT": 2}
    assert seen.overflows == 3


@needs_netns
def test_time_wait_overflow_under_the_limit_counts_nothing() -> None:
    seen = time_wait_overflow(limit=4, connections=3)
    assert seen.states == {"TIME_WAIT": 3}
    assert seen.overflows == 0


@needs_netns
@pytest.mark.parametrize(("rfc1337", "after"), [(False, None), (True, "TIME_WAIT")])
def test_reset_time_wait_ends_it_only_without_rfc1337(rfc1337: bool, after: str | None) -> None:
    seen = reset_time_wait(rfc1337=rfc1337)
    assert (seen.before, seen.after, seen.answer) == ("TIME_WAIT", after, None)


@needs_netns
@pytest.mark.parametrize("offset", [-1, 1])
def test_reset_time_wait_ignores_a_reset_beside_rcv_nxt(offset: int) -> None:
    seen = reset_time_wait(seq_offset=offset)
    assert (seen.after, seen.answer) == ("TIME_WAIT", None)
