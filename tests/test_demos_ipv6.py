"""Tests for tcpref.demos.ipv6: the MSS arithmetic, the ::1 probe, and the live scenarios."""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

import pytest

from tcpref.demos import ipv6

ON_LINUX = sys.platform.startswith("linux")
IPV6_UNAVAILABLE = ipv6.loopback_unavailable_reason()

linux_only = pytest.mark.skipif(not ON_LINUX, reason="reads TCP_INFO, /proc and /sys")
needs_ipv6 = pytest.mark.skipif(
    IPV6_UNAVAILABLE is not None, reason=f"no IPv6 loopback: {IPV6_UNAVAILABLE}"
)
# The whole test, fixtures included, runs in a private network namespace.
in_netns = pytest.mark.netns


def lo_mtu() -> int:
    return int(Path("/sys/class/net/lo/mtu").read_text())


# -- mss_from_mtu ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mtu", "family", "mss"),
    [
        (1500, socket.AF_INET, 1460),
        (1500, socket.AF_INET6, 1440),
        (1280, socket.AF_INET6, 1220),  # IPv6's smallest MTU: RFC 9293's default MSS
        (9000, socket.AF_INET6, 8940),
        (65536, socket.AF_INET, 65495),  # capped by IPv4's 16-bit total length
        (65536, socket.AF_INET6, 65476),  # IPv6's payload length excludes its header
        (65575, socket.AF_INET6, 65515),  # the largest non-jumbo packet: 65535 + 40
        (65576, socket.AF_INET6, 65535),  # beyond it, 65535: "rely on the path"
    ],
)
def test_mss_from_mtu_follows_each_familys_header_and_cap(
    mtu: int, family: socket.AddressFamily, mss: int
) -> None:
    assert ipv6.mss_from_mtu(mtu, family) == mss


def test_mss_from_mtu_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="True"):
        ipv6.mss_from_mtu(True, socket.AF_INET6)
    with pytest.raises(ValueError, match="at least 68"):
        ipv6.mss_from_mtu(67, socket.AF_INET6)
    with pytest.raises(ValueError, match="AF_UNIX"):
        ipv6.mss_from_mtu(1500, socket.AF_UNIX)


# -- loopback_unavailable_reason --------------------------------------------------------


def refuse_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    def bind(self: socket.socket, address: object) -> None:
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(socket.socket, "bind", bind)


def fake_proc(tmp_path: Path, disable_ipv6: str) -> str:
    flag = tmp_path / "sys/net/ipv6/conf/lo/disable_ipv6"
    flag.parent.mkdir(parents=True)
    flag.write_text(disable_ipv6)
    return str(tmp_path)


def test_loopback_unavailable_reason_names_the_sysctl(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refuse_bind(monkeypatch)
    assert ipv6.loopback_unavailable_reason(fake_proc(tmp_path, "1\n")) == (
        "IPv6 is turned off on lo (sysctl net.ipv6.conf.lo.disable_ipv6 = 1)"
    )


def test_loopback_unavailable_reason_names_the_errno_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refuse_bind(monkeypatch)
    assert ipv6.loopback_unavailable_reason(fake_proc(tmp_path, "0\n")) == (
        "::1 cannot be bound here: bind() failed with EADDRNOTAVAIL"
    )


def test_loopback_unavailable_reason_without_ipv6_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "has_ipv6", False)
    assert ipv6.loopback_unavailable_reason() == "this Python was built without IPv6"


