"""Congestion control on the live kernel: the window, the algorithm, and a staged loss (Linux).

A TCP sender keeps a *congestion window* (cwnd) besides the receiver's window, and
never has more unacknowledged data in flight than the smaller of the two (RFC 5681
Section 3).  Linux counts cwnd and the slow-start threshold (ssthresh) in segments,
and reports both in ``struct tcp_info`` (:func:`tcpref.kernel.tcp_info`).  This
module sets up what a page needs to watch them:

* pure arithmetic: RFC 6928's bound on the initial window (:func:`rfc6928_window`),
  and the new ssthresh after a loss under Reno and CUBIC (:func:`reno_ssthresh`,
  :func:`cubic_ssthresh`), as ``net/ipv4/tcp_cong.c`` and ``tcp_cubic.c`` compute it;
* the algorithm: the settings under ``/proc/sys/net/ipv4`` (:func:`algorithms`), the
  ``TCP_CONGESTION`` socket option (:func:`congestion`, :func:`set_congestion`), and
  a network namespace's own default (:func:`default_in_namespace`);
* live runs on loopback: cwnd during a bulk transfer (:func:`slow_start`), and, in a
  private network namespace (:func:`tcpref.netns.run`), one data segment lost and
  repaired by fast retransmit (:func:`fast_retransmit`) or by the retransmission
  timer (:func:`timeout_loss`), with the sender's ``tcp_info`` before, during and
  after, and the kernel's ``TcpExt`` counters.

Each live run pins itself to one processor while it works: on loopback, a sender
that moves between processors can have its segments delivered out of order, and
the reordering makes the kernel retransmit spuriously and lower cwnd on its own.
A run in a namespace pins its forked child; :func:`slow_start` pins the calling
thread and puts its processors back afterwards.

>>> reno_ssthresh(67), cubic_ssthresh(67), rfc6928_window(1460)
(33, 46, 14600)
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tcpref import capture, netns
from tcpref.errors import translate
from tcpref.faults import LossInjector, attach, detach, drop_program
from tcpref.kernel import TcpInfo, tcp_info
from tcpref.segment import Flags
from tcpref.sim import Drop
from tcpref.trace import Side

__all__ = [
    "CUBIC_BETA",
    "INFINITE_SSTHRESH",
    "INITIAL_WINDOW",
    "LOSS_COUNTERS",
    "NAME_MAX",
    "Algorithms",
    "LossReaction",
    "NamespaceDefault",
    "Window",
    "algorithms",
    "congestion",
    "cubic_ssthresh",
    "default_in_namespace",
    "fast_retransmit",
    "parse_names",
    "reno_ssthresh",
    "rfc6928_window",
    "set_congestion",
    "slow_start",
    "timeout_loss",
]

#: The ssthresh of a connection that has not yet lost anything, which stands for
#: "infinite" (``TCP_INFINITE_SSTHRESH`` in ``include/net/tcp.h``), in segments.
INFINITE_SSTHRESH = 0x7FFFFFFF
#: Linux's initial congestion window, in segments (``TCP_INIT_CWND``), after RFC 6928.
INITIAL_WINDOW = 10
#: CUBIC's multiplicative decrease, as ``tcp_cubic.c`` keeps it: 717/1024, about the
#: 0.7 of RFC 9438 Section 4.6.
CUBIC_BETA = (717, 1024)
#: The longest algorithm name, in characters (``TCP_CA_NAME_MAX`` is 16, with the NUL).
NAME_MAX = 15
#: The ``TcpExt`` counters of ``/proc/net/netstat`` that a staged loss reports: fast
#: recoveries entered with SACK, fast retransmissions, tail loss probes, and
#: retransmission timeouts.  Inside a namespace they count that namespace only.
LOSS_COUNTERS = ("TCPSackRecovery", "TCPFastRetrans", "TCPLossProbes", "TCPTimeouts")

_PROC_IPV4 = "sys/net/ipv4"
_TIMEOUT = 5.0
#: Bytes of the write whose one segment is lost.
_LOST_BYTES = 1000
_PSH_ACK = Flags.PSH | Flags.ACK
#: How long a capture must stay quiet before its segments are taken as all there is.
_QUIET = 0.05


# == Arithmetic ==========================================================================


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    # bool is an int subclass, but True is never a sensible window.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def rfc6928_window(mss: int) -> int:
    """RFC 6928's upper bound on the initial window, in bytes: min(10*MSS, max(2*MSS, 14600)).

    The bound is in bytes, so a large MSS gets fewer segments: ten of 1460 bytes,
    but two of 8960 (a jumbo frame's).  Linux starts every connection at
    :data:`INITIAL_WINDOW` segments whatever their size.

    >>> [rfc6928_window(mss) // mss for mss in (536, 1460, 8960)]
    [10, 10, 2]

    Raises:
        TypeError: if ``mss`` is not an int.
        ValueError: if ``mss`` is not positive.
    """
    _check_count("mss", mss)
    return min(10 * mss, max(2 * mss, 14600))


def reno_ssthresh(cwnd: int) -> int:
    """The ssthresh Reno sets on a loss: half the congestion window, at least 2 segments.

    This is ``tcp_reno_ssthresh()`` in ``net/ipv4/tcp_cong.c``.  RFC 5681's equation
    (4) halves the *flight size*, the data outstanding, instead; the two agree when
    the sender keeps its window full.

    >>> reno_ssthresh(67), reno_ssthresh(3)
    (33, 2)

    Raises:
        TypeError: if ``cwnd`` is not an int.
        ValueError: if ``cwnd`` is not positive.
    """
    _check_count("cwnd", cwnd)
    return max(cwnd // 2, 2)


def cubic_ssthresh(cwnd: int) -> int:
    """The ssthresh CUBIC sets on a loss: cwnd times 717/1024, at least 2 segments.

    This is ``bictcp_recalc_ssthresh()`` in ``net/ipv4/tcp_cubic.c``, the
    multiplicative decrease of RFC 9438 Section 4.6 with beta_cubic = 0.7.

    >>> cubic_ssthresh(67), cubic_ssthresh(2)
    (46, 2)

    Raises:
        TypeError: if ``cwnd`` is not an int.
        ValueError: if ``cwnd`` is not positive.
    """
    _check_count("cwnd", cwnd)
    numerator, denominator = CUBIC_BETA
    return max(cwnd * numerator // denominator, 2)


# == The algorithm: settings and the TCP_CONGESTION option ===============================


@dataclass(frozen=True)
class Algorithms:
    """The congestion control settings of one network namespace.

    Attributes:
        default: What a new socket uses (``tcp_congestion_control``).
        available: Every algorithm the kernel has registered, built in or loaded
            as a module (``tcp_available_congestion_control``).
        allowed: Those a process without CAP_NET_ADMIN may choose for a socket
            (``tcp_allowed_congestion_control``).
    """

    default: str
    available: tuple[str, ...]
    allowed: tuple[str, ...]


def parse_names(text: str) -> tuple[str, ...]:
    r"""Split the text of a congestion control setting into algorithm names.

    >>> parse_names("reno cubic\n")
    ('reno', 'cubic')

    Raises:
        TypeError: if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {text!r}")
    return tuple(text.split())


def algorithms(proc: str = "/proc") -> Algorithms:
    """Read this network namespace's congestion control settings.

    Args:
        proc: Where procfs is mounted; tests pass a folder of canned files.

    Raises:
        FileNotFoundError: if the settings do not exist (not Linux, or no procfs).
        ValueError: if the default setting does not hold exactly one name.
    """
    root = Path(proc) / _PROC_IPV4
    default = parse_names((root / "tcp_congestion_control").read_text())
    if len(default) != 1:
        raise ValueError(f"tcp_congestion_control should hold one name, not {default!r}")
    return Algorithms(
        default=default[0],
        available=parse_names((root / "tcp_available_congestion_control").read_text()),
        allowed=parse_names((root / "tcp_allowed_congestion_control").read_text()),
    )


def _check_tcp(sock: object) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {sock!r}")
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"sock must be a TCP socket, not {sock!r}")
    return sock


def congestion(sock: socket.socket) -> str:
    """The congestion control algorithm of ``sock`` (``getsockopt TCP_CONGESTION``).

    The kernel fills a buffer of 16 bytes with the name and NUL bytes; this strips them.

    Raises:
        TypeError: if ``sock`` is not a socket.
        ValueError: if ``sock`` is not a TCP socket.
        SocketCallError: if the call fails (a closed socket: EBADF).
    """
    _check_tcp(sock)
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, NAME_MAX + 1)
    except OSError as exc:
        raise translate(exc, call="congestion", address=_peer(sock)) from exc
    return raw.split(b"\0", 1)[0].decode("ascii")


