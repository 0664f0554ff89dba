"""The standard library's echo servers, for comparison with tcpref's.

Run as ``python benchmarks/stdlib_servers.py KIND [--bare]`` with KIND one of
``forking``, ``threading``, ``asyncio`` or ``raw``.  Like ``python -m tcpref
serve``, it prints ``listening on HOST:PORT`` first and serves on 127.0.0.1 until
killed.

``raw`` is a single blocking loop that serves one client at a time: no concurrency
at all, so it shows what one connection costs with nothing in the way.

A fork costs more the bigger the process is: the kernel copies its page tables, and
the child copies every page it writes to, beginning with Python's own bookkeeping
after ``fork``.  So that a comparison with tcpref's servers measures the servers'
code rather than how many modules each process happens to import, this script
first imports what ``python -m tcpref serve`` imports (``tcpref.cli``).  With
``--bare`` it imports only what its server needs, which shows what that size costs.
"""

from __future__ import annotations

import socket
import socketserver
import sys


class EchoHandler(socketserver.BaseRequestHandler):
    """Echo until the client closes, as tcpref's Echo handler does."""

    def handle(self) -> None:
        while data := self.request.recv(64 * 1024):
            self.request.sendall(data)


def announce(address: tuple[str, int]) -> None:
    print(f"listening on {address[0]}:{address[1]}", flush=True)


def serve_socketserver(kind: str) -> None:
    server_class = {
        "forking": socketserver.ForkingTCPServer,
        "threading": socketserver.ThreadingTCPServer,
    }[kind]
    server_class.allow_reuse_address = True
    server_class.request_queue_size = 128  # the same backlog as tcpref's servers
    if kind == "forking":
        # The same cap as tcpref's servers get in the benchmark (--max-connections
        # 1000).  The default, 40, would leave 60 of the 100 clients waiting in the
        # accept queue: a different load from the one the tcpref server gets.
        socketserver.ForkingTCPServer.max_children = 1000
    with server_class(("127.0.0.1", 0), EchoHandler) as server:
        if isinstance(server, socketserver.ThreadingTCPServer):
            server.daemon_threads = True
        host, port = server.server_address[:2]
        announce((str(host), port))
        server.serve_forever()


def serve_asyncio() -> None:
    # Imported here, not at the top: the socketserver servers must not carry
    # asyncio's modules (logging among them), which would make every fork dearer.
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(64 * 1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=128)
        announce(server.sockets[0].getsockname())
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_raw() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        announce(listener.getsockname())
        while True:
            conn, _ = listener.accept()
            with conn:
                try:
                    while data := conn.recv(64 * 1024):
                        conn.sendall(data)
                except ConnectionError:
                    pass


if __name__ == "__main__":
    kind, *options = sys.argv[1:]
    if options not in ([], ["--bare"]):
        sys.exit(f"unknown options {options!r}")
    if not options:
        import tcpref.cli  # noqa: F401  (the same modules as python -m tcpref serve)
    if kind in ("forking", "threading"):
        serve_socketserver(kind)
    elif kind == "asyncio":
        serve_asyncio()
    elif kind == "raw":
        serve_raw()
    else:
        sys.exit(f"unknown server kind {kind!r}")
