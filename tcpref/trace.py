"""One format for a conversation between two TCP endpoints, simulated or captured.

The simulator (:mod:`tcpref.sim`) and the loopback capture (:mod:`tcpref.capture`)
both produce a list of :class:`TraceEntry`, and :func:`format_trace` prints either
the same way, so a page can put the model's segments beside the kernel's.

One entry is one segment, or one event without a segment (a user call, a timer).
Each line shows when it was sent, which way it went (``C -> S`` from client to
server, ``C <- S`` back), the segment in :meth:`tcpref.segment.Segment.describe`'s
format with sequence numbers relative to each side's initial sequence number, and,
for a simulation, the state of each side once the segment has arrived (or been
lost) and been processed.

This module is pure: it formats values and opens nothing.

>>> from tcpref.segment import Flags, Segment
>>> syn = Segment(40000, 80, seq=1000, ack=0, flags=Flags.SYN, window=4096)
>>> print(format_trace([TraceEntry(0.0, "client", syn)], client_isn=1000))
   time  dir     segment
  0.000  C -> S  SYN seq=0 win=4096
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tcpref.segment import Segment
from tcpref.states import State

__all__ = ["Side", "TraceEntry", "format_entry", "format_trace"]

#: Which end of the connection sent a segment, ``"client"`` or ``"server"``.
Side = Literal["client", "server"]

_ARROWS = {"client": "C -> S", "server": "C <- S"}


@dataclass(frozen=True)
class TraceEntry:
    """One line of a trace: a segment sent, or an event that sent nothing.

    Attributes:
        time: Seconds since the start, when the segment left its sender (or the
            event happened).
        sender: ``"client"`` or ``"server"``: who sent the segment, or whose event
            it is.
        segment: The segment, or ``None`` for an event without one.
        note: What happened, for an event without a segment (``"close()"``,
            ``"TIME_WAIT expires"``), or a remark on a segment (``"lost"``,
            ``"retransmission"``).
        arrival: Seconds since the start when the segment arrived, or ``None`` if it
            was lost (or, for a capture, where sending and arriving are one moment,
            the same as ``time``).
        client_state: The client's state after this entry, where known.
        server_state: The server's state after this entry, where known.
    """

    time: float
    sender: Side
    segment: Segment | None = None
    note: str = ""
    arrival: float | None = None
    client_state: State | None = None
    server_state: State | None = None

    def __post_init__(self) -> None:
        if self.sender not in _ARROWS:
            raise ValueError(f"sender must be 'client' or 'server', not {self.sender!r}")
        if self.segment is None and not self.note:
            raise ValueError("an entry without a segment needs a note saying what happened")

    @property
    def lost(self) -> bool:
        """Whether the entry is a segment that never arrived."""
        return self.segment is not None and self.arrival is None


def format_entry(
    entry: TraceEntry, client_isn: int | None = None, server_isn: int | None = None
) -> str:
    """Render one entry as one line (without the header :func:`format_trace` adds).

    Sequence numbers are relative to the sender's initial sequence number and
    acknowledgment numbers to the receiver's, when those are given.

    Raises:
        TypeError: if an initial sequence number is given but not an int.
        ValueError: if an initial sequence number is not a 32-bit number.
    """
    if entry.sender == "client":
        own_isn, peer_isn = client_isn, server_isn
    else:
        own_isn, peer_isn = server_isn, client_isn
    if entry.segment is None:
        who = "C" if entry.sender == "client" else "S"
        text = f"{who:<6}  {entry.note}"
    else:
        text = f"{_ARROWS[entry.sender]}  {entry.segment.describe(own_isn, peer_isn)}"
        if entry.note:
            text += f"  ({entry.note})"
    line = f"{entry.time:7.3f}  {text}"
    if entry.client_state is not None and entry.server_state is not None:
        line = f"{line:<68}  {entry.client_state.name:<13} {entry.server_state.name}"
    return line


def format_trace(
    entries: Sequence[TraceEntry],
    client_isn: int | None = None,
    server_isn: int | None = None,
) -> str:
    """Render a trace as a table: a header line, then one line per entry.

    The state columns appear only when every entry carries both states (a
    simulation does; a capture cannot see states).

    Raises:
        TypeError: if an initial sequence number is given but not an int.
        ValueError: if an initial sequence number is not a 32-bit number.
    """
    with_states = bool(entries) and all(
        entry.client_state is not None and entry.server_state is not None for entry in entries
    )
    header = "   time  dir     segment"
    if with_states:
        header = f"{header:<68}  {'client':<13} server"
    lines = [header]
    for entry in entries:
        if not with_states:
            entry = TraceEntry(entry.time, entry.sender, entry.segment, entry.note, entry.arrival)
        lines.append(format_entry(entry, client_isn, server_isn))
    return "\n".join(lines)
