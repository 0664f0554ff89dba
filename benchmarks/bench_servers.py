"""Benchmark tcpref's three server models against the standard library's.

Every server runs in its own process and gets identical loads from this one:

* **round trips**: 1, 10 or 100 persistent connections, each sending 1 KiB and
  waiting for the echo before sending again, for a fixed time;
* **connection rate**: connect, echo 12 bytes, close, one after another;
* **out of descriptors**: the server's RLIMIT_NOFILE is lowered to 64 and 200
  clients connect; we measure how much CPU the server burns meanwhile.

Both sides of every ratio get the same treatment.  Each tcpref model is measured
right next to its standard-library counterpart, in an order that alternates from
one round to the next, so that neither always goes first (into a cold cache) or
always runs while something else on the machine is busy.  Where this process may
run on two CPUs or more, the load generator is pinned to one of them and every
server (its threads and children included) to another, so that the two never
compete for one CPU, and the scheduler cannot place them together in one round
and apart in the next; the output says whether that was done (``--no-pin`` turns
it off).  The round-trip loads start their clock once every client has had one
echo, so that starting a process or a thread per client is not timed as a round
trip: the connection rate measures that.

Results are printed as a table, and written to ``benchmarks/results.json`` and
``docs/concepts/choosing-a-model.svg`` (with ``--write``), which
``docs/concepts/choosing-a-model.md`` shows.  Run with ``tox -e bench``; for
example ``tox -e bench -- --rounds 2 --seconds 0.5`` for a quick look.  Nothing
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
import statistics
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
    # For reference, no ratio: the standard library's forking server in a process
    # that imports nothing else, to show what a bigger process costs every fork.
    "socketserver fork, bare": ([str(HERE / "stdlib_servers.py"), "forking", "--bare"], None),
    # For reference, no ratio: tcpref's fork server without its per-connection
    # defences, to show what they cost (see undefended_fork.py).
    "tcpref fork, no defences": ([str(HERE / "undefended_fork.py")], None),
    # For reference, no ratio: tcpref's thread server without the read timeout that
    # closes idle clients, to show what it costs a round trip (see untimed_thread.py).
    "tcpref thread, no idle timeout": ([str(HERE / "untimed_thread.py")], None),
}
#: The reference rows measured only for the connection rate...
CONNECTION_RATE_ONLY = ("socketserver fork, bare", "tcpref fork, no defences")
#: ...and those measured only for round trips.
ROUND_TRIPS_ONLY = ("tcpref thread, no idle timeout",)
TCPREF_OPTIONS = ["--max-connections", "1000", "--idle-timeout", "60", "--grace", "1"]
CLIENT_COUNTS = (1, 10, 100)
MESSAGE = b"m" * 1024
#: Pause between two loads on one server, so that the children or threads of one
#: load have finished before the next is timed.
SETTLE = 0.3


def cpu_plan(available: set[int] | None = None) -> tuple[set[int], set[int]] | None:
    """Which CPUs the load generator and the servers get: ``(load, servers)``.

    ``None`` when fewer than two CPUs are available, and nothing is pinned.

    >>> cpu_plan({0, 1, 2, 3})
    ({0}, {1})
    >>> cpu_plan({5}) is None
    True
    """
    if available is None and not hasattr(os, "sched_getaffinity"):
        return None  # not Linux: the scheduler decides
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) < 2:
        return None
    return {cpus[0]}, {cpus[1]}


def describe_plan(plan: tuple[set[int], set[int]] | None) -> str:
    """One line for the output and the record: where the load and the servers ran."""
    if plan is None:
        return "not pinned (fewer than two CPUs available, or no sched_setaffinity)"
    (load,), (servers,) = plan
    return f"load generator pinned to CPU {load}, servers to CPU {servers}"


def measuring_order(rounds: int) -> list[list[str]]:
    """The order of the servers in each round.

    Each tcpref model is followed by its counterpart, and every other round runs
    the whole list backwards, so that both sides of a ratio go first equally often.

    >>> first, second = measuring_order(2)
    >>> first[:2], second == first[::-1]
    (['tcpref fork', 'socketserver forking'], True)
    """
    forward: list[str] = []
    for name, (_, counterpart) in SERVERS.items():
        for member in (name, counterpart):
            if member is not None and member not in forward:
                forward.append(member)
    return [forward if number % 2 == 0 else forward[::-1] for number in range(rounds)]


@contextlib.contextmanager
def server(
    name: str, cpus: set[int] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], tuple[str, int]]]:
    """Start one server process; yield it and its address; kill its whole group.

    With ``cpus``, the server is pinned to them before it serves: the threads and
    children it starts later inherit that.
    """
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
        if cpus is not None:
            os.sched_setaffinity(proc.pid, cpus)
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
            socks.append(socket.create_connection(address, timeout=10))
        # One echo each before the clock starts: a connection counts once it is
        # served, so that a fork or a thread start per client is not timed as a
        # round trip (the connection rate measures those).
        for sock in socks:
            sock.sendall(MESSAGE)
        for sock in socks:
            if sock.recv(len(MESSAGE), socket.MSG_WAITALL) != MESSAGE:
                raise RuntimeError("bad echo")
        for sock in socks:
            sock.setblocking(False)
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


def cpu_share_out_of_descriptors(name: str, seconds: float, cpus: set[int] | None = None) -> float:
    """CPU share of the server process while 200 clients exceed its 64 descriptors."""
    with server(name, cpus) as (proc, address):
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


def measure_once(name: str, seconds: float, cpus: set[int] | None = None) -> dict[str, float]:
    """One round of every speed load against one fresh server process."""
    row: dict[str, float] = {}
    with server(name, cpus) as (_, address):
        for clients in CLIENT_COUNTS:
            if name == "raw blocking loop" and clients > 1:
                continue  # it serves one client at a time: the others would wait
            if name in CONNECTION_RATE_ONLY:
                break  # it is there for the cost of a fork: the connection rate
            row[f"round trips/s, {clients} clients"] = round_trips_per_second(
                address, clients, seconds
            )
            time.sleep(SETTLE)
        if name not in ROUND_TRIPS_ONLY:
            row["connections/s"] = connections_per_second(address, seconds)
    return row


def measure(
    seconds: float, rounds: int, plan: tuple[set[int], set[int]] | None = None
) -> tuple[dict[str, dict[str, float]], list[dict[str, dict[str, float]]]]:
    """Best of ``rounds`` interleaved rounds, so that a busy moment hurts no one server.

    Returns the best result of each server on each load, and every round's results
    (for the ratios of neighbours in time; see :func:`round_ratios`).  With
    ``plan``, this process runs on the load generator's CPU while it measures.
    """
    results: dict[str, dict[str, float]] = {name: {} for name in SERVERS}
    every_round: list[dict[str, dict[str, float]]] = []
    server_cpus = None if plan is None else plan[1]
    with pinned(None if plan is None else plan[0]):
        for number, order in enumerate(measuring_order(rounds)):
            this_round: dict[str, dict[str, float]] = {}
            for name in order:
                this_round[name] = measure_once(name, seconds, server_cpus)
                for load, value in this_round[name].items():
                    results[name][load] = max(value, results[name].get(load, 0.0))
            every_round.append(this_round)
            print(f"  round {number + 1} of {rounds} done", file=sys.stderr)
        for name in ("tcpref thread", "tcpref select", "socketserver threading", "asyncio streams"):
            results[name]["CPU share out of fds"] = cpu_share_out_of_descriptors(
                name, seconds, server_cpus
            )
    return results, every_round


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run this process on ``cpus`` (all of them if ``None``) inside the block."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def round_ratios(
    every_round: list[dict[str, dict[str, float]]],
) -> dict[str, dict[str, list[float]]]:
    """Each round's ratio of each tcpref model to its counterpart, in round order.

    Within a round the two servers of a pair ran one right after the other, so
    their ratio is less exposed than a ratio of bests to the machine getting busier
    or quieter between rounds; the spread of these ratios shows the noise.
    """
    per_round = [ratios(one_round) for one_round in every_round]
    return {
        name: {load: [r[name][load] for r in per_round] for load in row}
        for name, row in per_round[0].items()
    }


def median_and_middle_half(values: list[float]) -> tuple[float, float, float]:
    """The median of ``values``, and the quartiles that hold the middle half of them.

    >>> median_and_middle_half([0.9, 1.0, 1.1, 1.2, 1.3])
    (1.1, 0.95, 1.25)
    """
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4)
    return middle, low, high


def ratios(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each tcpref model's result divided by its standard-library counterpart's."""
    out: dict[str, dict[str, float]] = {}
    for name, (_, counterpart) in SERVERS.items():
        if counterpart is None or name not in results or counterpart not in results:
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


