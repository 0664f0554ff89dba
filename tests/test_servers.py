"""The three server models on real loopback sockets: correctness, limits, faults, stop.

Every test here is bounded in time and count, and the autouse ``no_leaks`` fixture
fails any test that leaves a descriptor, thread or child process behind.

A fork server under test serves in a process of its own (``running_forked``), in
that process's main thread, as under ``python -m tcpref serve``: a fork made while
the forking process runs other threads may deadlock the child (Python 3.12 and newer
warn), and the autouse ``forks_from_one_thread`` fixture fails any test in which a
process forks with other threads running.  The tests talk to it over loopback, and
see its children in /proc.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import fork_guard
import pytest

import tcpref
from tcpref.errors import SocketCallError
from tcpref.servers import (
    MODELS,
    BaseServer,
    Echo,
    ForkServer,
    LineUpper,
    SelectServer,
    ThreadServer,
    Upper,
    running,
    running_forked,
)
from tcpref.servers.base import set_idle_timeout

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the servers are tested on Linux"
)

ALL_MODELS = pytest.mark.parametrize("model", sorted(MODELS))


@pytest.fixture(autouse=True)
def forks_from_one_thread(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if any process forked while it ran other threads (see fork_guard)."""
    with fork_guard.watching(tmp_path / "forks.txt", request.node.nodeid):
        yield


def make(model: str, **kwargs: Any) -> BaseServer:
    kwargs.setdefault("grace", 1.0)
    return MODELS[model](**kwargs)


class Served(NamedTuple):
    """A server serving in the background, as the tests see it, whatever its model."""

    address: tuple[str, int]
    #: Stops it gracefully, and waits until it has finished.
    stop: Callable[[], None]
    #: Once stopped: whether the server closed its listening socket.
    listener_closed: Callable[[], bool]


def serve_then_report_listener(server: BaseServer) -> int:
    """In a fork server's own process: serve, then say what became of the listener."""
    server.serve_forever()
    return server.listener.fileno()


@contextlib.contextmanager
def serving(server: BaseServer) -> Iterator[Served]:
    """Serve in the background until the block ends, then stop and check the server.

    A fork server serves in a process of its own, in its main thread, so that each
    fork is made by a process with one thread; the others serve in a thread here.
    """
    if isinstance(server, ForkServer):
        with running_forked(server, serve_then_report_listener) as process:
            yield Served(process.address, process.stop, lambda: process.result == -1)
    else:
        with running(server) as address:
            yield Served(address, server.stop, lambda: server.listener.fileno() == -1)


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def read_to_eof(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read until the peer closes; bounded by ``limit`` bytes and the socket's timeout."""
    data = bytearray()
    while len(data) <= limit:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError("more data than expected")


def exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Send ``payload``, half-close, and return everything the server sent back.

    A reader thread drains replies while the payload is written, as any client of
    an echo server must: otherwise both sides' buffers fill and both block.
    """
    with connect(address, timeout=20) as sock:
        replies: list[bytes] = []
        reader = threading.Thread(target=lambda: replies.append(read_to_eof(sock)))
        reader.start()
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        finally:
            reader.join(timeout=30)
        assert not reader.is_alive()
        return replies[0]


def check_half_close(address: tuple[str, int]) -> None:
    """One checker for every model, after trio's stream checks.

    The client sends, then half-closes with SHUT_WR: the server must still answer
    everything, then close its side, so the client reads the replies and then b"";
    a write after that fails once the server's kernel has answered with RST.
    """
    with connect(address) as sock:
        sock.sendall(b"first ")
        sock.sendall(b"second")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"first second"
        assert sock.recv(10) == b""  # end of stream stays
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            send_until_refused(sock)


def is_refused(address: tuple[str, int]) -> bool:
    try:
        connect(address).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # The handshake was under way when the listener shut down: refused too.
        return True
    return False


def send_until_refused(sock: socket.socket) -> None:
    """Write until the kernel refuses (the peer's RST needs a moment); 50 tries at most."""
    for _ in range(50):
        sock.send(b"late")
        time.sleep(0.01)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- correctness ----------------------------------------------------------------------


@ALL_MODELS
@pytest.mark.parametrize("size", [1, 64 * 1024, 16 * 1024 * 1024 + 1])
def test_server_echo_is_byte_exact(model: str, size: int) -> None:
    payload = os.urandom(size)
    with serving(make(model)) as served:
        assert exchange(served.address, payload) == payload


@ALL_MODELS
def test_server_half_close_checker(model: str) -> None:
    with serving(make(model)) as served:
        check_half_close(served.address)


@ALL_MODELS
def test_server_upper_handler_answers_in_upper_case(model: str) -> None:
    with serving(make(model, handler=Upper)) as served:
        assert exchange(served.address, b"hello, world\n") == b"HELLO, WORLD\n"


@ALL_MODELS
def test_server_line_handler_answers_a_last_line_without_newline(model: str) -> None:
    with serving(make(model, handler=LineUpper)) as served:
        assert exchange(served.address, b"one\ntwo") == b"ONE\nTWO"


@ALL_MODELS
def test_server_serves_100_concurrent_clients(model: str) -> None:
    with serving(make(model, max_connections=100)) as served, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(served.address)) for _ in range(100)]
        for number, sock in enumerate(clients):
            sock.sendall(f"client {number}\n".encode())
        for number, sock in enumerate(clients):
            expected = f"client {number}\n".encode()
            assert sock.recv(len(expected), socket.MSG_WAITALL) == expected


