"""Initial sequence numbers (ISNs), and arithmetic in TCP's 32-bit sequence space.

Every TCP connection numbers its bytes from an initial sequence number that each
side picks when it sends its SYN.  This module holds three ways of picking one, oldest
first, so that they can be compared number by number:

* :func:`clock_isn`: RFC 793's 32-bit clock, one tick every 4 microseconds, the same
  for every connection (RFC 9293 Section 3.4.1 keeps the clock).
* :class:`IsnGenerator`: ISN = M + F(localip, localport, remoteip, remoteport,
  secretkey), first proposed in RFC 1948 and standardised in RFC 6528 (now RFC 9293
  Section 3.4.1 too): the clock M plus a keyed hash F of the connection's 4-tuple.
* :class:`LinuxIsnGenerator`: the same shape with the clock Linux uses, one tick every
  64 nanoseconds of wall-clock time.

Then the arithmetic that makes a 32-bit counter usable after it wraps:
:func:`seq_add`, :func:`seq_diff`, :func:`seq_lt` and :func:`seq_le` compare and
move sequence numbers modulo 2**32 (RFC 9293 Section 3.4, RFC 1982), and
:func:`wrap_around_time` says how soon a fast sender reuses them.

Everything here is pure.  The clock and the key are arguments, so an example can
fix both and get the same numbers on every run; by default the clock is
``time.monotonic`` and the key comes from ``secrets``.  The key never appears in a
``repr``, a ``str`` or an error message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import numbers
import secrets
import time
import types
from collections.abc import Callable
from fractions import Fraction
from typing import Any

__all__ = [
    "DEFAULT_KEY_BYTES",
    "LINUX_TICK",
    "MAX_KEY_BYTES",
    "MIN_KEY_BYTES",
    "MSL_SECONDS",
    "RFC793_TICK",
    "SEQ_SPACE",
    "IsnGenerator",
    "LinuxIsnGenerator",
    "clock_isn",
    "cycle_seconds",
    "seq_add",
    "seq_diff",
    "seq_le",
    "seq_lt",
    "wrap_around_time",
]

#: The number of sequence numbers, 2**32, since the field is 32 bits wide.
SEQ_SPACE = 2**32
# Two sequence numbers can be ordered only if they are less than half the space
# apart (RFC 1982 Section 3.2).
_HALF = 2**31

#: The tick of RFC 793's ISN clock in seconds, "roughly every 4 microseconds".
RFC793_TICK = 4e-6
#: The tick of Linux's ISN clock in seconds (nanoseconds shifted right by 6 bits, so 64 ns).
LINUX_TICK = 64e-9
_LINUX_TICK_NS = 64

#: The Maximum Segment Lifetime in seconds, the 2 minutes RFC 9293 (Section 3.4.2) assumes.
MSL_SECONDS = 120

#: The shortest secret key :class:`IsnGenerator` accepts: 128 bits.
MIN_KEY_BYTES = 16
#: The key length drawn from ``secrets`` when no key is given: 256 bits.
DEFAULT_KEY_BYTES = 32
#: The longest key BLAKE2b accepts.
MAX_KEY_BYTES = 64

Endpoint = tuple[Any, ...]
"""An ``(ip, port)`` pair, or an IPv6 ``(ip, port, flowinfo, scope_id)`` as sockets give."""


# -- exact time ---------------------------------------------------------------------


def _exact(name: str, value: object) -> Fraction:
    """Turn a number of seconds into an exact fraction.

    A float is taken as the decimal it prints as: 4e-6 cannot be stored exactly in
    binary, and 1.0 / 4e-6 is not exactly 250000.0, yet a reader who writes 1.0 and
    4e-6 means 250000 ticks.  Ints and ``fractions.Fraction`` are exact already.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
        return Fraction(repr(value))
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    return _exact(name, float(value))  # any other Real, such as a NumPy scalar


def _check_tick(tick: object) -> Fraction:
    exact = _exact("tick", tick)
    if exact <= 0:
        raise ValueError(f"tick must be > 0 seconds, not {tick!r}")
    return exact


def _whole_ticks(name: str, t: object, tick: Fraction) -> int:
    """How many whole ticks of the clock have passed at time ``t``."""
    exact = _exact(name, t)
    if exact < 0:
        raise ValueError(f"{name} must be >= 0 seconds, not {t!r}")
    return math.floor(exact / tick)


def cycle_seconds(tick: float = RFC793_TICK) -> float:
    """How long a 32-bit counter advancing once per ``tick`` takes to come round.

    >>> cycle_seconds(4e-6)
    17179.869184

    Raises:
        TypeError: if ``tick`` is not a number.
        ValueError: if ``tick`` is not a positive finite number of seconds.
    """
    return float(SEQ_SPACE * _check_tick(tick))


