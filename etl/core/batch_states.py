"""The states of a load batch (``load_batch.state``), shared by every stage that reads them.

Extraction keeps landing files by state, loading stages and accounts, promotion moves a batch
between them; so they live in the core, not with promotion (``etl/load/promote.py``)."""

from __future__ import annotations

STAGED, PROMOTED, ROLLED_BACK = "staged", "promoted", "rolled_back"
# Never promoted, and never will be: a later run of the system replaced it (``superseded_by``),
# or its accounting did not hold (``note`` says by how much). Their staged rows are gone.
SUPERSEDED, UNACCOUNTED = "superseded", "unaccounted"
