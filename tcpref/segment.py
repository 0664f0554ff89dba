"""The TCP header as a typed record: decode it from bytes, encode it with its checksum.

A TCP segment is a header of 20 to 60 bytes followed by the payload (RFC 9293
Section 3.1).  This module is a pure codec, with no sockets:

* :class:`Segment` is the header as an immutable record, its flags a :class:`Flags`
  value and its options a tuple of option records (:class:`MaxSegmentSize`,
  :class:`WindowScale`, :class:`SackPermitted`, :class:`Sack`, :class:`Timestamps`,
  :class:`NoOperation`, :class:`EndOfOptionList`, and :class:`UnknownOption` for any
  other kind, kept raw);
* :meth:`Segment.from_bytes` decodes, :meth:`Segment.to_bytes` encodes and computes
  the checksum over the IPv4 or IPv6 pseudo-header, and :func:`verify_checksum`
  checks the checksum of bytes received;
* :meth:`Segment.describe` renders one line, in the format that the rest of tcpref
  prints segments in.

Malformed bytes raise :class:`SegmentError`, a ``ValueError`` that names the byte
offset where decoding failed.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "KNOWN_KINDS",
    "MAX_HEADER_BYTES",
    "MAX_OPTIONS_BYTES",
    "MIN_HEADER_BYTES",
    "EndOfOptionList",
    "Flags",
    "MaxSegmentSize",
    "NoOperation",
    "Option",
    "Sack",
    "SackPermitted",
    "Segment",
    "SegmentError",
    "Timestamps",
    "UnknownOption",
    "WindowScale",
    "internet_checksum",
    "tcp_checksum",
    "verify_checksum",
]

#: The length in bytes of the smallest TCP header, five 32-bit words with no options
#: (RFC 9293 Section 3.1).
MIN_HEADER_BYTES = 20
#: The length in bytes of the largest header, as the 4-bit data offset counts at most
#: 15 words.
MAX_HEADER_BYTES = 60
#: How many bytes of options fit, which is what the largest header has beyond the smallest.
MAX_OPTIONS_BYTES = MAX_HEADER_BYTES - MIN_HEADER_BYTES

_IPPROTO_TCP = 6
_FIXED_HEADER = struct.Struct("!HHIIBBHHH")
_CHECKSUM_AT = 16  # the checksum's byte offset in the header
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


class SegmentError(ValueError):
    """Bytes that are not a well-formed TCP segment.

    Attributes:
        offset: The byte offset, from the start of the TCP header, where decoding
            failed.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"at byte {offset}: {message}")
        self.offset = offset


class Flags(enum.IntFlag):
    """The flag bits of byte 13 of the header.

    FIN to URG are RFC 9293 Section 3.1's control bits; ECE and CWR are the two
    bits RFC 3168 Section 23.2 adds for Explicit Congestion Notification.
    """

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# -- options (RFC 9293 Section 3.2, RFC 7323, RFC 2018) ---------------------------------


