"""Jobs: what runs after a load or an erasure.
Owns the stored summaries and default views and the refresh that computes them.
The only layer that imports both the write path (ingest) and the read paths.
"""

from cxdash.jobs.loads import after_load, check_file, stitch_identities
from cxdash.jobs.stores import open_store, upgrade_store

__all__ = [
    "after_load",
    "check_file",
    "open_store",
    "stitch_identities",
    "upgrade_store",
]
