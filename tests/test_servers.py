"""The three server models on real loopback sockets: correctness, limits, faults, stop.

Every test here is bounded in time and count, and the autouse ``no_leaks`` fixture
fails any test that leaves a descriptor, thread or child process behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

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
)
from tcpref.servers.base import set_idle_timeout

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the servers are tested on Linux"
)

ALL_MODELS = pytest.mark.parametrize("model", sorted(MODELS))


def make(model: str, **kwargs: Any) -> BaseServer:
    kwargs.setdefault("grace", 1.0)
    return MODELS[model](**kwargs)


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
    with running(make(model)) as address:
        assert exchange(address, payload) == payload


@ALL_MODELS
def test_server_half_close_checker(model: str) -> None:
    with running(make(model)) as address:
        check_half_close(address)


@ALL_MODELS
def test_server_upper_handler_answers_in_upper_case(model: str) -> None:
    with running(make(model, handler=Upper)) as address:
        assert exchange(address, b"hello, world\n") == b"HELLO, WORLD\n"


@ALL_MODELS
def test_server_line_handler_answers_a_last_line_without_newline(model: str) -> None:
    with running(make(model, handler=LineUpper)) as address:
        assert exchange(address, b"one\ntwo") == b"ONE\nTWO"


@ALL_MODELS
def test_server_serves_100_concurrent_clients(model: str) -> None:
    with running(make(model, max_connections=100)) as address, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(address)) for _ in range(100)]
        for number, sock in enumerate(clients):
            sock.sendall(f"client {number}\n".encode())
        for number, sock in enumerate(clients):
            expected = f"client {number}\n".encode()
            assert sock.recv(len(expected), socket.MSG_WAITALL) == expected


# -- faults and bad clients ---------------------------------------------------------------


@ALL_MODELS
def test_server_survives_200_clients_closing_at_once(model: str) -> None:
    with running(make(model, max_connections=200)) as address:
        clients = [connect(address) for _ in range(200)]
        for sock in clients:
            sock.sendall(b"x" * 100)
        for sock in clients:
            sock.close()
        assert exchange(address, b"still serving") == b"still serving"


@ALL_MODELS
def test_server_survives_clients_that_reset_mid_stream(model: str) -> None:
    with running(make(model)) as address:
        for _ in range(20):
            sock = connect(address)
            sock.sendall(os.urandom(256 * 1024))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST while the server is still answering
        assert exchange(address, b"after the resets") == b"after the resets"


@ALL_MODELS
def test_server_survives_clients_that_write_8mib_and_close_without_reading(model: str) -> None:
    with running(make(model)) as address:
        for _ in range(3):
            with connect(address) as sock:
                sock.settimeout(0.5)
                # The echo fills both directions' buffers; give up writing when the
                # server stops reading us, then close without reading a byte.
                with contextlib.suppress(TimeoutError):
                    sock.sendall(os.urandom(8 * 1024 * 1024))
        assert exchange(address, b"next client") == b"next client"


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
        running(make(model, handler=Explodes)) as address,
        connect(address) as bystander,
        connect(address) as victim,
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
    with running(make(model, idle_timeout=0.3)) as address, connect(address) as sock:
        started = time.monotonic()
        assert read_to_eof(sock) == b""
        assert 0.25 < time.monotonic() - started < 3.0


@ALL_MODELS
def test_server_closes_a_client_that_trickles_an_endless_line(model: str) -> None:
    with (
        running(make(model, handler=LineUpper, idle_timeout=0.4)) as address,
        connect(address) as sock,
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
    with running(make(model, max_connections=2)) as address:
        first, second = connect(address), connect(address)
        with first, second:
            for sock in (first, second):
                sock.sendall(b"in")
                assert sock.recv(2, socket.MSG_WAITALL) == b"in"
            with connect(address) as third:  # the kernel completes the handshake ...
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
    server = make(model, grace=3.0)
    with running(server) as address:
        active = connect(address)
        active.sendall(b"one")
        assert active.recv(3, socket.MSG_WAITALL) == b"one"
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        assert wait_until(lambda: is_refused(address), timeout=1.0)
        active.sendall(b"two")  # still served during the grace period
        assert active.recv(3, socket.MSG_WAITALL) == b"two"
        started = time.monotonic()
        active.close()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        assert time.monotonic() - started < 2.0  # it did not wait out the whole grace


@ALL_MODELS
def test_server_stop_closes_idle_clients_after_the_grace_period(model: str) -> None:
    server = make(model, grace=0.5)
    with running(server) as address, connect(address) as idle:
        idle.sendall(b"hi")
        assert idle.recv(2, socket.MSG_WAITALL) == b"hi"
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 5.0
        assert read_to_eof(idle) == b""
    assert server.listener.fileno() == -1


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


def run_fork_server_in_main_thread(
    server: ForkServer, client_work: Callable[[tuple[str, int]], None]
) -> list[BaseException]:
    """Serve in the main thread (SIGCHLD handler installed) while ``client_work`` runs."""
    failures: list[BaseException] = []

    def clients() -> None:
        try:
            client_work(server.address)
        except BaseException as exc:  # reported to the test below
            failures.append(exc)
        finally:
            server.stop()

    worker = threading.Thread(target=clients)
    watchdog = threading.Timer(60, server.stop)  # never serve forever in a test
    worker.start()
    watchdog.start()
    try:
        server.serve_forever()
    finally:
        watchdog.cancel()
        watchdog.join()
        worker.join(timeout=10)
    return failures


def zombie_children() -> list[int]:
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
                if fields[0] == "Z" and int(fields[1]) == os.getpid():
                    zombies.append(int(entry))
    return zombies


def test_fork_server_1000_short_connections_leave_no_zombies() -> None:
    server = ForkServer(grace=1.0)
    handlers_seen: list[bool] = []

    def work(address: tuple[str, int]) -> None:
        installed = wait_until(lambda: signal_handler_now() == server._on_sigchld)
        handlers_seen.append(installed)
        for number in range(1000):
            message = b"%d" % number
            assert exchange(address, message) == message
        assert wait_until(lambda: not server.children, timeout=5)
        assert zombie_children() == []

    failures = run_fork_server_in_main_thread(server, work)
    assert failures == []
    assert handlers_seen == [True]  # the SIGCHLD handler was installed while serving
    assert signal_handler_now() != server._on_sigchld  # and taken away after


def signal_handler_now() -> object:
    import signal

    return signal.getsignal(signal.SIGCHLD)


def test_fork_server_leaves_a_foreign_child_waitable() -> None:
    foreign = os.fork()
    if foreign == 0:
        time.sleep(0.2)
        os._exit(7)
    server = ForkServer(grace=1.0)

    def work(address: tuple[str, int]) -> None:
        # Serve clients while the foreign child exits: its SIGCHLD reaches our handler.
        for _ in range(20):
            assert exchange(address, b"ping") == b"ping"
            time.sleep(0.02)

    try:
        failures = run_fork_server_in_main_thread(server, work)
    finally:
        pid, status = os.waitpid(foreign, 0)  # ChildProcessError if the server stole it
    assert failures == []
    assert pid == foreign
    assert os.waitstatus_to_exitcode(status) == 7


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


def test_fork_server_reaps_a_child_that_exits_before_its_pid_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the SIGCHLD handler reaps while serving in the main thread.  Here the
    # child's SIGCHLD is handled inside fork(), before the server has recorded the
    # pid; no later SIGCHLD comes, and the child must be collected all the same.
    real_fork = os.fork
    delayed: list[int] = []

    def fork_that_returns_late() -> int:
        pid = real_fork()
        if pid:  # the parent: let the child exit, and its SIGCHLD be handled, first
            delayed.append(pid)
            wait_until(lambda: process_state(pid) == "Z", timeout=5)
            time.sleep(0.05)  # the handler runs during the sleep
        return pid

    server = ForkServer(grace=1.0)
    monkeypatch.setattr(os, "fork", fork_that_returns_late)
    reaped: list[bool] = []

    def work(address: tuple[str, int]) -> None:
        connect(address).close()  # the child reads end of stream and exits at once
        assert wait_until(lambda: len(delayed) == 1)
        reaped.append(wait_until(lambda: not server.children and not zombie_children(), 2.0))

    failures = run_fork_server_in_main_thread(server, work)
    assert failures == []
    assert reaped == [True]


def signal_masks(pid: int) -> dict[str, int]:
    """The SigBlk, SigIgn and SigCgt masks of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith("Sig"))
    return {name: int(fields[name], 16) for name in ("SigBlk", "SigIgn", "SigCgt")}


