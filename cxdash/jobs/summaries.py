"""Summaries computed once per load, so the pages open at once on a large store.

The Overview and Data health pages show aggregates over every stored row (customers per source,
activity per month, stitch and KPI coverage), and the Shared KPIs and Journeys pages open on a
default view (cxdash/jobs/views.py). On a million customers each takes seconds to minutes on a laptop,
and none depends on anything but the stored data, so ``refresh`` computes them after each
successful load (CLI ingest, the upload page, the demo) and stores them in the ``summaries`` table
keyed by the data version (and, for a view, its parameters). ``get`` returns the stored result
when it belongs to the current version and otherwise computes it live (never a stale answer);
``lookup`` only reads. An erasure clears them all.

Results are stored as Parquet (frames) or JSON (the headline, the KPI report, lists), never pickled.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pandas as pd
import pyarrow.feather as feather
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.governance import health
from cxdash.governance.privacy import consented_customers
from cxdash.jobs.view_increments import INCREMENTS as VIEW_INCREMENTS
from cxdash.jobs.view_increments import headline_after
from cxdash.jobs.views import COMPUTATIONS as VIEW_COMPUTATIONS
from cxdash.jobs.views import DEPENDS_ON, STORED_COMPUTATIONS, default_params, params_key
from cxdash.journeys import percentile_runs
from cxdash.metrics import Headline, KpiReport, churn, filter_options, headline, overview
from cxdash.metrics.churn import Definition, candidates
from cxdash.metrics.customers import filter_options_after
from cxdash.store import steady
from cxdash.store.database import Store, summaries_table
from cxdash.store.embedded import ask_mark, asked_since, file_of
from cxdash.store.rollups import appended_kinds, appends_since
from cxdash.store.version import data_version

__all__ = [
    "LANDING",
    "MISSING",
    "SUMMARIES",
    "VIEWS",
    "decode",
    "get",
    "lookup",
    "refresh",
    "refresh_in_background",
    "stored_payloads",
    "summaries_table",
    "wait_for_background",
]

log = logging.getLogger(__name__)


def _headline(conn: Connection, churn: str | None = None):
    return headline(conn, Definition.parse(churn) if churn else None)


def _churn_candidates(conn: Connection) -> list[dict]:
    return [c.to_dict() for c in candidates(conn)]


def _churn_candidates_after(conn: Connection, before: list[dict], loads: list[int]) -> list[dict] | None:
    after = churn.candidates_after(conn, [churn.Candidate.from_dict(d) for d in before], loads)
    return None if after is None else [c.to_dict() for c in after]


def effective_churn(store: Store, stored_candidates: list[dict] | None = None) -> str | None:
    """The name of the churn definition in force: the company's choice (app state) when the data
    supports it, else the suggestion. ``stored_candidates``: the ``churn_candidates`` summary."""
    chosen = churn.chosen_name(store)
    with store.connect() as conn:
        cands = None if stored_candidates is None else [churn.Candidate.from_dict(d) for d in stored_candidates]
        return churn.resolve(conn, chosen, cands).name


def _consented_customers(conn: Connection) -> pd.DataFrame:
    return pd.DataFrame({"cx_id": sorted(consented_customers(conn))}, dtype="string")


def _filter_options(conn: Connection) -> dict[str, list[str]]:
    return filter_options(conn)


def _without_crm(conn: Connection, before: object, loads: list[int]) -> object | None:
    """A summary of CRM records alone: as it was, unless the appends hold some."""
    return None if "customers" in appended_kinds(conn, loads) else before


# How a landing summary kept from an earlier data version is brought up to date when every change
# since was an append that only added rows (``rollups.appends_since``): no earlier row changed (nor
# its customer key, its customer's CRM flag or its hub), no link, no department. Each returns the
# summary as computed whole would be, or None to compute it whole (the summaries of CRM records,
# when the appends hold some). A small append then costs a lookup of its rows and their customers'
# earlier rows, not a scan of every stored row (issue 17). A view's increment also takes its
# parameters (cxdash/jobs/view_increments.py); the other views are computed whole.
INCREMENTS: dict[str, Callable[..., object]] = {
    "source_summary": overview.source_summary_after,
    "activity_by_month": overview.activity_by_month_after,
    "churn_candidates": _churn_candidates_after,
    "headline": headline_after,
    "null_rates": health.null_rates_after,
    "stitch_coverage": health.stitch_coverage_after,
    "coverage": health.coverage_after,
    "source_stats": health.source_stats_after,
    "source_latency": health.source_latency_after,
    "consented_customers": _without_crm,
    "filter_options": filter_options_after,
    **VIEW_INCREMENTS,
}


def _computations() -> dict[str, Callable[..., object]]:
    return {
        "source_summary": overview.source_summary,
        "activity_by_month": overview.activity_by_month,
        "churn_candidates": _churn_candidates,
        "headline": _headline,
        "null_rates": health.null_rates,
        "stitch_coverage": health.stitch_coverage,
        "coverage": health.coverage,
        "source_stats": health.source_stats,
        "source_latency": health.source_latency,
        "consented_customers": _consented_customers,
        "filter_options": _filter_options,
        **VIEW_COMPUTATIONS,
    }


def _stored_computations() -> dict[str, Callable[..., object]]:
    """``_computations()`` as the refresh runs them: a view whose stored result keeps what its
    increment needs is computed that way (``views.STORED_COMPUTATIONS``)."""
    return {**_computations(), **STORED_COMPUTATIONS}


# The landing pages' scans (no parameters), then the default views of Shared KPIs and Journeys
# (cxdash/jobs/views.py), in an order where a view's parameters only need results computed before it.
LANDING = (
    "source_summary",
    "activity_by_month",
    "churn_candidates",
    "headline",
    "null_rates",
    "stitch_coverage",
    "coverage",
    "source_stats",
    "source_latency",
    "consented_customers",
    "filter_options",
)
VIEWS = (
    "executive.report",
    "executive.trends",
    "executive.cohorts",
    "executive.conflicts",
    "journeys.hotspots",
    "journeys.nodes",  # before the graph: its kept activity counts tell the graph's top N (``_kept_names``)
    "journeys.dfg",
    "journeys.customers",
    "journeys.people",
    "journeys.activities",
    "journeys.positions",
    "journeys.paths",
    "journeys.variants",
    "journeys.funnel",
    "journeys.handoffs",
    "journeys.hotspot_customers",
    "journeys.edge_customers",
)
SUMMARIES = LANDING + VIEWS
# Summaries whose figures depend on the churn definition in force: stored with its name.
CHURN_DEPENDENT = frozenset(
    {
        "headline",
        "coverage",
        "executive.report",
        "executive.trends",
        "executive.cohorts",
        "executive.conflicts",
        "journeys.hotspots",
        "journeys.hotspot_customers",
        "journeys.variants",
    }
)
# What a new choice of churn definition recomputes (in refresh order).
CHURN_REFRESH = tuple(name for name in SUMMARIES if name in CHURN_DEPENDENT)
# The results the refresh reads after computing them (the churn definition in force, a view's
# default parameters); every other result is only encoded and freed at once, so the refresh does
# not hold every frame it computed until the end (issue 17: memory).
READ_LATER = frozenset({"churn_candidates", *(name for names in DEPENDS_ON.values() for name in names)})

MISSING = object()  # lookup() found no stored result for the current version


# ----------------------------------------------------------------------------- payloads


# A frame's ``attrs`` kept with it (JSON values): what a view's increment reads from its stored
# result (the handoffs' waits near their percentiles: ``jr.discover_handoffs(waits=True)``; the
# journey map's edges and departments: ``jr.journey_map(waits=True)``, and its nodes' steps per
# activity before top N: ``views.stored_nodes``; the null rates' counts: ``health.null_rates``).
_KEPT_ATTRS = ("waits", "map", "departments", "counts", "activity_counts")


def _frame_payload(frame: pd.DataFrame) -> bytes:
    """A frame as an Arrow IPC file (LZ4) with a JSON header that restores what Arrow cannot hold:
    non-string column names (the cohort matrix's month numbers), the index and the attrs increments
    read (``_KEPT_ATTRS``). The attrs go in the header alone: written with the frame, Arrow's pandas
    metadata held them three times over (at 200k customers the map's 0.27 MB of edges made a 1.3 MB
    payload), and read back, parsing them made a 53-row frame take 0.1 s. Parquet, which stored
    payloads were before (tag ``F``, still read), took 0.23 s to read a refresh's 21 frames, Arrow
    0.04 s, for about the same bytes."""
    range_index = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1
    header = {
        "columns": [c.item() if hasattr(c, "item") else c for c in frame.columns],
        "index": None if range_index else len(frame.index.names),
        "index_names": list(frame.index.names),
        "attrs": {key: frame.attrs[key] for key in _KEPT_ATTRS if key in frame.attrs},
    }
    flat = frame.copy(deep=False)
    flat.attrs = {}
    flat.columns = [f"c{i}" for i in range(flat.shape[1])]
    if range_index:
        flat = flat.reset_index(drop=True)
    else:
        flat.index.names = [f"i{i}" for i in range(flat.index.nlevels)]
        flat = flat.reset_index()
    buf = io.BytesIO()
    feather.write_feather(flat, buf, compression="lz4")
    head = json.dumps(header, default=str).encode()
    return b"A" + len(head).to_bytes(4, "big") + head + buf.getvalue()


def _frame_from(body: bytes, *, parquet: bool = False) -> pd.DataFrame:
    size = int.from_bytes(body[:4], "big")
    header = json.loads(body[4 : 4 + size])
    data = io.BytesIO(body[4 + size :])
    flat = pd.read_parquet(data) if parquet else feather.read_feather(data)
    if header["index"]:
        levels = [f"i{i}" for i in range(header["index"])]
        flat = flat.set_index(levels)
        flat.index.names = header["index_names"]
    else:
        flat.index = pd.RangeIndex(len(flat), name=header["index_names"][0])
    flat.columns = header["columns"]
    flat.attrs = {key: percentile_runs.kept(value) for key, value in header.get("attrs", {}).items()}
    return flat


def _encode(value) -> bytes:
    if isinstance(value, pd.DataFrame):
        return _frame_payload(value)
    if isinstance(value, KpiReport):
        return b"K" + json.dumps(value.to_state()).encode()
    if isinstance(value, (list, dict)):
        return b"L" + json.dumps(value).encode()
    return b"J" + json.dumps(value.to_dict()).encode()


def _decode(name: str, payload: bytes):
    tag, body = payload[:1], payload[1:]
    if tag == b"A":
        return _frame_from(body)
    if tag == b"F":
        return _frame_from(body, parquet=True)
    if tag == b"P":
        return pd.read_parquet(io.BytesIO(body))
    if tag == b"K":
        return KpiReport.from_state(json.loads(body))
    if tag == b"L":
        return json.loads(body)
    data = json.loads(body)
    if name == "headline":
        return Headline(
            as_of=datetime.fromisoformat(data["as_of"]) if data.get("as_of") else None,
            customers=data["customers"],
            active_customers=data["active_customers"],
            churned_customers=data["churned_customers"],
            churn_basis=data["churn_basis"],
            revenue=data["revenue"],
            churn_definition=data.get("churn_definition"),
            currency=data.get("currency"),
        )
    raise ValueError(f"unknown summary payload for {name!r}")


# ----------------------------------------------------------------------------- reading and writing


def lookup(conn: Connection, name: str, version: int, params: dict | None = None):
    """The stored result of ``name`` with ``params`` for data ``version``, or ``MISSING``."""
    key = params_key(name, params)
    row = conn.execute(
        sa.select(summaries_table.c.payload).where(
            summaries_table.c.name == key, summaries_table.c.data_version == version
        )
    ).first()
    return MISSING if row is None else decode(name, params, {key: bytes(row.payload)})


def stored_payloads(conn: Connection, version: int) -> dict[str, bytes]:
    """Every stored payload of data ``version`` by stored name, in one query (a page reads a dozen)."""
    rows = conn.execute(
        sa.select(summaries_table.c.name, summaries_table.c.payload).where(summaries_table.c.data_version == version)
    )
    return {name: bytes(payload) for name, payload in rows}


def decode(name: str, params: dict | None, payloads: dict[str, bytes]):
    """The result of ``name`` with ``params`` from ``stored_payloads``, or ``MISSING``."""
    payload = payloads.get(params_key(name, params))
    if payload is None:
        return MISSING
    try:
        return _decode(name, payload)
    except Exception:  # a damaged row is a cache miss, not an error
        log.warning("summary %s could not be read; computing it", name, exc_info=True)
        return MISSING


def _brought_up(conn: Connection, name: str, params: dict | None, version: int):
    """``name`` with ``params`` for data ``version`` from its result stored (with the same
    parameters) for an earlier version, when ``INCREMENTS`` can bring it up to date from the
    appends since; else ``MISSING``."""
    return _brought_up_stored(conn, name, params, version)[0]


def _brought_up_stored(conn: Connection, name: str, params: dict | None, version: int) -> tuple[object, bytes | None]:
    """``(result, payload)``: ``_brought_up``'s result, and the stored payload when the result is the
    stored one as it was (the increment returned it: it stands), so the refresh stores those bytes
    again instead of encoding it anew (at 1M customers the stored consent list alone took 0.26 s to
    decode and encode); else None."""
    if name not in INCREMENTS:
        return MISSING, None
    t = summaries_table
    key = params_key(name, params)
    # the version first, then its payload by equality: DuckDB's top-1 read the payload of every
    # stored row (at 1M customers 18 MB of payloads: 0.54 s for a refresh's lookups, 0.2 s so)
    stored = conn.execute(sa.select(sa.func.max(t.c.data_version)).where(t.c.name == key, t.c.data_version < version))
    earlier = stored.scalar()
    loads = None if earlier is None else appends_since(conn, earlier)
    if not loads:
        return MISSING, None
    row = conn.execute(sa.select(t.c.payload).where(t.c.name == key, t.c.data_version == earlier)).first()
    if row is None:
        return MISSING, None
    payload = bytes(row.payload)
    before = decode(name, None, {name: payload})
    if before is MISSING:
        return MISSING, None
    after = INCREMENTS[name](conn, before, loads, **(params or {}))
    if after is None:
        return MISSING, None
    return after, payload if after is before else None


def get(conn: Connection, name: str, version: int | None = None, params: dict | None = None):
    """The summary ``name`` (with ``params``) for the current data version: stored if fresh, else
    brought up to date from an earlier one (``INCREMENTS``) or computed now."""
    version = data_version(conn) if version is None else version
    found = lookup(conn, name, version, params)
    if found is MISSING:  # not refreshed yet: caught up from an earlier result when it can be
        found = _brought_up(conn, name, params, version)
    if found is not MISSING:
        return found
    return _computations()[name](conn, **(params or {}))


_refresh_lock = threading.Lock()  # one refresh at a time in a process: they would only compete for the cores

# How long the refresh keeps one connection for the summaries that follow each other (checked as
# each summary starts): on an engine where nobody can say they wait (PostgreSQL, Spark, whose
# sessions keep a table's file list), and on a DuckDB file when no other process has said so
# (``cxdash.store.embedded.asked_since``). The second is under the pages' 3 s wait for the lock
# (``cxdash.ui.data.UI_LOCK_TIMEOUT_S``): a page that cannot ask (the file is another user's) still
# gets in.
_HOLD_SECONDS = 1.0
_FILE_HOLD_SECONDS = 2.0
# How long the refresh pauses after letting go for a waiting process, before it opens the file again.
_YIELD_SECONDS = 0.35


class _HeldConnection:
    """A connection the refresh's summaries share: each summary gets the held one unless another
    process has found the DuckDB file locked since it was opened, or it is older than
    ``_FILE_HOLD_SECONDS`` (``_HOLD_SECONDS`` on other engines); then the old one is closed first
    (on a DuckDB file, closing the last connection lets the lock go) and a new one opened. A
    process that asked waits for the summary under way at most, while a run of small summaries (a
    refresh after a small append: about 30 of them, most under 0.1 s) does not open and close the
    file: 33 connections cost 0.85 s of a 5 s refresh at 200k customers, and closing the file every
    second in case someone waited still cost 0.2-0.3 s of 3 s after a 1,000-row append. A summary
    that fails gives its connection up (on PostgreSQL its transaction is aborted)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._file = file_of(store.engine)
        self._open: contextlib.AbstractContextManager | None = None
        self._conn: Connection | None = None
        self._hold = _FILE_HOLD_SECONDS if self._file is not None else _HOLD_SECONDS
        self._since = 0.0
        self._mark: tuple[int, int] | None = None

    def _asked(self) -> bool:
        return self._file is not None and asked_since(self._file, self._mark)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Connection]:
        if self._conn is not None:
            if self._asked():
                self.close()
                # long enough for the waiting process's next try (Store._retrying waits 0.3 s at most)
                time.sleep(_YIELD_SECONDS)
            elif time.monotonic() - self._since > self._hold:
                self.close()
        if self._conn is None:
            steady.forget()  # the data may have moved while no connection was held
            self._open = self._store.connect()
            self._conn = self._open.__enter__()
            self._since = time.monotonic()
            self._mark = ask_mark(self._file) if self._file is not None else None
        try:
            yield self._conn
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        opened, self._open, self._conn = self._open, None, None
        if opened is not None:
            opened.__exit__(None, None, None)


