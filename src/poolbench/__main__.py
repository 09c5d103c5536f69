"""``python -m poolbench ...``: the same as the ``poolbench`` command."""

import sys

from poolbench.cli import main

sys.exit(main())
