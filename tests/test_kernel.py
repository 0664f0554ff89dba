"""tcpref.kernel: the /proc parsers and the tcp_info decoder on canned input, then live."""

from __future__ import annotations

import doctest
import errno
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import tcp_pair
from tcpref import kernel
from tcpref.kernel import (
    TCP_INFO_BASE_SIZE,
    TCP_INFO_FIELDS,
    TCP_STATES,
    TCP_TIMERS,
    Connection,
    ProcParseError,
    connections,
    decode_address,
    decode_tcp_info,
    parse_sysctl_value,
    parse_tcp_table,
    state_of,
    syn_retry_schedule,
    sysctls,
    tcp_info,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs Linux's /proc and struct tcp_info"
)

ByteOrder = Literal["little", "big"]
HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode"
)
HEADER6 = (
    "  sl  local_address                         remote_address                        "
    "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
)
# Lines as a little-endian Linux 6.18 machine wrote them: a listener on
# 127.0.0.1:37665 with three connections in its accept queue, and one client.
LISTENER_LINE = (
    "   1: 0100007F:9321 00000000:0000 0A 00000000:00000003 00:00000000 00000000"
    "     0        0 63395 4 00000000fb535bf1 100 0 0 10 0"
)
CLIENT_LINE = (
    "   2: 0100007F:D1E8 0100007F:9321 01 00000000:00000000 00:00000000 00000000"
    "     0        0 63396 2 0000000071dd9922 20 0 0 10 -1"
)
# The format of get_timewait4_sock(): 12 columns, timer 3, zeros for the rest.
TIME_WAIT_LINE = (
    "   3: 0100007F:D1EC 0100007F:9321 06 00000000:00000000 03:00001770 00000000"
    "     0        0 0 3 0000000000000000"
)


# -- a test-only encoder: the inverse of decode_address ----------------------------


def encode_address(host: str, port: int, byteorder: ByteOrder) -> str:
    """Write ``(host, port)`` as the kernel does: 32-bit words in host order, hex."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    packed = socket.inet_pton(family, host)
    words = [int.from_bytes(packed[i : i + 4], byteorder) for i in range(0, len(packed), 4)]
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def tcp_line(
    local: tuple[str, int],
    remote: tuple[str, int],
    state: str = "01",
    *,
    queues: str = "00000000:00000000",
    timer: str = "00:00000000",
    retransmits: str = "00000000",
    uid: str = "1000",
    probes: str = "0",
    inode: str = "4242",
    byteorder: ByteOrder = "little",
) -> str:
    """One data line in the kernel's format, with its kernel-internal extra columns."""
    return (
        f"   0: {encode_address(*local, byteorder)} {encode_address(*remote, byteorder)} "
        f"{state} {queues} {timer} {retransmits} {uid:>5} {probes:>8} {inode} "
        "1 0000000000000000 20 4 30 10 -1"
    )