def has(mask: int, sig: int) -> bool:
    return bool(mask & (1 << (sig - 1)))


def test_fork_server_child_takes_its_own_signal_dispositions() -> None:
    # As under `python -m tcpref serve`: the parent handles SIGTERM and SIGINT.
    server = ForkServer(grace=1.0)
    seen: list[dict[str, int]] = []

    def work(address: tuple[str, int]) -> None:
        with connect(address) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            (child,) = server.children
            seen.append(signal_masks(child))
            seen.append(signal_masks(os.getpid()))

    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failures = run_fork_server_in_main_thread(server, work)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert failures == []
    child, parent = seen
    assert has(parent["SigCgt"], signal.SIGTERM)
    assert has(parent["SigCgt"], signal.SIGCHLD)
    # SIGTERM ends the child, Ctrl-C's SIGINT leaves it alone, SIGCHLD is not its business.
    assert not has(child["SigCgt"], signal.SIGTERM)
    assert not has(child["SigIgn"], signal.SIGTERM)
    assert has(child["SigIgn"], signal.SIGINT)
    assert not has(child["SigCgt"], signal.SIGCHLD)
    assert not any(has(child["SigBlk"], sig) for sig in (signal.SIGTERM, signal.SIGCHLD))


def test_fork_server_child_closes_the_listening_socket() -> None:
    server = ForkServer(grace=1.0)
    with running(server) as address, connect(address) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        (child,) = server.children
        listener_inode = os.fstat(server.listener.fileno()).st_ino
        child_fds = os.listdir(f"/proc/{child}/fd")
        targets = {os.readlink(f"/proc/{child}/fd/{fd}") for fd in child_fds}
        assert f"socket:[{listener_inode}]" not in targets


def test_thread_server_keeps_no_finished_threads() -> None:
    server = ThreadServer()
    with running(server) as address:
        for _ in range(50):
            assert exchange(address, b"short") == b"short"
        assert wait_until(lambda: not server._workers)
        names = [t.name for t in threading.enumerate()]
        assert not [n for n in names if n.startswith("tcpref-conn-")]


def test_fork_server_survives_a_failed_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fork = os.fork
    failures = [BlockingIOError(11, "Resource temporarily unavailable")]

    def fork_that_fails_once() -> int:
        if failures:
            raise failures.pop()  # as under RLIMIT_NPROC: EAGAIN
        return real_fork()

    monkeypatch.setattr(os, "fork", fork_that_fails_once)
    with running(ForkServer(grace=1.0)) as address:
        with connect(address) as dropped:
            assert read_to_eof(dropped) == b""  # this client could not be served ...
        assert exchange(address, b"next") == b"next"  # ... but the server goes on
    assert failures == []


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
