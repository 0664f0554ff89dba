"""Draw the model as SVG: sequence diagrams from traces, the state diagram from the table.

The site's diagrams are drawn by this module when the documentation is built, so
a diagram can never disagree with the code: change the state table or the
simulator, and the pictures change with it.

The SVG is plain text, needs no fonts or scripts from the network, and draws
everything in ``currentColor``: placed inline in a page, it takes the page's text
colour, so it stays legible in light and dark themes alike.  Lost segments are
dashed and end in a cross, so the drawing does not rely on colour at all.

This module is pure: it turns values into text.

>>> from tcpref.scenarios import run_scenario
>>> svg = sequence_diagram(run_scenario("handshake-and-teardown"))
>>> svg.startswith("<svg") and svg.count("<line") >= 9
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from tcpref.sim import Run
from tcpref.states import TRANSITIONS, Event, State
from tcpref.trace import TraceEntry

__all__ = ["capture_diagram", "sequence_diagram", "state_diagram"]

_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
_CHAR_WIDTH = 7.2  # an estimate for 12 px monospace text


def _svg(width: float, height: float, title: str, body: Sequence[str]) -> str:
    # role="img" and <title> let screen readers announce the diagram.
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tcpref-diagram" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
        f'style="max-width: {width:.0f}px; color: inherit" '
        f'font-family="{_FONT}" font-size="12" fill="currentColor" stroke="currentColor">'
    )
    defs = (
        "<defs>"
        '<marker id="tcpref-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" stroke="none" fill="currentColor"/></marker>'
        "</defs>"
    )
    return "".join([head, f"<title>{escape(title)}</title>", defs, *body, "</svg>"])


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" stroke="none"{extra}>'
        f"{escape(text)}</text>"
    )


# -- sequence diagrams -------------------------------------------------------------------


def _rows(trace: Sequence[TraceEntry]) -> tuple[list[int], list[float | None]]:
    """Give each entry its own row, and find the row where each segment arrives.

    A segment arrives at the row of the first later entry that happens at or after
    its arrival time (or just below the last row), and always at least a little
    below the row it left from.
    """
    send_rows = list(range(len(trace)))
    arrival_rows: list[float | None] = []
    for index, entry in enumerate(trace):
        if entry.arrival is None:
            arrival_rows.append(None)
            continue
        later = (row for row in range(index + 1, len(trace)) if trace[row].time >= entry.arrival)
        arrival_rows.append(float(next(later, len(trace))))
    return send_rows, arrival_rows


def sequence_diagram(run: Run, *, title: str = "", relative: bool = True) -> str:
    """Draw a run as a sequence diagram: the client on the left, the server on the right.

    Time flows down; each distinct moment gets a row, so long waits (a one-second
    retransmission timeout, 60 s of TIME_WAIT) take no more room than short ones,
    and the time is written at the left of every row where something is sent.
    Each segment is an arrow from its sender at the moment it left to the
    receiver at the moment it arrived, labelled as the trace prints it.  A lost
    segment is a dashed arrow that stops half-way at a cross.  Each side's state
    is written beside its line whenever it changes.

    Args:
        run: A simulator run.
        title: The diagram's accessible title (its ``<title>``).
        relative: Label sequence numbers relative to each side's ISN.

    Raises:
        TypeError: if ``run`` is not a :class:`tcpref.sim.Run`.
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be a tcpref.sim.Run, not {run!r}")
    trace = run.trace
    send_rows, arrival_rows = _rows(trace)
    label_width = max(
        (
            len(_label(entry, run, relative)) + len(entry.note) + 4
            for entry in trace
            if entry.segment
        ),
        default=20,
    )
    gap = max(360.0, label_width * _CHAR_WIDTH + 60)
    left, top, row_height = 190.0, 60.0, 30.0
    right = left + gap
    width = right + 170
    height = top + row_height * (len(trace) + 1.5)
    body = [
        _text(left, 24, "client", "middle", ' font-weight="bold"'),
        _text(right, 24, "server", "middle", ' font-weight="bold"'),
        f'<line x1="{left}" y1="34" x2="{left}" y2="{height - 10:.0f}" stroke-width="1.5"/>',
        f'<line x1="{right}" y1="34" x2="{right}" y2="{height - 10:.0f}" stroke-width="1.5"/>',
    ]
    states: dict[str, State | None] = {"client": None, "server": None}
    # One state label per side and height: when a side changes state twice at
    # one moment, the later state is the one worth reading.
    state_labels: dict[tuple[str, float], str] = {}
    previous_time = None
    for index, entry in enumerate(trace):
        y0 = top + row_height * send_rows[index]
        if entry.time != previous_time:
            body.append(_text(8, y0 + 4, f"{entry.time:.3f} s", extra=' opacity="0.75"'))
            previous_time = entry.time
        arrival_row = arrival_rows[index]
        y1 = y0 if arrival_row is None else top + row_height * max(arrival_row, index + 0.6)
        if entry.segment is None:
            x = left if entry.sender == "client" else right
            anchor = "end" if entry.sender == "client" else "start"
            offset = -10 if entry.sender == "client" else 10
            body.append(_text(x + offset, y0 + 4, entry.note, anchor, ' font-style="italic"'))
        else:
            body.extend(_arrow(entry, run, relative, y0, y1, left, right, row_height))
        for side, state in (("client", entry.client_state), ("server", entry.server_state)):
            if state is not None and state != states[side]:
                states[side] = state
                state_labels[side, y1] = state.name
    for (side, y), name in state_labels.items():
        if side == "client":
            body.append(_text(left - 10, y + 14, name, "end", _STATE_STYLE))
        else:
            body.append(_text(right + 10, y + 14, name, "start", _STATE_STYLE))
    return _svg(width, height, title or "sequence diagram", body)


