"""Right to erasure: forget one customer everywhere, and keep them forgotten.

``erase_customer(store, "ann@example.com", actor="dpo")``:

1. resolves the identifier (customer id, account, email, phone, visitor id, or ``field:value``)
   to the stitched customer (``identity_map.cx_id``) and collects every identifier linked to it;
2. first, on the app-state store, adds a salted hash of every identifier to the suppression list
   (``erasure_suppression``): ``ingest_file`` drops rows carrying any of them, so neither a load
   running meanwhile nor re-loading an old extract brings the customer back; the customer's
   app-state rows (scores, follow-ups) go in the same transaction;
3. deletes, in one transaction on the analytical store, every row of every table that holds one
   of them. This is generic: any table on ``ANALYTICS`` or ``APP_STATE`` with a column named
   ``cx_id``, ``id_key``, ``customer_id``, ``account_id``, ``email``, ``phone`` or ``visitor_id``
   is searched, so tables added later (scores, activation lists, snapshots) are covered as long
   as they name their customer column one of those. The quarantine holds single failing values,
   so its rows whose value is one of the identifiers are deleted too. The identity map is then
   rebuilt from the rows that remain, the stored summaries (which counted the customer) are
   cleared, and the data version moves (``cxdash.store.version``: a change of kind ``erasure``)
   so no page serves a cached result that still shows the customer;
4. sweeps the app state again (rows a scoring run wrote between 2 and 3) and records the request in the audit log with a salted hash of the id (never the id).

On an embedded DuckDB file the freed space is then overwritten (``scrub_freed_space``): DuckDB
frees deleted rows' blocks without erasing them, so the file would otherwise still hold the ids.
What erasure cannot reach: backups and copies of the database, exported CSVs and extracts people
keep, and the source systems themselves.

Every step is idempotent on the customer: if one fails, running the same request again finishes
the job (a customer already gone from the analytical store is recognised by the suppression list).

Hub identifiers (a helpdesk's own address, a shared household phone) belong to nobody in
particular and are left alone, as are the other customers' rows that carry them.
Files on disk are not rewritten: uploads are removed from ``data/uploads`` once loaded, and the
demo extracts under ``data/demo`` are generated data.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from cxdash.identity.stitch import rebuild_identity_map
from cxdash.ingest.identifiers import normalise_identity
from cxdash.store import audit, rollups
from cxdash.store.database import (
    ANALYTICS,
    APP_STATE,
    KIND_TABLES,
    Store,
    customer_keys_table,
    identity_hubs_table,
    identity_map_table,
    quarantine_table,
    summaries_table,
    suppression_table,
)
from cxdash.store.kinds import IDENTITY_FIELDS
from cxdash.store.suppression import identifier_hash, secret_salt, suppressed_hashes
from cxdash.store.version import record_change

__all__ = [
    "CUSTOMER_COLUMNS",
    "ErasureError",
    "ErasureResult",
    "erase_customer",
    "resolve_customer",
]

log = logging.getLogger(__name__)

# Column names that identify a customer in any table (documented contract for new tables).
CUSTOMER_COLUMNS = ("cx_id", "id_key", *IDENTITY_FIELDS)
_SKIP = {identity_hubs_table.name, suppression_table.name}


class ErasureError(ValueError):
    """The request cannot be carried out as given (no such customer, ambiguous, a hub)."""


@dataclass
class ErasureResult:
    cx_id_hash: str
    identifiers: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    already_erased: bool = False  # a retry: the customer was gone from the analytical store already
    scrubbed: bool = False  # the embedded database file's freed space was overwritten (scrub_freed_space)
    audit_id: int | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows_deleted.values())

    def summary(self) -> str:
        if self.already_erased:
            return (
                f"already erased: the identifier is on the suppression list; the app state was swept again "
                f"({self.total_rows:,} rows deleted)"
            )
        parts = ", ".join(f"{t} {n:,}" for t, n in sorted(self.rows_deleted.items()) if n)
        return (
            f"erased customer {self.cx_id_hash[:12]}… ({self.identifiers} linked identifiers): "
            f"{self.total_rows:,} rows deleted ({parts or 'none'}); identifiers added to the suppression list"
        )


def _candidate_keys(identifier: str) -> list[str]:
    text = identifier.strip()
    field_name, sep, value = text.partition(":")
    if sep and field_name in IDENTITY_FIELDS:
        norm = normalise_identity(field_name, pd.Series([value], dtype="string")).iloc[0]
        return [] if pd.isna(norm) else [f"{field_name}:{norm}"]
    keys = []
    for f in IDENTITY_FIELDS:
        norm = normalise_identity(f, pd.Series([text], dtype="string")).iloc[0]
        if not pd.isna(norm):
            keys.append(f"{f}:{norm}")
    return keys


def resolve_customer(conn: sa.Connection, identifier: str) -> tuple[str, list[str]]:
    """``(cx_id, id_keys)``: the stitched customer an identifier belongs to and all its identifiers."""
    if not identifier or not identifier.strip():
        raise ErasureError("give the customer's id, email, phone, account or visitor id")
    im = identity_map_table
    keys = _candidate_keys(identifier)
    hubs = (
        {
            r[0]
            for r in conn.execute(sa.select(identity_hubs_table.c.id_key).where(identity_hubs_table.c.id_key.in_(keys)))
        }
        if keys
        else set()
    )
    keys = [k for k in keys if k not in hubs]
    cond = im.c.cx_id == identifier.strip()
    if keys:
        cond = sa.or_(cond, im.c.id_key.in_(keys))
    if hubs:
        cond = sa.and_(cond, im.c.id_key.not_in(hubs))
    cx_ids = sorted({r[0] for r in conn.execute(sa.select(im.c.cx_id).where(cond))} - hubs)
    if not cx_ids:
        if hubs:
            raise ErasureError(
                "that identifier is shared by several customers (a hub), so it names no one; "
                "give an identifier that belongs to this customer only"
            )
        raise ErasureError("no customer matches that identifier (nothing to erase)")
    if len(cx_ids) > 1:
        raise ErasureError(
            f"that value matches {len(cx_ids)} different customers; prefix it with the field, "
            "e.g. email:ann@example.com or account_id:ACC-1"
        )
    cx_id = cx_ids[0]
    id_keys = sorted(r[0] for r in conn.execute(sa.select(im.c.id_key).where(im.c.cx_id == cx_id)))
    return cx_id, id_keys


def _values_by_field(id_keys: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key in id_keys:
        f, _, value = key.partition(":")
        out[f].append(value)
    return out


def _match(table: sa.Table, cx_id: str, id_keys: list[str], values: dict[str, list[str]]):
    """The WHERE clause finding the customer's rows in ``table``, or None when it has no customer column."""
    conds = []
    if "cx_id" in table.c:
        conds.append(table.c.cx_id == cx_id)
    if "id_key" in table.c:
        conds.append(table.c.id_key.in_(id_keys))
    for f in IDENTITY_FIELDS:
        if f in table.c and values.get(f):
            conds.append(table.c[f].in_(values[f]))
    if "customer_id" in table.c and "customer_id" not in values:
        conds.append(table.c.customer_id == cx_id)  # unknown customers are keyed by their cx_id
    return sa.or_(*conds) if conds else None


