"""tcpref.wrap on real loopback sockets: arguments, results and translated errors."""

from __future__ import annotations

import errno
import itertools
import math
import socket
import sys
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tcp_pair
from tcpref import wrap
from tcpref.errors import (
    IncompleteReadError,
    LineTooLongError,
    SocketCallError,
    TimeoutCallError,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="errno numbers and behaviour are Linux's"
)


# -- arguments are checked before any system call ---------------------------------


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        (("127.0.0.1", 70000), ValueError, "port must be in range 0-65535, not 70000"),
        (("127.0.0.1", -1), ValueError, "port must be in range 0-65535, not -1"),
        (("127.0.0.1", "abc"), TypeError, "port must be an int, not 'abc'"),
        (("127.0.0.1", 80.0), TypeError, "port must be an int, not 80.0"),
        (("127.0.0.1", True), TypeError, "port must be an int, not True"),
        ((b"127.0.0.1", 80), TypeError, "host must be a str such as '127.0.0.1', not b'127.0.0.1'"),
        ("127.0.0.1:80", TypeError, "address must be a (host, port) tuple, not '127.0.0.1:80'"),
        (("127.0.0.1",), TypeError, "address must be a (host, port) tuple, not ('127.0.0.1',)"),
    ],
)
def test_bind_bad_address_names_the_value(address: Any, error: type, message: str) -> None:
    with wrap.tcp_socket() as sock:
        with pytest.raises(error) as raised:
            wrap.bind(sock, address)
        assert str(raised.value) == message
        assert sock.getsockname() == ("0.0.0.0", 0)  # nothing was bound


@given(port=st.integers().filter(lambda p: not 0 <= p <= 65535))
def test_connect_any_out_of_range_port_is_value_error(port: int) -> None:
    with wrap.tcp_socket() as sock, pytest.raises(ValueError, match=f"not {port}$"):
        wrap.connect(sock, ("127.0.0.1", port))


@pytest.mark.parametrize("backlog", [-1, -100])
def test_listen_negative_backlog_is_value_error(backlog: int) -> None:
    with (
        wrap.tcp_socket() as sock,
        pytest.raises(ValueError, match=f"backlog must be >= 0, not {backlog}"),
    ):
        wrap.listen(sock, backlog)


@pytest.mark.parametrize("backlog", ["5", 5.0, None])
def test_listen_non_int_backlog_is_type_error(backlog: Any) -> None:
    with wrap.tcp_socket() as sock, pytest.raises(TypeError, match="backlog must be an int"):
        wrap.listen(sock, backlog)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: wrap.bind(s, ("127.0.0.1", 0)),
        lambda s: wrap.listen(s, 1),
        wrap.accept,
        lambda s: wrap.connect(s, ("127.0.0.1", 1)),
        lambda s: wrap.read_exact(s, 1),
        lambda s: wrap.write_all(s, b"x"),
        lambda s: wrap.read_line(s),
        lambda s: wrap.shutdown(s, socket.SHUT_WR),
        wrap.close,
    ],
)
def test_every_call_rejects_a_non_socket(call: Any) -> None:
    with pytest.raises(TypeError, match=r"sock must be a socket.socket, not 42"):
        call(42)


def test_tcp_socket_rejects_other_families() -> None:
    with pytest.raises(ValueError, match="family must be AF_INET or AF_INET6"):
        wrap.tcp_socket(socket.AF_UNIX)


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
def test_connect_non_positive_timeout_is_value_error(timeout: float) -> None:
    with wrap.tcp_socket() as sock, pytest.raises(ValueError, match="timeout must be > 0"):
        wrap.connect(sock, ("127.0.0.1", 1), timeout=timeout)


@pytest.mark.parametrize("timeout", ["1", True])
def test_connect_non_number_timeout_is_type_error(timeout: Any) -> None:
    with wrap.tcp_socket() as sock, pytest.raises(TypeError, match="timeout must be a number"):
        wrap.connect(sock, ("127.0.0.1", 1), timeout=timeout)


def test_write_all_str_is_type_error_with_advice(pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = pair
    with pytest.raises(TypeError, match=r"not str \('hello'\); encode text first"):
        wrap.write_all(client, "hello")  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "error"), [(-1, ValueError), ("3", TypeError)])
def test_read_exact_bad_count(
    pair: tuple[socket.socket, socket.socket], n: Any, error: type
) -> None:
    with pytest.raises(error, match="n must be"):
        wrap.read_exact(pair[0], n)


@pytest.mark.parametrize(("limit", "error"), [(0, ValueError), (None, TypeError)])
def test_read_line_bad_limit(
    pair: tuple[socket.socket, socket.socket], limit: Any, error: type
) -> None:
    with pytest.raises(error, match="limit must be"):
        wrap.read_line(pair[0], limit)


