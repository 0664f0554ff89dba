"""Socket calls that check every argument and every result.

This is the Python counterpart of the ``wrap.c`` found in many course notes and of
``wrapsock.c`` in Stevens' *UNIX Network Programming*: one small function per call,
so that a program reads like the textbook sequence (socket, bind, listen, accept,
read, write, close) and a failure says which call failed, where, and why.

Three rules hold for every function here:

* A bad argument raises ``TypeError`` or ``ValueError`` naming the bad value, before
  any system call is made.
* An OS failure raises :class:`tcpref.errors.SocketCallError`, an ``OSError`` that
  keeps ``errno`` and adds the call, the address and a hint.
* Nothing loops without a bound: each loop below says why it ends.
"""

from __future__ import annotations

import errno
import numbers
import os
import select
import socket
import time
from typing import Any

from tcpref.errors import (
    ConnectionAbortedCallError,
    IncompleteReadError,
    LineTooLongError,
    checked,
    translate,
)

__all__ = [
    "ACCEPT_ATTEMPTS",
    "DEFAULT_LINE_LIMIT",
    "accept",
    "bind",
    "close",
    "connect",
    "listen",
    "read_exact",
    "read_line",
    "read_pipe_to_end",
    "shutdown",
    "tcp_socket",
    "write_all",
]

#: The longest line :func:`read_line` accepts by default, counting the newline.
DEFAULT_LINE_LIMIT = 64 * 1024

# Errors after which accept() simply tries again: the connection died while it sat
# in the accept queue (BSD reports ECONNABORTED, SVR4 reported EPROTO).  Stevens'
# Accept does the same.  Linux hands such a connection over instead; the reset then
# shows up on the first read.
_ACCEPT_RETRY_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO})
#: How many times :func:`accept` tries before it gives up on a run of aborted
#: connections.  The bound keeps a listener that only ever reports aborts from
#: looping forever.
ACCEPT_ATTEMPTS = 100


# -- argument checks ------------------------------------------------------------


def _check_socket(sock: object) -> None:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {sock!r}")


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    # bool is an int subclass, but True is never a sensible port or count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in range {minimum}-{maximum}"
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return value


def _check_address(address: object) -> None:
    """Check an AF_INET ``(host, port)`` or AF_INET6 ``(host, port, flowinfo, scope_id)``."""
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(host, str):
        raise TypeError(f"host must be a str such as '127.0.0.1', not {host!r}")
    _check_int("port", port, 0, 65535)


