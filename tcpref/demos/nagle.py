"""The write-write-read stall: Nagle's algorithm meets the delayed ACK, on loopback.

A client sends each request in two small writes, ``b'head'`` and ``b'body'``, and
then reads the answer; the server answers only once it holds the whole request.
With Nagle's algorithm on (the default), the second write waits until the first
is acknowledged; the server's kernel delays that acknowledgment, hoping to send
it with the answer, which cannot come before the second write arrives.  Neither
side can move until the delayed-ACK timer runs out: on Linux at least
``TCP_ATO_MIN``, 40 ms, per round trip.

* :func:`round_trips` times that exchange, round after round, with each of the
  cures: ``TCP_NODELAY``, the whole request in one ``sendall`` or one
  ``sendmsg``, ``TCP_CORK``, and the server's ``TCP_QUICKACK``.
* :func:`socketserver_round_trips` shows the same stall in the other direction,
  on a ``socketserver`` server that writes its answer in two pieces, and its
  cure, ``StreamRequestHandler.disable_nagle_algorithm``.
* :func:`corked_hold` times how long ``TCP_CORK`` holds a partial segment that
  is never uncorked.
* :func:`pingpong_patterns` and :func:`capture_stalled_round` must run inside a
  private network namespace (:func:`tcpref.netns.run`): the first changes the
  namespace's ``tcp_pingpong_thresh``, the second captures packets and counts
  the namespace's delayed ACKs.

Every function here binds 127.0.0.1 on port 0, bounds each wait, and joins and
closes everything it started before it returns.  Linux only: ``TCP_CORK``,
``TCP_QUICKACK`` and ``TCP_INFO`` are Linux's.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from tcpref import netns
from tcpref.capture import CapturedExchange, capture_exchange
from tcpref.kernel import tcp_info

__all__ = [
    "QUICKACK_MODES",
    "REPLY",
    "REQUEST",
    "STALL",
    "WRITE_STYLES",
    "CorkHold",
    "RoundTrips",
    "ScenarioError",
    "StalledRound",
    "capture_stalled_round",
    "corked_hold",
    "pingpong_patterns",
    "round_trips",
    "socketserver_round_trips",
]

#: The request, in the two pieces the client writes.
REQUEST = (b"head", b"body")
#: The server's answer.
REPLY = b"reply"
#: The round trip, in seconds, beyond which a round trip counts as stalled.
#: The delayed-ACK timer's shortest wait on Linux is 40 ms, and a round trip on
#: loopback without it takes well under a millisecond.
STALL = 0.030

WriteStyle = Literal["two sends", "one sendall", "sendmsg", "corked"]
#: The ways the client can write each request.  ``'two sends'`` is one ``send``
#: per piece; ``'one sendall'`` joins the pieces into one buffer first;
#: ``'sendmsg'`` passes them as two buffers to one ``sendmsg``, like ``writev``;
#: ``'corked'`` sends them one by one between ``TCP_CORK`` on and off.
WRITE_STYLES: tuple[WriteStyle, ...] = ("two sends", "one sendall", "sendmsg", "corked")
QuickAckMode = Literal["never", "once", "every read"]
#: When the server may set ``TCP_QUICKACK``.  ``'never'``; ``'once'``, right
#: after ``accept``; or ``'every read'``, after each ``recv``.
QUICKACK_MODES: tuple[QuickAckMode, ...] = ("never", "once", "every read")

_LOOPBACK = "127.0.0.1"
# Every blocking call waits at most this long, in seconds.
_TIMEOUT = 5.0
_PINGPONG_THRESH = "/proc/sys/net/ipv4/tcp_pingpong_thresh"
_REQUEST_SIZE = sum(map(len, REQUEST))


class ScenarioError(RuntimeError):
    """A scenario could not run as planned; the message says what went wrong."""


@dataclass(frozen=True)
class RoundTrips:
    """How long each round trip of one connection took, and what the receiver's kernel saw.

    Attributes:
        times: Seconds each round trip took, in order, from the first write of a
            message to the last byte of its answer.
        warmup: How many of the first round trips :attr:`warm` leaves out.
        ato: The delayed-ACK timeout, in µs, of the socket that received the
            message written in pieces (``tcpi_ato`` of ``TCP_INFO``), read after
            the last round.
        data_segments: How many segments carrying data that socket received
            (``tcpi_data_segs_in``): one per write that left on its own.
    """

    times: tuple[float, ...]
    warmup: int
    ato: int
    data_segments: int

    @property
    def stalled(self) -> tuple[bool, ...]:
        """For each round trip, whether it took longer than :data:`STALL`."""
        return tuple(seconds > STALL for seconds in self.times)

    @property
    def warm(self) -> tuple[float, ...]:
        """The round trips after the first :attr:`warmup`."""
        return self.times[self.warmup :]

    @property
    def median(self) -> float:
        """The median of :attr:`warm`, in seconds."""
        return statistics.median(self.warm)


def _check_rounds(rounds: int, warmup: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 100:
        raise ValueError(f"rounds must be an int in range 1-100, not {rounds!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < rounds:
        raise ValueError(f"warmup must be an int in range 0-{rounds - 1}, not {warmup!r}")


@contextlib.contextmanager
def _serving(serve: Callable[[], None], name: str) -> Iterator[None]:
    """Run ``serve`` in a thread; on exit join it and raise what it raised.

    A server thread's error must reach the caller, not vanish on stderr.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve()
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    try:
        yield
    finally:
        thread.join(2 * _TIMEOUT)
    if thread.is_alive():  # pragma: no cover (every wait in it is bounded)
        raise ScenarioError(f"the {name} thread did not finish")
    if failure:
        raise failure[0]


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((_LOOPBACK, 0))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
    except BaseException:
        listener.close()
        raise
    return listener