_STATE_STYLE = ' font-weight="bold" font-size="11" opacity="0.85"'


def capture_diagram(
    entries: Sequence[TraceEntry],
    client_isn: int | None,
    server_isn: int | None,
    *,
    title: str = "",
) -> str:
    """Draw captured segments (:func:`tcpref.capture.capture_exchange`'s) the same way.

    A capture knows no states and sees each segment once, so every arrow simply
    runs down to the next row.  Numbers are relative when both ISNs are known.

    Raises:
        TypeError: if an entry is not a :class:`tcpref.trace.TraceEntry`.
    """
    for entry in entries:
        if not isinstance(entry, TraceEntry):
            raise TypeError(f"entries must hold TraceEntry records, not {entry!r}")
    known = client_isn is not None and server_isn is not None
    captured = Run(
        trace=tuple(entries),
        client_isn=client_isn or 0,
        server_isn=server_isn or 0,
        received={},
        errors={},
        final_states={},
        ended_at=max((entry.time for entry in entries), default=0.0),
    )
    return sequence_diagram(captured, title=title or "captured segments", relative=known)


def _label(entry: TraceEntry, run: Run, relative: bool) -> str:
    assert entry.segment is not None
    if not relative:
        return entry.segment.describe()
    if entry.sender == "client":
        return entry.segment.describe(run.client_isn, run.server_isn)
    return entry.segment.describe(run.server_isn, run.client_isn)


def _arrow(
    entry: TraceEntry,
    run: Run,
    relative: bool,
    y0: float,
    y1: float,
    left: float,
    right: float,
    row_height: float,
) -> list[str]:
    start_x, end_x = (left, right) if entry.sender == "client" else (right, left)
    text = _label(entry, run, relative)
    if entry.arrival is None:
        y1 = y0 + row_height * 0.8
        stop_x = start_x + (end_x - start_x) * 0.55
        cross = 6
        parts = [
            f'<line x1="{start_x}" y1="{y0:.1f}" x2="{stop_x:.1f}" y2="{y1:.1f}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>',
            f'<path d="M {stop_x - cross:.1f} {y1 - cross:.1f} L {stop_x + cross:.1f} '
            f"{y1 + cross:.1f} M {stop_x - cross:.1f} {y1 + cross:.1f} L "
            f'{stop_x + cross:.1f} {y1 - cross:.1f}" stroke-width="2" fill="none"/>',
        ]
    else:
        parts = [
            f'<line x1="{start_x}" y1="{y0:.1f}" x2="{end_x}" y2="{y1:.1f}" '
            'stroke-width="1.5" marker-end="url(#tcpref-arrow)"/>'
        ]
    # The label sits just above the middle of the line, centred between the two
    # lifelines (which are far enough apart for the longest label): segments sent
    # one after another start on different rows, so their labels do not collide.
    label_x = (left + right) / 2
    label_y = (y0 + y1) / 2 - 5
    label = text + (f"  ({entry.note})" if entry.note else "")
    parts.append(_text(label_x, label_y, label, "middle", _HALO))
    return parts


