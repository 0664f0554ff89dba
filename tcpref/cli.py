"""The command line: ``python -m tcpref serve``, ``client`` and ``trace``.

``serve`` runs one of the three server models in the foreground.  Its first line on
stdout is ``listening on HOST:PORT``, flushed at once, so a script (or a test) can
start it with port 0 and read the port back.  SIGINT and SIGTERM stop it gracefully,
and it exits 0.

``client`` connects, sends its standard input, half-closes, and prints every reply
until the server closes.

``trace --port N`` prints the TCP segments to or from port N on loopback as they
arrive, one line each, in the format of :mod:`tcpref.trace` (a segment sent *to*
port N goes ``C -> S``), until ``--count`` segments or ``--timeout`` seconds, or
Ctrl-C.  It needs Linux and the CAP_NET_RAW capability (root has it); the header
line is printed once the capture is open.

Bad arguments, or a failure such as a port already in use, print one line to stderr
and exit 2, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from tcpref import wrap
from tcpref.errors import IncompleteReadError, LineTooLongError, SocketCallError
from tcpref.servers import HANDLERS, MODELS

__all__ = ["main"]

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: no usage block, no traceback."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, given the terminal's width instead of finding it.

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


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``python -m tcpref``."""
    parser = _Parser(prog="python -m tcpref", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run a server until SIGINT or SIGTERM")
    serve.add_argument("--model", choices=sorted(MODELS), required=True)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, help="port to bind (0: any free)")
    serve.add_argument("--handler", choices=sorted(HANDLERS), default="echo")
    serve.add_argument("--max-connections", type=_positive_int, default=100)
    serve.add_argument("--idle-timeout", type=_seconds, default=30.0, metavar="SECONDS")
    serve.add_argument("--grace", type=_seconds, default=5.0, metavar="SECONDS")

    client = commands.add_parser("client", help="send stdin to a server, print replies")
    client.add_argument("host")
    client.add_argument("port", type=_port)
    client.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS")

    trace = commands.add_parser(
        "trace", help="print the TCP segments to or from a port on loopback (CAP_NET_RAW)"
    )
    trace.add_argument("--port", type=_capture_port, required=True, help="the port to follow")
    trace.add_argument("--count", type=_positive_int, help="stop after this many segments")
    trace.add_argument(
        "--timeout", type=_finite_seconds, metavar="SECONDS", help="stop after this many seconds"
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the server in the foreground until a signal stops it."""
    server = MODELS[args.model](
        (args.host, args.port),
        HANDLERS[args.handler],
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        grace=args.grace,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    print(f"model={args.model} handler={args.handler}", flush=True)
    server.serve_forever()
    return 0


def client(args: argparse.Namespace) -> int:
    """Send standard input, half-close, and copy every reply to standard output."""
    sock = wrap.tcp_socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    with sock:
        wrap.connect(sock, (args.host, args.port), timeout=args.timeout)
        sock.settimeout(args.timeout)
        sender = threading.Thread(target=_send_stdin, args=(sock,), daemon=True)
        sender.start()
        # Ends: each pass copies at least one byte, or stops at end of stream.
        while reply := sock.recv(64 * 1024):
            sys.stdout.buffer.write(reply)
            sys.stdout.buffer.flush()
        sender.join(timeout=args.timeout)
    return 0


def _send_stdin(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # os.read returns what is available, so lines typed at a terminal go at once.
        while chunk := os.read(sys.stdin.fileno(), 64 * 1024):
            wrap.write_all(sock, chunk)
        wrap.shutdown(sock, socket.SHUT_WR)  # the half-close: "I have sent everything"


def trace(args: argparse.Namespace) -> int:
    """Print the segments to or from a port on loopback, one line each, as they arrive."""
    # Imported here, not at the top: the capture code (ctypes, the segment codec and
    # the trace format) is this command's alone, and a forking server started by
    # ``serve`` should not carry it, since every module loaded makes each fork dearer.
    from tcpref import capture

    with capture.packet_capture(port=args.port, snap_length=capture.FULL_SNAP_LENGTH) as cap:
        lines = capture.trace_port(cap, args.port, count=args.count, timeout=args.timeout)
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
    except (SocketCallError, IncompleteReadError, LineTooLongError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
