"""tcpref.capture: the parsers, the kernel filter, and segments captured on loopback.

Most of the reading code is tested without privileges: a datagram socket pair stands
in for the packet socket, and the test writes IPv4 packets into it.  The live
captures need Linux and CAP_NET_RAW, and skip with that reason otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpref import capture
from tcpref.capture import (
    FULL_SNAP_LENGTH,
    CapturedExchange,
    CapturedSegment,
    TcpFlag,
    capture_exchange,
    collect_segments,
    collect_syns,
    decode_ipv4_segment,
    initial_sequence_numbers,
    packet_capture,
    parse_ipv4_tcp,
    tcp_port_filter,
    trace_port,
)
from tcpref.errors import PermissionCallError, SocketCallError
from tcpref.segment import Flags, MaxSegmentSize, Segment, SegmentError
from tcpref.trace import TraceEntry, format_trace

ROOT = Path(__file__).resolve().parent.parent
ON_LINUX = sys.platform.startswith("linux")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

linux_only = pytest.mark.skipif(not ON_LINUX, reason="AF_PACKET sockets are Linux's")
# Capturing needs CAP_NET_RAW: any user has it in a private network namespace, where
# these tests run (tests/conftest.py skips them, saying why, where none can be made).
privileged = pytest.mark.netns


def ipv4_tcp_packet(
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    ack: int = 0,
    flags: int = TcpFlag.SYN,
    *,
    ip_options: bytes = b"",
    protocol: int = 6,
    fragment_offset: int = 0,
) -> bytes:
    """An IPv4 packet with a bare TCP header, as the capture socket receives one."""
    ihl = 5 + len(ip_options) // 4
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | ihl,
        0,
        4 * ihl + len(tcp),
        0,
        fragment_offset,
        64,
        protocol,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    return ip + ip_options + tcp


# -- the parser -----------------------------------------------------------------------


@given(
    src_port=st.integers(0, 65535),
    dst_port=st.integers(0, 65535),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 255),
    options=st.integers(0, 10),
)
def test_parse_reads_back_every_field(
    src_port: int, dst_port: int, seq: int, ack: int, flags: int, options: int
) -> None:
    packet = ipv4_tcp_packet(
        ("127.0.0.1", src_port),
        ("127.0.0.2", dst_port),
        seq,
        ack,
        flags,
        ip_options=b"\x01" * 4 * options,  # NOP options stretch the IPv4 header
    )
    assert parse_ipv4_tcp(packet) == CapturedSegment(
        src=("127.0.0.1", src_port),
        dst=("127.0.0.2", dst_port),
        seq=seq,
        ack=ack,
        flags=TcpFlag(flags),
    )


@pytest.mark.parametrize(
    ("flags", "is_syn"),
    [
        (TcpFlag.SYN, True),
        (TcpFlag.SYN | TcpFlag.ECE | TcpFlag.CWR, True),
        (TcpFlag.SYN | TcpFlag.ACK, False),
        (TcpFlag.ACK, False),
        (TcpFlag.RST, False),
    ],
)
def test_is_syn_means_syn_without_ack(flags: TcpFlag, is_syn: bool) -> None:
    segment = parse_ipv4_tcp(ipv4_tcp_packet(("127.0.0.1", 1), ("127.0.0.1", 2), 0, 0, flags))
    assert segment is not None
    assert segment.is_syn is is_syn


def test_parse_skips_other_protocols_and_later_fragments() -> None:
    udp = ipv4_tcp_packet(("127.0.0.1", 1), ("127.0.0.1", 2), 0, protocol=17)
    fragment = ipv4_tcp_packet(("127.0.0.1", 1), ("127.0.0.1", 2), 0, fragment_offset=185)
    first_fragment = ipv4_tcp_packet(("127.0.0.1", 1), ("127.0.0.1", 2), 7, fragment_offset=0x2000)
    assert parse_ipv4_tcp(udp) is None
    assert parse_ipv4_tcp(fragment) is None
    segment = parse_ipv4_tcp(first_fragment)  # more-fragments bit set, offset 0
    assert segment is not None
    assert segment.seq == 7


@pytest.mark.parametrize(
    ("packet", "error", "message"),
    [
        (b"\x45" * 19, ValueError, "packet too short for an IPv4 header: 19 bytes"),
        (b"\x60" + bytes(39), ValueError, "not an IPv4 packet: version 6"),
        (b"\x44" + bytes(39), ValueError, "IPv4 header length must be >= 20 bytes, not 16"),
        (
            ipv4_tcp_packet(("127.0.0.1", 1), ("127.0.0.1", 2), 0)[:30],
            ValueError,
            "packet too short for a TCP header: 10 bytes after the 20-byte IPv4 header",
        ),
        ("E\x00", TypeError, "packet must be bytes, not str"),
    ],
)
def test_parse_bad_packet_raises(packet: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        parse_ipv4_tcp(packet)
    assert str(raised.value) == message


# -- the kernel filter program -----------------------------------------------------------


def test_port_filter_is_eleven_instructions_naming_the_port() -> None:
    program = tcp_port_filter(8080)
    instructions = [struct.unpack("HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert len(instructions) == 11
    assert [k for code, _, _, k in instructions if code == 0x15] == [6, 8080, 8080]
    assert instructions[-2:] == [(0x06, 0, 0, 256), (0x06, 0, 0, 0)]  # accept, drop


@pytest.mark.parametrize(
    ("port", "error", "message"),
    [
        (0, ValueError, "port must be in range 1-65535, not 0"),
        (65536, ValueError, "port must be in range 1-65535, not 65536"),
        ("80", TypeError, "port must be an int, not '80'"),
        (True, TypeError, "port must be an int, not True"),
    ],
)
def test_port_filter_bad_port_raises(port: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        tcp_port_filter(port)
    assert str(raised.value) == message


# -- bad arguments, checked before any socket is opened -----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"interface": ""}, ValueError, "interface must be a name such as 'lo', not ''"),
        ({"interface": b"lo"}, TypeError, "interface must be a str such as 'lo', not b'lo'"),
        ({"port": 0}, ValueError, "port must be in range 1-65535, not 0"),
        ({"timeout": 0}, ValueError, "timeout must be > 0 seconds and finite, not 0"),
        ({"timeout": float("inf")}, ValueError, "timeout must be > 0 seconds and finite, not inf"),
        ({"timeout": None}, TypeError, "timeout must be a number of seconds, not None"),
    ],
)
def test_packet_capture_bad_argument_raises(
    kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as raised, packet_capture(**kwargs):
        pass
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((None, 80), {"count": 1, "timeout": 1}, TypeError, "capture must be a socket"),
        ((0,), {"count": 1, "timeout": 1}, ValueError, "port must be in range 1-65535, not 0"),
        ((80,), {"count": 0, "timeout": 1}, ValueError, "count must be >= 1, not 0"),
        ((80,), {"count": 1.0, "timeout": 1}, TypeError, "count must be an int, not 1.0"),
        ((80,), {"count": 1, "timeout": -1}, ValueError, "timeout must be > 0 seconds"),
    ],
)
def test_collect_syns_bad_argument_raises(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    with socket.socket() as sock:
        call_args = args if args[0] is None else (sock, *args)
        with pytest.raises(error, match=message.replace("(", r"\(")):
            collect_syns(*call_args, **kwargs)


# -- without the privilege ----------------------------------------------------------------


@linux_only
def test_packet_capture_without_cap_net_raw_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> socket.socket:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(capture.socket, "socket", refuse)
    with pytest.raises(PermissionError) as raised, packet_capture():
        pass
    assert isinstance(raised.value, PermissionCallError)
    assert raised.value.errno == errno.EPERM
    # The interpreter by its real path: a virtual environment's python is a link, and
    # setcap refuses links.
    interpreter = os.path.realpath(sys.executable)
    assert str(raised.value) == (
        "capture('lo'): [Errno 1] EPERM: Operation not permitted. Capturing packets needs "
        "the CAP_NET_RAW capability: run as root; or run it inside a private network "
        f"namespace: see tcpref.netns; or grant it to the interpreter with 'setcap "
        f"cap_net_raw+ep {interpreter}', and then every script that interpreter runs has it."
    )


@pytest.mark.skipif(
    not (ON_LINUX and IS_ROOT and shutil.which("setpriv")),
    reason="dropping CAP_NET_RAW for a child needs Linux, root and setpriv",
)
def test_packet_capture_in_a_process_without_cap_net_raw() -> None:
    child = (
        "from tcpref.capture import packet_capture\n"
        "try:\n"
        "    with packet_capture(): pass\n"
        "except PermissionError as exc:\n"
        "    print(type(exc).__name__, exc.errno, 'CAP_NET_RAW' in str(exc))\n"
    )
    result = subprocess.run(
        ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable, "-c", child],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "PermissionCallError 1 True\n"


# -- live captures on loopback (root) -------------------------------------------------------


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        yield listener


def connect_and_reset(listener: socket.socket, local: tuple[str, int] = ("127.0.0.1", 0)) -> int:
    """Open one connection to ``listener`` and abort it; return the client's port.

    The client closes with SO_LINGER 0, which sends RST: neither side keeps the
    4-tuple in TIME_WAIT, so the same client port can connect again at once.
    """
    with socket.socket() as client:
        client.bind(local)
        client.settimeout(5)
        client.connect(listener.getsockname())
        conn, _ = listener.accept()
        with conn:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            port: int = client.getsockname()[1]
    return port


@privileged
@pytest.mark.parametrize("n", [1, 5, 20])
def test_n_connections_give_n_distinct_syn_isns(server: socket.socket, n: int) -> None:
    port = server.getsockname()[1]
    with packet_capture(port=port) as cap:
        client_ports = [connect_and_reset(server) for _ in range(n)]
        syns = collect_syns(cap, port, count=n, timeout=5)
    assert [syn.src for syn in syns] == [("127.0.0.1", p) for p in client_ports]
    assert all(syn.dst == ("127.0.0.1", port) and syn.is_syn and syn.ack == 0 for syn in syns)
    assert len({syn.seq for syn in syns}) == n


@privileged
def test_filter_keeps_other_ports_out(server: socket.socket) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        other.settimeout(5)
        port = server.getsockname()[1]
        with packet_capture(port=port, timeout=0.5) as cap:
            connect_and_reset(other)
            connect_and_reset(server)
            seen = []
            try:
                for _ in range(20):  # the handshake and the RST: a handful of packets
                    packet, _ = cap.recvfrom(256)
                    seen.append(parse_ipv4_tcp(packet))
            except TimeoutError:
                pass
    assert seen, "the connection to our port was not seen"
    assert all(s is not None and port in (s.src[1], s.dst[1]) for s in seen)


@privileged
def test_collect_syns_stops_at_its_timeout(server: socket.socket) -> None:
    port = server.getsockname()[1]
    with packet_capture(port=port, timeout=3) as cap:
        connect_and_reset(server)
        started = time.monotonic()
        syns = collect_syns(cap, port, count=2, timeout=0.3)
        waited = time.monotonic() - started
        assert cap.gettimeout() == 3  # restored
    assert len(syns) == 1
    assert 0.3 <= waited < 2


@privileged
def test_same_four_tuple_isn_advances_with_a_64_ns_clock(server: socket.socket) -> None:
    port = server.getsockname()[1]
    with packet_capture(port=port) as cap:
        before_1 = time.time_ns()
        client_port = connect_and_reset(server)
        after_1 = time.time_ns()
        time.sleep(0.05)
        before_2 = time.time_ns()
        connect_and_reset(server, ("127.0.0.1", client_port))
        after_2 = time.time_ns()
        first, second = collect_syns(cap, port, count=2, timeout=5)
    assert first.src == second.src
    advance = (second.seq - first.seq) % 2**32
    # Linux adds (wall-clock ns >> 6) to a hash of the 4-tuple: with the 4-tuple fixed,
    # the ISN moved by the 64 ns ticks between the two connect() calls.
    assert (before_2 >> 6) - (after_1 >> 6) <= advance <= (after_2 >> 6) - (before_1 >> 6)


@privileged
def test_unknown_interface_is_enodev() -> None:
    with pytest.raises(SocketCallError) as raised, packet_capture("no-such-if0"):
        pass
    assert raised.value.errno == errno.ENODEV
    assert str(raised.value).startswith("bind('no-such-if0'): [Errno 19] ENODEV")


# == one connection's segments =============================================================

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 8080)


def ipv4_packet(src: tuple[str, int], dst: tuple[str, int], segment: Segment) -> bytes:
    """The IPv4 packet that carries ``segment`` (re-addressed) from ``src`` to ``dst``."""
    tcp = Segment(
        src[1],
        dst[1],
        segment.seq,
        segment.ack,
        segment.flags,
        segment.window,
        options=segment.options,
        payload=segment.payload,
    ).to_bytes(src[0], dst[0])
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0x4000,  # don't fragment, as Linux sets it
        64,
        6,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    return ip + tcp


def seg(flags: Flags, seq: int, ack: int = 0, payload: bytes = b"") -> Segment:
    """A segment whose ports ipv4_packet fills in."""
    return Segment(0, 0, seq, ack, flags, 65535, payload=payload)


#: A whole connection, client ISN 1000 and server ISN 5000: handshake, 5 bytes, teardown.
CONVERSATION = [
    (CLIENT, SERVER, seg(Flags.SYN, 1000)),
    (SERVER, CLIENT, seg(Flags.SYN | Flags.ACK, 5000, 1001)),
    (CLIENT, SERVER, seg(Flags.ACK, 1001, 5001)),
    (CLIENT, SERVER, seg(Flags.PSH | Flags.ACK, 1001, 5001, b"hello")),
    (SERVER, CLIENT, seg(Flags.ACK, 5001, 1006)),
    (CLIENT, SERVER, seg(Flags.FIN | Flags.ACK, 1006, 5001)),
    (SERVER, CLIENT, seg(Flags.FIN | Flags.ACK, 5001, 1007)),
    (CLIENT, SERVER, seg(Flags.ACK, 1007, 5002)),
]
#: CONVERSATION's trace lines, without the time column.
CONVERSATION_TRACE = [
    "C -> S  SYN seq=0 win=65535",
    "C <- S  SYN|ACK seq=0 ack=1 win=65535",
    "C -> S  ACK seq=1 ack=1 win=65535",
    "C -> S  PSH|ACK seq=1 ack=1 win=65535 len=5",
    "C <- S  ACK seq=1 ack=6 win=65535",
    "C -> S  FIN|ACK seq=6 ack=1 win=65535",
    "C <- S  FIN|ACK seq=1 ack=7 win=65535",
    "C -> S  ACK seq=7 ack=2 win=65535",
]
HEADER = format_trace(())


def without_time(line: str) -> str:
    """A trace line without its time column (read times vary on a loaded machine)."""
    seconds, rest = line.lstrip().split("  ", 1)
    assert float(seconds) >= 0
    return rest


@pytest.fixture
def fake_capture() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(reader, writer): a datagram pair standing in for a packet socket."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with reader, writer:
        reader.settimeout(3)
        yield reader, writer


def feed(writer: socket.socket, packets: list[tuple[tuple[str, int], tuple[str, int], Segment]]):
    for src, dst, segment in packets:
        writer.send(ipv4_packet(src, dst, segment))


def test_decode_ipv4_segment_reads_back_the_whole_segment() -> None:
    sent = Segment(40000, 80, 7, 9, Flags.SYN, 1024, options=(MaxSegmentSize(1460),))
    found = decode_ipv4_segment(ipv4_packet(CLIENT, SERVER, sent))
    assert found is not None
    assert (found.src, found.dst, found.payload_length, found.truncated) == (
        CLIENT,
        SERVER,
        0,
        False,
    )
    assert found.segment.options == (MaxSegmentSize(1460),)
    assert found.segment.describe() == "SYN seq=7 win=1024 [MSS=1460]"


@given(payload=st.binary(max_size=600), kept=st.integers(0, 600))
def test_decode_ipv4_segment_knows_the_payload_length_of_a_cut_packet(
    payload: bytes, kept: int
) -> None:
    packet = ipv4_packet(CLIENT, SERVER, seg(Flags.ACK, 1, 1, payload))
    cut = packet[: 40 + kept]  # what a capture with a short snap length keeps
    found = decode_ipv4_segment(cut)
    assert found is not None
    assert found.payload_length == len(payload)
    assert found.segment.payload == payload[:kept]
    assert found.truncated is (kept < len(payload))


def test_decode_ipv4_segment_skips_other_protocols_and_rejects_bad_lengths() -> None:
    assert decode_ipv4_segment(ipv4_tcp_packet(CLIENT, SERVER, 0, protocol=17)) is None
    packet = bytearray(ipv4_packet(CLIENT, SERVER, seg(Flags.SYN, 1)))
    packet[2:4] = (30).to_bytes(2, "big")  # total length shorter than the two headers
    with pytest.raises(ValueError, match="IPv4 total length 30 is too short"):
        decode_ipv4_segment(bytes(packet))
    bad = bytearray(ipv4_packet(CLIENT, SERVER, seg(Flags.SYN, 1)))
    bad[20 + 12] = 4 << 4  # TCP data offset 4: below the minimum
    with pytest.raises(SegmentError, match="at byte 12: data offset 4 is below 5"):
        decode_ipv4_segment(bytes(bad))


def test_collect_segments_keeps_only_the_four_tuple_and_names_the_sides(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    other_client = ("127.0.0.1", 40001)  # same server port, another connection
    noise = [
        (other_client, SERVER, seg(Flags.SYN, 77)),
        (SERVER, other_client, seg(Flags.SYN | Flags.ACK, 88, 78)),
        (CLIENT, ("127.0.0.1", 8081), seg(Flags.SYN, 99)),  # same client, another server
    ]
    feed(writer, noise[:2] + CONVERSATION[:4] + noise[2:] + CONVERSATION[4:])
    entries = collect_segments(reader, CLIENT, SERVER, count=8, timeout=3)
    assert [entry.sender for entry in entries] == [
        "client",
        "server",
        "client",
        "client",
        "server",
        "client",
        "server",
        "client",
    ]
    assert [entry.segment.seq for entry in entries if entry.segment] == [
        segment.seq for _, _, segment in CONVERSATION
    ]
    assert entries[0].time == 0.0
    assert all(entry.arrival == entry.time and entry.time >= 0 for entry in entries)
    assert reader.gettimeout() == 3  # restored
    assert initial_sequence_numbers(entries) == (1000, 5000)


def test_collect_segments_prints_like_the_simulator(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    feed(writer, CONVERSATION)
    entries = collect_segments(reader, CLIENT, SERVER, count=8, timeout=3)
    exchange = CapturedExchange(CLIENT, SERVER, tuple(entries), 1000, 5000)
    assert str(exchange) == exchange.format() == format_trace(entries, 1000, 5000)
    header, *lines = exchange.format().splitlines()
    assert header == HEADER
    assert [without_time(line) for line in lines] == CONVERSATION_TRACE
    assert exchange.segments[3].payload == b"hello"


def test_collect_segments_stops_at_count_and_at_timeout(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    feed(writer, CONVERSATION)
    assert len(collect_segments(reader, CLIENT, SERVER, count=3, timeout=3)) == 3
    started = time.monotonic()
    rest = collect_segments(reader, CLIENT, SERVER, count=10, timeout=0.3)
    waited = time.monotonic() - started
    assert len(rest) == 5  # the rest of the conversation, then the deadline
    assert 0.3 <= waited < 2.5
    assert rest[0].time == 0.0  # times count from the first segment collected


def test_collect_segments_notes_a_payload_it_did_not_capture(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    writer.send(ipv4_packet(CLIENT, SERVER, seg(Flags.ACK, 1, 1, b"x" * 300))[:240])
    (entry,) = collect_segments(reader, CLIENT, SERVER, count=1, timeout=3)
    assert entry.note == "len=300 on the wire, 200 captured"


def test_initial_sequence_numbers_without_syns_are_none() -> None:
    entries = [TraceEntry(0.0, "server", seg(Flags.ACK, 5, 6))]
    assert initial_sequence_numbers(entries) == (None, None)
    assert initial_sequence_numbers([]) == (None, None)


@pytest.mark.parametrize(
    ("client", "server", "kwargs", "error", "message"),
    [
        (CLIENT, SERVER, {"count": 0, "timeout": 1}, ValueError, "count must be >= 1, not 0"),
        (CLIENT, SERVER, {"count": 1, "timeout": 0}, ValueError, "timeout must be > 0"),
        (
            ("::1", 80, 0, 0),
            SERVER,
            {"count": 1, "timeout": 1},
            TypeError,
            "client must be an IPv4 address (ip, port), such as ('127.0.0.1', 8080), "
            "not ('::1', 80, 0, 0)",
        ),
        (
            CLIENT,
            ("localhost", 80),
            {"count": 1, "timeout": 1},
            ValueError,
            "server must be an IPv4 address (ip, port)",
        ),
        (CLIENT, ("127.0.0.1", 0), {"count": 1, "timeout": 1}, ValueError, "server's port"),
    ],
)
def test_collect_segments_bad_argument_raises(
    client: Any, server: Any, kwargs: dict[str, Any], error: type, message: str
) -> None:
    with socket.socket() as sock, pytest.raises(error) as raised:
        collect_segments(sock, client, server, **kwargs)
    assert message in str(raised.value)


def test_trace_port_lines_are_relative_to_the_port(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    again = [  # the same 4-tuple reused later: new ISNs, numbered afresh
        (CLIENT, SERVER, seg(Flags.SYN, 3000)),
        (SERVER, CLIENT, seg(Flags.SYN | Flags.ACK, 9000, 3001)),
    ]
    feed(writer, CONVERSATION[:3] + again)
    header, *lines = trace_port(reader, SERVER[1], count=5, timeout=3)
    assert header == HEADER
    assert [without_time(line) for line in lines] == [
        "C -> S  SYN seq=0 win=65535  (127.0.0.1:40000)",
        "C <- S  SYN|ACK seq=0 ack=1 win=65535  (127.0.0.1:40000)",
        "C -> S  ACK seq=1 ack=1 win=65535  (127.0.0.1:40000)",
        "C -> S  SYN seq=0 win=65535  (127.0.0.1:40000)",
        "C <- S  SYN|ACK seq=0 ack=1 win=65535  (127.0.0.1:40000)",
    ]
    assert lines[0].lstrip().startswith("0.000  ")  # times count from the first segment


def test_trace_port_without_the_syns_prints_absolute_numbers_until_the_timeout(
    fake_capture: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = fake_capture
    feed(writer, CONVERSATION[3:5])
    started = time.monotonic()
    lines = list(trace_port(reader, SERVER[1], timeout=0.3))
    assert time.monotonic() - started < 2.5
    assert [without_time(line) for line in lines[1:]] == [
        "C -> S  PSH|ACK seq=1001 ack=5001 win=65535 len=5  (127.0.0.1:40000)",
        "C <- S  ACK seq=5001 ack=1006 win=65535  (127.0.0.1:40000)",
    ]
    assert reader.gettimeout() == 3  # restored


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"port": 0}, ValueError, "port must be in range 1-65535, not 0"),
        ({"port": 80, "count": 0}, ValueError, "count must be >= 1, not 0"),
        ({"port": 80, "timeout": -1}, ValueError, "timeout must be > 0 seconds"),
        ({"port": "80"}, TypeError, "port must be an int, not '80'"),
    ],
)
def test_trace_port_bad_argument_raises_at_once(
    kwargs: dict[str, Any], error: type, message: str
) -> None:
    with socket.socket() as sock, pytest.raises(error, match=message):
        trace_port(sock, **kwargs)  # raised by the call, before any line is read


@pytest.mark.parametrize(
    ("snap_length", "error", "message"),
    [
        (119, ValueError, "snap_length must be in range 120-262144"),
        (FULL_SNAP_LENGTH + 1, ValueError, "snap_length must be in range 120-262144"),
        (256.0, TypeError, "snap_length must be an int, not 256.0"),
    ],
)
def test_snap_length_out_of_range_raises(snap_length: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        tcp_port_filter(80, snap_length=snap_length)
    with pytest.raises(error, match=message), packet_capture(snap_length=snap_length):
        pass


def test_port_filter_keeps_the_snap_length_asked_for() -> None:
    program = tcp_port_filter(80, snap_length=FULL_SNAP_LENGTH)
    assert struct.unpack("HBBI", program[-16:-8]) == (0x06, 0, 0, FULL_SNAP_LENGTH)


@pytest.mark.parametrize(
    ("script", "kwargs", "error", "message"),
    [
        ("not callable", {"count": 1}, TypeError, "script must be a function"),
        (lambda: None, {"count": 0}, ValueError, "count must be >= 1, not 0"),
        (lambda: None, {"count": 1, "timeout": 0}, ValueError, "timeout must be > 0"),
        (lambda: None, {"count": 1, "port": 0}, ValueError, "port must be in range 1-65535"),
    ],
)
def test_capture_exchange_bad_argument_raises_before_capturing(
    script: Any, kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        capture_exchange(script, **kwargs)


@linux_only
def test_capture_exchange_without_cap_net_raw_never_runs_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> socket.socket:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    ran = []
    monkeypatch.setattr(capture.socket, "socket", refuse)
    with pytest.raises(PermissionCallError, match="CAP_NET_RAW"):
        capture_exchange(lambda: ran.append(1), count=1)  # type: ignore[arg-type, func-returns-value]
    assert ran == []


# -- live exchanges on loopback (root) --------------------------------------------------------


def hello_exchange(listener: socket.socket, *, maxseg: int | None = None):
    """A script for capture_exchange: connect, send b'hello', both close."""

    def script() -> tuple[tuple[str, int], tuple[str, int]]:
        with socket.socket() as client:
            if maxseg is not None:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
            client.settimeout(5)
            client.connect(listener.getsockname())
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                client.sendall(b"hello")
                assert conn.recv(100) == b"hello"
                client_address = client.getsockname()
                client.close()
                assert conn.recv(100) == b""  # the client's FIN has arrived
        return client_address, listener.getsockname()

    return script


EXPECTED_HELLO = [
    "C -> S  SYN seq=0 ",
    "C <- S  SYN|ACK seq=0 ack=1 ",
    "C -> S  ACK seq=1 ack=1 ",
    "C -> S  PSH|ACK seq=1 ack=1 win=... len=5 ",
    "C <- S  ACK seq=1 ack=6 ",
    "C -> S  FIN|ACK seq=6 ack=1 ",
    "C <- S  FIN|ACK seq=1 ack=7 ",
    "C -> S  ACK seq=7 ack=2 ",
]


def assert_hello(exchange: CapturedExchange) -> None:
    """The trace is the eight segments of EXPECTED_HELLO (windows vary: not compared)."""
    trace = exchange.format()
    lines = [without_time(line) for line in trace.splitlines()[1:]]
    assert len(lines) == len(EXPECTED_HELLO), trace
    for line, want in zip(lines, EXPECTED_HELLO, strict=True):
        head, _, tail = want.partition("win=...")
        assert line.startswith(head), trace
        assert tail in line, trace


@privileged
@pytest.mark.parametrize("by_port", [False, True], ids=["any-port", "port"])
def test_capture_exchange_sees_a_whole_connection(server: socket.socket, by_port: bool) -> None:
    port = server.getsockname()[1] if by_port else None
    exchange = capture_exchange(hello_exchange(server), count=8, timeout=5, port=port)
    assert exchange.server == server.getsockname()
    assert exchange.client_isn == exchange.segments[0].seq
    assert exchange.server_isn == exchange.segments[1].seq
    assert_hello(exchange)
    times = [entry.time for entry in exchange.entries]
    assert times[0] == 0.0
    assert times == sorted(times)


@privileged
def test_capture_exchange_leaves_out_other_connections_to_the_same_port(
    server: socket.socket,
) -> None:
    hello = hello_exchange(server)

    def two_connections() -> tuple[tuple[str, int], tuple[str, int]]:
        connect_and_reset(server)  # another connection to the same port, before ours
        return hello()

    exchange = capture_exchange(two_connections, count=20, timeout=0.5)
    assert_hello(exchange)  # exactly our eight: no SYN or RST of the other one


def pause_between_connect_and_send(
    server: socket.socket, pause: float
) -> Callable[[], tuple[tuple[str, int], tuple[str, int]]]:
    """A script that connects, waits ``pause`` seconds, sends 4 bytes and resets."""

    def script() -> tuple[tuple[str, int], tuple[str, int]]:
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                time.sleep(pause)
                client.sendall(b"late")
                assert conn.recv(10) == b"late"
                address = client.getsockname()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return address, server.getsockname()

    return script


@privileged
def test_capture_exchange_times_are_the_kernels(server: socket.socket) -> None:
    script = pause_between_connect_and_send(server, 0.3)
    exchange = capture_exchange(script, count=4, timeout=5)
    # Read after the script, yet stamped when they arrived: 0.3 s between ACK and data.
    assert [flag_text(e) for e in exchange.entries] == ["SYN", "SYN|ACK", "ACK", "PSH|ACK"]
    assert exchange.entries[2].time < 0.1
    assert exchange.entries[3].time - exchange.entries[2].time >= 0.29


@privileged
def test_capture_exchange_stamps_segments_on_arrival_after_stamping_was_off(
    server: socket.socket,
) -> None:
    # Linux turns packet stamping off a moment after the last socket that wanted it
    # closes, and back on a moment after the next one asks.  A capture that began in
    # between once saw its handshake stamped when it was read, after the data.
    script = pause_between_connect_and_send(server, 0.05)
    gaps = []
    for _ in range(10):
        time.sleep(0.02)  # time for the kernel to turn stamping off again
        exchange = capture_exchange(script, count=4, timeout=5)
        gaps.append(exchange.entries[3].time - exchange.entries[2].time)
    assert min(gaps) >= 0.045, gaps


@privileged
def test_capture_socket_gives_up_when_stamping_never_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture, "_arrival_ns", lambda ancillary: time.time_ns() + 10**9)
    started = time.monotonic()
    with pytest.raises(SocketCallError) as caught:
        capture._wait_until_stamped_on_arrival(0.05)
    assert caught.value.errno == errno.ETIMEDOUT
    assert "did not start stamping packets within 0.05 s" in str(caught.value)
    assert time.monotonic() - started < 2


def flag_text(entry: TraceEntry) -> str:
    assert entry.segment is not None
    return entry.segment.describe().split()[0]


@privileged
def test_capture_exchange_shows_the_mss_the_client_asked_for(server: socket.socket) -> None:
    exchange = capture_exchange(hello_exchange(server, maxseg=1000), count=2, timeout=5)
    syn, syn_ack = exchange.segments
    assert MaxSegmentSize(1000) in syn.options
    assert MaxSegmentSize(65495) in syn_ack.options  # the server announces its own


@privileged
def test_capture_exchange_script_errors_propagate_and_close_the_capture() -> None:
    def broken() -> tuple[tuple[str, int], tuple[str, int]]:
        raise RuntimeError("the script failed")

    with pytest.raises(RuntimeError, match="the script failed"):
        capture_exchange(broken, count=1)
    with pytest.raises(TypeError, match=r"the script must return \(client_address"):
        capture_exchange(lambda: None, count=1)  # type: ignore[arg-type, return-value]
    # The no_leaks fixture checks that both captures were closed.


@privileged
def test_collect_segments_reads_a_headers_only_capture(server: socket.socket) -> None:
    port = server.getsockname()[1]
    payload = b"z" * 1000
    # The default snap length keeps the headers only.
    with (
        packet_capture(port=port) as cap,
        socket.create_connection(server.getsockname(), timeout=5) as client,
    ):
        conn, _ = server.accept()
        with conn:
            client.sendall(payload)
            address = client.getsockname()
            entries = collect_segments(cap, address, server.getsockname(), count=4, timeout=5)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    data = entries[3]
    assert data.segment is not None
    assert Flags.PSH in data.segment.flags
    assert data.note == f"len=1000 on the wire, {256 - 52} captured"  # 20 IP + 32 TCP