def test_loopback_unavailable_reason_without_ipv6_in_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_socket = socket.socket

    def no_inet6(family: int = -1, *args: object) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real_socket(family, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", no_inet6)
    assert ipv6.loopback_unavailable_reason() == (
        "the kernel has no IPv6 here: socket(AF_INET6) failed, EAFNOSUPPORT"
    )


@needs_ipv6
def test_loopback_unavailable_reason_is_none_when_bind_works() -> None:
    # The probe must not leave its socket open: the leak check would fail.
    assert ipv6.loopback_unavailable_reason() is None


# -- loopback_mss -----------------------------------------------------------------------


@linux_only
@needs_ipv6
def test_loopback_mss_ipv6_is_mtu_less_60_less_timestamps() -> None:
    seen = ipv6.loopback_mss()
    assert seen.family == "AF_INET6"
    assert seen.pmtu == lo_mtu()
    assert "TIMESTAMPS" in seen.options
    assert seen.advmss + 12 == ipv6.mss_from_mtu(lo_mtu(), socket.AF_INET6)


@linux_only
@needs_ipv6
def test_loopback_mss_maxseg_starts_at_half_the_window_and_grows() -> None:
    seen = ipv6.loopback_mss()
    assert seen.window_at_start is not None
    assert seen.maxseg_at_start == seen.snd_mss_at_start
    assert seen.maxseg_at_start == min(seen.advmss, seen.window_at_start // 2)
    assert seen.maxseg_at_start < seen.advmss
    # How far it grows depends on how fast the client read (the window it offered).
    assert seen.maxseg_at_start < seen.maxseg_after <= seen.advmss


@linux_only
def test_loopback_mss_ipv4_is_capped_at_65535() -> None:
    seen = ipv6.loopback_mss("127.0.0.1")
    assert (seen.family, seen.pmtu) == ("AF_INET", min(lo_mtu(), 65535))
    assert seen.advmss + 12 == ipv6.mss_from_mtu(lo_mtu(), socket.AF_INET)


def test_loopback_mss_rejects_other_hosts_and_sizes() -> None:
    with pytest.raises(ValueError, match="'localhost'"):
        ipv6.loopback_mss("localhost")
    with pytest.raises(ValueError, match="at least 1"):
        ipv6.loopback_mss(bulk=0)


# -- functions that bind :: or change a sysctl: a namespace only --------------------------


def test_dual_stack_refuses_to_run_outside_a_namespace() -> None:
    with pytest.raises(ipv6.OutsideNamespaceError, match=r"tcpref\.netns\.run"):
        ipv6.dual_stack(False)


def test_loopback_mss_without_timestamps_refuses_outside_a_namespace() -> None:
    with pytest.raises(ipv6.OutsideNamespaceError, match="namespace"):
        ipv6.loopback_mss_without_timestamps()


@in_netns
def test_dual_stack_v6only_off_accepts_ipv4_as_mapped_address() -> None:
    seen = ipv6.dual_stack(False)
    assert (seen.bindv6only, seen.default_v6only, seen.v6only) == (0, 0, False)
    assert seen.listener[0] == "::"
    assert seen.ipv4_client == "connected"
    assert seen.accepted_from is not None
    assert seen.accepted_at is not None
    assert seen.accepted_from[0] == seen.accepted_at[0] == "::ffff:127.0.0.1"
    assert seen.ipv6_client == "connected"
    assert seen.ipv4_bind == "EADDRINUSE"


@in_netns
def test_dual_stack_rows_put_the_ipv4_client_in_tcp_and_the_server_in_tcp6() -> None:
    seen = ipv6.dual_stack(False)
    rows = {(row.family, row.local[0], row.state) for row in seen.entries}
    assert rows == {
        (socket.AF_INET, "127.0.0.1", "ESTABLISHED"),
        (socket.AF_INET6, "::", "LISTEN"),
        (socket.AF_INET6, "::ffff:127.0.0.1", "ESTABLISHED"),
    }


@in_netns
def test_dual_stack_v6only_on_refuses_ipv4_and_frees_the_ipv4_port() -> None:
    seen = ipv6.dual_stack(True)
    assert seen.ipv4_client == "ECONNREFUSED"
    assert (seen.accepted_from, seen.accepted_at, seen.entries) == (None, None, ())
    assert seen.ipv6_client == "connected"
    assert seen.ipv4_bind == "bound"


@in_netns
def test_loopback_mss_without_timestamps_announces_mtu_less_60() -> None:
    seen = ipv6.loopback_mss_without_timestamps()
    assert "TIMESTAMPS" not in seen.options
    assert seen.advmss == ipv6.mss_from_mtu(seen.pmtu, socket.AF_INET6) == 65536 - 60
    assert seen.maxseg_after <= seen.advmss
