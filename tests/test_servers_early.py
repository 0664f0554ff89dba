"""Clients that connect before a server starts serving get every per-connection defence.

A server listens from the moment it is built, and ``python -m tcpref serve`` prints
``listening on HOST:PORT`` before it calls ``serve_forever()``.  A client can finish
its handshake in between: the kernel queues the connection, and a restarted server
under load meets many such clients.  Linux copies a listener's socket options into a
connection when its handshake completes, not when it is accepted, so a defence that
a model applies to its listener once serving starts misses every connection already
queued (issue 13: an idle client that was never closed).

Each test connects first and serves afterwards, then checks that every idle client is
closed within ``IDLE`` seconds of being served, plus ``SLACK``.  A fork server serves
in a process of its own (``running_forked``), so that it forks from a process with
one thread; the autouse ``forks_from_one_thread`` fixture checks that every fork does.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fork_guard
import pytest

import tcpref
from tcpref import kernel
from tcpref.servers import MODELS, BaseServer, ForkServer, running, running_forked
from tcpref.servers.base import set_idle_timeout

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the servers are tested on Linux"
)

ALL_MODELS = pytest.mark.parametrize("model", sorted(MODELS))

#: The servers' idle timeout in these tests, in seconds.
IDLE = 0.5
#: How much later than the idle timeout a client may be closed: time for the kernel's
#: timer, the serving loop's next pass, a fork, and a busy machine's scheduling.
SLACK = 1.5


@pytest.fixture(autouse=True)
def forks_from_one_thread(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if any process forked while it ran other threads (see fork_guard)."""
    with fork_guard.watching(tmp_path / "forks.txt", request.node.nodeid):
        yield


def make(model: str, **kwargs: Any) -> BaseServer:
    kwargs.setdefault("grace", 1.0)
    kwargs.setdefault("idle_timeout", IDLE)
    return MODELS[model](**kwargs)


def in_background(server: BaseServer) -> contextlib.AbstractContextManager[object]:
    """Serve in the background until the block ends.

    A fork server serves in a process of its own, in its main thread, so that each
    fork is made by a process with one thread; the others serve in a thread here.
    The clients that connected before keep waiting in the listener's accept queue,
    which the server process shares.
    """
    return running_forked(server) if isinstance(server, ForkServer) else running(server)


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def queued(port: int) -> int:
    """How many connections wait in the accept queue of the listener on ``port``."""
    # On a listener, /proc/net/tcp's rx_queue counts the connections that finished
    # the handshake and wait to be accepted (see tcpref.kernel.Connection).
    return sum(
        c.rx_queue for c in kernel.connections(port) if c.state == "LISTEN" and c.local[1] == port
    )


def wait_until_queued(port: int, count: int) -> None:
    """Wait until the kernel holds ``count`` finished handshakes for the listener."""
    assert wait_until(lambda: queued(port) == count), f"{queued(port)} queued, not {count}"


def time_closed(sock: socket.socket, deadline: float) -> float | None:
    """Wait until the server closes ``sock``; when it did, or None if open at ``deadline``.

    Closed means end of stream or a reset; a byte arriving instead fails the test.
    """
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        data = sock.recv(1)
    except TimeoutError:
        return None
    except ConnectionResetError:
        data = b""
    assert data == b"", f"expected the server to close the connection, got {data!r}"
    return time.monotonic()


def check_idle_clients_are_closed_behind_a_cap_of_one(
    address: tuple[str, int], start_serving: Callable[[], object]
) -> None:
    """Queue two clients, start serving with a cap of one, and watch both be closed.

    The first is served at once and never sends a byte.  The second sends one
    request while it waits in the backlog, is accepted only when the first has been
    closed, gets its answer, and then sits idle.
    """
    with connect(address) as first, connect(address) as waiting:
        waiting.sendall(b"ping")  # read by the server only once it accepts
        wait_until_queued(address[1], 2)  # both handshakes done before serving
        started = time.monotonic()
        start_serving()
        first_closed = time_closed(first, deadline=started + IDLE + SLACK)
        assert first_closed is not None, f"first client still open {IDLE + SLACK} s on"
        assert first_closed - started >= 0.9 * IDLE  # closed for idleness, not by accident

        waiting.settimeout(IDLE + SLACK)
        assert waiting.recv(4, socket.MSG_WAITALL) == b"ping"
        answered = time.monotonic()
        waiting_closed = time_closed(waiting, deadline=answered + IDLE + SLACK)
        assert waiting_closed is not None, f"waiting client still open {IDLE + SLACK} s on"
        # Served only once the first was gone, so closed about IDLE after it.
        assert waiting_closed - first_closed >= 0.9 * IDLE


# -- in the same process: built, connected to, then served ---------------------------


