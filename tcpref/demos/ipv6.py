"""IPv6 on the same socket calls: ``::1``, dual-stack listeners, and the MSS of loopback.

The socket API does not change with IPv6: a program asks for ``AF_INET6`` instead
of ``AF_INET`` and passes IPv6 addresses.  What changes is around the calls, and
each function here observes one such thing on the live kernel:

* :func:`loopback_unavailable_reason` says in one line why ``::1`` cannot be used
  here (no IPv6 in the kernel, or IPv6 turned off on ``lo``), or ``None``.
* :func:`mss_from_mtu` computes the MSS that Linux announces for a link's MTU,
  for IPv4 or IPv6, as the kernel's routing code does.
* :func:`loopback_mss` opens a connection over ``::1`` and reads what the kernel
  uses as its segment size, from ``TCP_INFO`` and ``TCP_MAXSEG``, before and after
  a transfer; :func:`loopback_mss_without_timestamps` does the same with TCP
  timestamps turned off, in a private network namespace.
* :func:`dual_stack` binds a listener to the IPv6 wildcard address ``::``, with
  ``IPV6_V6ONLY`` off or on, and connects to it over IPv4.

Binding ``::`` listens on every interface of the machine.  So :func:`dual_stack`
(and anything that changes a sysctl) runs only inside a private network namespace
made by :func:`tcpref.netns.run`, whose only interface is its own loopback, and
raises :class:`OutsideNamespaceError` anywhere else.  Everything else binds ``::1``
on port 0, bounds every wait, and closes what it opened before it returns.
Linux only: the answers come from ``/proc``, ``/sys`` and Linux socket options.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tcpref import netns
from tcpref.errors import errno_symbol
from tcpref.kernel import Connection, connections, tcp_info

__all__ = [
    "ANY6",
    "IPV4_HEADER",
    "IPV6_HEADER",
    "LOOPBACK6",
    "TCP_HEADER",
    "DualStack",
    "LoopbackMss",
    "OutsideNamespaceError",
    "dual_stack",
    "loopback_mss",
    "loopback_mss_without_timestamps",
    "loopback_unavailable_reason",
    "mss_from_mtu",
]

#: The IPv6 loopback address (RFC 4291 Section 2.5.3).
LOOPBACK6 = "::1"
#: The IPv6 unspecified address (RFC 4291 Section 2.5.2), which as a bind address
#: means every interface.  Only :func:`dual_stack` binds it, inside a namespace.
ANY6 = "::"

#: The fixed IPv4 header, without options (RFC 791 Section 3.1), bytes.
IPV4_HEADER = 20
#: The fixed IPv6 header (RFC 8200 Section 3), bytes.
IPV6_HEADER = 40
#: The TCP header without options (RFC 9293 Section 3.1), bytes.
TCP_HEADER = 20

# IPv4's total length and IPv6's payload length are both 16-bit fields.
_LARGEST_16_BIT = 65535

# How long any connect, accept or read may wait, seconds.
_TIMEOUT = 5.0
# How much the bulk transfer of loopback_mss sends, and in pieces of what size.
_BULK = 1 << 20
_CHUNK = 1 << 16


class OutsideNamespaceError(RuntimeError):
    """A function that binds ``::`` or changes a sysctl was called outside a namespace.

    Run it through :func:`tcpref.netns.run` instead.
    """


def _require_namespace(what: str) -> None:
    # A listener on :: outside a namespace would be reachable from other hosts.
    if not netns.inside():
        raise OutsideNamespaceError(
            f"{what} only runs inside a private network namespace; "
            "call it through tcpref.netns.run()"
        )


# == Is ::1 there? ===================================================================


def loopback_unavailable_reason(proc: str = "/proc") -> str | None:
    """Say in one line why a TCP socket cannot use ``::1`` here, or ``None`` if it can.

    The answer comes from really binding ``::1`` on port 0; the sysctl is read
    only to name the reason.

    >>> reason = loopback_unavailable_reason()
    >>> reason is None or isinstance(reason, str)
    True

    Args:
        proc: Where procfs is mounted, as a path; it is read only to explain a
            failure.

    Returns:
        ``None`` if ``::1`` can be bound, else the reason, such as ``'IPv6 is
        turned off on lo (sysctl net.ipv6.conf.lo.disable_ipv6 = 1)'``.
    """
    if not socket.has_ipv6:
        return "this Python was built without IPv6"
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError as exc:  # EAFNOSUPPORT: a kernel without IPv6, or ipv6.disable=1
        return f"the kernel has no IPv6 here: socket(AF_INET6) failed, {errno_symbol(exc.errno)}"
    with sock:
        try:
            sock.bind((LOOPBACK6, 0))
        except OSError as exc:
            flag = Path(proc) / "sys/net/ipv6/conf/lo/disable_ipv6"
            try:
                disabled = flag.read_text().strip() == "1"
            except OSError:
                disabled = False
            if disabled:
                return "IPv6 is turned off on lo (sysctl net.ipv6.conf.lo.disable_ipv6 = 1)"
            return f"::1 cannot be bound here: bind() failed with {errno_symbol(exc.errno)}"
    return None


# == The MSS, computed and observed ==================================================


def mss_from_mtu(mtu: int, family: socket.AddressFamily) -> int:
    """The MSS Linux announces for a path of ``mtu`` bytes, as its routing code computes it.

    RFC 9293 Section 3.7.1: the MTU less the fixed IP and TCP headers.  Each
    family caps the result where its 16-bit length field runs out:

    * IPv4 (``ipv4_default_advmss()``): the *total length*, header included, is
      16 bits, so the packet is at most 65535 bytes and the MSS at most
      65535 - 20 - 20.
    * IPv6 (``ip6_default_advmss()``): the *payload length* excludes the 40-byte
      header, so an MTU of 65536 still fits.  Above 65535 - 20 the kernel
      announces 65535, which RFC 2675 Section 4 reads as "no limit but the path's".

    >>> mss_from_mtu(1500, socket.AF_INET), mss_from_mtu(1500, socket.AF_INET6)
    (1460, 1440)
    >>> mss_from_mtu(65536, socket.AF_INET), mss_from_mtu(65536, socket.AF_INET6)
    (65495, 65476)

    Args:
        mtu: The path's MTU, bytes; at least 68 (RFC 791's smallest).
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.

    Raises:
        TypeError: if ``mtu`` is not an int.
        ValueError: if ``mtu`` is below 68, or ``family`` is neither family.
    """
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise TypeError(f"mtu must be an int, not {mtu!r}")
    if mtu < 68:
        raise ValueError(f"mtu must be at least 68, not {mtu!r}")
    if family == socket.AF_INET:
        return min(mtu, _LARGEST_16_BIT) - IPV4_HEADER - TCP_HEADER
    if family == socket.AF_INET6:
        mss = mtu - IPV6_HEADER - TCP_HEADER
        return _LARGEST_16_BIT if mss > _LARGEST_16_BIT - TCP_HEADER else mss
    raise ValueError(f"family must be AF_INET or AF_INET6, not {family!r}")


@dataclass(frozen=True)
class LoopbackMss:
    """What the server end of one loopback connection knows about segment sizes.

    Attributes:
        family: ``'AF_INET'`` or ``'AF_INET6'``.
        pmtu: The path MTU the kernel uses (``tcpi_pmtu``), bytes.
        advmss: The most data the server expects in one segment from its peer
            (``tcpi_advmss``): the MSS it announced, less the options every
            segment carries.
        options: What the handshake negotiated, as
            :attr:`tcpref.kernel.TcpInfo.option_names`.
        window_at_start: The peer's window right after the handshake
            (``tcpi_snd_wnd``), bytes.
        maxseg_at_start: ``getsockopt(TCP_MAXSEG)`` right after the handshake: the
            segment size the server sends with now, bytes.
        snd_mss_at_start: ``tcpi_snd_mss`` at the same moment.
        maxseg_after: ``getsockopt(TCP_MAXSEG)`` after the server sent ``sent``
            bytes and the peer's window grew.
        sent: How many bytes the server sent.
    """

    family: str
    pmtu: int
    advmss: int
    options: tuple[str, ...]
    window_at_start: int | None
    maxseg_at_start: int
    snd_mss_at_start: int
    maxseg_after: int
    sent: int


def _pump(sender: socket.socket, receiver: socket.socket, total: int) -> None:
    """Send ``total`` bytes from ``sender`` and read them all at ``receiver``.

    One thread does both, so neither may block: a blocking send of more than the
    buffers hold would wait for a read that never comes.

    Raises:
        TimeoutError: if the bytes do not all arrive within the timeout.
        ConnectionError: if the receiver reads end of stream first.
    """
    chunk = b"x" * _CHUNK
    sent = received = 0
    deadline = time.monotonic() + _TIMEOUT
    sender.setblocking(False)
    receiver.setblocking(False)
    # Ends: every pass either moves bytes or waits at most until the deadline.
    while received < total:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"only {received} of {total} bytes arrived in {_TIMEOUT:g} s")
        writers = [sender] if sent < total else []
        readable, writable, _ = select.select([receiver], writers, [], left)
        if writable:
            sent += sender.send(chunk[: total - sent])
        if readable:
            data = receiver.recv(1 << 20)
            if not data:
                raise ConnectionError(f"end of stream after {received} of {total} bytes")
            received += len(data)
    sender.settimeout(_TIMEOUT)
    receiver.settimeout(_TIMEOUT)


def loopback_mss(host: str = LOOPBACK6, bulk: int = _BULK) -> LoopbackMss:
    """Open a connection to ``host`` on port 0 and read its segment sizes, before and after.

    The server end is asked, through ``TCP_INFO`` and ``TCP_MAXSEG``, right after
    the handshake; then it sends ``bulk`` bytes, which the client reads as they
    come, so that the client's window opens up; then ``TCP_MAXSEG`` is asked
    again.  Linux keeps a segment no bigger than half the largest window the peer
    has offered (``tcp_bound_to_half_wnd()``), so the two answers differ while the
    first window is small.

    Args:
        host: ``'::1'`` (the default) or ``'127.0.0.1'``, to compare.
        bulk: How many bytes the server sends.

    Raises:
        ValueError: if ``host`` is not a loopback address, or ``bulk`` < 1.
        TimeoutError: if the transfer does not finish within 5 s.
        OSError: if a socket call fails.
    """
    if host not in (LOOPBACK6, "127.0.0.1"):
        raise ValueError(f"host must be '::1' or '127.0.0.1', not {host!r}")
    if bulk < 1:
        raise ValueError(f"bulk must be at least 1 byte, not {bulk!r}")
    family = socket.AF_INET6 if host == LOOPBACK6 else socket.AF_INET
    with socket.create_server((host, 0), family=family) as listener:
        listener.settimeout(_TIMEOUT)
        port = listener.getsockname()[1]
        with socket.create_connection((host, port), timeout=_TIMEOUT) as client:
            server, _ = listener.accept()
            with server:
                info = tcp_info(server)
                maxseg_at_start = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
                _pump(server, client, bulk)
                maxseg_after = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    return LoopbackMss(
        family=family.name,
        pmtu=info.pmtu,
        advmss=info.advmss,
        options=info.option_names,
        window_at_start=info.snd_wnd,
        maxseg_at_start=maxseg_at_start,
        snd_mss_at_start=info.snd_mss,
        maxseg_after=maxseg_after,
        sent=bulk,
    )


def loopback_mss_without_timestamps(proc: str = "/proc") -> LoopbackMss:
    """:func:`loopback_mss` over ``::1`` with ``net.ipv4.tcp_timestamps`` set to 0.

    Without the timestamps option no option travels in every segment, so
    ``advmss`` is the announced MSS itself.  The setting (which IPv6 TCP obeys
    too, despite its name) belongs to the network namespace, so this runs only in
    a private one, whose setting nobody else sees.

    Args:
        proc: Where procfs is mounted, as a path.

    Raises:
        OutsideNamespaceError: if not called inside :func:`tcpref.netns.run`.
        OSError: if the setting cannot be written, or a socket call fails.
    """
    _require_namespace("loopback_mss_without_timestamps()")
    (Path(proc) / "sys/net/ipv4/tcp_timestamps").write_text("0\n")
    return loopback_mss(LOOPBACK6)


# == A dual-stack listener ===========================================================


@dataclass(frozen=True)
class DualStack:
    """What one listener on ``[::]:PORT`` did with an IPv4 and an IPv6 client.

    Attributes:
        v6only: The ``IPV6_V6ONLY`` value set on the listener before ``bind``.
        bindv6only: The namespace's ``net.ipv6.bindv6only``, the default for new
            sockets.
        default_v6only: ``IPV6_V6ONLY`` on a new socket, before it was set.
        listener: The listener's ``getsockname()``, a 4-tuple.
        ipv4_client: ``'connected'``, or the errno symbol ``connect`` to
            ``127.0.0.1:PORT`` failed with, such as ``'ECONNREFUSED'``.
        accepted_from: The peer address ``accept()`` returned for the IPv4
            client, or ``None`` if it never connected.
        accepted_at: That connection's ``getsockname()`` on the server, or ``None``.
        entries: The kernel's table rows (:func:`tcpref.kernel.connections`) on the
            listener's port while the IPv4 client was connected, or ``()``.
        ipv6_client: ``'connected'`` or an errno symbol, for a client on ``::1``.
        ipv4_bind: ``'bound'``, or the errno symbol with which a second socket
            failed to bind ``0.0.0.0`` on the same port.
    """

    v6only: bool
    bindv6only: int
    default_v6only: int
    listener: tuple[str, int, int, int]
    ipv4_client: str
    accepted_from: tuple[str, int, int, int] | None
    accepted_at: tuple[str, int, int, int] | None
    entries: tuple[Connection, ...]
    ipv6_client: str
    ipv4_bind: str


# What a connection that got in shows: the peer address accept() gave, the server
# end's own address, and the kernel's rows for the port.
_Address6 = tuple[str, int, int, int]
_Seen = tuple[_Address6, _Address6, tuple[Connection, ...]]


def _connect(listener: socket.socket, address: tuple[str, int]) -> tuple[str, _Seen | None]:
    """Connect to ``address``; return the outcome and, if connected, what was seen.

    The kernel's rows are read while both ends are still open.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(_TIMEOUT)
        try:
            client.connect(address)
        except OSError as exc:
            return errno_symbol(exc.errno), None
        server, peer = listener.accept()
        with server:
            rows = tuple(connections(address[1]))
            return "connected", (peer, server.getsockname(), rows)