# -- faults and bad clients ---------------------------------------------------------------


@ALL_MODELS
def test_server_survives_200_clients_closing_at_once(model: str) -> None:
    with serving(make(model, max_connections=200)) as served:
        clients = [connect(served.address) for _ in range(200)]
        for sock in clients:
            sock.sendall(b"x" * 100)
        for sock in clients:
            sock.close()
        assert exchange(served.address, b"still serving") == b"still serving"


@ALL_MODELS
def test_server_survives_clients_that_reset_mid_stream(model: str) -> None:
    with serving(make(model)) as served:
        for _ in range(20):
            sock = connect(served.address)
            sock.sendall(os.urandom(256 * 1024))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST while the server is still answering
        assert exchange(served.address, b"after the resets") == b"after the resets"


@ALL_MODELS
def test_server_survives_clients_that_write_8mib_and_close_without_reading(model: str) -> None:
    with serving(make(model)) as served:
        for _ in range(3):
            with connect(served.address) as sock:
                sock.settimeout(0.5)
                # The echo fills both directions' buffers; give up writing when the
                # server stops reading us, then close without reading a byte.
                with contextlib.suppress(TimeoutError):
                    sock.sendall(os.urandom(8 * 1024 * 1024))
        assert exchange(served.address, b"next client") == b"next client"


class Explodes(Echo):
    """A handler with a bug: it raises on a certain input."""

    def received(self, data: bytes) -> bytes:
        if b"boom" in data:
            raise RuntimeError("handler bug")
        return data


@ALL_MODELS
def test_server_handler_exception_closes_only_that_connection(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        serving(make(model, handler=Explodes)) as served,
        connect(served.address) as bystander,
        connect(served.address) as victim,
    ):
        bystander.sendall(b"before ")
        assert bystander.recv(7, socket.MSG_WAITALL) == b"before "
        victim.sendall(b"boom")
        assert read_to_eof(victim) == b""  # closed by the server
        bystander.sendall(b"after")
        assert bystander.recv(5, socket.MSG_WAITALL) == b"after"
    if model != "fork":  # a child's log records do not reach this process's caplog
        assert any("handler failed" in r.getMessage() for r in caplog.records)


# -- limits ---------------------------------------------------------------------------------


@ALL_MODELS
def test_server_closes_idle_clients(model: str) -> None:
    with serving(make(model, idle_timeout=0.3)) as served, connect(served.address) as sock:
        started = time.monotonic()
        assert read_to_eof(sock) == b""
        assert 0.25 < time.monotonic() - started < 3.0