# The label gets a halo in the page's background colour, so it stays readable
# where it crosses a line; furo defines the variable in both themes.
_HALO = (
    ' style="paint-order: stroke; stroke: var(--color-background-primary, white); '
    'stroke-width: 4px; stroke-linejoin: round"'
)


# -- the state diagram -------------------------------------------------------------------

#: Where each state sits on a grid (column, row), following RFC 9293 Figure 5's
#: arrangement.  This is layout only: every arrow comes from the table.
_GRID: dict[State, tuple[float, float]] = {
    State.CLOSED: (1.0, 0.0),
    State.LISTEN: (1.0, 1.0),
    State.SYN_RECEIVED: (0.0, 2.0),
    State.SYN_SENT: (2.0, 2.0),
    State.ESTABLISHED: (1.0, 3.0),
    State.FIN_WAIT_1: (0.0, 4.0),
    State.CLOSE_WAIT: (2.0, 4.0),
    State.FIN_WAIT_2: (0.0, 5.0),
    State.CLOSING: (1.0, 5.0),
    State.LAST_ACK: (2.0, 5.0),
    State.TIME_WAIT: (1.0, 6.0),
}
#: Transitions into CLOSED from the closing half of the diagram go to a second
#: CLOSED box at the bottom, as in the RFC's figure, instead of crossing the page.
_BOTTOM_CLOSED = (1.0, 7.2)

_EVENT_LABELS: dict[Event, str] = {
    Event.PASSIVE_OPEN: "listen",
    Event.ACTIVE_OPEN: "connect",
    Event.CLOSE: "close",
    Event.SHUTDOWN_WRITE: "shutdown",
    Event.RECV_SYN: "rcv SYN",
    Event.RECV_SYN_ACK: "rcv SYN+ACK",
    Event.RECV_ACK_OF_SYN: "rcv ACK of SYN",
    Event.RECV_ACK_OF_FIN: "rcv ACK of FIN",
    Event.RECV_FIN: "rcv FIN",
    Event.RECV_FIN_ACK: "rcv FIN+ACK",
    Event.RECV_RST: "rcv RST",
    Event.RETRANSMISSION_LIMIT: "retries exhausted",
    Event.TIME_WAIT_EXPIRY: "2 MSL timeout",
    Event.FIN_WAIT_2_TIMEOUT: "tcp_fin_timeout",
}


