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
* :mod:`tcpref.demos.losses`: the simulator's loss scenarios on the live kernel, each
  in a private network namespace with a socket filter.
* :mod:`tcpref.demos.peers`: failures that need a misbehaving peer, played behind a
  TUN device: a vanished host, an unacknowledged FIN, an old duplicate SYN.
* :mod:`tcpref.demos.nagle`: Nagle's algorithm, delayed ACKs and the 40 ms stall.
* :mod:`tcpref.demos.congestion`: the congestion window, slow start and losses.
* :mod:`tcpref.demos.options`: window scaling, SACK and timestamps.
* :mod:`tcpref.demos.reuse`: ``SO_REUSEADDR`` and ``SO_REUSEPORT``.
* :mod:`tcpref.demos.ipv6`: the same calls on ``::1``, and dual-stack listeners.
* :mod:`tcpref.demos.time_wait_early`: the ways a TIME_WAIT ends before its 60 s.

Many of them run in a private network namespace (:func:`tcpref.netns.run`), which
any user may make where the kernel allows it; each says so in its docstring.
"""
