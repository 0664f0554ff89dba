"""libpcap files from tcpref.capture: the exact bytes, bad input, and an independent reader.

The writer is pure, so most tests build packets by hand.  scapy (from the ``test``
extra) reads the files back: it is not our code, so a file it reads as the same
segments is a file Wireshark and tcpdump read too.  The live tests capture in a
private network namespace (``@pytest.mark.netns``, tests/conftest.py).
"""

from __future__ import annotations

import io
import re
import socket
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from conftest import NETNS_UNAVAILABLE
from tcpref.capture import (
    FULL_SNAP_LENGTH,
    CapturedPacket,
    PcapWriter,
    capture_exchange,
    pcap_bytes,
    pcap_header,
    pcap_record,
    trace_port,
    write_pcap,
)
from tcpref.demos.exchanges import half_close
from tcpref.segment import Flags, Segment
from tcpref.trace import TraceEntry

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 8080)
#: 2023-11-14 22:13:20.123456789 UTC, in nanoseconds since 1970.
STAMP = 1_700_000_000_123_456_789


def ipv4_packet(src: tuple[str, int], dst: tuple[str, int], segment: Segment) -> bytes:
    """The IPv4 packet that carries ``segment`` from ``src`` to ``dst`` (ports re-set)."""
    tcp = Segment(
        src[1], dst[1], segment.seq, segment.ack, segment.flags, segment.window,
        payload=segment.payload,
    ).to_bytes(src[0], dst[0])  # fmt: skip
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    return ip + tcp


def seg(flags: Flags, seq: int, ack: int = 0, payload: bytes = b"") -> Segment:
    return Segment(0, 0, seq, ack, flags, 65535, payload=payload)


#: A handshake, 5 bytes of data and their ACK, 1 ms apart.
CONVERSATION = [
    (CLIENT, SERVER, seg(Flags.SYN, 1000)),
    (SERVER, CLIENT, seg(Flags.SYN | Flags.ACK, 5000, 1001)),
    (CLIENT, SERVER, seg(Flags.ACK, 1001, 5001)),
    (CLIENT, SERVER, seg(Flags.PSH | Flags.ACK, 1001, 5001, b"hello")),
    (SERVER, CLIENT, seg(Flags.ACK, 5001, 1006)),
]
PACKETS = [
    CapturedPacket.from_ipv4(STAMP + n * 1_000_000, ipv4_packet(src, dst, segment))
    for n, (src, dst, segment) in enumerate(CONVERSATION)
]


# -- the exact bytes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanoseconds", "magic"),
    [(True, "4d3cb2a1"), (False, "d4c3b2a1")],  # 0xa1b23c4d and 0xa1b2c3d4, little-endian
)
def test_pcap_header_is_the_24_bytes_of_the_format(nanoseconds: bool, magic: str) -> None:
    expected = bytes.fromhex(
        magic
        + "0200" + "0400"  # version 2.4
        + "00000000"  # time zone offset: always 0
        + "00000000"  # time stamp accuracy: always 0
        + "ffff0000"  # snap length 65535
        + "65000000"  # link type 101, LINKTYPE_RAW: packets begin with the IP header
    )  # fmt: skip
    assert pcap_header(snap_length=65535, nanoseconds=nanoseconds) == expected


def test_pcap_header_defaults_to_nanoseconds_and_the_full_snap_length() -> None:
    magic, major, minor, zone, accuracy, snap, link = struct.unpack("<IHHiIII", pcap_header())
    assert (magic, major, minor, zone, accuracy) == (0xA1B23C4D, 2, 4, 0, 0)
    assert (snap, link) == (FULL_SNAP_LENGTH, 101)


@pytest.mark.parametrize(
    ("nanoseconds", "fraction"),
    [(True, "15cd5b07"), (False, "40e20100")],  # 123456789 ns; 123456 us, rounded down
)
def test_pcap_record_splits_the_kernels_stamp_into_seconds_and_fraction(
    nanoseconds: bool, fraction: str
) -> None:
    packet = CapturedPacket(STAMP, b"\x45" + bytes(39), 1500)
    expected = bytes.fromhex(
        "00f15365"  # 1700000000 seconds
        + fraction
        + "28000000"  # 40 bytes in the file
        + "dc050000"  # 1500 bytes on the wire
    ) + packet.data  # fmt: skip
    assert pcap_record(packet, nanoseconds=nanoseconds) == expected


def test_pcap_bytes_is_the_header_then_each_record_in_order() -> None:
    data = pcap_bytes(PACKETS, snap_length=1500)
    assert data == pcap_header(snap_length=1500) + b"".join(
        pcap_record(packet, snap_length=1500) for packet in PACKETS
    )
    assert len(data) == 24 + sum(16 + len(packet.data) for packet in PACKETS)


