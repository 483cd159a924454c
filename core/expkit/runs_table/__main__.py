"""`python -m expkit.runs_table`: see `expkit/runs_table/cli.py`."""

import sys

from expkit.runs_table.cli import main

sys.exit(main())
