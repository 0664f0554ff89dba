"""Shared fixtures: every test is checked for leaked descriptors, threads and children."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from doctest_env import ResourceSnapshot


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a file descriptor, thread or child process behind."""
    before = ResourceSnapshot.take()
    yield
    ResourceSnapshot.take().check_no_leaks_since(before)


@contextmanager
def tcp_pair(timeout: float = 5.0) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, server-side) pair of TCP sockets on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(timeout)
        client = socket.create_connection(listener.getsockname(), timeout=timeout)
        with client:
            server, _ = listener.accept()
            with server:
                server.settimeout(timeout)
                yield client, server


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with tcp_pair() as sockets:
        yield sockets


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(5)
        yield sock