def _check_timeout(timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not float(timeout) > 0:  # also rejects NaN
        raise ValueError(f"timeout must be > 0 seconds or None, not {timeout!r}")


def _local_address(sock: socket.socket) -> Any:
    try:
        return sock.getsockname()
    except OSError:
        return None


def _peer_address(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None


# -- the calls, in the order a program makes them -------------------------------


def tcp_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """Create a TCP socket: ``socket(family, SOCK_STREAM)``.

    Args:
        family: ``socket.AF_INET`` (IPv4, the default) or ``socket.AF_INET6``.

    Raises:
        ValueError: if ``family`` is neither AF_INET nor AF_INET6.
        SocketCallError: if the OS refuses, for example EMFILE when the process has
            no file descriptors left.
    """
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"family must be AF_INET or AF_INET6, not {family!r}")
    with checked("socket"):
        return socket.socket(family, socket.SOCK_STREAM)


def bind(sock: socket.socket, address: tuple[Any, ...]) -> None:
    """Give ``sock`` its local address, such as ``("127.0.0.1", 0)``.

    Port 0 asks the kernel to choose a free port; read it back with
    ``sock.getsockname()``.  Python converts the port to network byte order for you
    (what ``htons`` does in C).

    Raises:
        TypeError: if ``address`` is not a ``(host, port)`` tuple of str and int.
        ValueError: if the port is outside 0-65535.
        SocketCallError: if the OS refuses, for example EADDRINUSE.
    """
    _check_socket(sock)
    _check_address(address)
    with checked("bind", address):
        sock.bind(address)


def listen(sock: socket.socket, backlog: int) -> None:
    """Turn a bound socket into a listening socket.

    ``backlog`` caps the accept queue, the connections whose handshake is complete
    but which no ``accept`` has taken yet.  Linux silently lowers it to
    ``net.core.somaxconn``.

    Raises:
        TypeError: if ``backlog`` is not an int.
        ValueError: if ``backlog`` is negative.
        SocketCallError: if the OS refuses.
    """
    _check_socket(sock)
    _check_int("backlog", backlog, 0)
    with checked("listen", _local_address(sock)):
        sock.listen(backlog)


def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """Take the next completed connection from a listening socket.

    Returns a new *connected* socket and the peer's address.  The listening
    socket stays open and goes on listening.  Connections that were aborted
    while waiting in the queue (ECONNABORTED, EPROTO) are skipped, as in Stevens'
    ``Accept``.  The listening socket's timeout, if any, applies to each wait.

    Raises:
        SocketCallError: for any other OS failure, or a ``TimeoutCallError`` when
            the listening socket's timeout expires.
        ConnectionAbortedCallError: if :data:`ACCEPT_ATTEMPTS` aborted connections
            come in a row.
    """
    _check_socket(sock)
    where = _local_address(sock)
    last_abort: OSError | None = None
    for _ in range(ACCEPT_ATTEMPTS):
        try:
            return sock.accept()
        except OSError as exc:
            if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                raise translate(exc, call="accept", address=where) from exc
            last_abort = exc
    raise ConnectionAbortedCallError(
        errno.ECONNABORTED,
        f"gave up after {ACCEPT_ATTEMPTS} aborted connections in a row",
        call="accept",
        address=where,
        hint=(
            "Every connection was aborted before it could be accepted; something resets "
            "connections as fast as they arrive."
        ),
    ) from last_abort


def connect(sock: socket.socket, address: tuple[Any, ...], timeout: float | None = None) -> None:
    """Connect ``sock`` to a listening peer: the three-way handshake.

    Returns once the kernel has received the peer's SYN+ACK and sent the final ACK;
    the server need not have called ``accept`` yet.

    Args:
        sock: An unconnected TCP socket.
        address: The peer's ``(host, port)``.
        timeout: Seconds to wait for the handshake.  ``None`` waits as the socket
            is set to (``sock.gettimeout()``).  The socket's own timeout is put back
            afterwards, so this one applies to the handshake only.

    Raises:
        TypeError: if ``address`` or ``timeout`` has the wrong type.
        ValueError: if the port is outside 0-65535, or ``timeout`` is not > 0.
        SocketCallError: if the handshake fails: ``ConnectionRefusedCallError``
            when nothing listens, ``TimeoutCallError`` when time runs out.
    """
    _check_socket(sock)
    _check_address(address)
    _check_timeout(timeout)
    previous = sock.gettimeout()
    try:
        with checked("connect", address):
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(address)
    finally:
        if timeout is not None and sock.fileno() != -1:
            sock.settimeout(previous)


def read_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes, however the stream splits them.

    TCP is a byte stream: one ``recv`` may return less than one ``send`` sent, so a
    reader of fixed-size records must loop.

    Raises:
        TypeError: if ``n`` is not an int.
        ValueError: if ``n`` is negative.
        IncompleteReadError: if the peer closes the connection first; its
            ``partial`` holds what did arrive.
        SocketCallError: for an OS failure or a timeout.
    """
    _check_socket(sock)
    _check_int("n", n, 0)
    buffer = bytearray(n)
    view = memoryview(buffer)
    received = 0
    with checked("read_exact", _peer_address(sock)):
        # Ends: every pass receives at least one byte, or stops at end of stream.
        while received < n:
            count = sock.recv_into(view[received:])
            if count == 0:
                raise IncompleteReadError(bytes(view[:received]), n)
            received += count
    return bytes(buffer)


def write_all(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """Send every byte of ``data``.

    ``socket.sendall`` already loops until all is sent; this adds the checks and
    the translated error.  A socket timeout applies to the whole call.

    Raises:
        TypeError: if ``data`` is not bytes-like (a ``str`` must be encoded first).
        SocketCallError: for an OS failure, for example ``BrokenPipeCallError``
            (EPIPE) or ``ConnectionResetCallError`` after the peer has gone.
    """
    _check_socket(sock)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"data must be bytes, bytearray or memoryview, not {type(data).__name__} "
            f"({data!r:.40}); encode text first, for example data.encode()"
        )
    with checked("write_all", _peer_address(sock)):
        sock.sendall(data)


def read_line(sock: socket.socket, limit: int = DEFAULT_LINE_LIMIT) -> bytes:
    r"""Read one line, up to and including ``b"\n"``.

    Like ``file.readline``, it returns ``b""`` at end of stream, and a last line
    without a newline as it is.  It never reads past the newline: it *peeks*
    (``MSG_PEEK``) at what has arrived, then consumes only up to the newline, so
    the next line stays in the kernel's buffer for the next call.  The price is
    two system calls per line: where one reader owns the socket, a buffered
    ``sock.makefile("rb")`` is much faster (``tox -e bench`` measures how much).

    Args:
        sock: A connected TCP socket.
        limit: The longest line accepted, counting the newline.  A bound is
            essential: without one, a peer that never sends ``b"\n"`` makes the
            reader buffer forever.

    Raises:
        TypeError: if ``limit`` is not an int.
        ValueError: if ``limit`` is less than 1.
        LineTooLongError: if no newline arrives within ``limit`` bytes.
        SocketCallError: for an OS failure or a timeout.
    """
    _check_socket(sock)
    _check_int("limit", limit, 1)
    line = bytearray()
    with checked("read_line", _peer_address(sock)):
        # Ends: every pass consumes at least one byte, and there are at most
        # `limit` of them before we give up.
        while len(line) < limit:
            peeked = sock.recv(limit - len(line), socket.MSG_PEEK)
            if not peeked:
                return bytes(line)
            newline = peeked.find(b"\n")
            wanted = newline + 1 if newline >= 0 else len(peeked)
            line += sock.recv(wanted)
            if line.endswith(b"\n"):
                return bytes(line)
    raise LineTooLongError(limit, bytes(line))


def shutdown(sock: socket.socket, how: int) -> None:
    """Close one or both directions of a connection, leaving the socket open.

    ``SHUT_WR`` sends FIN (the peer reads end of stream) yet still lets you read
    what the peer sends back: the half-close.

    Raises:
        ValueError: if ``how`` is not SHUT_RD, SHUT_WR or SHUT_RDWR.
        SocketCallError: if the OS refuses, for example ENOTCONN on a socket that
            was never connected.
    """
    _check_socket(sock)
    if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
        raise ValueError(f"how must be SHUT_RD, SHUT_WR or SHUT_RDWR, not {how!r}")
    with checked("shutdown", _peer_address(sock)):
        sock.shutdown(how)


def close(sock: socket.socket) -> None:
    """Close the socket and release its file descriptor.

    Calling it again on a closed socket does nothing, as with ``socket.close``.

    Raises:
        TypeError: if ``sock`` is not a socket.
        SocketCallError: in the rare case the OS reports an error on close.
    """
    _check_socket(sock)
    with checked("close"):
        sock.close()


# -- pipes between a process and its forked helpers ------------------------------


def read_pipe_to_end(fd: int, deadline: float) -> bytes | None:
    """Read the pipe ``fd`` until end of file; ``None`` if ``deadline`` passes first.

    ``deadline`` is on the ``time.monotonic()`` clock.  A forked child that writes
    its answer and exits closes the pipe's last writer, which is the end of file;
    one that hangs is caught by the deadline.  (tcpref.netns and the servers'
    ``running_forked`` read their children's answers this way.)

    Raises:
        OSError: if reading fails.
    """
    chunks: list[bytes] = []
    # Ends: each pass reads or returns; the deadline bounds the waiting.
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