# What usually causes an errno of set_congestion, and what to do; {name} is the name.
_HINTS = {
    errno.ENOENT: (
        "No congestion control algorithm named {name!r} is registered here: choose one "
        "listed in /proc/sys/net/ipv4/tcp_available_congestion_control (an algorithm built "
        "as a module is listed once the module is loaded)."
    ),
    errno.EPERM: (
        "Without CAP_NET_ADMIN a socket may use only the algorithms listed in "
        "/proc/sys/net/ipv4/tcp_allowed_congestion_control."
    ),
}


def _peer(sock: socket.socket) -> tuple[str, int] | None:
    try:
        peer: tuple[str, int] = sock.getpeername()
    except OSError:
        return None  # not connected: the message names no address
    return peer


def set_congestion(sock: socket.socket, name: str) -> None:
    """Choose the congestion control algorithm of ``sock`` (``setsockopt TCP_CONGESTION``).

    Call it before ``connect()`` or ``listen()`` to have the connection use the
    algorithm from its start; on a connected socket the new algorithm takes over
    the current window.

    Raises:
        TypeError: if ``sock`` is not a socket or ``name`` not a str.
        ValueError: if ``sock`` is not a TCP socket, or ``name`` is empty, not
            ASCII or longer than :data:`NAME_MAX` (the kernel would cut it short).
        SocketCallError: if the kernel refuses, keeping the errno: ENOENT for a name
            it does not know, EPERM (a ``PermissionError``) for one outside
            ``tcp_allowed_congestion_control`` without CAP_NET_ADMIN.  The message
            names the call, the peer if connected, and what to do.
    """
    _check_tcp(sock)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'reno', not {name!r}")
    if not (name and name.isascii() and len(name) <= NAME_MAX and "\0" not in name):
        raise ValueError(f"name must be 1 to {NAME_MAX} ASCII characters, not {name!r}")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode("ascii"))
    except OSError as exc:
        error = translate(exc, call="set_congestion", address=_peer(sock))
        hint = _HINTS.get(exc.errno or 0)
        if hint is not None:
            error.hint = hint.format(name=name)
        raise error from exc


