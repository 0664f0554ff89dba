"""A Sphinx extension that draws the model's diagrams while the site is built.

Two directives, both drawn by :mod:`tcpref.diagrams` from the code itself:

* ``sequence-diagram``: its argument names a scenario of :mod:`tcpref.scenarios`;
  the simulator runs it and the trace becomes a sequence diagram.  The option
  ``:absolute:`` labels absolute sequence numbers instead of relative ones.
* ``captured-sequence-diagram``: its argument names a live exchange
  (``handshake-and-teardown``, or a loss scenario of :mod:`tcpref.demos.losses`
  such as ``lost-teardown-1``) that the build runs on loopback while capturing
  it, in a private network namespace (:func:`tcpref.netns.run`) where any user
  holds the CAP_NET_RAW a capture needs (the loss scenarios all run once, side
  by side, the first time a page asks for one of them).  The HTML build also saves the captured
  packets as a libpcap file beside the page (``handshake-and-teardown.pcap``), with
  a link to download it and open it in Wireshark.  A build where no such namespace
  can be made shows, in place of the diagram and the link, one sentence saying why.
* ``state-diagram``: the state table.  ``:events: main`` (the default) leaves out
  resets and retransmission limits, ``:events: failures`` draws only those, and
  ``:events: all`` draws everything.

The SVG goes inline into the HTML page, so it follows the page's theme.  Other
builders (doctest, linkcheck) get nothing: the diagrams hold no examples.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from tcpref import netns
from tcpref.demos.exchanges import handshake_and_teardown
from tcpref.demos.losses import LIVE_SCENARIOS, LiveRun, run_live_many
from tcpref.diagrams import capture_diagram, sequence_diagram, state_diagram
from tcpref.scenarios import SCENARIOS, run_scenario
from tcpref.states import Event

_FAILURE_EVENTS = (Event.RECV_RST, Event.RETRANSMISSION_LIMIT)
_EVENT_SETS = {
    "main": [event for event in Event if event not in _FAILURE_EVENTS],
    "failures": list(_FAILURE_EVENTS),
    "all": list(Event),
}


def _figure(svg: str, caption: str, name: str) -> list[nodes.Node]:
    container = nodes.container(classes=["tcpref-figure"], ids=[name])
    container += nodes.raw("", svg, format="html")
    container += nodes.paragraph("", caption, classes=["tcpref-caption"])
    return [container]


class SequenceDiagram(SphinxDirective):
    """``sequence-diagram``: draw a scenario's trace."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"absolute": directives.flag}

    def run(self) -> list[nodes.Node]:
        """Run the named scenario and return its diagram.

        Raises:
            ExtensionError: (as a directive error) if there is no such scenario.
        """
        name = self.arguments[0]
        if name not in SCENARIOS:
            raise self.error(f"no scenario {name!r}; the scenarios are {sorted(SCENARIOS)}")
        scenario = SCENARIOS[name]
        relative = "absolute" not in self.options
        svg = sequence_diagram(run_scenario(name), title=scenario.title, relative=relative)
        caption = f"{scenario.title} (simulated: tcpref.scenarios, {name!r})"
        return _figure(svg, caption, f"diagram-{name}")


_LIVE_EXCHANGES = {"handshake-and-teardown": (handshake_and_teardown, 7)}


class PcapFile(nodes.General, nodes.Element):
    """A capture to save beside the page: ``filename`` and its bytes, ``data``.

    The directive that captures runs while pages are read, but files belong in the
    output, which is written later and may be written again from cached doctrees:
    so the bytes travel in the doctree, and :func:`_save_pcap_files` writes them
    when the page is written.
    """


def _skip_node(translator: Any, node: nodes.Element) -> None:
    raise nodes.SkipNode


def _download_link(filename: str) -> nodes.paragraph:
    """The sentence under the diagram; ``filename`` sits beside the page's HTML file."""
    link = nodes.reference("", "Download this capture (pcap)", refuri=filename)
    return nodes.paragraph(
        "", "", link, nodes.Text(" to open it in Wireshark."), classes=["tcpref-caption"]
    )