def state_diagram(*, include: Sequence[Event] | None = None) -> str:
    """Draw the state table as a diagram: one box per state, one arrow per move.

    Transitions that share a source and a target share an arrow, labelled with
    each event and what it sends (``rcv FIN / ACK``).  A transition that keeps the
    state (such as a FIN received again in TIME_WAIT) is listed under its box.

    Args:
        include: Draw only these events' transitions (all if ``None``); the
            site draws the RST and timer transitions separately, so that the main
            diagram stays readable.

    Raises:
        TypeError: if ``include`` holds something that is not a :class:`tcpref.states.Event`.
    """
    chosen = set(Event) if include is None else set(include)
    for event in chosen:
        if not isinstance(event, Event):
            raise TypeError(f"include must hold Event values, not {event!r}")
    column_width, row_height, box_width, box_height = 300.0, 118.0, 150.0, 34.0
    margin_x, margin_y = 110.0, 30.0

    def centre(place: tuple[float, float]) -> tuple[float, float]:
        column, row = place
        return margin_x + column * column_width + box_width / 2, margin_y + row * row_height

    def place_of(source: State, target: State) -> tuple[float, float]:
        if target is State.CLOSED and _GRID[source][1] >= _GRID[State.ESTABLISHED][1]:
            return _BOTTOM_CLOSED
        return _GRID[target]

    edges: dict[tuple[tuple[float, float], tuple[float, float]], list[str]] = {}
    loops: dict[State, list[str]] = {}
    for source, events in TRANSITIONS.items():
        for event, transition in events.items():
            if event not in chosen:
                continue
            label = _EVENT_LABELS[event] + (f" / {transition.send}" if transition.send else "")
            targets = [transition.new_state]
            if transition.new_state_if_active is not None:
                targets = [transition.new_state, transition.new_state_if_active]
                label += " (passive | active)"
            for target in targets:
                if target is source:
                    loops.setdefault(source, []).append(label)
                else:
                    key = (_GRID[source], place_of(source, target))
                    edges.setdefault(key, []).append(label)
    width = margin_x * 2 + column_width * 2 + box_width
    height = margin_y * 2 + row_height * _BOTTOM_CLOSED[1] + box_height
    body: list[str] = []
    for (start, end), labels in edges.items():
        body.extend(_state_edge(centre(start), centre(end), labels, box_width, box_height))
    boxes = [(state.name, _GRID[state], loops.get(state, [])) for state in _GRID]
    if any(end == _BOTTOM_CLOSED for _, end in edges):
        boxes.append((State.CLOSED.name, _BOTTOM_CLOSED, []))
    for name, place, loop_labels in boxes:
        x, y = centre(place)
        body.append(
            f'<rect x="{x - box_width / 2:.1f}" y="{y - box_height / 2:.1f}" '
            f'width="{box_width}" height="{box_height}" rx="8" stroke-width="1.5" '
            'style="fill: var(--color-background-primary, white)"/>'
        )
        body.append(_text(x, y + 4, name, "middle", ' font-weight="bold"'))
        for index, label in enumerate(loop_labels):
            body.append(
                _text(x, y + box_height / 2 + 14 + 13 * index, f"↻ {label}", "middle", _SMALL)
            )
    return _svg(width, height, "TCP state diagram, drawn from tcpref.states.TRANSITIONS", body)


_SMALL = ' font-size="11"' + _HALO


def _state_edge(
    start: tuple[float, float],
    end: tuple[float, float],
    labels: list[str],
    box_width: float,
    box_height: float,
) -> list[str]:
    (x0, y0), (x1, y1) = start, end
    # Leave and enter at the box edges, and bend the arrow a little to the right
    # of its direction, so that the two directions between a pair do not overlap.
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    sx, sy = _box_exit(x0, y0, ux, uy, box_width, box_height)
    ex, ey = _box_exit(x1, y1, -ux, -uy, box_width, box_height)
    bend = 22.0
    cx, cy = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
    parts = [
        f'<path d="M {sx:.1f} {sy:.1f} Q {cx:.1f} {cy:.1f} {ex:.1f} {ey:.1f}" fill="none" '
        'stroke-width="1.2" marker-end="url(#tcpref-arrow)"/>'
    ]
    # The curve's midpoint is halfway between the chord's midpoint and the control point.
    mx = ((sx + ex) / 2 + cx) / 2
    my = ((sy + ey) / 2 + cy) / 2
    # Mostly vertical arrows put their labels beside the bend, not across the line.
    anchor = "middle"
    if abs(uy) > 0.8:
        anchor = "end" if -uy * bend < 0 else "start"
        mx += -4 if anchor == "end" else 4
    for index, label in enumerate(labels):
        offset = (index - (len(labels) - 1) / 2) * 13
        parts.append(_text(mx, my + 4 + offset, label, anchor, _SMALL))
    return parts


def _box_exit(
    x: float, y: float, ux: float, uy: float, box_width: float, box_height: float
) -> tuple[float, float]:
    """Where a ray from a box's centre, in direction (ux, uy), leaves the box."""
    scale_x = (box_width / 2) / abs(ux) if ux else math.inf
    scale_y = (box_height / 2) / abs(uy) if uy else math.inf
    scale = min(scale_x, scale_y) + 3
    return x + ux * scale, y + uy * scale
