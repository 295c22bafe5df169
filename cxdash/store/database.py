"""The store: one engine factory, the table definitions, bulk writes, and lock-aware connections.

Two groups of tables are kept apart so each can live on its own engine later:

* analytical tables (``ANALYTICS``): one table per source kind (``src_<kind>``), the identity
  map, the load log and the quarantine. These are written together in one transaction.
* app state (``APP_STATE``): saved column mappings (and later users, audit, model registry).

Every query goes through SQLAlchemy; the only dialect-specific code is ``bulk_insert``,
which uses each engine's native bulk path (DuckDB frame scan, PostgreSQL COPY) and falls back
to a portable ``executemany``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from cxdash.config import analytics_url, database_url, duckdb_memory_limit
from cxdash.store.embedded import is_lock_error, share_one_instance
from cxdash.store.kinds import KINDS, SourceKind

__all__ = [
    "ANALYTICS",
    "APP_STATE",
    "CHANGE_KINDS",
    "IDENTITY_REBUILD",
    "IDENTITY_UNSTITCHED",
    "KIND_TABLES",
    "META_COLUMNS",
    "ROW_GROUP_ROWS",
    "Store",
    "StoreLockedError",
    "activation_table",
    "active_keys_table",
    "activity_days_table",
    "audit_table",
    "bulk_insert",
    "changes_table",
    "customer_keys_table",
    "discard_load",
    "discard_unrecorded_loads",
    "identity_hubs_table",
    "identity_map_table",
    "identity_restitch_table",
    "kind_columns",
    "link_conflicts_table",
    "loads_table",
    "make_engine",
    "mappings_table",
    "models_table",
    "open_store",
    "pending_work_table",
    "quarantine_table",
    "read_frame",
    "request_work",
    "rescores_table",
    "revenue_days_table",
    "rollup_appends_table",
    "rollup_state_table",
    "scores_table",
    "settings_table",
    "source_links_table",
    "sources_table",
    "summaries_table",
    "suppression_table",
    "users_table",
    "work_done",
    "work_pending",
]

log = logging.getLogger(__name__)

# sparkthrift:// URLs (a Spark SQL Thrift server) resolve to cxdash.store.spark's dialect; SQLAlchemy
# imports that module (and PyHive) only when such a URL is used.
registry.register("sparkthrift", "cxdash.store.spark", "SparkThriftDialect")
registry.register("sparkthrift.pyhive", "cxdash.store.spark", "SparkThriftDialect")
# duckdb:// URLs resolve to duckdb_engine's dialect with SQLAlchemy's compiled-statement cache on
# (cxdash.store.dialect.DuckDBDialect says why).
registry.register("duckdb", "cxdash.store.dialect", "DuckDBDialect")

ANALYTICS = sa.MetaData()
APP_STATE = sa.MetaData()

_SA_TYPES = {
    "string": sa.String,
    "datetime": sa.DateTime,
    "float": sa.Double,  # sa.Float is single precision on DuckDB
    "int": sa.BigInteger,
    "bool": sa.Boolean,
}

# Columns every kind table has besides its canonical fields.
META_COLUMNS = ("source", "load_id", "row_number", "row_key", "id_key", "cx_key", "link_key", "attrs")


def kind_columns(kind: SourceKind) -> list[sa.Column]:
    """Fresh column objects for a kind's table (also used for staging tables)."""
    return [
        sa.Column("source", sa.String, nullable=False),
        sa.Column("load_id", sa.BigInteger, nullable=False),
        sa.Column("row_number", sa.BigInteger, nullable=False),
        sa.Column("row_key", sa.String, nullable=False),
        sa.Column("id_key", sa.String),
        # The row's stitched customer as an integer (``customer_keys.cx_key``), written when
        # identities are stitched so queries group and join on an integer instead of joining
        # every row to the identity map on its text identifier.
        sa.Column("cx_key", sa.BigInteger),
        # A key of another extract the row reaches its customer through, written
        # ``<source>.<field>:<value>`` (``subs.subscription_id:S-17``); see cxdash/identity/links.py.
        sa.Column("link_key", sa.String),
        *[sa.Column(f.name, _SA_TYPES[f.dtype]()) for f in kind.fields],
        sa.Column("attrs", sa.Text),
    ]


