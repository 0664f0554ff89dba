"""Watch TCP segments on the loopback interface, as ``tcpdump -i lo`` would (Linux only).

The examples on this site use it to show what the kernel puts on the wire, such as
the initial sequence number of each SYN.  It has two layers:

* a pure core: :func:`parse_ipv4_tcp` reads just enough of an IPv4 packet and its
  TCP header (addresses, ports, sequence and acknowledgment numbers, flags), and
  :func:`tcp_port_filter` builds the kernel filter program for one port;
* a thin IO layer: :func:`packet_capture` opens an ``AF_PACKET`` socket on an
  interface, and :func:`collect_syns` reads SYN segments from it, bounded in count
  and in time.

Opening an ``AF_PACKET`` socket needs the CAP_NET_RAW capability (root has it);
without it :func:`packet_capture` raises :class:`tcpref.errors.PermissionCallError`,
a ``PermissionError`` whose message names the capability.

Other programs may be using loopback at the same time, so a capture should always
say which port it is about: the kernel then queues only that port's segments.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tcpref.errors import PermissionCallError, SocketCallError, checked, translate
from tcpref.segment import Flags

__all__ = [
    "CapturedSegment",
    "TcpFlag",
    "collect_syns",
    "flag_names",
    "packet_capture",
    "parse_ipv4_tcp",
    "tcp_port_filter",
]

_ETH_P_IP = 0x0800  # the EtherType of IPv4: the packet socket receives only IPv4
_IPPROTO_TCP = 6
_IPV4_MIN_HEADER = 20
_TCP_MIN_HEADER = 20
# Linux's socket option number for attaching a classic BPF filter (asm-generic).
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)

_PERMISSION_HINT = (
    "Capturing packets needs the CAP_NET_RAW capability: run as root, or grant it "
    "to the interpreter (setcap cap_net_raw+ep)."
)


#: The flag bits of the TCP header's 13th byte: the codec's own enum, under the name
#: this module has always used.
TcpFlag = Flags

# The flags a captured segment of a handshake or teardown carries, in the order
# people name them ("SYN+ACK", "FIN+ACK").
_FLAG_ORDER = (Flags.SYN, Flags.FIN, Flags.RST, Flags.PSH, Flags.ACK)


def flag_names(flags: Flags) -> str:
    """Name a segment's usual flags, joined by ``+``.

    >>> flag_names(Flags.SYN | Flags.ACK)
    'SYN+ACK'
    """
    return "+".join(str(flag.name) for flag in _FLAG_ORDER if flag in flags)


@dataclass(frozen=True)
class CapturedSegment:
    """The parts of one captured IPv4 TCP segment that the examples look at.

    Attributes:
        src: The sender's ``(ip, port)``.
        dst: The receiver's ``(ip, port)``.
        seq: The sequence number; in a SYN, the sender's initial sequence number.
        ack: The acknowledgment number (meaningful only if ``ACK`` is set).
        flags: The flag bits, such as ``TcpFlag.SYN``.
    """

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: TcpFlag

    @property
    def is_syn(self) -> bool:
        """Whether this is the first segment of a handshake (SYN set, ACK clear)."""
        return TcpFlag.SYN in self.flags and TcpFlag.ACK not in self.flags


# -- the pure core ----------------------------------------------------------------------


def parse_ipv4_tcp(packet: bytes) -> CapturedSegment | None:
    """Read the addresses, ports, numbers and flags of an IPv4 packet carrying TCP.

    Returns ``None`` for an IPv4 packet that holds no TCP header: another protocol,
    or a fragment other than the first.

    Raises:
        TypeError: if ``packet`` is not bytes-like.
        ValueError: if ``packet`` is not IPv4, or is too short for the headers it
            announces.
    """
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise TypeError(f"packet must be bytes, not {type(packet).__name__}")
    data = bytes(packet)
    if len(data) < _IPV4_MIN_HEADER:
        raise ValueError(f"packet too short for an IPv4 header: {len(data)} bytes")
    version, ip_header_length = data[0] >> 4, (data[0] & 0x0F) * 4
    if version != 4:
        raise ValueError(f"not an IPv4 packet: version {version}")
    if ip_header_length < _IPV4_MIN_HEADER:
        raise ValueError(f"IPv4 header length must be >= 20 bytes, not {ip_header_length}")
    fragment_offset = int.from_bytes(data[6:8], "big") & 0x1FFF
    if data[9] != _IPPROTO_TCP or fragment_offset != 0:
        return None  # only the first fragment of a TCP packet starts with a TCP header
    tcp = data[ip_header_length:]
    if len(tcp) < _TCP_MIN_HEADER:
        raise ValueError(
            f"packet too short for a TCP header: {len(tcp)} bytes after the "
            f"{ip_header_length}-byte IPv4 header"
        )
    src_port, dst_port, seq, ack = struct.unpack("!HHII", tcp[:12])
    src_ip = socket.inet_ntop(socket.AF_INET, data[12:16])
    dst_ip = socket.inet_ntop(socket.AF_INET, data[16:20])
    return CapturedSegment(
        src=(src_ip, src_port), dst=(dst_ip, dst_port), seq=seq, ack=ack, flags=TcpFlag(tcp[13])
    )


# Classic BPF, the language of tcpdump's filters (see Documentation/networking/filter.rst
# in the kernel).  Each instruction is (code, jump-if-true, jump-if-false, k).
_BPF_LDB_ABS = 0x30  # A = byte at [k]
_BPF_LDH_ABS = 0x28  # A = 16-bit word at [k]
_BPF_LDH_IND = 0x48  # A = 16-bit word at [X + k]
_BPF_LDX_MSH = 0xB1  # X = 4 * (byte at [k] & 0x0f): the IPv4 header's length
_BPF_JEQ = 0x15  # jump if A == k
_BPF_JSET = 0x45  # jump if A & k
_BPF_RET = 0x06  # keep k bytes of the packet (0: drop it)
# Headers are all we read: an IPv4 header (at most 60 bytes) and a TCP header (at most
# 60), like tcpdump's snap length.  The kernel queues no more than this of a packet.
_SNAP_BYTES = 256


def tcp_port_filter(port: int) -> bytes:
    """Build a kernel filter that keeps IPv4 TCP segments from or to ``port``.

    It is tcpdump's ``ip and tcp and port PORT`` (without fragments), written for a
    socket that receives packets from the IPv4 header on, as :func:`packet_capture`'s
    does.  The result is the packed instruction array of a ``struct sock_filter``.

    Raises:
        TypeError: if ``port`` is not an int.
        ValueError: if ``port`` is outside 1-65535.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in range 1-65535, not {port!r}")
    accept, drop = 9, 10  # the indexes of the two return instructions

    def to(target: int, at: int) -> int:
        return target - at - 1  # jumps count the instructions they skip

    program = [
        (_BPF_LDB_ABS, 0, 0, 9),  # 0: A = the IPv4 protocol number
        (_BPF_JEQ, 0, to(drop, 1), _IPPROTO_TCP),  # 1: not TCP: drop
        (_BPF_LDH_ABS, 0, 0, 6),  # 2: A = IPv4 flags and fragment offset
        (_BPF_JSET, to(drop, 3), 0, 0x1FFF),  # 3: a later fragment holds no TCP header
        (_BPF_LDX_MSH, 0, 0, 0),  # 4: X = the IPv4 header's length
        (_BPF_LDH_IND, 0, 0, 2),  # 5: A = the TCP destination port
        (_BPF_JEQ, to(accept, 6), 0, port),  # 6: to our port: accept
        (_BPF_LDH_IND, 0, 0, 0),  # 7: A = the TCP source port
        (_BPF_JEQ, 0, to(drop, 8), port),  # 8: from our port: accept, else drop
        (_BPF_RET, 0, 0, _SNAP_BYTES),  # 9: accept
        (_BPF_RET, 0, 0, 0),  # 10: drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


# -- the IO layer -----------------------------------------------------------------------


def _open_packet_socket(interface: str) -> socket.socket:
    if not hasattr(socket, "AF_PACKET"):
        code = errno.EAFNOSUPPORT
        raise SocketCallError(
            code,
            os.strerror(code),
            call="capture",
            address=interface,
            hint="Packet capture uses Linux's AF_PACKET sockets, which this system lacks.",
        )
    try:
        # Protocol 0: the socket receives nothing until bind() names a protocol, so no
        # packet from another interface slips in before the bind.
        return socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except PermissionError as exc:
        code = exc.errno if exc.errno is not None else errno.EPERM
        raise PermissionCallError(
            code,
            exc.strerror or os.strerror(code),
            call="capture",
            address=interface,
            hint=_PERMISSION_HINT,
        ) from exc
    except OSError as exc:
        raise translate(exc, call="capture", address=interface) from exc


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program: the kernel then queues only what it accepts."""
    instructions = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HP", len(program) // 8, ctypes.addressof(instructions))
    with checked("setsockopt(SO_ATTACH_FILTER)"):
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not float(value) > 0 or value == float("inf"):
        raise ValueError(f"{name} must be > 0 seconds and finite, not {value!r}")
    return float(value)


@contextmanager
def packet_capture(
    interface: str = "lo", *, port: int | None = None, timeout: float = 5.0
) -> Iterator[socket.socket]:
    """Open a packet socket that receives the IPv4 packets arriving on ``interface``.

    The socket is ``socket(AF_PACKET, SOCK_DGRAM)`` bound to ``interface`` for IPv4,
    so each ``recv`` returns one IPv4 packet, from its header on.  On loopback every
    packet a program sends also arrives, so the capture sees both directions.
    Open the capture *before* the traffic you want to see; packets wait in the
    socket's receive buffer until you read them.

    Args:
        interface: The interface to listen on; ``"lo"``, loopback, by default.
        port: If given, the kernel keeps only TCP segments from or to this port
            (see :func:`tcp_port_filter`), so that other traffic on the interface can
            neither fill the buffer nor be mistaken for yours.
        timeout: Seconds a ``recv`` on the socket waits before raising ``TimeoutError``.

    Raises:
        TypeError: if ``interface`` is not a str, or ``port`` or ``timeout`` not a number.
        ValueError: if ``interface`` is empty, ``port`` outside 1-65535, or ``timeout``
            not positive and finite.
        PermissionCallError: without the CAP_NET_RAW capability.
        SocketCallError: if the system has no packet sockets (not Linux), or
            ``interface`` does not exist.
    """
    if not isinstance(interface, str):
        raise TypeError(f"interface must be a str such as 'lo', not {interface!r}")
    if not interface:
        raise ValueError("interface must be a name such as 'lo', not ''")
    program = tcp_port_filter(port) if port is not None else None
    seconds = _check_seconds("timeout", timeout)
    sock = _open_packet_socket(interface)
    try:
        if program is not None:
            _attach_filter(sock, program)  # before bind: no packet arrives unfiltered
        with checked("bind", interface):
            sock.bind((interface, _ETH_P_IP))
        sock.settimeout(seconds)
        yield sock
    finally:
        sock.close()


def collect_syns(
    capture: socket.socket, port: int, *, count: int, timeout: float
) -> list[CapturedSegment]:
    """Read from ``capture`` the SYN segments sent to ``port``, in the order they arrived.

    A SYN here is the first segment of a handshake (SYN set, ACK clear); its ``seq``
    is the initial sequence number its sender chose.  Reading stops after ``count``
    SYNs or ``timeout`` seconds, whichever comes first, so the list may be shorter
    than ``count``.  Packets that are not such SYNs are read and dropped.

    Args:
        capture: A socket from :func:`packet_capture`.
        port: The destination port, such as a listening socket's.
        count: How many SYNs to wait for at most.
        timeout: How many seconds to wait at most, in total.

    Raises:
        TypeError: if ``capture`` is not a socket, or an argument is not a number.
        ValueError: if ``port`` is outside 1-65535, ``count`` is below 1, or
            ``timeout`` is not positive and finite.
        SocketCallError: if reading from ``capture`` fails.
    """
    if not isinstance(capture, socket.socket):
        raise TypeError(f"capture must be a socket from packet_capture(), not {capture!r}")
    tcp_port_filter(port)  # the same checks on port
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, not {count!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    deadline = time.monotonic() + _check_seconds("timeout", timeout)
    found: list[CapturedSegment] = []
    previous_timeout = capture.gettimeout()
    try:
        # Ends: each pass either reads a packet or waits until the deadline.
        while len(found) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            capture.settimeout(remaining)
            try:
                with checked("recvfrom"):
                    packet, address = capture.recvfrom(_SNAP_BYTES)
            except TimeoutError:
                break
            if address[2] == socket.PACKET_OUTGOING:
                continue  # on other interfaces, our own copy of a packet we sent
            try:
                segment = parse_ipv4_tcp(packet)
            except ValueError:
                continue  # somebody else's malformed packet is not ours to judge
            if segment is not None and segment.is_syn and segment.dst[1] == port:
                found.append(segment)
    finally:
        capture.settimeout(previous_timeout)
    return found
