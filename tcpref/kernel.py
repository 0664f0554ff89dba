"""Read what the Linux kernel knows about TCP: connections, one socket's state, settings.

Course notes *state* what the kernel does; this module lets a program *ask* it.
It opens three windows, each split into a pure part that takes text or bytes (and
is tested on canned input) and a thin part that reads the live system:

* **Connection tables.**  ``/proc/net/tcp`` and ``/proc/net/tcp6`` list every TCP
  socket with its addresses, state, queues and timer.  :func:`parse_tcp_table`
  decodes their text; :func:`connections` and :func:`state_of` read the live files.
* **One socket.**  ``getsockopt(IPPROTO_TCP, TCP_INFO)`` copies the kernel's
  ``struct tcp_info`` for one socket.  :func:`decode_tcp_info` decodes the bytes;
  :func:`tcp_info` asks a socket.
* **Settings.**  The files under ``/proc/sys/net`` hold the sysctl settings that
  govern retransmissions, queues, timeouts and ports.  :func:`sysctls` reads the
  ones this reference uses, each with its meaning and documented default.

One computation sits beside them: :func:`syn_retry_schedule` works out when
``connect()`` retransmits its SYN, from ``tcp_syn_retries`` and
``tcp_syn_linear_timeouts``.

All of this is Linux's.  Elsewhere the readers raise ``FileNotFoundError`` (no
procfs) or ``NotImplementedError`` (no Linux ``struct tcp_info``); the pure parts
work anywhere.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import string
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "INITIAL_RTO",
    "MAX_RTO",
    "TCPI_OPTIONS",
    "TCP_CA_STATES",
    "TCP_INFO_BASE_SIZE",
    "TCP_INFO_BUFFER_SIZE",
    "TCP_INFO_FIELDS",
    "TCP_STATES",
    "TCP_TIMERS",
    "Connection",
    "ProcParseError",
    "SynSchedule",
    "Sysctl",
    "TcpInfo",
    "connections",
    "decode_address",
    "decode_tcp_info",
    "model_timeout",
    "parse_sysctl_value",
    "parse_tcp_table",
    "state_of",
    "syn_retry_schedule",
    "sysctls",
    "tcp_info",
]

ByteOrder = Literal["little", "big"]


class ProcParseError(ValueError):
    """A line of a ``/proc`` file is not in the format the kernel writes.

    Attributes:
        path: The file, such as ``'/proc/net/tcp'``.
        line_number: The line, counting from 1 (the header is line 1).
        line: The text of the line, without its newline.
        problem: What is wrong with it.
    """

    def __init__(self, path: str, line_number: int, line: str, problem: str) -> None:
        super().__init__(path, line_number, line, problem)
        self.path = path
        self.line_number = line_number
        self.line = line
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}, line {self.line_number}: {self.problem}: {self.line!r}"


def _check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    # bool is an int subclass, but True is never a sensible port or count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in range {minimum}-{maximum}, not {value!r}")
    return value


# == Connection tables: /proc/net/tcp and /proc/net/tcp6 =============================

#: TCP states by the code ``/proc/net/tcp`` prints in its ``st`` column (two hex
#: digits).  The numbers are the enum in the kernel's ``include/net/tcp_states.h``.
#: A connection request is NEW_SYN_RECV inside the kernel but printed as SYN_RECV
#: (03) in ``/proc``; BOUND_INACTIVE is a pseudo-state that only ``inet_diag``
#: (``ss``) reports, for a socket that is bound but neither listening nor connected.
TCP_STATES: dict[str, str] = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
    "0C": "NEW_SYN_RECV",
    "0D": "BOUND_INACTIVE",
}

#: Which kernel timer is pending, by the code in the ``tr`` column of
#: ``/proc/net/tcp``, numbered as in ``get_tcp4_sock()`` in
#: ``net/ipv4/tcp_ipv4.c``.  ``ss -o`` calls them off, on, keepalive, timewait and
#: persist.
TCP_TIMERS: dict[int, str] = {
    0: "none",
    # The retransmission timer; also the reordering and tail-loss-probe timers,
    # and for a connection request the SYN-ACK retransmission timer.
    1: "retransmit",
    # The socket's own timer: keepalive probes, or the FIN_WAIT2 timeout.
    2: "keepalive",
    # The TIME_WAIT timer (also for an orphaned connection in FIN_WAIT2).
    3: "time_wait",
    # The zero-window probe ("persist") timer: the peer's window is closed.
    4: "zero_window_probe",
}

# Columns before the kernel-internal extras (reference count, pointer, rto, ...):
# sl, local_address, rem_address, st, tx_queue:rx_queue, tr:tm->when, retrnsmt,
# uid, timeout, inode.  TIME_WAIT lines have 12 columns in all, others 17.
_COLUMNS = 10


@dataclass(frozen=True)
class Connection:
    """One line of ``/proc/net/tcp`` or ``/proc/net/tcp6``: one TCP socket.

    What ``tx_queue`` and ``rx_queue`` count depends on the state:

    * Connected states (ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, ...): ``tx_queue`` is
      the bytes written but not yet acknowledged by the peer (``write_seq -
      snd_una``); ``rx_queue`` is the bytes received but not yet read by the
      application (``rcv_nxt - copied_seq``).
    * LISTEN: ``rx_queue`` is the number of connections that finished the
      handshake and wait in the accept queue; ``tx_queue`` is 0.  The backlog
      limit is *not* in this file: ``ss -lnt`` shows it as Send-Q, and
      :func:`tcp_info` as ``sacked``.
    * TIME_WAIT and a connection request (SYN_RECV): the kernel prints 0 for
      both, and 0 for ``inode``, since no file refers to such a socket.

    Attributes:
        family: ``socket.AF_INET`` for lines of ``tcp``, ``socket.AF_INET6`` for
            ``tcp6``.
        local: The local ``(host, port)``, such as ``('127.0.0.1', 8080)``.  An
            IPv4 address on an IPv6 socket appears IPv4-mapped, as
            ``'::ffff:127.0.0.1'``.
        remote: The peer's ``(host, port)``; ``('0.0.0.0', 0)`` or ``('::', 0)`` for
            a listener.
        state: The state's name, a value of :data:`TCP_STATES` such as
            ``'ESTABLISHED'``.
        tx_queue: See above.
        rx_queue: See above.
        timer: Which timer is pending, a value of :data:`TCP_TIMERS`.
        timer_expires: When it fires, in clock ticks from now, as the file gives
            it (``tm->when``; ``os.sysconf('SC_CLK_TCK')`` ticks a second, usually
            100).  0 when no timer is pending.
        retransmits: Retransmission timeouts in a row without an answer
            (``retrnsmt``); for a connection request, SYN-ACKs retransmitted.
        uid: The user id that owns the socket.
        probes: Zero-window or keepalive probes sent without an answer (the column
            headed ``timeout``).
        inode: The socket's inode, as in ``/proc/PID/fd`` links
            (``socket:[inode]``); 0 when no file descriptor refers to the socket,
            such as a connection still waiting in the accept queue.
    """

    family: socket.AddressFamily
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    tx_queue: int
    rx_queue: int
    timer: str
    timer_expires: int
    retransmits: int
    uid: int
    probes: int
    inode: int


def _is_hex(text: str) -> bool:
    # int(text, 16) alone would also accept '0x', '_', signs and spaces.
    return bool(text) and all(char in string.hexdigits for char in text)


def _is_decimal(text: str) -> bool:
    # str.isdigit() alone would also accept digits such as '²'.
    return text.isascii() and text.isdigit()


def decode_address(text: str, byteorder: ByteOrder = sys.byteorder) -> tuple[str, int]:
    """Decode an address column of ``/proc/net/tcp`` or ``tcp6`` into ``(host, port)``.

    The port is the number in hex, the way people write it: ``1F90`` is 8080.
    The host is stranger.  The kernel keeps an IPv4 address as four bytes in
    network order (``7F 00 00 01`` for 127.0.0.1) and prints them as one 32-bit
    integer *in the host's byte order*.  On a little-endian machine (x86, most
    ARM) the bytes come out reversed:

    >>> decode_address("0100007F:1F90", "little")
    ('127.0.0.1', 8080)
    >>> decode_address("7F000001:1F90", "big")
    ('127.0.0.1', 8080)
    >>> decode_address("00000000:0000")
    ('0.0.0.0', 0)

    An IPv6 address is printed as four such 32-bit words, each in host order.
    ``::1`` is three zero words and then the word holding ``00 00 00 01``; the
    IPv4-mapped ``::ffff:127.0.0.1`` has ``00 00 FF FF`` in its third word:

    >>> decode_address("00000000000000000000000001000000:0016", "little")
    ('::1', 22)
    >>> decode_address("0000000000000000FFFF00000100007F:1F90", "little")
    ('::ffff:127.0.0.1', 8080)

    Args:
        text: ``HOST:PORT`` with 8 (IPv4) or 32 (IPv6) hex digits of host.
        byteorder: The byte order of the machine that wrote the file; by
            default this machine's.

    Raises:
        ValueError: if ``text`` is not in that format.
    """
    host_hex, colon, port_hex = text.partition(":")
    if not colon or len(port_hex) != 4 or not _is_hex(port_hex):
        raise ValueError(f"address must be HOST:PORT with a 4-digit hex port, not {text!r}")
    if len(host_hex) not in (8, 32) or not _is_hex(host_hex):
        raise ValueError(f"host must be 8 or 32 hex digits, not {host_hex!r} in {text!r}")
    # Each 8 hex digits are one 32-bit word; its bytes in memory are the address.
    packed = b"".join(
        int(host_hex[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(host_hex), 8)
    )
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(port_hex, 16)


def _split_pair(text: str, what: str, widths: tuple[int, int]) -> tuple[int, int]:
    """Split ``'0000000A:00000003'`` into two hex numbers of the given widths.

    The second may be longer: the kernel pads it to its width with ``%08X`` or
    ``%08lX``, and a larger number simply takes more digits.
    """
    first, colon, second = text.partition(":")
    well_formed = colon and len(first) == widths[0] and len(second) >= widths[1]
    if not (well_formed and _is_hex(first) and _is_hex(second)):
        raise ValueError(f"bad hex in {what} {text!r}")
    return int(first, 16), int(second, 16)


def _parse_line(line: str, byteorder: ByteOrder) -> Connection:
    """Decode one data line; raise ValueError saying what is wrong with it."""
    fields = line.split()
    if len(fields) < _COLUMNS:
        raise ValueError(f"expected at least {_COLUMNS} fields, found {len(fields)}")
    slot, local_text, remote_text, state_code = fields[:4]
    if not (slot.endswith(":") and _is_decimal(slot[:-1])):
        raise ValueError(f"first field must be a slot number such as '0:', not {slot!r}")
    local = decode_address(local_text, byteorder)
    remote = decode_address(remote_text, byteorder)
    if len(local_text) != len(remote_text):
        raise ValueError("local and remote addresses are of different families")
    state = TCP_STATES.get(state_code.upper())
    if state is None:
        raise ValueError(f"unknown state code {state_code!r}")
    tx_queue, rx_queue = _split_pair(fields[4], "queues", (8, 8))
    timer_code, timer_expires = _split_pair(fields[5], "timer", (2, 8))
    if timer_code not in TCP_TIMERS:
        raise ValueError(f"unknown timer code {timer_code}")
    retransmits_hex, uid, probes, inode = fields[6:10]
    if not _is_hex(retransmits_hex):
        raise ValueError(f"bad hex in retransmits {retransmits_hex!r}")
    for name, value in (("uid", uid), ("timeout", probes), ("inode", inode)):
        if not _is_decimal(value):
            raise ValueError(f"{name} must be a decimal number, not {value!r}")
    return Connection(
        family=socket.AF_INET6 if ":" in local[0] else socket.AF_INET,
        local=local,
        remote=remote,
        state=state,
        tx_queue=tx_queue,
        rx_queue=rx_queue,
        timer=TCP_TIMERS[timer_code],
        timer_expires=timer_expires,
        retransmits=int(retransmits_hex, 16),
        uid=int(uid),
        probes=int(probes),
        inode=int(inode),
    )


def parse_tcp_table(
    text: str, path: str = "/proc/net/tcp", *, byteorder: ByteOrder = sys.byteorder
) -> Iterator[Connection]:
    """Yield one :class:`Connection` per line of a ``/proc/net/tcp`` or ``tcp6`` text.

    The header line (it starts with ``sl``) and blank lines are skipped.  The
    columns after ``inode`` (reference count, kernel pointer, and for full sockets
    rto, ato, quick-ack flags, cwnd and ssthresh) are kernel-internal and ignored.

    >>> line = ("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002"
    ...         " 00:00000000 00000000  1000        0 4242")
    >>> [listener] = parse_tcp_table(line, byteorder="little")
    >>> listener.local, listener.state, listener.rx_queue, listener.inode
    (('127.0.0.1', 8080), 'LISTEN', 2, 4242)

    Args:
        text: The file's contents.
        path: The file's name, used in error messages only.
        byteorder: The byte order of the machine that wrote the text (see
            :func:`decode_address`); by default this machine's.

    Raises:
        ProcParseError: (a ``ValueError``) for a line that is not in the kernel's
            format: too few fields, bad hex, an unknown state or timer code.  The
            message names the file, the line number and the line.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.split()[0] == "sl":
            continue
        try:
            yield _parse_line(line, byteorder)
        except ValueError as exc:
            raise ProcParseError(path, number, line, str(exc)) from None


