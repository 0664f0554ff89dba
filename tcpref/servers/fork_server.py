"""A process per connection: the classic forking server of the course notes.

The parent accepts, forks, and closes its copy of the connected socket; the child
closes its copy of the listening socket, serves the one client, and leaves through
``os._exit``, never returning into the parent's code.  Each side closes the socket
it does not need: a child that kept the listener would keep the port busy after
the parent stopped, and a parent that kept each connection would hold it open
(no FIN for the client) and run out of descriptors.

Finished children stay zombies until the parent collects them with ``waitpid``.
A SIGCHLD handler does that as soon as a child exits.  One signal can stand for
several exits, because pending signals of one kind are merged, so the handler
loops until no exited child is left.  It waits only for the pids this server
created, not ``waitpid(-1)``, so that a child forked by other code in the same
process stays waitable by its owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from tcpref.servers.base import BaseServer, serve_connection

__all__ = ["ForkServer"]


class ForkServer(BaseServer):
    """Serve each connection in a child process.

    The SIGCHLD handler can only be installed from the main thread; when the
    server runs in another thread, its accept loop reaps on every pass instead
    (it does so anyway, as a safety net for a child that exits before its pid is
    recorded).  See :class:`~tcpref.servers.base.BaseServer` for the arguments.
    """

    model = "fork"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: set[int] = set()
        self._handler_installed = False

    @property
    def children(self) -> frozenset[int]:
        """The pids of the children serving connections now."""
        return frozenset(self._children)

    def _serve(self) -> None:
        previous = self._install_sigchld_handler()
        try:
            while not self.stopping:
                self.reap()
                if len(self._children) >= self.max_connections:
                    self._stop_requested.wait(self.poll_interval)
                    continue
                accepted = self._accept()
                if accepted is not None:
                    self._fork_child(*accepted)
            self._finish_children()
        finally:
            if previous is not None:
                signal.signal(signal.SIGCHLD, previous)

    def _install_sigchld_handler(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        self._handler_installed = True
        return signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        self.reap()

    def reap(self) -> None:
        """Collect every child of this server that has exited, without waiting."""
        # Ends: one pass over a copy of our own pids.
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # someone else collected it already
            if done:
                self._children.discard(pid)

    def _fork_child(self, conn: socket.socket, peer: Any) -> None:
        try:
            with self._sigchld_blocked():
                pid = os.fork()
                if pid == 0:
                    self._run_child(conn, peer)  # never returns
                self._children.add(pid)
        except OSError as exc:
            # EAGAIN (RLIMIT_NPROC, pid_max) or ENOMEM: this client is dropped, and
            # the server waits a little before it accepts the next one.
            self.log.warning("fork: %s", exc.strerror)
            self._back_off(exc)
        finally:
            conn.close()  # the child has its own copy

    @contextlib.contextmanager
    def _sigchld_blocked(self) -> Iterator[None]:
        """Hold SIGCHLD back while forking and recording the new pid.

        Two reasons, both from Stevens: a SIGCHLD that arrives during fork() makes
        the kernel restart the whole fork, and a child that exits at once must not
        be reaped before its pid is in our set.  The held signal is delivered, and
        the handler runs, as soon as the mask is restored.
        """
        if not self._handler_installed:
            yield
            return
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _run_child(self, conn: socket.socket, peer: Any) -> None:
        code = 1
        try:
            # The parent's handlers are not the child's business: Ctrl-C goes to the
            # whole process group, and only the parent should decide to stop.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # blocked by the parent
            self._close_inherited_descriptors(keep=conn.fileno())
            serve_connection(conn, self.handler_factory, self.idle_timeout, self.log, peer)
            code = 0
        finally:
            os._exit(code)  # never return into the parent's code, nor run its cleanups

    @staticmethod
    def _close_inherited_descriptors(keep: int) -> None:
        """Close every descriptor but stdio and ``keep``: the listener first of all.

        A server alone in its process would only need to close the listener.  This
        one may share its process with other code (tests, the docs' examples), and a
        child holding a copy of, say, a client's socket would stop that client's
        close() from ever sending FIN.
        """
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))

    def _finish_children(self) -> None:
        """Give children ``grace`` seconds, then SIGTERM, then SIGKILL; reap them all."""
        deadline = time.monotonic() + self.grace
        # Ends: bounded by the deadline.
        while self._children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in list(self._children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            patience = time.monotonic() + 1.0
            while self._children and time.monotonic() < patience:
                self.reap()
                time.sleep(0.01)
