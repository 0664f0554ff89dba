"""The command line: ``python -m tcpref serve``, ``client`` and ``trace``.

``serve`` runs one of the three server models in the foreground.  Its first line on
stdout is ``listening on HOST:PORT`` (``[V6]:PORT`` for IPv6), flushed at once, so a
script (or a test) can start it with port 0 and read the port back.  Listening on
every interface (``0.0.0.0`` or ``::``) prints a warning on stderr.  SIGINT
(Ctrl-C) and SIGTERM stop it gracefully: it stops accepting, prints how many
connections it waits for and for how long (``--grace``), and lets them finish; a
second signal cuts them at once.  Its last line says how many connections finished
and how many were cut.  It exits 0 if none was cut, and 3 if any was.

``client`` connects, sends its standard input, half-closes, and prints every reply
until the server closes.  It takes the server's address as ``HOST PORT``, or as
``HOST:PORT`` and ``[V6]:PORT``, the way ``serve`` prints it.  Its ``--timeout`` is
the longest silence it waits through: when nothing has been sent or received for
that long, it says on stderr how many bytes came back, and exits 2.

``trace --port N`` prints the TCP segments to or from port N on loopback as they
arrive, one line each, in the format of :mod:`tcpref.trace` (a segment sent *to*
port N goes ``C -> S``), until ``--count`` segments or ``--timeout`` seconds, or
Ctrl-C.  It needs Linux and the CAP_NET_RAW capability (root has it); the header
line is printed once the capture is open.  With ``--pcap FILE`` it also writes each
segment it prints to FILE, as a libpcap capture that Wireshark and ``tcpdump -r``
open; FILE is made before the capture opens, so one that cannot be written stops
the command at once.

Bad arguments, or a failure such as a port already in use, print one line to stderr
and exit 2, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from tcpref import wrap
from tcpref.errors import (
    IncompleteReadError,
    LineTooLongError,
    SocketCallError,
    format_address,
    translate,
)
from tcpref.servers import HANDLERS, MODELS

__all__ = ["main"]

USAGE_ERROR = 2
#: ``serve``'s exit status when its stop had to cut connections that were still open.
CONNECTIONS_CUT = 3
#: What ``recv`` and ``os.read`` are asked for at most, in bytes.
_CHUNK = 64 * 1024
# The addresses that mean "every interface" once the kernel has bound them.
_EVERY_INTERFACE = frozenset({"0.0.0.0", "::"})


class CommandError(Exception):
    """A failure that a command reports in one line on stderr, exiting 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: no usage block, no traceback."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help formatter, given the terminal's width instead of finding it.

    It keeps the line breaks of descriptions and epilogs, so that each example
    stands on its own line.

    Left to find it, argparse imports shutil, and shutil imports zlib, bz2 and lzma,
    which load three C libraries.  argparse makes a formatter as soon as an argument
    is added, so merely building the parser would load them, ``serve`` would carry
    them for as long as it runs, and a fork server copies its whole process, those
    libraries' mappings included, on every connection (shown on the fork-server
    page).
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_width() - 2)  # the margin argparse keeps


def _terminal_width() -> int:
    """COLUMNS if it is set, else the width of the terminal on stdout, else 80."""
    with contextlib.suppress(KeyError, ValueError):
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns
    try:
        return os.get_terminal_size().columns  # descriptor 1, stdout
    except OSError:  # not a terminal
        return 80


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in range 0-65535, not {port}")
    return port


def _capture_port(text: str) -> int:
    port = _port(text)
    if port == 0:
        raise argparse.ArgumentTypeError("port must be in range 1-65535 to capture, not 0")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, not {text}")
    return value


def _finite_seconds(text: str) -> float:
    value = _seconds(text)
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, not {text}")
    return value


_DESCRIPTION = """\
Run a teaching TCP server, talk to one, or watch its segments on loopback.
Run 'python -m tcpref COMMAND --help' for a command's options."""

_EXAMPLES = """\
examples:
  python -m tcpref serve --model thread --handler upper
  echo hello | python -m tcpref client 127.0.0.1:40117
  python -m tcpref trace --port 40117 --count 10"""

