"""What a server does with the bytes of one connection.

A handler sees a connection as a byte stream: it is told what arrived, and answers
with the bytes to send back.  It never touches the socket, so the same handler runs
unchanged under the fork, thread and event-loop servers, and can be tested with no
network at all:

>>> handler = Upper()
>>> handler.received(b"hello")
b'HELLO'
>>> handler.eof()
b''

One handler object serves one connection, so it may keep per-connection state.
"""

from __future__ import annotations

from typing import Protocol

from tcpref.errors import LineTooLongError

__all__ = ["DEFAULT_MAX_LINE", "Echo", "Handler", "LineHandler", "LineUpper", "Upper"]

#: The longest line a :class:`LineHandler` accepts by default, counting the newline.
DEFAULT_MAX_LINE = 64 * 1024


class Handler(Protocol):
    """The interface every server calls; implement these two methods."""

    def received(self, data: bytes) -> bytes:
        """Take bytes that arrived; return the bytes to send back (maybe ``b""``)."""
        ...

    def eof(self) -> bytes:
        """The peer closed its side (FIN); return any last bytes to send."""
        ...


class Echo:
    """Send every byte back unchanged."""

    def received(self, data: bytes) -> bytes:
        """Return ``data`` as it came."""
        return data

    def eof(self) -> bytes:
        """Nothing is left to send."""
        return b""


class Upper(Echo):
    """Send every byte back in upper case, like the servers in the course notes."""

    def received(self, data: bytes) -> bytes:
        """Return ``data`` with ASCII letters in upper case."""
        return data.upper()


class LineHandler:
    r"""Base for line-oriented handlers: buffers bytes and calls :meth:`line` per line.

    A line may be at most ``max_line`` bytes, counting its ``b"\n"``; a longer
    one raises :class:`tcpref.errors.LineTooLongError`, and the server then closes
    the connection.  Without a limit, a client that never sends a newline would
    make the server buffer without end.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 1:
            raise ValueError(f"max_line must be an int >= 1, not {max_line!r}")
        self.max_line = max_line
        self._pending = bytearray()

    def line(self, line: bytes) -> bytes:
        r"""Answer one complete line (it ends with ``b"\n"``); override this."""
        return line

    def received(self, data: bytes) -> bytes:
        """Split the stream into lines and answer each complete one.

        Raises:
            LineTooLongError: if a line grows beyond ``max_line`` bytes.
        """
        self._pending += data
        replies = bytearray()
        # Ends: every pass removes one line from the buffer.
        while (newline := self._pending.find(b"\n")) >= 0:
            if newline + 1 > self.max_line:
                raise LineTooLongError(self.max_line, bytes(self._pending[: self.max_line]))
            replies += self.line(bytes(self._pending[: newline + 1]))
            del self._pending[: newline + 1]
        if len(self._pending) >= self.max_line:
            raise LineTooLongError(self.max_line, bytes(self._pending[: self.max_line]))
        return bytes(replies)

    def eof(self) -> bytes:
        """Answer a last line that had no newline, if any."""
        last, self._pending = bytes(self._pending), bytearray()
        return self.line(last) if last else b""


class LineUpper(LineHandler):
    """Answer each line in upper case, one line at a time."""

    def line(self, line: bytes) -> bytes:
        """Return the line in upper case."""
        return line.upper()