def canonical(host: str) -> str:
    """The text inet_ntop gives for ``host``, as getsockname() would show it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, host))


# -- decode_address: the byte order, worked -----------------------------------------


@pytest.mark.parametrize(
    ("text", "byteorder", "expected"),
    [
        ("0100007F:1F90", "little", ("127.0.0.1", 8080)),
        ("7F000001:1F90", "big", ("127.0.0.1", 8080)),
        ("0101A8C0:0050", "little", ("192.168.1.1", 80)),
        ("00000000:0000", "little", ("0.0.0.0", 0)),
        ("00000000000000000000000001000000:0016", "little", ("::1", 22)),
        ("00000000000000000000000000000001:0016", "big", ("::1", 22)),
        ("0000000000000000FFFF00000100007F:1F90", "little", ("::ffff:127.0.0.1", 8080)),
        ("B80D01200000000000FF000029834200:FFFF", "little", ("2001:db8::ff00:42:8329", 65535)),
        ("0100007f:1f90", "little", ("127.0.0.1", 8080)),  # lower case is hex too
    ],
)
def test_decode_address_worked_examples(
    text: str, byteorder: ByteOrder, expected: tuple[str, int]
) -> None:
    assert decode_address(text, byteorder) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0100007F", "address must be HOST:PORT with a 4-digit hex port, not '0100007F'"),
        ("0100007F:1F9", "address must be HOST:PORT with a 4-digit hex port, not '0100007F:1F9'"),
        ("0100007F:1G90", "address must be HOST:PORT with a 4-digit hex port"),
        ("0100007G:1F90", "host must be 8 or 32 hex digits, not '0100007G'"),
        ("100007F:1F90", "host must be 8 or 32 hex digits, not '100007F'"),
        ("0x00007F:1F90", "host must be 8 or 32 hex digits, not '0x00007F'"),
        ("+100007F:1F90", "host must be 8 or 32 hex digits"),
        ("0100_07F:1F90", "host must be 8 or 32 hex digits"),
    ],
)
def test_decode_address_rejects_what_int_would_accept(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        decode_address(text, "little")


@given(
    address=st.ip_addresses(),
    port=st.integers(0, 65535),
    byteorder=st.sampled_from(["little", "big"]),
)
def test_decode_address_round_trips_any_address(
    address: Any, port: int, byteorder: ByteOrder
) -> None:
    host = str(address)
    encoded = encode_address(host, port, byteorder)
    assert decode_address(encoded, byteorder) == (canonical(host), port)


def test_decode_address_defaults_to_this_machines_byte_order() -> None:
    assert decode_address(encode_address("10.1.2.3", 443, sys.byteorder)) == ("10.1.2.3", 443)


# -- parse_tcp_table on canned text --------------------------------------------------


def test_parse_real_lines_listener_and_client() -> None:
    text = "\n".join([HEADER, LISTENER_LINE, CLIENT_LINE]) + "\n"
    listener, client = parse_tcp_table(text, byteorder="little")
    assert listener == Connection(
        family=socket.AF_INET,
        local=("127.0.0.1", 0x9321),
        remote=("0.0.0.0", 0),
        state="LISTEN",
        tx_queue=0,
        rx_queue=3,  # on a listener: connections waiting in the accept queue
        timer="none",
        timer_expires=0,
        retransmits=0,
        uid=0,
        probes=0,
        inode=63395,
    )
    assert (client.local, client.remote, client.state) == (
        ("127.0.0.1", 0xD1E8),
        ("127.0.0.1", 37665),
        "ESTABLISHED",
    )


def test_parse_time_wait_line_with_twelve_columns() -> None:
    [conn] = parse_tcp_table(TIME_WAIT_LINE, byteorder="little")
    assert conn.state == "TIME_WAIT"
    assert (conn.timer, conn.timer_expires) == ("time_wait", 0x1770)  # 6000 ticks: 60 s
    assert (conn.tx_queue, conn.rx_queue, conn.inode) == (0, 0, 0)


def test_parse_queues_timer_and_counters() -> None:
    line = tcp_line(
        ("10.0.0.1", 5000),
        ("10.0.0.2", 6000),
        "01",
        queues="0000FFFF:00000010",
        timer="01:0000001E",
        retransmits="0000000A",
        uid="65534",
        probes="3",
        inode="987654",
    )
    [conn] = parse_tcp_table(line, byteorder="little")
    assert (conn.tx_queue, conn.rx_queue) == (65535, 16)
    assert (conn.timer, conn.timer_expires) == ("retransmit", 30)
    assert (conn.retransmits, conn.uid, conn.probes, conn.inode) == (10, 65534, 3, 987654)


def test_parse_timer_expiry_may_take_more_than_eight_digits() -> None:
    # The kernel pads with %08lX; a larger number just takes more digits.
    line = tcp_line(("127.0.0.1", 1), ("127.0.0.1", 2), timer="02:123456789")
    [conn] = parse_tcp_table(line)
    assert (conn.timer, conn.timer_expires) == ("keepalive", 0x123456789)


@pytest.mark.parametrize(("code", "name"), sorted(TCP_STATES.items()))
def test_parse_every_state_code(code: str, name: str) -> None:
    [conn] = parse_tcp_table(tcp_line(("127.0.0.1", 1), ("127.0.0.1", 2), code))
    assert conn.state == name


def test_state_table_is_the_kernels_enum() -> None:
    names = [TCP_STATES[f"{n:02X}"] for n in range(1, 13)]
    assert names == [
        "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
        "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
    ]  # fmt: skip


@pytest.mark.parametrize(("code", "name"), sorted(TCP_TIMERS.items()))
def test_parse_every_timer_code(code: int, name: str) -> None:
    line = tcp_line(("127.0.0.1", 1), ("127.0.0.1", 2), timer=f"{code:02X}:00000064")
    [conn] = parse_tcp_table(line)
    assert (conn.timer, conn.timer_expires) == (name, 100)


def test_parse_ipv6_and_ipv4_mapped_lines() -> None:
    text = "\n".join(
        [
            HEADER6,
            tcp_line(("::", 8080), ("::", 0), "0A"),
            tcp_line(("::1", 8080), ("::1", 40000)),
            tcp_line(("::ffff:127.0.0.1", 8080), ("::ffff:127.0.0.1", 40001)),
        ]
    )
    listener, loopback, mapped = parse_tcp_table(text, "/proc/net/tcp6")
    assert {listener.family, loopback.family, mapped.family} == {socket.AF_INET6}
    assert (listener.local, listener.remote, listener.state) == (("::", 8080), ("::", 0), "LISTEN")
    assert loopback.remote == ("::1", 40000)
    assert mapped.local == ("::ffff:127.0.0.1", 8080)


def test_parse_uses_the_given_byte_order() -> None:
    line = tcp_line(("127.0.0.1", 80), ("10.9.8.7", 1234), byteorder="big")
    [conn] = parse_tcp_table(line, byteorder="big")
    assert (conn.local, conn.remote) == (("127.0.0.1", 80), ("10.9.8.7", 1234))


def test_parse_skips_header_and_blank_lines_only() -> None:
    text = f"{HEADER}\n\n{LISTENER_LINE}\n   \n{CLIENT_LINE}\n"
    assert [c.state for c in parse_tcp_table(text)] == ["LISTEN", "ESTABLISHED"]
    assert list(parse_tcp_table(HEADER + "\n")) == []
    assert list(parse_tcp_table("")) == []


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("   0: 0100007F:1F90 00000000:0000 0A", "expected at least 10 fields, found 4"),
        (
            LISTENER_LINE.replace("0100007F:9321", "0100007G:9321"),
            "host must be 8 or 32 hex digits",
        ),
        (LISTENER_LINE.replace(" 0A ", " 0F "), "unknown state code '0F'"),
        (LISTENER_LINE.replace(" 0A ", " 00 "), "unknown state code '00'"),
        (LISTENER_LINE.replace(" 0A ", " ZZ "), "unknown state code 'ZZ'"),
        (LISTENER_LINE.replace("00000000:00000003", "00000000:0000000X"), "bad hex in queues"),
        (LISTENER_LINE.replace("00:00000000", "07:00000000"), "unknown timer code 7"),
        (LISTENER_LINE.replace("00:00000000", "0:00000000"), "bad hex in timer '0:00000000'"),
        (LISTENER_LINE.replace(" 00000000     0", " 0000000Q     0"), "bad hex in retransmits"),
        (LISTENER_LINE.replace("63395", "6339x"), "inode must be a decimal number, not '6339x'"),
        (LISTENER_LINE.replace("   1:", "   x:"), "first field must be a slot number"),
        (
            LISTENER_LINE.replace("00000000:0000", "00000000000000000000000000000000:0000"),
            "local and remote addresses are of different families",
        ),
    ],
)
def test_parse_malformed_line_names_file_line_and_text(bad_line: str, problem: str) -> None:
    text = "\n".join([HEADER, CLIENT_LINE, bad_line])
    with pytest.raises(ProcParseError) as raised:
        list(parse_tcp_table(text, "/proc/net/tcp"))
    err = raised.value
    assert isinstance(err, ValueError)
    assert (err.path, err.line_number, err.line) == ("/proc/net/tcp", 3, bad_line)
    assert problem in err.problem
    assert str(err).startswith(f"/proc/net/tcp, line 3: {err.problem}: ")
    assert str(err).endswith(repr(bad_line))


# -- the thin readers, on a fake procfs ----------------------------------------------


@pytest.fixture
def fake_proc(tmp_path: Path) -> Callable[..., Path]:
    """Make PROC/net/tcp (and tcp6, if given) from lines; return PROC."""

    def make(tcp: list[str], tcp6: list[str] | None = None) -> Path:
        net = tmp_path / "net"
        net.mkdir(exist_ok=True)
        (net / "tcp").write_text("\n".join([HEADER, *tcp]) + "\n")
        if tcp6 is not None:
            (net / "tcp6").write_text("\n".join([HEADER6, *tcp6]) + "\n")
        return tmp_path

    return make


def test_connections_reads_both_files_and_filters_on_either_port(
    fake_proc: Callable[..., Path],
) -> None:
    proc = fake_proc(
        [
            tcp_line(("127.0.0.1", 8080), ("0.0.0.0", 0), "0A", byteorder=sys.byteorder),
            tcp_line(("127.0.0.1", 8080), ("127.0.0.1", 50000), byteorder=sys.byteorder),
            tcp_line(("127.0.0.1", 50000), ("127.0.0.1", 8080), byteorder=sys.byteorder),
            tcp_line(("127.0.0.1", 9090), ("0.0.0.0", 0), "0A", byteorder=sys.byteorder),
        ],
        [tcp_line(("::1", 8080), ("::", 0), "0A", byteorder=sys.byteorder)],
    )
    assert len(connections(proc=str(proc))) == 5
    on_8080 = connections(8080, proc=str(proc))
    assert [(c.local[1], c.remote[1], c.state) for c in on_8080] == [
        (8080, 0, "LISTEN"),
        (8080, 50000, "ESTABLISHED"),
        (50000, 8080, "ESTABLISHED"),
        (8080, 0, "LISTEN"),
    ]
    assert on_8080[-1].family == socket.AF_INET6  # IPv4 first, then IPv6
    assert [c.local[1] for c in connections(50000, proc=str(proc))] == [8080, 50000]
    assert connections(1, proc=str(proc)) == []


def test_connections_without_tcp6_is_fine(fake_proc: Callable[..., Path]) -> None:
    proc = fake_proc([tcp_line(("127.0.0.1", 1), ("0.0.0.0", 0), "0A", byteorder=sys.byteorder)])
    assert [c.state for c in connections(proc=str(proc))] == ["LISTEN"]


def test_connections_without_proc_net_tcp_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        connections(proc=str(tmp_path))
    assert raised.value.errno == errno.ENOENT
    assert raised.value.filename == str(tmp_path / "net" / "tcp")
    assert "needs Linux's procfs" in str(raised.value)


def test_connections_reports_the_files_name_in_parse_errors(
    fake_proc: Callable[..., Path],
) -> None:
    proc = fake_proc([LISTENER_LINE], ["   0: garbage"])
    with pytest.raises(ProcParseError) as raised:
        connections(proc=str(proc))
    assert (raised.value.path, raised.value.line_number) == (str(proc / "net" / "tcp6"), 2)


@pytest.mark.parametrize(
    ("port", "error", "message"),
    [
        ("80", TypeError, "port must be an int, not '80'"),
        (True, TypeError, "port must be an int, not True"),
        (65536, ValueError, "port must be in range 0-65535, not 65536"),
        (-1, ValueError, "port must be in range 0-65535, not -1"),
    ],
)
def test_connections_bad_port_names_the_value(
    tmp_path: Path, port: Any, error: type, message: str
) -> None:
    with pytest.raises(error) as raised:
        connections(port, proc=str(tmp_path))
    assert str(raised.value) == message


def test_state_of_finds_each_end(fake_proc: Callable[..., Path]) -> None:
    order = sys.byteorder
    proc = fake_proc(
        [
            tcp_line(("127.0.0.1", 8080), ("0.0.0.0", 0), "0A", byteorder=order),
            tcp_line(("127.0.0.1", 8080), ("127.0.0.1", 50000), "08", byteorder=order),
            tcp_line(("127.0.0.1", 50000), ("127.0.0.1", 8080), "05", byteorder=order),
        ],
        [tcp_line(("::ffff:127.0.0.2", 7), ("::ffff:127.0.0.3", 9), "06", byteorder=order)],
    )
    assert state_of(("127.0.0.1", 8080), ("0.0.0.0", 0), proc=str(proc)) == "LISTEN"
    assert state_of(("127.0.0.1", 8080), ("127.0.0.1", 50000), proc=str(proc)) == "CLOSE_WAIT"
    assert state_of(("127.0.0.1", 50000), ("127.0.0.1", 8080), proc=str(proc)) == "FIN_WAIT2"
    # An IPv4-mapped address on an IPv6 socket matches its IPv4 form, and back.
    assert state_of(("127.0.0.2", 7), ("127.0.0.3", 9), proc=str(proc)) == "TIME_WAIT"
    assert (
        state_of(("::ffff:127.0.0.2", 7, 0, 0), ("::ffff:127.0.0.3", 9), proc=str(proc))
        == "TIME_WAIT"
    )
    assert state_of(("127.0.0.1", 50000), ("127.0.0.1", 8081), proc=str(proc)) is None


@pytest.mark.parametrize(
    ("local", "error", "message"),
    [
        ("127.0.0.1:80", TypeError, "local must be a (host, port) tuple, not '127.0.0.1:80'"),
        ((b"127.0.0.1", 80), TypeError, "local host must be a str such as '127.0.0.1'"),
        (("localhost", 80), ValueError, "local host must be an IP address, not 'localhost'"),
        (("127.0.0.1", 70000), ValueError, "local port must be in range 0-65535, not 70000"),
    ],
)
def test_state_of_bad_address_names_the_value(
    tmp_path: Path, local: Any, error: type, message: str
) -> None:
    with pytest.raises(error) as raised:
        state_of(local, ("127.0.0.1", 80), proc=str(tmp_path))
    assert str(raised.value).startswith(message)


# -- sysctls on a fake procfs ----------------------------------------------------------

DEFAULT_FILES = {
    "net/ipv4/tcp_syn_retries": "6\n",
    "net/ipv4/tcp_synack_retries": "5\n",
    "net/ipv4/tcp_syn_linear_timeouts": "4\n",
    "net/ipv4/tcp_orphan_retries": "0\n",
    "net/ipv4/tcp_fin_timeout": "60\n",
    "net/core/somaxconn": "4096\n",
    "net/ipv4/tcp_max_syn_backlog": "512\n",
    "net/ipv4/ip_local_port_range": "32768\t60999\n",
    "net/ipv4/tcp_keepalive_time": "7200\n",
    "net/ipv4/tcp_keepalive_intvl": "75\n",
    "net/ipv4/tcp_keepalive_probes": "9\n",
    "net/ipv4/tcp_tw_reuse": "2\n",
}


def write_sysctls(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "sys" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_sysctls_reads_values_meanings_and_defaults(tmp_path: Path) -> None:
    settings = sysctls(str(write_sysctls(tmp_path, DEFAULT_FILES)))
    assert list(settings) == [name.rpartition("/")[2] for name in DEFAULT_FILES]
    syn = settings["tcp_syn_retries"]
    assert (syn.name, syn.value, syn.default, syn.unit) == (
        "net.ipv4.tcp_syn_retries",
        6,
        6,
        "retransmissions",
    )
    assert syn.path == "net/ipv4/tcp_syn_retries"
    assert "ETIMEDOUT" in syn.meaning
    assert settings["somaxconn"].name == "net.core.somaxconn"
    assert settings["ip_local_port_range"].value == (32768, 60999)
    assert settings["tcp_keepalive_time"].unit == "seconds"
    assert all(s.meaning and s.unit for s in settings.values())


def test_sysctls_is_default_compares_live_with_documented(tmp_path: Path) -> None:
    changed = {**DEFAULT_FILES, "net/ipv4/tcp_fin_timeout": "30\n"}
    settings = sysctls(str(write_sysctls(tmp_path, changed)))
    assert settings["tcp_fin_timeout"].is_default is False
    assert settings["tcp_syn_retries"].is_default is True
    assert settings["ip_local_port_range"].is_default is True
    # The file holds 0 by default, which the kernel reads as 8: documented as 8.
    assert settings["tcp_orphan_retries"].is_default is False
    assert "reads 0 as 8" in settings["tcp_orphan_retries"].note
    # No single documented default: it scales with memory.
    backlog = settings["tcp_max_syn_backlog"]
    assert (backlog.default, backlog.is_default) == (None, None)


def test_sysctls_reports_an_absent_setting_as_missing(tmp_path: Path) -> None:
    older_kernel = dict(DEFAULT_FILES)
    del older_kernel["net/ipv4/tcp_syn_linear_timeouts"]
    linear = sysctls(str(write_sysctls(tmp_path, older_kernel)))["tcp_syn_linear_timeouts"]
    assert (linear.value, linear.missing, linear.is_default) == (None, True, None)
    assert linear.default == 4


def test_sysctls_without_proc_sys_net_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        sysctls(str(tmp_path))
    assert raised.value.filename == str(tmp_path / "sys" / "net")
    assert "need Linux's procfs" in str(raised.value)


def test_sysctls_bad_contents_name_the_file(tmp_path: Path) -> None:
    broken = {**DEFAULT_FILES, "net/ipv4/tcp_fin_timeout": "sixty\n"}
    with pytest.raises(ProcParseError) as raised:
        sysctls(str(write_sysctls(tmp_path, broken)))
    assert raised.value.path == str(tmp_path / "sys/net/ipv4/tcp_fin_timeout")
    assert str(raised.value).endswith("line 1: expected integers: 'sixty'")


@pytest.mark.parametrize(
    ("text", "expected"), [("6\n", 6), ("32768\t60999\n", (32768, 60999)), (" -1 ", -1)]
)
def test_parse_sysctl_value(text: str, expected: object) -> None:
    assert parse_sysctl_value(text) == expected


@pytest.mark.parametrize("text", ["", "\n", "abc\n", "1 two\n", "1.5\n"])
def test_parse_sysctl_value_rejects_non_integers(text: str) -> None:
    with pytest.raises(ProcParseError, match="expected integers"):
        parse_sysctl_value(text, "/proc/sys/x")


# -- struct tcp_info: layout and decoder ------------------------------------------------

# Offsets of include/uapi/linux/tcp.h (Linux 6.18), as pahole reports them.
HEADER_OFFSETS = {
    "rto": 8,
    "snd_mss": 16,
    "rtt": 68,
    "rcv_rtt": 92,
    "total_retrans": 100,
    "pacing_rate": 104,
    "bytes_received": 128,
    "min_rtt": 148,
    "delivery_rate": 160,
    "delivered": 192,
    "bytes_retrans": 208,
    "reord_seen": 220,
    "rcv_ooopack": 224,
    "snd_wnd": 228,
    "rcv_wnd": 232,
    "rehash": 236,
    "total_rto": 240,
    "total_rto_recoveries": 242,
    "total_rto_time": 244,
    "received_ce": 248,
    "received_ce_bytes": 272,
    "_ecn_bits": 276,
}


def test_tcp_info_layout_matches_the_header() -> None:
    offsets = {name: offset for name, offset, _ in TCP_INFO_FIELDS}
    for name, expected in HEADER_OFFSETS.items():
        assert offsets[name] == expected, name
    name, offset, size = TCP_INFO_FIELDS[-1]
    assert offset + size == 280  # sizeof(struct tcp_info) on Linux 6.18
    assert offsets["pacing_rate"] == TCP_INFO_BASE_SIZE


def test_tcp_info_fields_are_naturally_aligned_without_gaps() -> None:
    # Were there padding, summing sizes would put fields at the wrong offsets.
    end = 8
    for name, offset, size in TCP_INFO_FIELDS:
        assert offset == end, name
        assert offset % size == 0, name
        end = offset + size


def field_value(offset: int, size: int) -> int:
    """A value for the field at ``offset`` that no other field holds, and that fits."""
    return (offset * 1000 + 7) % (1 << (8 * size))


def synthetic_tcp_info(byteorder: ByteOrder, length: int = 280) -> bytes:
    """A struct tcp_info whose every field holds a value derived from its offset."""
    head = bytes([1, 3, 2, 1, 4, 0b0000_0111, 0x97, 0b0000_0101])
    prefix = "<" if byteorder == "little" else ">"
    body = bytearray(272)
    for name, offset, size in TCP_INFO_FIELDS:
        code = {2: "H", 4: "I", 8: "Q"}[size]
        value = 0xF6 if name == "_ecn_bits" else field_value(offset, size)
        if byteorder == "big" and name == "_ecn_bits":
            value = 0xF6 << 24  # the same bits, numbered from the other end
        struct.pack_into(prefix + code, body, offset - 8, value)
    return (head + bytes(body))[:length]


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_decode_tcp_info_every_field(byteorder: ByteOrder) -> None:
    info = decode_tcp_info(synthetic_tcp_info(byteorder), byteorder)
    assert (info.state, info.ca_state) == ("ESTABLISHED", "Recovery")
    assert (info.retransmits, info.probes, info.backoff) == (2, 1, 4)
    assert info.option_names == ("TIMESTAMPS", "SACK", "WSCALE")
    assert info.length == 280
    for name, offset, size in TCP_INFO_FIELDS:
        if not name.startswith("_"):
            assert getattr(info, name) == field_value(offset, size), name


def test_decode_tcp_info_bit_fields_little_endian() -> None:
    info = decode_tcp_info(synthetic_tcp_info("little"), "little")
    # Byte 6 is 0x97: snd_wscale is the low nibble, rcv_wscale the high one.
    assert (info.snd_wscale, info.rcv_wscale) == (7, 9)
    # Byte 7 is 0b101: app_limited is bit 0, fastopen_client_fail bits 1-2.
    assert (info.delivery_rate_app_limited, info.fastopen_client_fail) == (True, 2)
    # 0xF6 = 0b1111_0110: ecn_mode bits 0-1, opt_seen 2-3, fail_mode 4-7.
    assert (info.ecn_mode, info.accecn_opt_seen, info.accecn_fail_mode, info.options2) == (
        2,
        1,
        15,
        0,
    )


def test_decode_tcp_info_bit_fields_big_endian() -> None:
    info = decode_tcp_info(synthetic_tcp_info("big"), "big")
    # On big-endian machines the first bit field takes the most significant bits.
    assert (info.snd_wscale, info.rcv_wscale) == (9, 7)
    assert (info.delivery_rate_app_limited, info.fastopen_client_fail) == (False, 0)
    assert (info.ecn_mode, info.accecn_opt_seen, info.accecn_fail_mode, info.options2) == (
        3,
        3,
        6,
        0,
    )


@pytest.mark.parametrize("length", [104, 107, 119, 120, 144, 192, 228, 232, 248, 276, 280, 300])
def test_decode_tcp_info_tolerates_a_shorter_struct(length: int) -> None:
    raw = synthetic_tcp_info("little") + bytes(20)  # 300: a future kernel's longer struct
    info = decode_tcp_info(raw[:length], "little")
    assert info.length == length
    assert info.total_retrans == field_value(100, 4)  # in every kernel's struct
    for name, offset, size in TCP_INFO_FIELDS:
        if name.startswith("_"):
            name = "ecn_mode"
        if offset + size <= length:
            assert getattr(info, name) is not None, name
        else:
            assert getattr(info, name) is None, name


@pytest.mark.parametrize("length", [0, 8, 103])
def test_decode_tcp_info_too_short_names_the_length(length: int) -> None:
    with pytest.raises(ValueError, match=f"at least 104 bytes .*, not {length}$"):
        decode_tcp_info(synthetic_tcp_info("little")[:length])


def test_decode_tcp_info_unknown_codes_are_value_errors() -> None:
    raw = bytearray(synthetic_tcp_info("little"))
    raw[0] = 0x0F
    with pytest.raises(ValueError, match="unknown state code 15 in struct tcp_info"):
        decode_tcp_info(bytes(raw))
    raw[0], raw[1] = 1, 9
    with pytest.raises(ValueError, match="unknown congestion state code 9"):
        decode_tcp_info(bytes(raw))


def test_decode_tcp_info_needs_bytes() -> None:
    with pytest.raises(TypeError, match="raw must be bytes, not str"):
        decode_tcp_info("x" * 104)  # type: ignore[arg-type]
    assert decode_tcp_info(bytearray(synthetic_tcp_info(sys.byteorder))).state == "ESTABLISHED"


def test_tcp_info_rejects_what_is_not_a_tcp_socket() -> None:
    with pytest.raises(TypeError, match=r"sock must be a socket\.socket, not 3"):
        tcp_info(3)  # type: ignore[arg-type]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        pytest.raises(ValueError, match="sock must be a TCP socket"),
    ):
        tcp_info(udp)


# -- the SYN retransmission schedule ------------------------------------------------------


@pytest.mark.parametrize(
    ("retries", "linear", "sent", "gives_up_at"),
    [
        # ip-sysctl.rst, Linux 6.18: "67 seconds ... till the last retransmission",
        # "the final timeout ... after 131 seconds".
        (6, 4, (1, 2, 3, 4, 5, 7, 11, 19, 35, 67), 131),
        # Before Linux 6.5: 63 s and 127 s.
        (6, 0, (1, 3, 7, 15, 31, 63), 127),
        # The older default of 5 that course notes quote.
        (5, 0, (1, 3, 7, 15, 31), 63),
        # TCP_SYNCNT 1: the time limit (3 s) stops it before the count does.
        (1, 4, (1, 2), 3),
        (1, 0, (1,), 3),
    ],
)
def test_syn_retry_schedule_examples(
    retries: int, linear: int, sent: tuple[int, ...], gives_up_at: int
) -> None:
    schedule = syn_retry_schedule(retries, linear)
    assert schedule.retransmissions == sent
    assert schedule.gives_up_at == gives_up_at


def test_syn_retry_schedule_waits() -> None:
    # ip-sysctl.rst: "we would expect SYN RTOs to be: 1, 1, 1, 1, 1, 2, 4, ..."
    assert syn_retry_schedule(6, 4).waits[:7] == (1, 1, 1, 1, 1, 2, 4)


@given(retries=st.integers(1, 127), linear=st.integers(0, 127))
def test_syn_retry_schedule_properties(retries: int, linear: int) -> None:
    schedule = syn_retry_schedule(retries, linear)
    assert 1 <= len(schedule.retransmissions) <= retries + linear
    assert all(0 < wait <= kernel.MAX_RTO for wait in schedule.waits)
    assert schedule.waits[: linear + 1] == (1.0,) * min(linear + 1, len(schedule.waits))
    assert list(schedule.retransmissions) == sorted(set(schedule.retransmissions))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0, 4), ValueError, "syn_retries must be in range 1-127, not 0"),
        ((128, 0), ValueError, "syn_retries must be in range 1-127, not 128"),
        ((6, -1), ValueError, "linear_timeouts must be in range 0-127, not -1"),
        ((6.0, 4), TypeError, "syn_retries must be an int, not 6.0"),
    ],
)
def test_syn_retry_schedule_bad_arguments(args: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        syn_retry_schedule(*args)
    assert str(raised.value) == message


def test_module_docstring_examples_hold() -> None:
    result = doctest.testmod(kernel, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10
    assert result.failed == 0


# -- live, on this machine's kernel ---------------------------------------------------------


def wait_for_state(local: Any, remote: Any, wanted: str) -> str | None:
    """Poll state_of a bounded number of times: the kernel's side finishes on its own."""
    state = None
    for _ in range(100):  # 100 x 20 ms = at most 2 s
        state = state_of(local, remote)
        if state == wanted:
            break
        time.sleep(0.02)
    return state