def _delete_matching(
    conn: sa.Connection,
    metadata: sa.MetaData,
    cx_id: str,
    id_keys: list[str],
    values: dict[str, list[str]],
    counts: dict[str, int],
) -> None:
    for table in metadata.sorted_tables:
        if table.name in _SKIP:
            continue
        where = _match(table, cx_id, id_keys, values)
        if where is None:
            continue
        counts[table.name] = counts.get(table.name, 0) + int(conn.execute(table.delete().where(where)).rowcount or 0)


def _delete_linked_rows(conn: sa.Connection, cx_id: str, counts: dict[str, int]) -> None:
    """Rows that carry no identifier and reached the customer through a link (a usage row keyed
    by the customer's subscription id, cxdash/identity/links.py): found by the customer's key."""
    ck = customer_keys_table
    cx_key = conn.execute(sa.select(ck.c.cx_key).where(ck.c.cx_id == cx_id)).scalar()
    if cx_key is None:
        return
    for t in KIND_TABLES.values():
        gone = conn.execute(t.delete().where(t.c.cx_key == cx_key, t.c.id_key.is_(None), t.c.link_key.is_not(None)))
        counts[t.name] = counts.get(t.name, 0) + int(gone.rowcount or 0)


def erase_customer(store: Store, identifier: str, *, actor: str) -> ErasureResult:
    """Erase the customer ``identifier`` belongs to from every table; see the module docstring.

    Three steps, each idempotent on the customer, so a retry after a failure at any point finishes
    the job: (1) on the app-state store, the suppression hashes (from then on no load brings the
    customer back) and the customer's app rows (scores, follow-ups); (2) one transaction on the
    analytical store (rows, identity map, stored summaries, data version); (3) on the app-state
    store again, app rows written meanwhile (a scoring run between 1 and 2). A retry whose customer is already gone from the
    analytical store (a failure in step 3) finds the identifier suppressed and runs step 3 again.
    """
    salt = secret_salt()
    counts: dict[str, int] = {}
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with store.connect() as conn:
            cx_id, id_keys = resolve_customer(conn, identifier)
    except ErasureError:
        if not _already_suppressed(store, identifier, salt):
            raise
        return _finish_erased(store, identifier, actor=actor, salt=salt)
    values = _values_by_field(id_keys)
    hashes = {identifier_hash(k, salt): k.partition(":")[0] for k in id_keys}
    hashes[identifier_hash("cx_id:" + cx_id, salt)] = "cx_id"
    with store.app_begin() as conn:  # 1
        have = {
            r[0]
            for r in conn.execute(
                sa.select(suppression_table.c.id_hash).where(suppression_table.c.id_hash.in_(list(hashes)))
            )
        }
        new = [{"id_hash": h, "field": f, "erased_at": now} for h, f in hashes.items() if h not in have]
        if new:
            conn.execute(suppression_table.insert(), new)
        _delete_matching(conn, APP_STATE, cx_id, id_keys, values, counts)
    _fail_point("suppressed")
    with store.begin() as conn:  # 2
        raw_values = sorted({v for vs in values.values() for v in vs} | {cx_id})
        q = quarantine_table
        counts["quarantine"] = int(
            conn.execute(
                q.delete().where(
                    sa.or_(q.c.value.in_(raw_values), sa.func.lower(q.c.value).in_([v.lower() for v in raw_values]))
                )
            ).rowcount
            or 0
        )
        _delete_linked_rows(conn, cx_id, counts)
        _delete_matching(conn, ANALYTICS, cx_id, id_keys, values, counts)
        rebuild_identity_map(conn)
        conn.execute(summaries_table.delete())  # stored aggregates counted the customer
        rollups.clear(conn)  # so did the daily rollups (rebuilt by the next refresh)
        record_change(conn, "erasure")
    _fail_point("analytics")
    with store.app_begin() as conn:  # 3
        _delete_matching(conn, APP_STATE, cx_id, id_keys, values, counts)
    result = ErasureResult(
        identifier_hash("cx_id:" + cx_id, salt), len(id_keys), {k: v for k, v in counts.items() if v}
    )
    touched = {t for t, n in counts.items() if n} | REBUILT_TABLES
    result.scrubbed = scrub_freed_space(store, touched)
    result.audit_id = audit.record(
        store,
        actor,
        "erasure",
        {
            "request_hash": identifier_hash("request:" + identifier.strip().lower(), salt),
            "customer_hash": result.cx_id_hash,
            "identifiers": len(id_keys),
            "rows_deleted": result.rows_deleted,
        },
    )
    log.info(result.summary())
    return result


