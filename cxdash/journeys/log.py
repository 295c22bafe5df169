"""The journey log: the store's journeys as an event log, and what every discovery function reads.

Every function of this package takes an *event log*: any SQLAlchemy selectable (a table, a
subquery, ``journey_log()``) with one row per step, and the names of its columns, the way pm4py's
simple interface does::

    discover_dfg(conn, events, case_key="cx_key", activity_key="activity", timestamp_key="ts")

The defaults (``LogSpec``) are the journey log's column names, so ``discover_dfg(conn,
journey_log())`` is the store's cross-department journey map. The store's cases are the integer
customer keys (``cx_key``): no step is joined to the customer table, and the windows sort
integers. A result that lists customers names them once, at the end (``case_names()``, see
``cxdash.journeys.export``). All aggregation runs in the database with portable SQLAlchemy Core
(window functions ``LEAD``/``LAG``/``ROW_NUMBER``, ``percentile_cont ... WITHIN GROUP``,
``EXTRACT(EPOCH FROM ...)``), so the same code gives the same numbers on DuckDB and PostgreSQL;
only the small aggregated result comes back as a frame.

Steps of one case that share a timestamp keep the order of the files they came from, as pm4py's
stable sort does: the store's journey log carries each step's load, line and step within the
line (``cxdash.metrics.timeline.STEP_ORDER``) and every ordering here sorts by time, then those.
Another log can name its own ``order_key``; without one, ties fall back to the activity name, so
results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.timeline import STEP_ORDER, timeline
from cxdash.store.database import bulk_insert, customer_keys_table
from cxdash.store.dialect import among, epoch_seconds, percentiles

__all__ = [
    "OTHER",
    "LogSpec",
    "MapFilters",
    "case_names",
    "event_log_table",
    "in_period",
    "journey_log",
    "journey_people",
    "people_new_to_period",
    "prepare_log",
]

OTHER = "(other)"


def journey_log(*, since: datetime | None = None, until: datetime | None = None) -> sa.Subquery:
    """The store's journeys: the unified timeline's steps of identified customers.

    ``since``/``until`` keep only the steps at or after ``since`` and before ``until`` (a
    half-open period, as ``cxdash.metrics.Period``); None leaves that side open.

    Out columns: ``cx_key`` (the case: the customer's integer key), ``ts, activity, department,
    channel, kind, value`` and the tie order ``load_id, row_number, row_step`` (see
    ``timeline``). Results that list cases hold keys; ``case_names()`` names them (``cx_id``).
    """
    tl = timeline(("cx_key", "ts", "activity", "department", "channel", "kind", "value", *STEP_ORDER))
    q = sa.select(
        tl.c.cx_key,
        tl.c.ts,
        tl.c.activity,
        sa.func.coalesce(tl.c.department, "unknown").label("department"),
        tl.c.channel,
        tl.c.kind,
        tl.c.value,
        *(tl.c[name] for name in STEP_ORDER),
    ).where(tl.c.cx_key.is_not(None), tl.c.activity.is_not(None), *in_period(tl.c.ts, since, until))
    return q.subquery("journey_log")


def in_period(ts, since: datetime | None, until: datetime | None) -> tuple:
    """The WHERE conditions keeping ``ts`` in ``[since, until)``; an open side adds none."""
    out = []
    if since is not None:
        out.append(ts >= since)
    if until is not None:
        out.append(ts < until)
    return tuple(out)


def journey_people(conn: Connection, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
    """Who has at least one step in the journeys in ``[since, until)``, split the way the pages
    must say it: ``identified`` (a CRM customer record exists for them) and ``anonymous`` (visitors
    and other cases known only by an id in an activity file, with no customer record). Their sum
    is every case with a step; only ``identified`` compares with the customer count.
    Out: ``{"identified": n, "anonymous": m}``."""
    tl = timeline(("cx_key", "known", "ts", "activity"))
    known = sa.func.coalesce(tl.c.known, False)
    q = (
        sa.select(known, sa.func.count(sa.distinct(tl.c.cx_key)))
        .where(tl.c.cx_key.is_not(None), tl.c.activity.is_not(None), *in_period(tl.c.ts, since, until))
        .group_by(known)
    )
    counts = {bool(k): int(n) for k, n in conn.execute(q)}
    return {"identified": counts.get(True, 0), "anonymous": counts.get(False, 0)}


def people_new_to_period(
    conn: Connection,
    cases: list[int],
    loads: list[int],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    steps: sa.FromClause | None = None,
) -> dict[str, int]:
    """Of the customer keys ``cases``, those with a step in ``[since, until)`` none of whose steps
    there was stored before the loads ``loads`` (their steps in the period are all in those
    loads): what ``journey_people`` gains from appends that only added rows, as ``{"identified":
    n, "anonymous": m}``. The few keys are looked up by value, not by reading every step.
    ``steps``: those customers' journey steps (``journey_log``'s columns), read once by the caller."""
    if steps is None:
        tl = timeline(("cx_key", "known", "ts", "activity", "load_id"))
        earlier = sa.func.max(sa.case((tl.c.load_id.in_(loads), 0), else_=1))
        per_case = (
            sa.select(tl.c.cx_key, tl.c.known)
            .where(among(tl.c.cx_key, cases), tl.c.activity.is_not(None), *in_period(tl.c.ts, since, until))
            .group_by(tl.c.cx_key, tl.c.known)
            .having(earlier == 0)
            .subquery("new_to_period")
        )
    else:  # the journey log's steps carry no CRM flag: each new customer's from their key
        earlier = sa.func.max(sa.case((steps.c.load_id.in_(loads), 0), else_=1))
        new = (
            sa.select(steps.c.cx_key)
            .where(among(steps.c.cx_key, cases), *in_period(steps.c.ts, since, until))
            .group_by(steps.c.cx_key)
            .having(earlier == 0)
            .subquery("new_keys")
        )
        ck = customer_keys_table
        per_case = (
            sa.select(new.c.cx_key, ck.c.known)
            .select_from(new.outerjoin(ck, ck.c.cx_key == new.c.cx_key))
            .subquery("new_to_period")
        )
    counts: dict[bool, int] = {}
    for known, n in conn.execute(sa.select(per_case.c.known, sa.func.count()).group_by(per_case.c.known)):
        counts[bool(known)] = counts.get(bool(known), 0) + int(n)  # no CRM flag counts as anonymous
    return {"identified": counts.get(True, 0), "anonymous": counts.get(False, 0)}


@dataclass(frozen=True)
class LogSpec:
    """Which columns of an event log hold the case, activity, time (and optionally department),
    and the noise controls applied before any discovery. The defaults name the journey log's
    columns (``journey_log()``: the case is ``cx_key``).

    ``order_key`` names the column(s) that order steps at the same time (the file's order);
    left at None it is the journey log's ``load_id, row_number, row_step`` when the log has
    them, else none (ties then go by activity name); ``()`` asks for no order key.
    ``rename`` maps activity names to new names (several to one groups them);
    ``by_department`` replaces each activity by its department; ``top_n`` keeps the N most
    frequent activities and puts the rest in ``(other)``; ``collapse_repeats`` drops a step
    that repeats the case's previous step (``a a b`` -> ``a b``).
    """

    case_key: str = "cx_key"
    activity_key: str = "activity"
    timestamp_key: str = "ts"
    department_key: str | None = None
    order_key: str | tuple[str, ...] | None = None
    rename: Mapping[str, str] = field(default_factory=dict)
    by_department: bool = False
    top_n: int | None = None
    collapse_repeats: bool = False


@dataclass(frozen=True)
class MapFilters:
    """The Journeys page's noise controls, as chosen in its sidebar: the minimum share of an edge
    (smaller ones pooled into ``(other)``), the top-N activities, collapsing repeats, grouping by
    department and rename rules (``(old, new)`` pairs)."""

    min_share: float
    top_n: int | None
    collapse: bool
    by_department: bool
    rename: tuple[tuple[str, str], ...]

    def spec(self) -> LogSpec:
        return LogSpec(
            department_key="department",
            rename=dict(self.rename),
            by_department=self.by_department,
            top_n=self.top_n or None,
            collapse_repeats=self.collapse,
        )


def case_names() -> sa.Subquery:
    """``case_id`` (cx_key) -> ``name`` (cx_id): names the cases of the journey log, on a result
    that lists customers (the one place a key becomes a customer id)."""
    im = customer_keys_table
    return sa.select(im.c.cx_key.label("case_id"), im.c.cx_id.label("name")).subquery("case_names")


def _spec(spec: LogSpec | None, **keys) -> LogSpec:
    base = spec or LogSpec()
    given = {k: v for k, v in keys.items() if v is not None}
    return LogSpec(**{**base.__dict__, **given}) if given else base


def _epoch(col) -> sa.ColumnElement:
    return sa.cast(epoch_seconds(col), sa.Double)


def _log_part(select: sa.Select, name: str, *, shared: bool = False) -> sa.CTE:
    """One stage of a prepared log (``prepare_log``, ``_drop_repeats``, ``_positions``) as it
    enters the query: a CTE named ``name``, ``NOT MATERIALIZED`` on DuckDB. The one place that
    chooses how a stage is evaluated.

    DuckDB materialises a CTE read more than once whole, in memory, before the query reading it
    runs, and the journey views read the log two or three times (top N counts the activities
    before replacing them; the graph and the handoffs code the activities, then read the coded
    steps): that copy of every step was most of their peak memory (issue 17). ``NOT
    MATERIALIZED`` inlines it as a subquery: each reader scans the store again and DuckDB
    streams it (at 200k customers: handoffs 1.1 GB -> 0.7 GB, no more CPU time).

    PostgreSQL keeps the plain CTE: it inlines a CTE read once and materialises one read several
    times (on the server, spilling to disk past ``work_mem``), and there recomputing the timeline
    for every read made the handoffs and the nodes about 1.5x slower. Spark SQL inlines CTEs
    anyway. ``shared=True`` keeps the plain CTE on DuckDB too, for a stage its readers read
    several times and that costs more to recompute than to hold (its function says why).
    """
    cte = select.cte(name)
    return cte if shared else cte.prefix_with("NOT MATERIALIZED", dialect="duckdb")


def prepare_log(events: sa.FromClause, spec: LogSpec | None = None, *, cases_with: str | None = None, **keys) -> sa.CTE:
    """The event log in standard columns with the noise controls applied.

    In: ``events`` with the columns named in ``spec`` (or keyword overrides such as
    ``case_key="case:concept:name"``). Out (a CTE, inlined on DuckDB, see ``_log_part``):
    ``case_id, activity, ts, department`` and one ``tiebreak_<i>`` column per order key column
    (see ``LogSpec.order_key``); one row per step; rows without case, activity or time are
    dropped. ``cases_with``: only the cases with a step of that activity (as renamed and after
    top N), every step of theirs: what a view of one activity's neighbourhood reads, so the
    windows that follow (collapsing repeats, positions) sort those cases alone.
    """
    s = _spec(spec, **keys)
    c = events.c
    # Integer case keys stay integers (the windows sort them several times faster than text).
    case_id = c[s.case_key] if isinstance(c[s.case_key].type, sa.Integer) else sa.cast(c[s.case_key], sa.String)
    activity = sa.cast(c[s.activity_key], sa.String)
    department = sa.cast(c[s.department_key], sa.String) if s.department_key else sa.literal("unknown", sa.String)
    department = sa.func.coalesce(department, "unknown")
    if s.rename:
        activity = sa.case(
            *[(activity == old, sa.literal(new, sa.String)) for old, new in s.rename.items()], else_=activity
        )
    if s.by_department:
        activity = department
    # Without an order key there is no tiebreak column: a constant in every window's ORDER BY
    # still costs a comparison in the sort. The key keeps its own type (numbers sort as numbers).
    tiebreak = [c[name].label(f"tiebreak_{i}") for i, name in enumerate(_order_keys(s, events), start=1)]
    base = sa.select(
        case_id.label("case_id"),
        activity.label("activity"),
        c[s.timestamp_key].label("ts"),
        department.label("department"),
        *tiebreak,
    ).where(c[s.case_key].is_not(None), c[s.activity_key].is_not(None), c[s.timestamp_key].is_not(None))
    base = _log_part(base, "log_base")
    log = base
    if s.top_n:
        counts = sa.select(log.c.activity, sa.func.count().label("n")).group_by(log.c.activity).subquery()
        ranked = sa.select(
            counts.c.activity,
            sa.func.row_number().over(order_by=(counts.c.n.desc(), counts.c.activity)).label("rk"),
        ).subquery()
        keep = sa.select(ranked.c.activity).where(ranked.c.rk <= s.top_n)
        other = sa.case((log.c.activity.in_(keep), log.c.activity), else_=sa.literal(OTHER, sa.String))
        log = _log_part(
            sa.select(*[other.label("activity") if col.key == "activity" else col for col in log.c]), "log_top"
        )
    if cases_with is not None:
        # a case's steps depend on no other case (top N, counted over every case, is applied above)
        with_it = sa.select(log.c.case_id).where(log.c.activity == cases_with)
        log = _log_part(sa.select(log).where(log.c.case_id.in_(with_it)), "log_cases_with")
    if s.collapse_repeats:
        log = _drop_repeats(log, "activity", _step_order(log), "log_collapsed")
    return log


def _order_keys(spec: LogSpec, events: sa.FromClause) -> tuple[str, ...]:
    """The columns of ``events`` that order a case's steps at the same time (see ``LogSpec``)."""
    if spec.order_key is None:
        return STEP_ORDER if all(name in events.c for name in STEP_ORDER) else ()
    return (spec.order_key,) if isinstance(spec.order_key, str) else tuple(spec.order_key)


def _tiebreaks(log: sa.FromClause) -> tuple:
    """A prepared log's order key columns (``tiebreak_1``, ``tiebreak_2``...), in order."""
    return tuple(col for col in log.c if col.key.startswith("tiebreak_"))


def _step_order(log: sa.FromClause, activity=None) -> tuple:
    """How the steps of one case are ordered: time, then the order key (the files' order) when
    there is one, then the activity (its name, or its code, which sorts the same way)."""
    return (log.c.ts, *_tiebreaks(log), log.c.activity if activity is None else activity)


def name_codes(values: sa.FromClause, key: str, name: str) -> sa.Select:
    """``<key>, code``: each distinct value of ``values.c[key]`` with its rank by name (so codes sort
    like the names). Ranked among the distinct values, a few dozen rows, not over every step: a
    window then sorts and compares integers instead of text."""
    distinct = sa.select(values.c[key]).distinct().subquery(name)
    return sa.select(distinct.c[key], sa.func.dense_rank().over(order_by=distinct.c[key]).label("code"))


def _drop_repeats(log: sa.FromClause, key: str, order: tuple, name: str) -> sa.CTE:
    """``log`` without the steps whose column ``key`` repeats the case's previous step
    (``a a b`` -> ``a b``), as a CTE named ``name``, inlined on DuckDB (see ``_log_part``)."""
    w = dict(partition_by=log.c.case_id, order_by=order)
    prev = sa.func.lag(log.c[key]).over(**w)
    with_prev = sa.select(log, prev.label("prev_key")).subquery(name + "_prev")
    kept = sa.select(*[with_prev.c[col.key] for col in log.c]).where(
        sa.or_(with_prev.c.prev_key.is_(None), with_prev.c.prev_key != with_prev.c[key])
    )
    return _log_part(kept, name)


def _median(col):
    return sa.func.percentile_cont(0.5).within_group(col)


def _p90(col):
    return sa.func.percentile_cont(0.9).within_group(col)


def _median_and_p90(col):
    """Both percentiles from one sort of each group: ``percentile_cont(ARRAY[0.5, 0.9])``, an
    array (PostgreSQL and DuckDB both take one); index it with ``[1]`` and ``[2]``."""
    return percentiles(col, (0.5, 0.9))


def _positions(log: sa.FromClause) -> sa.CTE:
    """``case_id, activity, ts, pos``: each step's 1-based position in its case.

    A CTE on DuckDB too (``_log_part(..., shared=True)``): the funnel reads it once per step
    and the paths twice, and inlined each read ran the window over the whole log again; at
    200k customers that doubled the funnel's CPU time and raised the paths' peak memory by a
    quarter, against holding it once (the log stages under it are still inlined).
    """
    order = _step_order(log)
    numbered = sa.select(
        log.c.case_id,
        log.c.activity,
        log.c.ts,
        sa.func.row_number().over(partition_by=log.c.case_id, order_by=order).label("pos"),
    )
    return _log_part(numbered, "positions", shared=True)


def _frame(conn: Connection, query, columns: Sequence[str]) -> pd.DataFrame:
    rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for col in frame.columns:
        if frame[col].dtype == object and len(frame) and all(isinstance(v, str) for v in frame[col].dropna()):
            frame[col] = frame[col].astype("string")
    return frame


def _numeric(frame: pd.DataFrame, ints: Sequence[str] = (), floats: Sequence[str] = ()) -> pd.DataFrame:
    for c in ints:
        frame[c] = frame[c].astype("int64")
    for c in floats:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


def event_log_table(conn: Connection, frame: pd.DataFrame, name: str = "event_log") -> sa.Table:
    """Write ``frame`` (any event log, e.g. pm4py's running example) to a new table ``name``
    and return it, ready for the discovery functions. Datetime columns become naive-UTC
    timestamps, numbers doubles, everything else text. Replaces an existing table of that name.
    """
    cols, data = [], {}
    for col in frame.columns:
        s = frame[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(s):
            cols.append(sa.Column(col, sa.DateTime))
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            cols.append(sa.Column(col, sa.Double))
            s = s.astype("float64")
        else:
            cols.append(sa.Column(col, sa.String))
            s = s.astype("string")
        data[col] = s
    table = sa.Table(name, sa.MetaData(), *cols)
    table.drop(conn, checkfirst=True)
    table.create(conn)
    bulk_insert(conn, table, pd.DataFrame(data))
    return table
