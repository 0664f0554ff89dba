"""When TIME_WAIT ends before its 60 seconds (Linux, in private network namespaces).

Linux keeps a closed connection in TIME_WAIT for a fixed 60 s
(:func:`tcpref.demos.closing.time_wait_timer`), yet three things end it sooner.
Each function here stages one of them inside a network namespace of its own, made
by :func:`tcpref.netns.run`: there any user may change the TCP settings involved,
and the machine's own settings are never touched.

* :func:`reuse_time_wait`: the client connects again from the same port while the
  server's end of the old connection is in TIME_WAIT.  The kernel either lets the
  new SYN take over the 4-tuple (RFC 9293 Section 3.6.1, RFC 6191), or answers it
  with the old connection's ACK.  ``tcp_timestamps`` can be switched off, and data
  sent first pushes the old connection's sequence numbers past the new SYN's.
* :func:`time_wait_overflow`: with ``tcp_max_tw_buckets`` set small, connections
  past the limit skip TIME_WAIT, and ``TCPTimeWaitOverflow`` in /proc/net/netstat
  counts them.
* :func:`reset_time_wait`: a scripted peer (:class:`tcpref.peer.TunPeer`) sends a
  RST to a connection in TIME_WAIT.  With ``tcp_rfc1337`` 0 it ends TIME_WAIT (the
  "TIME-WAIT assassination" of RFC 1337); with 1 it is ignored.

:func:`namespace_default` reads the value a setting has in a new namespace.

A state that the kernel no longer lists is reported as ``None``.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeVar

from tcpref import kernel, netns
from tcpref.capture import AddressedSegment, packet_capture, receive_segment
from tcpref.demos.closing import DemoError
from tcpref.kernel import state_of
from tcpref.peer import PEER_ADDRESS, TunPeer
from tcpref.segment import Flags, Segment, Timestamps

__all__ = [
    "MAX_DATA",
    "Reuse",
    "TimeWaitOverflow",
    "TimeWaitReset",
    "namespace_default",
    "reset_time_wait",
    "reuse_time_wait",
    "time_wait_overflow",
]

T = TypeVar("T")

#: The most data :func:`reuse_time_wait` sends before closing (64 MiB), in bytes.
MAX_DATA = 64 * 2**20

_LOOPBACK = "127.0.0.1"
_TIMEOUT = 3.0  # for each blocking call, and each wait for the kernel
_CHUNK = 65536
_QUIET = 0.05  # a capture with nothing new for this long has seen everything
# Linux's TCP timestamps tick once a millisecond: wait a few ticks before a new SYN,
# so that its timestamp is newer than the old connection's last one.
_TIMESTAMP_TICKS = 0.01
_PEER_PORT = 80
_PEER_ISN = 5000
_SEQ_SPACE = 2**32


# == In the namespace: settings, counters, waiting ====================================


def _set_sysctl(name: str, value: int) -> None:
    """Write ``net.ipv4.NAME`` of the network namespace this process is in.

    Raises:
        DemoError: outside a :func:`tcpref.netns.run` child, where the setting
            would be the machine's own.
        OSError: if the kernel refuses the value.
    """
    if not netns.inside():
        raise DemoError(f"{name} is changed only inside tcpref.netns.run, never on the host")
    with open(f"/proc/sys/net/ipv4/{name}", "w") as setting:
        setting.write(f"{value}\n")


def _tcp_ext_counter(name: str) -> int:
    """One ``TcpExt`` counter of /proc/net/netstat: a line of names, then one of values.

    Inside a network namespace the file counts that namespace only.
    """
    with open("/proc/net/netstat") as file:
        lines = file.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))[name])
    raise DemoError("/proc/net/netstat has no TcpExt counters")


def _wait_for(what: str, probe: Callable[[], T], wanted: Callable[[T], bool]) -> T:
    """Poll ``probe`` every few milliseconds until ``wanted`` holds; return its value.

    Raises:
        DemoError: naming ``what`` and the last value, after ``_TIMEOUT`` seconds.
    """
    deadline = time.monotonic() + _TIMEOUT
    # Ends: each pass sleeps, and the deadline is fixed.
    while not wanted(value := probe()):
        if time.monotonic() > deadline:
            raise DemoError(f"the kernel did not reach {what} in {_TIMEOUT} s (saw {value!r})")
        time.sleep(0.002)
    return value


def namespace_default(name: str) -> int:
    """The value the setting ``net.ipv4.NAME`` has in a new network namespace.

    The kernel sets a new namespace's TCP settings when it makes the namespace
    (``tcp_sk_init()`` in ``net/ipv4/tcp_ipv4.c``); it does not copy the host's.
    For a setting such as ``tcp_retries2`` this is the kernel's own default,
    whatever the machine has been configured with.

    Args:
        name: The setting's last name, such as ``'tcp_retries2'``: letters,
            digits and underscores.

    Raises:
        ValueError: if ``name`` is not such a name.
        FileNotFoundError: if this kernel has no such setting.
        NamespaceUnavailableError: if no network namespace can be made here.
    """
    if not (isinstance(name, str) and name.isascii() and name.replace("_", "a").isalnum()):
        raise ValueError(f"name must be a setting's name such as 'tcp_retries2', not {name!r}")
    return netns.run(_read_sysctl, name, timeout=10)


def _read_sysctl(name: str) -> int:
    with open(f"/proc/sys/net/ipv4/{name}") as setting:
        return int(setting.read())


def _flag_names(flags: Flags) -> str:
    """``'SYN|ACK'``: the flags in header order, as the site's traces print them."""
    return "|".join(flag.name or "" for flag in Flags if flag in flags)