_SERVE_DESCRIPTION = """\
Run a server in the foreground until Ctrl-C (SIGINT) or SIGTERM.
Its first line on stdout is 'listening on HOST:PORT'.
On Ctrl-C it stops accepting and lets open connections finish for up to --grace
seconds; a second Ctrl-C cuts them at once.
Exit status: 0 after a stop that cut no connection, 3 if it cut any, 2 on bad
arguments or a failure to start."""

_CLIENT_DESCRIPTION = """\
Connect to a server, send it standard input, half-close the connection, and
print every reply until the server closes.
Exit status: 0 once the server has closed, 2 on bad arguments, a failure to
connect, or a timeout."""

_TRACE_DESCRIPTION = """\
Print the TCP segments to or from a port on loopback as they arrive, one line
each, until --count segments, --timeout seconds, or Ctrl-C; with --pcap, also
save them to a file that Wireshark opens.
Needs Linux and the CAP_NET_RAW capability (root has it)."""


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``python -m tcpref``."""
    parser = _Parser(prog="python -m tcpref", description=_DESCRIPTION, epilog=_EXAMPLES)
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )
    _add_serve(commands)
    _add_client(commands)
    _add_trace(commands)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run a server until Ctrl-C or SIGTERM",
        description=_SERVE_DESCRIPTION,
        epilog="example:\n  python -m tcpref serve --model fork --handler upper --port 8000",
    )
    serve.add_argument(
        "--model",
        choices=sorted(MODELS),
        required=True,
        help="how clients are served at once: fork (a process each), thread (a thread "
        "each) or select (one event loop for all); required",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on; 0.0.0.0 or :: listens on every interface, "
        "where other machines can reach it (default: %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=0,
        help="the port to listen on; 0 lets the kernel choose a free one (default: %(default)s)",
    )
    serve.add_argument(
        "--handler",
        choices=sorted(HANDLERS),
        default="echo",
        help="what the server answers: echo sends every byte back, upper sends it back in "
        "upper case, line-upper answers each whole line in upper case (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=100,
        metavar="N",
        help="serve at most N clients at once; the next ones wait in the kernel's accept "
        "queue (default: %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="close a connection that gets no reply for this long (default: %(default)g)",
    )
    serve.add_argument(
        "--grace",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="when stopped, let open connections finish for up to this long, then cut "
        "them (default: %(default)g)",
    )


def _add_client(commands: Any) -> None:
    client = commands.add_parser(
        "client",
        help="send standard input to a server and print its replies",
        description=_CLIENT_DESCRIPTION,
        epilog="example:\n  echo hello | python -m tcpref client 127.0.0.1:8000",
    )
    client.add_argument(
        "host",
        metavar="HOST",
        help="the server's name or address, or its HOST:PORT or [V6]:PORT as serve prints it",
    )
    client.add_argument(
        "port",
        metavar="PORT",
        nargs="?",
        type=_port,
        help="the server's port, unless HOST already ends with one",
    )
    client.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up, saying how many bytes came back, once nothing has been sent or "
        "received for this long; connecting gets as long (default: %(default)g)",
    )


def _add_trace(commands: Any) -> None:
    trace = commands.add_parser(
        "trace",
        help="print the TCP segments to or from a port on loopback (CAP_NET_RAW)",
        description=_TRACE_DESCRIPTION,
        epilog="example:\n  python -m tcpref trace --port 8000 --count 10 --pcap trace.pcap",
    )
    trace.add_argument(
        "--port", type=_capture_port, required=True, help="the port to follow; required"
    )
    trace.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N segments (default: no limit)",
    )
    trace.add_argument(
        "--timeout",
        type=_finite_seconds,
        metavar="SECONDS",
        help="stop after this many seconds (default: no limit)",
    )
    trace.add_argument(
        "--pcap",
        metavar="FILE",
        help="also write each segment printed to FILE, as a libpcap capture that Wireshark "
        "and tcpdump -r open; an existing FILE is replaced (default: none, print only)",
    )


def serve(args: argparse.Namespace) -> int:
    """Run the server in the foreground until a signal stops it; return the exit status."""
    server = MODELS[args.model](
        (args.host, args.port),
        HANDLERS[args.handler],
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        grace=args.grace,
    )
    signals = 0

    def stop(signum: int, frame: FrameType | None) -> None:
        # Only flags are set here: printing from a signal handler could break into a
        # print of the main thread's own.  The server announces the stop itself.
        nonlocal signals
        signals += 1
        if signals == 1:
            server.stop()
        else:
            server.cut_now()  # a second Ctrl-C: the user will not wait any longer

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server.on_stopping = _announce_stop
    print(f"listening on {format_address(server.address)}", flush=True)
    print(f"model={args.model} handler={args.handler}", flush=True)
    if server.address[0] in _EVERY_INTERFACE:
        _warn_every_interface(server.address[0])
    server.serve_forever()
    waited_for, cut = server.stop_outcome or (0, 0)
    finished = _count(waited_for - cut, "connection")
    print(f"stopped: {finished} finished, {cut} cut", flush=True)
    return CONNECTIONS_CUT if cut else 0


def _announce_stop(open_connections: int, grace: float) -> None:
    """Say what the stop waits for; the server calls this as its grace period begins."""
    if open_connections == 0:
        print("stopping: no connection to wait for", flush=True)
        return
    them = "it" if open_connections == 1 else "them"
    print(
        f"stopping: waiting up to {grace:g} s for {_count(open_connections, 'connection')} "
        f"to finish; Ctrl-C again to cut {them} now",
        flush=True,
    )


def _warn_every_interface(host: str) -> None:
    """Say that other machines can reach the server: its handlers answer anyone."""
    shown = f"[{host}]" if ":" in host else host
    print(
        f"python -m tcpref serve: warning: listening on every interface ({shown}), so other "
        "machines can connect, and the handler sends back whatever they send; "
        "use --host 127.0.0.1 to stay on this machine",
        file=sys.stderr,
        flush=True,
    )


def _server_address(host: str, port: int | None) -> tuple[str, int]:
    """The server's ``(host, port)``, from ``HOST PORT``, ``HOST:PORT`` or ``[V6]:PORT``.

    A bare IPv6 address (``::1``) takes its port separately, since its last part
    could be read as one.

    >>> _server_address("127.0.0.1:8000", None), _server_address("[::1]:8000", None)
    (('127.0.0.1', 8000), ('::1', 8000))
    >>> _server_address("::1", 8000), _server_address("localhost", 8000)
    (('::1', 8000), ('localhost', 8000))

    Raises:
        ValueError: if no port is given, or two are, or the port is not one.
    """
    forms = f"expected HOST PORT, HOST:PORT or [V6]:PORT, not {host!r}"
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or not name or rest[:1] not in ("", ":"):
            raise ValueError(forms)
        port_text = rest[1:] if rest else None
    elif host.count(":") == 1:
        name, _, port_text = host.partition(":")
    else:  # a name, an IPv4 address, or a bare IPv6 address
        name, port_text = host, None
    if not name:
        raise ValueError(forms)
    if port_text is not None and port is not None:
        raise ValueError(f"the port is given twice: {host!r} and {port}")
    if port_text is not None:
        try:
            port = _port(port_text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
    if port is None:
        raise ValueError(forms)
    return name, port


class _Traffic:
    """When bytes last moved on the client's connection, either way; what came back."""

    __slots__ = ("last_moved", "received")

    def __init__(self) -> None:
        self.last_moved = time.monotonic()
        self.received = 0

    def moved(self) -> None:
        self.last_moved = time.monotonic()


