"""tcpref.demos.reuse: what SO_REUSEADDR and SO_REUSEPORT let a listener do on Linux."""

from __future__ import annotations

import errno
import os
import socket
import sys

import pytest

from tcpref import netns
from tcpref.demos import reuse
from tcpref.demos.reuse import (
    DemoError,
    listener,
    member_closes,
    open_group,
    rebind,
    same_client_port,
    spread,
)
from tcpref.errors import SocketCallError
from tcpref.kernel import connections

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux's SO_REUSEPORT and /proc/net/tcp"
)
needs_netns = pytest.mark.skipif(
    not netns.available(), reason=f"needs a network namespace: {netns.unavailable_reason()}"
)


def test_listener_rejects_an_unknown_option() -> None:
    with pytest.raises(ValueError, match=r"option must be one of .*, not 'SO_LINGER'"):
        listener("SO_LINGER")  # type: ignore[arg-type]


@linux_only
def test_listener_sets_its_options_before_bind() -> None:
    with listener("SO_REUSEADDR", "SO_REUSEPORT") as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.getsockname()[0] == "127.0.0.1"


@linux_only
def test_listener_reports_eaddrinuse_through_wrap_and_closes_its_socket() -> None:
    # The leak check after the test fails it if the refused socket stayed open.
    with listener() as first:
        address = first.getsockname()
        with pytest.raises(SocketCallError) as caught:
            listener(address=address)
    assert caught.value.errno == errno.EADDRINUSE
    assert str(caught.value).startswith(f"bind(127.0.0.1:{address[1]}): [Errno")


@linux_only
@pytest.mark.parametrize(
    ("holder", "options", "outcome"),
    [
        ("listener", (), "EADDRINUSE"),
        ("listener", ("SO_REUSEADDR",), "EADDRINUSE"),
        ("listener", ("SO_REUSEPORT",), "listening"),
        ("time_wait", (), "EADDRINUSE"),
        ("time_wait", ("SO_REUSEADDR",), "listening"),
        ("time_wait", ("SO_REUSEPORT",), "listening"),
    ],
)
def test_rebind_with_the_option_on_both_sockets_gives_the_linux_outcome(
    holder: reuse.Holder, options: tuple[reuse.Option, ...], outcome: str
) -> None:
    assert rebind(holder, options, options) == outcome


@linux_only
@pytest.mark.parametrize(
    ("holder", "old", "new"),
    [
        ("listener", ("SO_REUSEPORT",), ()),
        ("listener", ("SO_REUSEPORT",), ("SO_REUSEADDR",)),
        ("listener", (), ("SO_REUSEPORT",)),
        ("time_wait", ("SO_REUSEPORT",), ()),
        ("time_wait", ("SO_REUSEADDR",), ("SO_REUSEPORT",)),
    ],
)
def test_rebind_refuses_reuseport_unless_both_sockets_set_it(
    holder: reuse.Holder, old: tuple[reuse.Option, ...], new: tuple[reuse.Option, ...]
) -> None:
    assert rebind(holder, old, new) == "EADDRINUSE"


def test_rebind_rejects_an_unknown_holder() -> None:
    with pytest.raises(ValueError, match="holder must be 'listener' or 'time_wait', not 'bound'"):
        rebind("bound", (), ())  # type: ignore[arg-type]


def test_rebind_rejects_an_unknown_option_before_opening_anything() -> None:
    with pytest.raises(ValueError, match="not 'SO_KEEPALIVE'"):
        rebind("listener", (), ("SO_KEEPALIVE",))  # type: ignore[arg-type]


@linux_only
def test_open_group_lists_every_member_as_listen_on_one_port() -> None:
    group = open_group(3)
    try:
        address = group[0].getsockname()
        assert {sock.getsockname() for sock in group} == {address}
        entries = [c for c in connections(address[1]) if c.local == address]
        assert [c.state for c in entries] == ["LISTEN"] * 3
        assert {c.inode for c in entries} == {os.fstat(s.fileno()).st_ino for s in group}
        assert {c.uid for c in entries} == {os.geteuid()}
    finally:
        for sock in group:
            sock.close()


@pytest.mark.parametrize("count", [0, 17, True, "2"])
def test_open_group_rejects_a_bad_count(count: object) -> None:
    with pytest.raises(ValueError, match="count must be 1 to 16"):
        open_group(count)  # type: ignore[arg-type]


@linux_only
def test_spread_gives_every_member_some_and_counts_each_connection_once() -> None:
    group = open_group(4)
    try:
        counts = spread(group, clients=200)
        port = group[0].getsockname()[1]
        left = [c.state for c in connections(port) if c.local[1] == port]
    finally:
        for sock in group:
            sock.close()
    assert len(counts) == 4
    assert sum(counts) == 200
    assert min(counts) > 0
    assert left == ["LISTEN"] * 4  # the resets left no TIME_WAIT on the port


@linux_only
def test_same_client_port_reaches_the_same_member_every_time() -> None:
    group = open_group(4)
    try:
        chosen = same_client_port(group, times=6)
    finally:
        for sock in group:
            sock.close()
    assert len(chosen) == 6
    assert len(set(chosen)) == 1


def test_spread_rejects_an_empty_group() -> None:
    with pytest.raises(ValueError, match="the group has no listener"):
        spread([], clients=1)


@pytest.mark.parametrize("times", [0, 1001])
def test_same_client_port_rejects_a_count_out_of_range(times: int) -> None:
    with listener() as sock, pytest.raises(ValueError, match="times must be 1 to 1000"):
        same_client_port([sock], times=times)


@needs_netns
def test_member_closes_without_migration_resets_exactly_its_queue() -> None:
    seen = member_closes(0)
    assert (seen.default_migrate_req, seen.migrate_req, seen.clients) == (0, 0, 32)
    assert 0 < seen.queued < seen.clients
    assert seen.reset == seen.queued
    assert seen.accepted_by_others == seen.clients - seen.queued


@needs_netns
def test_member_closes_with_migration_moves_its_queue_to_the_others() -> None:
    seen = member_closes(1, members=3, clients=40)
    assert (seen.migrate_req, seen.clients) == (1, 40)
    assert seen.queued > 0
    assert seen.reset == 0
    assert seen.accepted_by_others == 40


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((2,), "migrate_req must be 0 or 1, not 2"),
        ((True,), "migrate_req must be 0 or 1, not True"),
        ((0, 1), "members must be 2 to 8, not 1"),
        ((0, 2, 65), "clients must be 1 to 64, not 65"),
    ],
)
def test_member_closes_rejects_arguments_out_of_range(
    arguments: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        member_closes(*arguments)


def test_member_closes_never_sets_the_hosts_sysctl() -> None:
    # Called outside tcpref.netns.run, the child's body refuses before it writes.
    with pytest.raises(DemoError, match=r"runs only in tcpref\.netns\.run"):
        reuse._member_closes(1, 2, 1)