def _relative(number: int, origin: int) -> int:
    """``number - origin`` in sequence space, from -2**31 to 2**31 - 1."""
    return (number - origin + 2**31) % _SEQ_SPACE - 2**31


# == A new SYN for a 4-tuple in TIME_WAIT =============================================


@dataclass(frozen=True)
class Reuse:
    """A client that connected again, from the same port, to a server in TIME_WAIT.

    The server closed first, so its end of the old connection was in TIME_WAIT
    (and the client's end gone) when the client's new SYN arrived.

    Attributes:
        timestamps: The namespace's ``tcp_timestamps`` (on or off) for both
            connections.
        rfc1337: The namespace's ``tcp_rfc1337``.
        data: Bytes the client sent on the old connection before it closed.
        before: The states of the server's end and of the client's end of the old
            connection just before the new SYN: ``('TIME_WAIT', None)``.
        syn: Where the new SYN's sequence number lay against the next one the
            TIME_WAIT expected (its RCV.NXT): ``'above'``, ``'below'`` or ``'equal'``.
        timestamp: Where the new SYN's timestamp lay against the one on the
            client's last segment of the old connection: ``'newer'``, ``'older'``
            or ``'equal'``; None without timestamps.
        exchange: The segments of the 4-tuple from the new SYN on, as ``'client
            SYN'``; a number equal to one the TIME_WAIT held is named, as in
            ``'server ACK seq=old SND.NXT ack=old RCV.NXT'``.
        isn_step: The server's new initial sequence number minus its old SND.NXT,
            or None if no SYN+ACK came.
        connected: Whether ``connect`` completed within its timeout.
        connect_seconds: How long ``connect`` took, or waited before it gave up.
        after: The states of the server's and the client's end of the 4-tuple
            afterwards.
        time_waits_after: How many TIME_WAIT entries were left on the server's port.
    """

    timestamps: bool
    rfc1337: bool
    data: int
    before: tuple[str | None, str | None]
    syn: str
    timestamp: str | None
    exchange: tuple[str, ...]
    isn_step: int | None
    connected: bool
    connect_seconds: float
    after: tuple[str | None, str | None]
    time_waits_after: int


