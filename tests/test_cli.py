"""``python -m tcpref``: the server and client as real processes, with real signals."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the servers are tested on Linux"
)

COMMAND = [sys.executable, "-m", "tcpref"]
MODELS = ["fork", "select", "thread"]


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*COMMAND, *args], input=stdin, capture_output=True, timeout=60, check=False
    )


@contextlib.contextmanager
def server_process(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], tuple[str, int]]]:
    """Start ``python -m tcpref serve ARGS``; yield it and its address; always stop it."""
    proc = subprocess.Popen(
        [*COMMAND, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("listening on "), first
        host, _, port = first.removeprefix("listening on ").strip().rpartition(":")
        yield proc, (host, int(port))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def echo_once(address: tuple[str, int], payload: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# -- bad arguments: one line, exit 2 ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--model", "bogus"], "argument --model: invalid choice: 'bogus'"),
        (["serve", "--model", "fork", "--port", "70000"], "port must be in range 0-65535"),
        (["serve", "--model", "fork", "--port", "http"], "port must be an integer, not 'http'"),
        (["serve", "--model", "thread", "--max-connections", "0"], "expected a number >= 1"),
        (["serve", "--model", "thread", "--idle-timeout", "-1"], "expected seconds > 0"),
        (["client", "127.0.0.1", "99999"], "port must be in range 0-65535, not 99999"),
        (["serve"], "the following arguments are required: --model"),
        ([], "the following arguments are required: command"),
    ],
)
def test_cli_bad_arguments_print_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert "Traceback" not in done.stderr.decode()


def test_cli_port_in_use_prints_one_line_and_exits_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = str(holder.getsockname()[1])
        done = run("serve", "--model", "thread", "--port", port)
    assert done.returncode == 2
    (line,) = done.stderr.decode().splitlines()
    assert f"bind(127.0.0.1:{port}): [Errno 98] EADDRINUSE" in line


def test_cli_client_refused_prints_one_line_and_exits_2() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening
        done = run("client", "127.0.0.1", str(reserved.getsockname()[1]))
    assert done.returncode == 2
    (line,) = done.stderr.decode().splitlines()
    assert "ECONNREFUSED" in line


# -- serve and client ---------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serve_stops_gracefully_on_signal_and_exits_0(model: str, sig: int) -> None:
    with server_process("--model", model, "--handler", "upper") as (proc, address):
        assert echo_once(address, b"shout") == b"SHOUT"
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=5).close()


def test_cli_client_sends_stdin_and_prints_the_replies() -> None:
    with server_process("--model", "select", "--handler", "upper") as (_, address):
        done = run("client", address[0], str(address[1]), stdin=b"hello\nworld\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"HELLO\nWORLD\n"


# -- out of file descriptors ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 0, utime field 11, stime field 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("model", MODELS)
def test_cli_server_out_of_descriptors_backs_off_and_recovers(model: str) -> None:
    with server_process("--model", model, "--max-connections", "500", "--grace", "1") as (
        proc,
        address,
    ):
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (64, 64))
        clients = []
        try:
            for _ in range(200):
                sock = socket.socket()
                sock.setblocking(False)  # do not wait: many SYNs find the queue full
                sock.connect_ex(address)
                clients.append(sock)
            time.sleep(0.5)  # let the server hit the limit
            before = cpu_seconds(proc.pid)
            time.sleep(2.0)
            cpu_share = (cpu_seconds(proc.pid) - before) / 2.0
        finally:
            for sock in clients:
                sock.close()
        assert proc.poll() is None, "the server died"
        assert cpu_share < 0.25, f"{model} server used {cpu_share:.0%} of a CPU while starved"
        # Descriptors free up as the clients go: service resumes (back-off is 1 s at most).
        deadline = time.monotonic() + 20
        while True:
            try:
                assert echo_once(address, b"alive again") == b"alive again"
                break
            except (TimeoutError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
    if model != "fork":  # the fork parent holds no connection, so it never runs out
        assert "Too many open files" in log
