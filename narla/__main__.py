"""``python -m narla ...``: the ``narla`` command, where it is not installed as a script (a checkout on PYTHONPATH)."""

import sys

from narla.cli import main

sys.exit(main())
