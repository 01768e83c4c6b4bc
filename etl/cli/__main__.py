"""``python -m etl.cli``: the same as ``vardflytt``."""

from etl.cli import main

main()