def _read_exact(sock: socket.socket, size: int, after_each_read: Callable[[], None]) -> bytes:
    """Read ``size`` bytes, calling ``after_each_read`` after every ``recv``."""
    data = b""
    # Ends: each pass reads at least one byte, or raises at end of stream.
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        after_each_read()
        if not chunk:
            raise ScenarioError(f"the peer closed after {data!r}, before {size} bytes")
        data += chunk
    return data


def _set_quickack(sock: socket.socket) -> None:
    # TCP_QUICKACK is not a lasting mode: the kernel may start delaying again on
    # its own, which is why a server that wants it sets it after every read.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _answer_requests(
    listener: socket.socket,
    rounds: int,
    quickack: QuickAckMode,
    seen: list[tuple[int, int]],
    nodelay: bool = False,
) -> Callable[[], None]:
    """The server: answer ``rounds`` whole requests, then record its tcp_info."""

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(_TIMEOUT)
            if nodelay:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if quickack == "once":
                _set_quickack(connection)

            def after_read() -> None:
                if quickack == "every read":
                    _set_quickack(connection)

            for _ in range(rounds):
                _read_exact(connection, _REQUEST_SIZE, after_read)
                connection.sendall(REPLY)
            info = tcp_info(connection)
            seen.append((info.ato, info.data_segs_in or 0))

    return serve


def _write_request(client: socket.socket, writes: WriteStyle) -> None:
    head, body = REQUEST
    if writes == "two sends":
        client.sendall(head)
        client.sendall(body)
    elif writes == "one sendall":
        client.sendall(head + body)
    elif writes == "sendmsg":
        # Both buffers go to the kernel in one call, as with writev(2).
        if client.sendmsg([head, body]) != len(head) + len(body):
            raise ScenarioError("sendmsg sent part of the request")
    else:
        # Corked, the kernel sends only full segments; uncorking sends the rest.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        client.sendall(head)
        client.sendall(body)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


def _time_rounds(client: socket.socket, rounds: int, writes: WriteStyle) -> tuple[float, ...]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _write_request(client, writes)
        _read_exact(client, len(REPLY), lambda: None)
        times.append(time.perf_counter() - start)
    return tuple(times)


def round_trips(
    rounds: int = 6,
    *,
    writes: WriteStyle = "two sends",
    nodelay: bool = False,
    quickack: QuickAckMode = "never",
    server_nodelay: bool = False,
    warmup: int = 1,
) -> RoundTrips:
    """Time ``rounds`` requests and answers on one loopback connection.

    The client writes each request (:data:`REQUEST`) as ``writes`` says and reads
    the answer; a server thread reads the whole request, then answers with
    :data:`REPLY`.

    Args:
        rounds: How many round trips, 1-100; each stalled one takes about 40 ms.
        writes: How the client writes a request, one of :data:`WRITE_STYLES`.
        nodelay: Set ``TCP_NODELAY`` on the client: Nagle's algorithm off.
        quickack: When the server sets ``TCP_QUICKACK``, one of
            :data:`QUICKACK_MODES`.
        server_nodelay: Set ``TCP_NODELAY`` on the server's end of the connection.
        warmup: How many first round trips :attr:`RoundTrips.median` leaves out.

    Returns:
        The round trips, with the server's ``ato`` and data segments received.

    Raises:
        ValueError: if an argument is not one of the values above.
        ScenarioError: if a side closes early or a thread does not finish.
        OSError: if a socket call fails or times out.
    """
    _check_rounds(rounds, warmup)
    if writes not in WRITE_STYLES:
        raise ValueError(f"writes must be one of {WRITE_STYLES}, not {writes!r}")
    if quickack not in QUICKACK_MODES:
        raise ValueError(f"quickack must be one of {QUICKACK_MODES}, not {quickack!r}")
    seen: list[tuple[int, int]] = []
    with _listener() as listener:
        serve = _answer_requests(listener, rounds, quickack, seen, server_nodelay)
        # The client closes first on the way out, so a failed client never
        # leaves the server waiting for a request.
        with (
            _serving(serve, "nagle-server"),
            socket.create_connection(listener.getsockname(), timeout=_TIMEOUT) as client,
        ):
            if nodelay:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = _time_rounds(client, rounds, writes)
    ato, data_segments = seen[0]
    return RoundTrips(times, warmup, ato, data_segments)


