"""Run a function inside a private network namespace of its own (Linux), root or not.

Capturing packets (``AF_PACKET``) needs CAP_NET_RAW, and a socket filter on a TCP
socket needs CAP_NET_ADMIN.  An ordinary user has neither on the host, but Linux
lets any user make a new *user namespace* and, inside it, a new *network
namespace*: there the user holds every capability over a private network stack,
with its own loopback interface, its own connection table (/proc/net/tcp) and its
own TCP sysctls.  Nothing done there can touch the host's network.

:func:`run` does this in a forked child, so the calling process never changes
namespace::

    child = os.fork()
      unshare(CLONE_NEWUSER | CLONE_NEWNET)   # as root, CLONE_NEWNET alone
      write /proc/self/uid_map and gid_map    # keep our own uid and gid
      bring lo up                             # a new namespace starts with it down
      result = function(*args)
      send the result (or the exception) back through a pipe, then _exit

The child is bounded in time, and killed and reaped when it runs out; no process,
namespace or descriptor outlives the call.  :func:`unavailable_reason` says in one
line why namespaces cannot be made here (not Linux; ``user.max_user_namespaces``
is 0; Ubuntu's AppArmor restriction; a seccomp profile, as Docker's default,
refusing ``unshare``), and :func:`available` is the same answer as a bool.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tcpref.wrap import read_pipe_to_end

__all__ = [
    "DEFAULT_TIMEOUT",
    "Child",
    "NamespaceChildError",
    "NamespaceUnavailableError",
    "available",
    "inside",
    "run",
    "start",
    "unavailable_reason",
]

T = TypeVar("T")

#: How long :func:`run` lets its child work, in seconds, unless told otherwise.
DEFAULT_TIMEOUT = 30.0

# From <linux/sched.h>.
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
# From <linux/sockios.h> and <net/if.h>: read and set an interface's flags.
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
# struct ifreq: a 16-byte name, then a union whose first member, for these two
# requests, is a short of flags; the whole struct is 40 bytes on 64-bit Linux.
_IFREQ = struct.Struct("16sh22x")

_MAX_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"
_APPARMOR_RESTRICTION = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"


class NamespaceUnavailableError(OSError):
    """A network namespace cannot be made here; the message says why in one line."""


class NamespaceChildError(RuntimeError):
    """The child died without an answer, or raised something that could not be sent back."""


# == Why namespaces may be out of reach ================================================


def _read_int(path: str) -> int | None:
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def _seccomp_mode() -> int:
    """The Seccomp line of /proc/self/status: 0 none, 1 strict, 2 a filter."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _is_root() -> bool:
    return os.geteuid() == 0


def _explain_refusal(code: int) -> str:
    """Turn the errno of a refused ``unshare`` into the one-line reason a reader sees."""
    if _read_int(_MAX_USER_NAMESPACES) == 0:
        return "user namespaces are turned off here (sysctl user.max_user_namespaces = 0)"
    if not _is_root() and _read_int(_APPARMOR_RESTRICTION) == 1:
        return (
            "AppArmor refuses user namespaces to unprivileged programs here "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns = 1)"
        )
    if code in (errno.EPERM, errno.ENOSYS) and _seccomp_mode() == 2:
        return (
            "a seccomp profile refuses unshare() here "
            "(a container's default profile does; run it with one that allows it)"
        )
    return f"unshare() was refused here: {errno.errorcode.get(code, code)} ({os.strerror(code)})"


@functools.cache
def unavailable_reason() -> str | None:
    """Say in one line why a network namespace cannot be made here, or None if it can.

    The answer comes from really trying, in a short-lived child, and is cached.

    >>> reason = unavailable_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux's (this is {sys.platform})"
    try:
        run(_nothing, timeout=10.0)
    except NamespaceUnavailableError as exc:
        return str(exc)
    except (NamespaceChildError, TimeoutError, OSError) as exc:
        return f"a namespace child failed: {exc}"
    return None


def available() -> bool:
    """Whether :func:`run` can make a network namespace here (see :func:`unavailable_reason`).

    >>> isinstance(available(), bool)
    True
    """
    return unavailable_reason() is None


def _nothing() -> None:
    return None


# == The child's side ==================================================================


def _unshare(flags: int) -> None:
    """Call unshare(2): ``os.unshare`` where Python has it (3.12+), else through libc."""
    os_unshare = getattr(os, "unshare", None)
    if os_unshare is not None:
        os_unshare(flags)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


#: Set in a child once it is inside its private namespace (see :func:`inside`).
_inside = False


def inside() -> bool:
    """Whether this process is a :func:`run` child, inside a private network namespace.

    Code that must never touch the host's network, such as :class:`tcpref.peer.TunPeer`,
    checks it.

    >>> inside(), run(inside) if available() else True
    (False, True)
    """
    return _inside


def _enter_private_network(as_root: bool = False) -> None:
    """Move this (single-threaded, freshly forked) process into a new network namespace.

    With ``as_root``, a user who is not root becomes uid 0 inside its user namespace,
    so that programs it starts keep their capabilities there (an exec drops them
    for any other uid).

    Raises:
        NamespaceUnavailableError: if the kernel refuses.
    """
    uid, gid = os.getuid(), os.getgid()
    inside_uid, inside_gid = (0, 0) if as_root else (uid, gid)
    try:
        if _is_root():
            try:
                _unshare(_CLONE_NEWNET)
                _bring_loopback_up()
                return _mark_inside()
            except PermissionError:
                pass  # root without CAP_SYS_ADMIN (a container): try a user namespace
        _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
        # Map our own ids (or root's, if asked), so that files keep their owner.
        # setgroups must be denied before an unprivileged process may write gid_map.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{inside_uid} {uid} 1")
        _write("/proc/self/gid_map", f"{inside_gid} {gid} 1")
    except OSError as exc:
        raise NamespaceUnavailableError(exc.errno, _explain_refusal(exc.errno or 0)) from None
    _bring_loopback_up()
    _mark_inside()


def _mark_inside() -> None:
    global _inside
    _inside = True


def _bring_loopback_up() -> None:
    """Set IFF_UP on ``lo``, as ``ip link set lo up`` does, with two ioctls."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def _answer(function: Callable[..., Any], args: tuple[Any, ...], as_root: bool) -> bytes:
    """Run ``function`` in the namespace and pickle what happened, whatever it was."""
    try:
        _enter_private_network(as_root)
        outcome: tuple[str, Any] = ("returned", function(*args))
    except NamespaceUnavailableError as exc:
        outcome = ("unavailable", (exc.errno, exc.strerror))
    except BaseException as exc:
        outcome = ("raised", exc)
    try:
        return pickle.dumps(outcome)
    except Exception as exc:  # an unpicklable result or exception
        what = outcome[1]
        text = f"{type(what).__qualname__}: {what}" if outcome[0] == "raised" else repr(what)
        return pickle.dumps(("unsendable", f"{text} (could not be sent back: {exc})"))