def _try_bind(address: tuple[str, int]) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        try:
            other.bind(address)
        except OSError as exc:
            return errno_symbol(exc.errno)
    return "bound"


def dual_stack(v6only: bool, proc: str = "/proc") -> DualStack:
    """Listen on ``[::]:PORT`` with ``IPV6_V6ONLY`` set to ``v6only``; connect over IPv4 and IPv6.

    The option is set before ``bind``, the only time Linux allows it.  Then an
    IPv4 client connects to ``127.0.0.1:PORT`` and an IPv6 client to
    ``[::1]:PORT``, one after the other, and a second socket tries to bind
    ``0.0.0.0:PORT``.  Call it through :func:`tcpref.netns.run`: the listener is on
    every interface, and in a private namespace the only one is its loopback.

    Args:
        v6only: The value for ``IPV6_V6ONLY``: ``False`` lets IPv4 clients in.
        proc: Where procfs is mounted, as a path.

    Raises:
        OutsideNamespaceError: if not called inside :func:`tcpref.netns.run`.
        OSError: if a socket call other than the clients' ``connect`` and the
            second ``bind`` fails.
    """
    _require_namespace("dual_stack()")
    bindv6only = int((Path(proc) / "sys/net/ipv6/bindv6only").read_text())
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        default_v6only = listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        listener.bind((ANY6, 0))
        listener.listen(8)
        listener.settimeout(_TIMEOUT)
        name = listener.getsockname()
        port = name[1]
        ipv4_client, seen = _connect(listener, ("127.0.0.1", port))
        ipv6_client, _ = _connect(listener, (LOOPBACK6, port))
        ipv4_bind = _try_bind(("0.0.0.0", port))
    accepted_from: _Address6 | None = None
    accepted_at: _Address6 | None = None
    entries: tuple[Connection, ...] = ()
    if seen is not None:
        accepted_from, accepted_at, entries = seen
    return DualStack(
        v6only=v6only,
        bindv6only=bindv6only,
        default_v6only=default_v6only,
        listener=name,
        ipv4_client=ipv4_client,
        accepted_from=accepted_from,
        accepted_at=accepted_at,
        entries=entries,
        ipv6_client=ipv6_client,
        ipv4_bind=ipv4_bind,
    )
