"""tcpref.isn: the ISN clocks and generators, and arithmetic in sequence space."""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpref.isn import (
    LINUX_TICK,
    RFC793_TICK,
    SEQ_SPACE,
    IsnGenerator,
    LinuxIsnGenerator,
    clock_isn,
    cycle_seconds,
    seq_add,
    seq_diff,
    seq_le,
    seq_lt,
    wrap_around_time,
)

KEY = bytes(range(16))
LOCAL = ("192.0.2.1", 40000)
REMOTE = ("198.51.100.7", 80)
TICKS_PER_SECOND = 250_000  # RFC 793: one tick every 4 µs


class ManualClock:
    """A clock that moves only when a test moves it; it returns exact fractions."""

    def __init__(self, seconds: Fraction | int = 0) -> None:
        self.seconds = Fraction(seconds)

    def __call__(self) -> Fraction:
        return self.seconds


def sample_tuples(n: int) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """n distinct client 4-tuples towards one server, as a busy server would see."""
    clients = itertools.product(range(1, 256), range(1024, 65536))
    return [((f"10.0.0.{host}", port), REMOTE) for host, port in itertools.islice(clients, n)]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


keys = st.binary(min_size=16, max_size=64)
ipv4 = st.ip_addresses(v=4).map(str)
ports = st.integers(0, 65535)
seqs = st.integers(0, SEQ_SPACE - 1)


# -- RFC 793's clock ---------------------------------------------------------------


def test_clock_isn_counts_one_tick_per_4_microseconds() -> None:
    assert clock_isn(0) == 0
    assert clock_isn(4e-6) == 1
    assert clock_isn(1.0) == TICKS_PER_SECOND
    assert clock_isn(1.0 - 4e-6) == TICKS_PER_SECOND - 1


def test_clock_isn_wraps_after_2_32_ticks() -> None:
    cycle = cycle_seconds(RFC793_TICK)
    assert cycle == 17179.869184
    assert clock_isn(cycle) == 0
    assert clock_isn(17179.86918) == SEQ_SPACE - 1
    assert clock_isn(cycle + 1) == TICKS_PER_SECOND


def test_cycle_is_4_77_hours_and_4_55_hours_is_2_14_seconds() -> None:
    assert round(cycle_seconds() / 3600, 2) == 4.77
    # RFC 793's "4.55 hours" is exact for a clock ticking 2**18 times a second.
    assert cycle_seconds(Fraction(1, 2**18)) == 2**14
    assert round(2**14 / 3600, 2) == 4.55


def test_linux_tick_cycles_in_about_275_seconds() -> None:
    assert cycle_seconds(LINUX_TICK) == 274.877906944
    assert LinuxIsnGenerator(KEY).cycle == 274.877906944


@given(ticks=st.integers(0, 2**40), tick_us=st.sampled_from([1, 4, 64]))
def test_clock_isn_is_whole_ticks_modulo_2_32(ticks: int, tick_us: int) -> None:
    tick = Fraction(tick_us, 10**6)
    assert clock_isn(ticks * tick, tick) == ticks % SEQ_SPACE
    assert clock_isn(ticks * tick + tick / 2, tick) == ticks % SEQ_SPACE


# -- RFC 6528's generator: the clock part ----------------------------------------------


@given(key=keys, start=st.integers(0, 2**40), advance=st.integers(0, 2**36))
def test_generator_same_tuple_advances_one_per_tick_and_wraps(
    key: bytes, start: int, advance: int
) -> None:
    clock = ManualClock(Fraction(start, TICKS_PER_SECOND))
    gen = IsnGenerator(key, clock=clock)
    before = gen(LOCAL, REMOTE)
    clock.seconds += Fraction(advance, TICKS_PER_SECOND)
    assert gen(LOCAL, REMOTE) == (before + advance) % SEQ_SPACE


@given(key=keys, start=st.integers(0, 10**9), seconds=st.integers(0, 10**6))
def test_generator_advances_1_over_tick_per_second(key: bytes, start: int, seconds: int) -> None:
    clock = ManualClock(start)
    gen = IsnGenerator(key, clock=clock)
    before = gen(LOCAL, REMOTE)
    clock.seconds += seconds
    assert (gen(LOCAL, REMOTE) - before) % SEQ_SPACE == (seconds * TICKS_PER_SECOND) % SEQ_SPACE