@ALL_MODELS
def test_server_closes_idle_clients_that_connected_before_serving(model: str) -> None:
    server = make(model)
    with server, contextlib.ExitStack() as clients:
        # Eight clients that never send a byte, as in the report on issue 13.
        early = [clients.enter_context(connect(server.address)) for _ in range(8)]
        wait_until_queued(server.address[1], 8)
        started = time.monotonic()
        with in_background(server):
            closed = [time_closed(sock, deadline=started + IDLE + SLACK) for sock in early]
    assert None not in closed, f"{closed.count(None)} of 8 early clients never closed"
    assert min(t for t in closed if t is not None) - started >= 0.9 * IDLE


@ALL_MODELS
def test_server_closes_an_early_client_that_waited_behind_the_connection_cap(model: str) -> None:
    server = make(model, max_connections=1)
    with server, contextlib.ExitStack() as serving:
        check_idle_clients_are_closed_behind_a_cap_of_one(
            server.address, lambda: serving.enter_context(in_background(server))
        )


@ALL_MODELS
def test_server_stop_before_serving_turns_early_clients_away(model: str) -> None:
    server = make(model)
    with server, connect(server.address) as early:
        wait_until_queued(server.address[1], 1)
        server.stop()
        server.serve_forever()  # returns at once: stopped before it began
        # Closing the listener resets the connections in its queue: the client is
        # told at once instead of waiting for a server that will never answer.
        assert time_closed(early, deadline=time.monotonic() + SLACK) is not None
    assert server.listener.fileno() == -1


def kernel_timeout(sock: socket.socket, option: int) -> float:
    whole, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return float(whole + micro / 1_000_000)


def test_listener_options_reach_a_connection_at_its_handshake_not_at_accept() -> None:
    # The kernel's behaviour behind issue 13: options set on a listener reach only
    # the connections whose handshake completes afterwards, even those not yet
    # accepted.  So a server must set them before listen(), not when it starts serving.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        address = listener.getsockname()
        with connect(address):
            wait_until_queued(address[1], 1)
            set_idle_timeout(listener, 2.5)
            with connect(address):
                wait_until_queued(address[1], 2)
                with listener.accept()[0] as before, listener.accept()[0] as after:
                    assert kernel_timeout(before, socket.SO_RCVTIMEO) == 0.0  # never times out
                    assert kernel_timeout(after, socket.SO_RCVTIMEO) == pytest.approx(2.5, abs=0.01)


# -- through the command line: python -m tcpref serve ---------------------------------

# The gap between "listening on" and serve_forever() lasts microseconds, and a client
# that connects the instant the line appears rarely lands in it: when this test was
# written, none did in 10 tries each on the fork and thread models with the old code,
# though the outside suite of issue 13 did.  So the test holds the gap open for as
# long as it likes.  This module, put first on the server's path as sitecustomize
# (in place of any other), changes nothing in the command but one thing:
# serve_forever() waits for a byte on standard input before it begins.
GATE = '''\
"""Written by tests/test_servers_early.py: serve_forever() waits for a byte on stdin."""
import sys

from tcpref.servers import base

_serve_forever = base.BaseServer.serve_forever


def serve_forever(self):
    sys.stdin.buffer.read(1)
    _serve_forever(self)


base.BaseServer.serve_forever = serve_forever
'''


@contextlib.contextmanager
def held_server_process(
    gate_dir: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], tuple[str, int]]]:
    """Start ``python -m tcpref serve ARGS`` held before serve_forever(); always stop it.

    Yields the process and the address from its first line.  Writing a byte to its
    stdin lets it start serving.
    """
    (gate_dir / "sitecustomize.py").write_text(GATE, encoding="utf-8")
    # The gate first, then the tcpref under test, whichever way it is installed.
    path = [str(gate_dir), str(Path(tcpref.__file__).resolve().parent.parent)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    stderr = gate_dir / "stderr.txt"
    with stderr.open("wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tcpref", "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        first = proc.stdout.readline().decode() if ready else ""
        assert first.startswith("listening on "), f"{first!r}; stderr: {stderr.read_text()}"
        host, _, port = first.removeprefix("listening on ").strip().rpartition(":")
        yield proc, (host.strip("[]"), int(port))  # [::1]:PORT for IPv6
    finally:
        proc.stdin.close()  # end of stream opens the gate, if the test did not
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def open_gate(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go")
    proc.stdin.flush()


@ALL_MODELS
def test_cli_serve_closes_idle_clients_that_connected_as_it_printed_listening(
    model: str, tmp_path: Path
) -> None:
    args = ["--model", model, "--idle-timeout", str(IDLE), "--max-connections", "1"]
    with held_server_process(tmp_path, *args, "--grace", "1") as (proc, address):
        check_idle_clients_are_closed_behind_a_cap_of_one(address, lambda: open_gate(proc))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