def test_shutdown_bad_how_is_value_error(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ValueError, match="how must be SHUT_RD, SHUT_WR or SHUT_RDWR, not 7"):
        wrap.shutdown(pair[0], 7)


# -- OS failures become SocketCallError --------------------------------------------


@linux_only
def test_bind_address_in_use_message_names_call_address_and_hint(listener: socket.socket) -> None:
    host, port = listener.getsockname()
    with wrap.tcp_socket() as sock, pytest.raises(SocketCallError) as raised:
        wrap.bind(sock, (host, port))
    err = raised.value
    assert (err.errno, err.call, err.address) == (errno.EADDRINUSE, "bind", (host, port))
    assert str(err).startswith(
        f"bind(127.0.0.1:{port}): [Errno 98] EADDRINUSE: Address already in use. "
        "Another socket holds this address: if it is a listener, stop it"
    )
    assert "TIME_WAIT" in err.hint
    assert "SO_REUSEADDR" in err.hint
    assert isinstance(err.__cause__, OSError)
    assert err.__cause__.errno == errno.EADDRINUSE


def test_connect_refused_is_still_connection_refused_error() -> None:
    with wrap.tcp_socket() as reserved:
        wrap.bind(reserved, ("127.0.0.1", 0))  # bound, never listening: SYNs get RST
        with wrap.tcp_socket() as sock, pytest.raises(ConnectionRefusedError) as raised:
            wrap.connect(sock, reserved.getsockname(), timeout=5)
    err = raised.value
    assert isinstance(err, SocketCallError)
    assert err.errno == errno.ECONNREFUSED
    assert err.call == "connect"
    assert "Nothing listens on that port" in str(err)


def test_connect_restores_the_sockets_own_timeout(listener: socket.socket) -> None:
    with wrap.tcp_socket() as sock:
        sock.settimeout(7.0)
        wrap.connect(sock, listener.getsockname(), timeout=1.5)
        assert sock.gettimeout() == 7.0
        wrap.accept(listener)[0].close()


