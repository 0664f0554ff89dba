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

A fork costs far more than anything else a connection needs, and much of that cost
comes after the fork: the two processes share their memory pages until one of them
writes to a page, which the kernel then copies.  So the child does as little as it
can before it serves, and the parent's accept loop does as little as it can between
two forks.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from tcpref.servers.base import BaseServer, serve_connection, set_idle_timeout

__all__ = ["ForkServer"]

# How the child puts back the default signal handlers.  signal.signal returns the
# previous handler, converted to a signal.Handlers member where it is one; when it
# is a Python function, finding out means raising and catching a ValueError inside
# the enum module.  In a process just forked, whose memory pages are still shared,
# that detour cost about 0.1 ms and 40 copied pages per child on the benchmark
# machine (most of it in the first call): a tenth of a whole short connection.
# signal.signal is a thin wrapper of the C function in the _signal module, which
# sets the handler just the same and returns the previous one as it is; that is the
# one the child calls.  (Anywhere else, use signal.signal.)
_set_signal_handler: Callable[[int, int], object] = importlib.import_module("_signal").signal
# The child passes it plain ints, not the enum members signal.SIGTERM, signal.SIG_DFL
# and so on.  Each member is an object of its own that the call would write to (its
# reference count), copying its page; the ints 0, 1, 2, 15 and 17 are CPython's
# preallocated small ints, whose pages every process writes to all the time.  That
# saved about 10 copied pages per child on the benchmark machine.
_SIGTERM, _SIGINT, _SIGCHLD = int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGCHLD)
_DEFAULT, _IGNORE = int(signal.SIG_DFL), int(signal.SIG_IGN)


class ForkServer(BaseServer):
    """Serve each connection in a child process.

    Serving in the main thread, it reaps its children in a SIGCHLD handler.  Python
    runs signal handlers only in the main thread, so serving in any other thread it
    reaps on every pass of its accept loop instead, at least every
    ``poll_interval`` seconds.  See :class:`~tcpref.servers.base.BaseServer` for the
    arguments.

    Serve it in a process that runs no other thread, as ``python -m tcpref serve``
    does: a fork copies only the thread that calls it, so a lock that another thread
    holds at that moment stays locked in the child for ever, and Python 3.12 and
    newer warn about every such fork.  Served by
    :func:`~tcpref.servers.base.running`, it forks from a process with two threads;
    :func:`~tcpref.servers.base.running_forked` serves it in a process of its own.
    """

    model = "fork"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: set[int] = set()
        self._handler_installed = False
        self._sigchld_count = 0  # SIGCHLDs handled so far: see _fork_child
        self._max_fd = 0  # see _serve

    @property
    def children(self) -> frozenset[int]:
        """The pids of the children serving connections now.

        A pid is added when ``fork`` returns in the parent, so a child may already
        have answered its client a moment before it is listed here.
        """
        return frozenset(self._children)

    def _prepare_listener(self, sock: socket.socket) -> None:
        # The children serve with blocking calls, which the kernel's idle timeout
        # bounds.  Each connection inherits it from the listener (see
        # serve_connection), if it is set before listen(): see the base class.
        set_idle_timeout(sock, self.idle_timeout)

    def _serve(self) -> None:
        # Found once here rather than in every child (it is one more system call):
        # each child closes every descriptor it inherited below this bound.
        self._max_fd = os.sysconf("SC_OPEN_MAX")
        previous = self._install_sigchld_handler()
        try:
            while not self.stopping:
                if not self._handler_installed:
                    self.reap()  # no handler in this thread: the loop collects instead
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
        previous = signal.signal(signal.SIGCHLD, self._on_sigchld)
        self._handler_installed = True
        return previous

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        self._sigchld_count += 1
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
        # A child can exit before the parent has recorded its pid.  If the SIGCHLD
        # handler runs in between, it does not look for that pid, and the child would
        # stay a zombie until the next SIGCHLD.  Stevens blocks SIGCHLD around fork for
        # that; two system calls per connection.  Since Python runs handlers in this
        # very thread, noticing that one ran is enough: then reap once more.
        handled = self._sigchld_count
        try:
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
        if self._sigchld_count != handled:
            self.reap()

    def _run_child(self, conn: socket.socket, peer: Any) -> None:
        code = 1
        try:
            self._leave_the_parent_behind(conn)
            serve_connection(
                conn, self.handler_factory, self.idle_timeout, self.log, peer, has_idle_timeout=True
            )
            code = 0
        finally:
            os._exit(code)  # never return into the parent's code, nor run its cleanups

    def _leave_the_parent_behind(self, conn: socket.socket) -> None:
        """In the child: drop the parent's signal handlers and every descriptor but ``conn``."""
        # The parent's handlers are not the child's business.  SIGTERM, which the
        # parent sends when the grace period ends, must end the child; Ctrl-C sends
        # SIGINT to the whole process group, and only the parent should decide to
        # stop; the parent's SIGCHLD handler has nothing to do here.
        _set_signal_handler(_SIGTERM, _DEFAULT)
        _set_signal_handler(_SIGINT, _IGNORE)
        _set_signal_handler(_SIGCHLD, _DEFAULT)
        # Close every descriptor but stdio and our connection: the listener first of
        # all.  A server alone in its process would only need to close the listener;
        # this one may share its process with other code (tests, the docs' examples),
        # and a child holding a copy of, say, a client's socket would stop that
        # client's close() from ever sending FIN.
        keep = conn.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, self._max_fd)

    def _finish_children(self) -> None:
        """Give children ``grace`` seconds, then SIGTERM, then SIGKILL; reap them all."""
        self.reap()  # count only the children still serving
        deadline = self._begin_grace(len(self._children))
        # Ends: bounded by the deadline, which cut_now() brings forward.
        while self._children and self._grace_left(deadline) > 0:
            self.reap()
            time.sleep(0.01)
        self.reap()
        self._end_grace(cut=len(self._children))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in list(self._children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            patience = time.monotonic() + 1.0
            while self._children and time.monotonic() < patience:
                self.reap()
                time.sleep(0.01)
