"""``python -m tcpref``: the server, client and trace as real processes, with real signals."""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tcpref.trace import format_trace

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
    # Unbuffered, so that next_line can wait on the pipe itself.
    proc = subprocess.Popen(
        [*COMMAND, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    try:
        assert proc.stdout is not None
        first = next_line(proc.stdout).decode()
        assert first.startswith("listening on "), first
        host, _, port = first.removeprefix("listening on ").strip().rpartition(":")
        yield proc, (host.strip("[]"), int(port))  # [::1]:PORT for IPv6
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


def next_line(stream: Any, timeout: float = 15) -> bytes:
    """Read one line from an unbuffered pipe, waiting ``timeout`` seconds at most in all."""
    deadline = time.monotonic() + timeout
    line = b""
    # Ends: each pass reads one byte, or meets the end of the stream or the deadline.
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise TimeoutError(f"no whole line within {timeout} s, only {line!r}")
        byte = stream.read(1)
        if not byte:
            break
        line += byte
    return line


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
        (["client", "127.0.0.1:99999"], "port must be in range 0-65535, not 99999"),
        (["client", "127.0.0.1"], "expected HOST PORT, HOST:PORT or [V6]:PORT, not '127.0.0.1'"),
        (["client", "::1"], "expected HOST PORT, HOST:PORT or [V6]:PORT, not '::1'"),
        (["client", "[::1]"], "expected HOST PORT, HOST:PORT or [V6]:PORT, not '[::1]'"),
        (["client", "127.0.0.1:80", "80"], "the port is given twice: '127.0.0.1:80' and 80"),
        (["serve"], "the following arguments are required: --model"),
        (["trace"], "the following arguments are required: --port"),
        (["trace", "--port", "0"], "port must be in range 1-65535 to capture, not 0"),
        (["trace", "--port", "80", "--count", "0"], "expected a number >= 1, not 0"),
        (["trace", "--port", "80", "--timeout", "0"], "expected seconds > 0, not 0"),
        (["trace", "--port", "80", "--timeout", "inf"], "expected a finite number of seconds"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_cli_bad_arguments_print_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert "Traceback" not in done.stderr.decode()


def test_cli_serve_loads_no_module_it_does_not_need() -> None:
    # A forking server copies its page tables on every fork, and each child copies
    # the pages Python's after-fork code writes to: the fewer modules loaded, the
    # cheaper a connection.  The capture code is imported by `trace` alone, and the
    # servers use no dataclasses (which would bring inspect, ast and dis).  Parsing
    # the arguments must not bring shutil, which argparse imports to measure the
    # terminal, nor the compression libraries that shutil imports.
    code = (
        "import sys, tcpref.cli\n"
        "tcpref.cli.build_parser().parse_args(['serve', '--model', 'fork'])\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert "tcpref.servers" in loaded
    unneeded = {"tcpref.capture", "ctypes", "dataclasses", "inspect", "ast", "asyncio"}
    unneeded |= {"shutil", "zlib", "bz2", "lzma"}
    assert unneeded.intersection(loaded) == set()


@pytest.mark.parametrize("columns", ["50", "100"])
def test_cli_help_wraps_as_argparse_would(columns: str) -> None:
    # The formatter is given the width argparse would have found with shutil.
    show_help = "tcpref.cli.main(['serve', '--help'])"
    stock = "argparse.RawDescriptionHelpFormatter"
    as_argparse_would = f"tcpref.cli._HelpFormatter = {stock}; {show_help}"

    def output(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", f"import argparse, tcpref.cli; {code}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": columns},
        ).stdout

    ours = output(show_help)
    assert "--max-connections" in ours
    assert ours == output(as_argparse_would)


COMMANDS = ["serve", "client", "trace"]


def help_text(*command: str) -> str:
    done = subprocess.run(
        [*COMMAND, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_help_is_plain_text_with_an_example_per_command() -> None:
    top = help_text()
    assert "``" not in top, "the description is reST, not text for people"
    for command in COMMANDS:
        assert f"python -m tcpref {command} " in top.partition("examples:")[2], command
        example = help_text(command).partition("\nexample:\n  ")[2].splitlines()[:1]
        assert example, f"{command} --help has no example"
        assert f"python -m tcpref {command} " in example[0], command


def sentence_for(shown: str, name: str) -> str | None:
    """The help text listed for option or positional ``name``; None if not listed."""
    lines = shown.partition("\nexample:")[0].splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("  ") or line.startswith("   "):
            continue  # not an option's line: options are indented by two spaces
        invocation, _, text = line[2:].partition("  ")
        if re.search(rf"(^|[ ,]){re.escape(name)}\b", invocation):
            following = lines[number + 1] if number + 1 < len(lines) else ""
            return text.strip() or (following.strip() if following.startswith("    ") else "")
    return None


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_help_describes_every_option_with_its_default(command: str) -> None:
    from tcpref.cli import build_parser

    shown = help_text(command)
    (chooser,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for action in chooser.choices[command]._actions:
        name = action.option_strings[-1] if action.option_strings else action.metavar
        assert isinstance(name, str)
        assert sentence_for(shown, name), f"{command} {name} has no help text:\n{shown}"
        assert action.help is not None
        takes_value = action.nargs != 0
        if takes_value and not action.required and action.default is not None:
            assert "(default: %(default)" in action.help, f"{command} {name}: no default"


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
        assert proc.stdout is not None
        *_, last = proc.stdout.read().decode().splitlines()
    # The client has its reply, but the server may not have seen its close yet.
    assert re.fullmatch(r"stopped: [01] connections? finished, 0 cut", last), last


def round_trip(client: socket.socket, data: bytes) -> bytes:
    """Send ``data`` to an echo server and read back as many bytes, or up to its close."""
    client.sendall(data)
    reply = b""
    # Ends: each pass reads at least a byte, or meets the end of stream (or the timeout).
    while len(reply) < len(data) and (chunk := client.recv(len(data) - len(reply))):
        reply += chunk
    return reply


@contextlib.contextmanager
def served_client(address: tuple[str, int]) -> Iterator[socket.socket]:
    """A client that the server is serving (it has had a reply), and stays connected."""
    with socket.create_connection(address, timeout=15) as client:
        assert round_trip(client, b"hi") == b"hi"
        yield client


@pytest.mark.parametrize("model", MODELS)
def test_cli_serve_ctrl_c_says_what_it_waits_for_then_what_it_did(model: str) -> None:
    with server_process("--model", model, "--grace", "30") as (proc, address):
        assert proc.stdout is not None
        next_line(proc.stdout)  # model=... handler=...
        with served_client(address) as client:
            proc.send_signal(signal.SIGINT)
            assert next_line(proc.stdout) == (
                b"stopping: waiting up to 30 s for 1 connection to finish; "
                b"Ctrl-C again to cut it now\n"
            )
            assert round_trip(client, b"still served") == b"still served"  # during the grace
        # The client has gone: the server stops without waiting out the 30 s.
        assert proc.wait(timeout=15) == 0
        rest = proc.stdout.read()
    assert rest == b"stopped: 1 connection finished, 0 cut\n"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("ending", ["second Ctrl-C", "grace runs out"])
def test_cli_serve_stop_that_cuts_connections_says_so_and_exits_3(model: str, ending: str) -> None:
    grace = "60" if ending == "second Ctrl-C" else "0.5"
    with server_process("--model", model, "--grace", grace) as (proc, address):
        assert proc.stdout is not None
        next_line(proc.stdout)  # model=... handler=...
        with served_client(address) as client, served_client(address) as other:
            proc.send_signal(signal.SIGINT)
            stopping = next_line(proc.stdout)  # the stop has begun
            if ending == "second Ctrl-C":
                proc.send_signal(signal.SIGINT)
            # Well before 60 s: the second Ctrl-C does not wait out the grace period.
            status = proc.wait(timeout=15)
            assert client.recv(10) == b""  # cut: the server closed the connection
            assert other.recv(10) == b""
        rest = proc.stdout.read()
    assert stopping.startswith(b"stopping: waiting up to %s s for 2 connections" % grace.encode())
    assert stopping.endswith(b"; Ctrl-C again to cut them now\n")
    assert rest == b"stopped: 0 connections finished, 2 cut\n"
    assert status == 3


def test_cli_client_sends_stdin_and_prints_the_replies() -> None:
    with server_process("--model", "select", "--handler", "upper") as (_, address):
        done = run("client", address[0], str(address[1]), stdin=b"hello\nworld\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"HELLO\nWORLD\n"


def test_cli_client_timeout_says_how_many_bytes_came_back_and_exits_2() -> None:
    # The reader's session: the server has echoed a line, and then nothing moves either
    # way for --timeout seconds (here stdin stays open and silent).
    with server_process("--model", "thread", "--handler", "echo") as (_, address):
        stdin_read, stdin_write = os.pipe()  # we hold the write end open: stdin never ends
        try:
            os.write(stdin_write, b"hi\n")
            client = subprocess.run(
                [*COMMAND, "client", address[0], str(address[1]), "--timeout", "0.5"],
                stdin=stdin_read,
                capture_output=True,
                timeout=30,
                check=False,
            )
        finally:
            os.close(stdin_read)
            os.close(stdin_write)
    out, err = client.stdout, client.stderr
    assert client.returncode == 2
    assert out == b"hi\n"
    (line,) = err.decode().splitlines()
    assert line == (
        f"python -m tcpref: error: timed out: nothing sent or received for 0.5 s "
        f"(--timeout); 3 bytes had come back from 127.0.0.1:{address[1]}"
    )


def test_cli_client_timeout_counts_silence_not_the_whole_exchange() -> None:
    # Six lines half a second apart: three seconds in all, each gap a quarter of the
    # timeout.  A timeout on the whole exchange would end this; one on silence does not.
    feeder = "import sys, time\nfor n in range(6):\n    print(n, flush=True)\n    time.sleep(0.5)\n"
    with (
        server_process("--model", "select", "--handler", "upper") as (_, address),
        subprocess.Popen([sys.executable, "-c", feeder], stdout=subprocess.PIPE) as lines,
    ):
        done = subprocess.run(
            [*COMMAND, "client", address[0], str(address[1]), "--timeout", "2"],
            stdin=lines.stdout,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert lines.wait(timeout=30) == 0
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"".join(b"%d\n" % n for n in range(6))


def ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


@needs_ipv6
def test_cli_serve_writes_an_ipv6_address_in_brackets() -> None:
    proc = subprocess.Popen(
        [*COMMAND, "serve", "--model", "select", "--host", "::1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=15)
    assert re.fullmatch(r"listening on \[::1\]:[1-9][0-9]*\n", first), first


@pytest.mark.parametrize(
    ("host", "form"),
    [
        ("127.0.0.1", "HOST PORT"),
        ("127.0.0.1", "HOST:PORT"),
        pytest.param("::1", "[V6]:PORT", marks=needs_ipv6),
        pytest.param("::1", "V6 PORT", marks=needs_ipv6),
    ],
)
def test_cli_client_accepts_the_address_as_serve_prints_it(host: str, form: str) -> None:
    with server_process("--model", "select", "--handler", "upper", "--host", host) as (
        _,
        (_, port),
    ):
        where = {
            "HOST PORT": [host, str(port)],
            "HOST:PORT": [f"{host}:{port}"],
            "[V6]:PORT": [f"[{host}]:{port}"],
            "V6 PORT": [host, str(port)],
        }[form]
        done = run("client", *where, stdin=b"pasted\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"PASTED\n"


def in_a_private_network_namespace() -> list[str] | None:
    """A command prefix that runs a program in a new network namespace, or None.

    In there, the only interface is a loopback that is down: binding every interface
    reaches no other machine, so the test stays on loopback as every test must.
    """
    prefix = ["unshare", "--net"] if IS_ROOT else ["unshare", "--user", "--map-root-user", "--net"]
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize(
    ("host", "warned"),
    [("0.0.0.0", True), pytest.param("::", True, marks=needs_ipv6), ("127.0.0.1", False)],
)
def test_cli_serve_on_every_interface_warns_on_stderr(host: str, warned: bool) -> None:
    prefix = in_a_private_network_namespace()
    if prefix is None:
        pytest.skip("cannot make a private network namespace here (unshare refused)")
    proc = subprocess.Popen(
        [*prefix, *COMMAND, "serve", "--model", "thread", "--host", host],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)  # unshare has become the server: no fork
            _, err = proc.communicate(timeout=15)
    assert first.startswith("listening on "), (first, err)
    if not warned:
        assert err == ""
        return
    shown = f"[{host}]" if ":" in host else host
    (line,) = err.splitlines()
    assert line == (
        f"python -m tcpref serve: warning: listening on every interface ({shown}), so other "
        "machines can connect, and the handler sends back whatever they send; "
        "use --host 127.0.0.1 to stay on this machine"
    )


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


# -- trace ----------------------------------------------------------------------------------

IS_ROOT = os.geteuid() == 0
# The trace command captures (CAP_NET_RAW): it runs in a private network namespace where
# the user is uid 0, so that the command keeps the capability when it starts.
privileged = pytest.mark.netns(root=True)


@contextlib.contextmanager
def trace_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``python -m tcpref trace ARGS``; yield it once its capture is open."""
    proc = subprocess.Popen(
        [*COMMAND, "trace", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()  # printed once the capture is open
        assert header == format_trace(()) + "\n", (header, proc.stderr and proc.stderr.read())
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=15)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@privileged
def test_cli_trace_prints_a_connection_as_it_happens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]
        with trace_process("--port", str(port), "--count", "8", "--timeout", "20") as proc:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            with client:
                client_port = client.getsockname()[1]
                assert proc.stdout is not None
                # Printed as it arrives, while the connection is still open: the handshake.
                first = [proc.stdout.readline() for _ in range(3)]
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    client.sendall(b"hi")
                    assert conn.recv(10) == b"hi"
                    client.close()
                    assert conn.recv(10) == b""
            rest, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0, errors
    lines = [line.lstrip().split("  ", 1)[1] for line in first + rest.splitlines(keepends=True)]
    note = f"  (127.0.0.1:{client_port})\n"
    assert all(line.endswith(note) for line in lines), lines
    assert [line.removesuffix(note).split(" win=")[0] for line in lines] == [
        "C -> S  SYN seq=0",
        "C <- S  SYN|ACK seq=0 ack=1",
        "C -> S  ACK seq=1 ack=1",
        "C -> S  PSH|ACK seq=1 ack=1",
        "C <- S  ACK seq=1 ack=3",
        "C -> S  FIN|ACK seq=3 ack=1",
        "C <- S  FIN|ACK seq=1 ack=4",
        "C -> S  ACK seq=4 ack=2",
    ]
    assert " len=2 " in lines[3]
    assert "[MSS=65495, SACK_PERM, TS, WS=" in lines[0]


@privileged
def test_cli_trace_stops_at_its_timeout_with_nothing_seen() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # a port nobody else will use meanwhile
        port = str(reserved.getsockname()[1])
        started = time.monotonic()
        with trace_process("--port", port, "--timeout", "0.5") as proc:
            rest, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0, errors
    assert rest == ""
    assert 0.5 <= time.monotonic() - started < 15


def _without_cap_net_raw() -> tuple[list[str], Any] | None:
    """How to run a command without CAP_NET_RAW here: (prefix, preexec_fn), or None."""
    if not IS_ROOT:
        return [], None  # an ordinary user has no capabilities to drop
    if shutil.which("setpriv"):
        return ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"], None
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None

    def become_nobody() -> None:
        os.setgid(nobody)
        os.setuid(nobody)  # drops every capability

    return [], become_nobody


def test_cli_trace_without_cap_net_raw_prints_one_line_and_exits_2() -> None:
    how = _without_cap_net_raw()
    if how is None:
        pytest.skip("as root, dropping CAP_NET_RAW needs setpriv or a 'nobody' user")
    prefix, preexec_fn = how
    try:
        done = subprocess.run(
            [*prefix, *COMMAND, "trace", "--port", "80", "--timeout", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            preexec_fn=preexec_fn,
        )
    except PermissionError:  # as 'nobody', the interpreter may be out of reach
        pytest.skip("user 'nobody' cannot run this interpreter, and setpriv is missing")
    if done.returncode == 0:
        pytest.skip("this interpreter was granted CAP_NET_RAW (setcap): nothing to refuse")
    if "Error" in done.stderr and "CAP_NET_RAW" not in done.stderr:
        pytest.skip(f"the unprivileged child could not start: {done.stderr.splitlines()[-1]}")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    interpreter = os.path.realpath(sys.executable)  # what setcap needs: not a link
    assert line == (
        "python -m tcpref: error: capture('lo'): [Errno 1] EPERM: Operation not permitted. "
        "Capturing packets needs the CAP_NET_RAW capability: run as root; or run it inside "
        "a private network namespace: see tcpref.netns; or grant it to the interpreter with "
        f"'setcap cap_net_raw+ep {interpreter}', and then every script that interpreter "
        "runs has it."
    )
    assert done.stdout == ""


# -- trace --pcap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing/trace.pcap", "No such file or directory"),
        (".", "Is a directory"),
        pytest.param("/dev/full", "No space left on device", id="full"),  # the header fails
    ],
)
def test_cli_trace_unwritable_pcap_prints_one_line_and_exits_2(
    tmp_path: Path, where: str, reason: str
) -> None:
    path = str(tmp_path / where) if not where.startswith("/") else where
    done = run("trace", "--port", "80", "--timeout", "1", "--pcap", path)
    # Before the capture opens: the same line with or without CAP_NET_RAW.
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"python -m tcpref: error: cannot write the --pcap file {path!r}: {reason}"
    ]
    assert done.stdout == b""


#: The connection of test_cli_trace_pcap_holds_the_segments_it_prints: the sender, the
#: flags, seq and ack relative to the ISNs (None: no ACK flag), and the payload length.
PCAP_CONNECTION = [
    ("client", "SYN", 0, None, 0),
    ("server", "SYN|ACK", 0, 1, 0),
    ("client", "ACK", 1, 1, 0),
    ("client", "PSH|ACK", 1, 1, 2),
    ("server", "ACK", 1, 3, 0),
    ("client", "FIN|ACK", 3, 1, 0),
    ("server", "FIN|ACK", 1, 4, 0),
    ("client", "ACK", 4, 2, 0),
]
_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10}


def pcap_as_scapy_reads_it(path: Path, server_port: int) -> list[tuple[Any, ...]]:
    """Each segment in the file as (sender, flag bits, relative seq, relative ack,
    payload length, client port, time in ns), read by scapy, not by tcpref."""
    utils = pytest.importorskip("scapy.utils", reason="scapy (the test extra) reads pcap files")
    inet = pytest.importorskip("scapy.layers.inet")
    with utils.PcapReader(str(path)) as reader:
        packets = [(packet[inet.IP], packet[inet.TCP], packet.time) for packet in reader]
    isns = {}
    for _, tcp, _ in packets:  # each side's first SYN
        if int(tcp.flags) & _FLAG_BITS["SYN"]:
            isns.setdefault(tcp.sport, tcp.seq)
    seen = []
    for ip, tcp, stamp in packets:
        sender = "server" if tcp.sport == server_port else "client"
        relative_ack = None
        if int(tcp.flags) & _FLAG_BITS["ACK"]:
            relative_ack = (tcp.ack - isns[tcp.dport]) % 2**32
        client_port = tcp.dport if sender == "server" else tcp.sport
        payload = ip.len - 4 * ip.ihl - 4 * tcp.dataofs
        seen.append(
            (
                sender,
                int(tcp.flags),
                (tcp.seq - isns[tcp.sport]) % 2**32,
                relative_ack,
                payload,
                client_port,
                int(Decimal(stamp) * 10**9),
            )
        )
    return seen


@privileged
def test_cli_trace_pcap_holds_the_segments_it_prints(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]
        args = ("--port", str(port), "--count", "8", "--timeout", "20", "--pcap", str(path))
        with trace_process(*args) as proc:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client_port = client.getsockname()[1]
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    client.sendall(b"hi")
                    assert conn.recv(10) == b"hi"
                    client.close()
                    assert conn.recv(10) == b""
            printed, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0, errors
    lines = printed.splitlines()
    # What it printed: the connection, line by line.
    texts = [line.lstrip().split("  ", 1)[1].split(" win=")[0] for line in lines]
    arrows = {"client": "C -> S", "server": "C <- S"}
    assert texts == [
        f"{arrows[who]}  {flags} seq={seq}" + ("" if ack is None else f" ack={ack}")
        for who, flags, seq, ack, _ in PCAP_CONNECTION
    ]
    # What it wrote: the same segments, as an independent reader sees them.
    seen = pcap_as_scapy_reads_it(path, port)
    assert [entry[:6] for entry in seen] == [
        (who, sum(_FLAG_BITS[name] for name in flags.split("|")), seq, ack, length, client_port)
        for who, flags, seq, ack, length in PCAP_CONNECTION
    ]
    # With the times it printed, which are the kernel's stamps from the first segment.
    start = seen[0][6]
    for line, entry in zip(lines, seen, strict=True):
        assert abs(float(line.split()[0]) - (entry[6] - start) / 1e9) <= 0.0005 + 1e-9, line
