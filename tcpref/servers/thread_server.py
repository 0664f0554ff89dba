"""A thread per connection: the main loop accepts, and each client gets its own thread.

Threads share the process's memory (the heap, module globals, the handler factory)
but each has its own stack, so the per-connection variables of
:func:`~tcpref.servers.base.serve_connection` need no lock.  Unlike
``socketserver.ThreadingTCPServer``, the number of threads is capped by
``max_connections``, a finished thread removes itself at once instead of piling
up, and :meth:`~tcpref.servers.base.BaseServer.stop` joins every thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from tcpref.servers.base import BaseServer, serve_connection, set_idle_timeout

__all__ = ["ThreadServer"]


class ThreadServer(BaseServer):
    """Serve each connection in its own thread.

    See :class:`~tcpref.servers.base.BaseServer` for the arguments and limits.
    """

    model = "thread"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The live workers and their sockets, so stop() can wake and join them.
        self._workers: dict[threading.Thread, socket.socket] = {}
        self._changed = threading.Condition()

    def _prepare_listener(self, sock: socket.socket) -> None:
        # The workers serve with blocking calls, which the kernel's idle timeout
        # bounds.  Each connection inherits it from the listener (see
        # serve_connection), if it is set before listen(): see the base class.
        set_idle_timeout(sock, self.idle_timeout)

    def _serve(self) -> None:
        while not self.stopping:
            if not self._wait_for_free_slot():
                continue
            accepted = self._accept()
            if accepted is not None:
                self._start_worker(*accepted)
        self._finish_workers()

    def _wait_for_free_slot(self) -> bool:
        """Wait (a short while) until fewer than max_connections are served."""
        if len(self._workers) < self.max_connections:
            return not self.stopping  # the usual case: no need to take the lock
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: len(self._workers) < self.max_connections or self.stopping,
                    timeout=self.poll_interval,
                )
                and not self.stopping
            )

    def _start_worker(self, conn: socket.socket, peer: Any) -> None:
        worker = threading.Thread(
            target=self._work, args=(conn, peer), name=f"tcpref-conn-{peer}", daemon=True
        )
        with self._changed:
            self._workers[worker] = conn
        try:
            worker.start()
        except RuntimeError:  # "can't start new thread": drop this client, keep serving
            self.log.exception("could not start a thread for %s", peer)
            with self._changed:
                del self._workers[worker]
            conn.close()

    def _work(self, conn: socket.socket, peer: Any) -> None:
        try:
            serve_connection(
                conn, self.handler_factory, self.idle_timeout, self.log, peer, has_idle_timeout=True
            )
        finally:
            with self._changed:
                del self._workers[threading.current_thread()]
                self._changed.notify_all()

    def _finish_workers(self) -> None:
        """Let workers finish for ``grace`` seconds, then wake the rest and join them."""
        deadline = self._begin_grace(len(self._workers))
        with self._changed:
            # Ends: by the deadline, which cut_now() brings forward.  Each worker that
            # finishes notifies; the timeout lets a cut_now() from a signal handler,
            # which must not take this lock, be seen within poll_interval.
            while self._workers and (left := self._grace_left(deadline)) > 0:
                self._changed.wait(min(left, self.poll_interval))
            leftover = list(self._workers.items())
        self._end_grace(cut=len(leftover))
        for _, conn in leftover:
            # shutdown() wakes a worker blocked in recv (it reads b"") or sendall.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for worker, _ in leftover:
            worker.join(timeout=5)
