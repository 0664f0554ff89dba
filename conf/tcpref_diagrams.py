"""A Sphinx extension that draws the model's diagrams while the site is built.

Two directives, both drawn by :mod:`tcpref.diagrams` from the code itself:

* ``sequence-diagram``: its argument names a scenario of :mod:`tcpref.scenarios`;
  the simulator runs it and the trace becomes a sequence diagram.  The option
  ``:absolute:`` labels absolute sequence numbers instead of relative ones.
* ``captured-sequence-diagram``: its argument names a live exchange
  (``handshake-and-teardown``) that the build runs on loopback while capturing
  it, in a private network namespace (:func:`tcpref.netns.run`) where any user
  holds the CAP_NET_RAW a capture needs.  A build where no such namespace can be
  made shows, in place of the diagram, one sentence saying why.
* ``state-diagram``: the state table.  ``:events: main`` (the default) leaves out
  resets and retransmission limits, ``:events: failures`` draws only those, and
  ``:events: all`` draws everything.

The SVG goes inline into the HTML page, so it follows the page's theme.  Other
builders (doctest, linkcheck) get nothing: the diagrams hold no examples.
"""

from __future__ import annotations

from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from tcpref import netns
from tcpref.demos.exchanges import handshake_and_teardown
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


class CapturedSequenceDiagram(SphinxDirective):
    """``captured-sequence-diagram``: capture a live exchange and draw it."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Run and capture the exchange, or say why it cannot be captured here.

        Raises:
            ExtensionError: (as a directive error) if there is no such exchange.
        """
        name = self.arguments[0]
        if name not in _LIVE_EXCHANGES:
            raise self.error(f"no live exchange {name!r}; there are {sorted(_LIVE_EXCHANGES)}")
        unavailable = netns.unavailable_reason()
        if unavailable is not None:
            reason = (
                "This build could not draw the captured version of this exchange, "
                f"which is captured on loopback in a private network namespace: {unavailable}."
            )
            return [nodes.note("", nodes.paragraph("", reason))]
        from tcpref.capture import capture_exchange

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
        return _figure(svg, caption, f"captured-{name}")


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


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the two directives."""
    app.add_directive("sequence-diagram", SequenceDiagram)
    app.add_directive("state-diagram", StateDiagram)
    app.add_directive("captured-sequence-diagram", CapturedSequenceDiagram)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
