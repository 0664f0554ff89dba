"""The command line: ``python -m tcpref serve ...`` and ``python -m tcpref client ...``.

``serve`` runs one of the three server models in the foreground.  Its first line on
stdout is ``listening on HOST:PORT``, flushed at once, so a script (or a test) can
start it with port 0 and read the port back.  SIGINT and SIGTERM stop it gracefully,
and it exits 0.

``client`` connects, sends its standard input, half-closes, and prints every reply
until the server closes.

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
from typing import NoReturn

from tcpref import wrap
from tcpref.errors import IncompleteReadError, LineTooLongError, SocketCallError
from tcpref.servers import HANDLERS, MODELS

__all__ = ["main"]

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: no usage block, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in range 0-65535, not {port}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return serve(args) if args.command == "serve" else client(args)
    except (SocketCallError, IncompleteReadError, LineTooLongError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
