"""The store: engines, table definitions, migrations, bulk writes, the data version and the audit log.
Owns the kinds of extract (what each source table holds) and every app-state table.
Imports nothing else from cxdash but config.
"""

from cxdash.store.database import (
    ANALYTICS,
    APP_STATE,
    KIND_TABLES,
    Store,
    StoreLockedError,
    bulk_insert,
    open_store,
    read_frame,
)
from cxdash.store.kinds import IDENTITY_FIELDS, KINDS, SourceKind, get_kind
from cxdash.store.version import data_version, record_change

__all__ = [
    "ANALYTICS",
    "APP_STATE",
    "IDENTITY_FIELDS",
    "KINDS",
    "KIND_TABLES",
    "SourceKind",
    "Store",
    "StoreLockedError",
    "bulk_insert",
    "data_version",
    "get_kind",
    "open_store",
    "read_frame",
    "record_change",
]
