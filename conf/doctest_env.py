"""The environment every documentation example runs in, under both runners.

The examples on the site run twice: under Sphinx's doctest builder
(``tox -e doctest``, what readers run) and under pytest through Sybil (``tox -e py``).
Both runners take their settings from this file, so they cannot disagree:

* ``OPTIONFLAGS``, the doctest flags.  Exception messages are compared in full
  (no IGNORE_EXCEPTION_DETAIL), because an error message on a page is a claim too.
* ``GLOBAL_SETUP`` and ``GLOBAL_CLEANUP``, the code run before and after each page.
  The setup defines the names that ``:skipif:`` conditions may use, starts a
  watchdog for the page, and takes a :class:`ResourceSnapshot`.  The cleanup fails
  the page if it left a file descriptor, a thread or a child process behind.
"""

from __future__ import annotations

import doctest
import faulthandler
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass

from tcpref import netns
from tcpref.demos import ipv6

#: Doctest flags for every example.  NORMALIZE_WHITESPACE lets a long expected line,
#: such as an error message, wrap over several lines on the page.
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: A page that runs longer than this is stuck: dump every thread's stack and exit.
PAGE_TIMEOUT_SECONDS = 300.0

# Names that `:skipif:` conditions use.  Keep each one a plain bool.
ON_LINUX = sys.platform.startswith("linux")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: Why a private network namespace (tcpref.netns) cannot be made here, or None.
#: Examples that capture packets or attach socket filters run inside one, for any user.
NETNS_UNAVAILABLE = netns.unavailable_reason()
NETNS = NETNS_UNAVAILABLE is None
#: Why a TCP socket cannot use the IPv6 loopback address ``::1`` here, or None.
IPV6_UNAVAILABLE = ipv6.loopback_unavailable_reason()
IPV6 = IPV6_UNAVAILABLE is None
#: Everything a ``:skipif:`` condition may name.  Sphinx evaluates conditions after
#: running GLOBAL_SETUP, which defines exactly these public names.
SKIP_NAMES = {"ON_LINUX": ON_LINUX, "IS_ROOT": IS_ROOT, "NETNS": NETNS, "IPV6": IPV6}
#: What each name being False means, for the skip message.
_WHY_FALSE = {
    "ON_LINUX": f"this is {sys.platform}, not Linux",
    "IS_ROOT": "not running as root",
    "NETNS": f"no network namespace: {NETNS_UNAVAILABLE}",
    "IPV6": f"no IPv6 loopback: {IPV6_UNAVAILABLE}",
}


def skip_reason(condition: str) -> str:
    """Say why an example with ``:skipif: condition`` was skipped, in one line.

    The condition is named as written, followed by what each name it uses means here,
    so that ``not NETNS`` also says why no network namespace can be made.
    """
    facts = [
        _WHY_FALSE[name] if not value else f"{name} is true"
        for name, value in SKIP_NAMES.items()
        if re.search(rf"\b{name}\b", condition)
    ]
    return f"skipif: {condition} ({'; '.join(facts)})" if facts else f"skipif: {condition}"


GLOBAL_SETUP = """\
import doctest_env as _doctest_env
from doctest_env import ON_LINUX, IS_ROOT, NETNS, IPV6
_doctest_env.start_page_watchdog()
_doctest_env_before = _doctest_env.ResourceSnapshot.take()
"""

GLOBAL_CLEANUP = """\
_doctest_env.stop_page_watchdog()
_doctest_env.ResourceSnapshot.take().check_no_leaks_since(_doctest_env_before)
"""

#: False under pytest, whose pytest-timeout already bounds every example (with SIGALRM).
PAGE_WATCHDOG = True


def _page_timed_out(signum: int, frame: object) -> None:
    faulthandler.dump_traceback(all_threads=True)
    print(f"a page ran longer than {PAGE_TIMEOUT_SECONDS:g} s: stopped", file=sys.stderr)
    os._exit(1)


def start_page_watchdog() -> None:
    """Dump every thread's stack and exit if the page runs past PAGE_TIMEOUT_SECONDS.

    The watchdog is a timer signal, not faulthandler's watchdog thread: a page that
    forks (a fork server, a namespace) must fork a process with one thread, or Python
    3.12 and newer rightly warn that the child may deadlock.
    """
    if PAGE_WATCHDOG and hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _page_timed_out)
        signal.setitimer(signal.ITIMER_REAL, PAGE_TIMEOUT_SECONDS)


def stop_page_watchdog() -> None:
    """Cancel the page's watchdog and put back the default SIGALRM handler."""
    if PAGE_WATCHDOG and hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


class ResourceLeakError(AssertionError):
    """A page (or test) left a file descriptor, thread or child process behind."""


def _fd_dir() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


def _open_fds() -> dict[int, str]:
    """Map each open descriptor to what it refers to, such as ``'socket:[1234]'``."""
    path = _fd_dir()
    if path is None:
        return {}
    fds: dict[int, str] = {}
    for name in os.listdir(path):
        try:
            fds[int(name)] = os.readlink(os.path.join(path, name))
        except OSError:
            continue  # the descriptor listdir itself used, closed by now
    return fds


def _child_pids() -> set[int]:
    """The pids whose parent is this process, zombies included (Linux /proc)."""
    me = os.getpid()
    children: set[int] = set()
    if not os.path.isdir("/proc"):
        return children
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # the process exited while we looked
        # After the command name come the state, then the parent's pid.
        if len(fields) > 1 and int(fields[1]) == me:
            children.add(int(entry))
    return children


@dataclass(frozen=True)
class ResourceSnapshot:
    """What this process holds at one moment: descriptors, threads and children."""

    fds: dict[int, str]
    threads: frozenset[str]
    children: frozenset[int]

    @classmethod
    def take(cls) -> ResourceSnapshot:
        """Record the open descriptors, live threads and child processes now."""
        fds = _open_fds()
        threads = frozenset(f"{t.name} (ident {t.ident})" for t in threading.enumerate())
        return cls(fds=fds, threads=threads, children=frozenset(_child_pids()))

    def leaks_since(self, before: ResourceSnapshot) -> list[str]:
        """Describe everything held now that was not held ``before``."""
        leaks = [
            f"file descriptor {fd} -> {target}"
            for fd, target in sorted(self.fds.items())
            if before.fds.get(fd) != target
        ]
        leaks += [f"thread {name}" for name in sorted(self.threads - before.threads)]
        leaks += [f"child process {pid}" for pid in sorted(self.children - before.children)]
        return leaks

    def check_no_leaks_since(self, before: ResourceSnapshot) -> None:
        """Raise :class:`ResourceLeakError` listing what was left behind.

        Raises:
            ResourceLeakError: if anything is held now that was not ``before``.
        """
        leaks = self.leaks_since(before)
        if leaks:
            raise ResourceLeakError("left behind: " + "; ".join(leaks))