_background: list[threading.Thread] = []


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """The objects alive before the refresh left out of the garbage collector's passes while it runs,
    then given back (``gc.freeze``/``gc.unfreeze``: nothing is kept that would have been freed, only
    later). A process that has computed the views holds many long-lived objects (compiled
    statements, stored frames, kept maps), and each full collection during the refresh walked them
    all: at 1M customers the refresh after a 1,000-row append took 13.1 s, 10.7 s without the
    collector."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def refresh(
    store: Store, names: tuple[str, ...] = SUMMARIES, progress: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Compute and store every summary (each view with its default parameters) for the current data
    version. Returns seconds per summary; ``progress(name)`` is called before each one.

    The summaries share a connection while it is young and nobody waits for the file
    (``_HeldConnection``), so another process that asks for it is kept out for one computation at
    most. When the data changes meanwhile, nothing is written (the results would describe data that
    is gone) and the pages compute live until the next refresh.
    """
    # in the order of SUMMARIES, whatever the caller's: a view's parameters read results before it,
    # and the map's nodes count what its graph then reads (``view_increments._kept_names``)
    names = tuple(n for n in SUMMARIES if n in names) + tuple(n for n in names if n not in SUMMARIES)
    took: dict[str, float] = {}
    computations = _stored_computations()
    results: dict[str, object] = {}
    payloads: dict[str, tuple[str, bytes]] = {}
    churn: str | None = None
    churn_known = False
    # the questions every summary asks about the data (its date, the loads since, their customers)
    # answered once while the refresh holds the data still (``cxdash.store.steady``)
    with _refresh_lock, _heap_frozen(), steady.held_still():
        held = _HeldConnection(store)
        try:
            with held() as conn:
                version = data_version(conn)
                if "churn_candidates" not in names:
                    stored = lookup(conn, "churn_candidates", version)
                    results["churn_candidates"] = None if stored is MISSING else stored
            for name in names:
                if name in CHURN_DEPENDENT and not churn_known:
                    churn, churn_known = effective_churn(store, results.get("churn_candidates")), True
                with held() as conn:
                    if name in VIEWS:
                        params = default_params(conn, name, results, churn)
                    else:
                        params = {"churn": churn} if name in CHURN_DEPENDENT and churn else {}
                    if params is None:  # the store has nothing this view could show
                        continue
                    if progress:
                        progress(name)
                    t0 = time.perf_counter()
                    try:
                        result, stored = _brought_up_stored(conn, name, params, version)
                        if result is MISSING:
                            result = computations[name](conn, **params)
                        payloads[name] = (params_key(name, params), stored or _encode(result))
                        if name in READ_LATER:
                            results[name] = result
                        del result
                    except Exception:  # the page computes it live instead; the load itself stands
                        log.warning(
                            "summary %s could not be computed; its page will compute it live", name, exc_info=True
                        )
                        held.close()  # on PostgreSQL its transaction is aborted: the next summary gets a new one
                        continue
                    took[name] = round(time.perf_counter() - t0, 3)
            held.close()
            now = datetime.now(UTC).replace(tzinfo=None)
            with store.begin() as conn:
                if data_version(conn) != version:
                    log.info("data changed during the summaries refresh (version %s); not stored", version)
                    return took
                # every earlier result of these names, whatever its parameters (one statement: on an
                # engine without DELETE each statement rewrites the table, cxdash.store.spark_dml)
                conn.execute(
                    summaries_table.delete().where(
                        sa.or_(
                            *[
                                sa.or_(
                                    summaries_table.c.name == name,
                                    summaries_table.c.name.startswith(name + "?", autoescape=True),
                                )
                                for name in names
                            ]
                        )
                    )
                )
                for name, (key, payload) in payloads.items():
                    conn.execute(
                        summaries_table.insert().values(
                            name=key, data_version=version, computed_at=now, seconds=took[name], payload=payload
                        )
                    )
        finally:
            held.close()
    log.info("summaries refreshed for data version %s: %s", version, took)
    return took


def refresh_in_background(
    store: Store, names: tuple[str, ...] = VIEWS, first: Callable[[Store], object] | None = None
) -> threading.Thread:
    """Start ``refresh(store, names)`` on a daemon thread (after ``first(store)`` when given) and return
    it: the upload page hands the default views to it so the ops person is not kept waiting (the
    pages compute live meanwhile)."""

    def run() -> None:
        try:
            if first is not None:
                first(store)
            refresh(store, names)
        except Exception:
            log.warning("background summaries refresh failed", exc_info=True)

    thread = threading.Thread(target=run, name="cxdash-summaries", daemon=True)
    _background[:] = [t for t in _background if t.is_alive()] + [thread]
    thread.start()
    return thread


def wait_for_background(timeout: float | None = None) -> None:
    """Wait for background refreshes started in this process (tests, shutdown)."""
    for thread in list(_background):
        thread.join(timeout)
