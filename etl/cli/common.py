"""What every command module of ``vardflytt`` shares: the (redacting) console."""

from __future__ import annotations

import sys

from etl.core.redact import RedactingConsole

# Wide enough for the accounting table when output goes to a file or CI log.
console = RedactingConsole(width=None if sys.stdout.isatty() else 160)
