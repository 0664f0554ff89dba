"""The lifecycle every tcpref server shares: bind, listen, accept loop, stop.

Like CPython's ``socketserver``, a server is built in one step (the listening socket
is bound at once, so its address is known before serving starts), then runs
``serve_forever()`` until ``stop()``.  The three models differ only in how they serve
the connections they accept: a child process each (:mod:`~tcpref.servers.fork_server`),
a thread each (:mod:`~tcpref.servers.thread_server`), or one event loop for all
(:mod:`~tcpref.servers.select_server`).

The defences live here, once:

* the listener binds 127.0.0.1 unless told otherwise;
* at most ``max_connections`` connections are served at once; the server simply
  does not ``accept`` while it is full, so further clients wait in the kernel's
  accept queue (and, once that is full, their SYNs go unanswered);
* a connection that gets no reply for ``idle_timeout`` seconds is closed, even
  one that connected before serving started;
* running out of file descriptors (EMFILE, ENFILE) makes the accept loop back off,
  5 ms doubling up to 1 s as Go's net/http does, instead of spinning;
* ``stop()`` refuses new connections at once, lets in-flight ones finish for
  ``grace`` seconds, then closes them; ``cut_now()`` ends that wait early, and
  ``stop_outcome`` says how many connections finished and how many were cut.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import select
import signal
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple, NoReturn, TypeVar

from tcpref import wrap
from tcpref.errors import format_address, translate
from tcpref.servers.handlers import Echo, Handler

__all__ = [
    "BaseServer",
    "HandlerFactory",
    "ServerProcess",
    "StopOutcome",
    "running",
    "running_forked",
    "serve_connection",
    "set_idle_timeout",
]

#: Makes a new handler for each connection, for example a handler class.
HandlerFactory = Callable[[], Handler]

# accept() errors that mean "this process or system is short of a resource right
# now": wait, then try again.  Anything else is a bug or a dead listener.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors for a client that reset its connection while it waited in the
# queue (BSD reports it; Linux hands such a connection over, and recv fails instead).
_ABORTED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO})
_FIRST_BACKOFF = 0.005
_MAX_BACKOFF = 1.0

#: The largest chunk a server reads from a connection at once.
READ_SIZE = 64 * 1024


def _check_positive(name: str, value: object, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{name} must be a {kind.__name__}, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")


class StopOutcome(NamedTuple):
    """What a stop did to the connections that were open when its grace period began.

    >>> outcome = StopOutcome(waited_for=3, cut=1)
    >>> outcome.finished
    2
    """

    #: Connections still open when the server stopped accepting.
    waited_for: int
    #: Of those, the ones still open when the grace period ended, which the server closed.
    cut: int

    @property
    def finished(self) -> int:
        """The connections that finished by themselves within the grace period."""
        return self.waited_for - self.cut


class BaseServer:
    """Bind, listen, accept until stopped; subclasses decide how a connection is served.

    Args:
        address: Where to listen.  The default, port 0 on 127.0.0.1, lets the
            kernel choose a free port on the loopback interface only; read it back
            from :attr:`address`.
        handler: Makes one handler per connection, for example
            :class:`~tcpref.servers.handlers.Upper`.
        max_connections: Connections served at once; further clients wait.
        idle_timeout: Seconds a connection may go without a reply before it is
            closed.  A client that sends nothing, or trickles bytes that never
            complete a request, is closed after this long.  The clock starts when
            the server accepts the connection, so this covers a client that
            connected before serving began, or waited while the server was full.
        grace: Seconds that :meth:`stop` lets in-flight connections finish.
        backlog: The accept queue's length (Linux caps it at ``somaxconn``).

    Raises:
        TypeError: if a limit has the wrong type.
        ValueError: if a limit is not positive.
        SocketCallError: if the address cannot be bound, for example EADDRINUSE.
    """

    #: The model's name, as used by ``python -m tcpref serve --model``.
    model: ClassVar[str] = "base"
    #: How often a blocking accept loop wakes up to check for stop, at most.
    poll_interval: ClassVar[float] = 0.1

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        handler: HandlerFactory = Echo,
        *,
        max_connections: int = 100,
        idle_timeout: float = 30.0,
        grace: float = 5.0,
        backlog: int = 128,
    ) -> None:
        _check_positive("max_connections", max_connections, int)
        _check_positive("idle_timeout", idle_timeout)
        _check_positive("grace", grace)
        if not callable(handler):
            raise TypeError(f"handler must be a callable that makes a handler, not {handler!r}")
        self.handler_factory = handler
        self.max_connections = max_connections
        self.idle_timeout = float(idle_timeout)
        self.grace = float(grace)
        self.log = logging.getLogger(f"tcpref.servers.{self.model}")
        self.listener = self._open_listener(address, backlog)
        #: The address the server listens on, with the port the kernel chose.
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self._stop_requested = threading.Event()
        # stop() in a signal handler sets this plain flag: see stop().
        self._stop_flag = False
        self._cut_requested = threading.Event()  # cut_now(): the grace period is over
        self._finished = threading.Event()
        #: Called in the serving thread as the grace period begins, with the number of
        #: connections still open and the grace in seconds; None calls nothing.
        self.on_stopping: Callable[[int, float], None] | None = None
        #: How the stop went, once serve_forever() has stopped serving; None before,
        #: and for a server stopped before it ever served.
        self.stop_outcome: StopOutcome | None = None
        self._waited_for = 0
        # Guards the start of serving against stop().  Reentrant, because stop() may
        # run in a signal handler that interrupted this very thread while it held it.
        self._lock = threading.RLock()
        self._started = False
        self._serving_thread: int | None = None
        self._backoff = 0.0

    def _open_listener(self, address: tuple[str, int], backlog: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
        sock = wrap.tcp_socket(family)
        try:
            # A restarted server must be able to bind while its old connections
            # sit in TIME_WAIT; see docs/concepts/errors.md.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            wrap.bind(sock, address)
            self._prepare_listener(sock)
            wrap.listen(sock, backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def _prepare_listener(self, sock: socket.socket) -> None:
        """Set the options every connection takes from the listener; runs before listen().

        From ``listen()`` on, the kernel completes handshakes by itself, and Linux
        copies the listener's socket options into each connection as its handshake
        completes, not when ``accept()`` takes it from the queue.  A server listens
        (and ``python -m tcpref serve`` prints its address) before it serves, so an
        option set on the listener when serving starts would miss every client
        that connected in between.  Models override this, as ``socketserver``'s
        subclasses override ``server_bind``.  It runs inside ``__init__``, before
        the model's own attributes exist.  The base sets nothing.

        Raises:
            OSError: if the kernel refuses an option.
        """

    # -- the lifecycle --------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; then finish in-flight connections and return.

        Raises:
            RuntimeError: if the server was already used.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("serve_forever() can run only once per server")
            self._serving_thread = threading.get_ident()
            self._started = True
        try:
            if not self.stopping:
                self._serve()
        finally:
            self.listener.close()
            self._finished.set()

    def stop(self) -> None:
        """Stop serving, gracefully.

        New connections are refused at once; connections in progress get
        ``grace`` seconds to finish, then are closed (:meth:`cut_now` closes them
        sooner; :attr:`on_stopping` hears when the wait begins, and
        :attr:`stop_outcome` says how it ended).  Called from another thread,
        it waits until the server has finished.  It is safe to call from a signal
        handler, and to call more than once.
        """
        self._stop_flag = True
        if threading.get_ident() != self._serving_thread:
            # Event.set() takes the event's lock.  In the serving thread, stop() runs
            # only as a signal handler, which may have interrupted that very thread
            # inside _stop_requested.wait() while it held the lock: taking it again
            # would hang for ever.  There the flag is enough, since the serving
            # thread's waits are short and it checks `stopping` after each one.
            self._stop_requested.set()
        # On Linux, shutting down a listening socket stops it listening (new SYNs
        # get RST) and wakes a thread blocked in accept().
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self._wake()
        with self._lock:
            started = self._started
        if not started:
            self.listener.close()  # never served: nothing else to wait for
            self._finished.set()
        elif self._serving_thread != threading.get_ident():
            self._finished.wait(self.grace + 10)

    def cut_now(self) -> None:
        """Stop at once: close the connections still open instead of waiting for them.

        It calls :meth:`stop` if that has not been called yet, and ends the grace
        period early if it has, for example on a second Ctrl-C.  The connections cut
        are counted in :attr:`stop_outcome`.  Like :meth:`stop`, it is safe to call
        from a signal handler and more than once, and called from another thread it
        waits until the server has finished.
        """
        self._cut_requested.set()
        self.stop()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has been called."""
        return self._stop_flag or self._stop_requested.is_set()

    def __enter__(self) -> BaseServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- for the models ---------------------------------------------------------------

    def _serve(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake the serving loop so that it notices a stop; models may override."""

    def _begin_grace(self, open_connections: int) -> float:
        """Start the grace period, once accepting has ended; return its deadline.

        Models call this with the number of connections still open, and then wait
        while :meth:`_grace_left` is above 0.

        Raises:
            Exception: whatever :attr:`on_stopping` raises.
        """
        deadline = time.monotonic() + self.grace
        self._waited_for = open_connections
        if self.on_stopping is not None:
            self.on_stopping(open_connections, self.grace)
        return deadline

    def _grace_left(self, deadline: float) -> float:
        """Seconds left until ``deadline``: 0 once it has passed or :meth:`cut_now` ran."""
        if self._cut_requested.is_set():
            return 0.0
        return max(deadline - time.monotonic(), 0.0)

    def _end_grace(self, cut: int) -> None:
        """Record how the stop went: ``cut`` connections were still open at its end."""
        self.stop_outcome = StopOutcome(self._waited_for, cut)

    def _accept(self) -> tuple[socket.socket, Any] | None:
        """Wait up to ``poll_interval`` for a connection; ``None`` if none came.

        Running out of descriptors backs off instead of failing, and any accept
        failure after :meth:`stop` just ends the wait.
        """
        if self.listener.gettimeout() != self.poll_interval:
            self.listener.settimeout(self.poll_interval)  # once: each call costs a system call
        try:
            # The socket method rather than wrap.accept: this runs once per connection,
            # and a server should skip any number of aborted connections, not 100.
            conn, peer = self.listener.accept()
        except TimeoutError:
            return None
        except OSError as exc:
            if self.stopping or exc.errno in _ABORTED_ERRNOS:
                return None  # the listener was shut down under us, or the client left
            if exc.errno not in _RESOURCE_ERRNOS:
                raise translate(exc, call="accept", address=self.address) from exc
            self._back_off(exc)
            return None
        self._backoff = 0.0
        return conn, peer

    def _back_off(self, exc: OSError) -> None:
        """Sleep before the next accept, twice as long each time in a row, up to 1 s.

        The connection that could not be accepted stays in the accept queue, so the
        listener stays readable: retrying at once would spin a CPU at 100%.
        """
        self._backoff = min(max(2 * self._backoff, _FIRST_BACKOFF), _MAX_BACKOFF)
        self.log.warning("accept: %s; retrying in %.3f s", exc.strerror, self._backoff)
        self._stop_requested.wait(self._backoff)


def serve_connection(
    conn: socket.socket,
    make_handler: HandlerFactory,
    idle_timeout: float,
    log: logging.Logger,
    peer: object = None,
    *,
    has_idle_timeout: bool = False,
) -> None:
    """Serve one connection with blocking calls, then close it.

    This is the loop of the fork and thread servers: read, let the handler answer,
    send the answer, until the peer closes (then send the handler's last words),
    the connection goes idle, or an error ends it.  Errors end this connection
    only: a reset or a broken pipe is logged briefly, anything else with its
    traceback.

    The idle timeout is the kernel's (``SO_RCVTIMEO`` and ``SO_SNDTIMEO``) rather
    than Python's ``settimeout``: Python polls before every call on a socket with a
    timeout, while the kernel's own timeout costs nothing per call.  A blocking call
    that runs out of time then fails with EAGAIN, which Python raises as
    ``BlockingIOError``.  Bytes that get no reply (a request in progress) must be
    answered within ``idle_timeout`` of the first of them, so a client that trickles
    a request that never completes is closed too.

    The fork and thread servers set those options once, on their listener, with
    :func:`set_idle_timeout`, before it listens: Linux, like the BSDs, copies a
    listener's socket options into each connection as its handshake completes, so
    every connection has them, however early it arrived (see
    ``BaseServer._prepare_listener``).  They pass ``has_idle_timeout=True``, and
    this function skips the two system calls that would set them again.
    """
    try:
        with conn:
            if conn.gettimeout() is not None:
                conn.settimeout(None)  # blocking calls, with the kernel's timeouts
            if not has_idle_timeout:
                set_idle_timeout(conn, idle_timeout)
            handler = make_handler()
            # When the handler has taken bytes without answering yet (a request in
            # progress), the request must complete within idle_timeout of its
            # first byte.  Silence is the kernel's business (SO_RCVTIMEO), so the
            # usual path, a reply to every read, never looks at a clock.
            request_started: float | None = None
            # Ends: each pass reads data; end of stream, a timeout or an error stops it.
            while data := conn.recv(READ_SIZE):
                reply = handler.received(data)
                if reply:
                    conn.sendall(reply)
                    if request_started is not None:
                        request_started = None
                        _set_kernel_timeout(conn, socket.SO_RCVTIMEO, idle_timeout)
                    continue
                now = time.monotonic()
                request_started = request_started or now
                remaining = request_started + idle_timeout - now
                if remaining <= 0:
                    log.info(
                        "%s: request incomplete after %.1f s, closing", _where(peer), idle_timeout
                    )
                    return
                _set_kernel_timeout(conn, socket.SO_RCVTIMEO, remaining)
            last_words = handler.eof()  # the peer has closed its side
            if last_words:
                conn.sendall(last_words)
    except BlockingIOError:
        log.info("%s: idle for %.1f s, closing", _where(peer), idle_timeout)
    except (ConnectionResetError, BrokenPipeError) as exc:
        log.info("%s: %s", _where(peer), exc.strerror)
    except Exception:
        log.exception("%s: handler failed; closing this connection", _where(peer))


def _where(peer: object) -> str:
    """The peer's address for a log line; formatted only when a line is written."""
    return format_address(peer) if peer is not None else "?"


def set_idle_timeout(sock: socket.socket, seconds: float) -> None:
    """Make blocking reads and writes on ``sock`` fail with EAGAIN after ``seconds``.

    Sets the kernel's ``SO_RCVTIMEO`` and ``SO_SNDTIMEO``.  Set on a listening
    socket, they are inherited by its connections (on Linux and the BSDs, which
    copy a listener's socket options to its connections), but only by those whose
    handshake completes afterwards: set them before ``listen()``, or connections
    already waiting in the accept queue go without.

    Raises:
        OSError: if the kernel refuses the options.
    """
    _set_kernel_timeout(sock, socket.SO_SNDTIMEO, seconds)
    _set_kernel_timeout(sock, socket.SO_RCVTIMEO, seconds)


def _set_kernel_timeout(conn: socket.socket, option: int, seconds: float) -> float:
    """Set SO_RCVTIMEO or SO_SNDTIMEO (a ``struct timeval``); return ``seconds``."""
    whole = int(seconds)
    micro = max(int((seconds - whole) * 1_000_000), 1 if whole == 0 else 0)  # 0 means never
    conn.setsockopt(socket.SOL_SOCKET, option, struct.pack("@ll", whole, micro))
    return seconds


@contextlib.contextmanager
def running(server: BaseServer) -> Iterator[tuple[str, int]]:
    """Run ``server`` in a background thread; yield its address; stop it on exit.

    On exit the server is stopped gracefully and its thread joined, so nothing is
    left behind: no thread, no child process, no listening socket.

    A :class:`~tcpref.servers.fork_server.ForkServer` run this way forks each child
    from a process with two threads, which Python 3.12 and newer warn about, since
    a child forked from a process with threads can deadlock: serve it with
    :func:`running_forked` instead.

    Raises:
        RuntimeError: if the server does not stop within ``grace`` plus 10 s, or if
            it crashed (the crash is the ``__cause__``).
    """
    crashes: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:  # handed to the caller below
            crashes.append(exc)

    thread = threading.Thread(target=serve, name=f"{server.model}-server")
    thread.start()
    try:
        yield server.address
    finally:
        server.stop()
        thread.join(server.grace + 10)
        if thread.is_alive():
            raise RuntimeError(f"{server.model} server did not stop")
        if crashes:
            raise RuntimeError(f"{server.model} server crashed") from crashes[0]


S = TypeVar("S", bound=BaseServer)

# How long ServerProcess waits for the server's process to start, and to stop beyond
# its grace.
_STOP_PATIENCE = 10.0
# The server process's first byte: it has its SIGTERM handler, and only its descriptors.
_READY = b"+"


class ServerProcess:
    """A server serving in a process of its own, started by :func:`running_forked`.

    The server object that was passed to :func:`running_forked` stays behind in the
    calling process, as a copy that never serves: ask this handle instead.

    Attributes:
        pid: The server process's pid.
        address: The address the server listens on.
        stop_outcome: How the stop went (:attr:`BaseServer.stop_outcome`), once
            :meth:`stop` has returned.
        result: What the ``serve`` function given to :func:`running_forked`
            returned in the server process, once :meth:`stop` has returned.
    """

    def __init__(self, server: BaseServer, pid: int, reader: int) -> None:
        self.pid = pid
        self.address: tuple[str, int] = server.address
        self.stop_outcome: StopOutcome | None = None
        self.result: object = None
        self._model = server.model
        self._patience = server.grace + _STOP_PATIENCE
        self._reader = reader  # the report comes through it; -1 once it has come
        self._lock = threading.Lock()  # a test may stop from two threads at once

    def children(self) -> frozenset[int]:
        """The pids of the server process's children now, zombies included (Linux).

        For a fork server these are the children serving connections, and those
        that have exited but are not reaped yet.
        """
        return _children_of(self.pid)

    def _wait_until_ready(self) -> None:
        """Wait for the server process to say that it is ready to serve and to stop.

        Until then it may still hold the caller's descriptors, and a SIGTERM would
        kill it instead of stopping the server.

        Raises:
            RuntimeError: if it does not say so within 10 s, or ends first.
        """
        ready = b""
        try:
            if select.select([self._reader], [], [], _STOP_PATIENCE)[0]:
                ready = os.read(self._reader, len(_READY))
        finally:
            if ready != _READY:
                self._wait(deadline=0.0)  # kill it, and reap it
        if ready != _READY:
            raise RuntimeError(f"{self._model} server's process did not start")

    def stop(self) -> None:
        """Stop the server gracefully and wait until its process has exited.

        It sends SIGTERM, on which the server process calls :meth:`BaseServer.stop`.
        Calling it again, or from two threads at once, is harmless.

        Raises:
            RuntimeError: if the process does not exit within the server's grace
                plus 10 s (it is then killed), or if the server crashed (the crash is
                the ``__cause__``).
        """
        with self._lock:
            if self._reader == -1:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            report = self._wait(time.monotonic() + self._patience)
        if report is None:
            raise RuntimeError(f"{self._model} server did not stop; its process was killed")
        self._take(report)

    def _wait(self, deadline: float) -> bytes | None:
        """Read the report until ``deadline`` (None if it did not come), and reap the process."""
        report = None
        try:
            report = wrap.read_pipe_to_end(self._reader, deadline)
        finally:
            os.close(self._reader)
            self._reader = -1
            if report is None:  # late, or we were interrupted: do not wait for it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        return report

    def _take(self, report: bytes) -> None:
        # Imported here, not at the top: python -m tcpref serve imports this module,
        # and every library a fork server has loaded makes each of its forks dearer.
        import pickle

        if not report:
            raise RuntimeError(f"{self._model} server's process ended without a report")
        kind, *details = pickle.loads(report)
        if kind == "crashed":
            raise RuntimeError(f"{self._model} server crashed") from details[0]
        if kind == "unsendable":
            raise RuntimeError(f"{self._model} server's process: {details[0]}")
        self.stop_outcome, self.result = details


@contextlib.contextmanager
def running_forked(
    server: S, serve: Callable[[S], object] | None = None
) -> Iterator[ServerProcess]:
    """Run ``server`` in a forked process of its own; yield a handle; stop it on exit.

    The server serves in the main thread of that process, which has no other
    thread, so a :class:`~tcpref.servers.fork_server.ForkServer` forks each child
    from a process with one thread and reaps it in its SIGCHLD handler, as under
    ``python -m tcpref serve``.  Call this while the calling process has one thread
    too (the fork made here copies only the calling thread; a thread just joined,
    which the kernel may still count for a moment, is waited for); threads started
    afterwards, clients for instance, are fine.

    Before the block begins, the server process has closed every descriptor it
    inherited except the standard streams and the listener, ignores SIGINT (Ctrl-C
    is the caller's, whose exit stops the server) and stops gracefully on SIGTERM.
    On exit the handle's :meth:`ServerProcess.stop` stops it and reaps it.

    Args:
        server: A server that has not served yet.
        serve: What the server process runs, ``server.serve_forever`` by default.
            A test or an example may pass a function that does more around it
            there; what it returns comes back as :attr:`ServerProcess.result`
            (it must be picklable).

    Raises:
        RuntimeError: if the server does not stop within ``grace`` plus 10 s, or if
            it crashed (the crash is the ``__cause__``).
        OSError: if the fork fails.
    """
    process = _start_server_process(server, serve or BaseServer.serve_forever)
    try:
        yield process
    finally:
        process.stop()


def _start_server_process(server: S, serve: Callable[[S], object]) -> ServerProcess:
    """Fork the server process and wait until it is ready; the caller keeps no listener."""
    _wait_for_exiting_threads()
    reader, writer = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(reader)
        os.close(writer)
        raise
    if pid == 0:
        os.close(reader)
        _serve_in_this_process(server, serve, writer)
    os.close(writer)
    server.listener.close()  # the server process's copy is the one that serves
    process = ServerProcess(server, pid, reader)
    process._wait_until_ready()
    return process


def _wait_for_exiting_threads(patience: float = 1.0) -> None:
    """If Python runs one thread here but the kernel counts more, wait for them to go.

    Before Python 3.13, ``Thread.join()`` returns once the thread's Python state is
    gone, a moment before the kernel's thread has exited: a fork made just after a
    join (a client thread's, say) is still made by a process with two threads.
    """
    if threading.active_count() > 1:
        return  # threads that run on: the caller's business (see running_forked)
    deadline = time.monotonic() + patience
    # Ends: by the deadline.
    while _kernel_threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.001)


def _kernel_threads() -> int:
    """How many threads this process has, as the kernel counts them (Linux; else 1)."""
    try:
        with open("/proc/self/stat") as stat:
            # After the command name: the state (field 3), ..., num_threads (field 20).
            return int(stat.read().rpartition(")")[2].split()[17])
    except OSError:
        return 1


def _serve_in_this_process(server: S, serve: Callable[[S], object], writer: int) -> NoReturn:
    """The server process's whole life: serve, send the report, leave with ``os._exit``."""
    status = 1
    try:
        _keep_only_descriptors(server.listener.fileno(), writer)
        signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.write(writer, _READY)  # from now on, the caller may stop us
        report = _report(server, serve)
        view = memoryview(report)
        while view:
            view = view[os.write(writer, view) :]
        status = 0
    finally:
        os._exit(status)  # never return into the caller's code, nor run its cleanups


def _keep_only_descriptors(*keep: int) -> None:
    """Close every descriptor but stdio and ``keep``: the caller's are not the server's.

    A copy of, say, a client's socket held here would stop that client's close()
    from sending FIN for as long as the server runs.
    """
    # Nothing the caller left for the garbage collector may be collected here: a
    # socket of the caller's, finalised later, would close its descriptor's number
    # after a connection of the server's has reused it.
    gc.freeze()
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _report(server: S, serve: Callable[[S], object]) -> bytes:
    """Serve, and say how it ended, pickled: stopped (outcome, result) or crashed."""
    import pickle  # see ServerProcess._take

    outcome: tuple[object, ...]
    try:
        result = serve(server)
        outcome = ("stopped", server.stop_outcome, result)
    except BaseException as exc:  # sent to the caller, which raises it
        # A traceback does not survive pickling; its text, as a note, does.
        exc.add_note(f"in the server process {os.getpid()}:\n{traceback.format_exc()}")
        outcome = ("crashed", exc)
    try:
        return pickle.dumps(outcome)
    except Exception as exc:  # an unpicklable result or exception
        return pickle.dumps(("unsendable", f"{outcome[0]}, but could not say how: {exc}"))


def _children_of(parent: int) -> frozenset[int]:
    """The pids whose parent is ``parent``, zombies included, from /proc/PID/stat."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue  # it exited while we looked
            if int(fields[1]) == parent:  # after the name: the state, then the parent
                children.add(int(entry))
    return frozenset(children)