def client(args: argparse.Namespace) -> int:
    """Send standard input, half-close, and copy every reply to standard output.

    Raises:
        ValueError: if the address is not one.
        SocketCallError: if connecting or reading fails.
        CommandError: if nothing moves either way for ``--timeout`` seconds.
    """
    address = _server_address(args.host, args.port)
    sock = wrap.tcp_socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    with sock:
        wrap.connect(sock, address, timeout=args.timeout)
        sock.settimeout(args.timeout)  # a write that makes no progress for this long fails
        traffic = _Traffic()
        sender = threading.Thread(target=_send_stdin, args=(sock, traffic), daemon=True)
        sender.start()
        _copy_replies(sock, address, traffic, args.timeout)
        sender.join(timeout=args.timeout)
    return 0


def _copy_replies(
    sock: socket.socket, address: tuple[str, int], traffic: _Traffic, timeout: float
) -> None:
    """Copy what the server sends to stdout until it closes.

    Raises:
        SocketCallError: if reading fails, for example on a reset.
        CommandError: after ``timeout`` seconds in which no byte went either way.
    """
    # Ends: each pass copies bytes, meets the end of stream, or waits until the
    # silence has lasted `timeout`; the sender can push that moment back only by
    # sending, and it sends standard input once.
    while True:
        silent_for = time.monotonic() - traffic.last_moved
        if silent_for >= timeout:
            raise CommandError(
                f"timed out: nothing sent or received for {timeout:g} s (--timeout); "
                f"{_count(traffic.received, 'byte')} had come back from {format_address(address)}"
            )
        # select rather than the socket's timeout: the sender thread writes with
        # that one, and the wait here shrinks with the silence already spent.
        readable, _, _ = select.select([sock], [], [], timeout - silent_for)
        if not readable:
            continue
        try:
            reply = sock.recv(_CHUNK)
        except OSError as exc:
            raise translate(exc, call="recv", address=address) from exc
        if not reply:
            return  # the server closed its side
        traffic.received += len(reply)
        traffic.moved()
        sys.stdout.buffer.write(reply)
        sys.stdout.buffer.flush()