@pytest.fixture
def backlog7() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0), backlog=7) as sock:
        sock.settimeout(5)
        yield sock


@linux_only
def test_live_listener_shows_as_listen_with_its_port_and_inode(backlog7: socket.socket) -> None:
    port = backlog7.getsockname()[1]
    [listener] = [c for c in connections(port) if c.local == ("127.0.0.1", port)]
    assert (listener.local, listener.remote, listener.state) == (
        ("127.0.0.1", port),
        ("0.0.0.0", 0),
        "LISTEN",
    )
    assert listener.inode == os.fstat(backlog7.fileno()).st_ino
    assert state_of(backlog7.getsockname(), ("0.0.0.0", 0)) == "LISTEN"


@linux_only
def test_live_listener_queues_accept_queue_in_rx_not_backlog_in_tx(
    backlog7: socket.socket,
) -> None:
    port = backlog7.getsockname()[1]
    clients = [socket.create_connection(backlog7.getsockname(), timeout=5) for _ in range(3)]
    try:

        def listener_line() -> Connection:
            [conn] = [c for c in connections(port) if c.state == "LISTEN"]
            return conn

        # connect() returns when the SYN-ACK arrives; the server's side joins the
        # accept queue when the last ACK is processed, at once on loopback.
        for _ in range(100):  # at most 2 s on a loaded machine
            if listener_line().rx_queue == 3:
                break
            time.sleep(0.02)
        assert (listener_line().rx_queue, listener_line().tx_queue) == (3, 0)
        # Server ends still in the accept queue have no file descriptor yet.
        peers = {client.getsockname() for client in clients}
        waiting = [c for c in connections(port) if c.remote in peers]
        assert [c.inode for c in waiting] == [0, 0, 0]
        # tcp_info has the backlog: on a listener, sacked is the limit.
        info = tcp_info(backlog7)
        assert (info.state, info.unacked, info.sacked) == ("LISTEN", 3, 7)
    finally:
        for client in clients:
            client.close()