@ALL_MODELS
def test_server_closes_a_client_that_trickles_an_endless_line(model: str) -> None:
    with (
        serving(make(model, handler=LineUpper, idle_timeout=0.4)) as served,
        connect(served.address) as sock,
    ):
        closed = False
        for _ in range(40):  # 40 bytes, 0.05 s apart: 2 s at most
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            sock.settimeout(0.001)
            with contextlib.suppress(TimeoutError):
                if sock.recv(1) == b"":
                    closed = True
                    break
        assert closed


@ALL_MODELS
def test_server_connection_cap_makes_excess_clients_wait_in_the_backlog(model: str) -> None:
    with serving(make(model, max_connections=2)) as served:
        first, second = connect(served.address), connect(served.address)
        with first, second:
            for sock in (first, second):
                sock.sendall(b"in")
                assert sock.recv(2, socket.MSG_WAITALL) == b"in"
            with connect(served.address) as third:  # the kernel completes the handshake ...
                third.sendall(b"waiting")
                third.settimeout(0.3)
                with pytest.raises(TimeoutError):  # ... but nobody serves it yet
                    third.recv(100)
                first.close()  # a slot frees up: the third client is served
                third.settimeout(5)
                assert third.recv(7, socket.MSG_WAITALL) == b"waiting"


def kernel_timeout(sock: socket.socket, option: int) -> float:
    whole, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return float(whole + micro / 1_000_000)


def test_server_connections_inherit_the_listeners_idle_timeout() -> None:
    # What the blocking servers rely on, so as to set the options once, not per
    # connection: Linux copies a listener's SO_RCVTIMEO and SO_SNDTIMEO to every
    # connection it accepts.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        set_idle_timeout(listener, 2.5)
        with connect(listener.getsockname()), listener.accept()[0] as conn:
            assert kernel_timeout(conn, socket.SO_RCVTIMEO) == pytest.approx(2.5, abs=0.01)
            assert kernel_timeout(conn, socket.SO_SNDTIMEO) == pytest.approx(2.5, abs=0.01)


def test_thread_server_connection_has_the_idle_timeout() -> None:
    server = ThreadServer(idle_timeout=7.0, grace=1.0)
    with running(server) as address, connect(address) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        (conn,) = server._workers.values()
        assert kernel_timeout(conn, socket.SO_RCVTIMEO) == pytest.approx(7.0, abs=0.01)
        assert kernel_timeout(conn, socket.SO_SNDTIMEO) == pytest.approx(7.0, abs=0.01)
        assert conn.gettimeout() is None  # blocking calls: the kernel times them out


class ScriptedListener:
    """Stands in for a listening socket whose accept() fails as told, then succeeds."""

    def __init__(self, real: socket.socket, failures: list[OSError]) -> None:
        self.real, self.failures = real, failures

    def gettimeout(self) -> float | None:
        return self.real.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self.real.settimeout(value)

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            raise self.failures.pop()
        return self.real.accept()


def test_server_accept_skips_any_number_of_aborted_connections() -> None:
    server = ThreadServer(grace=1.0)
    real = server.listener
    try:
        aborted: list[OSError] = [
            ConnectionAbortedError(errno.ECONNABORTED, "aborted") for _ in range(150)
        ]
        server.listener = ScriptedListener(real, aborted)  # type: ignore[assignment]
        assert [server._accept() for _ in range(150)] == [None] * 150
        with connect(server.address):
            accepted = server._accept()
            assert accepted is not None
            accepted[0].close()
    finally:
        server.listener = real
        server.stop()


def test_server_accept_failure_names_the_call_and_address() -> None:
    server = ThreadServer(grace=1.0)
    real = server.listener
    try:
        failure = [OSError(errno.EINVAL, "Invalid argument")]
        server.listener = ScriptedListener(real, failure)  # type: ignore[assignment]
        with pytest.raises(SocketCallError, match=r"accept\(127\.0\.0\.1:\d+\): \[Errno 22\]"):
            server._accept()
    finally:
        server.listener = real
        server.stop()


# -- stopping ---------------------------------------------------------------------------------


