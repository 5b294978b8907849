"""``python -m cascade_routing``: the command line of :mod:`cascade_routing.cli`."""

import sys

from .cli import main

sys.exit(main())
