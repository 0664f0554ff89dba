"""Watch TCP segments on the loopback interface, as ``tcpdump -i lo`` would (Linux only).

The examples on this site use it to show what the kernel puts on the wire: the
initial sequence number of each SYN, or every segment of a connection, printed in
the same format as the simulator's traces (:mod:`tcpref.trace`).  It has two layers:

* a pure core: :func:`parse_ipv4_tcp` reads just enough of an IPv4 packet and its
  TCP header (addresses, ports, sequence and acknowledgment numbers, flags),
  :func:`decode_ipv4_segment` decodes the whole TCP segment with
  :mod:`tcpref.segment`, :func:`tcp_port_filter` builds the kernel filter program
  for one port, :func:`initial_sequence_numbers` finds the two ISNs of a trace, and
  :func:`pcap_bytes` lays captured packets out as a libpcap file, which Wireshark
  and ``tcpdump -r`` open;
* a thin IO layer: :func:`packet_capture` opens an ``AF_PACKET`` socket on an
  interface; :func:`collect_syns` reads SYN segments from it, and
  :func:`collect_segments` one connection's segments, both bounded in count and in
  time; :func:`trace_port` follows a port as the segments arrive (the command line's
  ``python -m tcpref trace``); :func:`capture_exchange`, the helper for
  examples, captures the segments of a scripted exchange; and :func:`write_pcap`
  and :class:`PcapWriter` write captured packets to a libpcap file.

Opening an ``AF_PACKET`` socket needs the CAP_NET_RAW capability (root has it);
without it :func:`packet_capture` raises :class:`tcpref.errors.PermissionCallError`,
a ``PermissionError`` whose message names the capability.  Only IPv4 is captured.

Other programs may be using loopback at the same time, so a capture should always
say which port it is about: the kernel then queues only that port's segments.
"""

from __future__ import annotations

import ctypes
import errno
import io
import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from tcpref.errors import PermissionCallError, SocketCallError, checked, translate
from tcpref.segment import Flags, Segment
from tcpref.trace import Side, TraceEntry, format_entry, format_trace

__all__ = [
    "FULL_SNAP_LENGTH",
    "HEADER_SNAP_LENGTH",
    "LINKTYPE_RAW",
    "PCAP_MAGIC_MICROSECONDS",
    "PCAP_MAGIC_NANOSECONDS",
    "AddressedSegment",
    "CapturedExchange",
    "CapturedPacket",
    "CapturedSegment",
    "PcapWriter",
    "TcpFlag",
    "WritableBinaryFile",
    "capture_exchange",
    "collect_segments",
    "collect_syns",
    "decode_ipv4_segment",
    "flag_names",
    "initial_sequence_numbers",
    "packet_capture",
    "parse_ipv4_tcp",
    "pcap_bytes",
    "pcap_header",
    "pcap_record",
    "receive_segment",
    "tcp_port_filter",
    "trace_port",
    "write_pcap",
]