def clock_isn(t: float, tick: float = RFC793_TICK) -> int:
    """RFC 793's ISN: a 32-bit counter that has advanced once per ``tick`` until ``t``.

    The counter starts at 0 when ``t`` is 0 and wraps to 0 every
    :func:`cycle_seconds` seconds.  It depends on the time alone: every connection
    opened in the same tick gets the same number.

    >>> clock_isn(1.0)
    250000

    Args:
        t: The time in seconds since the counter was 0.
        tick: The seconds between two increments; RFC 793's 4 microseconds by default.

    Raises:
        TypeError: if ``t`` or ``tick`` is not a number.
        ValueError: if ``t`` is negative or ``tick`` is not positive, or either is
            not finite.
    """
    return _whole_ticks("t", t, _check_tick(tick)) % SEQ_SPACE


# -- the key and the 4-tuple -------------------------------------------------------


def _keyed_hash(key: object) -> tuple[Any, int]:
    """Return a BLAKE2b state keyed with ``key`` (4-byte digests) and the key's bits.

    Only the hash state is kept: the generator never stores the key bytes themselves.
    Error messages give the key's type or length, never its bytes.
    """
    if key is None:
        key = secrets.token_bytes(DEFAULT_KEY_BYTES)
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"key must be at least {MIN_KEY_BYTES} bytes ({8 * MIN_KEY_BYTES} bits), "
            f"not {len(key)} bytes"
        )
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(
            f"key must be at most {MAX_KEY_BYTES} bytes (BLAKE2b's limit), not {len(key)} bytes"
        )
    return hashlib.blake2b(key=bytes(key), digest_size=4), 8 * len(key)


def _endpoint(
    name: str, endpoint: object
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """Check an ``(ip, port)`` pair and parse its address."""
    if not isinstance(endpoint, tuple) or len(endpoint) not in (2, 4):
        raise TypeError(f"{name} must be an (ip, port) tuple, not {endpoint!r}")
    ip, port = endpoint[0], endpoint[1]
    if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = ip
    elif isinstance(ip, str):
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"{name} ip must be an IPv4 or IPv6 address, not {ip!r}") from None
    else:
        raise TypeError(f"{name} ip must be a str such as '127.0.0.1', not {ip!r}")
    # bool is an int subclass, but True is never a port.
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{name} port must be an int, not {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} port must be in range 0-65535, not {port!r}")
    return address, port


def _four_tuple_bytes(local: object, remote: object) -> bytes:
    """Encode the 4-tuple in RFC 6528's order: local ip, local port, remote ip, remote port.

    Each field has a fixed width within a family (4 or 16 address bytes, 2 port bytes),
    so two different 4-tuples never encode to the same bytes.
    """
    local_ip, local_port = _endpoint("local", local)
    remote_ip, remote_port = _endpoint("remote", remote)
    if local_ip.version != remote_ip.version:
        raise ValueError(
            f"local and remote must both be IPv4 or both IPv6, not {str(local_ip)!r} "
            f"and {str(remote_ip)!r}"
        )
    return (
        local_ip.packed
        + local_port.to_bytes(2, "big")
        + remote_ip.packed
        + remote_port.to_bytes(2, "big")
    )


def _callable_name(function: object) -> str:
    """A short name for a clock: ``time.monotonic``, ``<lambda>``, or its repr."""
    name = getattr(function, "__name__", None)
    if not isinstance(name, str):
        return repr(function)
    if isinstance(function, types.BuiltinFunctionType) and function.__module__:
        return f"{function.__module__}.{name}"  # such as time.monotonic
    return name


def _format_tick(tick: Fraction) -> str:
    for unit, size in (("s", 1), ("ms", Fraction(1, 10**3)), ("µs", Fraction(1, 10**6))):
        if tick >= size:
            return f"{float(tick / size):g} {unit}"
    return f"{float(tick * 10**9):g} ns"


# -- the generators ------------------------------------------------------------------