def reuse_time_wait(
    *,
    timestamps: bool = True,
    data: int = 0,
    rfc1337: bool = False,
    connect_timeout: float = 2.0,
) -> Reuse:
    """Close a connection from the server, then connect again from the same client port.

    In a namespace of its own, with ``tcp_timestamps`` and ``tcp_rfc1337`` set as
    asked, the client sends ``data`` bytes (the server reads them all), the server
    closes, then the client; a capture on loopback watches the new connection's
    segments.

    Args:
        timestamps: Whether TCP timestamps are on (``tcp_timestamps`` 1 or 0).
        data: Bytes to send first, 0 to :data:`MAX_DATA`.  Each byte moves the
            client's sequence numbers on by one, far faster than its clock moves
            the next initial sequence number, so a few MiB put the new SYN's
            number behind the old connection's.
        rfc1337: Whether the TIME_WAIT ignores a RST (``tcp_rfc1337`` 1).
        connect_timeout: How long the new ``connect`` may wait, 0.1 to 5 s.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``data`` or ``connect_timeout`` is out of range.
        NamespaceUnavailableError: if no network namespace can be made here.
        tcpref.demos.closing.DemoError: if the kernel never reaches a state the run needs, or the
            capture misses a segment.
    """
    if not isinstance(timestamps, bool) or not isinstance(rfc1337, bool):
        raise TypeError(f"timestamps and rfc1337 must be bools, not {timestamps!r}, {rfc1337!r}")
    if isinstance(data, bool) or not isinstance(data, int) or not 0 <= data <= MAX_DATA:
        raise ValueError(f"data must be a whole number of bytes from 0 to {MAX_DATA}, not {data!r}")
    if not (isinstance(connect_timeout, int | float) and 0.1 <= connect_timeout <= 5):
        raise ValueError(f"connect_timeout must be 0.1 to 5 seconds, not {connect_timeout!r}")
    return netns.run(_reuse, timestamps, data, rfc1337, float(connect_timeout), timeout=30)


def _reuse(timestamps: bool, data: int, rfc1337: bool, connect_timeout: float) -> Reuse:
    """The namespace child's half of :func:`reuse_time_wait`."""
    _set_sysctl("tcp_timestamps", int(timestamps))
    _set_sysctl("tcp_rfc1337", int(rfc1337))
    with ExitStack() as stack:
        listener = stack.enter_context(socket.create_server((_LOOPBACK, 0)))
        listener.settimeout(_TIMEOUT)
        server_end = listener.getsockname()
        client = stack.enter_context(socket.socket())
        client.settimeout(_TIMEOUT)
        client.bind((_LOOPBACK, 0))  # a port of our own, to bind again later
        client_end = client.getsockname()
        client.connect(server_end)
        server = stack.enter_context(listener.accept()[0])
        server.settimeout(_TIMEOUT)
        _transfer(client, server, data)
        # Opened after the data, so that its buffer holds only the segments that count.
        capture = stack.enter_context(packet_capture(port=server_end[1]))
        before = _close_server_first(client, server, server_end, client_end)
        time.sleep(_TIMESTAMP_TICKS)
        again = stack.enter_context(socket.socket())
        again.bind(client_end)
        connected, seconds = _connect(again, server_end, connect_timeout)
        seen = _drain(capture)
        after = (state_of(server_end, client_end), state_of(client_end, server_end))
        left = sum(c.state == "TIME_WAIT" for c in kernel.connections(server_end[1]))
    return _reuse_result(
        (timestamps, rfc1337, data), before, seen, client_end, (connected, seconds), after, left
    )


def _transfer(client: socket.socket, server: socket.socket, data: int) -> None:
    """Send ``data`` bytes from the client, a chunk at a time, each read by the server."""
    # Ends: one pass per chunk, and data is at most MAX_DATA.
    for start in range(0, data, _CHUNK):
        size = min(_CHUNK, data - start)
        client.sendall(b"x" * size)
        _read_exactly(server, size)


def _read_exactly(sock: socket.socket, size: int) -> None:
    """Read ``size`` bytes from ``sock``.

    Raises:
        DemoError: if the stream ends first.
    """
    left = size
    # Ends: every pass reads at least one byte, or raises.
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise DemoError(f"the stream ended {left} bytes short")
        left -= len(chunk)


