"""tcpref.errors: message format, the built-in twins, pickling, and translate()."""

from __future__ import annotations

import errno
import pickle
import socket

import pytest

from tcpref import errors
from tcpref.errors import SocketCallError, translate


def test_socket_call_error_str_names_call_address_symbol_message_and_hint() -> None:
    err = SocketCallError(
        errno.EADDRINUSE,
        "Address already in use",
        call="bind",
        address=("127.0.0.1", 8080),
        hint="Another socket is bound there.",
    )
    assert str(err) == (
        "bind(127.0.0.1:8080): [Errno 98] EADDRINUSE: Address already in use. "
        "Another socket is bound there."
    )
    assert (err.errno, err.strerror) == (errno.EADDRINUSE, "Address already in use")


def test_socket_call_error_without_hint_or_address_still_reads_as_a_sentence() -> None:
    err = SocketCallError(errno.EINVAL, "Invalid argument", call="listen")
    assert str(err) == "listen(): [Errno 22] EINVAL: Invalid argument."


@pytest.mark.parametrize(
    ("code", "builtin"),
    [
        (errno.ECONNREFUSED, ConnectionRefusedError),
        (errno.ECONNRESET, ConnectionResetError),
        (errno.EPIPE, BrokenPipeError),
        (errno.ECONNABORTED, ConnectionAbortedError),
        (errno.ETIMEDOUT, TimeoutError),
        (errno.EINTR, InterruptedError),
        (errno.EAGAIN, BlockingIOError),
        (errno.EACCES, PermissionError),
    ],
)
def test_translate_keeps_the_builtin_subclass(code: int, builtin: type[OSError]) -> None:
    original = OSError(code, "message")
    assert isinstance(original, builtin)  # what Python itself would raise
    err = translate(original, call="connect", address=("127.0.0.1", 1))
    assert isinstance(err, SocketCallError)
    assert isinstance(err, builtin)
    assert err.errno == code


def test_translate_plain_errno_gives_the_base_class() -> None:
    err = translate(OSError(errno.EADDRINUSE, "Address already in use"), call="bind")
    assert type(err) is SocketCallError


def test_translate_socket_timeout_has_no_errno() -> None:
    err = translate(TimeoutError("timed out"), call="connect", address=("127.0.0.1", 9))
    assert isinstance(err, errors.TimeoutCallError)
    assert err.errno is None
    assert str(err).startswith("connect(127.0.0.1:9): timed out. The handshake did not finish")


def test_translate_returns_an_already_translated_error_unchanged() -> None:
    err = SocketCallError(errno.EPIPE, "Broken pipe", call="write_all")
    assert translate(err, call="other") is err


def test_checked_translates_and_chains_the_cause() -> None:
    original = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    with (
        pytest.raises(errors.ConnectionResetCallError) as raised,
        errors.checked("read_line", ("127.0.0.1", 5)),
    ):
        raise original
    assert raised.value.__cause__ is original
    assert raised.value.call == "read_line"


def test_checked_lets_other_exceptions_through() -> None:
    with pytest.raises(KeyError), errors.checked("read_line"):
        raise KeyError("not an OS error")


@pytest.mark.parametrize("cls", [SocketCallError, errors.ConnectionRefusedCallError])
def test_socket_call_error_pickles_with_its_attributes(cls: type[SocketCallError]) -> None:
    err = cls(111, "Connection refused", call="connect", address=("::1", 80, 0, 0), hint="h.")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert (copy.errno, copy.strerror, copy.call, copy.address, copy.hint) == (
        111,
        "Connection refused",
        "connect",
        ("::1", 80, 0, 0),
        "h.",
    )
    assert str(copy) == str(err)


def test_every_hint_is_one_sentence() -> None:
    hints = list(errors._HINTS.values()) + list(errors._TIMEOUT_HINTS.values())
    for hint in [*hints, errors._DEFAULT_TIMEOUT_HINT]:
        assert hint.endswith(".")
        assert not hint.endswith("..")
        assert hint.count(". ") == 0, hint  # one sentence, no second one


def test_hint_for_prefers_the_call_specific_hint() -> None:
    assert "TIME_WAIT" in errors.hint_for("bind", errno.EADDRINUSE)
    assert errors.hint_for("connect", errno.EADDRINUSE) == errors._HINTS[(None, errno.EADDRINUSE)]
    assert errors.hint_for("bind", 9999) == ""


def test_errno_symbol_names_resolver_errors_too() -> None:
    assert errors.errno_symbol(errno.ECONNRESET) == "ECONNRESET"
    assert errors.errno_symbol(socket.EAI_NONAME) == "EAI_NONAME"
    assert errors.errno_symbol(None) == "E?"
    assert errors.errno_symbol(123456) == "E?"


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (("127.0.0.1", 80), "127.0.0.1:80"),
        (("::1", 80, 0, 0), "[::1]:80"),
        (None, ""),
        ("/run/app.sock", "'/run/app.sock'"),
    ],
)
def test_format_address(address: object, text: str) -> None:
    assert errors.format_address(address) == text


def test_incomplete_read_and_line_too_long_subclass_the_builtins() -> None:
    assert issubclass(errors.IncompleteReadError, EOFError)
    assert issubclass(errors.LineTooLongError, ValueError)
