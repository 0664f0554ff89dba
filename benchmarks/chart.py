"""Draw the server benchmark results as an SVG bar chart, with no plotting library.

One panel per load; in each, one bar per server, scaled to the panel's fastest.
tcpref's models are blue, the standard library's grey, the raw loop green.  The
chart carries its own light background, so it reads the same in light and dark
themes.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

BAR = 16
GAP = 4
LABEL_WIDTH = 190
PLOT_WIDTH = 420
VALUE_WIDTH = 90
PANEL_TITLE = 26
COLOURS = {"tcpref": "#2b6cb0", "raw": "#2f855a", "other": "#8a8f98"}


def _colour(server: str) -> str:
    if server.startswith("tcpref"):
        return COLOURS["tcpref"]
    return COLOURS["raw"] if server.startswith("raw") else COLOURS["other"]


def render(record: dict[str, Any]) -> str:
    """Return the SVG text for a results record written by bench_servers.py."""
    results: dict[str, dict[str, float]] = record["results"]
    loads = [load for load in next(iter(results.values())) if not load.startswith("CPU")]
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH + 20
    parts: list[str] = []
    y = 40
    for load in loads:
        rows = [(name, row[load]) for name, row in results.items() if load in row]
        top = max(value for _, value in rows)
        parts.append(f'<text x="10" y="{y + 16}" class="title">{escape(load)}</text>')
        y += PANEL_TITLE
        for name, value in rows:
            length = max(1.0, PLOT_WIDTH * value / top)
            parts.append(
                f'<text x="{LABEL_WIDTH - 8}" y="{y + 12}" class="label">{escape(name)}</text>'
            )
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR}" '
                f'fill="{_colour(name)}"><title>{escape(name)}: {value:,.0f}</title></rect>'
            )
            value_x = LABEL_WIDTH + length + 6
            parts.append(f'<text x="{value_x:.1f}" y="{y + 12}" class="value">{value:,.0f}</text>')
            y += BAR + GAP
        y += 12
    captions = [f"Measured on {record['machine']}; best of {record.get('rounds', 1)} rounds."]
    if "cpus" in record:  # recorded since the benchmark pins the load and the servers
        captions.append(f"CPUs: {record['cpus']}.")
    height = y + 8 + 16 * len(captions)
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" '
            'aria-label="Echo server benchmark: tcpref against the standard library">',
            "<style>text{font-family:sans-serif;font-size:12px;fill:#1a202c}"
            ".title{font-weight:bold;font-size:13px}.label{text-anchor:end}</style>",
            f'<rect width="{width}" height="{height}" rx="8" fill="#ffffff" stroke="#cbd5e0"/>',
            '<text x="10" y="24" class="title">Echo servers on loopback (higher is better)</text>',
            *parts,
            *(
                f'<text x="10" y="{height - 10 - 16 * (len(captions) - 1 - number)}">'
                f"{escape(caption)}</text>"
                for number, caption in enumerate(captions)
            ),
            "</svg>",
            "",
        ]
    )


def write_chart(record: dict[str, Any], path: Path) -> None:
    """Write the chart for ``record`` to ``path``."""
    path.write_text(render(record), encoding="utf-8")