def _read_tcp_tables(proc: str) -> list[Connection]:
    """Every connection in ``PROC/net/tcp`` and, if it exists, ``PROC/net/tcp6``."""
    net = Path(proc) / "net"
    tcp = net / "tcp"
    if not tcp.is_file():
        raise FileNotFoundError(
            errno.ENOENT, "No TCP connection table here (it needs Linux's procfs)", str(tcp)
        )
    found = list(parse_tcp_table(tcp.read_text(), str(tcp)))
    # A kernel built without IPv6, or booted with ipv6.disable=1, has no tcp6.
    tcp6 = net / "tcp6"
    if tcp6.is_file():
        found += parse_tcp_table(tcp6.read_text(), str(tcp6))
    # The kernel hands the table out a page at a time and resumes each read by
    # hash bucket and offset, so a socket created meanwhile can make a line come
    # twice.  Keep the first of each (a Connection is a frozen record).
    return list(dict.fromkeys(found))


def connections(port: int | None = None, proc: str = "/proc") -> list[Connection]:
    """List the TCP sockets the kernel knows, optionally only those on one port.

    It reads ``/proc/net/tcp`` and ``/proc/net/tcp6`` once: the list is a snapshot,
    and states can change right after.

    Args:
        port: If given, keep only the sockets whose local *or* remote port it is,
            so a server's port finds its listener and both ends of each connection.
        proc: Where procfs is mounted, as a path; tests pass a folder of canned
            files.

    Returns:
        The connections in file order, IPv4 first, then IPv6.

    Raises:
        TypeError: if ``port`` is not an int.
        ValueError: if ``port`` is outside 0-65535.
        FileNotFoundError: if ``PROC/net/tcp`` does not exist (not Linux, or no
            procfs).  A missing ``tcp6`` (IPv6 disabled) is not an error.
        ProcParseError: if a line is not in the kernel's format.
    """
    if port is not None:
        _check_int("port", port, 0, 65535)
    table = _read_tcp_tables(proc)
    if port is None:
        return table
    return [c for c in table if port in (c.local[1], c.remote[1])]