def test_generator_comes_back_after_one_cycle() -> None:
    clock = ManualClock(7)
    gen = IsnGenerator(KEY, clock=clock)
    first = gen(LOCAL, REMOTE)
    clock.seconds += Fraction(gen.cycle).limit_denominator(10**6)
    assert gen.cycle == 17179.869184
    assert gen(LOCAL, REMOTE) == first


def test_generator_float_clock_counts_whole_ticks() -> None:
    gen = IsnGenerator(KEY, clock=lambda: 1.0)
    assert gen.counter() == TICKS_PER_SECOND
    assert gen(LOCAL, REMOTE) == (TICKS_PER_SECOND + gen.offset(LOCAL, REMOTE)) % SEQ_SPACE


def test_generator_custom_tick() -> None:
    gen = IsnGenerator(KEY, clock=lambda: 1, tick=1e-6)
    assert gen.tick == 1e-6
    assert gen.counter() == 1_000_000


def test_generator_default_clock_moves_forward() -> None:
    gen = IsnGenerator(KEY)
    first = gen(LOCAL, REMOTE)
    second = gen(LOCAL, REMOTE)
    assert 0 <= seq_diff(second, first) < TICKS_PER_SECOND  # well under a second apart


@given(start_ns=st.integers(0, 2**70), advance=st.integers(0, 2**40))
def test_linux_generator_advances_one_per_64_ns(start_ns: int, advance: int) -> None:
    now = [start_ns]
    gen = LinuxIsnGenerator(KEY, clock_ns=lambda: now[0])
    assert gen.counter() == (start_ns >> 6) % SEQ_SPACE
    before = gen(LOCAL, REMOTE)
    now[0] += 64 * advance
    assert gen(LOCAL, REMOTE) == (before + advance) % SEQ_SPACE


def test_linux_generator_matches_rfc6528_offset() -> None:
    linux = LinuxIsnGenerator(KEY, clock_ns=lambda: 0)
    rfc = IsnGenerator(KEY, clock=lambda: 0)
    assert linux(LOCAL, REMOTE) == rfc(LOCAL, REMOTE) == rfc.offset(LOCAL, REMOTE)


# -- RFC 6528's generator: the keyed hash ------------------------------------------------


def test_generator_is_repeatable_with_a_fixed_key_and_clock() -> None:
    a = IsnGenerator(KEY, clock=lambda: 10)
    b = IsnGenerator(bytearray(KEY), clock=lambda: 10)
    assert a(LOCAL, REMOTE) == b(LOCAL, REMOTE)


def test_generator_offset_depends_on_direction_and_every_field() -> None:
    gen = IsnGenerator(KEY, clock=lambda: 0)
    variants = [
        (LOCAL, REMOTE),
        (REMOTE, LOCAL),
        (("192.0.2.2", 40000), REMOTE),
        (("192.0.2.1", 40001), REMOTE),
        (LOCAL, ("198.51.100.8", 80)),
        (LOCAL, ("198.51.100.7", 81)),
    ]
    assert len({gen(local, remote) for local, remote in variants}) == len(variants)


def test_offset_bits_are_balanced() -> None:
    gen = IsnGenerator(KEY, clock=lambda: 0)
    n = 8192
    offsets = [gen.offset(local, remote) for local, remote in sample_tuples(n)]
    tolerance = 6 * (0.25 / n) ** 0.5  # six standard deviations of a fair coin's mean
    for bit in range(32):
        share = sum((offset >> bit) & 1 for offset in offsets) / n
        assert abs(share - 0.5) < tolerance, f"bit {bit} is set in {share:.3f} of ISNs"


