"""tcpref.netns: a function run in a private network namespace, for root and for anyone."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time

import pytest

from tcpref import netns

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="namespaces are Linux's"
)
needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


def _namespace_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


@needs_netns
def test_run_returns_the_functions_value_from_another_network_namespace() -> None:
    assert netns.run(_namespace_inode) != _namespace_inode()


@needs_netns
def test_run_passes_arguments() -> None:
    assert netns.run(divmod, 17, 5) == (3, 2)


@needs_netns
def test_run_child_keeps_our_uid_and_brings_loopback_up() -> None:
    def inside() -> tuple[int, bytes]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname(), timeout=5)
            conn, _ = listener.accept()
            with client, conn:
                client.sendall(b"ping")
                return os.getuid(), conn.recv(4)

    assert netns.run(inside) == (os.getuid(), b"ping")


@needs_netns
def test_run_child_may_capture_packets() -> None:
    def capture() -> int:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            return sock.type

    assert netns.run(capture) == socket.SOCK_RAW


@needs_netns
def test_run_child_sees_its_own_connection_table() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = f":{listener.getsockname()[1]:04X}"

        def listed() -> bool:
            with open("/proc/net/tcp") as table:
                return port in table.read()

        assert listed()
        assert not netns.run(listed)


@needs_netns
def test_run_raises_the_childs_exception_with_type_message_and_errno() -> None:
    def refuse() -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "nobody listens")

    with pytest.raises(ConnectionRefusedError, match="nobody listens") as raised:
        netns.run(refuse)
    assert raised.value.errno == errno.ECONNREFUSED


@needs_netns
def test_run_kills_and_reaps_a_child_that_takes_too_long() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"sleep did not finish within 0.3 s"):
        netns.run(time.sleep, 30, timeout=0.3)
    assert time.monotonic() - started < 10
    # The no_leaks fixture checks that the child was reaped.


@needs_netns
def test_run_names_the_signal_that_killed_the_child() -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(netns.NamespaceChildError, match=r"running .*die was killed by SIGKILL"):
        netns.run(die)


@needs_netns
def test_run_reports_an_answer_that_cannot_be_sent_back() -> None:
    def unpicklable() -> object:
        return lambda: None

    with pytest.raises(netns.NamespaceChildError, match="could not be sent back"):
        netns.run(unpicklable)


@needs_netns
def test_run_interrupted_kills_the_child() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            netns.run(time.sleep, 30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The no_leaks fixture checks that no child outlived the call.


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5"])
def test_run_rejects_a_bad_timeout(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        netns.run(int, timeout=timeout)  # type: ignore[arg-type]


@linux_only
def test_unavailable_reason_is_none_or_one_line() -> None:
    reason = netns.unavailable_reason()
    assert reason is None or (reason and "\n" not in reason)
    assert netns.available() is (reason is None)


@pytest.mark.parametrize(
    ("files", "seccomp", "expected"),
    [
        ({"max": "0\n"}, 0, "user.max_user_namespaces = 0"),
        ({"apparmor": "1\n"}, 0, "kernel.apparmor_restrict_unprivileged_userns = 1"),
        ({}, 2, "a seccomp profile refuses unshare()"),
        ({}, 0, "unshare() was refused here: EPERM (Operation not permitted)"),
    ],
)
def test_refusal_is_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str], seccomp: int, expected: str
) -> None:
    paths = {"max": netns._MAX_USER_NAMESPACES, "apparmor": netns._APPARMOR_RESTRICTION}
    contents = {paths[key]: text for key, text in files.items()}
    monkeypatch.setattr(
        netns, "_read_int", lambda path: int(contents[path]) if path in contents else None
    )
    monkeypatch.setattr(netns, "_seccomp_mode", lambda: seccomp)
    monkeypatch.setattr(netns, "_is_root", lambda: False)
    reason = netns._explain_refusal(errno.EPERM)
    assert expected in reason
    assert "\n" not in reason


def test_unavailable_reason_names_the_platform_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    netns.unavailable_reason.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert netns.unavailable_reason() == "network namespaces are Linux's (this is darwin)"
    finally:
        monkeypatch.undo()
        netns.unavailable_reason.cache_clear()


@linux_only
def test_run_raises_unavailable_when_unshare_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(flags: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(netns, "_unshare", refuse)
    monkeypatch.setattr(netns, "_is_root", lambda: False)
    with pytest.raises(netns.NamespaceUnavailableError, match="refused") as raised:
        netns.run(int)
    assert raised.value.errno == errno.EPERM


@needs_netns
def test_start_runs_children_side_by_side_each_in_its_own_namespace() -> None:
    started = time.monotonic()
    children = [netns.start(_sleep_then_namespace, 0.5) for _ in range(3)]
    inodes = [child.result() for child in children]
    assert time.monotonic() - started < 1.4  # three half-second sleeps, not one after another
    assert len(set(inodes)) == 3
    assert _namespace_inode() not in inodes


def _sleep_then_namespace(seconds: float) -> int:
    time.sleep(seconds)
    return _namespace_inode()


@needs_netns
def test_child_result_is_collected_once_and_kill_is_idempotent() -> None:
    child = netns.start(int, "7")
    assert child.result() == 7
    with pytest.raises(netns.NamespaceChildError, match="already collected"):
        child.result()
    child.kill()
    child.kill()


@needs_netns
def test_child_kill_ends_a_child_that_was_never_collected() -> None:
    child = netns.start(time.sleep, 30)
    child.kill()
    with pytest.raises(netns.NamespaceChildError, match="already collected"):
        child.result()


@needs_netns
def test_run_as_root_lets_a_started_program_keep_the_capability() -> None:
    import subprocess

    code = "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close(); print('ok')"

    def capture_in_a_new_program() -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        return os.getuid(), done.stdout.strip() or done.stderr.strip().splitlines()[-1]

    assert netns.run(capture_in_a_new_program, as_root=True) == (0, "ok")
    if os.geteuid() != 0:
        # Without it, the new program runs as the user and loses the capability.
        uid, said = netns.run(capture_in_a_new_program)
        assert (uid, said.startswith("PermissionError")) == (os.getuid(), True)
