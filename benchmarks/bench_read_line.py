"""What does read_line's no-read-ahead design cost?

``tcpref.wrap.read_line`` peeks and then reads, two system calls per line, so that
it never takes bytes past the newline.  A buffered reader, ``sock.makefile("rb")``,
reads ahead in large chunks and splits lines in user space.  This benchmark sends
the same lines over loopback to both and prints lines per second and the ratio.

Run it with ``tox -e bench``.  It makes no assertion: the numbers depend on the
machine, and the point is the order of magnitude.
"""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections.abc import Callable

from tcpref import wrap

LINES = 20_000
LINE = b"x" * 63 + b"\n"
ROUNDS = 3


def _timed_read(read_all: Callable[[socket.socket], int]) -> float:
    """Send LINES lines from a thread; return the seconds ``read_all`` took."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            server, _ = listener.accept()
            with server:
                server.settimeout(5)
                writer = threading.Thread(target=client.sendall, args=(LINE * LINES,))
                writer.start()
                started = time.perf_counter()
                count = read_all(server)
                elapsed = time.perf_counter() - started
                writer.join(timeout=10)
    if count != LINES:
        raise RuntimeError(f"read {count} lines, expected {LINES}")
    return elapsed


def read_with_peek(sock: socket.socket) -> int:
    return sum(1 for _ in range(LINES) if wrap.read_line(sock) == LINE)


def read_buffered(sock: socket.socket) -> int:
    with sock.makefile("rb") as stream:
        return sum(1 for _ in range(LINES) if stream.readline() == LINE)


def main() -> None:
    print(f"read_line benchmark: {LINES} lines of {len(LINE)} bytes over loopback")
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    best = {}
    for name, reader in [
        ("wrap.read_line (peek)", read_with_peek),
        ("makefile().readline", read_buffered),
    ]:
        best[name] = min(_timed_read(reader) for _ in range(ROUNDS))
        print(f"  {name:24} {LINES / best[name]:>12,.0f} lines/s (best of {ROUNDS})")
    ratio = best["wrap.read_line (peek)"] / best["makefile().readline"]
    print(f"  the buffered reader is {ratio:.1f}x faster; read_line leaves the rest in the kernel")


if __name__ == "__main__":
    main()