def test_connect_restores_the_timeout_after_a_failure() -> None:
    with wrap.tcp_socket() as reserved, wrap.tcp_socket() as sock:
        wrap.bind(reserved, ("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            wrap.connect(sock, reserved.getsockname(), timeout=1.5)
        assert sock.gettimeout() is None


def test_accept_timeout_is_timeout_error_without_errno(listener: socket.socket) -> None:
    listener.settimeout(0.05)
    with pytest.raises(TimeoutError) as raised:
        wrap.accept(listener)
    err = raised.value
    assert isinstance(err, TimeoutCallError)
    assert err.errno is None
    assert str(err) == (
        f"accept(127.0.0.1:{listener.getsockname()[1]}): timed out. "
        "No client connected within the listening socket's timeout."
    )


def test_read_timeout_names_the_peer(pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    server.settimeout(0.05)
    with pytest.raises(TimeoutCallError, match=r"^read_exact\(127\.0\.0\.1:\d+\): timed out\."):
        wrap.read_exact(server, 1)
    assert server.gettimeout() == 0.05


@linux_only
def test_closed_socket_is_ebadf_with_hint() -> None:
    sock = wrap.tcp_socket()
    wrap.close(sock)
    with pytest.raises(SocketCallError) as raised:
        wrap.listen(sock, 1)
    assert raised.value.errno == errno.EBADF
    assert str(raised.value) == (
        "listen(): [Errno 9] EBADF: Bad file descriptor. The socket was already closed "
        "(its fileno() is -1) and cannot be used again; create a new socket."
    )


def test_close_twice_is_harmless() -> None:
    sock = wrap.tcp_socket()
    wrap.close(sock)
    wrap.close(sock)
    assert sock.fileno() == -1


@linux_only
def test_shutdown_unconnected_is_enotconn() -> None:
    with wrap.tcp_socket() as sock, pytest.raises(SocketCallError) as raised:
        wrap.shutdown(sock, socket.SHUT_WR)
    assert (raised.value.errno, raised.value.call) == (errno.ENOTCONN, "shutdown")


def test_failed_binds_leak_no_descriptors(listener: socket.socket) -> None:
    # After the CPython socketserver tests: many failing calls, then the autouse
    # no_leaks fixture checks that every descriptor was given back.
    for _ in range(256):
        sock = wrap.tcp_socket()
        try:
            with pytest.raises(SocketCallError):
                wrap.bind(sock, listener.getsockname())
        finally:
            wrap.close(sock)


# -- accept retries aborted connections, boundedly --------------------------------


class AbortingSocket(socket.socket):
    """A real listening socket whose accept() first fails as BSD's does."""

    def __init__(self, failures: list[int]) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.failures = failures
        self.calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.failures:
            code = self.failures.pop(0)
            raise OSError(code, "simulated")
        return super().accept()


def test_accept_retries_econnaborted_and_eproto() -> None:
    with AbortingSocket([errno.ECONNABORTED, errno.EPROTO]) as server:
        server.settimeout(5)
        wrap.bind(server, ("127.0.0.1", 0))
        wrap.listen(server, 1)
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, peer = wrap.accept(server)
            with conn:
                assert peer == client.getsockname()
        assert server.calls == 3


def test_accept_does_not_retry_other_errors() -> None:
    with AbortingSocket([errno.EINVAL]) as server, pytest.raises(SocketCallError) as raised:
        wrap.accept(server)
    assert (raised.value.errno, server.calls) == (errno.EINVAL, 1)


def test_accept_gives_up_after_a_bounded_number_of_aborts() -> None:
    failures = [errno.ECONNABORTED] * (wrap.ACCEPT_ATTEMPTS + 5)
    with AbortingSocket(failures) as server, pytest.raises(ConnectionAbortedError) as raised:
        wrap.accept(server)
    assert isinstance(raised.value, SocketCallError)
    assert raised.value.errno == errno.ECONNABORTED
    assert isinstance(raised.value.__cause__, OSError)
    assert server.calls == wrap.ACCEPT_ATTEMPTS
    assert f"gave up after {wrap.ACCEPT_ATTEMPTS} aborted connections" in str(raised.value)


# -- reading and writing a byte stream ---------------------------------------------


def test_read_exact_joins_separate_writes(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    wrap.write_all(client, b"ab")
    wrap.write_all(client, bytearray(b"cd"))
    wrap.write_all(client, memoryview(b"ef"))
    assert wrap.read_exact(server, 6) == b"abcdef"
    assert wrap.read_exact(server, 0) == b""


def test_read_exact_early_close_keeps_the_partial_bytes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    wrap.write_all(client, b"abc")
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(IncompleteReadError) as raised:
        wrap.read_exact(server, 10)
    err = raised.value
    assert isinstance(err, EOFError)
    assert (err.partial, err.expected) == (b"abc", 10)
    assert str(err) == "the peer closed the connection after 3 of 10 expected bytes"


def test_write_all_sends_more_than_the_buffers_hold(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # 16 MiB is far beyond the socket buffers, so sendall must wait for the reader.
    client, server = pair
    payload = bytes(range(256)) * (16 * 4096)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(wrap.read_exact(server, len(payload))))
    reader.start()
    try:
        wrap.write_all(client, payload)
    finally:
        reader.join(timeout=10)
    assert not reader.is_alive()
    assert received == [payload]


def test_read_line_reads_up_to_the_newline_only(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    wrap.write_all(client, b"first\nsecond\nthi")
    assert wrap.read_line(server) == b"first\n"
    # The rest is still in the kernel's buffer, untouched.
    assert server.recv(100, socket.MSG_PEEK) == b"second\nthi"
    assert wrap.read_line(server) == b"second\n"
    wrap.write_all(client, b"rd\n")
    assert wrap.read_line(server) == b"third\n"


def test_read_line_last_line_without_newline_then_empty(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    wrap.write_all(client, b"tail")
    client.shutdown(socket.SHUT_WR)
    assert wrap.read_line(server) == b"tail"
    assert wrap.read_line(server) == b""


def test_read_line_limit_counts_the_newline(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    wrap.write_all(client, b"12345\n123456\n")
    assert wrap.read_line(server, limit=6) == b"12345\n"
    with pytest.raises(LineTooLongError) as raised:
        wrap.read_line(server, limit=6)
    assert isinstance(raised.value, ValueError)
    assert raised.value.partial == b"123456"
    assert str(raised.value) == "line longer than limit=6 bytes (no newline among them)"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=10),
    final=st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")),
)
def test_read_line_recovers_lines_however_the_stream_is_cut(
    lines: list[bytes], cuts: list[int], final: bytes
) -> None:
    stream = b"".join(line + b"\n" for line in lines) + final
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    with tcp_pair() as (client, server):
        for start, end in itertools.pairwise(points):
            wrap.write_all(client, stream[start:end])
        client.shutdown(socket.SHUT_WR)
        got = []
        for _ in range(len(lines) + 2):  # bounded: one more than the lines, plus b""
            line = wrap.read_line(server, limit=64)
            if not line:
                break
            got.append(line)
    expected = [line + b"\n" for line in lines] + ([final] if final else [])
    assert got == expected
