"""tcpref.segment: the TCP header codec, its checksum, its one-line rendering."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import struct
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpref import capture, wrap
from tcpref.capture import parse_ipv4_tcp
from tcpref.segment import (
    EndOfOptionList,
    Flags,
    MaxSegmentSize,
    NoOperation,
    Option,
    Sack,
    SackPermitted,
    Segment,
    SegmentError,
    Timestamps,
    UnknownOption,
    WindowScale,
    internet_checksum,
    tcp_checksum,
    verify_checksum,
)

ON_LINUX = sys.platform.startswith("linux")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Capturing needs CAP_NET_RAW: any user has it in a private network namespace, where
# these tests run (tests/conftest.py skips them, saying why, where none can be made).
privileged = pytest.mark.netns

# The options of a SYN from Linux, in the order Linux sends them (20 bytes).
LINUX_SYN_OPTIONS: tuple[Option, ...] = (
    MaxSegmentSize(65495),
    SackPermitted(),
    Timestamps(1000, 0),
    NoOperation(),
    WindowScale(7),
)
SYN = Segment(
    src_port=40000,
    dst_port=80,
    seq=123456,
    ack=0,
    flags=Flags.SYN,
    window=65495,
    options=LINUX_SYN_OPTIONS,
)
V4 = ("192.0.2.1", "198.51.100.7")
V6 = ("2001:db8::1", "2001:db8::2")


# -- flags and the fixed header --------------------------------------------------------


def test_flags_have_rfc_9293_and_rfc_3168_bit_positions() -> None:
    assert [(flag.name, flag.value) for flag in Flags] == [
        ("FIN", 1),
        ("SYN", 2),
        ("RST", 4),
        ("PSH", 8),
        ("ACK", 16),
        ("URG", 32),
        ("ECE", 64),
        ("CWR", 128),
    ]


def test_to_bytes_lays_out_the_fixed_header_by_rfc_9293() -> None:
    raw = SYN.to_bytes(*V4)
    assert len(raw) == 40
    assert struct.unpack("!HHIIBB", raw[:14]) == (40000, 80, 123456, 0, 10 << 4, 0x02)
    assert raw[20:24] == bytes((2, 4)) + (65495).to_bytes(2, "big")


def test_data_offset_is_computed_with_padding_to_a_word() -> None:
    assert Segment(1, 2, 0, 0, Flags.ACK, 0).data_offset == 5
    padded = Segment(1, 2, 0, 0, Flags.SYN, 0, options=(WindowScale(7),))
    assert padded.data_offset == 6
    raw = padded.to_bytes(*V4)
    assert raw[20:24] == b"\x03\x03\x07\x00"  # one zero byte of padding


def test_segment_bad_fields_raise() -> None:
    with pytest.raises(ValueError, match="src_port must be in range 0-65535, not 70000"):
        Segment(70000, 2, 0, 0, Flags.SYN, 0)
    with pytest.raises(ValueError, match="seq must be in range 0-4294967295, not -1"):
        Segment(1, 2, -1, 0, Flags.SYN, 0)
    with pytest.raises(ValueError, match="options take 44 bytes; at most 40 fit"):
        Segment(1, 2, 0, 0, Flags.SYN, 0, options=(NoOperation(),) * 44)
    with pytest.raises(ValueError, match="data_offset 5 is too small"):
        Segment(1, 2, 0, 0, Flags.SYN, 0, options=(MaxSegmentSize(1460),), data_offset=5)
    with pytest.raises(TypeError, match="payload must be bytes"):
        Segment(1, 2, 0, 0, Flags.SYN, 0, payload="hi")  # type: ignore[arg-type]


def test_option_records_check_their_values() -> None:
    with pytest.raises(ValueError, match="mss must be in range 0-65535"):
        MaxSegmentSize(65536)
    with pytest.raises(ValueError, match="a SACK option holds 1-4 blocks, not 0"):
        Sack(())
    with pytest.raises(ValueError, match="option kind 2 has its own record"):
        UnknownOption(2, b"\x05\xb4")


# -- decoding ----------------------------------------------------------------------------


def test_from_bytes_decodes_a_linux_syn() -> None:
    decoded = Segment.from_bytes(SYN.to_bytes(*V4))
    assert decoded.options == LINUX_SYN_OPTIONS
    assert decoded.flags is Flags.SYN
    assert decoded.header_length == 40
    assert decoded.payload == b""


def test_from_bytes_keeps_unknown_options_raw() -> None:
    segment = Segment(1, 2, 0, 0, Flags.SYN, 0, options=(UnknownOption(30, b"\xab\xcd"),))
    decoded = Segment.from_bytes(segment.to_bytes(*V4))
    assert decoded.options == (UnknownOption(30, b"\xab\xcd"),)


def test_from_bytes_stops_at_end_of_option_list() -> None:
    header = struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 7 << 4, 2, 0, 0, 0)
    decoded = Segment.from_bytes(header + b"\x01\x00\x02\x04\x00\x00\x00\x00" + b"data")
    assert decoded.options == (NoOperation(), EndOfOptionList())
    assert decoded.payload == b"data"


def header_with(offset_byte: int = 5 << 4, options: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", 1, 2, 0, 0, offset_byte, 2, 0, 0, 0) + options


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"\x00" * 19, 19, "a TCP header needs 20 bytes, only 19 given"),
        (header_with(4 << 4), 12, "data offset 4 is below 5"),
        (header_with(6 << 4), 12, "data offset 6 (24 bytes) is beyond the 20 bytes given"),
        (header_with(6 << 4, b"\x02\x01\x00\x00"), 20, "option kind 2 has length 1, below 2"),
        (header_with(6 << 4, b"\x02\x08\x00\x00"), 20, "runs past the header's end"),
        (header_with(6 << 4, b"\x01\x01\x01\x02"), 23, "option kind 2 has no length byte"),
        (header_with(6 << 4, b"\x02\x03\x00\x00"), 20, "option kind 2 cannot have length 3"),
        (header_with(7 << 4, b"\x05\x06" + b"\x00" * 6), 20, "kind 5 cannot have length 6"),
    ],
)
def test_from_bytes_malformed_raises_segment_error_naming_offset(
    data: bytes, offset: int, message: str
) -> None:
    with pytest.raises(SegmentError, match=re.escape(message)) as caught:
        Segment.from_bytes(data)
    assert caught.value.offset == offset
    assert str(caught.value).startswith(f"at byte {offset}: ")
    assert isinstance(caught.value, ValueError)


def test_from_bytes_not_bytes_raises_type_error() -> None:
    with pytest.raises(TypeError, match="a segment must be bytes, not str"):
        Segment.from_bytes("SYN")  # type: ignore[arg-type]


@given(st.binary(max_size=80))
def test_from_bytes_arbitrary_bytes_raise_only_segment_error(data: bytes) -> None:
    try:
        segment = Segment.from_bytes(data)
    except SegmentError:
        return
    assert segment.header_length <= len(data)


def test_decodes_the_tcp_part_of_what_capture_sees() -> None:
    tcp = SYN.to_bytes("127.0.0.1", "127.0.0.2")
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0,
        64,
        6,
        0,
        socket.inet_aton("127.0.0.1"),
        socket.inet_aton("127.0.0.2"),
    )
    seen = parse_ipv4_tcp(ip + tcp)
    assert seen is not None
    decoded = Segment.from_bytes((ip + tcp)[20:])
    assert (decoded.src_port, decoded.dst_port) == (seen.src[1], seen.dst[1])
    assert (decoded.seq, decoded.ack, int(decoded.flags)) == (seen.seq, seen.ack, int(seen.flags))


# -- the checksum ------------------------------------------------------------------------


def test_internet_checksum_rfc_1071_example() -> None:
    # RFC 1071 Section 3: these bytes sum to 0xddf2, whose complement is 0x220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"\x01") == 0xFEFF  # an odd byte is padded with zero


def test_checksum_covers_the_ipv4_pseudo_header() -> None:
    raw = SYN.to_bytes(*V4)
    assert verify_checksum(raw, *V4)
    assert not verify_checksum(raw, "192.0.2.1", "198.51.100.8")
    assert tcp_checksum(raw, *V4) == int.from_bytes(raw[16:18], "big")


def test_checksum_covers_the_ipv6_pseudo_header() -> None:
    raw = SYN.to_bytes(*V6)
    assert verify_checksum(raw, *V6)
    assert not verify_checksum(raw, "2001:db8::1", "2001:db8::3")
    assert raw != SYN.to_bytes(*V4)  # only the checksum differs
    assert raw[:16] + raw[18:] == SYN.to_bytes(*V4)[:16] + SYN.to_bytes(*V4)[18:]


def test_checksum_ok_on_a_decoded_segment() -> None:
    decoded = Segment.from_bytes(SYN.to_bytes(*V4))
    assert decoded.checksum_ok(*V4)
    assert not dataclasses.replace(decoded, checksum=decoded.checksum ^ 1).checksum_ok(*V4)


@pytest.mark.parametrize(
    ("src", "dst", "error", "message"),
    [
        ("127.0.0.1", "::1", ValueError, "are not the same IP version"),
        ("localhost", "127.0.0.1", ValueError, "src_ip must be an IPv4 or IPv6 address"),
        (b"\x7f\x00\x00\x01", "127.0.0.1", TypeError, "src_ip must be an IP address string"),
    ],
)
def test_to_bytes_bad_addresses_raise(src: Any, dst: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SYN.to_bytes(src, dst)


# -- properties --------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
option_records = st.one_of(
    st.just(NoOperation()),
    st.builds(MaxSegmentSize, u16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
    st.builds(Timestamps, u32, u32),
    st.builds(
        UnknownOption,
        st.integers(9, 255),
        st.binary(max_size=6),
    ),
)


@st.composite
def segments(draw: st.DrawFn) -> Segment:
    options: list[Option] = []
    for option in draw(st.lists(option_records, max_size=6)):
        if len(b"".join(o.to_bytes() for o in [*options, option])) <= 39:
            options.append(option)
    if len(b"".join(o.to_bytes() for o in options)) % 4:
        options.append(EndOfOptionList())  # the padding reads back as this
    return Segment(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=Flags(draw(st.integers(0, 255))),
        window=draw(u16),
        urgent=draw(u16),
        options=tuple(options),
        payload=draw(st.binary(max_size=64)),
    )


addresses = st.sampled_from([V4, V6, ("127.0.0.1", "127.0.0.1"), ("::1", "::1")])


@given(segments(), addresses)
def test_encode_decode_round_trips(segment: Segment, ips: tuple[str, str]) -> None:
    raw = segment.to_bytes(*ips)
    decoded = Segment.from_bytes(raw)
    assert decoded == dataclasses.replace(segment, checksum=decoded.checksum)
    assert decoded.to_bytes(*ips) == raw
    assert 20 <= decoded.header_length <= 60


@given(segments(), addresses, st.data())
def test_valid_checksum_verifies_and_one_flipped_bit_fails(
    segment: Segment, ips: tuple[str, str], data: st.DataObject
) -> None:
    raw = segment.to_bytes(*ips)
    assert verify_checksum(raw, *ips)
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not verify_checksum(bytes(flipped), *ips)


# -- rendering ---------------------------------------------------------------------------


def test_describe_a_syn_relative_to_its_isn() -> None:
    assert SYN.describe(isn=123456) == "SYN seq=0 win=65495 [MSS=65495, SACK_PERM, TS, WS=7]"
    assert str(SYN) == "SYN seq=123456 win=65495 [MSS=65495, SACK_PERM, TS, WS=7]"


def test_describe_ack_data_urgent_and_sack() -> None:
    segment = Segment(
        1,
        2,
        seq=1001,
        ack=5001,
        flags=Flags.PSH | Flags.ACK | Flags.URG,
        window=512,
        urgent=3,
        options=(NoOperation(), NoOperation(), Sack(((6001, 7001),)), UnknownOption(30, b"\x01")),
        payload=b"hello",
    )
    assert segment.describe(isn=1000, peer_isn=5000) == (
        "PSH|ACK|URG seq=1 ack=1 win=512 len=5 urg=3 [SACK=1001-2001, OPT30=01]"
    )


def test_describe_relative_numbers_wrap_and_no_flags() -> None:
    segment = Segment(1, 2, seq=5, ack=0, flags=Flags(0), window=0)
    assert segment.describe(isn=2**32 - 5) == "- seq=10 win=0"
    with pytest.raises(ValueError, match="isn must be in range 0-4294967295"):
        segment.describe(isn=-1)


# -- a real SYN from the kernel ----------------------------------------------------------


@privileged
def test_decodes_a_real_syn_from_loopback() -> None:
    listener = wrap.tcp_socket()
    try:
        wrap.bind(listener, ("127.0.0.1", 0))
        wrap.listen(listener, 1)
        port = listener.getsockname()[1]
        with capture.packet_capture(port=port) as cap:
            client = wrap.tcp_socket()
            with client:
                wrap.connect(client, ("127.0.0.1", port), timeout=5)
                packet = cap.recv(256)
                listener.settimeout(5)
                conn, _ = wrap.accept(listener)
                conn.close()
    finally:
        listener.close()
    tcp = packet[(packet[0] & 0x0F) * 4 :]
    syn = Segment.from_bytes(tcp)
    assert syn.flags is Flags.SYN
    assert syn.dst_port == port
    kinds = {type(option) for option in syn.options}
    assert {MaxSegmentSize, SackPermitted, Timestamps, WindowScale} <= kinds
    assert MaxSegmentSize(65495) in syn.options  # what Linux advertises on lo
    assert syn.describe(isn=syn.seq).startswith("SYN seq=0 win=")
