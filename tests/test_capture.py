"""tcpref.capture: the header parser, the kernel filter, and SYNs captured on loopback."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpref import capture
from tcpref.capture import (
    CapturedSegment,
    TcpFlag,
    collect_syns,
    packet_capture,
    parse_ipv4_tcp,
    tcp_port_filter,
)
from tcpref.errors import PermissionCallError, SocketCallError

ROOT = Path(__file__).resolve().parent.parent
ON_LINUX = sys.platform.startswith("linux")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

linux_only = pytest.mark.skipif(not ON_LINUX, reason="AF_PACKET sockets are Linux's")
privileged = pytest.mark.skipif(
    not (ON_LINUX and IS_ROOT), reason="capturing needs Linux and CAP_NET_RAW (run as root)"
)


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
    assert str(raised.value) == (
        "capture('lo'): [Errno 1] EPERM: Operation not permitted. Capturing packets needs "
        "the CAP_NET_RAW capability: run as root, or grant it to the interpreter "
        "(setcap cap_net_raw+ep)."
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