def _host_key(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to compare by: an IPv4-mapped IPv6 address counts as its IPv4."""
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _endpoint(
    name: str, address: object
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(f"{name} must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str):
        raise TypeError(f"{name} host must be a str such as '127.0.0.1', not {host!r}")
    try:
        key = _host_key(host)
    except ValueError:
        raise ValueError(f"{name} host must be an IP address, not {host!r}") from None
    return key, _check_int(f"{name} port", port, 0, 65535)


def state_of(local: tuple[Any, ...], remote: tuple[Any, ...], proc: str = "/proc") -> str | None:
    """Return the state of the connection from ``local`` to ``remote``, or ``None``.

    Pass the addresses as ``getsockname()`` and ``getpeername()`` return them; for
    a listener, the remote address is ``('0.0.0.0', 0)`` (or ``('::', 0)``).
    ``'127.0.0.1'`` also matches ``'::ffff:127.0.0.1'`` on an IPv6 socket.

    Args:
        local: The local ``(host, port)``; a 4-tuple from an AF_INET6 socket is
            accepted too.
        remote: The remote ``(host, port)``.
        proc: Where procfs is mounted, as a path.

    Returns:
        A state name such as ``'ESTABLISHED'`` (see :data:`TCP_STATES`), or
        ``None`` if the kernel lists no such socket (never existed, or gone).
        Should several match (listeners sharing a port with SO_REUSEPORT), the
        first is taken.

    Raises:
        TypeError: if an address is not a ``(host, port)`` tuple of str and int.
        ValueError: if a host is not an IP address or a port is out of range.
        FileNotFoundError: if ``PROC/net/tcp`` does not exist.
        ProcParseError: if a line is not in the kernel's format.
    """
    wanted = (_endpoint("local", local), _endpoint("remote", remote))
    # Twice at most: for the same paging reason as above, a line can also be
    # skipped by one read while other sockets come and go, so "not listed" is
    # believed only when a second read agrees.
    for _ in range(2):
        for conn in _read_tcp_tables(proc):
            found = (
                (_host_key(conn.local[0]), conn.local[1]),
                (_host_key(conn.remote[0]), conn.remote[1]),
            )
            if found == wanted:
                return conn.state
    return None


# == One socket: getsockopt(IPPROTO_TCP, TCP_INFO) ====================================

#: Congestion-avoidance states (``tcpi_ca_state``), from ``enum tcp_ca_state`` in
#: ``include/uapi/linux/tcp.h``.
TCP_CA_STATES: tuple[str, ...] = ("Open", "Disorder", "CWR", "Recovery", "Loss")

#: The bits of ``tcpi_options`` (``TCPI_OPT_*``), which say what the handshake
#: negotiated.
TCPI_OPTIONS: dict[int, str] = {
    1: "TIMESTAMPS",
    2: "SACK",
    4: "WSCALE",
    8: "ECN",
    16: "ECN_SEEN",
    32: "SYN_DATA",
    64: "USEC_TS",
    128: "ECN_LOW",
}

# The fields after the first eight bytes, in the order of `struct tcp_info` in
# include/uapi/linux/tcp.h, with their struct codes: I = __u32, Q = __u64,
# H = __u16.  The kernel laid them out so that no padding falls between them, so
# each offset is the sum of the sizes before it (tests/test_kernel.py checks that
# every field is naturally aligned).  Kernels only ever append: an older kernel
# returns a prefix of this struct.
_TCP_INFO_LAYOUT: tuple[tuple[str, str], ...] = (
    ("rto", "I"),
    ("ato", "I"),
    ("snd_mss", "I"),
    ("rcv_mss", "I"),
    ("unacked", "I"),
    ("sacked", "I"),
    ("lost", "I"),
    ("retrans", "I"),
    ("fackets", "I"),
    ("last_data_sent", "I"),
    ("last_ack_sent", "I"),
    ("last_data_recv", "I"),
    ("last_ack_recv", "I"),
    ("pmtu", "I"),
    ("rcv_ssthresh", "I"),
    ("rtt", "I"),
    ("rttvar", "I"),
    ("snd_ssthresh", "I"),
    ("snd_cwnd", "I"),
    ("advmss", "I"),
    ("reordering", "I"),
    ("rcv_rtt", "I"),
    ("rcv_space", "I"),
    ("total_retrans", "I"),  # ends at byte 104: the struct of every 2.6+ kernel
    ("pacing_rate", "Q"),  # Linux 3.15
    ("max_pacing_rate", "Q"),
    ("bytes_acked", "Q"),  # Linux 4.1
    ("bytes_received", "Q"),
    ("segs_out", "I"),  # Linux 4.2
    ("segs_in", "I"),
    ("notsent_bytes", "I"),  # Linux 4.6
    ("min_rtt", "I"),
    ("data_segs_in", "I"),
    ("data_segs_out", "I"),
    ("delivery_rate", "Q"),  # Linux 4.9
    ("busy_time", "Q"),  # Linux 4.10
    ("rwnd_limited", "Q"),
    ("sndbuf_limited", "Q"),
    ("delivered", "I"),  # Linux 4.18
    ("delivered_ce", "I"),
    ("bytes_sent", "Q"),  # Linux 4.19
    ("bytes_retrans", "Q"),
    ("dsack_dups", "I"),
    ("reord_seen", "I"),
    ("rcv_ooopack", "I"),  # Linux 5.4
    ("snd_wnd", "I"),
    ("rcv_wnd", "I"),  # Linux 6.2
    ("rehash", "I"),
    ("total_rto", "H"),  # Linux 6.7
    ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),  # ends at byte 248
    ("received_ce", "I"),  # Accurate ECN, Linux 6.18
    ("delivered_e1_bytes", "I"),
    ("delivered_e0_bytes", "I"),
    ("delivered_ce_bytes", "I"),
    ("received_e1_bytes", "I"),
    ("received_e0_bytes", "I"),
    ("received_ce_bytes", "I"),
    # One __u32 of bit fields: ecn_mode:2, accecn_opt_seen:2, accecn_fail_mode:4,
    # options2:24.  decode_tcp_info() splits it.
    ("_ecn_bits", "I"),
)


def _offsets() -> tuple[tuple[str, int, int], ...]:
    offset = 8  # after the eight one-byte fields
    table = []
    for name, code in _TCP_INFO_LAYOUT:
        size = struct.calcsize("=" + code)
        table.append((name, offset, size))
        offset += size
    return tuple(table)


#: ``(field, offset, size)`` for each field after the first eight bytes of
#: ``struct tcp_info``, as laid out in ``include/uapi/linux/tcp.h``.  The last,
#: ``_ecn_bits``, is a word of Accurate ECN bit fields that
#: :func:`decode_tcp_info` splits into four.
TCP_INFO_FIELDS: tuple[tuple[str, int, int], ...] = _offsets()
_STRUCT_CODES = dict(_TCP_INFO_LAYOUT)

#: Bytes up to and including ``tcpi_total_retrans``, which every kernel since 2.6
#: returns.  :func:`decode_tcp_info` needs at least these.
TCP_INFO_BASE_SIZE = 104

#: How many bytes :func:`tcp_info` asks for.  It is more than any kernel returns
#: today (280 on Linux 6.18), so that a newer kernel's extra fields are not cut off.
TCP_INFO_BUFFER_SIZE = 512


@dataclass(frozen=True)
class TcpInfo:
    """The kernel's ``struct tcp_info`` for one socket, decoded.

    Times are in microseconds (µs) unless said otherwise; windows and thresholds
    counted in segments are in segments of ``snd_mss`` bytes.  Fields that the
    kernel did not return (an older kernel returns a shorter struct) are ``None``.

    Attributes:
        state: The TCP state's name, as in :data:`TCP_STATES`.
        ca_state: The congestion-avoidance state, one of :data:`TCP_CA_STATES`.
        retransmits: Retransmission timeouts in a row without an answer.
        probes: Zero-window or keepalive probes sent without an answer.
        backoff: How many times the retransmission timeout was doubled.
        options: Bits of :data:`TCPI_OPTIONS`: what the handshake negotiated;
            see :attr:`option_names`.
        snd_wscale: The peer's window scale shift (RFC 7323).
        rcv_wscale: Our window scale shift.
        delivery_rate_app_limited: The last delivery-rate sample was limited by the
            application, not the network.
        fastopen_client_fail: Why TCP Fast Open failed on a client (0 if unused).
        rto: The retransmission timeout, µs.
        ato: The delayed-ACK timeout, µs.
        snd_mss: The largest segment we send, bytes.
        rcv_mss: The largest segment seen from the peer (an estimate), bytes.
        unacked: Segments sent and not yet acknowledged.  On a listener: the
            connections waiting in the accept queue.
        sacked: Segments selectively acknowledged.  On a listener: the backlog
            limit, ``min(backlog, net.core.somaxconn)``.
        lost: Segments considered lost.
        retrans: Segments retransmitted and not yet acknowledged.
        fackets: Always 0 on current kernels, which dropped forward
            acknowledgment (FACK).
        last_data_sent: Milliseconds since data was last sent.
        last_ack_sent: Always 0 (the kernel does not record it).
        last_data_recv: Milliseconds since data was last received.
        last_ack_recv: Milliseconds since an ACK was last received.
        pmtu: The path MTU, bytes.
        rcv_ssthresh: The current limit of the window we advertise, which grows
            as data arrives, bytes.
        rtt: The smoothed round-trip time, µs.
        rttvar: The round-trip time's variation, µs.
        snd_ssthresh: The slow-start threshold, segments; 2147483647 (infinite)
            until congestion control first lowers it.
        snd_cwnd: The congestion window, segments.
        advmss: The MSS we advertised, bytes.
        reordering: How much reordering the sender tolerates, segments.
        rcv_rtt: The round-trip time as measured by the receiver, µs.
        rcv_space: The receive-buffer autotuning estimate, bytes.
        total_retrans: Segments retransmitted over the connection's life.
        length: How many bytes the kernel returned (280 on Linux 6.18).
        pacing_rate: The pacing rate, bytes per second.
        max_pacing_rate: Its limit (SO_MAX_PACING_RATE), bytes per second.
        bytes_acked: Bytes sent and acknowledged (RFC 4898).
        bytes_received: Bytes received in order (RFC 4898).
        segs_out: Segments sent, retransmissions included.
        segs_in: Segments received.
        notsent_bytes: Bytes written by the application and not yet sent.
        min_rtt: The smallest round-trip time seen recently, µs.
        data_segs_in: Segments received that carried data.
        data_segs_out: Segments sent that carried data.
        delivery_rate: The latest delivery-rate estimate, bytes per second.
        busy_time: Time spent busy sending data, µs.
        rwnd_limited: Time limited by the peer's receive window, µs.
        sndbuf_limited: Time limited by our send buffer, µs.
        delivered: Segments delivered (acknowledged), retransmissions included.
        delivered_ce: Of those, segments that carried an ECN congestion mark.
        bytes_sent: Bytes sent, retransmissions included.
        bytes_retrans: Bytes retransmitted.
        dsack_dups: Duplicate segments reported by the peer with D-SACK.
        reord_seen: Reordering events seen.
        rcv_ooopack: Segments received out of order.
        snd_wnd: The peer's receive window, scaled, bytes.
        rcv_wnd: Our receive window, scaled, bytes.
        rehash: Attempts to move to another path with a new flow label, after
            timeouts or congestion (PLB).
        total_rto: Retransmission timeouts over the connection's life, SYN and
            SYN-ACK timeouts included.
        total_rto_recoveries: Recoveries from a retransmission timeout.
        total_rto_time: Milliseconds spent in those recoveries.
        received_ce: Segments received with an ECN congestion mark.
        delivered_e1_bytes: Accurate ECN byte counter, delivered ECT(1).
        delivered_e0_bytes: Accurate ECN byte counter, delivered ECT(0).
        delivered_ce_bytes: Accurate ECN byte counter, delivered CE.
        received_e1_bytes: Accurate ECN byte counter, received ECT(1).
        received_e0_bytes: Accurate ECN byte counter, received ECT(0).
        received_ce_bytes: Accurate ECN byte counter, received CE.
        ecn_mode: The ECN variant in use, as the kernel numbers it.
        accecn_opt_seen: Whether an Accurate ECN option was seen.
        accecn_fail_mode: Why Accurate ECN fell back, as bits.
        options2: Further option bits.
    """

    state: str
    ca_state: str
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    delivery_rate_app_limited: bool
    fastopen_client_fail: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    length: int
    pacing_rate: int | None
    max_pacing_rate: int | None
    bytes_acked: int | None
    bytes_received: int | None
    segs_out: int | None
    segs_in: int | None
    notsent_bytes: int | None
    min_rtt: int | None
    data_segs_in: int | None
    data_segs_out: int | None
    delivery_rate: int | None
    busy_time: int | None
    rwnd_limited: int | None
    sndbuf_limited: int | None
    delivered: int | None
    delivered_ce: int | None
    bytes_sent: int | None
    bytes_retrans: int | None
    dsack_dups: int | None
    reord_seen: int | None
    rcv_ooopack: int | None
    snd_wnd: int | None
    rcv_wnd: int | None
    rehash: int | None
    total_rto: int | None
    total_rto_recoveries: int | None
    total_rto_time: int | None
    received_ce: int | None
    delivered_e1_bytes: int | None
    delivered_e0_bytes: int | None
    delivered_ce_bytes: int | None
    received_e1_bytes: int | None
    received_e0_bytes: int | None
    received_ce_bytes: int | None
    ecn_mode: int | None
    accecn_opt_seen: int | None
    accecn_fail_mode: int | None
    options2: int | None

    @property
    def option_names(self) -> tuple[str, ...]:
        """The names of the bits set in :attr:`options`, such as ``('SACK', 'WSCALE')``."""
        return tuple(name for bit, name in TCPI_OPTIONS.items() if self.options & bit)


def _bit_fields(value: int, widths: tuple[int, ...], bits: int, byteorder: ByteOrder) -> list[int]:
    """Split a C bit-field unit into its fields, declared in the order of ``widths``.

    GCC fills a unit from its least significant bit on little-endian machines and
    from its most significant bit on big-endian ones.
    """
    fields = []
    shift = 0 if byteorder == "little" else bits
    for width in widths:
        if byteorder == "big":
            shift -= width
        fields.append((value >> shift) & ((1 << width) - 1))
        if byteorder == "little":
            shift += width
    return fields


def _name_of(table: dict[str, str] | tuple[str, ...], code: int, what: str) -> str:
    try:
        return table[f"{code:02X}"] if isinstance(table, dict) else table[code]
    except (KeyError, IndexError):
        raise ValueError(f"unknown {what} code {code} in struct tcp_info") from None


def decode_tcp_info(
    raw: bytes | bytearray | memoryview, byteorder: ByteOrder = sys.byteorder
) -> TcpInfo:
    """Decode the bytes of ``getsockopt(IPPROTO_TCP, TCP_INFO)`` into a :class:`TcpInfo`.

    The kernel copies as much of its ``struct tcp_info`` as the caller asked for,
    and no more than it has; an older kernel has a shorter struct.  Fields that
    end beyond ``len(raw)`` are ``None``.

    >>> info = decode_tcp_info(bytes([1, 0, 0, 0, 0, 7, 0x77, 0]) + bytes(96))
    >>> info.state, info.option_names, info.snd_wscale, info.pacing_rate
    ('ESTABLISHED', ('TIMESTAMPS', 'SACK', 'WSCALE'), 7, None)

    Args:
        raw: The bytes, at least :data:`TCP_INFO_BASE_SIZE` (104) of them.
        byteorder: The byte order of the machine that produced them; by default
            this machine's.

    Raises:
        TypeError: if ``raw`` is not bytes-like.
        ValueError: if ``raw`` is shorter than 104 bytes, or holds an unknown
            state or congestion state code.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"raw must be bytes, not {type(raw).__name__}")
    raw = bytes(raw)  # unpack_from and slicing below want one contiguous copy
    if len(raw) < TCP_INFO_BASE_SIZE:
        raise ValueError(
            f"struct tcp_info needs at least {TCP_INFO_BASE_SIZE} bytes "
            f"(the fields of every kernel since 2.6), not {len(raw)}"
        )
    state, ca_state, retransmits, probes, backoff, options, wscales, flags = raw[:8]
    snd_wscale, rcv_wscale = _bit_fields(wscales, (4, 4), 8, byteorder)
    app_limited, fastopen_fail = _bit_fields(flags, (1, 2), 8, byteorder)
    values: dict[str, Any] = {
        "state": _name_of(TCP_STATES, state, "state"),
        "ca_state": _name_of(TCP_CA_STATES, ca_state, "congestion state"),
        "retransmits": retransmits,
        "probes": probes,
        "backoff": backoff,
        "options": options,
        "snd_wscale": snd_wscale,
        "rcv_wscale": rcv_wscale,
        "delivery_rate_app_limited": bool(app_limited),
        "fastopen_client_fail": fastopen_fail,
        "length": len(raw),
    }
    prefix = "<" if byteorder == "little" else ">"
    for name, offset, size in TCP_INFO_FIELDS:
        # A field the kernel did not copy (an older, shorter struct) stays None.
        values[name] = None
        if offset + size <= len(raw):
            (values[name],) = struct.unpack_from(prefix + _STRUCT_CODES[name], raw, offset)
    ecn_bits = values.pop("_ecn_bits")
    ecn_names = ("ecn_mode", "accecn_opt_seen", "accecn_fail_mode", "options2")
    ecn_values = (
        [None] * 4 if ecn_bits is None else _bit_fields(ecn_bits, (2, 2, 4, 24), 32, byteorder)
    )
    values.update(zip(ecn_names, ecn_values, strict=True))
    return TcpInfo(**values)