def _child(function: Callable[..., Any], args: tuple[Any, ...], writer: int, as_root: bool) -> None:
    """The forked child's whole life: it always ends in ``os._exit``."""
    status = 1
    try:
        # Ctrl-C is the parent's to handle: it kills this child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        data = _answer(function, args, as_root)
        view = memoryview(data)
        while view:
            view = view[os.write(writer, view) :]
        status = 0
    finally:
        os._exit(status)


# == The parent's side =================================================================


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _result(name: str, data: bytes, status: int) -> Any:
    if not data:
        raise NamespaceChildError(f"the namespace child running {name} {_describe(status)}")
    kind, payload = pickle.loads(data)
    if kind == "returned":
        return payload
    if kind == "raised":
        raise payload
    if kind == "unavailable":
        raise NamespaceUnavailableError(*payload)
    raise NamespaceChildError(f"{name} in its namespace: {payload}")


def run(
    function: Callable[..., T],
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT,
    as_root: bool = False,
) -> T:
    """Call ``function(*args)`` in a forked child inside a new network namespace.

    The function and its arguments must be picklable only in what they return or
    raise: the child is a fork, so it already has them.  What the function returns
    comes back through a pipe; an exception it raises is raised here, with its type
    and message.  Whatever it opens is closed when the child exits.

    Call it from a process with one thread: a fork copies only the calling thread,
    and Python 3.12 and newer warn when another is running.

    Args:
        function: What to run; it sees only the namespace's own loopback interface.
        *args: Its arguments.
        timeout: Seconds the child may take, after which it is killed.
        as_root: Be uid 0 inside the namespace, so that programs the function starts
            (``python -m tcpref trace``) keep the namespace's capabilities.  Root
            is uid 0 anyway.

    Returns:
        What ``function`` returned.

    Raises:
        NamespaceUnavailableError: if a namespace cannot be made here; the message
            says why in one line.
        TimeoutError: if the child takes longer than ``timeout``.
        NamespaceChildError: if the child dies without an answer (its signal or
            exit status is named) or its answer cannot be sent back.
        ValueError: if ``timeout`` is not a positive number.
        Exception: whatever ``function`` raised.
    """
    child = start(function, *args, timeout=timeout, as_root=as_root)
    return child.result()  # type: ignore[no-any-return]


def start(
    function: Callable[..., Any],
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT,
    as_root: bool = False,
) -> Child:
    """Start ``function(*args)`` in its own namespace, as :func:`run` does, without waiting.

    Several experiments can then run side by side, each on a loopback interface of
    its own; collect each one's answer with :meth:`Child.result`.

    Raises:
        ValueError: if ``timeout`` is not a positive number.
        OSError: if the fork fails.
    """
    if not (isinstance(timeout, int | float) and timeout > 0 and timeout == timeout):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    name = getattr(function, "__qualname__", repr(function))
    reader, writer = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(reader)
        os.close(writer)
        raise
    if pid == 0:  # pragma: no cover - the child; its coverage is its answer
        os.close(reader)
        _child(function, args, writer, as_root)
    os.close(writer)
    return Child(name, pid, reader, time.monotonic() + timeout, timeout)


class Child:
    """A function running in a namespace of its own, started by :func:`start`.

    Attributes:
        name: The function's name, for messages.
        pid: The child's process id.
    """

    def __init__(self, name: str, pid: int, reader: int, deadline: float, timeout: float):
        self.name, self.pid = name, pid
        self._reader, self._deadline, self._timeout = reader, deadline, timeout
        self._done = False

    def result(self) -> Any:
        """Wait for the child's answer, until its deadline; always reap it.

        Raises:
            NamespaceUnavailableError: if a namespace cannot be made here.
            TimeoutError: if the deadline passes first; the child is killed.
            NamespaceChildError: if the child dies without an answer, or was
                already collected.
            Exception: whatever the function raised.
        """
        if self._done:
            raise NamespaceChildError(f"the answer of {self.name} was already collected")
        try:
            data = read_pipe_to_end(self._reader, self._deadline)
            if data is None:
                raise TimeoutError(
                    f"{self.name} did not finish within {self._timeout:g} s in its namespace; "
                    "its child was killed"
                )
            _, status = os.waitpid(self.pid, 0)
            self._done = True
            return _result(self.name, data, status)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the child if it still runs, reap it, and close its pipe (idempotent)."""
        if self._reader != -1:
            os.close(self._reader)
            self._reader = -1
        if not self._done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._done = True