KIND_TABLES: dict[str, sa.Table] = {
    name: sa.Table(
        f"src_{name}",
        ANALYTICS,
        *kind_columns(kind),
        # Row-store engines need these for the anti-join and the identity join; DuckDB's
        # columnar scans do not, and its ART indexes slow bulk loads several-fold.
        sa.Index(f"ix_src_{name}_source_key", "source", "row_key").ddl_if(dialect="postgresql"),
        sa.Index(f"ix_src_{name}_id_key", "id_key").ddl_if(dialect="postgresql"),
        sa.Index(f"ix_src_{name}_cx_key", "cx_key").ddl_if(dialect="postgresql"),
        sa.Index(f"ix_src_{name}_link_key", "link_key").ddl_if(dialect="postgresql"),
        # Engines without DELETE (Spark SQL on Parquet) keep one partition per load, so a failed
        # load is dropped whole and a row change rewrites only its load's files (store/spark_dml).
        info={"partition_by": ["load_id"]},
    )
    for name, kind in KINDS.items()
}

sources_table = sa.Table(
    "sources",
    ANALYTICS,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("department", sa.String, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("latency_target_hours", sa.Double),
    # The team or person who answers for the source ("who to call"); NULL until someone says.
    sa.Column("owner", sa.String),
)

# Link columns a source declared (its mapping's ``links``): rows of ``source`` whose only
# identifier is ``column_name`` reach their customer through ``target_source``'s rows with the
# same ``target_field`` (cxdash/identity/links.py). Replaced on each load of ``source``.
source_links_table = sa.Table(
    "source_links",
    ANALYTICS,
    sa.Column("source", sa.String, primary_key=True),
    sa.Column("column_name", sa.String, primary_key=True),
    sa.Column("target_source", sa.String, nullable=False),
    sa.Column("target_field", sa.String, nullable=False),
)

# Link keys that lead to more than one customer (a subscription id reused across accounts):
# rows carrying them stay unmatched. Rebuilt with the identity map.
link_conflicts_table = sa.Table(
    "link_conflicts",
    ANALYTICS,
    sa.Column("link_key", sa.String, primary_key=True),
    sa.Column("customers", sa.BigInteger, nullable=False),
)

loads_table = sa.Table(
    "loads",
    ANALYTICS,
    sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("mode", sa.String, nullable=False),
    sa.Column("file_name", sa.String),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=False),
    sa.Column("rows_read", sa.BigInteger, nullable=False),
    sa.Column("rows_loaded", sa.BigInteger, nullable=False),
    sa.Column("rows_rejected", sa.BigInteger, nullable=False),
    sa.Column("rows_duplicate", sa.BigInteger, nullable=False),
    sa.Column("mapping_json", sa.Text),
)