def tcp_info(sock: socket.socket) -> TcpInfo:
    """Ask the kernel for ``sock``'s ``struct tcp_info``: its state, timers, windows.

    Args:
        sock: A TCP socket (AF_INET or AF_INET6, SOCK_STREAM), in any state:
            a new socket reports CLOSE, a listener LISTEN.

    Raises:
        TypeError: if ``sock`` is not a ``socket.socket``.
        ValueError: if ``sock`` is not a TCP socket.
        NotImplementedError: on systems other than Linux, whose ``tcp_info``
            differs or does not exist.
        OSError: if the socket is closed (EBADF).
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {sock!r}")
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(
            f"sock must be a TCP socket (SOCK_STREAM, AF_INET or AF_INET6), not {sock!r}"
        )
    if not sys.platform.startswith("linux"):
        raise NotImplementedError(
            f"tcp_info() decodes Linux's struct tcp_info; this is {sys.platform}"
        )
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BUFFER_SIZE)
    return decode_tcp_info(raw)


# == Settings: the sysctl files under /proc/sys ========================================


@dataclass(frozen=True)
class Sysctl:
    """One kernel setting: its live value beside its meaning and documented default.

    Attributes:
        name: The dotted name ``sysctl`` uses, such as ``'net.ipv4.tcp_syn_retries'``.
        value: The live value: an int, or a tuple for a setting that holds several
            numbers (``ip_local_port_range``); ``None`` if this kernel has no such
            setting.
        meaning: What the setting controls, in one or two sentences.
        default: The default in the kernel's documentation
            (``Documentation/networking/ip-sysctl.rst``, Linux 6.18); ``None`` where
            the documentation gives no single number.
        unit: What the number counts, such as ``'seconds'``.
        note: What to know beside the default, or ``''``.
    """

    name: str
    value: int | tuple[int, ...] | None
    meaning: str
    default: int | tuple[int, ...] | None
    unit: str
    note: str = ""

    @property
    def path(self) -> str:
        """The file below ``/proc/sys``, such as ``'net/ipv4/tcp_syn_retries'``."""
        return self.name.replace(".", "/")

    @property
    def missing(self) -> bool:
        """True if this kernel has no such setting (its file does not exist)."""
        return self.value is None

    @property
    def is_default(self) -> bool | None:
        """Whether the live value equals the documented default.

        ``None`` if the setting is missing or has no single documented default.
        """
        if self.value is None or self.default is None:
            return None
        return self.value == self.default


# The settings this reference uses.  Each default is the one stated in the
# kernel's Documentation/networking/ip-sysctl.rst (Linux 6.18); read the live
# value instead of trusting any default, including these.
_SETTINGS: tuple[Sysctl, ...] = (
    Sysctl(
        name="net.ipv4.tcp_syn_retries",
        value=None,
        meaning=(
            "How many times connect() retransmits an unanswered SYN before it fails "
            "with ETIMEDOUT.  With tcp_syn_linear_timeouts the kernel allows that "
            "many retransmissions more (see syn_retry_schedule())."
        ),
        default=6,
        unit="retransmissions",
        note="Older kernels used 5, the figure many course notes repeat.",
    ),
    Sysctl(
        name="net.ipv4.tcp_synack_retries",
        value=None,
        meaning=(
            "How many times a listener retransmits its SYN-ACK to a client that "
            "does not complete the handshake, before it forgets the connection "
            "request."
        ),
        default=5,
        unit="retransmissions",
        note=(
            "With the initial timeout of 1 s, the last retransmission comes after "
            "31 s and the request is dropped after 63 s."
        ),
    ),
    Sysctl(
        name="net.ipv4.tcp_syn_linear_timeouts",
        value=None,
        meaning=(
            "How many SYN retransmissions of connect() keep the initial timeout of "
            "1 s before it starts to double; they come on top of tcp_syn_retries."
        ),
        default=4,
        unit="retransmissions",
        note="Linux 6.5 and later; older kernels back off exponentially from the start.",
    ),
    Sysctl(
        name="net.ipv4.tcp_orphan_retries",
        value=None,
        meaning=(
            "How many times the kernel retransmits on a connection the application "
            "has already closed (an orphan) before it gives up."
        ),
        default=8,
        unit="retransmissions",
        note=(
            "The file holds 0 unless changed, and the kernel reads 0 as 8 while the "
            "retransmission timeout is below its maximum."
        ),
    ),
    Sysctl(
        name="net.ipv4.tcp_fin_timeout",
        value=None,
        meaning=(
            "How long a connection closed by its application may wait in FIN_WAIT2 "
            "for the peer's FIN before the kernel drops it."
        ),
        default=60,
        unit="seconds",
        note="It does not set the length of TIME_WAIT.",
    ),
    Sysctl(
        name="net.core.somaxconn",
        value=None,
        meaning=(
            "The largest backlog listen() grants: a larger backlog argument is "
            "silently reduced to it."
        ),
        default=4096,
        unit="connections",
        note="128 before Linux 5.4.",
    ),
    Sysctl(
        name="net.ipv4.tcp_max_syn_backlog",
        value=None,
        meaning=(
            "Without SYN cookies (tcp_syncookies 0), the size past three quarters "
            "of which a listener drops SYNs from peers it has not seen before.  The "
            "listen() backlog, not this, bounds a listener's connection requests."
        ),
        default=None,
        unit="connection requests",
        note="No fixed default: at least 128, more on machines with more memory.",
    ),
    Sysctl(
        name="net.ipv4.ip_local_port_range",
        value=None,
        meaning=(
            "The first and last port the kernel picks from when a socket needs a "
            "local port it did not choose: connect() without bind(), or bind() to "
            "port 0."
        ),
        default=(32768, 60999),
        unit="port numbers (first, last)",
    ),
    Sysctl(
        name="net.ipv4.tcp_keepalive_time",
        value=None,
        meaning=(
            "How long a connection with SO_KEEPALIVE may stay idle before the "
            "kernel sends the first keepalive probe."
        ),
        default=7200,
        unit="seconds",
        note="Two hours.",
    ),
    Sysctl(
        name="net.ipv4.tcp_keepalive_intvl",
        value=None,
        meaning="How long the kernel waits between keepalive probes that get no answer.",
        default=75,
        unit="seconds",
    ),
    Sysctl(
        name="net.ipv4.tcp_keepalive_probes",
        value=None,
        meaning=(
            "How many unanswered keepalive probes make the kernel declare the "
            "connection dead (ETIMEDOUT)."
        ),
        default=9,
        unit="probes",
    ),
    Sysctl(
        name="net.ipv4.tcp_tw_reuse",
        value=None,
        meaning=(
            "Whether connect() may take over the port of a connection in TIME_WAIT "
            "when TCP timestamps make that safe: 0 never, 1 always, 2 for loopback "
            "traffic only."
        ),
        default=2,
        unit="mode",
    ),
)


def parse_sysctl_value(text: str, path: str = "") -> int | tuple[int, ...]:
    r"""Parse the contents of a numeric sysctl file.

    >>> parse_sysctl_value("6\n")
    6
    >>> parse_sysctl_value("32768\t60999\n")
    (32768, 60999)

    Args:
        text: The file's contents: whitespace-separated integers.
        path: The file's name, used in error messages only.

    Returns:
        An int for one number, a tuple for several.

    Raises:
        ProcParseError: (a ``ValueError``) if the text is not integers.
    """
    words = text.split()
    try:
        if not words:
            raise ValueError("empty")
        numbers = tuple(int(word) for word in words)
    except ValueError:
        raise ProcParseError(path, 1, text.rstrip("\n"), "expected integers") from None
    return numbers[0] if len(numbers) == 1 else numbers


def sysctls(proc: str = "/proc") -> dict[str, Sysctl]:
    """Read the TCP settings this reference uses, with meanings and documented defaults.

    Args:
        proc: Where procfs is mounted, as a path; tests pass a folder of canned
            files.

    Returns:
        One :class:`Sysctl` per setting, keyed by the last part of its name
        (``'tcp_syn_retries'``, ``'somaxconn'``).  A setting this kernel lacks
        (``tcp_syn_linear_timeouts`` before Linux 6.5) is reported with
        ``value=None`` and ``missing`` true, not as an error.

    Raises:
        FileNotFoundError: if ``PROC/sys/net`` does not exist (not Linux, or no
            procfs).
        ProcParseError: if a setting's file does not hold integers.
    """
    root = Path(proc) / "sys"
    if not (root / "net").is_dir():
        raise FileNotFoundError(
            errno.ENOENT, "No network settings here (they need Linux's procfs)", str(root / "net")
        )
    found = {}
    for setting in _SETTINGS:
        path = root / setting.path
        try:
            text = path.read_text()
        except FileNotFoundError:
            value = None
        else:
            value = parse_sysctl_value(text, str(path))
        found[setting.name.rpartition(".")[2]] = Sysctl(
            setting.name, value, setting.meaning, setting.default, setting.unit, setting.note
        )
    return found


# == A computation: when connect() retransmits its SYN ================================

#: The SYN's initial retransmission timeout, ``TCP_TIMEOUT_INIT`` (RFC 6298).
INITIAL_RTO = 1.0
#: The largest retransmission timeout, ``TCP_RTO_MAX``.
MAX_RTO = 120.0


@dataclass(frozen=True)
class SynSchedule:
    """When an unanswered ``connect()`` sends its SYNs, and when it gives up.

    Attributes:
        syn_retries: The ``tcp_syn_retries`` (or ``TCP_SYNCNT``) it was computed for.
        linear_timeouts: The ``tcp_syn_linear_timeouts`` it was computed for.
        retransmissions: The seconds after the first SYN at which each
            retransmitted SYN leaves.
        gives_up_at: The seconds after the first SYN at which ``connect()`` fails
            with ETIMEDOUT.
    """

    syn_retries: int
    linear_timeouts: int
    retransmissions: tuple[float, ...]
    gives_up_at: float

    @property
    def waits(self) -> tuple[float, ...]:
        """The timeout before each retransmission, and before giving up."""
        times = (0.0, *self.retransmissions, self.gives_up_at)
        return tuple(later - earlier for earlier, later in itertools.pairwise(times))


def model_timeout(retries: int, rto_base: float, max_rto: float = 120.0) -> float:
    """The time budget Linux gives ``retries`` retransmissions, in seconds.

    This is ``tcp_model_timeout()`` in ``net/ipv4/tcp_timer.c``: the time that
    ``retries`` retransmissions would take if the timeout doubled each time from
    ``rto_base``, with the doubling capped at ``max_rto``.  The kernel gives up on
    a segment once this long has passed since its first retransmission
    (``retransmits_timed_out()``), however many retransmissions that was: for a
    handshake ``rto_base`` is the initial timeout (1 s), for data and FINs it is
    ``TCP_RTO_MIN`` (200 ms), whatever the connection's own timeout.

    >>> round(model_timeout(2, 0.2), 6), round(model_timeout(15, 0.2), 6)
    (1.4, 924.6)

    Raises:
        ValueError: if ``retries`` is negative or ``rto_base`` not positive.
    """
    if retries < 0 or not rto_base > 0:
        raise ValueError(f"need retries >= 0 and rto_base > 0, not {retries!r}, {rto_base!r}")
    doublings = int(max_rto // rto_base).bit_length() - 1  # ilog2(max / base)
    if retries <= doublings:
        return ((2 << retries) - 1) * rto_base
    return ((2 << doublings) - 1) * rto_base + (retries - doublings) * max_rto


def _give_up_time(syn_retries: int, initial_rto: float, max_rto: float) -> float:
    """How long the kernel lets a handshake try, whatever its retransmission count."""
    return model_timeout(syn_retries, initial_rto, max_rto)


def syn_retry_schedule(
    syn_retries: int,
    linear_timeouts: int = 0,
    *,
    initial_rto: float = INITIAL_RTO,
    max_rto: float = MAX_RTO,
) -> SynSchedule:
    """Compute when ``connect()`` retransmits an unanswered SYN, and when it gives up.

    This is arithmetic, not a measurement.  It follows the rules of Linux 6.18's
    ``net/ipv4/tcp_timer.c``:

    * The retransmission timeout starts at ``initial_rto``.  The first SYN and the
      first ``linear_timeouts`` retransmissions each wait that long; after that
      the timeout doubles with each retransmission, up to ``max_rto``.
    * The kernel allows ``syn_retries + linear_timeouts`` retransmissions, and
      also stops once the time that ``syn_retries`` doubling retransmissions
      would take has passed.  It checks both when a timeout expires.

    With the documented defaults (6 and 4) this gives the figures of the kernel's
    ``ip-sysctl.rst``: a last retransmission after 67 s, and failure after 131 s.

    >>> schedule = syn_retry_schedule(6, 4)
    >>> schedule.retransmissions[-1], schedule.gives_up_at
    (67.0, 131.0)

    Args:
        syn_retries: ``tcp_syn_retries``, or the socket's ``TCP_SYNCNT``; 1-127.
        linear_timeouts: ``tcp_syn_linear_timeouts``; 0 for kernels before 6.5.
        initial_rto: The first timeout, seconds (``TCP_TIMEOUT_INIT``, 1 s).
        max_rto: The largest timeout, seconds (``TCP_RTO_MAX``, 120 s).

    Raises:
        TypeError: if a count is not an int.
        ValueError: if a count is out of range, or a timeout is not positive.
    """
    _check_int("syn_retries", syn_retries, 1, 127)
    _check_int("linear_timeouts", linear_timeouts, 0, 127)
    if not 0 < initial_rto <= max_rto:
        raise ValueError(
            f"need 0 < initial_rto <= max_rto, not initial_rto={initial_rto!r}, max_rto={max_rto!r}"
        )
    most_retransmissions = syn_retries + linear_timeouts
    time_limit = _give_up_time(syn_retries, initial_rto, max_rto)
    sent: list[float] = []
    now, rto = 0.0, initial_rto
    # Each pass is one expiry of the retransmission timer.  The loop ends: every
    # pass either returns or sends, and at most `most_retransmissions` are sent.
    while True:
        now += rto
        if len(sent) >= most_retransmissions or (sent and now >= time_limit):
            return SynSchedule(syn_retries, linear_timeouts, tuple(sent), now)
        sent.append(now)
        if len(sent) > linear_timeouts:
            rto = min(rto * 2, max_rto)
