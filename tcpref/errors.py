"""Exceptions raised by tcpref, and the one place where an ``OSError`` is translated.

A failed system call in C leaves a number in ``errno``; Stevens' wrappers turn it into
a message naming the call.  Python already raises ``OSError`` with ``errno`` and
``strerror`` set, but the message does not say *which* call failed, on *which*
address, or what usually causes it.  :func:`translate` adds those three things and
keeps everything else: the result is still an ``OSError`` (and still, say, a
``ConnectionRefusedError``), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

import errno as errno_module
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "BlockingIOCallError",
    "BrokenPipeCallError",
    "ConnectionAbortedCallError",
    "ConnectionRefusedCallError",
    "ConnectionResetCallError",
    "IncompleteReadError",
    "InterruptedCallError",
    "LineTooLongError",
    "PermissionCallError",
    "SocketCallError",
    "TimeoutCallError",
    "checked",
    "errno_symbol",
    "format_address",
    "hint_for",
    "translate",
]


def format_address(address: object) -> str:
    """Write a socket address the way people do.

    >>> format_address(("127.0.0.1", 8080))
    '127.0.0.1:8080'
    >>> format_address(("::1", 8080, 0, 0))
    '[::1]:8080'
    >>> format_address(None)
    ''
    """
    if address is None:
        return ""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(address)


def errno_symbol(code: int | None) -> str:
    """Return the symbolic name of an errno value, such as ``'EADDRINUSE'`` for 98.

    Name-resolution errors (``socket.gaierror``) carry negative ``EAI_*`` codes,
    which are named too.  An unknown code gives ``'E?'``.

    >>> errno_symbol(98)
    'EADDRINUSE'
    """
    if code is None:
        return "E?"
    if code in errno_module.errorcode:
        return errno_module.errorcode[code]
    for name in dir(socket):
        if name.startswith("EAI_") and getattr(socket, name) == code:
            return name
    return "E?"


# What usually causes an errno in a given call, and what to do about it.
# The key (call, errno) is looked up first, then (None, errno) for any call.
_HINTS: dict[tuple[str | None, int], str] = {
    ("bind", errno_module.EADDRINUSE): (
        "Another socket holds this address: if it is a listener, stop it or choose "
        "another port; if it is a connection of an earlier run, now in TIME_WAIT, set "
        "SO_REUSEADDR on both the old and the new listening socket."
    ),
    ("bind", errno_module.EADDRNOTAVAIL): (
        "No interface on this host has that IP address; bind 127.0.0.1, 0.0.0.0, or "
        "an address listed by `ip addr`."
    ),
    ("bind", errno_module.EACCES): (
        "Ports below 1024 need privilege (root or CAP_NET_BIND_SERVICE); use a port "
        "of 1024 or above."
    ),
    ("bind", errno_module.EINVAL): (
        "This socket is already bound, and a socket can be bound only once; create a new socket."
    ),
    ("connect", errno_module.ECONNREFUSED): (
        "Nothing listens on that port: the peer's kernel answered the SYN with RST; "
        "start the server, or check the host and port."
    ),
    ("connect", errno_module.ETIMEDOUT): (
        "The SYN was retransmitted until the kernel gave up: the host is down, a "
        "firewall drops the packets, or the server's accept queue is full."
    ),
    ("connect", errno_module.EISCONN): (
        "This socket is already connected; a TCP socket connects once."
    ),
    ("connect", errno_module.EHOSTUNREACH): (
        "No route to that host; check the address and the network."
    ),
    ("connect", errno_module.ENETUNREACH): (
        "No route to that network; check the address and the routing table."
    ),
    ("listen", errno_module.EOPNOTSUPP): (
        "Only stream sockets can listen; create the socket with SOCK_STREAM."
    ),
    (None, errno_module.EADDRINUSE): ("Another socket already uses this local address and port."),
    (None, errno_module.ECONNRESET): (
        "The peer reset the connection (it closed with unread data, set SO_LINGER "
        "to 0, or no longer knows this connection); treat it as the end of the "
        "connection and close the socket."
    ),
    (None, errno_module.EPIPE): (
        "The connection is closed (the peer closed it, or it was never established), "
        "so nothing written can be delivered; stop writing and close the socket."
    ),
    (None, errno_module.ENOTCONN): (
        "The socket is not connected: connect it first, or accept a connection and "
        "use the socket that accept returns."
    ),
    (None, errno_module.EBADF): (
        "The socket was already closed (its fileno() is -1) and cannot be used "
        "again; create a new socket."
    ),
    (None, errno_module.EMFILE): (
        "This process has run out of file descriptors (the soft RLIMIT_NOFILE, see "
        "`ulimit -n`); close sockets you no longer need, or raise the soft limit "
        "up to the hard one."
    ),
    (None, errno_module.ENFILE): (
        "The whole system has run out of file descriptors (fs.file-max); close "
        "descriptors or raise the limit."
    ),
    (None, errno_module.EINTR): (
        "A signal arrived during the call and its handler raised; Python retries "
        "interrupted calls by itself otherwise (PEP 475)."
    ),
    (None, errno_module.ECONNABORTED): (
        "The connection was aborted before it was accepted; accept() just tries again."
    ),
    (None, errno_module.EAGAIN): (
        "The socket is non-blocking and the call would have to wait; wait for "
        "readiness with selectors, or use a blocking socket with a timeout."
    ),
    (None, errno_module.ETIMEDOUT): (
        "The peer stopped acknowledging and the kernel gave up retransmitting; the "
        "peer host or the path to it is gone."
    ),
    (None, errno_module.ECONNREFUSED): (
        "Nothing listens on that port; start the server, or check the host and port."
    ),
    (None, errno_module.EAFNOSUPPORT): (
        "The address family does not match the socket; use AF_INET6 for IPv6 "
        "addresses and AF_INET for IPv4."
    ),
}

# A socket timeout (socket.settimeout) is Python's, not the kernel's, so it has no
# errno.  Its hint depends on what the call was waiting for.
_TIMEOUT_HINTS: dict[str, str] = {
    "connect": (
        "The handshake did not finish within the timeout: the host may be down, "
        "packets may be dropped, or the server's accept queue may be full."
    ),
    "accept": "No client connected within the listening socket's timeout.",
}
_DEFAULT_TIMEOUT_HINT = (
    "The peer sent nothing within the socket's timeout; it may be slow, idle, or "
    "waiting for you to send first."
)


def hint_for(call: str, code: int | None) -> str:
    """Return one sentence on what usually causes ``code`` in ``call``, or ``''``.

    >>> hint_for("connect", 111)[:26]
    'Nothing listens on that po'
    """
    if code is None:
        return _TIMEOUT_HINTS.get(call, _DEFAULT_TIMEOUT_HINT)
    return _HINTS.get((call, code)) or _HINTS.get((None, code), "")


class SocketCallError(OSError):
    """An ``OSError`` from one socket call, naming the call, the address and a hint.

    It keeps ``errno`` and ``strerror`` from the original error, which stays
    available as ``__cause__``.

    Attributes:
        call: The tcpref function that failed, such as ``'bind'``.
        address: The local address for ``bind``, ``listen`` and ``accept``; the
            peer's address for ``connect``, reads and writes; ``None`` if unknown.
        hint: One sentence: what usually causes this errno in this call, and what
            to do about it.  Empty when there is nothing useful to say.
    """

    def __init__(
        self,
        code: int | None,
        strerror: str,
        *,
        call: str,
        address: object = None,
        hint: str = "",
    ) -> None:
        super().__init__(code, strerror)
        self.call = call
        self.address = address
        self.hint = hint

    def __str__(self) -> str:
        head = f"{self.call}({format_address(self.address)})"
        if self.errno is None:
            text = f"{head}: {self.strerror}"
        else:
            text = f"{head}: [Errno {self.errno}] {errno_symbol(self.errno)}: {self.strerror}"
        return f"{text}. {self.hint}" if self.hint else f"{text}."

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes must survive pickling (multiprocessing, logging).
        return (
            _rebuild,
            (type(self), self.errno, self.strerror, self.call, self.address, self.hint),
        )


def _rebuild(
    cls: type[SocketCallError],
    code: int | None,
    strerror: str,
    call: str,
    address: object,
    hint: str,
) -> SocketCallError:
    return cls(code, strerror, call=call, address=address, hint=hint)


# Each built-in OSError subclass that a socket call can raise gets a twin that is
# also a SocketCallError, so `except ConnectionRefusedError:` still catches it.
class BlockingIOCallError(SocketCallError, BlockingIOError):
    """EAGAIN / EWOULDBLOCK: a non-blocking socket would have to wait."""


class BrokenPipeCallError(SocketCallError, BrokenPipeError):
    """EPIPE: a write after the peer closed the connection."""


class ConnectionAbortedCallError(SocketCallError, ConnectionAbortedError):
    """ECONNABORTED: the connection was aborted on this host."""


class ConnectionRefusedCallError(SocketCallError, ConnectionRefusedError):
    """ECONNREFUSED: nothing listens at the address."""


class ConnectionResetCallError(SocketCallError, ConnectionResetError):
    """ECONNRESET: the peer sent RST."""


class InterruptedCallError(SocketCallError, InterruptedError):
    """EINTR: a signal interrupted the call."""


class PermissionCallError(SocketCallError, PermissionError):
    """EACCES / EPERM: the call needs a privilege."""


class TimeoutCallError(SocketCallError, TimeoutError):
    """ETIMEDOUT from the kernel, or a socket timeout set with ``settimeout``."""


_TWINS: dict[type[OSError], type[SocketCallError]] = {
    BlockingIOError: BlockingIOCallError,
    BrokenPipeError: BrokenPipeCallError,
    ConnectionAbortedError: ConnectionAbortedCallError,
    ConnectionRefusedError: ConnectionRefusedCallError,
    ConnectionResetError: ConnectionResetCallError,
    InterruptedError: InterruptedCallError,
    PermissionError: PermissionCallError,
    TimeoutError: TimeoutCallError,
}


def translate(exc: OSError, *, call: str, address: object = None) -> SocketCallError:
    """Turn an ``OSError`` from ``call`` into a :class:`SocketCallError`.

    The result keeps ``errno`` and ``strerror``, and is also an instance of the
    built-in subclass that Python would have raised (``ConnectionRefusedError`` for
    ECONNREFUSED, ``TimeoutError`` for a socket timeout, and so on).  Raise it with
    ``raise translate(exc, ...) from exc`` so the original stays as ``__cause__``.

    >>> err = translate(OSError(111, "Connection refused"), call="connect",
    ...                 address=("127.0.0.1", 9))
    >>> isinstance(err, ConnectionRefusedError), err.errno
    (True, 111)
    """
    if isinstance(exc, SocketCallError):
        return exc
    code = exc.errno
    if code is not None:
        # OSError(code, ...) picks the built-in subclass for the errno.
        builtin: type[OSError] = type(OSError(code, ""))
    else:
        builtin = type(exc)
    cls = next(
        (twin for base, twin in _TWINS.items() if issubclass(builtin, base)), SocketCallError
    )
    strerror = exc.strerror or (os.strerror(code) if code else str(exc) or type(exc).__name__)
    return cls(code, strerror, call=call, address=address, hint=hint_for(call, code))


@contextmanager
def checked(call: str, address: object = None) -> Iterator[None]:
    """Translate any ``OSError`` raised in the ``with`` block; see :func:`translate`.

    Raises:
        SocketCallError: for any ``OSError`` raised inside the block.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, SocketCallError):
            raise
        raise translate(exc, call=call, address=address) from exc


class IncompleteReadError(EOFError):
    """The peer closed the connection before the expected number of bytes arrived.

    Like ``asyncio.IncompleteReadError``, it is an ``EOFError``.

    Attributes:
        partial: The bytes that did arrive.
        expected: How many bytes were asked for.
    """

    def __init__(self, partial: bytes, expected: int) -> None:
        super().__init__(partial, expected)
        self.partial = partial
        self.expected = expected

    def __str__(self) -> str:
        return (
            f"the peer closed the connection after {len(self.partial)} of "
            f"{self.expected} expected bytes"
        )


class LineTooLongError(ValueError):
    r"""A line did not end within ``limit`` bytes.

    The bytes read so far were consumed, so the stream is now in the middle of a
    line: close the connection rather than read on.

    Attributes:
        limit: The largest line allowed, counting the ``b"\n"``.
        partial: The bytes consumed before giving up.
    """

    def __init__(self, limit: int, partial: bytes) -> None:
        super().__init__(limit, partial)
        self.limit = limit
        self.partial = partial

    def __str__(self) -> str:
        return f"line longer than limit={self.limit} bytes (no newline among them)"