# Tables an erasure rewrites whatever it deleted from them: the identity map and the customer keys
# are rebuilt, the summaries and daily rollups cleared (all held the customer or their key).
REBUILT_TABLES = {identity_map_table.name, "customer_keys", "summaries", "activity_days", "revenue_days"}


def scrub_freed_space(store: Store, tables: set[str]) -> bool:
    """Leave no copy of deleted rows in an embedded DuckDB file (a PostgreSQL server reuses its own
    space; its VACUUM is the operator's). True when a DuckDB file was scrubbed.

    DuckDB marks deleted rows and frees whole blocks at a checkpoint, but never overwrites them, so
    the deleted values stay readable in the file (``strings demo.duckdb``). Each table in ``tables``
    is rewritten in place (its rows copied out, deleted, copied back: the old row groups become
    free blocks), then every free block is overwritten by a throw-away table of random numbers
    that is dropped again. The file itself is not replaced, so connections that other threads of
    this process hold stay valid. It costs a copy of the touched tables (seconds on a demo, about
    a minute on a million customers): an erasure is rare and must be complete.
    """
    done = False
    opens = [(store.engine, store.connect)]
    if store.app_engine is not store.engine:
        opens.append((store.app_engine, store.app_connect))
    for engine, connect in opens:
        if engine.dialect.name != "duckdb":
            continue
        with connect() as conn:
            names = set(sa.inspect(conn).get_table_names()) & tables
            conn.rollback()  # the inspection began a transaction: the rewrite is one of its own
            with conn.begin():
                for name in sorted(names):
                    quoted = conn.dialect.identifier_preparer.quote(name)
                    conn.exec_driver_sql(f"CREATE TEMP TABLE cxdash_keep AS SELECT * FROM {quoted}")  # noqa: S608
                    conn.exec_driver_sql(f"DELETE FROM {quoted}")  # noqa: S608
                    conn.exec_driver_sql(f"INSERT INTO {quoted} SELECT * FROM cxdash_keep")  # noqa: S608
                    conn.exec_driver_sql("DROP TABLE cxdash_keep")
            conn.exec_driver_sql("CHECKPOINT")
            conn.commit()
            free_blocks, block_size = conn.exec_driver_sql(
                "SELECT free_blocks, block_size FROM pragma_database_size()"
            ).one()
            if free_blocks:
                # 8 incompressible bytes a row, a fifth more than the free space, so every free block is written
                rows = int(free_blocks * block_size / 8 * 1.2) + 1
                conn.execute(
                    sa.text("CREATE TABLE cxdash_scrub AS SELECT hash(range, random()) AS x FROM range(:rows)"),
                    {"rows": rows},
                )
                conn.commit()
                conn.exec_driver_sql("CHECKPOINT")
                conn.commit()
                conn.exec_driver_sql("DROP TABLE cxdash_scrub")
                conn.commit()
                conn.exec_driver_sql("CHECKPOINT")
            conn.commit()
        done = True
    return done


