"""tcpref's fork server with its per-connection defences taken out, to measure them.

Run as ``python benchmarks/undefended_fork.py``; like ``python -m tcpref serve``
it prints ``listening on HOST:PORT`` first and echoes on 127.0.0.1 until killed.

This is a measuring instrument, not a server to copy.  Its child closes only the
listening socket (the issue's rule) rather than every inherited descriptor, and
keeps the parent's signal handlers; its parent installs no SIGCHLD handler and
reaps on each pass of its accept loop, as ``socketserver`` does.  Those are the
things ``ForkServer`` does for every connection that ``socketserver`` does not, so
the distance between this server and ``ForkServer`` is what they cost.
"""

from __future__ import annotations

import socket
from typing import Any

import tcpref.cli  # noqa: F401  (the same modules as python -m tcpref serve)
from tcpref.servers import Echo, ForkServer


class UndefendedForkServer(ForkServer):
    """ForkServer without the child's signal resets and descriptor sweep, and
    without the parent's SIGCHLD handler."""

    def _install_sigchld_handler(self) -> Any:
        return None  # no handler: the accept loop reaps on every pass

    def _leave_the_parent_behind(self, conn: socket.socket) -> None:
        self.listener.close()  # the one close the issue asks for; handlers stay


if __name__ == "__main__":
    # The same limits as the benchmark gives `python -m tcpref serve`.
    server = UndefendedForkServer(handler=Echo, max_connections=1000, idle_timeout=60, grace=1)
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
