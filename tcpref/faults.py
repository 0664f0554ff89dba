"""Lose chosen segments on the live kernel, with the simulator's loss plans (Linux).

A loss plan is a :class:`tcpref.sim.Drop`: drop the ``nth`` segment that ``sender``
sends with exactly ``flags``, and the ``count - 1`` after it.  The simulator
applies it to its link; this module applies the same plan to a real connection
on loopback, so one plan drives the model and the kernel.

The tool is a *socket filter*: a classic BPF program attached with
``SO_ATTACH_FILTER`` to the socket that would receive the segment.  The kernel
runs it on every segment that reaches the socket, from the TCP header on, and a
program that returns 0 makes the kernel drop the segment as if the network had
lost it.  The sender sees nothing and retransmits on its own timer.
:func:`drop_program` builds the program (pure), and :func:`describe` prints it
instruction by instruction::

    >>> from tcpref.segment import Flags
    >>> print(describe(drop_program(Flags.SYN | Flags.ACK)))
    0: ldb [13]          A = the TCP header's flag byte
    1: jeq #0x12, 2, 3   exactly SYN|ACK? go on to drop it; otherwise keep it
    2: ret #0            drop: the socket never sees this segment
    3: ret #0xffffffff   keep the whole segment

A classic BPF program keeps nothing from one segment to the next, so it cannot
count.  :class:`LossInjector` counts instead, in user space: it watches a packet
capture, which sees each segment before the receiving socket does, attaches the
program once the ``nth - 1`` earlier matches have passed, and detaches it once
the ``count`` losses are done.  That works because the segments a plan names are
far apart in time (a retransmission waits at least 200 ms on Linux).

Attaching a filter to a TCP socket needs CAP_NET_ADMIN on current kernels and a
capture needs CAP_NET_RAW: run the whole experiment in a private network namespace
(:func:`tcpref.netns.run`), where any user has both.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tcpref.segment import Flags, Segment
from tcpref.sim import Drop
from tcpref.trace import Side

__all__ = [
    "SETTLE",
    "Instruction",
    "LossInjector",
    "attach",
    "check_plan",
    "describe",
    "detach",
    "drop_program",
    "receiver_of",
]

# Opcodes of classic BPF (linux/filter.h): load a byte at an absolute offset,
# jump if A equals a constant, return a constant.
_LDB_ABS = 0x30
_JEQ_K = 0x15
_RET_K = 0x06
_KEEP_ALL = 0xFFFFFFFF
# The flags byte: byte 13 of the TCP header (RFC 9293 Section 3.1).
_FLAGS_OFFSET = 13
#: Seconds :class:`LossInjector` waits after a capture shows a segment before it
#: changes the filter: a packet tap sees a segment just before TCP processes it.
SETTLE = 0.02
# Socket options (asm-generic/socket.h), for Pythons whose socket module lacks them.
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)


@dataclass(frozen=True)
class Instruction:
    """One classic BPF instruction (``struct sock_filter``), with what it is for.

    Attributes:
        code: The opcode.
        jt: Instructions to skip when a jump's test is true.
        jf: Instructions to skip when it is false.
        k: The constant: an offset, a value to compare, or a return value.
        text: The instruction in the usual assembler syntax.
        comment: What it does here, in words.
    """

    code: int
    jt: int
    jf: int
    k: int
    text: str
    comment: str

    def pack(self) -> bytes:
        """The 8 bytes of ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k."""
        return struct.pack("HBBI", self.code, self.jt, self.jf, self.k)


def _flag_names(flags: Flags) -> str:
    return "|".join(flag.name or "" for flag in Flags if flag in flags)


def drop_program(flags: Flags) -> tuple[Instruction, ...]:
    """The classic BPF program that drops every segment whose flags are exactly ``flags``.

    Args:
        flags: The exact flag set to drop, such as ``Flags.FIN | Flags.ACK``.

    Raises:
        TypeError: if ``flags`` is not a :class:`tcpref.segment.Flags` value.
        ValueError: if ``flags`` is empty.
    """
    if not isinstance(flags, Flags):
        raise TypeError(f"flags must be a Flags value, not {flags!r}")
    if not flags:
        raise ValueError("flags must name at least one flag: no segment Linux sends has none")
    value = int(flags)
    return (
        Instruction(_LDB_ABS, 0, 0, _FLAGS_OFFSET, "ldb [13]", "A = the TCP header's flag byte"),
        Instruction(
            _JEQ_K,
            0,
            1,
            value,
            f"jeq #{value:#04x}, 2, 3",
            f"exactly {_flag_names(flags)}? go on to drop it; otherwise keep it",
        ),
        Instruction(_RET_K, 0, 0, 0, "ret #0", "drop: the socket never sees this segment"),
        Instruction(_RET_K, 0, 0, _KEEP_ALL, "ret #0xffffffff", "keep the whole segment"),
    )


def describe(program: Sequence[Instruction]) -> str:
    """Print a program one instruction a line: its index, its text and its comment."""
    width = max(len(instruction.text) for instruction in program)
    return "\n".join(
        f"{index}: {instruction.text:<{width}}   {instruction.comment}"
        for index, instruction in enumerate(program)
    )


def check_plan(plan: object) -> Drop:
    """Check that the kernel can carry out ``plan``, and return it.

    The kernel needs to know whose segments to drop and which ones: a plan for it
    names its ``sender`` and exact ``flags``, and has no ``when`` predicate (Python
    cannot run inside the kernel's filter).

    Raises:
        TypeError: if ``plan`` is not a :class:`tcpref.sim.Drop`.
        ValueError: naming the plan, if it has no sender, no flags or empty flags,
            a ``when`` predicate, or is a :class:`tcpref.sim.Delay`.
    """
    if not isinstance(plan, Drop):
        raise TypeError(f"a loss plan must be a tcpref.sim.Drop, not {plan!r}")
    if type(plan) is not Drop:
        raise ValueError(f"{plan!r}: a socket filter can drop a segment, not delay it")
    if plan.sender is None:
        raise ValueError(f"{plan!r}: name the sender, 'client' or 'server', for the kernel")
    if plan.flags is None or not plan.flags:
        raise ValueError(f"{plan!r}: name the exact flags to drop, such as Flags.SYN")
    if plan.when is not None:
        raise ValueError(f"{plan!r}: a when= predicate cannot run in the kernel's filter")
    return plan


def receiver_of(plan: Drop) -> Side:
    """The side whose socket must carry the filter: the one ``plan.sender`` sends to.

    Raises:
        ValueError: if the plan has no sender.
    """
    if plan.sender is None:
        raise ValueError(f"{plan!r}: name the sender, 'client' or 'server'")
    return "server" if plan.sender == "client" else "client"


# == The IO layer: attach, detach, and count on a capture ================================


def attach(sock: socket.socket, program: Sequence[Instruction]) -> None:
    """Attach ``program`` to ``sock`` (SO_ATTACH_FILTER); it replaces any earlier one.

    Raises:
        PermissionError: without CAP_NET_ADMIN (run inside :func:`tcpref.netns.run`).
        OSError: if the kernel refuses the program.
    """
    code = b"".join(instruction.pack() for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog: the instruction count, then a pointer to them.  The kernel
    # copies the program during the call, so the buffer may go away afterwards.
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def detach(sock: socket.socket) -> None:
    """Remove the socket's filter, if it has one (SO_DETACH_FILTER).

    Raises:
        OSError: if the call fails for another reason than there being no filter.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_FILTER, 0)
    except OSError as exc:
        if exc.errno != 2:  # ENOENT: no filter was attached
            raise