def _check_range(name: str, value: object, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in range 0-{high}, not {value!r}")


@dataclass(frozen=True)
class EndOfOptionList:
    """Kind 0: the options end here; the rest of the header is padding."""

    kind = 0

    def to_bytes(self) -> bytes:
        """Encode the option: a single zero byte."""
        return b"\x00"


@dataclass(frozen=True)
class NoOperation:
    """Kind 1: one byte of filler, used to align the next option to a word."""

    kind = 1

    def to_bytes(self) -> bytes:
        """Encode the option: a single byte 1."""
        return b"\x01"


@dataclass(frozen=True)
class MaxSegmentSize:
    """Kind 2, only in a SYN: the largest payload the sender will accept in a segment.

    Raises:
        ValueError: if ``mss`` is outside 0-65535.
    """

    mss: int
    kind = 2

    def __post_init__(self) -> None:
        _check_range("mss", self.mss, _U16)

    def to_bytes(self) -> bytes:
        """Encode the option: kind, length 4, and the 16-bit size."""
        return struct.pack("!BBH", self.kind, 4, self.mss)


@dataclass(frozen=True)
class WindowScale:
    """Kind 3, only in a SYN: the window field counts in units of 2**shift bytes.

    RFC 7323 Section 2.3 caps a useful shift at 14; the byte itself holds up to 255.

    Raises:
        ValueError: if ``shift`` is outside 0-255.
    """

    shift: int
    kind = 3

    def __post_init__(self) -> None:
        _check_range("shift", self.shift, 0xFF)

    def to_bytes(self) -> bytes:
        """Encode the option: kind, length 3, and the shift count."""
        return struct.pack("!BBB", self.kind, 3, self.shift)


@dataclass(frozen=True)
class SackPermitted:
    """Kind 4, only in a SYN: the sender understands SACK blocks (RFC 2018)."""

    kind = 4

    def to_bytes(self) -> bytes:
        """Encode the option: kind and length 2."""
        return bytes((self.kind, 2))


@dataclass(frozen=True)
class Sack:
    """Kind 5: blocks of data received beyond the acknowledgment number (RFC 2018).

    Each block is ``(left_edge, right_edge)``: the first sequence number received and
    the one after the last.

    Raises:
        ValueError: if there are not 1-4 blocks, or an edge is not a 32-bit number.
    """

    blocks: tuple[tuple[int, int], ...]
    kind = 5

    def __post_init__(self) -> None:
        if not 1 <= len(self.blocks) <= 4:
            raise ValueError(f"a SACK option holds 1-4 blocks, not {len(self.blocks)}")
        for left, right in self.blocks:
            _check_range("SACK edge", left, _U32)
            _check_range("SACK edge", right, _U32)

    def to_bytes(self) -> bytes:
        """Encode the option: kind, length 2 + 8 per block, then the edges."""
        edges = [edge for block in self.blocks for edge in block]
        return struct.pack(f"!BB{len(edges)}I", self.kind, 2 + 4 * len(edges), *edges)


@dataclass(frozen=True)
class Timestamps:
    """Kind 8: the sender's clock, and the last clock value it received (RFC 7323).

    Raises:
        ValueError: if a value is not a 32-bit number.
    """

    value: int
    echo_reply: int
    kind = 8

    def __post_init__(self) -> None:
        _check_range("timestamp value", self.value, _U32)
        _check_range("timestamp echo reply", self.echo_reply, _U32)

    def to_bytes(self) -> bytes:
        """Encode the option: kind, length 10, TSval and TSecr."""
        return struct.pack("!BBII", self.kind, 10, self.value, self.echo_reply)


#: The option kinds this module decodes into their own records.
KNOWN_KINDS = frozenset({0, 1, 2, 3, 4, 5, 8})


@dataclass(frozen=True)
class UnknownOption:
    """Any other option, kept as it came: its kind and the bytes after its length.

    Raises:
        ValueError: if ``kind`` is one of :data:`KNOWN_KINDS` or not a byte, or
            ``data`` is too long for a header.
    """

    kind: int
    data: bytes

    def __post_init__(self) -> None:
        _check_range("option kind", self.kind, 0xFF)
        if self.kind in KNOWN_KINDS:
            raise ValueError(f"option kind {self.kind} has its own record; use it")
        if len(self.data) > MAX_OPTIONS_BYTES - 2:
            raise ValueError(f"option data must be at most 38 bytes, not {len(self.data)}")

    def to_bytes(self) -> bytes:
        """Encode the option: kind, length, data."""
        return bytes((self.kind, 2 + len(self.data))) + self.data


#: Any one option record.
Option: TypeAlias = (
    EndOfOptionList
    | NoOperation
    | MaxSegmentSize
    | WindowScale
    | SackPermitted
    | Sack
    | Timestamps
    | UnknownOption
)


def _decode_option(kind: int, body: bytes, at: int) -> Option:
    """Turn one option's body (the bytes after kind and length) into its record."""
    length = len(body) + 2
    if kind == 2 and length == 4:
        return MaxSegmentSize(int.from_bytes(body, "big"))
    if kind == 3 and length == 3:
        return WindowScale(body[0])
    if kind == 4 and length == 2:
        return SackPermitted()
    if kind == 5 and length in (10, 18, 26, 34):
        edges = struct.unpack(f"!{len(body) // 4}I", body)
        return Sack(tuple(zip(edges[::2], edges[1::2], strict=True)))
    if kind == 8 and length == 10:
        return Timestamps(*struct.unpack("!II", body))
    if kind in KNOWN_KINDS:
        raise SegmentError(f"option kind {kind} cannot have length {length}", at)
    return UnknownOption(kind, body)


def _decode_options(area: bytes, start: int) -> tuple[Option, ...]:
    """Decode the option area, which begins at byte ``start`` of the header."""
    options: list[Option] = []
    position = 0
    # Ends: every pass moves position forward by at least one byte, or returns.
    while position < len(area):
        at = start + position
        kind = area[position]
        if kind == 0:
            options.append(EndOfOptionList())
            break  # what follows is padding (RFC 9293 Section 3.2)
        if kind == 1:
            options.append(NoOperation())
            position += 1
            continue
        if position + 1 >= len(area):
            raise SegmentError(f"option kind {kind} has no length byte", at)
        length = area[position + 1]
        if length < 2:
            raise SegmentError(f"option kind {kind} has length {length}, below 2", at)
        if position + length > len(area):
            raise SegmentError(
                f"option kind {kind} of length {length} runs past the header's end", at
            )
        options.append(_decode_option(kind, area[position + 2 : position + length], at))
        position += length
    return tuple(options)


# -- the checksum (RFC 9293 Section 3.1, RFC 1071) --------------------------------------


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum of ``data`` (RFC 1071).

    An odd length is padded with a zero byte, as RFC 9293 Section 3.1 says.

    Raises:
        TypeError: if ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    padded = bytes(data) + b"\x00" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total > _U16:  # fold the carries back in: one's complement addition
        total = (total & _U16) + (total >> 16)
    return ~total & _U16


def _pseudo_header(src_ip: object, dst_ip: object, tcp_length: int) -> bytes:
    """The IPv4 (RFC 9293 Section 3.1) or IPv6 (RFC 8200 Section 8.1) pseudo-header."""
    source = _ip("src_ip", src_ip)
    destination = _ip("dst_ip", dst_ip)
    if source.version != destination.version:
        raise ValueError(f"src_ip {source} and dst_ip {destination} are not the same IP version")
    if source.version == 4:
        return source.packed + destination.packed + struct.pack("!BBH", 0, _IPPROTO_TCP, tcp_length)
    return source.packed + destination.packed + struct.pack("!I3xB", tcp_length, _IPPROTO_TCP)


def _ip(name: str, value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be an IP address string, not {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{name} must be an IPv4 or IPv6 address, not {value!r}") from None


def tcp_checksum(raw: bytes, src_ip: object, dst_ip: object) -> int:
    """The checksum that belongs in the segment ``raw`` sent from ``src_ip`` to ``dst_ip``.

    The checksum field of ``raw`` is read as zero, whatever it holds.

    Raises:
        TypeError: if ``raw`` is not bytes-like or an address is not a string.
        ValueError: if an address is not IPv4 or IPv6, the two differ in version, or
            ``raw`` is shorter than a TCP header.
    """
    data = _as_bytes(raw)
    if len(data) < MIN_HEADER_BYTES:
        raise SegmentError(f"a TCP header needs 20 bytes, not {len(data)}", len(data))
    zeroed = data[:_CHECKSUM_AT] + b"\x00\x00" + data[_CHECKSUM_AT + 2 :]
    return internet_checksum(_pseudo_header(src_ip, dst_ip, len(data)) + zeroed)


def verify_checksum(raw: bytes, src_ip: object, dst_ip: object) -> bool:
    """Whether the checksum field of the received segment ``raw`` is right.

    Summing the pseudo-header and the whole segment, checksum included, gives
    0xFFFF exactly when the checksum is right, so the complement is zero.

    Raises:
        TypeError: if ``raw`` is not bytes-like or an address is not a string.
        ValueError: if an address is not IPv4 or IPv6, or the two differ in version.
    """
    data = _as_bytes(raw)
    return internet_checksum(_pseudo_header(src_ip, dst_ip, len(data)) + data) == 0


def _as_bytes(raw: object) -> bytes:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"a segment must be bytes, not {type(raw).__name__}")
    return bytes(raw)


# -- the segment ------------------------------------------------------------------------


def _options_bytes(options: tuple[Option, ...]) -> bytes:
    return b"".join(option.to_bytes() for option in options)


def _relative(number: int, isn: int | None) -> int:
    return number if isn is None else (number - isn) & _U32


@dataclass(frozen=True)
class Segment:
    """One TCP segment: the header's fields (RFC 9293 Section 3.1) and the payload.

    ``data_offset`` is the header's length in 32-bit words.  Left at 0, it becomes
    the smallest that holds the options; a larger value pads the options with zero
    bytes.  Zero padding reads back as an :class:`EndOfOptionList`, so a segment
    whose options fill whole words, or end with ``EndOfOptionList()``, decodes from
    its own encoding unchanged.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if a number does not fit its field, or the options do not fit
            in ``data_offset`` words (at most 40 bytes of options).
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: Flags
    window: int
    checksum: int = 0
    urgent: int = 0
    options: tuple[Option, ...] = ()
    payload: bytes = b""
    data_offset: int = field(default=0)

    def __post_init__(self) -> None:
        for name, high in (
            ("src_port", _U16),
            ("dst_port", _U16),
            ("seq", _U32),
            ("ack", _U32),
            ("window", _U16),
            ("checksum", _U16),
            ("urgent", _U16),
            ("data_offset", 15),
        ):
            _check_range(name, getattr(self, name), high)
        _check_range("flags", int(self.flags), 0xFF)
        object.__setattr__(self, "flags", Flags(self.flags))
        if not isinstance(self.options, tuple):
            raise TypeError(f"options must be a tuple, not {self.options!r}")
        if not isinstance(self.payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(self.payload).__name__}")
        options_length = len(_options_bytes(self.options))
        needed = 5 + (options_length + 3) // 4
        if options_length > MAX_OPTIONS_BYTES:
            raise ValueError(f"options take {options_length} bytes; at most 40 fit")
        if self.data_offset == 0:
            object.__setattr__(self, "data_offset", needed)
        elif self.data_offset < needed:
            raise ValueError(
                f"data_offset {self.data_offset} is too small: the options need {needed} words"
            )

    @property
    def header_length(self) -> int:
        """The header's length in bytes, ``4 * data_offset``, which is 20 to 60."""
        return 4 * self.data_offset

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        """Decode a segment: the TCP header from its first byte, then the payload.

        Raises:
            TypeError: if ``data`` is not bytes-like.
            SegmentError: if ``data`` is shorter than 20 bytes, its data offset is
                below 5 or points past the end of ``data``, or an option's length is
                wrong.
        """
        raw = _as_bytes(data)
        if len(raw) < MIN_HEADER_BYTES:
            raise SegmentError(f"a TCP header needs 20 bytes, only {len(raw)} given", len(raw))
        src_port, dst_port, seq, ack, offset_byte, flags, window, checksum, urgent = (
            _FIXED_HEADER.unpack_from(raw)
        )
        data_offset = offset_byte >> 4
        header_length = 4 * data_offset
        if data_offset < 5:
            raise SegmentError(f"data offset {data_offset} is below 5 (20 bytes)", 12)
        if header_length > len(raw):
            raise SegmentError(
                f"data offset {data_offset} ({header_length} bytes) is beyond the "
                f"{len(raw)} bytes given",
                12,
            )
        options = _decode_options(raw[MIN_HEADER_BYTES:header_length], MIN_HEADER_BYTES)
        return cls(
            src_port=src_port,
            dst_port=dst_port,
            seq=seq,
            ack=ack,
            flags=Flags(flags),
            window=window,
            checksum=checksum,
            urgent=urgent,
            options=options,
            payload=raw[header_length:],
            data_offset=data_offset,
        )

    def to_bytes(self, src_ip: object, dst_ip: object) -> bytes:
        """Encode the segment, with the checksum for the addresses it travels between.

        The options are padded with zero bytes to ``data_offset`` words.  The
        ``checksum`` field of the record is ignored: the result carries the one
        computed over the IPv4 or IPv6 pseudo-header, the header and the payload.

        Raises:
            TypeError: if an address is not a string.
            ValueError: if an address is not IPv4 or IPv6, or the two differ in version.
        """
        options = _options_bytes(self.options)
        options += b"\x00" * (self.header_length - MIN_HEADER_BYTES - len(options))
        header = _FIXED_HEADER.pack(
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            self.data_offset << 4,
            int(self.flags),
            self.window,
            0,
            self.urgent,
        )
        unchecked = header + options + self.payload
        checksum = tcp_checksum(unchecked, src_ip, dst_ip)
        return unchecked[:_CHECKSUM_AT] + checksum.to_bytes(2, "big") + unchecked[18:]

    def checksum_ok(self, src_ip: object, dst_ip: object) -> bool:
        """Whether this record's ``checksum`` is the one its encoding should carry.

        For a decoded segment this checks the checksum received, as long as the
        header had no reserved bits set and only zeros after an end-of-options;
        :func:`verify_checksum` checks the received bytes themselves.

        Raises:
            TypeError: if an address is not a string.
            ValueError: if an address is not IPv4 or IPv6, or the two differ in version.
        """
        encoded = self.to_bytes(src_ip, dst_ip)
        return int.from_bytes(encoded[_CHECKSUM_AT:18], "big") == self.checksum

    def describe(self, isn: int | None = None, peer_isn: int | None = None) -> str:
        """Render the segment as one line, in the format all of tcpref prints.

        The format is ``FLAGS seq=S [ack=A] win=W [len=N] [urg=U] [OPTIONS]``:

        * FLAGS: the names of the flags set, lowest bit first, joined by ``|``
          (``SYN|ACK``); ``-`` if none is set.
        * ``seq=S``: relative to ``isn`` (this sender's initial sequence number) if it
          is given, else absolute.
        * ``ack=A``: only if ACK is set; relative to ``peer_isn`` if given.
        * ``win=W``: the window field as sent, not scaled.
        * ``len=N``: the payload's length, only if there is a payload.
        * ``urg=U``: the urgent pointer, only if URG is set.
        * OPTIONS: in brackets, separated by ``, ``, in the order sent:
          ``MSS=1460``, ``WS=7`` (the shift count), ``SACK_PERM``, ``TS`` (the
          values change with the clock, so they are left out),
          ``SACK=L-R L-R`` (edges relative to ``peer_isn`` if given) and
          ``OPT<kind>=<hex>`` for unknown kinds.  NOP and EOL are left out, and so
          are the brackets when no other option is present.

        Raises:
            TypeError: if ``isn`` or ``peer_isn`` is given but not an int.
            ValueError: if ``isn`` or ``peer_isn`` is not a 32-bit number.
        """
        for name, value in (("isn", isn), ("peer_isn", peer_isn)):
            if value is not None:
                _check_range(name, value, _U32)
        names = [flag.name for flag in Flags if flag in self.flags and flag.name]
        parts = ["|".join(names) or "-", f"seq={_relative(self.seq, isn)}"]
        if Flags.ACK in self.flags:
            parts.append(f"ack={_relative(self.ack, peer_isn)}")
        parts.append(f"win={self.window}")
        if self.payload:
            parts.append(f"len={len(self.payload)}")
        if Flags.URG in self.flags:
            parts.append(f"urg={self.urgent}")
        shown = [_describe_option(option, peer_isn) for option in self.options]
        listed = [text for text in shown if text]
        if listed:
            parts.append("[" + ", ".join(listed) + "]")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.describe()


def _describe_option(option: Option, peer_isn: int | None) -> str:
    """One option as :meth:`Segment.describe` shows it; '' for NOP and EOL."""
    if isinstance(option, MaxSegmentSize):
        return f"MSS={option.mss}"
    if isinstance(option, WindowScale):
        return f"WS={option.shift}"
    if isinstance(option, SackPermitted):
        return "SACK_PERM"
    if isinstance(option, Timestamps):
        return "TS"
    if isinstance(option, Sack):
        edges = (
            f"{_relative(left, peer_isn)}-{_relative(right, peer_isn)}"
            for left, right in option.blocks
        )
        return "SACK=" + " ".join(edges)
    if isinstance(option, UnknownOption):
        return f"OPT{option.kind}={option.data.hex()}"
    return ""