@ALL_MODELS
def test_server_stop_refuses_new_clients_at_once_and_lets_in_flight_ones_finish(
    model: str,
) -> None:
    with serving(make(model, grace=3.0)) as served:
        active = connect(served.address)
        active.sendall(b"one")
        assert active.recv(3, socket.MSG_WAITALL) == b"one"
        stopper = threading.Thread(target=served.stop)
        stopper.start()
        assert wait_until(lambda: is_refused(served.address), timeout=1.0)
        active.sendall(b"two")  # still served during the grace period
        assert active.recv(3, socket.MSG_WAITALL) == b"two"
        started = time.monotonic()
        active.close()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        assert time.monotonic() - started < 2.0  # it did not wait out the whole grace


@ALL_MODELS
def test_server_stop_closes_idle_clients_after_the_grace_period(model: str) -> None:
    with serving(make(model, grace=0.5)) as served, connect(served.address) as idle:
        idle.sendall(b"hi")
        assert idle.recv(2, socket.MSG_WAITALL) == b"hi"
        started = time.monotonic()
        served.stop()
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 5.0
        assert read_to_eof(idle) == b""
    assert served.listener_closed()


@ALL_MODELS
def test_server_stop_before_serving_releases_the_listener(model: str) -> None:
    server = make(model)
    server.stop()
    server.stop()  # twice is harmless
    assert server.listener.fileno() == -1
    server.serve_forever()  # returns at once: the server was stopped


def test_server_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_connections must be > 0, not 0"):
        ThreadServer(max_connections=0)
    with pytest.raises(TypeError, match="idle_timeout must be a float, not '3'"):
        SelectServer(idle_timeout="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler must be a callable"):
        ForkServer(handler=42)  # type: ignore[arg-type]


def test_server_binds_loopback_by_default() -> None:
    server = ThreadServer()
    try:
        assert server.address[0] == "127.0.0.1"
    finally:
        server.stop()


# -- the fork server's children ------------------------------------------------------------
#
# Each of these runs a ForkServer in a process of its own (running_forked), serving in
# its main thread, where it installs its SIGCHLD handler.  What a test needs from inside
# that process, it reads from /proc, or the ``serve`` function it passes sends back.


def process_state(pid: int) -> str:
    """The one-letter state of ``pid``: R running, S sleeping, Z zombie, ..."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


def signal_masks(pid: int) -> dict[str, int]:
    """The SigBlk, SigIgn and SigCgt masks of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith("Sig"))
    return {name: int(fields[name], 16) for name in ("SigBlk", "SigIgn", "SigCgt")}


