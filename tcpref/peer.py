"""A scripted TCP peer in user space, behind a TUN device (Linux, in a private namespace).

Some failures need a peer that misbehaves: one that vanishes without a word, so
that keepalive probes go unanswered; one that never acknowledges a FIN; one that
sends a segment no healthy TCP would, such as an old duplicate SYN.  Loopback
cannot stage them, because the kernel itself answers for both ends.

A TUN device can.  It is a network interface whose other end is a file
descriptor: every IPv4 packet the kernel routes to the device can be read from
the descriptor, and every packet written to it arrives as if from the network.
:class:`TunPeer` makes one, gives the kernel's side the address
:data:`KERNEL_ADDRESS` and plays a host at :data:`PEER_ADDRESS` itself, with
segments built and parsed by :mod:`tcpref.segment`.  packetdrill drives a TUN
device the same way, in C and as root.

The two addresses are TEST-NET-1 (RFC 5737), a block reserved for documentation
and never routed; and the device exists only inside a private network namespace
(:func:`tcpref.netns.run`), whose only other interface is its own loopback, so
nothing sent to the peer can reach any other network.  Making the device needs
CAP_NET_ADMIN, which any user holds in such a namespace.

:func:`ipv4_packet` (pure) builds the IPv4 header around a segment.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType

from tcpref import netns
from tcpref.capture import AddressedSegment, decode_ipv4_segment
from tcpref.segment import Flags, MaxSegmentSize, Segment, internet_checksum

__all__ = [
    "KERNEL_ADDRESS",
    "PEER_ADDRESS",
    "Received",
    "TunPeer",
    "ipv4_packet",
]

#: The kernel's address on the TUN device.
KERNEL_ADDRESS = "192.0.2.1"
#: The address the peer plays; the kernel routes it to the device.
PEER_ADDRESS = "192.0.2.2"
_PREFIX = 24

# From <linux/if_tun.h> and <linux/sockios.h>.
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_SIOCSIFADDR = 0x8916
_SIOCSIFNETMASK = 0x891C
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sh22x")
_IFREQ_ADDRESS = struct.Struct("16sH2s4s8x")  # name, then a sockaddr_in
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPPROTO_TCP = 6


def ipv4_packet(src: str, dst: str, payload: bytes, *, ident: int = 0, ttl: int = 64) -> bytes:
    """Wrap a TCP segment's bytes in an IPv4 header (RFC 791), with its checksum.

    Don't Fragment is set, as Linux sets it on TCP.

    >>> packet = ipv4_packet("192.0.2.2", "192.0.2.1", b"x" * 20)
    >>> len(packet), packet[0], packet[9], internet_checksum(packet[:20])
    (40, 69, 6, 0)

    Raises:
        ValueError: if an address is not IPv4, or the packet would exceed 65535 bytes.
    """
    source, destination = _ipv4("src", src), _ipv4("dst", dst)
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"an IPv4 packet holds at most 65535 bytes, not {total}")
    fields = [0x45, 0, total, ident & 0xFFFF, 0x4000, ttl, _IPPROTO_TCP, 0]
    header = _IPV4_HEADER.pack(*fields, source.packed, destination.packed)
    fields[-1] = internet_checksum(header)
    return _IPV4_HEADER.pack(*fields, source.packed, destination.packed) + payload


def _ipv4(name: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{name} must be an IPv4 address, not {value!r}") from None


@dataclass(frozen=True)
class Received:
    """A segment the kernel sent to the peer, and when (``time.monotonic()``).

    Attributes:
        time: When the peer read it.
        src: The kernel's ``(ip, port)``.
        dst: The peer's ``(ip, port)`` it was sent to.
        segment: The segment.
    """

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    segment: Segment


class TunPeer:
    """The far end of a TUN device: a host at :data:`PEER_ADDRESS`, played in Python.

    Use it as a context manager, inside :func:`tcpref.netns.run`.  :meth:`receive`
    reads what the kernel sent to the peer, :meth:`expect` waits for one segment
    with exact flags, :meth:`send` sends a segment as the peer, and
    :meth:`answer_handshake` completes the handshake of a connection the kernel
    opens to the peer.

    Args:
        name: The device's name.

    Attributes:
        received: Every segment :meth:`receive` has read, in order.

    Raises:
        PermissionError: outside a :func:`tcpref.netns.run` child, or without
            CAP_NET_ADMIN.
        OSError: if the device cannot be made or given its address.
    """

    def __init__(self, name: str = "tcpref0") -> None:
        _refuse_the_hosts_network()
        self.name = name
        self._fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            request = _IFREQ_FLAGS.pack(name.encode(), _IFF_TUN | _IFF_NO_PI)
            fcntl.ioctl(self._fd, _TUNSETIFF, request)
            _configure(name)
        except BaseException:
            os.close(self._fd)
            raise
        self.received: list[Received] = []

    def __enter__(self) -> TunPeer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptor; the device goes with it."""
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1

    def receive(self, timeout: float) -> Received | None:
        """The next TCP segment the kernel sent to the peer, or None after ``timeout``.

        Every segment received is also kept in the list ``received``, in order.

        Raises:
            OSError: if reading the device fails.
        """
        deadline = time.monotonic() + timeout
        # Ends: each pass reads one packet or returns at the deadline.
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self._fd], [], [], left)[0]:
                return None
            found = _decode(os.read(self._fd, 65536))
            if found is not None:
                got = Received(time.monotonic(), found.src, found.dst, found.segment)
                self.received.append(got)
                return got
        return None

    def expect(self, flags: Flags, timeout: float) -> Received:
        """Wait for a segment whose flags are exactly ``flags``; skip the others.

        Raises:
            TimeoutError: naming the flags awaited, if none comes within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        # Ends: each pass reads a segment or returns None at the deadline.
        while (got := self.receive(max(deadline - time.monotonic(), 0.0))) is not None:
            if got.segment.flags == flags:
                return got
        names = "|".join(flag.name or "" for flag in Flags if flag in flags)
        raise TimeoutError(f"the peer waited {timeout:g} s for a {names} segment; none came")

    def send(self, segment: Segment, to: tuple[str, int]) -> None:
        """Send ``segment`` from the peer to the kernel's ``to`` address.

        Raises:
            OSError: if writing to the device fails.
        """
        data = segment.to_bytes(PEER_ADDRESS, to[0])
        os.write(self._fd, ipv4_packet(PEER_ADDRESS, to[0], data))

    def answer_handshake(
        self, syn: Received, isn: int, *, window: int = 65535, mss: int = 1460
    ) -> Received:
        """Answer the kernel's SYN with SYN+ACK and wait for its ACK; return that ACK.

        Raises:
            TimeoutError: if the kernel's ACK does not come within 5 s.
        """
        reply = Segment(
            syn.dst[1],
            syn.src[1],
            seq=isn,
            ack=(syn.segment.seq + 1) % 2**32,
            flags=Flags.SYN | Flags.ACK,
            window=window,
            options=(MaxSegmentSize(mss),),
        )
        self.send(reply, syn.src)
        return self.expect(Flags.ACK, 5.0)


def _refuse_the_hosts_network() -> None:
    """Refuse to make a device anywhere but in a :func:`tcpref.netns.run` child.

    Root could make one on the machine itself, and the peer's addresses would then
    be on the host's network.

    Raises:
        PermissionError: outside a private network namespace made by tcpref.netns.
    """
    if not netns.inside():
        raise PermissionError(
            errno.EPERM,
            "a TunPeer belongs in a private network namespace, never on the host's "
            "network: make it inside tcpref.netns.run",
        )


def _decode(packet: bytes) -> AddressedSegment | None:
    try:
        return decode_ipv4_segment(packet)
    except ValueError:
        return None  # not IPv4 (the kernel's own IPv6 chatter), or not TCP


def _configure(name: str) -> None:
    """Give the device the kernel's address and a /24, and bring it up.

    With an address and a mask, the kernel adds the route to the peer's network
    through the device by itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        mask = ipaddress.IPv4Network(f"0.0.0.0/{_PREFIX}").netmask
        for request, address in (
            (_SIOCSIFADDR, ipaddress.IPv4Address(KERNEL_ADDRESS)),
            (_SIOCSIFNETMASK, mask),
        ):
            ifreq = _IFREQ_ADDRESS.pack(name.encode(), socket.AF_INET, b"\0\0", address.packed)
            fcntl.ioctl(sock, request, ifreq)
        current = fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), 0))
        flags = _IFREQ_FLAGS.unpack(current)[1]
        try:
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags | _IFF_UP))
        except OSError as exc:
            raise OSError(exc.errno, f"could not bring {name} up: {exc.strerror}") from None
