"""tcpref's thread server without its idle timeout on reads, to measure what it costs.

Run as ``python benchmarks/untimed_thread.py``; like ``python -m tcpref serve`` it
prints ``listening on HOST:PORT`` first and echoes on 127.0.0.1 until killed.

This is a measuring instrument, not a server to copy: a client that connects and
sends nothing holds one of its threads for ever.  ``ThreadServer`` closes such a
client with the kernel's ``SO_RCVTIMEO``, which every connection inherits from the
listener.  With that option set, each ``recv`` that has to wait arms a kernel timer
and cancels it when the data arrives, one more thing per round trip that
``socketserver`` does not do.  This server keeps the send timeout (``SO_SNDTIMEO``,
which costs nothing unless a send has to wait) and drops the read timeout, so the
distance between it and ``ThreadServer`` is what the read timeout costs.
"""

from __future__ import annotations

import socket

import tcpref.cli  # noqa: F401  (the same modules as python -m tcpref serve)
from tcpref.servers import Echo, ThreadServer, thread_server
from tcpref.servers.base import _set_kernel_timeout


def send_timeout_only(sock: socket.socket, seconds: float) -> None:
    """Set SO_SNDTIMEO alone, where ThreadServer calls set_idle_timeout."""
    _set_kernel_timeout(sock, socket.SO_SNDTIMEO, seconds)


if __name__ == "__main__":
    # ThreadServer sets its timeouts with the set_idle_timeout its module imported.
    thread_server.set_idle_timeout = send_timeout_only  # type: ignore[attr-defined]
    # The same limits as the benchmark gives `python -m tcpref serve`.
    server = ThreadServer(handler=Echo, max_connections=1000, idle_timeout=60, grace=1)
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
