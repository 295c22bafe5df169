"""Jobs: what runs after a load or an erasure.
Owns the stored summaries and default views and the refresh that computes them.
The only layer that imports both the write path (ingest) and the read paths.
"""

from cxdash.jobs.loads import after_load, change_source_owner, check_file, stitch_identities
from cxdash.jobs.rescore import activation_times, followup_words, rescore_touched
from cxdash.jobs.stores import open_store, upgrade_store

__all__ = [
    "activation_times",
    "after_load",
    "change_source_owner",
    "check_file",
    "followup_words",
    "open_store",
    "rescore_touched",
    "stitch_identities",
    "upgrade_store",
]
