"""One thread, many connections: an event loop over ``selectors`` (epoll on Linux).

Every socket is non-blocking, and the loop asks the kernel which ones are ready:
the listener (a client is waiting in the accept queue), a connection with bytes to
read, or a connection whose send buffer has room again.  Each connection keeps its
own output buffer, because a reply may not fit into the kernel's send buffer at
once.  While that buffer is large, the loop stops reading from the connection, so
a client that sends but never reads cannot make the server buffer without end.

It is also the model that explains CLOSE_WAIT bugs: a connection whose peer has
sent FIN sits in CLOSE_WAIT until *this* side closes it.  A loop that forgets to
close on ``b""``, or never registers a socket it accepted, piles them up.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from typing import Any

from tcpref.errors import format_address
from tcpref.servers.base import _FIRST_BACKOFF, _MAX_BACKOFF, READ_SIZE, BaseServer
from tcpref.servers.handlers import Handler

__all__ = ["SelectServer"]

#: Stop reading from a connection while this many bytes of output wait to be sent
#: to it: the server's backpressure.
HIGH_WATER = 1024 * 1024
#: How many connections one readiness event of the listener may accept.
ACCEPT_BATCH = 16


class _Connection:
    """What the loop knows about one client."""

    # A plain class rather than a dataclass: the servers' modules do not import
    # dataclasses (and inspect, ast and dis with it), so that a forking server
    # started from the same package stays small; every fork copies its page tables.
    __slots__ = ("deadline", "handler", "output", "peer", "peer_closed", "sock")

    def __init__(self, sock: socket.socket, peer: Any, handler: Handler, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.handler = handler
        self.deadline = deadline
        self.output = bytearray()
        self.peer_closed = False  # the peer sent FIN; close once the output is sent

    @property
    def where(self) -> str:
        return format_address(self.peer)


class SelectServer(BaseServer):
    """Serve every connection from one thread, with non-blocking sockets.

    See :class:`~tcpref.servers.base.BaseServer` for the arguments and limits.
    """

    model = "select"
    # Made when serving starts, so that a server never served holds no descriptors.
    _selector: selectors.BaseSelector
    _wake_reader: socket.socket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: dict[socket.socket, _Connection] = {}
        # stop() writes a byte here to wake the loop out of select().
        self._wake_writer: socket.socket | None = None
        self._listening = False
        self._accept_resumes = 0.0  # monotonic time; accept is paused before it

    def _wake(self) -> None:
        if self._wake_writer is not None:
            with contextlib.suppress(OSError):
                self._wake_writer.send(b"x")

    # -- the loop -----------------------------------------------------------------

    def _serve(self) -> None:
        self.listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        try:
            self._loop_until_stopped()
            self._loop_until_drained()
        finally:
            for conn in list(self._connections.values()):
                self._close(conn)
            self._selector.close()
            self._wake_reader.close()
            writer, self._wake_writer = self._wake_writer, None
            writer.close()

    def _loop_until_stopped(self) -> None:
        while not self.stopping:
            self._update_listening()
            self._run_once()

    def _loop_until_drained(self) -> None:
        """After stop(): no more accepts; serve what is open until done or grace ends."""
        self._set_listening(False)
        deadline = self._begin_grace(len(self._connections))
        # Ends: by the deadline, which cut_now() brings forward (it wakes select()).
        while self._connections and self._grace_left(deadline) > 0:
            self._run_once(limit=deadline)
        self._end_grace(cut=len(self._connections))  # closed by _serve, just after

    def _run_once(self, limit: float | None = None) -> None:
        """Wait for readiness (or the next deadline), then handle what is ready."""
        now = time.monotonic()
        wake_at = min((c.deadline for c in self._connections.values()), default=now + 1.0)
        if not self._listening and self._accept_resumes > now:
            wake_at = min(wake_at, self._accept_resumes)
        if limit is not None:
            wake_at = min(wake_at, limit)
        timeout = min(max(wake_at - now, 0.0), self.poll_interval)
        for key, events in self._selector.select(timeout):
            if key.data == "listener":
                self._accept_batch()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    self._wake_reader.recv(4096)
            else:
                self._on_ready(key.data, events)
        self._close_idle_connections()

    # -- accepting -----------------------------------------------------------------

    def _update_listening(self) -> None:
        room = len(self._connections) < self.max_connections
        self._set_listening(room and time.monotonic() >= self._accept_resumes)

    def _set_listening(self, on: bool) -> None:
        """Watch the listener only while we want new clients; the rest wait in the queue."""
        if on and not self._listening:
            self._selector.register(self.listener, selectors.EVENT_READ, "listener")
        elif not on and self._listening:
            self._selector.unregister(self.listener)
        self._listening = on

    def _accept_batch(self) -> None:
        # Ends: at most ACCEPT_BATCH accepts per readiness event.
        for _ in range(ACCEPT_BATCH):
            if len(self._connections) >= self.max_connections:
                self._set_listening(False)
                return
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return  # the queue is empty
            except OSError as exc:
                if self.stopping:
                    return  # stop() shut the listener down under us
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(exc)
                    return
                raise
            self._backoff = 0.0
            self._register(sock, peer)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: stop watching the listener for a while (1 s at most)."""
        self._backoff = min(max(2 * self._backoff, _FIRST_BACKOFF), _MAX_BACKOFF)
        self.log.warning("accept: %s; retrying in %.3f s", exc.strerror, self._backoff)
        self._accept_resumes = time.monotonic() + self._backoff
        self._set_listening(False)

    def _register(self, sock: socket.socket, peer: Any) -> None:
        sock.setblocking(False)
        try:
            handler = self.handler_factory()
        except Exception:
            self.log.exception("%s: could not make a handler", format_address(peer))
            sock.close()
            return
        conn = _Connection(sock, peer, handler, time.monotonic() + self.idle_timeout)
        self._connections[sock] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)

    # -- serving -------------------------------------------------------------------

    def _on_ready(self, conn: _Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                self._read(conn)
            if events & selectors.EVENT_WRITE and conn.sock in self._connections:
                self._write(conn)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.log.info("%s: %s", conn.where, exc.strerror)
            self._close(conn)
        except Exception:
            self.log.exception("%s: handler failed; closing this connection", conn.where)
            self._close(conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        reply = conn.handler.received(data) if data else conn.handler.eof()
        if reply:
            conn.output += reply
            conn.deadline = time.monotonic() + self.idle_timeout
        if not data:
            conn.peer_closed = True  # CLOSE_WAIT until we close: do it once output is out
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        if conn.output:
            try:
                sent = conn.sock.send(conn.output)
            except BlockingIOError:
                sent = 0
            del conn.output[:sent]
        if conn.peer_closed and not conn.output:
            self._close(conn)
            return
        self._watch(conn)

    def _watch(self, conn: _Connection) -> None:
        """Read unless too much output waits; write while any output waits."""
        events = 0
        if not conn.peer_closed and len(conn.output) < HIGH_WATER:
            events |= selectors.EVENT_READ
        if conn.output:
            events |= selectors.EVENT_WRITE
        if events == 0:
            return  # cannot happen: peer_closed without output is closed above
        if self._selector.get_key(conn.sock).events != events:
            self._selector.modify(conn.sock, events, conn)

    def _close_idle_connections(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._connections.values() if c.deadline <= now]:
            self.log.info("%s: idle for %.1f s, closing", conn.where, self.idle_timeout)
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if self._connections.pop(conn.sock, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