# == A socketserver server that answers in two writes ================================


class _TwoPieceAnswer(socketserver.StreamRequestHandler):
    """Answer each line with ``b'head'`` and ``b'body'``, in two writes."""

    def handle(self) -> None:
        self.connection.settimeout(_TIMEOUT)
        # Ends: at end of stream, when the client has sent all its lines.
        while self.rfile.readline():
            # wbufsize is 0, so each write is one sendall: two small segments.
            self.wfile.write(REQUEST[0])
            self.wfile.write(REQUEST[1])


class _KeepingServer(socketserver.TCPServer):
    """A TCPServer that keeps a handler's error for the caller instead of printing it."""

    failures: list[BaseException]

    def handle_error(self, request: object, client_address: object) -> None:
        # Called inside the except block that caught the handler's error.
        self.failures.append(sys.exception() or ScenarioError("a handler failed"))


def _lines_answered(server: _KeepingServer, rounds: int) -> RoundTrips:
    """Send ``rounds`` lines to ``server`` on one connection; time each answer."""
    with socket.create_connection(server.socket.getsockname(), timeout=_TIMEOUT) as client:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            client.sendall(b"line\n")
            _read_exact(client, _REQUEST_SIZE, lambda: None)
            times.append(time.perf_counter() - start)
        info = tcp_info(client)
    return RoundTrips(tuple(times), 0, info.ato, info.data_segs_in or 0)


def socketserver_round_trips(
    rounds: int = 4, *, disable_nagle_algorithm: bool = False, warmup: int = 1
) -> RoundTrips:
    """Time ``rounds`` lines sent to a ``socketserver`` server that answers in two writes.

    The server is a ``socketserver.TCPServer`` whose
    ``StreamRequestHandler`` writes each answer as
    ``b'head'`` and then ``b'body'``; the client sends a line and reads the
    eight bytes.  Here the server writes in pieces and the client's kernel
    delays its ACKs, so :attr:`RoundTrips.ato` and
    :attr:`RoundTrips.data_segments` are the client's.

    Args:
        rounds: How many round trips, 1-100.
        disable_nagle_algorithm: The handler's class attribute of that name:
            when true, ``socketserver`` sets ``TCP_NODELAY`` on each connection.
        warmup: How many first round trips :attr:`RoundTrips.median` leaves out.

    Raises:
        ValueError: if ``rounds`` or ``warmup`` is out of range.
        ScenarioError: if a side closes early or the server does not stop.
        OSError: if a socket call fails or times out, in the client or the
            handler.
    """
    _check_rounds(rounds, warmup)
    handler = type(
        "Handler", (_TwoPieceAnswer,), {"disable_nagle_algorithm": disable_nagle_algorithm}
    )
    with _KeepingServer((_LOOPBACK, 0), handler) as server:
        server.failures = []
        # poll_interval bounds how long shutdown() waits for serve_forever to see it.
        serving = _serving(lambda: server.serve_forever(poll_interval=0.05), "socketserver")
        with serving, contextlib.ExitStack() as stop:
            stop.callback(server.shutdown)
            run = _lines_answered(server, rounds)
    if server.failures:
        raise server.failures[0]
    return RoundTrips(run.times, warmup, run.ato, run.data_segments)


# == TCP_CORK never taken off =========================================================


@dataclass(frozen=True)
class CorkHold:
    """How long a corked partial segment waited before the kernel sent it anyway.

    Attributes:
        held: Seconds from the ``send`` to the peer's ``recv`` returning the byte.
        rto: The sender's retransmission timeout, in seconds, just before the
            ``send`` (``tcpi_rto``).
    """

    held: float
    rto: float