def has(mask: int, sig: int) -> bool:
    return bool(mask & (1 << (sig - 1)))


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``sig``."""
    return has(signal_masks(pid)["SigCgt"], sig)


def open_files(pid: int) -> set[str]:
    """What each descriptor of ``pid`` refers to, such as 'socket:[1234]'."""
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def test_fork_server_1000_short_connections_leave_no_zombies() -> None:
    def serve(server: ForkServer) -> bool:  # in the server process
        previous = signal.getsignal(signal.SIGCHLD)
        server.serve_forever()
        return signal.getsignal(signal.SIGCHLD) == previous

    with running_forked(ForkServer(grace=1.0), serve) as process:
        # The SIGCHLD handler is installed while serving (before, nothing caught it).
        assert wait_until(lambda: catches(process.pid, signal.SIGCHLD))
        for number in range(1000):
            message = b"%d" % number
            assert exchange(process.address, message) == message
        # Children include zombies: none left means every child was reaped.
        assert wait_until(lambda: not process.children(), timeout=5)
    assert process.result is True  # and the previous handler was put back after


def test_fork_server_leaves_a_foreign_child_waitable() -> None:
    def serve(server: ForkServer) -> tuple[str, int]:  # in the server process
        foreign = os.fork()  # a child the server did not make
        if foreign == 0:
            time.sleep(0.2)
            os._exit(7)
        server.serve_forever()  # the foreign child's SIGCHLD reaches the server's handler
        exited_unreaped = process_state(foreign)  # "Z": exited, and left for its owner
        _, status = os.waitpid(foreign, 0)  # ChildProcessError if the server stole it
        return exited_unreaped, os.waitstatus_to_exitcode(status)

    with running_forked(ForkServer(grace=1.0), serve) as process:
        started = time.monotonic()
        # Serve clients while the foreign child exits, 0.2 s in.
        while time.monotonic() - started < 0.5:
            assert exchange(process.address, b"ping") == b"ping"
            time.sleep(0.02)
    assert process.result == ("Z", 7)


def test_fork_server_reaps_a_child_that_exits_before_its_pid_is_recorded() -> None:
    # Only the SIGCHLD handler reaps while serving in the main thread.  Here the
    # child's SIGCHLD is handled inside fork(), before the server has recorded the
    # pid; no later SIGCHLD comes, and the child must be collected all the same.
    def serve(server: ForkServer) -> int:  # in the server process
        real_fork = os.fork
        delayed: list[int] = []

        def fork_that_returns_late() -> int:
            pid = real_fork()
            if pid:  # the parent: let the child exit, and its SIGCHLD be handled, first
                delayed.append(pid)
                wait_until(lambda: process_state(pid) == "Z", timeout=5)
                time.sleep(0.05)  # the handler runs during the sleep
            return pid

        os.fork = fork_that_returns_late  # in this process only, which exits after
        server.serve_forever()
        return len(delayed)

    with running_forked(ForkServer(grace=1.0), serve) as process:
        with connect(process.address) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"  # the child serves: the fork has returned in it
        # The child reads end of stream and exits at once; its pid is recorded late.
        assert wait_until(lambda: not process.children(), timeout=7)
    assert process.result == 1  # the one fork returned late


def test_fork_server_child_takes_its_own_signal_dispositions() -> None:
    def serve(server: ForkServer) -> None:  # in the server process
        # As under `python -m tcpref serve`, the server process handles SIGINT, and
        # SIGTERM too (running_forked's handler; running_forked ignores SIGINT).
        signal.signal(signal.SIGINT, lambda *_: None)
        server.serve_forever()

    with (
        running_forked(ForkServer(grace=1.0), serve) as process,
        connect(process.address) as sock,
    ):
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        (child,) = process.children()
        child_masks, parent_masks = signal_masks(child), signal_masks(process.pid)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        assert has(parent_masks["SigCgt"], sig)
    # SIGTERM ends the child, Ctrl-C's SIGINT leaves it alone, SIGCHLD is not its business.
    assert not has(child_masks["SigCgt"], signal.SIGTERM)
    assert not has(child_masks["SigIgn"], signal.SIGTERM)
    assert has(child_masks["SigIgn"], signal.SIGINT)
    assert not has(child_masks["SigCgt"], signal.SIGCHLD)
    assert not any(has(child_masks["SigBlk"], sig) for sig in (signal.SIGTERM, signal.SIGCHLD))


def test_fork_server_child_closes_the_listening_socket() -> None:
    server = ForkServer(grace=1.0)
    listener = f"socket:[{os.fstat(server.listener.fileno()).st_ino}]"
    with running_forked(server) as process, connect(process.address) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        (child,) = process.children()
        assert listener in open_files(process.pid)  # the server process listens ...
        assert listener not in open_files(child)  # ... its child does not


def test_thread_server_keeps_no_finished_threads() -> None:
    server = ThreadServer()
    with running(server) as address:
        for _ in range(50):
            assert exchange(address, b"short") == b"short"
        assert wait_until(lambda: not server._workers)
        names = [t.name for t in threading.enumerate()]
        assert not [n for n in names if n.startswith("tcpref-conn-")]


def test_fork_server_survives_a_failed_fork() -> None:
    def serve(server: ForkServer) -> int:  # in the server process
        real_fork = os.fork
        failures = [BlockingIOError(11, "Resource temporarily unavailable")]

        def fork_that_fails_once() -> int:
            if failures:
                raise failures.pop()  # as under RLIMIT_NPROC: EAGAIN
            return real_fork()

        os.fork = fork_that_fails_once  # in this process only, which exits after
        server.serve_forever()
        return len(failures)

    with running_forked(ForkServer(grace=1.0), serve) as process:
        with connect(process.address) as dropped:
            assert read_to_eof(dropped) == b""  # this client could not be served ...
        assert exchange(process.address, b"next") == b"next"  # ... but the server goes on
    assert process.result == 0  # the failure was used


# A fork server serving in a thread that is not the main thread cannot install its
# SIGCHLD handler, so its accept loop reaps; and each of its forks is made by a
# process with two threads, which Python 3.12 and newer warn about.  A process of its
# own shows both, without forking from this one with threads running.
IN_A_THREAD = """\
import socket, time
from tcpref.servers import ForkServer, running

