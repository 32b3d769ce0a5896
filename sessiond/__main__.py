"""`python -m sessiond` runs the command line."""

from __future__ import annotations

import sys

from sessiond.cli import main

sys.exit(main())
