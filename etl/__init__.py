"""The pipeline's code: extract, transform, validate, load, cutover.

Importing the package chooses the allocator of Arrow's memory pool, before pyarrow is loaded
(Arrow reads ``ARROW_DEFAULT_MEMORY_POOL`` once, when its library loads; a pool set later with
``pyarrow.set_memory_pool`` covers pyarrow's calls only, and Arrow's own threads would keep
allocating from the first one). On Linux it is jemalloc, bundled with pyarrow, instead of
Arrow's default mimalloc: mimalloc keeps the pages freed on Arrow's reader threads until those
threads allocate again, so a process running stage after stage (``vardflytt run``, a worker, the
bench) held more the more rows it had read, a stage's peak standing on what the stages before
it left (the same run at 10x the people peaked 13% higher, issue 15). Arrow's jemalloc returns
freed pages after a second and at once on ``etl.core.memory.release_unused``. An operator's
own ``ARROW_DEFAULT_MEMORY_POOL`` is kept. Drop this when Arrow's mimalloc gives pages back as
promptly (compare ``vardflytt bench --patients 200000`` with 20000, ``--jobs 1``)."""

import os
import sys

# Whether the pool was chosen here, not by the operator: a peer measured beside the pipeline
# (etl/bench/peers.py, dlt) is run with Arrow's default, not with this choice.
ARROW_POOL_CHOSEN_HERE = sys.platform.startswith("linux") and (
    "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
)
if ARROW_POOL_CHOSEN_HERE:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"