@dataclass(frozen=True)
class NamespaceDefault:
    """What changing a namespace's default algorithm did (:func:`default_in_namespace`).

    Attributes:
        before: The namespace's default when it was made.
        after: Its default once the setting was written.
        new_socket: The algorithm of a socket made afterwards.
        old_socket: The algorithm of a socket made before the change.
    """

    before: str
    after: str
    new_socket: str
    old_socket: str


def default_in_namespace(name: str = "reno") -> NamespaceDefault:
    """Set ``tcp_congestion_control`` to ``name`` in a private namespace, and watch sockets.

    Each network namespace has its own default, so the host's is never touched.

    Raises:
        TypeError: if ``name`` is not a str.
        ValueError: if ``name`` is not a possible algorithm name.
        NamespaceUnavailableError: if no namespace can be made here.
        FileNotFoundError: if the kernel knows no algorithm called ``name`` (the
            write fails with ENOENT).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'reno', not {name!r}")
    if not (name and name.isascii() and len(name) <= NAME_MAX and name.isprintable()):
        raise ValueError(f"name must be 1 to {NAME_MAX} ASCII characters, not {name!r}")
    return netns.run(_default_inside, name, timeout=10.0)


def _default_inside(name: str) -> NamespaceDefault:
    path = Path("/proc") / _PROC_IPV4 / "tcp_congestion_control"
    before = algorithms().default
    with socket.socket() as old:
        path.write_text(name)
        with socket.socket() as new:
            return NamespaceDefault(before, algorithms().default, congestion(new), congestion(old))


# == Live runs: shared pieces ============================================================


@contextlib.contextmanager
def _one_processor() -> Iterator[None]:
    """Run the calling thread, and threads it starts, on one processor; then put it back.

    On loopback the receiving side runs on the processor that sent, so a sender that
    stays on one processor has its segments delivered in order.
    """
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield  # not Linux: nothing to pin
        return
    before = getter(0)
    setter(0, {min(before)})
    try:
        yield
    finally:
        setter(0, before)


class _Reader:
    """Read a socket to end of file in a thread, counting the bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="congestion-reader")
        self.thread.start()

    def _run(self) -> None:
        try:
            # Ends: each pass reads at least a byte, or meets end of file or the timeout.
            while chunk := self.sock.recv(1 << 20):
                self.received += len(chunk)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self) -> int:
        """Wait for end of file; return the bytes read.

        Raises:
            TimeoutError: if the thread did not finish.
            OSError: what the reading raised.
        """
        self.thread.join(2 * _TIMEOUT)
        if self.thread.is_alive():  # pragma: no cover (every recv has a timeout)
            raise TimeoutError("the reading thread did not finish")
        if self.error is not None:
            raise self.error
        return self.received


