"""Concurrent TCP servers in three models, sharing one lifecycle and one handler API.

>>> from tcpref.servers import MODELS
>>> sorted(MODELS)
['fork', 'select', 'thread']
"""

from tcpref.servers.base import (
    BaseServer,
    HandlerFactory,
    ServerProcess,
    StopOutcome,
    running,
    running_forked,
    serve_connection,
)
from tcpref.servers.fork_server import ForkServer
from tcpref.servers.handlers import Echo, Handler, LineHandler, LineUpper, Upper
from tcpref.servers.select_server import SelectServer
from tcpref.servers.thread_server import ThreadServer

__all__ = [
    "HANDLERS",
    "MODELS",
    "BaseServer",
    "Echo",
    "ForkServer",
    "Handler",
    "HandlerFactory",
    "LineHandler",
    "LineUpper",
    "SelectServer",
    "ServerProcess",
    "StopOutcome",
    "ThreadServer",
    "Upper",
    "running",
    "running_forked",
    "serve_connection",
]

#: The server class for each model name.
MODELS: dict[str, type[BaseServer]] = {
    "fork": ForkServer,
    "thread": ThreadServer,
    "select": SelectServer,
}

#: The handlers the command line offers, by name.
HANDLERS: dict[str, HandlerFactory] = {"echo": Echo, "upper": Upper, "line-upper": LineUpper}