def _close_server_first(
    client: socket.socket,
    server: socket.socket,
    server_end: tuple[str, int],
    client_end: tuple[str, int],
) -> tuple[str | None, str | None]:
    """Close the server's end, then the client's; wait for TIME_WAIT on the server's.

    Returns the states of both ends once the server's is in TIME_WAIT and the
    client's is gone.
    """
    server.close()
    if client.recv(1) != b"":
        raise DemoError("the client read data where it expected the server's FIN")
    client.close()
    return _wait_for(
        "TIME_WAIT on the server's end and nothing on the client's",
        lambda: (state_of(server_end, client_end), state_of(client_end, server_end)),
        lambda states: states == ("TIME_WAIT", None),
    )


def _connect(sock: socket.socket, address: tuple[str, int], timeout: float) -> tuple[bool, float]:
    """Connect, waiting at most ``timeout``; return whether it did, and how long it took."""
    sock.settimeout(timeout)
    start = time.monotonic()
    try:
        sock.connect(address)
    except TimeoutError:
        return False, time.monotonic() - start
    return True, time.monotonic() - start


def _drain(capture: socket.socket) -> list[AddressedSegment]:
    """Every segment the capture holds, until it has been quiet for ``_QUIET`` seconds."""
    seen: list[AddressedSegment] = []
    # Ends: each pass reads one segment or stops; a handful are expected, 200 the cap.
    while len(seen) < 200 and (got := receive_segment(capture, _QUIET)) is not None:
        seen.append(got[1])
    return seen


def _reuse_result(
    settings: tuple[bool, bool, int],
    before: tuple[str | None, str | None],
    seen: list[AddressedSegment],
    client_end: tuple[str, int],
    outcome: tuple[bool, float],
    after: tuple[str | None, str | None],
    left: int,
) -> Reuse:
    """Read the captured segments against the old connection's last numbers."""
    old_snd_nxt = _fin(seen, client_end, from_client=False).seq + 1
    client_fin = _fin(seen, client_end, from_client=True)  # the client's last word
    old_rcv_nxt = client_fin.seq + 1
    first = next((i for i, s in enumerate(seen) if s.segment.flags == Flags.SYN), None)
    if first is None:
        raise DemoError("the capture saw no new SYN")
    new = seen[first:]
    offset = _relative(new[0].segment.seq, old_rcv_nxt)
    syn_ack = next((s for s in new if s.segment.flags == Flags.SYN | Flags.ACK), None)
    return Reuse(
        timestamps=settings[0],
        rfc1337=settings[1],
        data=settings[2],
        before=before,
        syn="above" if offset > 0 else "below" if offset < 0 else "equal",
        timestamp=_compare_timestamps(new[0].segment, client_fin),
        exchange=tuple(_label(s, client_end, old_snd_nxt, old_rcv_nxt) for s in new),
        isn_step=None if syn_ack is None else _relative(syn_ack.segment.seq, old_snd_nxt),
        connected=outcome[0],
        connect_seconds=outcome[1],
        after=after,
        time_waits_after=left,
    )


def _compare_timestamps(later: Segment, earlier: Segment) -> str | None:
    """``'newer'``, ``'older'`` or ``'equal'``: ``later``'s timestamp against ``earlier``'s."""
    values = [
        next((o.value for o in s.options if isinstance(o, Timestamps)), None)
        for s in (later, earlier)
    ]
    if values[0] is None or values[1] is None:
        return None
    step = _relative(values[0], values[1])  # timestamps wrap round as sequence numbers do
    return "newer" if step > 0 else "older" if step < 0 else "equal"


def _fin(seen: list[AddressedSegment], client_end: tuple[str, int], from_client: bool) -> Segment:
    """The first FIN one side sent.

    Raises:
        DemoError: if the capture did not see it.
    """
    for found in seen:
        if (found.src == client_end) == from_client and Flags.FIN in found.segment.flags:
            return found.segment
    raise DemoError(f"the capture missed the {'client' if from_client else 'server'}'s FIN")


def _label(
    found: AddressedSegment, client_end: tuple[str, int], old_snd_nxt: int, old_rcv_nxt: int
) -> str:
    """``'client SYN'``, with any number that equals one the TIME_WAIT held named."""
    segment = found.segment
    words = ["client" if found.src == client_end else "server", _flag_names(segment.flags)]
    old = {old_snd_nxt: "old SND.NXT", old_rcv_nxt: "old RCV.NXT"}
    if segment.seq in old:
        words.append(f"seq={old[segment.seq]}")
    if Flags.ACK in segment.flags and segment.ack in old:
        words.append(f"ack={old[segment.ack]}")
    return " ".join(words)