@settings(max_examples=25)
@given(key=keys, data=st.data())
def test_flipping_one_key_bit_changes_half_the_isn_bits(key: bytes, data: st.DataObject) -> None:
    bit = data.draw(st.integers(0, 8 * len(key) - 1), label="bit")
    flipped = bytearray(key)
    flipped[bit // 8] ^= 1 << (bit % 8)
    a = IsnGenerator(key, clock=lambda: 0)
    b = IsnGenerator(bytes(flipped), clock=lambda: 0)
    tuples = sample_tuples(256)
    mean = sum(hamming(a(*t), b(*t)) for t in tuples) / len(tuples)
    assert 14.5 < mean < 17.5  # 16 expected; the mean's standard deviation is 0.18


@settings(max_examples=25)
@given(key=keys, port_bit=st.integers(0, 15))
def test_neighbouring_ports_give_unrelated_isns(key: bytes, port_bit: int) -> None:
    gen = IsnGenerator(key, clock=lambda: 0)
    tuples = sample_tuples(256)
    mean = sum(
        hamming(gen((ip, port), remote), gen((ip, port ^ (1 << port_bit)), remote))
        for (ip, port), remote in tuples
    ) / len(tuples)
    assert 14.5 < mean < 17.5


@given(key_a=keys, key_b=keys)
def test_different_keys_give_different_isns(key_a: bytes, key_b: bytes) -> None:
    a = IsnGenerator(key_a, clock=lambda: 0)
    b = IsnGenerator(key_b, clock=lambda: 0)
    tuples = sample_tuples(8)
    same = [a(*t) == b(*t) for t in tuples]
    assert all(same) == (key_a == key_b)


def test_default_keys_are_random() -> None:
    tuples = sample_tuples(4)
    a, b = IsnGenerator(clock=lambda: 0), IsnGenerator(clock=lambda: 0)
    assert [a(*t) for t in tuples] != [b(*t) for t in tuples]
    assert "256-bit key" in repr(a)


@given(key=keys, local_ip=ipv4, remote_ip=ipv4, local_port=ports, remote_port=ports)
def test_generator_accepts_any_ipv4_tuple(
    key: bytes, local_ip: str, remote_ip: str, local_port: int, remote_port: int
) -> None:
    isn = IsnGenerator(key, clock=lambda: 0)((local_ip, local_port), (remote_ip, remote_port))
    assert 0 <= isn < SEQ_SPACE


def test_generator_accepts_ipv6_and_socket_style_tuples() -> None:
    gen = IsnGenerator(KEY, clock=lambda: 0)
    v6 = gen(("2001:db8::1", 40000), ("2001:db8::2", 443))
    assert 0 <= v6 < SEQ_SPACE
    # getsockname() on an AF_INET6 socket gives (host, port, flowinfo, scope_id).
    assert gen(("2001:db8::1", 40000, 0, 0), ("2001:db8::2", 443, 0, 0)) == v6
    # An IPv4 address and its IPv4-mapped IPv6 form are different tuples.
    assert gen(("::ffff:192.0.2.1", 40000), ("::ffff:198.51.100.7", 80)) != gen(LOCAL, REMOTE)


def test_repr_str_and_logs_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    key = b"do not print me!" * 2
    gen = IsnGenerator(key, clock=lambda: 0)
    texts = [repr(gen), str(gen), f"{gen}", f"{gen!r}"]
    with caplog.at_level(logging.INFO):
        logging.getLogger("tcpref.test").info("generator: %s %r", gen, gen)
    texts.append(caplog.text)
    assert texts[0] == "IsnGenerator(key=<256-bit key, hidden>, clock=<lambda>, tick=4 µs)"
    for text in texts:
        assert "do not" not in text
        assert key.hex() not in text
        assert "b'" not in text
    linux = LinuxIsnGenerator(key)
    assert repr(linux) == (
        "LinuxIsnGenerator(key=<256-bit key, hidden>, clock_ns=time.time_ns, tick=64 ns)"
    )


def test_generator_cannot_be_pickled_with_its_key() -> None:
    import pickle

    with pytest.raises(TypeError) as raised:
        pickle.dumps(IsnGenerator(b"do not print me!"))
    assert "do not" not in str(raised.value)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "error", "message"),
    [
        (b"short", ValueError, "key must be at least 16 bytes (128 bits), not 5 bytes"),
        (b"x" * 15, ValueError, "key must be at least 16 bytes (128 bits), not 15 bytes"),
        (b"x" * 65, ValueError, "key must be at most 64 bytes (BLAKE2b's limit), not 65 bytes"),
        ("a text key of 16+ chars", TypeError, "key must be bytes, not str"),
        (12345678901234567890, TypeError, "key must be bytes, not int"),
    ],
)
def test_bad_key_raises_without_showing_it(key: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        IsnGenerator(key)
    assert str(raised.value) == message
    with pytest.raises(error):
        LinuxIsnGenerator(key)


BAD_ENDPOINTS = [
    (("300.1.2.3", 1), REMOTE, ValueError,
     "local ip must be an IPv4 or IPv6 address, not '300.1.2.3'"),
    (LOCAL, ("example.com", 80), ValueError,
     "remote ip must be an IPv4 or IPv6 address, not 'example.com'"),
    (("", 1), REMOTE, ValueError, "local ip must be an IPv4 or IPv6 address, not ''"),
    ((b"\x7f\x00\x00\x01", 1), REMOTE, TypeError,
     "local ip must be a str such as '127.0.0.1', not b'\\x7f\\x00\\x00\\x01'"),
    (("192.0.2.1", 65536), REMOTE, ValueError, "local port must be in range 0-65535, not 65536"),
    (LOCAL, ("198.51.100.7", -1), ValueError, "remote port must be in range 0-65535, not -1"),
    (("192.0.2.1", "80"), REMOTE, TypeError, "local port must be an int, not '80'"),
    (("192.0.2.1", True), REMOTE, TypeError, "local port must be an int, not True"),
    ("192.0.2.1:80", REMOTE, TypeError, "local must be an (ip, port) tuple, not '192.0.2.1:80'"),
    (LOCAL, ("198.51.100.7",), TypeError,
     "remote must be an (ip, port) tuple, not ('198.51.100.7',)"),
    (LOCAL, ("::1", 80), ValueError,
     "local and remote must both be IPv4 or both IPv6, not '192.0.2.1' and '::1'"),
]  # fmt: skip


@pytest.mark.parametrize(("local", "remote", "error", "message"), BAD_ENDPOINTS)
def test_bad_endpoint_names_the_value(local: Any, remote: Any, error: type, message: str) -> None:
    reads = []
    gen = IsnGenerator(KEY, clock=lambda: reads.append(1) or 0)
    with pytest.raises(error) as raised:
        gen(local, remote)
    assert str(raised.value) == message
    assert reads == []  # the arguments are checked before the clock is read


@given(port=st.integers().filter(lambda p: not 0 <= p <= 65535))
def test_any_out_of_range_port_is_value_error(port: int) -> None:
    gen = IsnGenerator(KEY, clock=lambda: 0)
    with pytest.raises(ValueError, match=f"port must be in range 0-65535, not {port}$"):
        gen(("192.0.2.1", port), REMOTE)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tick": 0}, ValueError, "tick must be > 0 seconds, not 0"),
        ({"tick": -4e-6}, ValueError, "tick must be > 0 seconds, not -4e-06"),
        ({"tick": float("nan")}, ValueError, "tick must be a finite number of seconds, not nan"),
        ({"tick": "4us"}, TypeError, "tick must be a number of seconds, not '4us'"),
        ({"clock": 10.0}, TypeError, "clock must be a function returning seconds, not 10.0"),
    ],
)
def test_bad_clock_or_tick_raises(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        IsnGenerator(KEY, **kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("now", "error", "message"),
    [
        (-1.0, ValueError, "clock() must be >= 0 seconds, not -1.0"),
        (float("inf"), ValueError, "clock() must be a finite number of seconds, not inf"),
        ("noon", TypeError, "clock() must be a number of seconds, not 'noon'"),
        (None, TypeError, "clock() must be a number of seconds, not None"),
    ],
)
def test_bad_clock_reading_raises(now: Any, error: type, message: str) -> None:
    gen = IsnGenerator(KEY, clock=lambda: now)
    with pytest.raises(error) as raised:
        gen(LOCAL, REMOTE)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("now", "error", "message"),
    [
        (-64, ValueError, "clock_ns() must return >= 0 nanoseconds, not -64"),
        (1.5e18, TypeError, "clock_ns() must return an int number of nanoseconds, not 1.5e+18"),
    ],
)
def test_bad_linux_clock_reading_raises(now: Any, error: type, message: str) -> None:
    gen = LinuxIsnGenerator(KEY, clock_ns=lambda: now)
    with pytest.raises(error) as raised:
        gen(LOCAL, REMOTE)
    assert str(raised.value) == message


