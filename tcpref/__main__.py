"""``python -m tcpref``: see :mod:`tcpref.cli`."""

import sys

from tcpref.cli import main

sys.exit(main())
