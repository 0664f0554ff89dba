"""Short scripted connections on loopback, the live twins of the simulator's scenarios.

Each function runs one complete connection between a client and a one-shot
server thread on ``127.0.0.1`` and returns ``(client_address, server_address)``,
which is what :func:`tcpref.capture.capture_exchange` needs to pick that
connection out of a capture:

>>> from tcpref.demos.exchanges import handshake_and_teardown
>>> client, server = handshake_and_teardown(close_delay=0.0)
>>> client[0], server[0]
('127.0.0.1', '127.0.0.1')

The model-against-kernel test compares their captures with
:func:`tcpref.scenarios.run_scenario`'s traces of the same names, and the site
draws the captured handshake beside the simulated one.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["half_close", "handshake_and_teardown"]

Addresses = tuple[tuple[str, int], tuple[str, int]]
_TIMEOUT = 5.0


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
    except BaseException:
        listener.close()
        raise
    return listener


def _serve_one(listener: socket.socket, reply: bytes, close_delay: float) -> threading.Thread:
    """Accept one connection in a thread: read to end-of-file, reply, wait, close."""

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(_TIMEOUT)
            while connection.recv(4096):
                pass
            if reply:
                connection.sendall(reply)
            threading.Event().wait(close_delay)

    thread = threading.Thread(target=serve, name="exchange-server")
    thread.start()
    return thread


def _finish(server: threading.Thread) -> None:
    server.join(2 * _TIMEOUT)
    if server.is_alive():  # pragma: no cover (every wait in it is bounded)
        raise TimeoutError("the exchange's server thread did not finish")


def handshake_and_teardown(close_delay: float = 0.3) -> Addresses:
    """Connect, then close at once; the server closes ``close_delay`` s after EOF.

    With a delay of a few tenths of a second the server's ACK of the client's FIN
    leaves on its own, before the server's FIN: the teardown has four segments,
    like the ``handshake-and-teardown`` scenario (whose server waits 0.5 s).

    Raises:
        OSError: if a socket call fails.
        TimeoutError: if the server thread does not finish.
    """
    with _listener() as listener:
        server = _serve_one(listener, b"", close_delay)
        with socket.create_connection(listener.getsockname(), timeout=_TIMEOUT) as client:
            addresses = (client.getsockname(), listener.getsockname())
        _finish(server)
    return addresses


def half_close(request: bytes = b"ping", reply: bytes = b"pong") -> Addresses:
    """Send ``request`` and ``shutdown(SHUT_WR)``; the server replies, then closes.

    The client reads the whole reply after its own FIN, as in the ``half-close``
    scenario.

    Raises:
        OSError: if a socket call fails.
        ValueError: if the reply read back is not ``reply``.
        TimeoutError: if the server thread does not finish.
    """
    with _listener() as listener:
        server = _serve_one(listener, reply, 0.0)
        with socket.create_connection(listener.getsockname(), timeout=_TIMEOUT) as client:
            addresses = (client.getsockname(), listener.getsockname())
            client.sendall(request)
            client.shutdown(socket.SHUT_WR)
            received = b""
            # Ends: each pass reads at least one byte, or meets end-of-file.
            while chunk := client.recv(4096):
                received += chunk
        _finish(server)
    if received != reply:
        raise ValueError(f"the server replied {received!r}, not {reply!r}")
    return addresses