class CapturedSequenceDiagram(SphinxDirective):
    """``captured-sequence-diagram``: capture a live exchange and draw it."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Run and capture the exchange, or say why it cannot be captured here.

        Raises:
            ExtensionError: (as a directive error) if there is no such exchange.
        """
        name = self.arguments[0]
        if name not in _LIVE_EXCHANGES and name not in LIVE_SCENARIOS:
            known = sorted([*_LIVE_EXCHANGES, *LIVE_SCENARIOS])
            raise self.error(f"no live exchange {name!r}; there are {known}")
        unavailable = netns.unavailable_reason()
        if unavailable is not None:
            reason = (
                "This build could not draw the captured version of this exchange (nor offer "
                "its pcap file to download), which is captured on loopback in a private "
                f"network namespace: {unavailable}."
            )
            return [nodes.note("", nodes.paragraph("", reason))]
        if name in LIVE_SCENARIOS:
            return self._lost_segment(name)
        from tcpref.capture import capture_exchange, pcap_bytes

        script, count = _LIVE_EXCHANGES[name]
        exchange = netns.run(lambda: capture_exchange(script, count=count, timeout=3.0))
        svg = capture_diagram(
            exchange.entries,
            exchange.client_isn,
            exchange.server_isn,
            title=f"{name}, captured on loopback",
        )
        caption = (
            f"The same exchange on the live kernel, captured on loopback while this "
            f"site was built ({len(exchange.entries)} segments)."
        )
        (figure,) = _figure(svg, caption, f"captured-{name}")
        filename = f"{name}.pcap"
        figure += _download_link(filename)
        figure += PcapFile("", filename=filename, data=pcap_bytes(exchange.packets))
        return [figure]

    def _lost_segment(self, name: str) -> list[nodes.Node]:
        """Draw a loss scenario as the kernel played it (:mod:`tcpref.demos.losses`)."""
        live = _live_loss_runs()[name]
        svg = capture_diagram(
            live.entries,
            live.client_isn,
            live.server_isn,
            title=f"{name}, on the live kernel",
        )
        caption = (
            f"The same loss on the live kernel, while this site was built: a socket filter "
            f"dropped the segment, and loopback carried the rest ({len(live.entries)} "
            "segments captured)."
        )
        return _figure(svg, caption, f"captured-{name}")


#: The live loss runs of this build, made once, side by side, when a page first asks.
_LIVE_LOSS_RUNS: dict[str, LiveRun] = {}


def _live_loss_runs() -> dict[str, LiveRun]:
    if not _LIVE_LOSS_RUNS:
        _LIVE_LOSS_RUNS.update(run_live_many(LIVE_SCENARIOS))
    return _LIVE_LOSS_RUNS


class StateDiagram(SphinxDirective):
    """``state-diagram``: draw the state table."""

    option_spec: ClassVar[dict[str, Any]] = {
        "events": lambda text: directives.choice(text, tuple(_EVENT_SETS))
    }

    def run(self) -> list[nodes.Node]:
        """Return the state diagram for the chosen set of events."""
        which = self.options.get("events", "main")
        svg = state_diagram(include=_EVENT_SETS[which])
        captions = {
            "main": "The state diagram, drawn from tcpref.states.TRANSITIONS "
            "(resets and retransmission limits drawn separately).",
            "failures": "Resets and retransmission limits, drawn from the same table.",
            "all": "Every transition of tcpref.states.TRANSITIONS.",
        }
        return _figure(svg, captions[which], f"state-diagram-{which}")


def _save_pcap_files(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Write each capture of a page beside the page's HTML file, then drop its node.

    Beside the page, so that the link is the bare file name under any HTML builder
    (``concepts/handshake.html`` or ``concepts/handshake/index.html``).  Other
    builders write no files: their output has no link to follow.
    """
    folder = posixpath.dirname(app.builder.get_target_uri(docname))
    for node in list(doctree.findall(PcapFile)):
        if app.builder.format == "html":
            path = Path(app.outdir, folder, node["filename"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(node["data"])
        node.parent.remove(node)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the three directives, and the saving of captures beside their pages."""
    app.add_directive("sequence-diagram", SequenceDiagram)
    app.add_directive("state-diagram", StateDiagram)
    app.add_directive("captured-sequence-diagram", CapturedSequenceDiagram)
    skip = (_skip_node, None)
    app.add_node(PcapFile, html=skip, latex=skip, text=skip, man=skip, texinfo=skip)
    app.connect("doctree-resolved", _save_pcap_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