def _wait_until(sock: socket.socket, done: str, seconds: float = _TIMEOUT) -> TcpInfo:
    """Poll ``sock``'s tcp_info until ``done`` holds; return it.

    ``done`` is ``"acked"`` (everything written was sent and acknowledged) or a
    congestion state's name such as ``"Loss"``.

    Raises:
        TimeoutError: if it does not hold within ``seconds``.
    """
    deadline = time.monotonic() + seconds
    # Ends: at the deadline, or once the condition holds.
    while True:
        info = tcp_info(sock)
        if done == "acked":
            if info.unacked == 0 and not info.notsent_bytes:
                return info
        elif info.ca_state == done:
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sender was not {done} within {seconds:g} s")
        time.sleep(0.001)


@contextlib.contextmanager
def _connection(algorithm: str) -> Iterator[tuple[socket.socket, socket.socket, int]]:
    """A client that uses ``algorithm``, its server end, and the listener's port.

    The client is the sender; a thread reads the server end, and everything is
    closed on the way out.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        listener.settimeout(_TIMEOUT)
        client = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        set_congestion(client, algorithm)  # before connect: from the first segment on
        client.settimeout(_TIMEOUT)
        client.connect(listener.getsockname())
        server = stack.enter_context(listener.accept()[0])
        server.settimeout(_TIMEOUT)
        yield client, server, listener.getsockname()[1]


def _check_algorithm(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a str such as 'reno', not {name!r}")
    if not (name and name.isascii() and len(name) <= NAME_MAX and name.isprintable()):
        raise ValueError(f"algorithm must be 1 to {NAME_MAX} ASCII characters, not {name!r}")
    return name


# == Slow start on loopback ==============================================================


@dataclass(frozen=True)
class Window:
    """The sender's congestion state at one moment of a bulk transfer.

    Attributes:
        sent: Bytes written and acknowledged so far.
        cwnd: The congestion window, segments (``snd_cwnd``).
        ssthresh: The slow-start threshold, segments; :data:`INFINITE_SSTHRESH`
            until a loss lowers it.
        ca_state: The congestion state, ``"Open"`` while nothing is amiss.
        mss: The segment size the window is counted in, bytes (``snd_mss``).
        rwnd: The receiver's window, bytes (``snd_wnd``; 0 before Linux 5.4,
            whose ``tcp_info`` lacks it).
    """

    sent: int
    cwnd: int
    ssthresh: int
    ca_state: str
    mss: int
    rwnd: int


def _window(sent: int, info: TcpInfo) -> Window:
    rwnd = info.snd_wnd or 0
    return Window(sent, info.snd_cwnd, info.snd_ssthresh, info.ca_state, info.snd_mss, rwnd)


def slow_start(
    amounts: Sequence[int] = (64 << 10, 1 << 20, 4 << 20, 16 << 20), algorithm: str = "reno"
) -> tuple[Window, ...]:
    """Send ``amounts`` of bytes in turn on loopback, and read cwnd after each.

    The first :class:`Window` is the new connection's, before any data; each
    later one is read once all the data so far was acknowledged.  Reno's slow start
    is RFC 5681's and nothing else, which is why it is the default here.

    Raises:
        TypeError: if an amount is not an int, or ``algorithm`` not a str.
        ValueError: if ``amounts`` is empty, an amount not positive, their sum over
            64 MiB, or ``algorithm`` not a possible name.
        SocketCallError: if the kernel refuses the algorithm.
        TimeoutError: if the data is not acknowledged within 5 s.
        OSError: if a socket call fails.
    """
    amounts = tuple(_check_count("amount", amount) for amount in amounts)
    if not amounts or sum(amounts) > 64 << 20:
        raise ValueError(f"amounts must be one or more, 64 MiB in all at most, not {amounts!r}")
    _check_algorithm(algorithm)
    with _one_processor(), _connection(algorithm) as (client, server, _):
        reader = _Reader(server)
        try:
            windows = [_window(0, tcp_info(client))]
            sent = 0
            for amount in amounts:
                client.sendall(b"x" * amount)
                sent += amount
                windows.append(_window(sent, _wait_until(client, "acked")))
        finally:
            client.shutdown(socket.SHUT_WR)
            received = reader.join()
    if received != sent:
        raise OSError(errno.EIO, f"the reader received {received} bytes of {sent}")
    return tuple(windows)


# == A staged loss, in a namespace =======================================================


@dataclass(frozen=True)
class LossReaction:
    """How the sender's congestion control answered one lost data segment.

    Attributes:
        algorithm: The sender's congestion control algorithm.
        repair: ``"fast retransmit"`` or ``"timeout"``: what was let through.
        before: The sender's ``tcp_info`` after the warm-up, all of it acknowledged.
        during: The sender's ``tcp_info`` while the loss was unrepaired and the
            sender in the Loss state (``"timeout"`` only; on loopback a fast
            recovery is over within microseconds, too soon to be read).
        after: The sender's ``tcp_info`` once everything was acknowledged.
        counters: How much each of :data:`LOSS_COUNTERS` grew over the loss.
        lost_flags: The lost segment's flags as the capture showed them.
        lost_length: Its payload, bytes.
        copies: How often the capture saw it sent: the original, then each
            retransmission.
        waits: Seconds between one copy and the next.
        following: The flags of each data segment sent after the lost one, once
            (``"fast retransmit"`` only).
        largest: The largest payload the capture saw in one packet, bytes.
    """

    algorithm: str
    repair: Literal["fast retransmit", "timeout"]
    before: TcpInfo
    during: TcpInfo | None
    after: TcpInfo
    counters: dict[str, int]
    lost_flags: str
    lost_length: int
    copies: int
    waits: tuple[float, ...]
    following: tuple[str, ...]
    largest: int


def fast_retransmit(
    algorithm: str = "reno", *, warmup: int = 8 << 20, following: int = 4
) -> LossReaction:
    """Lose one data segment after a warm-up, and let its fast retransmission through.

    In a private namespace, the client sends ``warmup`` bytes so that cwnd grows,
    then one write of 1000 bytes, one segment, which a
    :class:`tcpref.faults.LossInjector` with the plan
    ``Drop(1, sender="client", flags=PSH|ACK)`` makes the server's socket lose.
    Once the capture has shown it, the filter is off, and the client writes
    ``following`` full segments more: the server acknowledges the hole with SACK
    blocks, and the client retransmits the lost segment at once.

    The loss is staged with nothing else in flight because on loopback a round trip
    takes microseconds: the retransmission would come back long before an injector
    in user space could take its filter off.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``warmup`` is under 64 KiB or over 64 MiB, ``following``
            outside 1-16, or ``algorithm`` not a possible name.
        NamespaceUnavailableError: if no namespace can be made here.
        SocketCallError: if the kernel refuses the algorithm.
        TimeoutError: if the planned loss or the repair never came.
    """
    _check_algorithm(algorithm)
    _check_count("warmup", warmup, 64 << 10)
    _check_count("following", following)
    if warmup > 64 << 20 or following > 16:
        raise ValueError(
            f"warmup must be at most 64 MiB and following at most 16, not {warmup}, {following}"
        )
    return netns.run(_fast_inside, algorithm, warmup, following, timeout=30.0)


def timeout_loss(algorithm: str = "reno", *, warmup: int = 8 << 20) -> LossReaction:
    """Lose one data segment and every copy of it until the retransmission timer fires.

    In a private namespace, after ``warmup`` bytes, a socket filter
    (:func:`tcpref.faults.drop_program` for ``PSH|ACK``, attached with
    :func:`tcpref.faults.attach`) makes the server lose the client's next write and
    each retransmission of it, until the client's ``tcp_info`` says Loss: its
    retransmission timer ran out.  Then the filter comes off, and the next
    retransmission, on the backed-off timer, gets through.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``warmup`` is under 64 KiB or over 64 MiB, or ``algorithm``
            not a possible name.
        NamespaceUnavailableError: if no namespace can be made here.
        SocketCallError: if the kernel refuses the algorithm.
        TimeoutError: if the sender never reaches the Loss state, or the repair
            never comes.
    """
    _check_algorithm(algorithm)
    _check_count("warmup", warmup, 64 << 10)
    if warmup > 64 << 20:
        raise ValueError(f"warmup must be at most 64 MiB, not {warmup}")
    return netns.run(_timeout_inside, algorithm, warmup, timeout=30.0)


def _tcp_ext() -> dict[str, int]:
    """The ``TcpExt`` counters of ``/proc/net/netstat``: a line of names, then of values."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    counters: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            counters.update(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
    return counters