def _count(number: int, noun: str) -> str:
    """``1 byte``, ``3 bytes``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _send_stdin(sock: socket.socket, traffic: _Traffic) -> None:
    with contextlib.suppress(OSError):
        # os.read returns what is available, so lines typed at a terminal go at once.
        while chunk := os.read(sys.stdin.fileno(), _CHUNK):
            wrap.write_all(sock, chunk)
            traffic.moved()
        wrap.shutdown(sock, socket.SHUT_WR)  # the half-close: "I have sent everything"


class _PcapFile:
    """The ``--pcap`` file, whose every failure is a one-line error that names it.

    Opening can fail (a missing folder, no permission), and so can any write,
    flush or close later (``ENOSPC``): each becomes a :class:`CommandError`, so that
    the command says which file it could not write instead of printing a traceback.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        with self._failures():
            self._file = open(path, "wb")  # noqa: SIM115 (closed by __exit__)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            message = f"cannot write the --pcap file {self._path!r}: {exc.strerror or exc}"
            raise CommandError(message) from exc

    def write(self, data: bytes, /) -> int:
        with self._failures():
            return self._file.write(data)

    def flush(self) -> None:
        with self._failures():
            self._file.flush()

    def __enter__(self) -> _PcapFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._failures():
            self._file.close()


def trace(args: argparse.Namespace) -> int:
    """Print the segments to or from a port on loopback, one line each, as they arrive.

    Raises:
        CommandError: if the ``--pcap`` file cannot be written.
        SocketCallError: if the capture cannot be opened or read.
    """
    # Imported here, not at the top: the capture code (ctypes, the segment codec and
    # the trace format) is this command's alone, and a forking server started by
    # ``serve`` should not carry it, since every module loaded makes each fork dearer.
    from tcpref import capture

    with contextlib.ExitStack() as stack:
        pcap = None
        if args.pcap is not None:
            # Before the capture: a file that cannot be written fails the command at
            # once, with or without the capability to capture.
            pcap = capture.PcapWriter(
                stack.enter_context(_PcapFile(args.pcap)), snap_length=capture.FULL_SNAP_LENGTH
            )
        cap = stack.enter_context(
            capture.packet_capture(port=args.port, snap_length=capture.FULL_SNAP_LENGTH)
        )
        lines = capture.trace_port(
            cap, args.port, count=args.count, timeout=args.timeout, pcap=pcap
        )
        try:
            for line in lines:
                print(line, flush=True)
        except BrokenPipeError:
            # The reader went away (``... | head``): not an error.  Point stdout at
            # /dev/null so that Python's final flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return 0


_COMMANDS = {"serve": serve, "client": client, "trace": trace}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (
        SocketCallError,
        IncompleteReadError,
        LineTooLongError,
        ValueError,
        CommandError,
    ) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