_ETH_P_IP = 0x0800  # the EtherType of IPv4: the packet socket receives only IPv4
_IPPROTO_TCP = 6
_IPV4_MIN_HEADER = 20
_TCP_MIN_HEADER = 20
# Linux's socket option number for attaching a classic BPF filter (asm-generic).
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def _permission_hint() -> str:
    """What to do without CAP_NET_RAW, naming this interpreter by its real path.

    A virtual environment's ``python`` is a link, and ``setcap`` acts on the file a
    link points to (or refuses it), so the hint names that file.  A capability on the
    interpreter holds for every script it runs, which the hint says as well.
    """
    interpreter = os.path.realpath(sys.executable)
    return (
        "Capturing packets needs the CAP_NET_RAW capability: run as root; or run it inside "
        "a private network namespace: see tcpref.netns; or grant it to the interpreter with "
        f"'setcap cap_net_raw+ep {interpreter}', and then every script that interpreter "
        "runs has it."
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

#: The snap length (tcpdump's ``-s``) that keeps the headers and nothing more: an IPv4
#: header is at most 60 bytes and a TCP header at most 60.  The kernel queues no more
#: than the snap length of each packet.
HEADER_SNAP_LENGTH = 256
#: The snap length that keeps whole packets, payload included (tcpdump's default).
FULL_SNAP_LENGTH = 262144
_SNAP_BYTES = HEADER_SNAP_LENGTH
_MIN_SNAP_LENGTH = 120  # both headers at their longest


def _check_snap_length(snap_length: object) -> int:
    if isinstance(snap_length, bool) or not isinstance(snap_length, int):
        raise TypeError(f"snap_length must be an int, not {snap_length!r}")
    if not _MIN_SNAP_LENGTH <= snap_length <= FULL_SNAP_LENGTH:
        raise ValueError(
            f"snap_length must be in range {_MIN_SNAP_LENGTH}-{FULL_SNAP_LENGTH} "
            f"(both headers need up to 120 bytes), not {snap_length!r}"
        )
    return snap_length


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in range 1-65535, not {port!r}")
    return port


def tcp_port_filter(port: int, *, snap_length: int = HEADER_SNAP_LENGTH) -> bytes:
    """Build a kernel filter that keeps IPv4 TCP segments from or to ``port``.

    It is tcpdump's ``ip and tcp and port PORT`` (without fragments), written for a
    socket that receives packets from the IPv4 header on, as :func:`packet_capture`'s
    does.  The result is the packed instruction array of a ``struct sock_filter``.

    Args:
        port: The port whose segments to keep.
        snap_length: How many bytes of each packet the kernel keeps: the headers
            only (:data:`HEADER_SNAP_LENGTH`, the default), or whole packets
            (:data:`FULL_SNAP_LENGTH`).

    Raises:
        TypeError: if ``port`` or ``snap_length`` is not an int.
        ValueError: if ``port`` is outside 1-65535, or ``snap_length`` outside
            120-262144.
    """
    _check_port(port)
    snap = _check_snap_length(snap_length)
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
        (_BPF_RET, 0, 0, snap),  # 9: accept
        (_BPF_RET, 0, 0, 0),  # 10: drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def _tcp_filter(snap_length: int) -> bytes:
    """The filter ``ip and tcp`` (without later fragments): every TCP segment, any port."""
    program = [
        (_BPF_LDB_ABS, 0, 0, 9),  # 0: A = the IPv4 protocol number
        (_BPF_JEQ, 0, 3, _IPPROTO_TCP),  # 1: not TCP: drop (skip 3 to instruction 5)
        (_BPF_LDH_ABS, 0, 0, 6),  # 2: A = IPv4 flags and fragment offset
        (_BPF_JSET, 1, 0, 0x1FFF),  # 3: a later fragment: drop
        (_BPF_RET, 0, 0, snap_length),  # 4: accept
        (_BPF_RET, 0, 0, 0),  # 5: drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


@dataclass(frozen=True)
class AddressedSegment:
    """A TCP segment decoded from an IPv4 packet, and the addresses it went between.

    Attributes:
        src: The sender's ``(ip, port)``.
        dst: The receiver's ``(ip, port)``.
        segment: The whole segment, decoded by :meth:`tcpref.segment.Segment.from_bytes`.
        payload_length: How many payload bytes the packet carried.  It is more than
            ``len(segment.payload)`` when the capture kept only the start of the
            packet (see ``snap_length`` in :func:`packet_capture`).
    """

    src: tuple[str, int]
    dst: tuple[str, int]
    segment: Segment
    payload_length: int

    @property
    def truncated(self) -> bool:
        """Whether some of the payload was not captured."""
        return self.payload_length > len(self.segment.payload)


def decode_ipv4_segment(packet: bytes) -> AddressedSegment | None:
    """Decode an IPv4 packet carrying TCP: its addresses, and its whole TCP segment.

    The packet may have been cut short by a capture's snap length, as long as both
    headers are complete; the IPv4 header's total length then still tells how long
    the payload was.  Returns ``None`` for an IPv4 packet that holds no TCP header:
    another protocol, or a fragment other than the first.

    Raises:
        TypeError: if ``packet`` is not bytes-like.
        ValueError: if ``packet`` is not IPv4, is too short for the headers it
            announces, or its TCP header is malformed (a
            :class:`tcpref.segment.SegmentError`, naming the offset in the TCP header).
    """
    found = parse_ipv4_tcp(packet)  # checks the IPv4 header, and finds the ports
    if found is None:
        return None
    data = bytes(packet)
    ip_header_length = (data[0] & 0x0F) * 4
    total_length = int.from_bytes(data[2:4], "big")
    if total_length == 0:
        total_length = len(data)  # a segmentation-offload packet may leave it unset
    if total_length < ip_header_length + _TCP_MIN_HEADER:
        raise ValueError(
            f"IPv4 total length {total_length} is too short for the headers it carries"
        )
    segment = Segment.from_bytes(data[ip_header_length:total_length])
    payload_length = total_length - ip_header_length - segment.header_length
    return AddressedSegment(found.src, found.dst, segment, payload_length)


# -- libpcap files ------------------------------------------------------------------------
# The classic libpcap format, which tcpdump -w writes and Wireshark, tcpdump -r and
# scapy read (https://www.tcpdump.org/manpages/pcap-savefile.5.html): a 24-byte file
# header, then per packet a 16-byte record header and the captured bytes.  Readers
# find the byte order from the magic number, so it is written little-endian here,
# the same on every machine, which makes the bytes of a file predictable.

#: The magic number of a libpcap file whose time stamps count microseconds.
PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
#: The magic number of a libpcap file whose time stamps count nanoseconds.
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
#: The link type of packets that begin with their IP header (tcpdump's LINKTYPE_RAW):
#: what the ``SOCK_DGRAM`` packet socket of :func:`packet_capture` receives.  The
#: version in the first byte says IPv4.  (LINKTYPE_IPV4, 228, says the same more
#: narrowly, but fewer readers know it.)
LINKTYPE_RAW = 101
_PCAP_VERSION = (2, 4)
# magic, version major and minor, zone offset (always 0), accuracy (always 0), snap
# length, link type.
_PCAP_FILE_HEADER = struct.Struct("<IHHiIII")
# seconds, micro- or nanoseconds, bytes in the file, bytes on the wire.
_PCAP_RECORD_HEADER = struct.Struct("<IIII")
_U32_LIMIT = 2**32
_NS_PER_SECOND = 1_000_000_000


def _wire_length(packet: bytes) -> int:
    """How long an IPv4 packet was, from its header's total length, even if cut short.

    A segmentation-offload packet may leave the total length 0, and a packet too
    short to say counts as what was captured.
    """
    if len(packet) >= 4 and packet[0] >> 4 == 4:
        return max(int.from_bytes(packet[2:4], "big"), len(packet))
    return len(packet)


@dataclass(frozen=True)
class CapturedPacket:
    """One packet as a capture received it: what a libpcap file records.

    Attributes:
        time_ns: When the kernel stamped the packet on its arrival, in nanoseconds
            since the Unix epoch (``SO_TIMESTAMPNS``, the wall clock).
        data: The bytes captured, from the IPv4 header on.
        wire_length: How many bytes the packet had; more than ``len(data)`` when
            the capture's snap length cut it short.

    Raises:
        TypeError: if ``time_ns`` or ``wire_length`` is not an int, or ``data``
            not bytes.
        ValueError: if ``time_ns`` is negative or beyond 2106 (a libpcap file
            counts seconds in 32 bits), or ``wire_length`` is shorter than
            ``data`` or does not fit in 32 bits.
    """

    time_ns: int
    data: bytes
    wire_length: int

    def __post_init__(self) -> None:
        if isinstance(self.time_ns, bool) or not isinstance(self.time_ns, int):
            raise TypeError(f"time_ns must be an int of nanoseconds, not {self.time_ns!r}")
        if not 0 <= self.time_ns < _U32_LIMIT * _NS_PER_SECOND:
            raise ValueError(
                "time_ns must be >= 0 and before 2106 (nanoseconds since 1970, in a "
                f"32-bit count of seconds), not {self.time_ns!r}"
            )
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")
        if isinstance(self.wire_length, bool) or not isinstance(self.wire_length, int):
            raise TypeError(f"wire_length must be an int, not {self.wire_length!r}")
        if not len(self.data) <= self.wire_length < _U32_LIMIT:
            raise ValueError(
                f"wire_length must be at least the {len(self.data)} bytes of data and "
                f"fit in 32 bits, not {self.wire_length!r}"
            )

    @classmethod
    def from_ipv4(cls, time_ns: int, packet: bytes) -> CapturedPacket:
        """The record of an IPv4 packet, whose header tells its length on the wire.

        >>> CapturedPacket.from_ipv4(0, bytes([0x45, 0, 0, 40]) + bytes(16)).wire_length
        40

        Raises:
            TypeError: if ``time_ns`` is not an int, or ``packet`` not bytes.
            ValueError: if ``time_ns`` is negative or beyond 2106.
        """
        if not isinstance(packet, bytes):
            raise TypeError(f"packet must be bytes, not {type(packet).__name__}")
        return cls(time_ns, packet, _wire_length(packet))


def _check_nanoseconds(nanoseconds: object) -> bool:
    if not isinstance(nanoseconds, bool):
        raise TypeError(f"nanoseconds must be True or False, not {nanoseconds!r}")
    return nanoseconds


def pcap_header(*, snap_length: int = FULL_SNAP_LENGTH, nanoseconds: bool = True) -> bytes:
    """The 24-byte header that opens a libpcap file of IPv4 packets.

    >>> pcap_header().hex(" ")
    '4d 3c b2 a1 02 00 04 00 00 00 00 00 00 00 00 00 00 00 04 00 65 00 00 00'

    Args:
        snap_length: The most bytes of a packet that the file holds: the capture's
            snap length.
        nanoseconds: Whether the records' time stamps count nanoseconds (magic
            :data:`PCAP_MAGIC_NANOSECONDS`), as the kernel's do, or microseconds
            (:data:`PCAP_MAGIC_MICROSECONDS`), which the oldest readers expect.

    Raises:
        TypeError: if ``snap_length`` is not an int or ``nanoseconds`` not a bool.
        ValueError: if ``snap_length`` is outside 120-262144.
    """
    snap = _check_snap_length(snap_length)
    magic = PCAP_MAGIC_NANOSECONDS if _check_nanoseconds(nanoseconds) else PCAP_MAGIC_MICROSECONDS
    return _PCAP_FILE_HEADER.pack(magic, *_PCAP_VERSION, 0, 0, snap, LINKTYPE_RAW)


def pcap_record(
    packet: CapturedPacket, *, snap_length: int = FULL_SNAP_LENGTH, nanoseconds: bool = True
) -> bytes:
    """One packet's record in a libpcap file: its 16-byte header, then its bytes.

    The time stamp is the kernel's, split into seconds and the nano- (or micro-)
    seconds within that second; microseconds are rounded down, so a packet never
    appears to arrive after the next one.

    Args:
        packet: The packet.
        snap_length: The file's snap length, which the packet must fit in.
        nanoseconds: Whether the file counts nanoseconds (see :func:`pcap_header`).

    Raises:
        TypeError: if ``packet`` is not a :class:`CapturedPacket`, ``snap_length``
            not an int, or ``nanoseconds`` not a bool.
        ValueError: if the packet holds more bytes than ``snap_length`` (no reader
            would accept the file), or ``snap_length`` is outside 120-262144.
    """
    if not isinstance(packet, CapturedPacket):
        raise TypeError(f"packet must be a CapturedPacket, not {packet!r}")
    snap = _check_snap_length(snap_length)
    if len(packet.data) > snap:
        raise ValueError(
            f"a packet of {len(packet.data)} captured bytes does not fit the snap length "
            f"{snap}: write it with a snap_length of at least {len(packet.data)}"
        )
    seconds, fraction = divmod(packet.time_ns, _NS_PER_SECOND)
    if not _check_nanoseconds(nanoseconds):
        fraction //= 1000
    header = _PCAP_RECORD_HEADER.pack(seconds, fraction, len(packet.data), packet.wire_length)
    return header + packet.data


def pcap_bytes(
    packets: Iterable[CapturedPacket],
    *,
    snap_length: int = FULL_SNAP_LENGTH,
    nanoseconds: bool = True,
) -> bytes:
    """A whole libpcap file of ``packets``, in the order given, as bytes.

    Args:
        packets: The packets, such as :attr:`CapturedExchange.packets`.
        snap_length: The capture's snap length; every packet must fit in it.
        nanoseconds: Whether time stamps count nanoseconds (see :func:`pcap_header`).

    Raises:
        TypeError: if a packet is not a :class:`CapturedPacket`, or an argument
            has the wrong type.
        ValueError: if a packet is longer than ``snap_length``, or ``snap_length``
            is outside 120-262144.
    """
    header = pcap_header(snap_length=snap_length, nanoseconds=nanoseconds)
    records = (
        pcap_record(packet, snap_length=snap_length, nanoseconds=nanoseconds) for packet in packets
    )
    return header + b"".join(records)


# -- the IO layer -----------------------------------------------------------------------


class WritableBinaryFile(Protocol):
    """What :class:`PcapWriter` writes to: a file opened in binary mode.

    Such as ``open(path, "wb")``, an ``io.BytesIO``, or anything else that
    takes bytes and can be flushed.  A text file cannot: it takes ``str``.
    """

    def write(self, data: bytes, /) -> object:
        """Write ``data``."""

    def flush(self) -> object:
        """Push what was written on to the file."""


def _check_binary_file(file: object) -> None:
    """Refuse a text file at once: it would fail only at the first write, half made."""
    if isinstance(file, io.TextIOBase) or not callable(getattr(file, "write", None)):
        raise TypeError(
            "file must be a file opened for writing in binary mode, such as "
            f"open(path, 'wb'), not {file!r}"
        )


class PcapWriter:
    """Write packets to a binary file as a libpcap capture, each one as it comes.

    Making a writer writes the file's header; each :meth:`write` adds one record
    and flushes the file, so that a capture stopped by Ctrl-C holds every packet
    written until then, and a reader can follow the file as it grows.  The writer
    never closes the file: whoever opened it does.

    >>> import io
    >>> file = io.BytesIO()
    >>> writer = PcapWriter(file)
    >>> writer.write(CapturedPacket(1_500_000_000, bytes(40), 40))
    >>> len(file.getvalue()), writer.count  # 24 + 16 + 40 bytes
    (80, 1)

    Args:
        file: A file opened for writing in binary mode, such as ``open(path, "wb")``.
        snap_length: The capture's snap length, written in the header; every packet
            must fit in it.
        nanoseconds: Whether time stamps count nanoseconds (see :func:`pcap_header`).

    Raises:
        TypeError: if ``file`` is a text file or cannot be written, or an argument
            has the wrong type.
        ValueError: if ``snap_length`` is outside 120-262144.
        OSError: if writing the header fails.
    """

    def __init__(
        self,
        file: WritableBinaryFile,
        *,
        snap_length: int = FULL_SNAP_LENGTH,
        nanoseconds: bool = True,
    ) -> None:
        _check_binary_file(file)
        header = pcap_header(snap_length=snap_length, nanoseconds=nanoseconds)
        self._file = file
        self._snap_length = snap_length
        self._nanoseconds = nanoseconds
        #: How many packets have been written.
        self.count = 0
        try:
            self._put(header)
        except TypeError as exc:  # a file object that takes only text
            raise TypeError(
                f"file must be opened in binary mode, such as open(path, 'wb'), not {file!r}"
            ) from exc

    def _put(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()  # each record whole on disk: a stopped capture is readable

    def write(self, packet: CapturedPacket) -> None:
        """Append one packet's record to the file, and flush it.

        Raises:
            TypeError: if ``packet`` is not a :class:`CapturedPacket`.
            ValueError: if the packet holds more bytes than the snap length.
            OSError: if writing fails.
        """
        record = pcap_record(packet, snap_length=self._snap_length, nanoseconds=self._nanoseconds)
        self._put(record)
        self.count += 1


def write_pcap(
    file: WritableBinaryFile,
    packets: Iterable[CapturedPacket],
    *,
    snap_length: int = FULL_SNAP_LENGTH,
    nanoseconds: bool = True,
) -> int:
    """Write ``packets`` to ``file`` as a libpcap capture; return how many were written.

    Args:
        file: A file opened for writing in binary mode, such as ``open(path, "wb")``.
        packets: The packets, such as :attr:`CapturedExchange.packets`.
        snap_length: The capture's snap length; every packet must fit in it.
        nanoseconds: Whether time stamps count nanoseconds (see :func:`pcap_header`).

    Raises:
        TypeError: if ``file`` is a text file or cannot be written, a packet is not
            a :class:`CapturedPacket`, or an argument has the wrong type.
        ValueError: if a packet is longer than ``snap_length``, or ``snap_length``
            is outside 120-262144.
        OSError: if writing fails.
    """
    writer = PcapWriter(file, snap_length=snap_length, nanoseconds=nanoseconds)
    for packet in packets:
        writer.write(packet)
    return writer.count


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
            hint=_permission_hint(),
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


# Linux's numbers for SO_TIMESTAMPNS (asm-generic) and SO_RCVBUFFORCE, which Python
# does not name.  SO_TIMESTAMPNS makes each packet carry the time it arrived.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_TIMESPEC = struct.Struct("@ll")  # struct timespec: seconds, nanoseconds
# Room for the time stamp's control message (CMSG_SPACE is missing on Windows).
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 64
# A capture of every TCP segment on loopback must hold other programs' segments too
# until it reads them: 16 MiB of buffer, which the kernel charges only as it is used.
_EXCHANGE_BUFFER_BYTES = 16 * 1024 * 1024


# Linux stamps arriving packets only while some socket in the system wants stamps,
# and when the first one asks, the switch is thrown later, by a kernel worker
# (netstamp_work in net/core/dev.c).  Until then a packet arrives unstamped and
# recvmsg stamps it as it is *read*: an exchange read after it ended would look as
# if every segment arrived at the end.  So a capture waits until stamping is on.
_STAMPS_ON_TIMEOUT = 2.0


def _wait_until_stamped_on_arrival(timeout: float) -> None:
    """Wait until the kernel stamps packets as they arrive, at most ``timeout`` seconds.

    The test is a datagram sent to ourselves on loopback: it is delivered before
    ``sendto`` returns, so its stamp is no later than that moment if, and only
    if, it was stamped on arrival rather than when read.

    Raises:
        SocketCallError: if stamping is still off after ``timeout`` seconds
            (errno ``ETIMEDOUT``), or the probe's socket calls fail.
    """
    deadline = time.monotonic() + timeout
    with checked("socket(AF_INET, SOCK_DGRAM)"):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        with checked("setsockopt(SO_TIMESTAMPNS)"):
            probe.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        with checked("bind", ("127.0.0.1", 0)):
            probe.bind(("127.0.0.1", 0))
        probe.settimeout(timeout)
        itself = probe.getsockname()
        # Ends: each pass sends and reads one datagram; the deadline stops it.
        while True:
            with checked("sendto", itself):
                probe.sendto(b"?", itself)
            returned_ns = time.time_ns()
            with checked("recvmsg", itself):
                _, ancillary, _, _ = probe.recvmsg(1, _STAMP_SPACE)
            if _arrival_ns(ancillary) <= returned_ns:
                return
            if time.monotonic() >= deadline:
                raise SocketCallError(
                    errno.ETIMEDOUT,
                    os.strerror(errno.ETIMEDOUT),
                    call="setsockopt(SO_TIMESTAMPNS)",
                    hint=f"the kernel did not start stamping packets within {timeout} s",
                )
            time.sleep(0.001)  # give the kernel's worker the processor


@contextmanager
def _capture_socket(
    interface: str, program: bytes | None, timeout: float
) -> Iterator[socket.socket]:
    """Open, filter, bind and time-stamp a packet socket; always close it."""
    sock = _open_packet_socket(interface)
    try:
        if program is not None:
            _attach_filter(sock, program)  # before bind: no packet arrives unfiltered
        # Before any packet arrives, so that each one is stamped as it arrives.
        with checked("setsockopt(SO_TIMESTAMPNS)"):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        _wait_until_stamped_on_arrival(_STAMPS_ON_TIMEOUT)
        with checked("bind", interface):
            sock.bind((interface, _ETH_P_IP))
        sock.settimeout(timeout)
        yield sock
    finally:
        sock.close()


def _check_interface(interface: object) -> str:
    if not isinstance(interface, str):
        raise TypeError(f"interface must be a str such as 'lo', not {interface!r}")
    if not interface:
        raise ValueError("interface must be a name such as 'lo', not ''")
    return interface


@contextmanager
def packet_capture(
    interface: str = "lo",
    *,
    port: int | None = None,
    timeout: float = 5.0,
    snap_length: int = HEADER_SNAP_LENGTH,
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
        snap_length: With ``port``, how many bytes of each packet the kernel keeps:
            the headers (:data:`HEADER_SNAP_LENGTH`, the default) or whole packets
            (:data:`FULL_SNAP_LENGTH`).

    Raises:
        TypeError: if ``interface`` is not a str, or ``port``, ``timeout`` or
            ``snap_length`` not a number.
        ValueError: if ``interface`` is empty, ``port`` outside 1-65535, ``timeout``
            not positive and finite, or ``snap_length`` outside 120-262144.
        PermissionCallError: without the CAP_NET_RAW capability.
        SocketCallError: if the system has no packet sockets (not Linux), or
            ``interface`` does not exist.
    """
    _check_interface(interface)
    program = tcp_port_filter(port, snap_length=snap_length) if port is not None else None
    _check_snap_length(snap_length)
    seconds = _check_seconds("timeout", timeout)
    with _capture_socket(interface, program, seconds) as sock:
        yield sock


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


# -- one connection's segments, in the trace format ---------------------------------------


def _arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """When the kernel stamped the packet, in ns; now, if it carries no stamp."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return time.time_ns()


def _receive(capture: socket.socket, deadline: float | None) -> tuple[int, bytes] | None:
    """Wait for the next packet that arrived, until ``deadline`` (``time.monotonic``).

    Returns the time it arrived (ns on the wall clock) and the packet, or ``None``
    once the deadline has passed.  Without a deadline it waits as long as the
    socket's timeout allows.
    """
    # Ends: each pass reads one packet (returned, or skipped as our own copy of an
    # outgoing one) or returns at the deadline.
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            capture.settimeout(remaining)
        try:
            with checked("recvmsg"):
                packet, ancillary, _, address = capture.recvmsg(FULL_SNAP_LENGTH, _STAMP_SPACE)
        except TimeoutError:
            return None
        outgoing = isinstance(address, tuple) and address[2:3] == (socket.PACKET_OUTGOING,)
        if outgoing:
            continue  # on other interfaces, our own copy of a packet we sent
        return _arrival_ns(ancillary), packet


def _decode_or_none(packet: bytes) -> AddressedSegment | None:
    try:
        return decode_ipv4_segment(packet)
    except ValueError:
        return None  # somebody else's malformed packet is not ours to judge


def receive_segment(
    capture: socket.socket, timeout: float
) -> tuple[float, AddressedSegment] | None:
    """Wait up to ``timeout`` seconds for the next TCP segment a capture holds.

    This is the step :func:`collect_segments` repeats, for a program that must act
    on each segment as it comes (:class:`tcpref.faults.LossInjector` does).

    Returns:
        When the kernel saw the segment (seconds on the wall clock, ``time.time()``'s
        scale) and the segment with its addresses; or ``None`` if none came in time.
        Packets that are not IPv4 TCP are skipped.

    Raises:
        TypeError: if ``capture`` is not a socket or ``timeout`` not a number.
        ValueError: if ``timeout`` is not positive and finite.
        SocketCallError: if reading from ``capture`` fails.
    """
    if not isinstance(capture, socket.socket):
        raise TypeError(f"capture must be a socket from packet_capture(), not {capture!r}")
    deadline = time.monotonic() + _check_seconds("timeout", timeout)
    previous_timeout = capture.gettimeout()
    try:
        # Ends: each pass reads a packet or returns at the deadline (see _receive).
        while (received := _receive(capture, deadline)) is not None:
            found = _decode_or_none(received[1])
            if found is not None:
                return received[0] / 1e9, found
        return None
    finally:
        capture.settimeout(previous_timeout)


def _check_address(name: str, address: object) -> tuple[str, int]:
    """Check an IPv4 ``(ip, port)`` pair, as ``getsockname()`` returns it."""
    problem = (
        f"{name} must be an IPv4 address (ip, port), such as ('127.0.0.1', 8080), not {address!r}"
    )
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError(problem)
    host, port = address
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(problem)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(problem) from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{name}'s port must be in range 1-65535, not {port!r}")
    return host, port


def _check_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, not {count!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    return count


def _entry(seconds: float, sender: Side, found: AddressedSegment, note: str = "") -> TraceEntry:
    """A trace entry for a captured segment: sent and arrived at the same moment."""
    if found.truncated:
        cut = f"len={found.payload_length} on the wire, {len(found.segment.payload)} captured"
        note = f"{note}; {cut}" if note else cut
    return TraceEntry(seconds, sender, found.segment, note=note, arrival=seconds)


def collect_segments(
    capture: socket.socket,
    client: tuple[str, int],
    server: tuple[str, int],
    *,
    count: int,
    timeout: float,
) -> list[TraceEntry]:
    """Read from ``capture`` the segments of one connection, as trace entries.

    The connection is the 4-tuple of ``client`` and ``server``: a segment belongs
    to it if it went from one to the other, in either direction.  (The kernel
    filter of :func:`packet_capture` keeps a port; this keeps exactly one
    connection.)  Each entry's ``sender`` is ``"client"`` for a segment from
    ``client``, the side that sent the SYN, and ``"server"`` otherwise.  ``time``
    is the moment the kernel saw the segment, in seconds since the first segment
    collected; ``arrival`` is the same, because on loopback a segment arrives as
    it is sent.  Reading stops after ``count`` segments or ``timeout`` seconds,
    whichever comes first, so the list may be shorter than ``count``.

    Print the result with :func:`tcpref.trace.format_trace`, giving it the ISNs
    from :func:`initial_sequence_numbers` for relative numbers.

    Args:
        capture: A socket from :func:`packet_capture`, opened before the
            connection's first segment was sent.
        client: The client's ``(ip, port)``: ``getsockname()`` of the socket
            that called ``connect()``.
        server: The server's ``(ip, port)``.
        count: How many segments to wait for at most.
        timeout: How many seconds to wait at most, in total.

    Raises:
        TypeError: if ``capture`` is not a socket, an address is not an
            ``(ip, port)`` pair, or ``count`` or ``timeout`` is not a number.
        ValueError: if an address is not IPv4 or its port is outside 1-65535,
            ``count`` is below 1, or ``timeout`` is not positive and finite.
        SocketCallError: if reading from ``capture`` fails.
    """
    return [entry for entry, _ in _collect(capture, client, server, count, timeout)]


def _collect(
    capture: socket.socket,
    client: tuple[str, int],
    server: tuple[str, int],
    count: int,
    timeout: float,
) -> list[tuple[TraceEntry, CapturedPacket]]:
    """:func:`collect_segments`, keeping each entry's packet as it was captured."""
    if not isinstance(capture, socket.socket):
        raise TypeError(f"capture must be a socket from packet_capture(), not {capture!r}")
    client = _check_address("client", client)
    server = _check_address("server", server)
    _check_count(count)
    deadline = time.monotonic() + _check_seconds("timeout", timeout)
    collected: list[tuple[TraceEntry, CapturedPacket]] = []
    first_ns: int | None = None
    previous_timeout = capture.gettimeout()
    try:
        # Ends: each pass reads a packet or returns at the deadline (see _receive).
        while len(collected) < count:
            received = _receive(capture, deadline)
            if received is None:
                break
            arrival_ns, packet = received
            found = _decode_or_none(packet)
            if found is None or (found.src, found.dst) not in ((client, server), (server, client)):
                continue
            first_ns = arrival_ns if first_ns is None else first_ns
            sender: Side = "client" if found.src == client else "server"
            entry = _entry((arrival_ns - first_ns) / 1e9, sender, found)
            collected.append((entry, CapturedPacket.from_ipv4(arrival_ns, packet)))
    finally:
        capture.settimeout(previous_timeout)
    return collected


def initial_sequence_numbers(entries: Sequence[TraceEntry]) -> tuple[int | None, int | None]:
    """Find each side's initial sequence number: the ``seq`` of the first SYN it sent.

    Returns ``(client_isn, server_isn)``, with ``None`` for a side whose SYN is not
    in ``entries`` (the capture started too late, or missed it).

    >>> from tcpref.segment import Flags, Segment
    >>> syn = Segment(40000, 80, seq=7000, ack=0, flags=Flags.SYN, window=1024)
    >>> initial_sequence_numbers([TraceEntry(0.0, "client", syn)])
    (7000, None)
    """
    isns: dict[Side, int | None] = {"client": None, "server": None}
    for entry in entries:
        segment = entry.segment
        if segment is not None and Flags.SYN in segment.flags and isns[entry.sender] is None:
            isns[entry.sender] = segment.seq
    return isns["client"], isns["server"]


@dataclass(frozen=True)
class CapturedExchange:
    """The segments of one connection, captured by :func:`capture_exchange`.

    ``print()`` it to see the trace, with numbers relative to the two ISNs.

    Attributes:
        client: The client's ``(ip, port)``.
        server: The server's ``(ip, port)``.
        entries: One :class:`tcpref.trace.TraceEntry` per segment, in the order
            the segments were seen.
        client_isn: The client's initial sequence number, or ``None`` if its SYN
            was not captured.
        server_isn: The server's initial sequence number, or ``None``.
        packets: The packets that carried the entries' segments, one per entry,
            as captured and with the kernel's arrival time stamps: what
            :func:`write_pcap` writes for Wireshark.  Empty for an exchange made
            by hand without them.
    """

    client: tuple[str, int]
    server: tuple[str, int]
    entries: tuple[TraceEntry, ...]
    client_isn: int | None
    server_isn: int | None
    packets: tuple[CapturedPacket, ...] = ()

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The captured segments alone, as :class:`tcpref.segment.Segment` records."""
        return tuple(entry.segment for entry in self.entries if entry.segment is not None)

    def format(self) -> str:
        """The trace as :func:`tcpref.trace.format_trace` prints it."""
        return format_trace(self.entries, self.client_isn, self.server_isn)

    def __str__(self) -> str:
        return self.format()


def _check_exchange_result(result: object) -> tuple[tuple[str, int], tuple[str, int]]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(
            "the script must return (client_address, server_address), "
            f"such as (client.getsockname(), listener.getsockname()), not {result!r}"
        )
    return _check_address("client", result[0]), _check_address("server", result[1])


def capture_exchange(
    script: Callable[[], tuple[tuple[str, int], tuple[str, int]]],
    *,
    count: int,
    timeout: float = 5.0,
    port: int | None = None,
) -> CapturedExchange:
    """Run ``script`` while capturing on loopback; return its connection's segments.

    This is the helper for examples: write the exchange as a function that opens
    a connection on ``127.0.0.1``, does what it shows, closes, and returns
    ``(client_address, server_address)``.  The capture opens before the script
    runs, so it sees the first SYN; afterwards the segments of that one
    connection are read, at most ``count`` of them, waiting at most ``timeout``
    seconds for the last.  On loopback a segment is seen as it is sent, so what
    the script did is in the capture by the time it returns.

    Without ``port`` the kernel keeps every TCP segment on loopback until they are
    read (in a 16 MiB buffer, so that other programs' traffic cannot crowd yours
    out); with ``port``, a port of the exchange known before it starts, such as a
    listener's, only that port's.  IPv4 only.

    Args:
        script: Runs the exchange; returns ``(client_address, server_address)``,
            as ``getsockname()`` gives them.
        count: How many segments to read at most.
        timeout: Seconds to wait at most for them, after the script has returned.
        port: If given, capture only segments from or to this port.

    Raises:
        TypeError: if ``script`` is not callable or returns something other than
            two ``(ip, port)`` pairs, or an argument is not a number.
        ValueError: if an argument is out of range, or an address is not IPv4.
        PermissionCallError: without the CAP_NET_RAW capability.
        SocketCallError: if the system has no packet sockets (not Linux).
        Exception: whatever ``script`` raises; the capture is closed first.
    """
    if not callable(script):
        raise TypeError(f"script must be a function that runs the exchange, not {script!r}")
    _check_count(count)
    seconds = _check_seconds("timeout", timeout)
    if port is None:
        program = _tcp_filter(FULL_SNAP_LENGTH)
    else:
        program = tcp_port_filter(port, snap_length=FULL_SNAP_LENGTH)
    with _capture_socket("lo", program, seconds) as capture:
        _enlarge_receive_buffer(capture, _EXCHANGE_BUFFER_BYTES)
        client, server = _check_exchange_result(script())
        collected = _collect(capture, client, server, count, seconds)
    entries = tuple(entry for entry, _ in collected)
    packets = tuple(packet for _, packet in collected)
    client_isn, server_isn = initial_sequence_numbers(entries)
    return CapturedExchange(client, server, entries, client_isn, server_isn, packets)


def _enlarge_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a receive buffer of ``size`` bytes; beyond net.core.rmem_max with CAP_NET_ADMIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:  # EPERM without CAP_NET_ADMIN: as much as rmem_max allows
        with checked("setsockopt(SO_RCVBUF)"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def trace_port(
    capture: socket.socket,
    port: int,
    *,
    count: int | None = None,
    timeout: float | None = None,
    pcap: PcapWriter | None = None,
) -> Iterator[str]:
    """Follow the TCP segments to or from ``port`` as they arrive, one line each.

    The first line is the trace's header; then each segment is one line in
    :func:`tcpref.trace.format_trace`'s format, ready to print at once.  A segment
    sent *to* ``port`` goes ``C -> S``: the side that owns ``port`` is the server.
    Numbers are relative to the connection's two ISNs once its SYNs have been seen
    (absolute before, for a connection that was open before the capture), and
    each line ends with the client's address in parentheses, which tells the
    connections apart.  Times count from the first segment.

    Args:
        capture: A socket from :func:`packet_capture` (with ``port``, and
            ``snap_length=FULL_SNAP_LENGTH`` to count payload bytes right).
        port: The port to follow.
        count: Stop after this many segments; ``None``: no limit.
        timeout: Stop after this many seconds; ``None``: no limit.  With neither
            limit the lines go on until the caller stops reading.
        pcap: If given, each segment that gets a line is also written to this
            libpcap file, as captured, before its line is yielded.

    Raises:
        TypeError: if ``capture`` is not a socket, ``pcap`` not a
            :class:`PcapWriter`, or an argument is not a number.
        ValueError: if ``port`` is outside 1-65535, ``count`` below 1, or
            ``timeout`` not positive and finite.
        SocketCallError: if reading from ``capture`` fails.
        OSError: if writing to ``pcap`` fails.
    """
    if not isinstance(capture, socket.socket):
        raise TypeError(f"capture must be a socket from packet_capture(), not {capture!r}")
    _check_port(port)
    if count is not None:
        _check_count(count)
    limit = None if timeout is None else _check_seconds("timeout", timeout)
    if pcap is not None and not isinstance(pcap, PcapWriter):
        raise TypeError(f"pcap must be a PcapWriter, not {pcap!r}")
    return _trace_lines(capture, port, count, limit, pcap)


def _trace_lines(
    capture: socket.socket,
    port: int,
    count: int | None,
    timeout: float | None,
    pcap: PcapWriter | None,
) -> Iterator[str]:
    deadline = None if timeout is None else time.monotonic() + timeout
    yield format_trace(())  # the header line
    isns: dict[tuple[str, int], dict[Side, int | None]] = {}
    first_ns: int | None = None
    shown = 0
    previous_timeout = capture.gettimeout()
    if deadline is None:
        capture.settimeout(None)
    try:
        # Ends: at count lines, at the deadline, or when the caller stops reading.
        while count is None or shown < count:
            received = _receive(capture, deadline)
            if received is None:
                return
            arrival_ns, packet = received
            found = _decode_or_none(packet)
            if found is None or port not in (found.src[1], found.dst[1]):
                continue
            sender: Side = "client" if found.dst[1] == port else "server"
            client = found.src if sender == "client" else found.dst
            known = isns.setdefault(client, {"client": None, "server": None})
            flags = found.segment.flags
            if Flags.SYN in flags:
                if Flags.ACK not in flags:  # a new connection: forget the old numbers
                    known["server"] = None
                known[sender] = found.segment.seq
            first_ns = arrival_ns if first_ns is None else first_ns
            entry = _entry((arrival_ns - first_ns) / 1e9, sender, found, f"{client[0]}:{client[1]}")
            if pcap is not None:  # before the line: a reader stopped by it has the packet
                pcap.write(CapturedPacket.from_ipv4(arrival_ns, packet))
            yield format_entry(entry, known["client"], known["server"])
            shown += 1
    finally:
        capture.settimeout(previous_timeout)