def print_table(
    results: dict[str, dict[str, float]],
    every_round: list[dict[str, dict[str, float]]] | None = None,
    placement: str = "",
) -> None:
    loads = sorted({load for row in results.values() for load in row}, key=_load_order)
    print(f"machine: {machine()}")
    if placement:
        print(f"CPUs: {placement}")
    width = max(len(name) for name in results) + 2
    print(f"{'server':{width}}" + "".join(f"{load:>28}" for load in loads))
    for name, row in results.items():
        cells = "".join(f"{_cell(row.get(load)):>28}" for load in loads)
        print(f"{name:{width}}{cells}")
    print("\nratio to the standard-library counterpart (1.0 = as fast), best against best:")
    for name, row in ratios(results).items():
        cells = ", ".join(f"{load}: {value:.2f}x" for load, value in row.items())
        print(f"  {name} vs {SERVERS[name][1]}: {cells}")
    if every_round:
        print(f"median [and middle half] of the {len(every_round)} rounds' ratios:")
        for name, row in round_ratios(every_round).items():
            cells = ", ".join(f"{load}: {_spread(values)}" for load, values in row.items())
            print(f"  {name} vs {SERVERS[name][1]}: {cells}")


def _spread(values: list[float]) -> str:
    middle, low, high = median_and_middle_half(values)
    return f"{middle:.2f}x [{low:.2f}-{high:.2f}]"


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
    parser.add_argument(
        "--no-pin", action="store_true", help="let the load and the servers share every CPU"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")
    plan = None if args.no_pin else cpu_plan()
    placement = describe_plan(plan) if not args.no_pin else "not pinned (--no-pin)"
    print(f"CPUs: {placement}", file=sys.stderr)
    results, every_round = measure(args.seconds, args.rounds, plan)
    print_table(results, every_round, placement)
    if args.write:
        record = {
            "machine": machine(),
            "cpus": placement,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": results,
            "round ratios": round_ratios(every_round),
        }
        RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        from chart import write_chart  # benchmarks/chart.py

        write_chart(record, CHART)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