server = ForkServer(grace=1.0)
with running(server) as address:
    for _ in range(5):
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"ping")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(10) == b"ping"
    deadline = time.monotonic() + 5
    while server.children and time.monotonic() < deadline:
        time.sleep(0.01)
    print("children left:", len(server.children))
"""


def test_fork_server_in_a_thread_reaps_in_its_loop_and_python_warns() -> None:
    package = str(Path(tcpref.__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", IN_A_THREAD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": package},
    )
    assert (done.returncode, done.stdout) == (0, "children left: 0\n"), done.stderr
    warned = "is multi-threaded, use of fork() may lead to deadlocks" in done.stderr
    assert warned == (sys.version_info >= (3, 12)), done.stderr


class Crashes(ThreadServer):
    def _serve(self) -> None:
        raise OSError(22, "invented failure")


def test_running_reports_a_crashed_server() -> None:
    with (
        pytest.raises(RuntimeError, match="thread server crashed") as raised,
        running(Crashes(grace=0.5)),
    ):
        time.sleep(0.05)
    assert isinstance(raised.value.__cause__, OSError)


# -- running_forked: a server in a process of its own -----------------------------------


class CrashesForked(ForkServer):
    def _serve(self) -> None:
        raise OSError(22, "invented failure")


def test_running_forked_reports_a_crashed_server_with_its_traceback() -> None:
    with (
        pytest.raises(RuntimeError, match="fork server crashed") as raised,
        running_forked(CrashesForked(grace=0.5)) as process,
    ):
        wait_until(lambda: process_state(process.pid) == "Z")  # it crashed, and exited
    cause = raised.value.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == 22
    assert "in _serve" in "".join(getattr(cause, "__notes__", []))


@ALL_MODELS
def test_running_forked_stopped_at_once_still_stops_gracefully(model: str) -> None:
    # The stop's SIGTERM must not come before the server process has its handler
    # (running_forked waits until it says so): it would kill the process, unreported.
    with running_forked(make(model)) as process:
        pass
    assert process.stop_outcome in (None, (0, 0))  # stopped before serving, or at once
    process.stop()  # twice is harmless


@ALL_MODELS
def test_running_forked_serves_every_model_and_says_how_the_stop_went(model: str) -> None:
    with running_forked(make(model, grace=0.3)) as process, connect(process.address) as idle:
        idle.sendall(b"hi")
        assert idle.recv(2, socket.MSG_WAITALL) == b"hi"
        process.stop()  # the idle client is still open: cut after the grace period
        assert read_to_eof(idle) == b""
    assert process.stop_outcome == (1, 1)


def test_running_forked_server_process_keeps_only_stdio_and_its_listener() -> None:
    server = ForkServer(grace=1.0)
    listener = f"socket:[{os.fstat(server.listener.fileno()).st_ino}]"
    with socket.socket() as unrelated:  # a descriptor the caller had before the fork
        mine = os.readlink(f"/proc/self/fd/{unrelated.fileno()}")
        with running_forked(server) as process:
            held = open_files(process.pid)
            stdio = {os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)}
    assert listener in held
    assert mine not in held
    # Beyond stdio and the listener: the pipe its report goes back through.
    assert len(held - stdio - {listener}) == 1
    assert server.listener.fileno() == -1  # the caller's copy is closed at once
