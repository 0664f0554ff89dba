"""tcpref: a teaching reference for TCP and socket programming.

Every module uses the standard library only, so any of them can be copied into a
script.  Start with :mod:`tcpref.wrap`, the checked socket calls, and
:mod:`tcpref.errors`, the exceptions they raise.
"""

__version__ = "0.1.0"