class IsnGenerator:
    """RFC 6528's ISN generator: ISN = M + F(localip, localport, remoteip, remoteport, secretkey).

    M is a counter that advances once per ``tick`` of ``clock``, as in RFC 793.
    F is a keyed hash of the connection's 4-tuple: here BLAKE2b keyed with the secret
    key and cut to 32 bits.  The sum is taken modulo 2**32.

    For one 4-tuple, F is a constant, so the ISN advances with the clock exactly as
    RFC 793's did, which keeps a new incarnation of a connection clear of the old
    one's sequence numbers.  Across 4-tuples, F adds an offset that nobody without
    the key can compute, so watching your own connections' ISNs tells you nothing
    about anyone else's.

    Call the generator with the two endpoints, each an ``(ip, port)`` pair, IPv4 or
    IPv6 (both of the same family)::

        gen = IsnGenerator()
        isn = gen(("192.0.2.1", 40000), ("198.51.100.7", 80))

    Args:
        key: The secret key, 16 to 64 bytes.  ``None`` draws 32 random bytes from
            ``secrets``.  Pass a fixed key only to get repeatable numbers in examples
            and tests.
        clock: A function returning the time in seconds, as a float (an int or a
            ``fractions.Fraction`` is used exactly).  ``time.monotonic`` by default.
        tick: Seconds between two increments of M; RFC 793's 4 microseconds by default.

    Raises:
        TypeError: if ``key`` is not bytes, ``clock`` is not callable, or ``tick``
            is not a number.
        ValueError: if ``key`` is shorter than 16 or longer than 64 bytes, or
            ``tick`` is not a positive finite number.
    """

    __slots__ = ("_clock", "_key_bits", "_keyed_hash", "_tick")
    _clock_parameter = "clock"  # its name in the constructor, for repr

    def __init__(
        self,
        key: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float = RFC793_TICK,
    ) -> None:
        self._keyed_hash, self._key_bits = _keyed_hash(key)
        if not callable(clock):
            raise TypeError(f"clock must be a function returning seconds, not {clock!r}")
        self._clock = clock
        self._tick = _check_tick(tick)

    @property
    def tick(self) -> float:
        """Seconds between two increments of the clock counter M."""
        return float(self._tick)

    @property
    def cycle(self) -> float:
        """Seconds the counter M takes to wrap round 2**32 (see :func:`cycle_seconds`)."""
        return float(SEQ_SPACE * self._tick)

    def counter(self) -> int:
        """M: the clock's whole ticks so far, modulo 2**32.

        Raises:
            TypeError: if the clock returns something other than a number.
            ValueError: if the clock returns a negative or non-finite time.
        """
        return _whole_ticks("clock()", self._clock(), self._tick) % SEQ_SPACE

    def offset(self, local: Endpoint, remote: Endpoint) -> int:
        """F: the keyed hash of the 4-tuple, a 32-bit number that does not change with time.

        Raises:
            TypeError: if an endpoint is not an ``(ip, port)`` tuple of str and int.
            ValueError: if an address is not IPv4 or IPv6, a port is outside
                0-65535, or the two addresses are of different families.
        """
        hasher = self._keyed_hash.copy()
        hasher.update(_four_tuple_bytes(local, remote))
        return int.from_bytes(hasher.digest(), "big")

    def __call__(self, local: Endpoint, remote: Endpoint) -> int:
        """Return the ISN for a connection from ``local`` to ``remote``, now.

        Raises:
            TypeError: for a malformed endpoint, or a clock that returns a non-number.
            ValueError: for a bad address or port, or a clock that returns a bad time.
        """
        offset = self.offset(local, remote)  # check the arguments before reading the clock
        return (self.counter() + offset) % SEQ_SPACE

    def __repr__(self) -> str:
        # The key is secret: show its size, never its bytes.
        clock = f"{self._clock_parameter}={_callable_name(self._clock)}"
        return (
            f"{type(self).__name__}(key=<{self._key_bits}-bit key, hidden>, "
            f"{clock}, tick={_format_tick(self._tick)})"
        )


