"""``python -m gemmperf``."""

import sys

from gemmperf.cli import main

sys.exit(main())