class LossInjector:
    """Carry out one loss plan on live sockets, counting matches as a capture sees them.

    Call :meth:`start` before the plan's segments can be sent, feed it every
    captured segment in order with :meth:`saw`, and give it each socket of the
    receiving side as it appears with :meth:`add_receiver` (a listener first, then
    the connection it accepts, which inherits the listener's filter).  It attaches
    the drop program when the ``nth`` match is next and detaches it when the losses
    are done.  ``lost`` counts the segments it let the kernel drop.

    Args:
        plan: The loss plan.
        settle: Seconds to wait, once a capture shows a match, before changing the
            filter (:data:`SETTLE`).

    Raises:
        TypeError: if ``plan`` is not a :class:`tcpref.sim.Drop`.
        ValueError: if the kernel cannot carry out ``plan`` (see :func:`check_plan`),
            or ``settle`` is outside 0-1 s.
    """

    def __init__(self, plan: Drop, *, settle: float = SETTLE) -> None:
        self.plan = check_plan(plan)
        if not (isinstance(settle, int | float) and 0 <= settle < 1):
            raise ValueError(f"settle must be from 0 to 1 second, not {settle!r}")
        self._settle = float(settle)
        self.receiver = receiver_of(self.plan)
        self._program = drop_program(self.plan.flags or Flags(0))
        self._sockets: list[socket.socket] = []
        self._matches = 0
        self._armed = False
        self._lock = threading.Lock()
        self.lost = 0

    def add_receiver(self, sock: socket.socket) -> None:
        """Put the filter's current state on another socket of the receiving side."""
        with self._lock:
            self._sockets.append(sock)
            if self._armed:
                attach(sock, self._program)
            else:
                detach(sock)  # an accepted socket inherits its listener's filter

    def start(self) -> None:
        """Arm at once if the first match is the one to drop."""
        with self._lock:
            if self.plan.nth == 1:
                self._arm()

    def saw(self, sender: Side, segment: Segment) -> bool:
        """Count one captured segment; return whether the plan dropped it.

        The capture sees a segment before the receiving socket does, and the kernel
        has usually filtered it by the time this runs: the decision was the state
        of the filter when it arrived, which this mirrors.
        """
        with self._lock:
            if not self.plan.matches(sender, segment):
                return False
            self._matches += 1
            dropped = self.plan.hits(self._matches)
            self.lost += dropped
            # Set the filter for the next match: armed exactly when it is to be lost.
            wanted = self.plan.hits(self._matches + 1)
            if wanted != self._armed:
                # The capture can show a segment before the kernel has finished
                # with it: wait, so that the change applies to the next match only.
                time.sleep(self._settle)
                if wanted:
                    self._arm()
                else:
                    self._disarm()
            return dropped

    def stop(self) -> None:
        """Remove the filter from every socket that is still open."""
        with self._lock:
            self._disarm()

    def _arm(self) -> None:
        for sock in self._open_sockets():
            attach(sock, self._program)
        self._armed = True

    def _disarm(self) -> None:
        for sock in self._open_sockets():
            detach(sock)
        self._armed = False

    def _open_sockets(self) -> list[socket.socket]:
        return [sock for sock in self._sockets if sock.fileno() != -1]
