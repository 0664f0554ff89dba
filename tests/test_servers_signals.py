"""A stop requested from a signal handler, in the thread that serves.

A signal handler runs in the main thread between two bytecodes, possibly while that
thread is inside ``threading.Event.wait()`` and holds the event's lock.  If the
handler then called ``set()`` on the same event, it would wait for that lock for
ever.  ``BaseServer.stop()`` therefore only sets a flag in the serving thread.
"""

from __future__ import annotations

import threading

from tcpref.servers.base import BaseServer


class _Recorder(threading.Event):
    """An event that records from which threads ``set()`` was called."""

    def __init__(self) -> None:
        super().__init__()
        self.set_from: list[int] = []

    def set(self) -> None:
        self.set_from.append(threading.get_ident())
        super().set()


class _StopsItself(BaseServer):
    """A server whose serving loop is interrupted by a stop, as by a signal handler."""

    model = "stops-itself"

    def _serve(self) -> None:
        self.stop()  # what the SIGTERM handler of a server process does
        assert self.stopping


def test_server_stop_in_the_serving_thread_takes_no_event_lock() -> None:
    server = _StopsItself()
    recorder = _Recorder()
    server._stop_requested = recorder
    server.serve_forever()
    assert server.stopping
    assert recorder.set_from == []  # only the flag: no lock the thread may hold


def test_server_stop_from_another_thread_wakes_the_serving_thread() -> None:
    server = _StopsItself()
    recorder = _Recorder()
    server._stop_requested = recorder
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(10)
    assert recorder.set_from == [stopper.ident]
    assert server.stopping
