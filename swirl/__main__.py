"""``python -m swirl`` is the ``swirl`` command."""

import sys

from swirl.cli import main

sys.exit(main())
