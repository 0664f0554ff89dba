"""Shared fixtures: every test is checked for leaked descriptors, threads and children."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _pytest.runner import runtestprotocol
from doctest_env import ResourceSnapshot

from tcpref import netns


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


# -- tests that run in a private network namespace ----------------------------------------

#: Why no network namespace can be made here, or None (see tcpref.netns).
NETNS_UNAVAILABLE = netns.unavailable_reason()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "netns(root=False): run the whole test, its fixtures included, in a private network "
        "namespace (tcpref.netns), where any user may capture packets and attach socket "
        "filters; root=True makes the user uid 0 there, so programs it starts keep that right",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if NETNS_UNAVAILABLE is None:
        return
    skip = pytest.mark.skip(reason=f"needs a network namespace: {NETNS_UNAVAILABLE}")
    for item in items:
        if item.get_closest_marker("netns"):
            item.add_marker(skip)


def _run_in_namespace(item: pytest.Item, nextitem: pytest.Item | None) -> list[dict[str, Any]]:
    """In the namespace child: run setup, call and teardown, and serialise the reports."""
    reports = runtestprotocol(item, log=False, nextitem=nextitem)
    hook = item.config.hook
    return [hook.pytest_report_to_serializable(config=item.config, report=r) for r in reports]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a ``netns``-marked test in a forked child inside its own network namespace.

    The whole protocol runs there, fixtures included, so a fixture's listener and the
    test's capture share one private loopback interface; the child's reports are
    sent back and logged here as if the test had run in this process.
    """
    if item.get_closest_marker("netns") is None or NETNS_UNAVAILABLE is not None:
        return None
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    as_root = bool(item.get_closest_marker("netns").kwargs.get("root", False))  # type: ignore[union-attr]
    for data in netns.run(_run_in_namespace, item, nextitem, timeout=120, as_root=as_root):
        report = item.config.hook.pytest_report_from_serializable(config=item.config, data=data)
        hook.pytest_runtest_logreport(report=report)
    # What this process set up for earlier tests (a module's fixtures) and the next
    # test no longer needs is torn down here, as the test's own teardown would have.
    item.session._setupstate.teardown_exact(nextitem)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