def _grown(before: dict[str, int]) -> dict[str, int]:
    now = _tcp_ext()
    return {name: now.get(name, 0) - before.get(name, 0) for name in LOSS_COUNTERS}


def _pin_child() -> None:
    """Pin this namespace child to one processor (it is a fork: nothing to put back)."""
    with contextlib.suppress(AttributeError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@contextlib.contextmanager
def _warmed_up(
    algorithm: str, warmup: int
) -> Iterator[tuple[socket.socket, socket.socket, int, TcpInfo]]:
    """A connection whose client has sent ``warmup`` bytes, all acknowledged.

    On the way out the client sends its FIN, and the reader must have read every
    byte the client wrote.
    """
    _pin_child()
    with _connection(algorithm) as (client, server, port):
        reader = _Reader(server)
        try:
            client.sendall(b"w" * warmup)
            yield client, server, port, _wait_until(client, "acked")
        finally:
            client.shutdown(socket.SHUT_WR)
            reader.join()


def _client_data(
    cap: socket.socket, client: tuple[str, int]
) -> list[tuple[float, capture.AddressedSegment]]:
    """The client's data segments a capture holds, until it stays quiet for a while."""
    found = []
    # Ends: each pass reads a segment, or stops after _QUIET seconds without one.
    while (got := capture.receive_segment(cap, _QUIET)) is not None:
        if got[1].src == client and got[1].payload_length:
            found.append(got)
    return found


def _flag_names(flags: Flags) -> str:
    return "|".join(flag.name or "" for flag in Flags if flag in flags)


def _open_capture(stack: contextlib.ExitStack, port: int) -> socket.socket:
    cap = stack.enter_context(capture.packet_capture(port=port, timeout=1.0))
    # A captured packet counts its whole loopback buffer (64 KiB) against the
    # capture's receive buffer, however little of it is kept: ask for room.
    cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return cap


def _reaction(
    algorithm: str,
    repair: Literal["fast retransmit", "timeout"],
    infos: tuple[TcpInfo, TcpInfo | None, TcpInfo],
    counters: dict[str, int],
    seen: list[tuple[float, capture.AddressedSegment]],
) -> LossReaction:
    """Sum up what the capture saw of the lost segment (the first one) and after it."""
    if not seen:
        raise TimeoutError("the capture saw no data segment")
    lost = seen[0][1]
    copies = [when for when, found in seen if found.segment.seq == lost.segment.seq]
    others = [found for _, found in seen if found.segment.seq != lost.segment.seq]
    return LossReaction(
        algorithm=algorithm,
        repair=repair,
        before=infos[0],
        during=infos[1],
        after=infos[2],
        counters=counters,
        lost_flags=_flag_names(lost.segment.flags),
        lost_length=lost.payload_length,
        copies=len(copies),
        waits=tuple(round(b - a, 6) for a, b in itertools.pairwise(copies)),
        following=tuple(_flag_names(found.segment.flags) for found in others),
        largest=max(found.payload_length for _, found in seen),
    )


def _until_lost(
    cap: socket.socket, client: tuple[str, int], injector: LossInjector
) -> list[tuple[float, capture.AddressedSegment]]:
    """Feed the injector what the capture shows until it has dropped its segment.

    Returns the client's data segments read on the way, the lost one last.

    Raises:
        TimeoutError: if the planned loss does not happen within the timeout.
    """
    deadline = time.monotonic() + _TIMEOUT
    seen = []
    # Ends: once the loss happened, or at the deadline.
    while not injector.lost:
        left = deadline - time.monotonic()
        got = capture.receive_segment(cap, left) if left > 0 else None
        if got is None:
            raise TimeoutError(f"the planned loss never happened: {injector.plan!r}")
        sender: Side = "client" if got[1].src == client else "server"
        injector.saw(sender, got[1].segment)
        if sender == "client" and got[1].payload_length:
            seen.append(got)
    return seen


def _fast_inside(algorithm: str, warmup: int, following: int) -> LossReaction:
    with contextlib.ExitStack() as stack:
        client, server, port, before = stack.enter_context(_warmed_up(algorithm, warmup))
        cap = _open_capture(stack, port)
        injector = LossInjector(Drop(1, sender="client", flags=_PSH_ACK))
        injector.add_receiver(server)
        start = _tcp_ext()
        # The plan's first match is the one to lose: start() arms the filter now, and
        # saw() takes it off SETTLE seconds after the capture shows that segment.
        injector.start()
        try:
            client.sendall(b"m" * _LOST_BYTES)
            seen = _until_lost(cap, client.getsockname(), injector)
        finally:
            injector.stop()
        client.sendall(b"f" * (following * before.snd_mss))
        after = _wait_until(client, "acked")
        counters = _grown(start)
        seen += _client_data(cap, client.getsockname())
    return _reaction(algorithm, "fast retransmit", (before, None, after), counters, seen)


def _timeout_inside(algorithm: str, warmup: int) -> LossReaction:
    with contextlib.ExitStack() as stack:
        client, server, port, before = stack.enter_context(_warmed_up(algorithm, warmup))
        cap = _open_capture(stack, port)
        start = _tcp_ext()
        attach(server, drop_program(_PSH_ACK))
        try:
            client.sendall(b"m" * _LOST_BYTES)
            # Every copy is lost until the retransmission timer has run out once.
            during = _wait_until(client, "Loss")
        finally:
            detach(server)
        after = _wait_until(client, "acked")
        counters = _grown(start)
        seen = _client_data(cap, client.getsockname())
    return _reaction(algorithm, "timeout", (before, during, after), counters, seen)
