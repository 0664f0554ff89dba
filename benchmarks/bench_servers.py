"""Benchmark tcpref's three server models against the standard library's.

Every server runs in its own process and gets identical loads from this one:

* **round trips**: 1, 10 or 100 persistent connections, each sending 1 KiB and
  waiting for the echo before sending again, for a fixed time;
* **connection rate**: connect, echo 12 bytes, close, one after another;
* **out of descriptors**: the server's RLIMIT_NOFILE is lowered to 64 and 200
  clients connect; we measure how much CPU the server burns meanwhile.

Results are printed as a table, and written to ``benchmarks/results.json`` and
``docs/concepts/choosing-a-model.svg`` (with ``--write``), which
``docs/concepts/choosing-a-model.md`` shows.  Run with ``tox -e bench``.  Nothing
here asserts: a benchmark measures, and the page says on what machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.json"
CHART = ROOT / "docs" / "concepts" / "choosing-a-model.svg"

#: name -> (command, the standard-library counterpart it is compared with)
SERVERS: dict[str, tuple[list[str], str | None]] = {
    "tcpref fork": (["-m", "tcpref", "serve", "--model", "fork"], "socketserver forking"),
    "tcpref thread": (["-m", "tcpref", "serve", "--model", "thread"], "socketserver threading"),
    "tcpref select": (["-m", "tcpref", "serve", "--model", "select"], "asyncio streams"),
    "socketserver forking": ([str(HERE / "stdlib_servers.py"), "forking"], None),
    "socketserver threading": ([str(HERE / "stdlib_servers.py"), "threading"], None),
    "asyncio streams": ([str(HERE / "stdlib_servers.py"), "asyncio"], None),
    "raw blocking loop": ([str(HERE / "stdlib_servers.py"), "raw"], None),
}
TCPREF_OPTIONS = ["--max-connections", "1000", "--idle-timeout", "60", "--grace", "1"]
CLIENT_COUNTS = (1, 10, 100)
MESSAGE = b"m" * 1024


@contextlib.contextmanager
def server(name: str) -> Iterator[tuple[subprocess.Popen[bytes], tuple[str, int]]]:
    """Start one server process; yield it and its address; kill its whole group."""
    args, _ = SERVERS[name]
    if args[0] == "-m":
        args = [*args, *TCPREF_OPTIONS]
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, children included
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{name} did not start: {line!r}")
        host, _, port = line.removeprefix("listening on ").strip().rpartition(":")
        yield proc, (host, int(port))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def round_trips_per_second(address: tuple[str, int], clients: int, seconds: float) -> float:
    """Keep ``clients`` connections busy with 1 KiB echoes; return round trips per second."""
    selector = selectors.DefaultSelector()
    socks = []
    pending: dict[socket.socket, int] = {}
    try:
        for _ in range(clients):
            sock = socket.create_connection(address, timeout=10)
            sock.setblocking(False)
            socks.append(sock)
            selector.register(sock, selectors.EVENT_READ)
        done = 0
        for sock in socks:
            sock.send(MESSAGE)  # 1 KiB always fits an empty send buffer
            pending[sock] = len(MESSAGE)
        started = time.perf_counter()
        deadline = started + seconds
        while (now := time.perf_counter()) < deadline:
            for key, _ in selector.select(timeout=deadline - now):
                sock = key.fileobj  # type: ignore[assignment]
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed a connection")
                pending[sock] -= len(data)
                if pending[sock] == 0:
                    done += 1
                    sock.send(MESSAGE)
                    pending[sock] = len(MESSAGE)
        return done / (time.perf_counter() - started)
    finally:
        selector.close()
        for sock in socks:
            sock.close()


def connections_per_second(address: tuple[str, int], seconds: float) -> float:
    """Connect, echo 12 bytes and close, again and again; return connections per second."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"hello world!")
            if sock.recv(12, socket.MSG_WAITALL) != b"hello world!":
                raise RuntimeError("bad echo")
        done += 1
    return done / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share_out_of_descriptors(name: str, seconds: float) -> float:
    """CPU share of the server process while 200 clients exceed its 64 descriptors."""
    with server(name) as (proc, address):
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (64, 64))
        clients = []
        try:
            for _ in range(200):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(address)
                clients.append(sock)
            time.sleep(0.5)
            before = cpu_seconds(proc.pid)
            time.sleep(seconds)
            return (cpu_seconds(proc.pid) - before) / seconds
        finally:
            for sock in clients:
                sock.close()


def measure_once(name: str, seconds: float) -> dict[str, float]:
    """One round of every speed load against one fresh server process."""
    row: dict[str, float] = {}
    with server(name) as (_, address):
        for clients in CLIENT_COUNTS:
            if name == "raw blocking loop" and clients > 1:
                continue  # it serves one client at a time: the others would wait
            row[f"round trips/s, {clients} clients"] = round_trips_per_second(
                address, clients, seconds
            )
        row["connections/s"] = connections_per_second(address, seconds)
    return row


def measure(seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Best of ``rounds`` interleaved rounds, so that a busy moment hurts no one server."""
    results: dict[str, dict[str, float]] = {name: {} for name in SERVERS}
    for number in range(rounds):
        for name in SERVERS:
            for load, value in measure_once(name, seconds).items():
                results[name][load] = max(value, results[name].get(load, 0.0))
        print(f"  round {number + 1} of {rounds} done", file=sys.stderr)
    for name in ("tcpref thread", "tcpref select", "socketserver threading", "asyncio streams"):
        results[name]["CPU share out of fds"] = cpu_share_out_of_descriptors(name, seconds)
    return results


def ratios(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each tcpref model's result divided by its standard-library counterpart's."""
    out: dict[str, dict[str, float]] = {}
    for name, (_, counterpart) in SERVERS.items():
        if counterpart is None:
            continue
        out[name] = {
            load: results[name][load] / results[counterpart][load]
            for load in results[name]
            if load in results[counterpart] and not load.startswith("CPU")
        }
    return out


def machine() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.machine()}, {cpus} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def print_table(results: dict[str, dict[str, float]]) -> None:
    loads = sorted({load for row in results.values() for load in row}, key=_load_order)
    print(f"machine: {machine()}")
    print(f"{'server':24}" + "".join(f"{load:>28}" for load in loads))
    for name, row in results.items():
        cells = "".join(f"{_cell(row.get(load)):>28}" for load in loads)
        print(f"{name:24}{cells}")
    print("\nratio to the standard-library counterpart (1.0 = as fast):")
    for name, row in ratios(results).items():
        cells = ", ".join(f"{load}: {value:.2f}x" for load, value in row.items())
        print(f"  {name} vs {SERVERS[name][1]}: {cells}")


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if value < 5 else f"{value:,.0f}"


def _load_order(load: str) -> tuple[int, str]:
    return (0 if load.startswith("round") else 1 if load.startswith("conn") else 2, load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each load")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--write", action="store_true", help="save results and the chart")
    args = parser.parse_args()
    results = measure(args.seconds, args.rounds)
    print_table(results)
    if args.write:
        record = {
            "machine": machine(),
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": results,
        }
        RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        from chart import write_chart  # benchmarks/chart.py

        write_chart(record, CHART)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
