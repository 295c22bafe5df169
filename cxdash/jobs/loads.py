"""What runs around a load: the check that reports a load's impact, and the work after a load.

The write path (cxdash.ingest) stores a file and knows nothing of the read paths; this module
brings the two together. ``check_file`` is a dry run that also says how the headline customer
count would move (the headline is a metric). ``after_load`` runs what the CLI, the upload page
and the demo run once a load committed: stitch identities when the loads skipped it, bring the
daily rollups up to date (``cxdash.store.rollups``), then refresh the stored summaries (``cxdash.jobs.summaries``), some now and some on a thread.
No model is rescored after a load: scoring stays the ``score`` command's and the Model page's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Connection

from cxdash.governance.sources import set_source_owner
from cxdash.identity.stitch import rebuild_identity_map
from cxdash.ingest.load import ingest_file
from cxdash.ingest.result import IngestResult
from cxdash.jobs.summaries import SUMMARIES, refresh, refresh_in_background
from cxdash.metrics import headline
from cxdash.store import rollups
from cxdash.store.database import Store
from cxdash.store.version import data_version

__all__ = [
    "after_load",
    "change_source_owner",
    "check_file",
    "headline_customers",
    "stitch_identities",
    "update_rollups",
]

log = logging.getLogger(__name__)


def headline_customers(conn: Connection) -> int:
    """The headline's customer count (what a check's impact reports before and after)."""
    return headline(conn).customers


def check_file(store: Store, path: str | Path, **options) -> IngestResult:
    """Validate ``path`` as ``ingest_file`` would load it, storing nothing, with the load's impact
    (``result.impact``). Options are ``ingest_file``'s."""
    return ingest_file(store, path, dry_run=True, count_customers=headline_customers, **options)


def stitch_identities(store: Store) -> dict:
    """Rebuild the identity map in one transaction (after loads made with ``rebuild_identities=False``)."""
    with store.begin() as conn:
        return rebuild_identity_map(conn)


def update_rollups(store: Store) -> str:
    """Bring the daily rollups (``cxdash.store.rollups``) up to the data, in one transaction that sees
    one snapshot of the rows (PostgreSQL: REPEATABLE READ, so a load committing meanwhile is either
    all in or all out). Returns what was done (``current``, ``added N loads``, ``rebuilt``)."""
    with store.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            done = rollups.maintain(conn)
    log.info("daily rollups: %s", done)
    return done


def after_load(
    store: Store,
    names: tuple[str, ...] = SUMMARIES,
    *,
    stitch: bool = False,
    background: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """The work after a committed load: stitch identities when ``stitch`` (the loads skipped it),
    bring the daily rollups up to date, refresh the summaries ``names`` now (``progress(name)`` before
    each) and start ``background`` ones on a thread (the rollups then go first on the thread).
    Returns seconds per summary refreshed now, and for the rollups (``rollups``) when done now."""
    if stitch:
        stitch_identities(store)
    took: dict[str, float] = {}
    if not background:  # else first on the thread: the views read the rollups, the landing summaries do not
        clock = time.perf_counter()
        update_rollups(store)
        took["rollups"] = round(time.perf_counter() - clock, 3)
    if names:
        took |= refresh(store, names, progress=progress)
    if background:
        refresh_in_background(store, background, first=update_rollups)
    return took


def change_source_owner(
    store: Store,
    source: str,
    *,
    department: str | None = None,
    owner: str | None = None,
    actor: str = "unknown",
    background: bool = False,
) -> dict:
    """``set_source_owner``, then, when the department actually changed (the data version moved: the
    stored views name departments), the stored summaries prepared again as after a load: now, or on
    a thread when ``background`` (the page; it computes live meanwhile). A new owner alone moves
    nothing. Out: the source's ``{"department", "owner"}`` after the change, with ``moved`` (the
    department changed) and ``seconds`` (the refresh done now; 0 otherwise)."""
    with store.connect() as conn:
        version = data_version(conn)
    after = set_source_owner(store, source, department=department, owner=owner, actor=actor)
    with store.connect() as conn:
        moved = data_version(conn) != version
    seconds = 0.0
    if moved and background:
        after_load(store, (), background=SUMMARIES)
    elif moved:
        clock = time.perf_counter()
        after_load(store)
        seconds = time.perf_counter() - clock
    return {**after, "moved": moved, "seconds": seconds}
