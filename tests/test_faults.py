"""tcpref.faults: the loss plan's socket filter, built (pure) and carried out (live)."""

from __future__ import annotations

import socket
import struct

import pytest

from tcpref import faults
from tcpref.segment import Flags, Segment
from tcpref.sim import Delay, Drop

SYN, ACK, FIN = Flags.SYN, Flags.ACK, Flags.FIN


def _segment(flags: Flags) -> Segment:
    return Segment(40000, 8000, seq=1, ack=1, flags=flags, window=1000)


def test_drop_program_is_four_instructions_that_compare_the_flag_byte() -> None:
    program = faults.drop_program(FIN | ACK)
    assert [(i.code, i.jt, i.jf, i.k) for i in program] == [
        (0x30, 0, 0, 13),
        (0x15, 0, 1, 0x11),
        (0x06, 0, 0, 0),
        (0x06, 0, 0, 0xFFFFFFFF),
    ]
    assert program[1].pack() == struct.pack("HBBI", 0x15, 0, 1, 0x11)


def test_describe_prints_one_commented_instruction_a_line() -> None:
    lines = faults.describe(faults.drop_program(SYN)).splitlines()
    assert lines == [
        "0: ldb [13]          A = the TCP header's flag byte",
        "1: jeq #0x02, 2, 3   exactly SYN? go on to drop it; otherwise keep it",
        "2: ret #0            drop: the socket never sees this segment",
        "3: ret #0xffffffff   keep the whole segment",
    ]


@pytest.mark.parametrize(
    ("flags", "error", "message"),
    [(Flags(0), ValueError, "at least one flag"), (0x02, TypeError, "must be a Flags value")],
)
def test_drop_program_rejects_flags_that_name_nothing(
    flags: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        faults.drop_program(flags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (Drop(1, flags=SYN), r"Drop\(nth=1.*name the sender"),
        (Drop(1, sender="client"), r"name the exact flags"),
        (Drop(1, sender="client", flags=Flags(0)), r"name the exact flags"),
        (Drop(1, sender="client", flags=SYN, when=lambda s: True), r"when= predicate"),
        (Delay(1, sender="client", flags=SYN, by=0.5), r"not delay it"),
    ],
)
def test_check_plan_names_a_plan_the_kernel_cannot_carry_out(plan: Drop, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        faults.check_plan(plan)


def test_check_plan_rejects_what_is_not_a_plan() -> None:
    with pytest.raises(TypeError, match=r"must be a tcpref\.sim\.Drop"):
        faults.check_plan("SYN")


def test_drop_rejects_a_plan_that_can_never_match() -> None:
    with pytest.raises(ValueError, match="nth"):
        Drop(0, sender="client", flags=SYN)


def test_receiver_of_is_the_side_the_sender_sends_to() -> None:
    assert faults.receiver_of(Drop(1, sender="client", flags=SYN)) == "server"
    assert faults.receiver_of(Drop(1, sender="server", flags=SYN | ACK)) == "client"


def test_injector_counts_matches_and_drops_only_the_planned_ones() -> None:
    # No sockets: the counting alone, as the capture would feed it.
    injector = faults.LossInjector(Drop(2, sender="client", flags=ACK, count=2), settle=0)
    injector.start()
    seen = [
        injector.saw("client", _segment(SYN)),
        injector.saw("client", _segment(ACK)),  # match 1: kept
        injector.saw("server", _segment(ACK)),  # the other side: not a match
        injector.saw("client", _segment(ACK)),  # match 2: lost
        injector.saw("client", _segment(ACK | Flags.PSH)),  # other flags
        injector.saw("client", _segment(ACK)),  # match 3: lost
        injector.saw("client", _segment(ACK)),  # match 4: kept
    ]
    assert seen == [False, False, False, True, False, True, False]
    assert injector.lost == 2


def test_injector_rejects_a_bad_settle_time() -> None:
    with pytest.raises(ValueError, match="settle"):
        faults.LossInjector(Drop(1, sender="client", flags=SYN), settle=-1)


@pytest.mark.netns
def test_attach_makes_the_kernel_drop_exactly_the_matching_segments() -> None:
    # A filter that drops pure ACKs on the listener loses the handshake's last
    # segment: the connection does not reach the accept queue until it is removed.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.5)
        faults.attach(listener, faults.drop_program(ACK))
        client = socket.create_connection(listener.getsockname(), timeout=5)
        with client:
            with pytest.raises(TimeoutError):
                listener.accept()
            faults.detach(listener)
            faults.detach(listener)  # no filter left: not an error
            listener.settimeout(5)
            client.sendall(b"x")  # its ACK completes the handshake now
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.recv(1) == b"x"