class LinuxIsnGenerator(IsnGenerator):
    """An :class:`IsnGenerator` with the clock Linux uses: wall-clock nanoseconds >> 6.

    Linux (``secure_tcp_seq`` in ``net/core/secure_seq.c``) adds a keyed hash of the
    4-tuple to ``ktime_get_real_ns() >> 6``: one tick every 64 ns of wall-clock time,
    so M wraps every 2**32 * 64 ns, about 275 seconds.  The kernel's hash is SipHash
    with a 128-bit key drawn at boot; ``hashlib`` has no SipHash, so this model
    keeps BLAKE2b.  What it reproduces exactly is the clock.

    The clock is read as an integer count of nanoseconds, as the kernel does: a float
    number of seconds since 1970 cannot resolve 64 ns.

    Args:
        key: As for :class:`IsnGenerator`.
        clock_ns: A function returning the wall-clock time in integer nanoseconds;
            ``time.time_ns`` (the kernel's CLOCK_REALTIME) by default.

    Raises:
        TypeError: if ``key`` is not bytes or ``clock_ns`` is not callable.
        ValueError: if ``key`` is shorter than 16 or longer than 64 bytes.
    """

    __slots__ = ()
    _clock_parameter = "clock_ns"

    def __init__(
        self, key: bytes | None = None, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        if not callable(clock_ns):
            raise TypeError(f"clock_ns must be a function returning nanoseconds, not {clock_ns!r}")
        super().__init__(key, clock=clock_ns, tick=LINUX_TICK)

    def counter(self) -> int:
        """M: the clock's nanoseconds shifted right by 6 bits (64 ns ticks), modulo 2**32.

        Raises:
            TypeError: if the clock returns something other than an int.
            ValueError: if the clock returns a negative time.
        """
        ns = self._clock()
        if isinstance(ns, bool) or not isinstance(ns, int):
            raise TypeError(f"clock_ns() must return an int number of nanoseconds, not {ns!r}")
        if ns < 0:
            raise ValueError(f"clock_ns() must return >= 0 nanoseconds, not {ns!r}")
        return (ns // _LINUX_TICK_NS) % SEQ_SPACE


# -- sequence-space arithmetic (RFC 9293 Section 3.4, RFC 1982) -------------------------


def _check_seq(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int sequence number, not {value!r}")
    if not 0 <= value < SEQ_SPACE:
        raise ValueError(f"{name} must be in range 0-{SEQ_SPACE - 1} (32 bits), not {value!r}")
    return value


def seq_add(seq: int, n: int) -> int:
    """Move ``seq`` forward by ``n``, modulo 2**32.

    RFC 1982 (Section 3.1) defines addition only for 0 <= n <= 2**31 - 1: a larger
    step would land where the result compares as *before* ``seq``.

    >>> seq_add(4294967295, 1)
    0

    Raises:
        TypeError: if ``seq`` or ``n`` is not an int.
        ValueError: if ``seq`` is not a 32-bit number, or ``n`` is outside 0-2147483647.
    """
    _check_seq("seq", seq)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {n!r}")
    if not 0 <= n < _HALF:
        raise ValueError(f"n must be in range 0-{_HALF - 1} (RFC 1982 addition), not {n!r}")
    return (seq + n) % SEQ_SPACE


def seq_diff(a: int, b: int) -> int:
    """How far ``a`` is ahead of ``b`` (negative if behind), across the wrap.

    The result d is the one with ``b + d == a`` modulo 2**32 and -2**31 < d < 2**31.

    >>> seq_diff(5, 4294967291)
    10

    Raises:
        TypeError: if ``a`` or ``b`` is not an int.
        ValueError: if either is not a 32-bit number, or they are exactly 2**31
            apart: RFC 1982 (Section 3.2) leaves their order undefined.
    """
    _check_seq("a", a)
    _check_seq("b", b)
    d = (a - b) % SEQ_SPACE
    if d == _HALF:
        raise ValueError(
            f"{a} and {b} are exactly 2**31 apart: their order is undefined (RFC 1982)"
        )
    return d - SEQ_SPACE if d > _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space: ``a`` comes before ``b`` (RFC 9293's "<").

    >>> seq_lt(4294967295, 0)
    True

    Raises:
        TypeError: if ``a`` or ``b`` is not an int.
        ValueError: if either is not a 32-bit number, or they are exactly 2**31 apart.
    """
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space (RFC 9293's "=<").

    Raises:
        TypeError: if ``a`` or ``b`` is not an int.
        ValueError: if either is not a 32-bit number, or they are exactly 2**31 apart.
    """
    return seq_diff(a, b) <= 0


def wrap_around_time(bits_per_second: float, span: int = _HALF) -> float:
    """Seconds a sender at ``bits_per_second`` takes to send ``span`` bytes.

    With the default span of 2**31 bytes this is the wrap-around time: after it, a
    new segment's sequence number can no longer be told from that of an old duplicate
    of this connection still in the network, because sequence numbers are compared
    only within half the space.  Timestamps and PAWS (RFC 7323 Section 5) exist for
    links fast enough that this is shorter than a segment's lifetime.
    Pass ``span=2**32`` for the time the sequence number takes to come all the way round.

    >>> wrap_around_time(1e9)
    17.179869184

    Raises:
        TypeError: if ``bits_per_second`` is not a number or ``span`` not an int.
        ValueError: if ``bits_per_second`` is not positive and finite, or ``span``
            is outside 1-2**32.
    """
    if isinstance(bits_per_second, bool) or not isinstance(bits_per_second, numbers.Real):
        raise TypeError(f"bits_per_second must be a number, not {bits_per_second!r}")
    if not (math.isfinite(bits_per_second) and bits_per_second > 0):
        raise ValueError(f"bits_per_second must be > 0 and finite, not {bits_per_second!r}")
    if isinstance(span, bool) or not isinstance(span, int):
        raise TypeError(f"span must be an int number of bytes, not {span!r}")
    if not 1 <= span <= SEQ_SPACE:
        raise ValueError(f"span must be in range 1-{SEQ_SPACE} bytes, not {span!r}")
    return float(Fraction(span * 8) / _exact("bits_per_second", bits_per_second))
