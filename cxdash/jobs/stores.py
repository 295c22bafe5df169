"""Opening a store for the app and the command line, with the work a migration left behind.

``cxdash.store.open_store`` creates and upgrades the schema but cannot rebuild the identity map
(the store imports nothing above it): a migration that needs one notes it (``pending_work``), and
``open_store`` / ``upgrade_store`` here run it, once, in one transaction.
"""

from __future__ import annotations

from cxdash.identity.stitch import rebuild_if_pending
from cxdash.store import database
from cxdash.store.database import Store

__all__ = ["finish_pending_work", "open_store", "upgrade_store"]


def finish_pending_work(store: Store) -> list[str]:
    """Run what a migration asked for (the identity rebuild); what was done, in words."""
    with store.begin() as conn:
        rebuilt = rebuild_if_pending(conn)
    return [] if rebuilt is None else [f"identity map rebuilt ({rebuilt['customers']:,} customers)"]


def open_store(url: str | None = None, app_url: str | None = None, *, create: bool = True) -> Store:
    """``cxdash.store.open_store``, then any work its migration left (with ``create``)."""
    store = database.open_store(url, app_url, create=create)
    if create:
        finish_pending_work(store)
    return store


def upgrade_store(store: Store) -> list[str]:
    """Bring ``store``'s schema up to date and finish what the migration needs; what changed."""
    changes = store.create_schema()
    return changes + finish_pending_work(store)
