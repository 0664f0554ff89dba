"""Catch every ``os.fork()`` made while the forking process runs more than one thread.

A fork copies only the thread that called it; a lock that another thread held at
that moment stays locked in the child for ever.  Python 3.12 and newer warn about
such a fork (``DeprecationWarning: This process (pid=...) is multi-threaded, use of
fork() may lead to deadlocks in the child``), but a test cannot rely on that
warning: CPython clears the exception that an ``error`` warnings filter makes of it,
so such a filter hides the warning instead of failing the test; a fork made in a
forked process (a server process of ``running_forked``) warns into that process's
copy of pytest's warning log, which nobody reads; and Python 3.11 does not warn.

So this module watches ``os.fork`` itself, in every process that inherits the
watch, by the kernel's count of the process's threads, as CPython's warning does.
Each fork appends one line to a report file, opened by name each time, because a
server process closes the descriptors it inherited: ``ok`` or ``THREADS`` with where
the fork was made and which threads ran.

Used two ways: the tests of the servers wrap each test in :func:`watching`, and
``pytest -p fork_guard`` with ``TCPREF_FORK_REPORT=PATH`` watches a whole run: the
pages in tests/test_fork_guard.py, or any run, such as a full one, after which
``grep -v '^ok ' PATH`` names every fork made with threads running, its test or
page, and the threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The environment variable that names the report file of a watched pytest run.
REPORT_ENV = "TCPREF_FORK_REPORT"

# What a watched fork calls: the real os.fork, unless a test of this module says.
_fork = os.fork
_report: list[str] = []  # the report file's path while a watch is on
_current_test = ["(no test)"]


def os_threads() -> int:
    """How many threads this process has, as the kernel counts them (/proc/self/stat)."""
    with open("/proc/self/stat") as stat:
        # After the command name come the state (field 3) ... num_threads (field 20).
        return int(stat.read().rpartition(")")[2].split()[17])


def _watched_fork() -> int:
    threads = os_threads()
    if threads > 1:
        caller = traceback.extract_stack(limit=2)[0]
        names = ", ".join(t.name for t in threading.enumerate())
        line = (
            f"THREADS {threads} in {_current_test[0]} at {caller.filename}:{caller.lineno}"
            f" (Python threads: {names})\n"
        )
    else:
        line = f"ok {_current_test[0]}\n"
    with open(_report[0], "a") as report:
        report.write(line)
    return _fork()


def start(report: Path, test: str | None = None) -> None:
    """Watch every fork from now on, writing to ``report``; ``test`` names the test."""
    _report[:] = [str(report)]
    if test is not None:
        _current_test[0] = test
    os.fork = _watched_fork


def read(report: Path) -> tuple[int, list[str]]:
    """How many forks ``report`` records, and the lines of those made with threads."""
    lines = report.read_text().splitlines() if report.exists() else []
    return len(lines), [line for line in lines if not line.startswith("ok ")]


@contextlib.contextmanager
def recording(report: Path, test: str) -> Iterator[None]:
    """Record the forks made within the block in ``report``, as made in ``test``.

    A watch that was on before (pytest -p fork_guard) goes on afterwards.
    """
    outer = os.fork, list(_report), _current_test[0]
    start(report, test)
    try:
        yield
    finally:
        os.fork, _report[:], _current_test[0] = outer


@contextlib.contextmanager
def watching(report: Path, test: str) -> Iterator[None]:
    """Watch forks within the block; raise AssertionError if one ran with threads.

    Raises:
        AssertionError: naming each fork made while its process had other threads.
    """
    with recording(report, test):
        yield
    check(report)


def check(report: Path) -> None:
    """Raise AssertionError if ``report`` records a fork made with other threads running.

    Raises:
        AssertionError: naming each such fork, where it was made and which threads ran.
    """
    _, offences = read(report)
    assert not offences, "fork with threads running:\n" + "\n".join(offences)


# -- as a pytest plugin: pytest -p fork_guard, with TCPREF_FORK_REPORT set -----------


def pytest_configure(config: Any) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        start(Path(path))


def pytest_runtest_setup(item: Any) -> None:
    _current_test[0] = item.nodeid