def corked_hold() -> CorkHold:
    """Send one byte with ``TCP_CORK`` on, never uncork, and time its arrival.

    A corked socket sends only full segments; a partial one waits until the
    kernel's probe timer runs out, after the larger of the socket's
    retransmission timeout and ``TCP_RTO_MIN`` (200 ms), and then goes anyway.

    Raises:
        ScenarioError: if the byte does not arrive intact.
        OSError: if a socket call fails, or the byte does not come within 5 s.
    """
    with (
        _listener() as listener,
        socket.create_connection(listener.getsockname(), timeout=_TIMEOUT) as client,
    ):
        server, _ = listener.accept()
        with server:
            server.settimeout(_TIMEOUT)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            rto = tcp_info(client).rto / 1e6
            start = time.perf_counter()
            client.sendall(b"x")
            received = server.recv(1)
            held = time.perf_counter() - start
    if received != b"x":
        raise ScenarioError(f"the server read {received!r}, not b'x'")
    return CorkHold(held, rto)


# == Inside a network namespace: the pingpong threshold, and the wire ================


def _require_namespace(what: str) -> None:
    if not netns.inside():
        raise ScenarioError(f"{what} must run inside tcpref.netns.run(), not on the host")


def _set_pingpong_thresh(value: int) -> int:
    """Set this namespace's ``tcp_pingpong_thresh``; return the value it had."""
    try:
        with open(_PINGPONG_THRESH) as setting:
            before = int(setting.read())
    except FileNotFoundError:
        raise ScenarioError(
            "this kernel has no net.ipv4.tcp_pingpong_thresh (Linux 6.8+)"
        ) from None
    with open(_PINGPONG_THRESH, "w") as setting:
        setting.write(f"{value}\n")
    return before


def pingpong_patterns(thresholds: Sequence[int] = (1, 2, 3), rounds: int = 7) -> dict[int, str]:
    """Which round trips stall, for each value of ``tcp_pingpong_thresh``.

    A Linux receiver delays its ACKs once it takes the connection for an
    interactive one: after it has answered ``tcp_pingpong_thresh`` times within
    the delayed-ACK timeout of receiving.  When a delayed ACK's timer runs out,
    it stops thinking so, and starts counting again.  Must run inside
    :func:`tcpref.netns.run`, since it changes the namespace's setting (and puts
    it back afterwards).

    Args:
        thresholds: The values to try, each 1-10.
        rounds: Round trips per value, as in :func:`round_trips`.

    Returns:
        For each threshold, one character per round trip of the default
        exchange (:func:`round_trips`): ``S`` for one that stalled (took longer
        than :data:`STALL`), ``.`` for one that did not.

    Raises:
        ScenarioError: outside a namespace, or on a kernel without the setting.
        ValueError: if a threshold or ``rounds`` is out of range.
        OSError: if a socket call fails.
    """
    _require_namespace("pingpong_patterns()")
    for value in thresholds:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
            raise ValueError(f"each threshold must be an int in range 1-10, not {value!r}")
    patterns = {}
    for value in thresholds:
        before = _set_pingpong_thresh(value)
        try:
            run = round_trips(rounds, warmup=0)
        finally:
            _set_pingpong_thresh(before)
        patterns[value] = "".join("S" if stalled else "." for stalled in run.stalled)
    return patterns


@dataclass(frozen=True)
class StalledRound:
    """One stalled round trip as captured on the wire, and the delayed ACKs counted.

    Attributes:
        rows: The round's four segments that matter, in order, each as
            ``(sender, what, gap)``: who sent it, what it carried
            (``"b'head'"``, or ``"ACK of b'head'"``), and the seconds since the
            row before (0.0 for the first).
        delayed_acks: How much the namespace's ``DelayedACKs`` counter
            (``/proc/net/netstat``, the ACKs sent when a delayed-ACK timer ran
            out) grew during the measured rounds.
        rounds: How many round trips were measured after the warm-up round.
    """

    rows: tuple[tuple[str, str, float], ...]
    delayed_acks: int
    rounds: int

    def outline(self) -> str:
        """The rows as a table, with each gap shown only as a pause or none."""
        lines = [f"{'sender':8}{'segment':18}after the one before"]
        for sender, what, gap in self.rows:
            pause = "-" if what == "b'head'" else ("a pause" if gap > STALL else "no pause")
            lines.append(f"{sender:8}{what:18}{pause}")
        return "\n".join(lines)