quarantine_table = sa.Table(
    "quarantine",
    ANALYTICS,
    sa.Column("load_id", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("row_number", sa.BigInteger),
    sa.Column("column_name", sa.String),
    sa.Column("rule", sa.String),
    sa.Column("value", sa.Text),
    sa.Column("reason", sa.Text),
)

identity_map_table = sa.Table(
    "identity_map",
    ANALYTICS,
    sa.Column("id_key", sa.String, primary_key=True),
    sa.Column("cx_id", sa.String, nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("cx_key", sa.BigInteger),
    # The identifier's part of the identity graph with the hubs of many links taken out (its
    # lexically first identifier; a hub is a part of its own). Stitching decomposes over parts,
    # so an append restitches only the parts its identifiers touch (cxdash.identity.stitch).
    # NULL in a store written before: the next load rebuilds the whole map.
    sa.Column("part", sa.String),
)

# One row per stitched customer. ``cx_key`` is stable across rebuilds for a customer whose
# ``cx_id`` survives (new customers get new keys), so a rebuild rewrites only the rows whose
# customer changed.
customer_keys_table = sa.Table(
    "customer_keys",
    ANALYTICS,
    sa.Column("cx_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("cx_id", sa.String, nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
)

identity_hubs_table = sa.Table(
    "identity_hubs",
    ANALYTICS,
    sa.Column("id_key", sa.String, primary_key=True),
    sa.Column("degree", sa.BigInteger, nullable=False),
    # "many links" or "equally near two CRM customers" (cxdash.identity.stitch.stitch)
    sa.Column("reason", sa.String),
)

# Identifiers of rows that stitching moved off a hub (cxdash.identity.stitch._rekey_hub_rows):
# the move changed their links, so the next load restitches their parts. Emptied by each stitch.
identity_restitch_table = sa.Table(
    "identity_restitch",
    ANALYTICS,
    sa.Column("id_key", sa.String, primary_key=True),
)

# The data version (cxdash/store/version.py): one row per committed change of the analytical
# data, numbered 1, 2, 3...; the version is the highest id.
# A "department" change moves a source to another department (cxdash.governance.sources): no row
# changes, but every stored view that names departments does.
CHANGE_KINDS = ("load", "replace", "erasure", "upgrade", "department")
changes_table = sa.Table(
    "changes",
    ANALYTICS,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String, nullable=False),  # one of CHANGE_KINDS
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.Column("load_id", sa.BigInteger),  # the load, for a load or a replace
)

# Work a migration left for a higher layer (a migration that needs the identity map rebuilt
# cannot run the rebuild here: the store imports nothing above it). Done work is deleted.
IDENTITY_REBUILD = "identity_rebuild"
# Noted by a load that skipped stitching (``rebuild_identities=False``): its rows are in no part of
# the identity map yet, so the next stitch must be the full rebuild (cxdash.identity.stitch).
# Unlike IDENTITY_REBUILD, opening the store does not run it: the loader stitches when it is done.
IDENTITY_UNSTITCHED = "identity_unstitched"
pending_work_table = sa.Table(
    "pending_work",
    ANALYTICS,
    sa.Column("task", sa.String, primary_key=True),
    sa.Column("requested_at", sa.DateTime, nullable=False),
)

# Per-customer daily rollups of the source rows (cxdash/store/rollups.py): what the KPIs for any period
# read instead of every raw row. Integer keys, days and sums only: no identifier.
activity_days_table = sa.Table(
    "activity_days",
    ANALYTICS,
    sa.Column("cx_key", sa.BigInteger, nullable=False),
    sa.Column("day", sa.DateTime, nullable=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("department", sa.String),  # the row's own department; NULL: the source's
)
revenue_days_table = sa.Table(
    "revenue_days",
    ANALYTICS,
    sa.Column("cx_key", sa.BigInteger, nullable=False),
    sa.Column("day", sa.DateTime, nullable=False),
    sa.Column("status", sa.String),
    sa.Column("amount", sa.Double, nullable=False),
)
active_keys_table = sa.Table(  # the customers of activity_days, per source: who did anything at all
    "active_keys",
    ANALYTICS,
    sa.Column("cx_key", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String, nullable=False),
)
rollup_state_table = sa.Table(  # one row: the data version the rollups hold (none: not built)
    "rollup_state",
    ANALYTICS,
    sa.Column("data_version", sa.BigInteger, nullable=False),
    sa.Column("built_at", sa.DateTime, nullable=False),
)
rollup_appends_table = sa.Table(  # loads whose rows the rollups can take as they are (no earlier row changed)
    "rollup_appends",
    ANALYTICS,
    sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
)

# Aggregates over every row, computed after each load for the landing pages (cxdash/jobs/summaries.py).
summaries_table = sa.Table(
    "summaries",
    ANALYTICS,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("data_version", sa.BigInteger, nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
    sa.Column("seconds", sa.Double),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)

mappings_table = sa.Table(
    "mappings",
    APP_STATE,
    sa.Column("source", sa.String, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("mapping_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Company-wide choices that are not data: the churn definition ("churn_definition") and the like.
settings_table = sa.Table(
    "settings",
    APP_STATE,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("updated_by", sa.String),
)


class StoreLockedError(RuntimeError):
    """The embedded database file is held by another writer for longer than we wait."""


@dataclass
class Store:
    """A handle on the analytical store and the app-state store (often the same database)."""

    engine: Engine
    app_engine: Engine
    lock_timeout_s: float = 30.0

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def transactional(self) -> bool:
        """Whether a failed write rolls back on the analytical store. Spark SQL has no transactions
        (each statement commits on its own): a failed load is undone with ``discard_load``."""
        return getattr(self.engine.dialect, "cxdash_transactional", True)

    def create_schema(self) -> list[str]:
        """Create any missing tables and add any missing columns (idempotent).

        Returns what was upgraded. A store written before rows carried their customer key gets
        the key columns and a note that its identity map must be rebuilt (``pending_work``; the
        rebuild belongs to cxdash.identity, run by ``cxdash.jobs.open_store`` / ``upgrade_store``).
        A store written before the ``changes`` table keeps its data version (its highest load id).
        """
        with self.begin() as conn:
            stale_rollups = _rollup_tables_missing(conn)
            ANALYTICS.create_all(conn)
            if stale_rollups:  # a rollup table the store did not have: its rollups are rebuilt
                conn.execute(rollup_state_table.delete())
            added = _add_missing_columns(conn, ANALYTICS)
            if any(col == "cx_key" for _, col in added):
                request_work(conn, IDENTITY_REBUILD)
            kept = _start_changes(conn)
        with self.app_begin() as conn:
            APP_STATE.create_all(conn)
            added += _add_missing_columns(conn, APP_STATE)
        notes = [f"added column {table}.{col}" for table, col in added]
        return notes + ([f"data version {kept} kept (now in the changes table)"] if kept else [])

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._retrying(self.engine.connect) as conn:
            yield conn

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction: commits on success, rolls back on any error."""
        with self._retrying(self.engine.connect) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def app_connect(self) -> Iterator[Connection]:
        """A connection to the app-state store, no transaction begun (``connect`` for app state)."""
        with self._retrying(self.app_engine.connect) as conn:
            yield conn

    @contextlib.contextmanager
    def app_begin(self) -> Iterator[Connection]:
        with self._retrying(self.app_engine.connect) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _retrying(self, connect) -> Iterator[Connection]:
        """Open a connection, retrying while another process holds the DuckDB file lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                conn = connect()
                break
            except sa.exc.DBAPIError as exc:  # pragma: no branch - depends on timing
                if not is_lock_error(exc) or time.monotonic() >= deadline:
                    if is_lock_error(exc):
                        raise StoreLockedError(
                            f"The database {self.url} is locked by another process (a running "
                            f"ingest?) and stayed locked for {self.lock_timeout_s:.0f} s. Wait for "
                            "it to finish and try again."
                        ) from exc
                    raise
                # Short, jittered waits: a lock is usually held for one query or one load, and a
                # long sleep would let a stream of readers starve a waiting writer.
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter for a retry, not a secret
                delay = min(delay * 1.5, 0.2)
        try:
            yield conn
        finally:
            conn.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.app_engine is not self.engine:
            self.app_engine.dispose()


# Rollup tables added after stores were written: such a store's rollups say they are current but
# lack the new table's rows, so they are marked stale (the next refresh rebuilds them).
_LATER_ROLLUPS = ("active_keys",)


def _rollup_tables_missing(conn: Connection) -> bool:
    """Whether the store holds rollups but not every rollup table (``_LATER_ROLLUPS``)."""
    names = set(sa.inspect(conn).get_table_names())
    return "rollup_state" in names and not set(_LATER_ROLLUPS) <= names


def _add_missing_columns(conn: Connection, metadata: sa.MetaData) -> list[tuple[str, str]]:
    """``ALTER TABLE ... ADD COLUMN`` for columns our schema has and the database lacks.

    Only nullable columns are ever added this way; names come from our own metadata, quoted
    by the dialect.
    """
    prep = conn.dialect.identifier_preparer
    added = []
    for table in metadata.sorted_tables:
        # the result's column names: portable (duckdb-engine's inspector reads pg_catalog)
        have = set(conn.execute(sa.select(sa.literal_column("*")).select_from(table).limit(0)).keys())
        new = []
        for col in table.columns:
            if col.name in have:
                continue
            kind = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.quote(col.name)} {kind}")
            added.append((table.name, col.name))
            new.append(col.name)
        # create_all makes indexes only with new tables: an index on an added column comes here
        # (the same dialect conditions apply, e.g. PostgreSQL-only indexes)
        for index in table.indexes:
            if {c.name for c in index.columns} & set(new):
                index.create(conn, checkfirst=True)
    return added


def _start_changes(conn: Connection) -> int:
    """Start an empty ``changes`` table at the version a store of the old scheme had (its highest
    load id), so the version never goes back. Returns that version (0: nothing to keep)."""
    if conn.execute(sa.select(changes_table.c.id).limit(1)).first() is not None:
        return 0
    old = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(loads_table.c.load_id), 0))).scalar())
    if old:
        now = datetime.now(UTC).replace(tzinfo=None)
        conn.execute(changes_table.insert().values(id=old, kind="upgrade", changed_at=now, load_id=None))
    return old


def request_work(conn: Connection, task: str) -> None:
    """Note in ``conn``'s transaction that ``task`` must run on this store (idempotent)."""
    if conn.execute(sa.select(pending_work_table.c.task).where(pending_work_table.c.task == task)).first() is None:
        conn.execute(pending_work_table.insert().values(task=task, requested_at=datetime.now(UTC).replace(tzinfo=None)))


def work_pending(conn: Connection, task: str) -> bool:
    return (
        conn.execute(sa.select(pending_work_table.c.task).where(pending_work_table.c.task == task)).first() is not None
    )


def work_done(conn: Connection, task: str) -> None:
    conn.execute(pending_work_table.delete().where(pending_work_table.c.task == task))


def _load_tables() -> list[sa.Table]:
    return [t for t in ANALYTICS.sorted_tables if "load_id" in t.c]


def discard_load(conn: Connection, load_id: int) -> None:
    """Remove everything load ``load_id`` wrote to the analytical tables: its rows, quarantine, load
    log entry and data-version row. For engines without rollback (``Store.transactional`` false),
    where a failed load's statements have already committed; elsewhere the rollback does this."""
    for table in _load_tables():
        conn.execute(table.delete().where(table.c.load_id == load_id))


def discard_unrecorded_loads(conn: Connection) -> int:
    """Remove the rows of loads that never reached the load log: a load process killed midway on an
    engine without rollback leaves them (its statements commit one by one). Returns how many source
    tables held some. Run before a new load takes the next load id; on such an engine, one loader at
    a time (a load still running in another process would be removed too)."""
    recorded = sa.select(loads_table.c.load_id)
    touched = 0
    for table in KIND_TABLES.values():
        gone = conn.execute(table.delete().where(table.c.load_id.not_in(recorded))).rowcount or 0
        touched += gone > 0
    conn.execute(quarantine_table.delete().where(quarantine_table.c.load_id.not_in(recorded)))
    return touched


def make_engine(url: str) -> Engine:
    """The one engine factory. DuckDB files get short-lived connections (NullPool) so that
    another process (a scheduled ingest) can take the write lock between page runs; in one process
    they are cursors of one database instance (``cxdash.store.embedded``), so threads that open and
    close the file at once do not trip over each other."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "duckdb":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, poolclass=NullPool)
            share_one_instance(engine)
        else:
            engine = sa.create_engine(url)

        limit = duckdb_memory_limit()

        @sa.event.listens_for(engine, "connect")
        def _settings(dbapi_connection, _record):
            dbapi_connection.execute("SET enable_progress_bar = false")  # no progress bars on a server's stdout
            if limit:  # validated in duckdb_memory_limit: a size like 4GB
                dbapi_connection.execute(f"SET memory_limit = '{limit}'")

        return engine
    if parsed.get_backend_name() == "sparkthrift":
        # A Spark Thrift session caches each table's list of files: a session kept in a pool would
        # go on reading the files another process's write replaced (FAILED_READ_FILE), or not see
        # its new ones (an old data version). So each connection is a new session (about 0.1 s).
        return sa.create_engine(url, poolclass=NullPool)
    return sa.create_engine(url, pool_pre_ping=True)


def open_store(url: str | None = None, app_url: str | None = None, *, create: bool = True) -> Store:
    """Open (and by default create) a store.

    With one URL (``url``, else ``cxdash.config.database_url``): the app state lives there, and the
    analytical tables too unless ``CXDASH_ANALYTICS_URL`` points elsewhere (``analytics_url``).
    With both, ``url`` holds the analytical tables and ``app_url`` the app state.
    """
    if app_url is None:
        app_url = database_url(url)
        url = analytics_url(app_url)
    else:
        url = database_url(url)
    engine = make_engine(url)
    app_engine = engine if app_url == url else make_engine(app_url)
    store = Store(engine, app_engine)
    if create:
        store.create_schema()
    return store


# DuckDB's row group (its default ``row_group_size``). A load writes its rows in whole groups of
# this many (cxdash.ingest.load): an insert ending on a partial group leaves DuckDB a group that
# the next insert continues in another, which the commit merges and writes again.
ROW_GROUP_ROWS = 122_880


def _as_arrow(frame: pd.DataFrame) -> pa.Table | pd.DataFrame:
    """``frame`` as one contiguous Arrow table for DuckDB to scan, else the frame itself.

    DuckDB scans Arrow columns with less work than a pandas frame (5-25% of a 1M-row insert
    in the issue 8 measurements), and a one-chunk table keeps its parallel, order-preserving
    insert from writing row groups twice: columns chunked at different rows reach it as many
    small batches, which it writes, then merges and rewrites at commit (a pandas scan does that
    now and then too). Values are the same either way (NaN and missing become NULL); a column
    Arrow cannot type (mixed Python objects) keeps the pandas scan.
    """
    try:
        return pa.Table.from_pandas(frame, preserve_index=False).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return frame


def bulk_insert(conn: Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Append ``frame`` (columns named like ``table``'s) inside the caller's transaction."""
    if frame.empty:
        return 0
    cols = [c.name for c in table.columns if c.name in frame.columns]
    frame = frame[cols]
    dialect = conn.dialect.name
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in cols)
    target = conn.dialect.identifier_preparer.format_table(table)
    if dialect == "duckdb":
        raw = conn.connection.driver_connection
        # DuckDB 2 refuses new work while an earlier result is only partly read (scalar()).
        raw.complete()
        # The rows travel as a local variable that DuckDB's replacement scan reads by name, not as a
        # registered view: a view registered and dropped inside a transaction keeps its frame alive
        # until the commit (the catalog keeps dropped entries for a rollback), so a load of many
        # chunks held every chunk in memory, outside DuckDB's memory_limit (issue 17: 10.8 GB for
        # the 1M demo's web events). Identifiers only, all quoted by the dialect (table and column
        # names come from our own schema, never from a file).
        _cxdash_bulk_rows = _as_arrow(frame)
        raw.execute(f"INSERT INTO {target} ({quoted}) SELECT {quoted} FROM _cxdash_bulk_rows")  # noqa: S608
        raw.complete()
        del _cxdash_bulk_rows
    elif dialect == "postgresql":
        raw = conn.connection.driver_connection
        obj = frame.astype(object).where(frame.notna(), None)
        with raw.cursor() as cur, cur.copy(f"COPY {target} ({quoted}) FROM STDIN") as copy:
            for row in obj.itertuples(index=False, name=None):
                copy.write_row(row)
    elif hasattr(conn.dialect, "insert_frame") and conn.dialect.insert_frame(conn, table, frame):
        pass  # Spark: Parquet files and one INSERT (store/spark.py)
    else:  # portable fallback
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        conn.execute(table.insert(), records)
    return len(frame)


# ----------------------------------------------------------------------------- churn model (issue 6)
# App state: the model registry (the fitted pipeline pickled into a blob), the latest scores a
# CRM can read, and the activation log (who contacted or actioned which at-risk customer, when).
models_table = sa.Table(
    "models",
    APP_STATE,
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("kind", sa.String, nullable=False),  # "events" (time-based) or "labelled" (own label)
    sa.Column("estimator", sa.String, nullable=False),
    sa.Column("label_column", sa.String),
    sa.Column("source", sa.String),
    sa.Column("cutoff", sa.DateTime),
    sa.Column("horizon_days", sa.Double),
    sa.Column("data_version", sa.BigInteger, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("features_json", sa.Text, nullable=False),
    sa.Column("pipeline", sa.LargeBinary, nullable=False),
)

scores_table = sa.Table(
    "scores",
    APP_STATE,
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("cx_id", sa.String, nullable=False),
    sa.Column("customer_id", sa.String),
    sa.Column("risk", sa.Double, nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("priority", sa.Double),
    sa.Column("top_reason", sa.String),
    sa.Column("department", sa.String),
    sa.Column("action", sa.String),
    sa.Column("reasons_json", sa.Text),
    sa.Column("scored_at", sa.DateTime, nullable=False),
)

# After each load: when its signals reached the customer card (the load stored) and the at-risk
# list (its customers scored again, cxdash.jobs.rescore), or why they did not; Data health shows
# each source's latest. No personal data: a load, its source, counts and times.
rescores_table = sa.Table(
    "load_rescores",
    APP_STATE,
    sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("load_started_at", sa.DateTime, nullable=False),
    sa.Column("stored_at", sa.DateTime, nullable=False),  # the load committed: on the card
    sa.Column("listed_at", sa.DateTime),  # its customers rescored: in the at-risk list (NULL: not)
    sa.Column("customers", sa.BigInteger),
    sa.Column("why", sa.Text),  # why the list was not updated
)

activation_table = sa.Table(
    "activation",
    APP_STATE,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("cx_id", sa.String, nullable=False),
    sa.Column("customer_id", sa.String),
    sa.Column("model_version", sa.BigInteger),
    sa.Column("risk", sa.Double),
    sa.Column("reasons", sa.Text),
    sa.Column("department", sa.String),
    sa.Column("action", sa.String),
    sa.Column("status", sa.String, nullable=False),  # contacted | actioned
    sa.Column("actor", sa.String),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


def read_frame(conn: Connection, stmt) -> pd.DataFrame:
    """Run a SELECT and return its rows as a frame, fast for millions of rows.

    DuckDB hands its result over as columns (no Python row objects); other engines go through
    plain tuples (building a frame from SQLAlchemy ``Row`` objects is pathologically slow).
    """
    result = conn.execute(stmt)
    columns = list(result.keys())
    if conn.dialect.name == "duckdb":
        frame = conn.connection.driver_connection.fetch_df()
        frame.columns = columns
        return frame
    return pd.DataFrame.from_records([tuple(r) for r in result], columns=columns)


# ----------------------------------------------------------------------------- access & privacy (issue 7)
# App state: the people who may sign in (argon2 hashes only, never a password), the audit log
# (who did what, when; erasures hold a salted hash of the customer id, never the id), and the
# erasure suppression list (salted hashes of every identifier of an erased customer, so that
# re-loading an old extract does not bring the customer back). Keys are explicit (no
# autoincrement on DuckDB).
users_table = sa.Table(
    "users",
    APP_STATE,
    sa.Column("username", sa.String, primary_key=True),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("password_hash", sa.String),  # NULL for single-sign-on accounts
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("failed_attempts", sa.BigInteger, nullable=False),
    sa.Column("locked_until", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("last_sign_in_at", sa.DateTime),
)

audit_table = sa.Table(
    "audit_log",
    APP_STATE,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("detail", sa.Text),  # JSON; never personal data
)

suppression_table = sa.Table(
    "erasure_suppression",
    APP_STATE,
    sa.Column("id_hash", sa.String, primary_key=True),  # HMAC-SHA256 of "field:normalised value"
    sa.Column("field", sa.String, nullable=False),
    sa.Column("erased_at", sa.DateTime, nullable=False),
)