def test_linux_clock_must_be_callable() -> None:
    with pytest.raises(TypeError, match="clock_ns must be a function returning nanoseconds"):
        LinuxIsnGenerator(KEY, clock_ns=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("t", "error", "message"),
    [
        (-4e-6, ValueError, "t must be >= 0 seconds, not -4e-06"),
        (float("nan"), ValueError, "t must be a finite number of seconds, not nan"),
        (True, TypeError, "t must be a number of seconds, not True"),
        ("1.0", TypeError, "t must be a number of seconds, not '1.0'"),
    ],
)
def test_clock_isn_bad_time_raises(t: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        clock_isn(t)
    assert str(raised.value) == message


# -- sequence-space arithmetic --------------------------------------------------------


def test_seq_arithmetic_across_the_wrap() -> None:
    top = SEQ_SPACE - 1
    assert seq_add(top, 1) == 0
    assert seq_add(top - 9, 20) == 10
    assert seq_diff(10, top - 9) == 20
    assert seq_diff(top - 9, 10) == -20
    assert seq_lt(top, 0)
    assert not seq_lt(0, top)
    assert seq_le(top, top)
    assert seq_le(top, 5)
    assert not seq_le(5, top)


@given(x=st.integers(0, 2**64), d=st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_order_matches_the_unwrapped_numbers(x: int, d: int) -> None:
    # x and x + d stand for byte positions in a stream longer than 4 GiB; only their
    # low 32 bits travel in the header.
    a, b = x % SEQ_SPACE, (x + d) % SEQ_SPACE
    assert seq_lt(a, b) == (d > 0)
    assert seq_lt(b, a) == (d < 0)
    assert seq_le(a, b) == (d >= 0)
    assert seq_diff(b, a) == d
    assert seq_diff(a, b) == -d


@given(seq=seqs, n=st.integers(0, 2**31 - 1))
def test_seq_add_then_diff_gives_back_the_step(seq: int, n: int) -> None:
    moved = seq_add(seq, n)
    assert seq_diff(moved, seq) == n
    assert seq_le(seq, moved)
    assert seq_lt(seq, moved) == (n > 0)


@given(a=seqs, b=seqs)
def test_seq_order_is_a_strict_order_where_defined(a: int, b: int) -> None:
    if (a - b) % SEQ_SPACE == 2**31:
        with pytest.raises(ValueError, match="exactly 2\\*\\*31 apart"):
            seq_lt(a, b)
        return
    assert [seq_lt(a, b), a == b, seq_lt(b, a)].count(True) == 1


UNDEFINED = "are exactly 2**31 apart: their order is undefined (RFC 1982)"
BAD_SEQUENCE_ARITHMETIC = [
    (lambda: seq_lt(0, 2**31), ValueError, f"0 and 2147483648 {UNDEFINED}"),
    (lambda: seq_diff(2**31, 0), ValueError, f"2147483648 and 0 {UNDEFINED}"),
    (lambda: seq_add(0, 2**31), ValueError,
     "n must be in range 0-2147483647 (RFC 1982 addition), not 2147483648"),
    (lambda: seq_add(0, -1), ValueError,
     "n must be in range 0-2147483647 (RFC 1982 addition), not -1"),
    (lambda: seq_add(2**32, 1), ValueError,
     "seq must be in range 0-4294967295 (32 bits), not 4294967296"),
    (lambda: seq_add(0, 1.0), TypeError, "n must be an int, not 1.0"),
    (lambda: seq_lt(-1, 0), ValueError, "a must be in range 0-4294967295 (32 bits), not -1"),
    (lambda: seq_le(0, "1"), TypeError, "b must be an int sequence number, not '1'"),
    (lambda: seq_diff(True, 0), TypeError, "a must be an int sequence number, not True"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), BAD_SEQUENCE_ARITHMETIC)
def test_bad_sequence_arithmetic_raises(call: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message


# -- wrap-around time -----------------------------------------------------------------


def test_wrap_around_time_table() -> None:
    rates = [10e6, 100e6, 1e9, 10e9, 100e9]
    assert [wrap_around_time(rate) for rate in rates] == [
        1717.9869184,
        171.79869184,
        17.179869184,
        1.7179869184,
        0.17179869184,
    ]
    assert wrap_around_time(10e9, span=SEQ_SPACE) == 2 * wrap_around_time(10e9)


@given(rate=st.integers(1, 10**15))
def test_wrap_around_time_halves_when_the_rate_doubles(rate: int) -> None:
    assert wrap_around_time(2 * rate) == pytest.approx(wrap_around_time(rate) / 2)
    assert wrap_around_time(rate) * rate == pytest.approx(2**31 * 8)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0,), ValueError, "bits_per_second must be > 0 and finite, not 0"),
        ((-1e9,), ValueError, "bits_per_second must be > 0 and finite, not -1000000000.0"),
        ((float("inf"),), ValueError, "bits_per_second must be > 0 and finite, not inf"),
        (("1G",), TypeError, "bits_per_second must be a number, not '1G'"),
        ((1e9, 0), ValueError, "span must be in range 1-4294967296 bytes, not 0"),
        ((1e9, 2**32 + 1), ValueError, "span must be in range 1-4294967296 bytes, not 4294967297"),
        ((1e9, 2.0**31), TypeError, "span must be an int number of bytes, not 2147483648.0"),
    ],
)
def test_bad_wrap_around_arguments_raise(args: tuple[Any, ...], error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        wrap_around_time(*args)
    assert str(raised.value) == message