def test_write_pcap_writes_pcap_bytes_and_counts_the_packets(tmp_path: Path) -> None:
    path = tmp_path / "conversation.pcap"
    with path.open("wb") as file:
        assert write_pcap(file, PACKETS) == len(PACKETS)
    assert path.read_bytes() == pcap_bytes(PACKETS)


def test_pcap_writer_flushes_each_record_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "growing.pcap"
    with path.open("wb") as file:
        writer = PcapWriter(file)
        assert path.read_bytes() == pcap_header()  # on disk already, not in a buffer
        writer.write(PACKETS[0])
        assert path.read_bytes() == pcap_bytes(PACKETS[:1])
        assert writer.count == 1


def test_captured_packet_from_ipv4_reads_the_length_on_the_wire() -> None:
    whole = ipv4_packet(CLIENT, SERVER, seg(Flags.ACK, 1, payload=b"x" * 100))
    assert CapturedPacket.from_ipv4(0, whole).wire_length == 140
    cut = CapturedPacket.from_ipv4(0, whole[:120])  # a snap length of 120
    assert (len(cut.data), cut.wire_length) == (120, 140)
    offloaded = bytearray(whole)
    offloaded[2:4] = b"\0\0"  # a segmentation-offload packet may leave it unset
    assert CapturedPacket.from_ipv4(0, bytes(offloaded)).wire_length == 140


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: CapturedPacket(-1, b"", 0),
            ValueError,
            "time_ns must be >= 0 and before 2106 (nanoseconds since 1970, in a 32-bit "
            "count of seconds), not -1",
        ),
        (lambda: CapturedPacket(2**32 * 10**9, b"", 0), ValueError, "not 4294967296000000000"),
        (lambda: CapturedPacket(1.5, b"", 0), TypeError, "time_ns must be an int of nanoseconds"),
        (lambda: CapturedPacket(True, b"", 0), TypeError, "not True"),
        (lambda: CapturedPacket(0, "E\0", 2), TypeError, "data must be bytes, not str"),
        (
            lambda: CapturedPacket(0, b"abc", 2),
            ValueError,
            "wire_length must be at least the 3 bytes of data and fit in 32 bits, not 2",
        ),
        (lambda: CapturedPacket(0, b"", 2**32), ValueError, "not 4294967296"),
        (lambda: CapturedPacket.from_ipv4(0, bytearray(20)), TypeError, "not bytearray"),
        (
            lambda: pcap_record(CapturedPacket(0, bytes(121), 121), snap_length=120),
            ValueError,
            "a packet of 121 captured bytes does not fit the snap length 120: "
            "write it with a snap_length of at least 121",
        ),
        (
            lambda: pcap_record(b"E\0", snap_length=120),
            TypeError,
            "packet must be a CapturedPacket, not b'E\\x00'",
        ),
        (
            lambda: pcap_header(snap_length=100),
            ValueError,
            "snap_length must be in range 120-262144",
        ),
        (lambda: pcap_header(nanoseconds=1), TypeError, "nanoseconds must be True or False"),
        (lambda: pcap_bytes([PACKETS[0], None]), TypeError, "not None"),
    ],
)
def test_pcap_bad_input_raises_naming_the_value(build: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        build()
    assert message in str(raised.value)


class TakesTextOnly:
    """A file-like object that, like a text file, refuses bytes."""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        return len(text)

    def flush(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<TakesTextOnly>"


def test_pcap_writer_refuses_a_file_that_is_not_binary(tmp_path: Path) -> None:
    with (tmp_path / "text.pcap").open("w") as text:
        with pytest.raises(TypeError) as raised:
            PcapWriter(text)
        assert str(raised.value) == (
            "file must be a file opened for writing in binary mode, such as "
            f"open(path, 'wb'), not {text!r}"
        )
    assert (tmp_path / "text.pcap").read_bytes() == b""  # refused before writing
    with pytest.raises(TypeError, match=r"not 'out\.pcap'"):
        write_pcap("out.pcap", PACKETS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"opened in binary mode, such as .*, not <TakesTextOnly>"):
        PcapWriter(TakesTextOnly())  # type: ignore[arg-type]


def test_trace_port_refuses_a_pcap_that_is_not_a_writer() -> None:
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        pytest.raises(TypeError, match=r"pcap must be a PcapWriter, not <_io\.BytesIO"),
    ):
        trace_port(sock, 8080, pcap=io.BytesIO())  # type: ignore[arg-type]


# -- read back by an independent reader: scapy -------------------------------------------


class Seen(NamedTuple):
    """What both sides must agree on for each segment."""

    src: tuple[str, int]
    dst: tuple[str, int]
    flags: int
    seq: int
    ack: int
    payload_length: int
    time_ns: int


def read_with_scapy(data: bytes) -> tuple[int, list[Seen]]:
    """The link type and the segments of a pcap file, as scapy reads them."""
    utils = pytest.importorskip("scapy.utils", reason="scapy (the test extra) reads pcap files")
    inet = pytest.importorskip("scapy.layers.inet")
    seen = []
    with utils.PcapReader(io.BytesIO(data)) as reader:
        link_type = reader.linktype
        for packet in reader:
            ip, tcp = packet[inet.IP], packet[inet.TCP]
            # From the headers, as Wireshark's tcp.len: right for a cut packet too.
            payload = ip.len - 4 * ip.ihl - 4 * tcp.dataofs
            seen.append(
                Seen(
                    (ip.src, tcp.sport),
                    (ip.dst, tcp.dport),
                    int(tcp.flags),
                    tcp.seq,
                    tcp.ack,
                    payload,
                    int(Decimal(packet.time) * 10**9),
                )
            )
    return link_type, seen


def seen_by_us(
    entries: list[TraceEntry] | tuple[TraceEntry, ...],
    packets: list[CapturedPacket] | tuple[CapturedPacket, ...],
    client: tuple[str, int],
    server: tuple[str, int],
) -> list[Seen]:
    """The same for segments as tcpref.capture decoded them."""
    ours = []
    for entry, packet in zip(entries, packets, strict=True):
        segment = entry.segment
        assert segment is not None
        src, dst = (client, server) if entry.sender == "client" else (server, client)
        length = packet.wire_length - 20 - segment.header_length  # no IPv4 options on lo
        ours.append(
            Seen(src, dst, int(segment.flags), segment.seq, segment.ack, length, packet.time_ns)
        )
    return ours


def test_scapy_reads_handmade_packets_back_as_the_same_segments() -> None:
    link_type, seen = read_with_scapy(pcap_bytes(PACKETS))
    assert link_type == 101
    assert seen == [
        Seen(src, dst, int(s.flags), s.seq, s.ack, len(s.payload), STAMP + n * 1_000_000)
        for n, (src, dst, s) in enumerate(CONVERSATION)
    ]


def test_scapy_reads_microseconds_and_a_cut_packet() -> None:
    data_packet = PACKETS[3]
    cut = CapturedPacket(data_packet.time_ns, data_packet.data[:-2], data_packet.wire_length)
    data = pcap_bytes([cut], nanoseconds=False)
    _, (seen,) = read_with_scapy(data)
    assert seen.payload_length == 5  # from the headers: 3 captured, 5 on the wire
    assert seen.time_ns == cut.time_ns // 1000 * 1000  # rounded down to the microsecond
    utils = pytest.importorskip("scapy.utils")
    with utils.RawPcapReader(io.BytesIO(data)) as reader:
        ((_, metadata),) = list(reader)
    assert (metadata.caplen, metadata.wirelen) == (len(cut.data), cut.wire_length)


def test_trace_port_writes_each_segment_it_prints(tmp_path: Path) -> None:
    # A datagram pair stands in for the packet socket: no privilege needed.
    reader, feeder = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with reader, feeder:
        for src, dst, segment in CONVERSATION:
            feeder.send(ipv4_packet(src, dst, segment))
        feeder.send(ipv4_packet(CLIENT, ("127.0.0.1", 9), seg(Flags.SYN, 1)))  # another port
        path = tmp_path / "trace.pcap"
        with path.open("wb") as file:
            writer = PcapWriter(file)
            lines = list(trace_port(reader, SERVER[1], timeout=0.3, pcap=writer))
    _, seen = read_with_scapy(path.read_bytes())
    assert len(seen) == len(lines) - 1 == len(CONVERSATION)  # the header line has no packet
    want = [(src, dst, int(s.flags), s.seq, s.ack) for src, dst, s in CONVERSATION]
    assert [(s.src, s.dst, s.flags, s.seq, s.ack) for s in seen] == want
    assert [s.payload_length for s in seen] == [0, 0, 0, 5, 0]


# -- live, in a private network namespace -------------------------------------------------


@pytest.mark.netns
def test_scapy_reads_a_live_capture_back_as_the_same_segments(tmp_path: Path) -> None:
    exchange = capture_exchange(half_close, count=20, timeout=0.5)
    path = tmp_path / "half-close.pcap"
    with path.open("wb") as file:
        assert write_pcap(file, exchange.packets) == len(exchange.entries)
    link_type, seen = read_with_scapy(path.read_bytes())
    assert link_type == 101
    ours = seen_by_us(exchange.entries, exchange.packets, exchange.client, exchange.server)
    assert seen == ours
    assert sum(s.payload_length for s in seen) == len(b"ping") + len(b"pong")
    assert Flags.SYN in Flags(seen[0].flags)
    # The kernel's arrival stamps, kept to the nanosecond: the trace's times are theirs.
    start = exchange.packets[0].time_ns
    assert [round((s.time_ns - start) / 1e9, 9) for s in seen] == [
        round(entry.time, 9) for entry in exchange.entries
    ]


# -- the site: the captured handshake, saved beside its page ----------------------------

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
LINK = (
    '<a class="reference external" href="handshake-and-teardown.pcap">'
    "Download this capture (pcap)</a> to open it in Wireshark."
)


def build_site(tmp_path: Path, conf: Path = CONF, exchange: str = "handshake-and-teardown") -> Path:
    """Build a two-page site whose page ``concepts/page`` draws the captured ``exchange``."""
    pytest.importorskip("sphinx", reason="the docs extra (Sphinx) is not installed")
    src = tmp_path / "src"
    (src / "concepts").mkdir(parents=True)
    (src / "index.md").write_text("# Site\n\n```{toctree}\nconcepts/page\n```\n", encoding="utf-8")
    (src / "concepts" / "page.md").write_text(
        f"# Page\n\n```{{captured-sequence-diagram}} {exchange}\n```\n", encoding="utf-8"
    )
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-c", str(conf), str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def svg_labels(page: str) -> list[str]:
    """The segment labels of the captured diagram, in order."""
    figure = page[page.index('id="captured-handshake-and-teardown"') :]
    return [text for text in re.findall(r"<text[^>]*>([^<]*)</text>", figure) if " seq=" in text]


_FLAG_NAMES = [(0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK")]


def labels_from_pcap(data: bytes) -> list[str]:
    """What the diagram should say of each segment, from the pcap file as scapy reads it."""
    utils = pytest.importorskip("scapy.utils", reason="scapy (the test extra) reads pcap files")
    inet = pytest.importorskip("scapy.layers.inet")
    with utils.PcapReader(io.BytesIO(data)) as reader:
        segments = [packet[inet.TCP] for packet in reader]
    isns: dict[int, int] = {}
    for tcp in segments:
        if int(tcp.flags) & 0x02:
            isns.setdefault(tcp.sport, tcp.seq)
    labels = []
    for tcp in segments:
        flags = "|".join(name for bit, name in _FLAG_NAMES if int(tcp.flags) & bit)
        label = f"{flags} seq={(tcp.seq - isns[tcp.sport]) % 2**32}"
        if int(tcp.flags) & 0x10:
            label += f" ack={(tcp.ack - isns[tcp.dport]) % 2**32}"
        labels.append(f"{label} win={tcp.window}")
    return labels


@pytest.mark.slow
@pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=f"no namespace: {NETNS_UNAVAILABLE}")
def test_site_saves_the_captured_exchange_beside_its_page(tmp_path: Path) -> None:
    out = build_site(tmp_path)
    page = (out / "concepts" / "page.html").read_text(encoding="utf-8")
    assert LINK in page
    data = (out / "concepts" / "handshake-and-teardown.pcap").read_bytes()  # beside the page
    assert struct.unpack_from("<I", data)[0] == 0xA1B23C4D
    # The file holds the very segments the diagram draws: one capture for both.
    drawn = [label.split(" [")[0] for label in svg_labels(page)]
    assert len(drawn) == 7, drawn
    assert labels_from_pcap(data) == drawn


@pytest.mark.slow
def test_site_without_a_namespace_has_no_capture_link(tmp_path: Path) -> None:
    # The site's configuration, but in a build where no namespace can be made.
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "conf.py").write_text(
        "import runpy\n"
        f"globals().update(runpy.run_path({str(CONF / 'conf.py')!r}))\n"
        f"html_static_path = [{str(CONF / '_static')!r}]\n"
        "from tcpref import netns\n"
        "netns.unavailable_reason = lambda: 'a test says there is none'\n",
        encoding="utf-8",
    )
    out = build_site(tmp_path, conf)
    page = (out / "concepts" / "page.html").read_text(encoding="utf-8")
    assert "in a private network namespace: a test says there is none." in page
    assert "Download this capture" not in page
    assert list(out.rglob("*.pcap")) == []


@pytest.mark.slow
@pytest.mark.skipif(NETNS_UNAVAILABLE is not None, reason=f"no namespace: {NETNS_UNAVAILABLE}")
def test_site_draws_a_loss_scenario_as_the_kernel_played_it(tmp_path: Path) -> None:
    out = build_site(tmp_path, exchange="lost-teardown-1")
    page = (out / "concepts" / "page.html").read_text(encoding="utf-8")
    figure = page[page.index('id="captured-lost-teardown-1"') :]
    labels = [t for t in re.findall(r"<text[^>]*>([^<]*)</text>", figure) if " seq=" in t]
    fins = [label for label in labels if label.startswith("FIN|ACK seq=1 ack=1")]
    assert len(fins) == 2, labels  # the client's FIN, lost, and sent again
    assert "(lost)" in fins[0]
    assert "(retransmission)" in fins[1]
    assert "on the live kernel, while this site was built" in page
