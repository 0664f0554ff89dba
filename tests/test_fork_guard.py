"""No page that forks does so while its process runs other threads (issue 19, finding 9).

A fork copies only the calling thread, so a child forked while other threads run
may deadlock on a lock one of them held; Python 3.12 and newer warn about every such
fork.  On Python 3.13 a full run once printed about 1,400 of those warnings, most of
them from ForkServers serving in a background thread.  The tests of the servers
check their own forks (their autouse ``forks_from_one_thread`` fixture); this module
runs the pages that fork, in a pytest of their own watched by tests/fork_guard.py,
and checks every fork made there, in the page's process and in every process forked
from it, such as a server's process and its children.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import fork_guard
import pytest

from tcpref import netns

ROOT = Path(__file__).resolve().parent.parent

#: Pages that fork: fork servers and forked children.  Each must fork at least once,
#: or the check below would pass for want of anything to check.
PAGES = [
    "docs/concepts/choosing-a-model.md",
    "docs/concepts/fork-server.md",
    "docs/concepts/half-close.md",
    "docs/howto/reap-children.md",
    "docs/howto/stop-a-server.md",
    "docs/tutorial/first-connection.md",
]
#: A page whose forks are private network namespaces (tcpref.netns), which it makes
#: only where namespaces can be made.
NETNS_PAGE = "docs/concepts/no-accept-no-listen.md"

#: A pytest of its own, quiet and leaving no cache behind.
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the pages' servers and forks run on Linux"
)


def test_fork_guard_names_a_fork_made_with_another_thread_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guard must be able to fail.  Its own fork is replaced, so that this test
    # does not fork with a thread running itself.
    monkeypatch.setattr(fork_guard, "_fork", lambda: 4242)
    report = tmp_path / "forks.txt"
    release = threading.Event()
    bystander = threading.Thread(target=release.wait, args=(10,), name="bystander")
    before = os.fork
    try:
        with fork_guard.recording(report, "a test"):
            assert os.fork() == 4242  # alone: fine
            bystander.start()
            assert os.fork() == 4242  # with the bystander running: named
    finally:
        release.set()
        bystander.join()
    assert os.fork is before  # the watch is over
    forks, offences = fork_guard.read(report)
    assert forks == 2
    assert len(offences) == 1
    assert "bystander" in offences[0]
    with pytest.raises(AssertionError, match=r"THREADS 2 in a test at .*test_fork_guard\.py"):
        fork_guard.check(report)


@pytest.mark.slow
def test_pages_fork_only_from_processes_with_one_thread(tmp_path: Path) -> None:
    report = tmp_path / "forks.txt"
    done = subprocess.run(
        [*PYTEST, "-p", "fork_guard", "-W", "always::DeprecationWarning", *PAGES, NETNS_PAGE],
        cwd=ROOT,
        env={**os.environ, fork_guard.REPORT_ENV: str(report)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    forks, offences = fork_guard.read(report)
    assert offences == []
    lines = report.read_text().splitlines()
    forking = [*PAGES, NETNS_PAGE] if netns.available() else PAGES
    assert {page for page in forking if not any(page in line for line in lines)} == set()
    assert forks >= len(forking)
    assert "is multi-threaded, use of fork()" not in done.stdout + done.stderr
