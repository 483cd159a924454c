"""`python -m src.runs_table`: see `src/runs_table/cli.py`."""

import sys

from src.runs_table.cli import main

sys.exit(main())
