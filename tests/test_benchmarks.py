"""The benchmark code must keep working, and its recorded results must match the chart.

The benchmarks measure rather than assert (``tox -e bench``); these tests only check
that the load generator measures something real, and that the chart committed on
docs/concepts/choosing-a-model.md was drawn from the committed results.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_servers  # noqa: E402
import chart  # noqa: E402

from tcpref.servers import ThreadServer, running  # noqa: E402


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the servers run on Linux")
def test_bench_load_generator_measures_real_echoes() -> None:
    with running(ThreadServer(grace=0.5)) as address:
        assert bench_servers.round_trips_per_second(address, clients=3, seconds=0.2) > 10
        assert bench_servers.connections_per_second(address, seconds=0.2) > 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the servers run on Linux")
def test_bench_undefended_fork_server_echoes_in_its_own_process() -> None:
    # In its own process, as the benchmark runs it: its children close only the
    # listener, so in this one they would hold the test's own client sockets open.
    with bench_servers.server("tcpref fork, no defences") as (proc, address):
        assert bench_servers.connections_per_second(address, seconds=0.2) > 1
        assert proc.poll() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the servers run on Linux")
def test_bench_untimed_thread_server_echoes_in_its_own_process() -> None:
    with bench_servers.server("tcpref thread, no idle timeout") as (proc, address):
        assert bench_servers.round_trips_per_second(address, clients=3, seconds=0.2) > 10
        assert proc.poll() is None


def test_bench_untimed_thread_server_keeps_only_the_send_timeout() -> None:
    import untimed_thread

    with socket.socket() as sock:
        untimed_thread.send_timeout_only(sock, 2.5)
        sent = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)
        received = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert struct.unpack("@ll", sent) == (2, 500_000)
    assert struct.unpack("@ll", received) == (0, 0)  # no read timeout: wait for ever


def test_bench_chart_matches_the_recorded_results() -> None:
    record = json.loads(bench_servers.RESULTS.read_text(encoding="utf-8"))
    assert bench_servers.CHART.read_text(encoding="utf-8") == chart.render(record)


def test_bench_recorded_results_cover_every_server_and_load() -> None:
    record = json.loads(bench_servers.RESULTS.read_text(encoding="utf-8"))
    assert set(record["results"]) == set(bench_servers.SERVERS)
    for name, row in record["results"].items():
        if name in bench_servers.ROUND_TRIPS_ONLY:
            assert "round trips/s, 100 clients" in row, name
        else:
            assert "connections/s" in row, name
        assert all(value > 0 for load, value in row.items() if not load.startswith("CPU"))
    assert record["machine"]


def test_bench_ratios_compare_each_model_with_its_counterpart() -> None:
    results = {
        "tcpref fork": {"connections/s": 30.0},
        "socketserver forking": {"connections/s": 20.0},
        "tcpref thread": {"connections/s": 10.0},
        "socketserver threading": {"connections/s": 20.0},
        "tcpref select": {"connections/s": 5.0, "CPU share out of fds": 0.0},
        "asyncio streams": {"connections/s": 5.0, "CPU share out of fds": 0.1},
    }
    assert bench_servers.ratios(results) == {
        "tcpref fork": {"connections/s": 1.5},
        "tcpref thread": {"connections/s": 0.5},
        "tcpref select": {"connections/s": 1.0},
    }


def test_bench_measures_each_pair_side_by_side_in_alternating_order() -> None:
    orders = bench_servers.measuring_order(4)
    pairs = [(name, other) for name, (_, other) in bench_servers.SERVERS.items() if other]
    for order in orders:
        assert sorted(order) == sorted(bench_servers.SERVERS)
        for name, other in pairs:
            assert abs(order.index(name) - order.index(other)) == 1
    for name, other in pairs:  # each side goes first in half of the rounds
        firsts = [order.index(name) < order.index(other) for order in orders]
        assert firsts == [True, False, True, False]


def test_bench_pins_the_load_and_the_servers_to_different_cpus() -> None:
    assert bench_servers.cpu_plan({2, 5, 7}) == ({2}, {5})
    assert bench_servers.cpu_plan({3}) is None
    assert bench_servers.describe_plan(({0}, {1})) == (
        "load generator pinned to CPU 0, servers to CPU 1"
    )
    assert bench_servers.describe_plan(None).startswith("not pinned")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_bench_server_runs_on_the_cpus_it_is_given() -> None:
    cpu = min(os.sched_getaffinity(0))
    with bench_servers.server("raw blocking loop", {cpu}) as (proc, _):
        assert os.sched_getaffinity(proc.pid) == {cpu}


def test_bench_round_ratios_are_each_rounds_ratio_in_order() -> None:
    def one_round(ours: float, theirs: float) -> dict[str, dict[str, float]]:
        return {
            "tcpref fork": {"connections/s": ours},
            "socketserver forking": {"connections/s": theirs},
        }

    rounds = [one_round(90, 100), one_round(300, 200), one_round(110, 100)]
    by_round = bench_servers.round_ratios(rounds)["tcpref fork"]["connections/s"]
    assert by_round == pytest.approx([0.9, 1.5, 1.1])


def test_bench_median_and_middle_half_of_round_ratios() -> None:
    values = [1.3, 0.9, 1.1, 1.0, 1.2]  # in any order
    assert bench_servers.median_and_middle_half(values) == pytest.approx((1.1, 0.95, 1.25))
    assert bench_servers.median_and_middle_half([0.97]) == (0.97, 0.97, 0.97)  # one round


def test_bench_chart_names_the_cpus_once_they_are_recorded() -> None:
    record = json.loads(bench_servers.RESULTS.read_text(encoding="utf-8"))
    record.pop("cpus", None)
    assert "CPUs:" not in chart.render(record)
    record["cpus"] = "load generator pinned to CPU 0, servers to CPU 1"
    assert "CPUs: load generator pinned to CPU 0, servers to CPU 1." in chart.render(record)
