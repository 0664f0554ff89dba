"""Named simulator runs: the scenarios the site's pages and diagrams show.

Each scenario is a small function that calls :func:`tcpref.sim.simulate` with
the endpoints, link and loss plan it needs, and returns the run.  Pages print
their traces; the documentation's ``sequence-diagram`` directive draws them by
name.  Like the simulator, this module is pure.

>>> sorted(SCENARIOS)[:3]
['half-close', 'handshake-and-teardown', 'lost-handshake-1']
>>> run = run_scenario("three-segment-teardown")
>>> print(run.table())  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
   time  dir     segment ...
  0.120  C -> S  FIN|ACK seq=1 ack=1 win=65535       FIN_WAIT_1    LAST_ACK
  0.130  C <- S  FIN|ACK seq=1 ack=2 win=65535       TIME_WAIT     LAST_ACK
  0.140  C -> S  ACK seq=2 ack=2 win=65535           TIME_WAIT     CLOSED
 60.140  C       TIME_WAIT ends                      CLOSED        CLOSED
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tcpref.segment import Flags, Segment
from tcpref.sim import Delay, Drop, Endpoint, Inject, Run, simulate

__all__ = ["SCENARIOS", "Scenario", "client", "run_scenario", "server"]

CLIENT_PORT = 40000
SERVER_PORT = 8000
CLIENT_ISN = 100
SERVER_ISN = 300


def client(**changes: object) -> Endpoint:
    """The scenarios' client: port 40000, ISN 100, closing 0.1 s after it connects.

    Keyword arguments replace the fields of :class:`tcpref.sim.Endpoint`.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if a field is out of range.
    """
    fields: dict[str, object] = {"port": CLIENT_PORT, "isn": CLIENT_ISN, "close_after": 0.1}
    fields.update(changes)
    return Endpoint(**fields)  # type: ignore[arg-type]


def server(**changes: object) -> Endpoint:
    """The scenarios' server: port 8000, ISN 300, listening, closing 0.5 s after EOF.

    Half a second is long enough for its ACK of the client's FIN to leave on its
    own, so a teardown shows four segments.

    Raises:
        TypeError: if a field has the wrong type.
        ValueError: if a field is out of range.
    """
    fields: dict[str, object] = {
        "port": SERVER_PORT,
        "isn": SERVER_ISN,
        "opens": "passive",
        "close_on_eof": 0.5,
    }
    fields.update(changes)
    return Endpoint(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Scenario:
    """A named run: a title for pages and diagrams, and the function that runs it."""

    title: str
    build: Callable[[], Run]


def _handshake_and_teardown() -> Run:
    return simulate(client(), server())


def _three_segment_teardown() -> Run:
    # The server closes as soon as it reads end-of-file: its FIN carries the ACK.
    return simulate(client(), server(close_on_eof=0))


def _simultaneous_open() -> Run:
    # Both ends connect() to each other at the same moment; the SYNs cross.
    return simulate(client(close_after=None), server(opens="active", close_on_eof=None))


def _simultaneous_close() -> Run:
    return simulate(client(close_after=None, close_at=0.2), server(close_on_eof=None, close_at=0.2))


def _lost(nth: int) -> Callable[[], Run]:
    def build() -> Run:
        return simulate(client(), server(), faults=[Drop(nth)])

    return build


def _lost_handshake_3() -> Run:
    # The client sends nothing after connecting, so only the server can notice.
    return simulate(client(close_after=3.0), server(), faults=[Drop(3)])


def _syn_never_answered() -> Run:
    return simulate(client(), server(), faults=[Drop(1, flags=Flags.SYN, count=None)])


def _sliding_window() -> Run:
    # The worked example of the course note with C code (002 in the list of
    # docs/reference/errata.md): the client announces a 4096-byte window and MSS
    # 1460, the server 6144 and 1024.  The client writes 8 KiB and closes; the
    # server's application reads 2 KiB at a time, with a pause after two reads.
    return simulate(
        Endpoint(
            port=CLIENT_PORT, isn=0, mss=1460, buffer=4096, write=bytes(8192), close_after=0.03
        ),
        Endpoint(
            port=SERVER_PORT,
            isn=0,
            mss=1024,
            buffer=6144,
            opens="passive",
            read_size=2048,
            read_at=(0.045, 0.05, 0.075, 0.08, 0.085),
            close_on_eof=0,
        ),
    )


def _is_window_update(segment: Segment) -> bool:
    return segment.window > 0 and segment.ack != 1


def _zero_window() -> Run:
    # The server's application sleeps for 3 s; its window closes.  When it reads,
    # the window update is lost, and only the client's probes can find out.
    return simulate(
        Endpoint(port=CLIENT_PORT, isn=0, write=bytes(8192), close_after=4.0),
        Endpoint(port=SERVER_PORT, isn=0, mss=1024, buffer=4096, opens="passive", read_from=3.0),
        faults=[Drop(1, sender="server", flags=Flags.ACK, when=_is_window_update)],
    )


def _stale_syn() -> Run:
    # RFC 9293 Figure 8 (Figure 9 in RFC 793): an old SYN (seq 90) arrives before
    # the new one (seq 100).
    old = Segment(CLIENT_PORT, SERVER_PORT, seq=90, ack=0, flags=Flags.SYN, window=65535)
    return simulate(
        client(close_after=None),
        server(close_on_eof=None),
        faults=[Delay(1, sender="client", flags=Flags.SYN, by=0.03)],
        inject=[Inject(0.0, "client", old)],
    )


def _stale_data(client_isn: int) -> Callable[[], Run]:
    # A data segment of an old connection (client ISN 1000, server ISN 5000) arrives
    # in a new connection between the same ports.
    def build() -> Run:
        old = Segment(
            CLIENT_PORT,
            SERVER_PORT,
            seq=1001,
            ack=5001,
            flags=Flags.PSH | Flags.ACK,
            window=65535,
            payload=b"OLD DATA",
        )
        return simulate(
            Endpoint(port=CLIENT_PORT, isn=client_isn, write=b"new data", write_after=0.02),
            Endpoint(port=SERVER_PORT, isn=5000, opens="passive", close_on_eof=None),
            inject=[Inject(0.03, "client", old)],
            until=1.0,
        )

    return build


def _half_close() -> Run:
    # The client sends a request and shuts down writing; the server replies to
    # end-of-file and closes; the client reads the reply after its own FIN.
    return simulate(
        client(close_after=None, write=b"ping", shutdown_after=0.0),
        server(reply_on_eof=b"pong", close_on_eof=0),
    )


#: Every scenario, by name.
SCENARIOS: dict[str, Scenario] = {
    "handshake-and-teardown": Scenario(
        "A normal connection: handshake, then a four-segment teardown", _handshake_and_teardown
    ),
    "three-segment-teardown": Scenario(
        "The server closes at once: its FIN carries the ACK", _three_segment_teardown
    ),
    "simultaneous-open": Scenario("Both ends connect at the same moment", _simultaneous_open),
    "simultaneous-close": Scenario("Both ends close at the same moment", _simultaneous_close),
    "lost-handshake-1": Scenario("The SYN is lost", _lost(1)),
    "lost-handshake-2": Scenario("The SYN+ACK is lost", _lost(2)),
    "lost-handshake-3": Scenario("The handshake's ACK is lost", _lost_handshake_3),
    "syn-never-answered": Scenario("Every SYN is lost: connect() times out", _syn_never_answered),
    "lost-teardown-1": Scenario("The client's FIN is lost", _lost(4)),
    "lost-teardown-2": Scenario("The server's ACK of that FIN is lost", _lost(5)),
    "lost-teardown-3": Scenario("The server's FIN is lost", _lost(6)),
    "lost-teardown-4": Scenario("The client's last ACK is lost", _lost(7)),
    "sliding-window": Scenario("The course notes' sliding-window example", _sliding_window),
    "zero-window": Scenario("A zero window, a lost update, and the probe", _zero_window),
    "stale-syn": Scenario("An old duplicate SYN is answered with RST", _stale_syn),
    "stale-data-same-isn": Scenario(
        "An old segment is accepted when the ISN is reused", _stale_data(1000)
    ),
    "stale-data-new-isn": Scenario(
        "An old segment is rejected when the ISNs differ", _stale_data(3_000_000_000)
    ),
    "half-close": Scenario("The client half-closes; the server replies, then closes", _half_close),
}


def run_scenario(name: str) -> Run:
    """Run the scenario called ``name``.

    Raises:
        TypeError: if ``name`` is not a str.
        KeyError: if there is no such scenario; the message lists the names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {name!r}")
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; the scenarios are {sorted(SCENARIOS)}") from None
    return scenario.build()