def _fail_point(step: str) -> None:
    """A place where tests make an erasure fail between its steps (a crash, a lost connection)."""


def _already_suppressed(store: Store, identifier: str, salt: bytes) -> bool:
    """Is ``identifier`` (as typed) one of an erased customer's identifiers?"""
    keys = [*_candidate_keys(identifier), "cx_id:" + identifier.strip()]
    wanted = [identifier_hash(k, salt) for k in keys]
    with store.app_begin() as conn:
        return (
            conn.execute(
                sa.select(sa.func.count()).select_from(suppression_table).where(suppression_table.c.id_hash.in_(wanted))
            ).scalar()
            > 0
        )


def _finish_erased(store: Store, identifier: str, *, actor: str, salt: bytes) -> ErasureResult:
    """Step 3 again, for a customer already gone from the analytical store: delete the app rows of
    every suppressed identifier (found by hashing the app tables' customer columns; the ids
    themselves are no longer on record), and clear the stored summaries again (a refresh may
    have stored some since)."""
    suppressed = suppressed_hashes(store)
    counts: dict[str, int] = {}
    with store.app_begin() as conn:
        for table in APP_STATE.sorted_tables:
            if table.name in _SKIP:
                continue
            for col in (c for c in ("cx_id", *IDENTITY_FIELDS) if c in table.c):
                distinct = [
                    r[0] for r in conn.execute(sa.select(table.c[col]).where(table.c[col].is_not(None)).distinct())
                ]
                gone = [v for v in distinct if identifier_hash(f"{col}:{v}", salt) in suppressed]
                if gone:
                    n = conn.execute(table.delete().where(table.c[col].in_(gone))).rowcount or 0
                    counts[table.name] = counts.get(table.name, 0) + int(n)
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
    result = ErasureResult(
        identifier_hash("request:" + identifier.strip().lower(), salt),
        0,
        {k: v for k, v in counts.items() if v},
        already_erased=True,
    )
    # which tables the interrupted run deleted from is not known: every table is rewritten
    result.scrubbed = scrub_freed_space(store, {t.name for t in (*ANALYTICS.sorted_tables, *APP_STATE.sorted_tables)})
    result.audit_id = audit.record(
        store,
        actor,
        "erasure",
        {
            "request_hash": result.cx_id_hash,
            "already_erased": True,
            "rows_deleted": result.rows_deleted,
        },
    )
    log.info(result.summary())
    return result
