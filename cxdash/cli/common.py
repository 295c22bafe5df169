"""What every command shares: the store a command opens, the actor it audits as, JSON cells, churn in force."""

from __future__ import annotations

import getpass

from cxdash.jobs import open_store
from cxdash.metrics import churn

__all__ = ["churn_in_force", "cli_actor", "jsonable", "store_of"]


def store_of(args):
    return open_store(args.db)


def jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value != value:  # NaN / NaT
        return None
    return value


def churn_in_force(store):
    """The company's churn definition (or the suggestion when none is chosen)."""
    with store.connect() as conn:
        return churn.resolve(conn, churn.chosen_name(store))


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"