def _delayed_acks() -> int:
    """The ``TcpExt: DelayedACKs`` counter of ``/proc/net/netstat``."""
    with open("/proc/net/netstat") as file:
        lines = file.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["DelayedACKs"])
    raise ScenarioError("/proc/net/netstat has no TcpExt counters")


Address = tuple[str, int]
# A captured segment, reduced to what picking a round needs: the sender, the
# sequence and acknowledgment numbers relative to the ISNs, the payload, the time.
_Captured = tuple[str, int, int, bytes, float]


def _stalled_exchange(rounds: int, counted: list[int]) -> Callable[[], tuple[Address, Address]]:
    """The captured script: one warm-up round, then ``rounds`` measured ones."""

    def script() -> tuple[Address, Address]:
        seen: list[tuple[int, int]] = []
        with _listener() as listener:
            serve = _answer_requests(listener, rounds + 1, "never", seen)
            address = listener.getsockname()
            with (
                _serving(serve, "nagle-server"),
                socket.create_connection(address, timeout=_TIMEOUT) as client,
            ):
                _time_rounds(client, 1, "two sends")
                before = _delayed_acks()
                _time_rounds(client, rounds, "two sends")
                counted.append(_delayed_acks() - before)
                mine = client.getsockname()
        return mine, address

    return script


def _is_row(what: str, head_seq: int, segment: _Captured) -> bool:
    """Whether ``segment`` is the row called ``what`` of the round starting at ``head_seq``."""
    sender, seq, ack, data, _ = segment
    if what == "b'head'":
        return sender == "client" and seq == head_seq and data == REQUEST[0]
    if what == "ACK of b'head'":
        return sender == "server" and not data and ack == head_seq + len(REQUEST[0])
    if what == "b'body'":
        return sender == "client" and data == REQUEST[1]
    return sender == "server" and data == REPLY


def _rows_of_round(segments: Sequence[_Captured], head_seq: int) -> list[tuple[str, str, float]]:
    """Pick a round's head, the server's bare ACK of it, the body and the reply, in order."""
    wanted = ("b'head'", "ACK of b'head'", "b'body'", "b'reply'")
    rows: list[tuple[str, str, float]] = []
    previous: float | None = None
    for segment in segments:
        if len(rows) == len(wanted):
            break
        what = wanted[len(rows)]
        if _is_row(what, head_seq, segment):
            when = segment[4]
            rows.append((segment[0], what, 0.0 if previous is None else when - previous))
            previous = when
    if len(rows) != len(wanted):
        raise ScenarioError(f"the capture lacks segments of the stalled round: found {rows}")
    return rows


def _relative(captured: CapturedExchange) -> list[_Captured]:
    """The captured segments, with numbers relative to each side's ISN."""
    if captured.client_isn is None or captured.server_isn is None:
        raise ScenarioError("the capture lacks the handshake")
    isns = {"client": captured.client_isn, "server": captured.server_isn}
    segments: list[_Captured] = []
    for entry in captured.entries:
        if entry.segment is None:
            continue
        peer = "server" if entry.sender == "client" else "client"
        seq = (entry.segment.seq - isns[entry.sender]) % 2**32
        ack = (entry.segment.ack - isns[peer]) % 2**32
        segments.append((entry.sender, seq, ack, entry.segment.payload, entry.time))
    return segments


def capture_stalled_round(rounds: int = 2) -> StalledRound:
    """Capture a warm connection's round trips; show the first stalled one's segments.

    One round trip warms the connection up, then ``rounds`` more are measured
    while the namespace's ``DelayedACKs`` counter is read before and after.
    Must run inside :func:`tcpref.netns.run` (capturing needs CAP_NET_RAW, and
    the counter must count this connection alone).

    Args:
        rounds: Measured round trips, 1-20.

    Raises:
        ScenarioError: outside a namespace, or if the capture lacks a segment.
        ValueError: if ``rounds`` is out of range.
        OSError: if a socket call fails.
    """
    _require_namespace("capture_stalled_round()")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ValueError(f"rounds must be an int in range 1-20, not {rounds!r}")
    counted: list[int] = []
    # At most a handshake, about six segments a round, and a teardown; segments
    # are captured as they are sent, so the short timeout only ends the reading.
    script = _stalled_exchange(rounds, counted)
    captured = capture_exchange(script, count=8 * (rounds + 1) + 10, timeout=0.1)
    # The first measured round's head follows the warm-up round's request.
    rows = _rows_of_round(_relative(captured), head_seq=1 + _REQUEST_SIZE)
    return StalledRound(tuple(rows), counted[0], rounds)