@linux_only
def test_live_established_pair_on_both_ends(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    assert state_of(client.getsockname(), client.getpeername()) == "ESTABLISHED"
    assert state_of(server.getsockname(), server.getpeername()) == "ESTABLISHED"
    found = {(c.local, c.remote, c.state) for c in connections(server.getsockname()[1])}
    assert (client.getsockname(), client.getpeername(), "ESTABLISHED") in found
    assert (server.getsockname(), server.getpeername(), "ESTABLISHED") in found


@linux_only
def test_live_unread_bytes_wait_in_rx_queue(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    client.sendall(b"hello")

    def server_end() -> Connection:
        ends = (server.getsockname(), server.getpeername())
        [conn] = [c for c in connections(ends[0][1]) if (c.local, c.remote) == ends]
        return conn

    for _ in range(100):  # at most 2 s for loopback delivery
        if server_end().rx_queue == 5:
            break
        time.sleep(0.02)
    assert server_end().rx_queue == 5
    assert server.recv(5) == b"hello"
    assert server_end().rx_queue == 0


@linux_only
def test_live_active_closer_ends_in_time_wait() -> None:
    with tcp_pair() as (client, server):
        local, remote = client.getsockname(), client.getpeername()
        client.close()  # the client closes first ...
        assert server.recv(1) == b""
        server.close()  # ... so it is the client's end that waits
    assert wait_for_state(local, remote, "TIME_WAIT") == "TIME_WAIT"
    # Match both ends: connect() may reuse a local port towards another peer.
    [conn] = [c for c in connections(local[1]) if (c.local, c.remote) == (local, remote)]
    assert (conn.timer, conn.inode) == ("time_wait", 0)
    assert 0 < conn.timer_expires <= 60 * os.sysconf("SC_CLK_TCK")


@linux_only
def test_live_tcp_info_of_a_connected_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = pair
    info = tcp_info(client)
    assert info.state == "ESTABLISHED"
    assert info.snd_mss > 0
    assert info.length >= TCP_INFO_BASE_SIZE
    assert info.rto > 0


@linux_only
def test_live_tcp_info_of_a_new_socket_is_close() -> None:
    with socket.socket() as sock:
        assert tcp_info(sock).state == "CLOSE"


@linux_only
def test_live_tcp_info_of_a_closed_socket_is_ebadf() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError, match="Bad file descriptor") as raised:
        tcp_info(sock)
    assert raised.value.errno == errno.EBADF


@linux_only
def test_live_ipv6_listener_is_in_tcp6() -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with listener:
        port = listener.getsockname()[1]
        [conn] = [c for c in connections(port) if c.family == socket.AF_INET6]
        assert (conn.family, conn.local, conn.state) == (socket.AF_INET6, ("::1", port), "LISTEN")
        assert state_of(listener.getsockname(), ("::", 0)) == "LISTEN"


@linux_only
def test_live_sysctls_are_readable() -> None:
    settings = sysctls()
    for name, setting in settings.items():
        if name != "tcp_syn_linear_timeouts":  # Linux 6.5+ only
            assert not setting.missing, name
    retries = settings["tcp_syn_retries"].value
    assert isinstance(retries, int)
    assert 1 <= retries <= 127
