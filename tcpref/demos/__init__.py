"""Real scenarios on loopback, each set up by one function that returns what it saw.

The lifecycle pages and the tests share these functions: a page shows what a
scenario returns, and a test asserts it.  Each function opens real sockets on
127.0.0.1 with port 0, bounds every wait, and closes everything it opened before
it returns (a TIME_WAIT entry left in the kernel is the kernel's, not a leak).

* :mod:`tcpref.demos.opening`: the handshake, the backlog, connections with no
  ``accept`` or no ``listen``, and SYN retransmission.
* :mod:`tcpref.demos.closing`: teardown, TIME_WAIT and CLOSE_WAIT.
* :mod:`tcpref.demos.aborts`: half-close, resets, and crashes with keepalive.
* :mod:`tcpref.demos.exchanges`: short scripted connections to capture, the live
  twins of the simulator's scenarios.
"""