# == tcp_max_tw_buckets ===============================================================


@dataclass(frozen=True)
class TimeWaitOverflow:
    """Connections closed by the server with ``tcp_max_tw_buckets`` set small.

    Attributes:
        limit: The namespace's ``tcp_max_tw_buckets``.
        connections: How many connections the server closed first.
        states: The states on the server's port afterwards, listener left out,
            with how many entries are in each.
        overflows: How much ``TCPTimeWaitOverflow`` grew: connections that found
            the table full and skipped TIME_WAIT.
    """

    limit: int
    connections: int
    states: dict[str, int]
    overflows: int


def time_wait_overflow(limit: int = 2, connections: int = 5) -> TimeWaitOverflow:
    """Set ``tcp_max_tw_buckets`` to ``limit``, then let a server close connections first.

    Each connection ends in order: the server sends its FIN with
    ``shutdown(SHUT_WR)``, the client reads the end of the stream and closes, and
    the client's FIN brings the server's end to TIME_WAIT, if the table has room.

    Args:
        limit: The ``tcp_max_tw_buckets`` to set, 0 to 16.
        connections: How many connections to close, 1 to 32.

    Raises:
        ValueError: if an argument is out of range or not an int.
        NamespaceUnavailableError: if no network namespace can be made here.
        tcpref.demos.closing.DemoError: if a client's end does not go away in time.
    """
    for name, value, least, most in (("limit", limit, 0, 16), ("connections", connections, 1, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError(f"{name} must be a whole number from {least} to {most}, not {value!r}")
    return netns.run(_overflow, limit, connections, timeout=30)


def _overflow(limit: int, count: int) -> TimeWaitOverflow:
    """The namespace child's half of :func:`time_wait_overflow`."""
    _set_sysctl("tcp_max_tw_buckets", limit)
    before = _tcp_ext_counter("TCPTimeWaitOverflow")
    with socket.create_server((_LOOPBACK, 0)) as listener:
        listener.settimeout(_TIMEOUT)
        port = listener.getsockname()[1]
        for _ in range(count):
            _close_one_from_the_server(listener)
        states = _wait_for(
            "a port where every client's end is gone",
            lambda: Counter(c.state for c in kernel.connections(port) if c.state != "LISTEN"),
            lambda found: set(found) <= {"TIME_WAIT"},
        )
    overflows = _tcp_ext_counter("TCPTimeWaitOverflow") - before
    return TimeWaitOverflow(limit, count, dict(states), overflows)


def _close_one_from_the_server(listener: socket.socket) -> None:
    """Open one connection, and close it with the server's FIN first."""
    with socket.create_connection(listener.getsockname(), timeout=_TIMEOUT) as client:
        server, _ = listener.accept()
        with server:
            server.settimeout(_TIMEOUT)
            # shutdown, not close: the server's end stays open, so it reaches
            # TIME_WAIT from FIN_WAIT2 with the client's FIN, never as an orphan.
            server.shutdown(socket.SHUT_WR)
            if client.recv(1) != b"":
                raise DemoError("the client read data where it expected the server's FIN")
            client.close()
            if server.recv(1) != b"":  # the client's FIN has arrived: TIME_WAIT, or not
                raise DemoError("the server read data where it expected the client's FIN")


# == A RST against TIME_WAIT ==========================================================


@dataclass(frozen=True)
class TimeWaitReset:
    """A RST sent by a scripted peer to the kernel's end of a connection in TIME_WAIT.

    Attributes:
        rfc1337: The namespace's ``tcp_rfc1337``.
        seq_offset: The RST's sequence number minus the next one the TIME_WAIT
            expected (its RCV.NXT).
        before: The kernel's end before the RST: ``'TIME_WAIT'``.
        after: Its state after the RST, or None once gone from the table.
        answer: The flags of what the kernel sent back, or None if nothing.
    """

    rfc1337: bool
    seq_offset: int
    before: str | None
    after: str | None
    answer: str | None


def reset_time_wait(rfc1337: bool = False, seq_offset: int = 0) -> TimeWaitReset:
    """Bring the kernel's end of a connection to TIME_WAIT, then send it a RST.

    The kernel connects to :data:`tcpref.peer.PEER_ADDRESS`, played by a
    :class:`tcpref.peer.TunPeer`, and closes first; the peer acknowledges the FIN
    and sends its own, which the kernel acknowledges from TIME_WAIT.  Then the
    peer sends a RST whose sequence number is the TIME_WAIT's RCV.NXT plus
    ``seq_offset``, and watches the kernel's table for 0.1 s.

    Args:
        rfc1337: The ``tcp_rfc1337`` to set in the namespace.
        seq_offset: How far the RST's sequence number is from RCV.NXT, -65535
            to 65535.

    Raises:
        TypeError: if ``rfc1337`` is not a bool.
        ValueError: if ``seq_offset`` is out of range or not an int.
        NamespaceUnavailableError: if no network namespace can be made here.
        TimeoutError: if the kernel does not send a segment the peer waits for.
        tcpref.demos.closing.DemoError: if the kernel's end never reaches TIME_WAIT.
    """
    if not isinstance(rfc1337, bool):
        raise TypeError(f"rfc1337 must be a bool, not {rfc1337!r}")
    if isinstance(seq_offset, bool) or not isinstance(seq_offset, int):
        raise ValueError(f"seq_offset must be a whole number, not {seq_offset!r}")
    if not -65535 <= seq_offset <= 65535:
        raise ValueError(f"seq_offset must be from -65535 to 65535, not {seq_offset!r}")
    return netns.run(_reset, rfc1337, seq_offset, timeout=30)


def _reset(rfc1337: bool, seq_offset: int) -> TimeWaitReset:
    """The namespace child's half of :func:`reset_time_wait`."""
    _set_sysctl("tcp_rfc1337", int(rfc1337))
    remote = (PEER_ADDRESS, _PEER_PORT)
    with TunPeer() as peer:
        local = _kernel_closes_first(peer)
        before = _wait_for(
            "TIME_WAIT", lambda: state_of(local, remote), lambda state: state == "TIME_WAIT"
        )
        rcv_nxt = _PEER_ISN + 2  # after the peer's SYN and FIN
        peer.send(_from_peer(local[1], rcv_nxt + seq_offset, 0, Flags.RST), local)
        after = _settled_state(local, remote, before)
        answer = peer.receive(_QUIET)
    answered = None if answer is None else _flag_names(answer.segment.flags)
    return TimeWaitReset(rfc1337, seq_offset, before, after, answered)


def _kernel_closes_first(peer: TunPeer) -> tuple[str, int]:
    """Connect the kernel to the peer and close the kernel's end first.

    Returns the kernel's address once it has acknowledged the peer's FIN.
    """
    with socket.socket() as sock:
        sock.setblocking(False)
        sock.connect_ex((PEER_ADDRESS, _PEER_PORT))
        syn = peer.expect(Flags.SYN, _TIMEOUT)
        peer.answer_handshake(syn, _PEER_ISN)
        local: tuple[str, int] = sock.getsockname()
    fin = peer.expect(Flags.FIN | Flags.ACK, _TIMEOUT)
    reply = _from_peer(local[1], _PEER_ISN + 1, fin.segment.seq + 1, Flags.FIN | Flags.ACK)
    peer.send(reply, local)
    peer.expect(Flags.ACK, _TIMEOUT)  # the last ACK, sent from TIME_WAIT
    return local


def _from_peer(port: int, seq: int, ack: int, flags: Flags) -> Segment:
    return Segment(
        _PEER_PORT, port, seq=seq % _SEQ_SPACE, ack=ack % _SEQ_SPACE, flags=flags, window=65535
    )


def _settled_state(
    local: tuple[str, int], remote: tuple[str, int], before: str | None
) -> str | None:
    """The state after 0.1 s, or as soon as it leaves ``before``."""
    deadline = time.monotonic() + 0.1
    # Ends: each pass sleeps, and the deadline is fixed.
    while (state := state_of(local, remote)) == before and time.monotonic() < deadline:
        time.sleep(0.002)
    return state
