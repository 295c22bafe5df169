"""Journeys: the directly-follows graph, paths, variants, funnels and handoffs, computed in the database.

Every function takes an *event log*: any SQLAlchemy selectable (a table, a subquery, the
unified ``timeline()``) with one row per step, and the names of its columns, the way pm4py's
simple interface does::

    discover_dfg(conn, events, case_key="cx_id", activity_key="activity", timestamp_key="ts")

The defaults are the timeline's column names, so ``discover_dfg(conn, journey_log())`` is the
store's cross-department journey map. All aggregation runs in the database with portable
SQLAlchemy Core (window functions ``LEAD``/``LAG``/``ROW_NUMBER``, ``percentile_cont ...
WITHIN GROUP``, ``EXTRACT(EPOCH FROM ...)``), so the same code gives the same numbers on
DuckDB and PostgreSQL; only the small aggregated result comes back as a frame.

Steps of one case that share a timestamp keep the order of the files they came from, as pm4py's
stable sort does: the store's journey log carries each step's load, line and step within the
line (``cxdash.metrics.timeline.STEP_ORDER``) and every ordering here sorts by time, then those. Another
log can name its own ``order_key``; without one, ties fall back to the activity name, so results
are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.exporting import FORMULA_PREFIXES
from cxdash.governance.privacy import mask_email, mask_phone
from cxdash.journeys.hotspot_stats import risk_ratio  # the hotspots' lift; kept importable from here
from cxdash.metrics.signals import (
    SIGNALS,
    file_order,
    is_repeat,
    matches,
    previous_same_topic,
    product_event,
    repeat_window,
)
from cxdash.metrics.timeline import FAILED_PAYMENT_STEP, STEP_ORDER, step_order, timeline

__all__ = [
    "OTHER",
    "LogSpec",
    "discover_dfg",
    "discover_handoffs",
    "discover_variants",
    "dfg_counts",
    "dfg_query",
    "edge_customers",
    "event_log_table",
    "end_activities",
    "friction_moments",
    "funnel",
    "customer_outcomes",
    "customer_segments",
    "hotspots",
    "hotspot_customers",
    "customer_journey",
    "cohort_csv",
    "mask_email",
    "mask_phone",
    "neutralise_cell",
    "risk_ratio",
    "journey_log",
    "journey_people",
    "in_period",
    "handoff_matrix",
    "anchor_paths",
    "path_links",
    "path_steps",
    "OTHER_PATHS",
    "journey_customers",
    "activity_counts",
    "first_positions",
    "activity_nodes",
    "paths_from",
    "paths_to",
    "prepare_log",
    "start_activities",
    "transitions",
    "KEYED",
    "case_names",
]

OTHER = "(other)"
START = "(start)"
END = "(end)"


def journey_log(
    *, known_only: bool = False, keyed: bool = False, since: datetime | None = None, until: datetime | None = None
) -> sa.Subquery:
    """The store's journeys: the unified timeline restricted to identified customers.

    ``since``/``until`` keep only the steps at or after ``since`` and before ``until`` (a
    half-open period, as ``cxdash.metrics.Period``); None leaves that side open.

    Out columns: ``cx_id, ts, activity, department, channel, kind, value`` and the tie order
    ``load_id, row_number, row_step`` (see ``timeline``).
    With ``keyed=True`` the case is the integer ``cx_key`` instead of ``cx_id`` (pass
    ``KEYED`` as the spec's keys): the same journeys without joining every step to the
    customer table, and windows that sort integers. Results naming cases then hold keys;
    ``case_names()`` turns them back into ``cx_id``.
    """
    case = "cx_key" if keyed else "cx_id"
    tl = timeline(
        (
            case,
            "ts",
            "activity",
            "department",
            "channel",
            "kind",
            "value",
            *STEP_ORDER,
            *(("known",) if known_only else ()),
        )
    )
    q = sa.select(
        tl.c[case],
        tl.c.ts,
        tl.c.activity,
        sa.func.coalesce(tl.c.department, "unknown").label("department"),
        tl.c.channel,
        tl.c.kind,
        tl.c.value,
        *(tl.c[name] for name in STEP_ORDER),
    ).where(tl.c[case].is_not(None), tl.c.activity.is_not(None))
    if known_only:
        q = q.where(tl.c.known.is_(True))
    q = q.where(*in_period(tl.c.ts, since, until))
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


@dataclass(frozen=True)
class LogSpec:
    """Which columns of an event log hold the case, activity, time (and optionally department),
    and the noise controls applied before any discovery.

    ``order_key`` names the column(s) that order steps at the same time (the file's order);
    left at None it is the journey log's ``load_id, row_number, row_step`` when the log has
    them, else none (ties then go by activity name); ``()`` asks for no order key.
    ``rename`` maps activity names to new names (several to one groups them);
    ``by_department`` replaces each activity by its department; ``top_n`` keeps the N most
    frequent activities and puts the rest in ``(other)``; ``collapse_repeats`` drops a step
    that repeats the case's previous step (``a a b`` -> ``a b``).
    """

    case_key: str = "cx_id"
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


KEYED = {"case_key": "cx_key"}  # the spec keys of ``journey_log(keyed=True)``


def case_names() -> sa.Subquery:
    """``case_id`` (cx_key) -> ``name`` (cx_id), to name the cases of a keyed journey log."""
    from cxdash.store.database import customer_keys_table as im

    return sa.select(im.c.cx_key.label("case_id"), im.c.cx_id.label("name")).subquery("case_names")


def _spec(spec: LogSpec | None, **keys) -> LogSpec:
    base = spec or LogSpec()
    given = {k: v for k, v in keys.items() if v is not None}
    return LogSpec(**{**base.__dict__, **given}) if given else base


def _epoch(col) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", col), sa.Double)


def prepare_log(events: sa.FromClause, spec: LogSpec | None = None, **keys) -> sa.CTE:
    """The event log in standard columns with the noise controls applied.

    In: ``events`` with the columns named in ``spec`` (or keyword overrides such as
    ``case_key="case:concept:name"``). Out (a CTE): ``case_id, activity, ts, department``
    and one ``tiebreak_<i>`` column per order key column (see ``LogSpec.order_key``); one row
    per step; rows without case, activity or time are dropped.
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
    base = (
        sa.select(
            case_id.label("case_id"),
            activity.label("activity"),
            c[s.timestamp_key].label("ts"),
            department.label("department"),
            *tiebreak,
        )
        .where(c[s.case_key].is_not(None), c[s.activity_key].is_not(None), c[s.timestamp_key].is_not(None))
        .cte("log_base")
    )
    log = base
    if s.top_n:
        counts = sa.select(log.c.activity, sa.func.count().label("n")).group_by(log.c.activity).subquery()
        ranked = sa.select(
            counts.c.activity,
            sa.func.row_number().over(order_by=(counts.c.n.desc(), counts.c.activity)).label("rk"),
        ).subquery()
        keep = sa.select(ranked.c.activity).where(ranked.c.rk <= s.top_n)
        other = sa.case((log.c.activity.in_(keep), log.c.activity), else_=sa.literal(OTHER, sa.String))
        log = sa.select(*[other.label("activity") if col.key == "activity" else col for col in log.c]).cte("log_top")
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


def _drop_repeats(log: sa.FromClause, key: str, order: tuple, name: str) -> sa.CTE:
    """``log`` without the steps whose column ``key`` repeats the case's previous step
    (``a a b`` -> ``a b``)."""
    w = dict(order_by=(log.c.case_id, *order))  # see _coded_steps: one ordering instead of partitions
    prev = sa.case((sa.func.lag(log.c.case_id).over(**w) == log.c.case_id, sa.func.lag(log.c[key]).over(**w)))
    with_prev = sa.select(log, prev.label("prev_key")).subquery(name + "_prev")
    return (
        sa.select(*[with_prev.c[col.key] for col in log.c])
        .where(sa.or_(with_prev.c.prev_key.is_(None), with_prev.c.prev_key != with_prev.c[key]))
        .cte(name)
    )


def transitions(log: sa.FromClause) -> sa.CTE:
    """Every directly-follows pair of a prepared log (``prepare_log``).

    Out: ``case_id, step`` (1-based position of the source step), ``source, target, source_ts,
    target_ts, source_department, target_department, seconds`` (target minus source time).
    """
    # Partitioned here: with three text columns carried along, the one-ordering form of
    # _coded_steps measured slower on DuckDB.
    w = dict(partition_by=log.c.case_id, order_by=_step_order(log))
    steps = sa.select(
        log.c.case_id,
        sa.func.row_number().over(**w).label("step"),
        log.c.activity.label("source"),
        sa.func.lead(log.c.activity).over(**w).label("target"),
        log.c.ts.label("source_ts"),
        sa.func.lead(log.c.ts).over(**w).label("target_ts"),
        log.c.department.label("source_department"),
        sa.func.lead(log.c.department).over(**w).label("target_department"),
    ).subquery("steps")
    return (
        sa.select(steps, (_epoch(steps.c.target_ts) - _epoch(steps.c.source_ts)).label("seconds"))
        .where(steps.c.target.is_not(None))
        .cte("transitions")
    )


def _median(col):
    return sa.func.percentile_cont(0.5).within_group(col)


def _p90(col):
    return sa.func.percentile_cont(0.9).within_group(col)


def _median_and_p90(col):
    """Both percentiles from one sort of each group: ``percentile_cont(ARRAY[0.5, 0.9])``, an
    array (PostgreSQL and DuckDB both take one); index it with ``[1]`` and ``[2]``."""
    fractions = sa.cast(sa.literal_column("ARRAY[0.5, 0.9]"), sa.ARRAY(sa.Double))
    return sa.type_coerce(sa.func.percentile_cont(fractions).within_group(col), sa.ARRAY(sa.Double))


def _coded_steps(events: sa.FromClause, spec: LogSpec | None, keys) -> tuple[sa.CTE, sa.CTE]:
    """The log's steps with activities as integer codes, each beside its case's next step.

    Returns ``(codes, steps)``: ``codes`` is ``activity, code`` (code = the activity's rank by
    name, so codes sort like names); ``steps`` is ``case_id, ts, source, target, seconds``
    with one row per step, ``target`` and ``seconds`` NULL on each case's last step (so
    counting those rows counts the cases).

    Why codes: the window's sort and the aggregations then compare integers instead of text,
    which is most of the cost of the graph on a large log; names come back on the few result
    rows. Rename rules and top N act on the small table of distinct activities (same rules
    as ``prepare_log``), and collapsing repeats works on the codes, in ``prepare_log``'s order.
    """
    s = _spec(spec, **keys)
    log = prepare_log(events, LogSpec(**{**s.__dict__, "rename": {}, "top_n": None, "collapse_repeats": False}))
    counts = sa.select(log.c.activity, sa.func.count().label("n")).group_by(log.c.activity).subquery("activity_n")
    name = counts.c.activity
    if s.rename and not s.by_department:  # grouping by department replaces the names anyway
        name = sa.case(*[(name == old, sa.literal(new, sa.String)) for old, new in s.rename.items()], else_=name)
    mapping = sa.select(counts.c.activity, name.label("name"), counts.c.n).subquery("renamed")
    if s.top_n:
        totals = (
            sa.select(mapping.c.name, sa.func.sum(mapping.c.n).label("n")).group_by(mapping.c.name).subquery("name_n")
        )
        ranked = sa.select(
            totals.c.name, sa.func.row_number().over(order_by=(totals.c.n.desc(), totals.c.name)).label("rk")
        ).subquery("name_rank")
        mapping = (
            sa.select(
                mapping.c.activity,
                sa.case((ranked.c.rk <= s.top_n, mapping.c.name), else_=sa.literal(OTHER, sa.String)).label("name"),
            )
            .select_from(mapping.join(ranked, ranked.c.name == mapping.c.name))
            .subquery("top_names")
        )
    dictionary = sa.select(
        mapping.c.activity, mapping.c.name, sa.func.dense_rank().over(order_by=mapping.c.name).label("code")
    ).cte("activity_codes")
    codes = sa.select(dictionary.c.name.label("activity"), dictionary.c.code).distinct().cte("code_names")
    coded = (
        sa.select(log.c.case_id, dictionary.c.code, log.c.ts, *_tiebreaks(log))
        .select_from(log.join(dictionary, dictionary.c.activity == log.c.activity))
        .cte("coded_log")
    )
    if s.collapse_repeats:
        coded = _drop_repeats(coded, "code", _step_order(coded, coded.c.code), "coded_collapsed")
    # One ordering of the whole log (case, time, ...) rather than PARTITION BY case: the same
    # sort, but DuckDB evaluates it with less work per row; a step's successor counts only when
    # it belongs to the same case.
    w = dict(order_by=(coded.c.case_id, *_step_order(coded, coded.c.code)))
    same_case = sa.func.lead(coded.c.case_id).over(**w) == coded.c.case_id
    steps = sa.select(
        coded.c.case_id,
        coded.c.ts,
        coded.c.code.label("source"),
        sa.case((same_case, sa.func.lead(coded.c.code).over(**w))).label("target"),
        sa.case((same_case, _epoch(sa.func.lead(coded.c.ts).over(**w)) - _epoch(coded.c.ts))).label("seconds"),
    ).cte("coded_steps")
    return codes, steps


def dfg_query(events: sa.FromClause, spec: LogSpec | None = None, *, min_share: float = 0.0, **keys) -> sa.Select:
    """The directly-follows graph as a query (see ``discover_dfg``).

    One window pass over the log (on activity codes, see ``_coded_steps``); counts, customers
    and times are aggregated on codes, and pooling rare edges into ``(other)`` maps each small
    edge to the pooled one through the (small) table of edge counts.
    """
    codes, steps = _coded_steps(events, spec, keys)
    pairs = sa.select(steps).where(steps.c.target.is_not(None)).subquery("pairs")
    if min_share > 0:
        edge_n = (
            sa.select(pairs.c.source, pairs.c.target, sa.func.count().label("n"))
            .group_by(pairs.c.source, pairs.c.target)
            .subquery("edge_n")
        )
        # "(other)" may already be an activity (top N): pooled edges then join its edges, as by name.
        other = sa.func.coalesce(
            sa.select(codes.c.code).where(codes.c.activity == OTHER).scalar_subquery(), sa.literal(0)
        )
        keep = sa.cast(edge_n.c.n, sa.Double) / sa.cast(sa.func.sum(edge_n.c.n).over(), sa.Double) >= min_share
        pooled_edge = sa.select(
            edge_n.c.source,
            edge_n.c.target,
            sa.case((keep, edge_n.c.source), else_=other).label("pooled_source"),
            sa.case((keep, edge_n.c.target), else_=other).label("pooled_target"),
        ).subquery("pooled_edge")
        pairs = (
            sa.select(
                pooled_edge.c.pooled_source.label("source"),
                pooled_edge.c.pooled_target.label("target"),
                pairs.c.case_id,
                pairs.c.seconds,
            )
            .select_from(
                pairs.join(
                    pooled_edge, sa.and_(pooled_edge.c.source == pairs.c.source, pooled_edge.c.target == pairs.c.target)
                )
            )
            .cte("pooled_pairs")
        )
    else:
        pairs = sa.select(pairs).cte("pairs")  # read twice below: computed once
    stats = (
        sa.select(
            pairs.c.source,
            pairs.c.target,
            sa.func.count().label("n"),
            _median_and_p90(pairs.c.seconds).label("percentiles"),
            sa.func.avg(pairs.c.seconds).label("mean_seconds"),
        )
        .group_by(pairs.c.source, pairs.c.target)
        .subquery("edge_stats")
    )
    # distinct cases per edge as a second grouping: cheaper than COUNT(DISTINCT) beside percentiles
    case_edges = sa.select(pairs.c.source, pairs.c.target, pairs.c.case_id).distinct().subquery("case_edges")
    customers = (
        sa.select(case_edges.c.source, case_edges.c.target, sa.func.count().label("customers"))
        .group_by(case_edges.c.source, case_edges.c.target)
        .subquery("edge_customers")
    )
    n_cases = sa.select(sa.func.count()).select_from(steps).where(steps.c.target.is_(None)).scalar_subquery()
    src, tgt = codes.alias("source_name"), codes.alias("target_name")
    source = sa.func.coalesce(src.c.activity, sa.literal(OTHER, sa.String))
    target = sa.func.coalesce(tgt.c.activity, sa.literal(OTHER, sa.String))
    return (
        sa.select(
            source.label("source"),
            target.label("target"),
            stats.c.n.label("count"),
            customers.c.customers,
            (sa.cast(stats.c.n, sa.Double) / sa.cast(sa.func.sum(stats.c.n).over(), sa.Double)).label("share"),
            (sa.cast(customers.c.customers, sa.Double) / sa.cast(sa.func.nullif(n_cases, 0), sa.Double)).label(
                "customer_share"
            ),
            stats.c.percentiles[1].label("median_seconds"),
            stats.c.percentiles[2].label("p90_seconds"),
            stats.c.mean_seconds,
        )
        .select_from(
            stats.join(customers, sa.and_(customers.c.source == stats.c.source, customers.c.target == stats.c.target))
            .outerjoin(src, src.c.code == stats.c.source)
            .outerjoin(tgt, tgt.c.code == stats.c.target)
        )
        .order_by(stats.c.n.desc(), source, target)
    )


DFG_COLUMNS = [
    "source",
    "target",
    "count",
    "customers",
    "share",
    "customer_share",
    "median_seconds",
    "p90_seconds",
    "mean_seconds",
]


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


def discover_dfg(
    conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, *, min_share: float = 0.0, **keys
) -> pd.DataFrame:
    """The directly-follows graph of ``events``.

    Out: one row per ``(source, target)`` pair of consecutive steps of the same case, with
    ``count`` (transitions), ``customers`` (distinct cases), ``share`` (of all transitions),
    ``customer_share`` (of all cases in the log), ``median_seconds``, ``p90_seconds`` and
    ``mean_seconds`` between the two steps. Edges carrying less than ``min_share`` of all
    transitions are pooled into ``(other)`` edges, so ``share`` still adds up to 1.
    Sorted by count, most frequent first.
    """
    frame = _frame(conn, dfg_query(events, spec, min_share=min_share, **keys), DFG_COLUMNS)
    return _numeric(
        frame,
        ints=("count", "customers"),
        floats=("share", "customer_share", "median_seconds", "p90_seconds", "mean_seconds"),
    )


def dfg_counts(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Transition counts only, pm4py ``discover_dfg``'s measure (no customers, no times): the
    like-for-like figure for benchmarks. Out: ``source, target, count``, most frequent first."""
    codes, steps = _coded_steps(events, spec, keys)
    src, tgt = codes.alias("source_name"), codes.alias("target_name")
    edges = (
        sa.select(steps.c.source, steps.c.target, sa.func.count().label("n"))
        .where(steps.c.target.is_not(None))
        .group_by(steps.c.source, steps.c.target)
        .subquery("edge_n")
    )
    q = (
        sa.select(src.c.activity, tgt.c.activity, edges.c.n)
        .select_from(edges.join(src, src.c.code == edges.c.source).join(tgt, tgt.c.code == edges.c.target))
        .order_by(edges.c.n.desc(), src.c.activity, tgt.c.activity)
    )
    return _numeric(_frame(conn, q, ["source", "target", "count"]), ints=("count",))


def _ends(conn: Connection, events, spec, keys, *, first: bool) -> dict[str, int]:
    log = prepare_log(events, spec, **keys)
    order = _step_order(log)
    if not first:
        order = tuple(c.desc() for c in order)
    ranked = sa.select(
        log.c.activity, sa.func.row_number().over(partition_by=log.c.case_id, order_by=order).label("rk")
    ).subquery()
    q = (
        sa.select(ranked.c.activity, sa.func.count())
        .where(ranked.c.rk == 1)
        .group_by(ranked.c.activity)
        .order_by(sa.func.count().desc(), ranked.c.activity)
    )
    return {a: int(n) for a, n in conn.execute(q).all()}


def start_activities(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> dict[str, int]:
    """How many cases start with each activity (pm4py's ``get_start_activities``)."""
    return _ends(conn, events, spec, keys, first=True)


def end_activities(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> dict[str, int]:
    """How many cases end with each activity (pm4py's ``get_end_activities``)."""
    return _ends(conn, events, spec, keys, first=False)


def activity_nodes(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """One row per activity: ``activity, count, customers, department`` (its most frequent
    department), ``starts, ends`` (cases starting / ending with it), most frequent first.

    One pass over the log: each step is flagged as its case's first or last, and (with
    ``collapse_repeats``) as a repeat of the step before, by looking at its neighbours in one
    ordering (case, time, ...); then everything is counted. Collapsing never removes a case's
    first step, a case's last run keeps its activity, and no activity leaves a case entirely,
    so starts, ends and customers are the same with or without it; counts skip the repeats.
    """
    s = _spec(spec, **keys)
    log = prepare_log(events, LogSpec(**{**s.__dict__, "collapse_repeats": False}))
    w = dict(order_by=(log.c.case_id, *_step_order(log)))
    after_same_case = sa.func.lag(log.c.case_id).over(**w) == log.c.case_id
    repeat = sa.and_(after_same_case, sa.func.lag(log.c.activity).over(**w) == log.c.activity)
    steps = sa.select(
        log.c.case_id,
        log.c.activity,
        log.c.department,
        sa.case((after_same_case, 0), else_=1).label("is_start"),
        sa.case((sa.func.lead(log.c.case_id).over(**w) == log.c.case_id, 0), else_=1).label("is_end"),
        (sa.case((repeat, 0), else_=1) if s.collapse_repeats else sa.literal(1)).label("kept"),
    ).cte("flagged_steps")
    by_dept = (
        sa.select(steps.c.activity, steps.c.department, sa.func.count().label("n"))
        .where(steps.c.kept == 1)
        .group_by(steps.c.activity, steps.c.department)
        .subquery("by_department")
    )
    dept = sa.select(
        by_dept.c.activity,
        by_dept.c.department,
        sa.func.row_number()
        .over(partition_by=by_dept.c.activity, order_by=(by_dept.c.n.desc(), by_dept.c.department))
        .label("rk"),
    ).subquery("top_department")
    stats = (
        sa.select(
            steps.c.activity,
            sa.func.sum(steps.c.kept).label("n"),
            sa.func.count(sa.distinct(steps.c.case_id)).label("cust"),
            sa.func.sum(steps.c.is_start).label("starts"),
            sa.func.sum(steps.c.is_end).label("ends"),
        )
        .group_by(steps.c.activity)
        .subquery("activity_stats")
    )
    q = (
        sa.select(stats.c.activity, stats.c.n, stats.c.cust, dept.c.department, stats.c.starts, stats.c.ends)
        .join(dept, sa.and_(dept.c.activity == stats.c.activity, dept.c.rk == 1))
        .order_by(stats.c.n.desc(), stats.c.activity)
    )
    cols = ["activity", "count", "customers", "department", "starts", "ends"]
    return _numeric(_frame(conn, q, cols), ints=("count", "customers", "starts", "ends"))


def activity_counts(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """``activity, count``: every activity after renaming, department grouping and top N, with
    its number of steps, most frequent first. A plain grouping (no window): for pickers that
    list the activities. Counts are before ``collapse_repeats``, which removes steps but never
    a whole activity."""
    s = _spec(spec, **keys)
    log = prepare_log(events, LogSpec(**{**s.__dict__, "collapse_repeats": False}))
    q = (
        sa.select(log.c.activity, sa.func.count().label("n"))
        .group_by(log.c.activity)
        .order_by(sa.func.count().desc(), log.c.activity)
    )
    return _numeric(_frame(conn, q, ["activity", "count"]), ints=("count",))


def journey_customers(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> int:
    """How many distinct cases (customers) have at least one step in the log after ``spec``'s
    noise controls. None of those controls removes a customer (top N pools activities into
    ``(other)``, collapsing keeps each run's first step), so this is every case with a step."""
    log = prepare_log(events, spec, **keys)
    return int(conn.execute(sa.select(sa.func.count(sa.distinct(log.c.case_id)))).scalar() or 0)


def first_positions(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Where in their journeys customers first reach each activity.

    Out: ``activity, customers`` (cases reaching it), ``median_first_position`` (the median,
    over those cases, of the 1-based position of the case's first step with that activity, in
    the journey's step order), sorted by that median, then most customers first, then name.
    Used to put a funnel's steps in the order customers take them rather than by frequency.
    """
    p = _positions(prepare_log(events, spec, **keys))
    first = (
        sa.select(p.c.case_id, p.c.activity, sa.func.min(p.c.pos).label("first_pos"))
        .group_by(p.c.case_id, p.c.activity)
        .subquery("first_pos")
    )
    median = _median(first.c.first_pos)
    q = (
        sa.select(first.c.activity, sa.func.count().label("customers"), median.label("median_first_position"))
        .group_by(first.c.activity)
        .order_by(median, sa.func.count().desc(), first.c.activity)
    )
    return _numeric(
        _frame(conn, q, ["activity", "customers", "median_first_position"]),
        ints=("customers",),
        floats=("median_first_position",),
    )


def discover_handoffs(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Who hands the customer to whom: transitions whose two steps belong to different departments.

    Out: ``source_department, target_department, count, customers, median_seconds,
    p90_seconds`` (the wait between the last step of one department and the first of the next).

    The steps are those of ``transitions(prepare_log(...))`` in the same order, but the window
    runs once over integer codes (activities for the order, departments for the pair), as the
    directly-follows graph does: on a large log that is several times less work than carrying
    three text columns through a partitioned window.
    """
    s = _spec(spec, **keys)
    if not s.department_key:
        s = LogSpec(**{**s.__dict__, "department_key": "department"})
    log = prepare_log(events, s)
    acts = (
        sa.select(log.c.activity, sa.func.dense_rank().over(order_by=log.c.activity).label("code"))
        .distinct()
        .cte("handoff_activities")
    )
    depts = (
        sa.select(log.c.department, sa.func.dense_rank().over(order_by=log.c.department).label("code"))
        .distinct()
        .cte("handoff_departments")
    )
    coded = (
        sa.select(log.c.case_id, log.c.ts, *_tiebreaks(log), acts.c.code, depts.c.code.label("dept"))
        .select_from(
            log.join(acts, acts.c.activity == log.c.activity).join(depts, depts.c.department == log.c.department)
        )
        .cte("handoff_log")
    )
    w = dict(order_by=(coded.c.case_id, *_step_order(coded, coded.c.code)))  # codes sort like the names
    same_case = sa.func.lead(coded.c.case_id).over(**w) == coded.c.case_id
    steps = sa.select(
        coded.c.case_id,
        coded.c.dept.label("source"),
        sa.case((same_case, sa.func.lead(coded.c.dept).over(**w))).label("target"),
        sa.case((same_case, _epoch(sa.func.lead(coded.c.ts).over(**w)) - _epoch(coded.c.ts))).label("seconds"),
    ).subquery("handoff_steps")
    both = _median_and_p90(steps.c.seconds)
    pairs = (
        sa.select(
            steps.c.source,
            steps.c.target,
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(steps.c.case_id)).label("customers"),
            both.label("pct"),
        )
        .where(steps.c.target.is_not(None), steps.c.source != steps.c.target)
        .group_by(steps.c.source, steps.c.target)
        .subquery("handoff_pairs")
    )
    src, dst = depts.alias("source_dept"), depts.alias("target_dept")
    q = (
        sa.select(src.c.department, dst.c.department, pairs.c.n, pairs.c.customers, pairs.c.pct[1], pairs.c.pct[2])
        .select_from(pairs.join(src, src.c.code == pairs.c.source).join(dst, dst.c.code == pairs.c.target))
        .order_by(pairs.c.n.desc(), src.c.department, dst.c.department)
    )
    cols = ["source_department", "target_department", "count", "customers", "median_seconds", "p90_seconds"]
    return _numeric(_frame(conn, q, cols), ints=("count", "customers"), floats=("median_seconds", "p90_seconds"))


def edge_customers(
    conn: Connection,
    events: sa.FromClause,
    source: str,
    target: str,
    spec: LogSpec | None = None,
    *,
    case_names: sa.FromClause | None = None,
    **keys,
) -> pd.DataFrame:
    """The cases that took the edge ``source -> target``: ``case_id, times, first_at, median_seconds``.

    The same steps as ``discover_dfg`` (same noise controls), so the cohort matches the edge.
    ``case_names`` (``case_id, name``, see ``case_names()``) names the cases of a keyed log."""
    codes, t = _coded_steps(events, spec, keys)

    def code(name: str):
        return sa.select(codes.c.code).where(codes.c.activity == name).scalar_subquery()

    per_case = (
        sa.select(
            t.c.case_id,
            sa.func.count().label("times"),
            sa.func.min(t.c.ts).label("first_at"),
            _median(t.c.seconds).label("median_seconds"),
        )
        .where(t.c.source == code(source), t.c.target == code(target))
        .group_by(t.c.case_id)
        .subquery("edge_cases")
    )
    case = per_case.c.case_id
    src = per_case
    if case_names is not None:
        case = case_names.c.name
        src = per_case.join(case_names, case_names.c.case_id == per_case.c.case_id)
    q = (
        sa.select(case, per_case.c.times, per_case.c.first_at, per_case.c.median_seconds)
        .select_from(src)
        .order_by(per_case.c.times.desc(), case)
    )
    return _numeric(
        _frame(conn, q, ["case_id", "times", "first_at", "median_seconds"]), ints=("times",), floats=("median_seconds",)
    )


def _positions(log: sa.FromClause) -> sa.CTE:
    """``case_id, activity, ts, pos``: each step's 1-based position in its case. A CTE, since
    callers read it more than once (a subquery would run its window each time)."""
    order = _step_order(log)
    return sa.select(
        log.c.case_id,
        log.c.activity,
        log.c.ts,
        sa.func.row_number().over(partition_by=log.c.case_id, order_by=order).label("pos"),
    ).cte("positions")


def _paths(conn, events, anchor: str, steps: int, spec, keys, *, before: bool) -> pd.DataFrame:
    log = prepare_log(events, spec, **keys)
    p = _positions(log)
    first = (
        sa.select(p.c.case_id, sa.func.min(p.c.pos).label("anchor_pos"))
        .where(p.c.activity == anchor)
        .group_by(p.c.case_id)
        .subquery("anchor")
    )
    offset = (p.c.pos - first.c.anchor_pos).label("offset")
    window = offset.between(-steps, 0) if before else offset.between(0, steps)
    near = (
        sa.select(p.c.case_id, p.c.activity, p.c.pos, offset)
        .join(first, first.c.case_id == p.c.case_id)
        .where(window)
        .subquery("near")
    )
    w = dict(partition_by=near.c.case_id, order_by=near.c.pos)
    pairs = sa.select(
        near.c.case_id,
        near.c.offset.label("source_offset"),
        near.c.activity.label("source"),
        sa.func.lead(near.c.offset).over(**w).label("target_offset"),
        sa.func.lead(near.c.activity).over(**w).label("target"),
    ).subquery("pairs")
    q = (
        sa.select(
            pairs.c.source_offset,
            pairs.c.source,
            pairs.c.target_offset,
            pairs.c.target,
            sa.func.count(sa.distinct(pairs.c.case_id)),
        )
        .where(pairs.c.target.is_not(None))
        .group_by(pairs.c.source_offset, pairs.c.source, pairs.c.target_offset, pairs.c.target)
        .order_by(
            pairs.c.source_offset, sa.func.count(sa.distinct(pairs.c.case_id)).desc(), pairs.c.source, pairs.c.target
        )
    )
    cols = ["source_offset", "source", "target_offset", "target", "customers"]
    return _numeric(_frame(conn, q, cols), ints=("source_offset", "target_offset", "customers"))


def paths_to(
    conn: Connection, events: sa.FromClause, end: str, *, steps: int = 5, spec: LogSpec | None = None, **keys
) -> pd.DataFrame:
    """Sankey links of the ``steps`` steps before each case's first ``end``.

    Out: ``source_offset, source, target_offset, target, customers``; offsets count steps from
    the anchor (``-2`` = two steps before it, ``0`` = the anchor itself).
    """
    return _paths(conn, events, end, steps, spec, keys, before=True)


def paths_from(
    conn: Connection, events: sa.FromClause, start: str, *, steps: int = 5, spec: LogSpec | None = None, **keys
) -> pd.DataFrame:
    """Sankey links of the ``steps`` steps after each case's first ``start`` (offsets 0..steps)."""
    return _paths(conn, events, start, steps, spec, keys, before=False)


OTHER_PATHS = "(other paths)"
_PATH_SEPARATOR = "\x1f"  # the unit separator: no activity name holds it
PATH_COLUMNS = ["path", "steps", "customers", "paths"]


def anchor_paths(
    conn: Connection,
    events: sa.FromClause,
    anchor: str,
    *,
    direction: str = "before",
    steps: int = 5,
    top: int = 12,
    spec: LogSpec | None = None,
    **keys,
) -> pd.DataFrame:
    """Whole paths into (``direction="before"``) or out of (``"after"``) each case's first
    ``anchor``: the up to ``steps`` steps before it and the anchor, or the anchor and the up to
    ``steps`` steps after it, counted per distinct path.

    Out (``PATH_COLUMNS``): ``path`` (the activities in journey order joined by ``\x1f``; split
    with ``path_steps``), ``steps`` (activities on it, the anchor included), ``customers``
    (cases taking exactly that path), ``paths`` (1); the ``top`` busiest paths, most customers
    first (then by path), and when more exist one last row ``path = OTHER_PATHS``, ``steps`` NA,
    pooling the rest: their customers and how many distinct paths. A path of one step is a case
    with nothing before (after) the anchor. ``customers`` adds up to every case that reaches the
    anchor.
    """
    log = prepare_log(events, spec, **keys)
    p = _positions(log)
    first = (
        sa.select(p.c.case_id, sa.func.min(p.c.pos).label("anchor_pos"))
        .where(p.c.activity == anchor)
        .group_by(p.c.case_id)
        .subquery("anchor")
    )
    offset = p.c.pos - first.c.anchor_pos
    window = offset.between(-steps, 0) if direction == "before" else offset.between(0, steps)
    near = (
        sa.select(p.c.case_id, p.c.activity, p.c.pos)
        .join(first, first.c.case_id == p.c.case_id)
        .where(window)
        .subquery("near")
    )
    per_case = (
        sa.select(
            near.c.case_id,
            sa.func.aggregate_strings(near.c.activity, _PATH_SEPARATOR).aggregate_order_by(near.c.pos).label("path"),
            sa.func.count().label("steps"),
        )
        .group_by(near.c.case_id)
        .cte("anchor_path_cases")
    )
    customers = sa.func.count()
    q = (
        sa.select(per_case.c.path, sa.func.min(per_case.c.steps), customers)
        .group_by(per_case.c.path)
        .order_by(customers.desc(), per_case.c.path)
    )
    every = _numeric(_frame(conn, q, ["path", "steps", "customers"]), ints=("steps", "customers"))
    shown = every.head(top).assign(paths=1)
    rest = every.iloc[top:]
    if len(rest):
        other = pd.DataFrame(
            {"path": [OTHER_PATHS], "steps": [pd.NA], "customers": [int(rest["customers"].sum())], "paths": [len(rest)]}
        )
        shown = pd.concat([shown, other], ignore_index=True)
    shown["steps"] = shown["steps"].astype("Int64")
    shown["customers"] = shown["customers"].astype("int64")
    shown["paths"] = shown["paths"].astype("int64")
    return shown[PATH_COLUMNS].reset_index(drop=True)


def path_steps(path: str) -> list[str]:
    """The activities of one ``anchor_paths`` path, in journey order."""
    return path.split(_PATH_SEPARATOR)


def path_links(paths: pd.DataFrame, anchor: str, direction: str = "before") -> pd.DataFrame:
    """Sankey links of ``anchor_paths``: each path's consecutive steps, placed by their offset from
    the anchor (``-2`` = two steps before it, ``0`` = the anchor), summed over paths; the pooled
    ``OTHER_PATHS`` row becomes one link ``(other paths) -> anchor`` (``anchor -> (other paths)``
    after it). Every link lies on a whole path that ends (starts) at the anchor, so every ribbon
    reaches it. Out: ``source_offset, source, target_offset, target, customers``."""
    rows: list[tuple[int, str, int, str, int]] = []
    before = direction == "before"
    for path, n in zip(paths["path"], paths["customers"], strict=True):
        if path == OTHER_PATHS:
            rows.append((-1, OTHER_PATHS, 0, anchor) if before else (0, anchor, 1, OTHER_PATHS))
            rows[-1] = (*rows[-1], int(n))
            continue
        acts = path_steps(path)
        start = -(len(acts) - 1) if before else 0
        for i in range(len(acts) - 1):
            rows.append((start + i, acts[i], start + i + 1, acts[i + 1], int(n)))
    cols = ["source_offset", "source", "target_offset", "target", "customers"]
    links = pd.DataFrame(rows, columns=cols)
    if links.empty:
        return links.astype({"source_offset": "int64", "target_offset": "int64", "customers": "int64"})
    return (
        links.groupby(cols[:4], as_index=False, sort=False)["customers"]
        .sum()
        .sort_values(["source_offset", "customers", "source", "target"], ascending=[True, False, True, True])
        .reset_index(drop=True)
    )


def handoff_matrix(handoffs: pd.DataFrame, value: str = "customers") -> pd.DataFrame:
    """``discover_handoffs`` as a department-by-department table: rows the department handing the
    customer over (``source_department``), columns the one receiving them, cells ``value``
    (``count``, ``customers``, ``median_seconds`` or ``p90_seconds``), NA where no handoff happened.
    Departments are sorted by name on both axes, and a department that only hands over or only
    receives still gets its row and column, so the table is square."""
    departments = sorted(set(handoffs["source_department"]) | set(handoffs["target_department"]))
    matrix = handoffs.pivot(index="source_department", columns="target_department", values=value)
    matrix = matrix.reindex(index=departments, columns=departments)
    matrix.index.name, matrix.columns.name = "from", "to"
    return matrix


VARIANT_SEPARATOR = " > "


def discover_variants(
    conn: Connection,
    events: sa.FromClause,
    spec: LogSpec | None = None,
    *,
    outcomes: sa.FromClause | None = None,
    max_steps: int | None = None,
    limit: int | None = 50,
    rarest: bool = False,
    contains: str | None = None,
    **keys,
) -> pd.DataFrame:
    """Whole journeys (each case's sequence of activities) and how often each occurs.

    ``max_steps`` keeps each case's first N steps (long customer histories are otherwise all
    unique). ``outcomes`` is an optional selectable ``case_id, churned`` (boolean) that adds
    each variant's churn rate. ``rarest`` sorts the least frequent first; ``contains`` keeps
    variants containing that text.

    Out: ``variant, steps, customers, share, churn_rate, median_seconds`` (first to last step).
    """
    log = prepare_log(events, spec, **keys)
    p = _positions(log)
    kept = sa.select(p).where(p.c.pos <= max_steps).subquery() if max_steps else p
    per_case = (
        sa.select(
            kept.c.case_id,
            # SQLAlchemy 2.1's portable ordered aggregate: string_agg(x, sep ORDER BY pos).
            sa.func.aggregate_strings(kept.c.activity, VARIANT_SEPARATOR)
            .aggregate_order_by(kept.c.pos)
            .label("variant"),
            sa.func.count().label("steps"),
            (_epoch(sa.func.max(kept.c.ts)) - _epoch(sa.func.min(kept.c.ts))).label("seconds"),
        )
        .group_by(kept.c.case_id)
        .cte("per_case")  # read three times below; as a subquery its window ran three times
    )
    churned = sa.literal(None, sa.Boolean)
    src = per_case
    if outcomes is not None:
        src = per_case.outerjoin(outcomes, outcomes.c.case_id == per_case.c.case_id)
        churned = outcomes.c.churned
    n_cases = sa.select(sa.func.count()).select_from(per_case).scalar_subquery()
    customers = sa.func.count()
    q = (
        sa.select(
            per_case.c.variant,
            sa.func.min(per_case.c.steps),
            customers,
            sa.cast(customers, sa.Double) / sa.func.nullif(n_cases, 0),
            sa.func.avg(sa.case((churned.is_(True), 1.0), (churned.is_(False), 0.0))),
            _median(per_case.c.seconds),
        )
        .select_from(src)
        .group_by(per_case.c.variant)
    )
    if contains:
        q = q.where(per_case.c.variant.contains(contains, autoescape=True))
    q = q.order_by(customers.asc() if rarest else customers.desc(), per_case.c.variant)
    if limit:
        q = q.limit(limit)
    cols = ["variant", "steps", "customers", "share", "churn_rate", "median_seconds"]
    return _numeric(
        _frame(conn, q, cols), ints=("steps", "customers"), floats=("share", "churn_rate", "median_seconds")
    )


def funnel(
    conn: Connection,
    events: sa.FromClause,
    steps: Sequence[str],
    *,
    window_days: float = 30.0,
    segments: sa.FromClause | None = None,
    spec: LogSpec | None = None,
    **keys,
) -> pd.DataFrame:
    """An ordered funnel: each case enters at its first ``steps[0]`` and converts through step
    k when it does ``steps[k]`` after step k-1 and within ``window_days`` of entering. "After"
    is by the journey's step order (time, then the files' order), so a step logged at the same
    second but on a later line still follows.

    ``segments`` (optional selectable ``case_id, segment``) breaks the funnel down by segment.
    Out: one row per (segment, step): ``segment`` ("all" without segments), ``step`` (1-based),
    ``activity, customers, conversion`` (of those entering), ``step_conversion`` (of the
    previous step), ``dropped`` (lost since the previous step), ``median_seconds_to_convert``
    (from entering to this step).
    """
    if not steps:
        raise ValueError("funnel() needs at least one step, e.g. steps=['checkout', 'purchase']")
    log = _positions(prepare_log(events, spec, **keys))
    window_s = window_days * 86400.0
    # Within a case time never decreases with the position, so the earliest qualifying position
    # and the earliest qualifying time belong to the same step.
    entry = (
        sa.select(log.c.case_id, sa.func.min(log.c.pos).label("p1"), sa.func.min(log.c.ts).label("t1"))
        .where(log.c.activity == steps[0])
        .group_by(log.c.case_id)
        .subquery("f1")
    )
    reached = [entry]
    prev = entry
    for k, name in enumerate(steps[1:], start=2):
        nxt = (
            sa.select(
                prev.c.case_id, prev.c.t1, sa.func.min(log.c.pos).label(f"p{k}"), sa.func.min(log.c.ts).label(f"t{k}")
            )
            .select_from(prev.join(log, log.c.case_id == prev.c.case_id))
            .where(
                log.c.activity == name,
                log.c.pos > prev.c[f"p{k - 1}"],
                _epoch(log.c.ts) - _epoch(prev.c.t1) <= window_s,
            )
            .group_by(prev.c.case_id, prev.c.t1)
            .subquery(f"f{k}")
        )
        reached.append(nxt)
        prev = nxt
    parts = []
    for k, sq in enumerate(reached, start=1):
        seg = sa.literal_column("'all'", sa.String)
        base = sq
        if segments is not None:
            base = sq.outerjoin(segments, segments.c.case_id == sq.c.case_id)
            seg = sa.func.coalesce(sa.cast(segments.c.segment, sa.String), "unknown")
        secs = _epoch(sq.c[f"t{k}"]) - _epoch(sq.c.t1)
        parts.append(
            sa.select(
                seg.label("segment"),
                sa.literal_column(str(k)).label("step"),
                sa.func.count().label("customers"),
                _median(secs).label("median_seconds"),
            )
            .select_from(base)
            .group_by(seg)
        )
    u = sa.union_all(*parts).subquery("funnel")
    rows = _frame(
        conn, sa.select(u).order_by(u.c.segment, u.c.step), ["segment", "step", "customers", "median_seconds"]
    )
    rows = _numeric(rows, ints=("step", "customers"), floats=("median_seconds",))
    segs = sorted(rows["segment"].unique()) if len(rows) else ["all"]
    grid = pd.MultiIndex.from_product([segs, range(1, len(steps) + 1)], names=["segment", "step"])
    out = rows.set_index(["segment", "step"]).reindex(grid).reset_index()
    out["customers"] = out["customers"].fillna(0).astype("int64")
    out["activity"] = pd.array([steps[s - 1] for s in out["step"]], dtype="string")
    out["segment"] = out["segment"].astype("string")
    first = out.groupby("segment")["customers"].transform("first")
    previous = out.groupby("segment")["customers"].shift(1).fillna(out["customers"])
    out["conversion"] = (out["customers"] / first.where(first > 0)).astype("float64")
    out["step_conversion"] = (out["customers"] / previous.where(previous > 0)).astype("float64")
    out["dropped"] = (previous - out["customers"]).astype("int64")
    out = out.rename(columns={"median_seconds": "median_seconds_to_convert"})
    return out[
        [
            "segment",
            "step",
            "activity",
            "customers",
            "conversion",
            "step_conversion",
            "dropped",
            "median_seconds_to_convert",
        ]
    ]


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
    from cxdash.store.database import bulk_insert

    bulk_insert(conn, table, pd.DataFrame(data))
    return table


# ----------------------------------------------------------------------------- friction hotspots
#
# A friction *moment* is one row (customer, time, hotspot, leaked_department,
# absorbed_department). The department that *leaked* the customer is the one whose step went
# wrong (the error, the first contact that did not solve it, the ticket that was transferred or
# waited); the one that *absorbed* it is the department of the customer's next contact within
# ``repeat_days`` (for a repeat contact: the department that took the repeat), "(none)" when
# the customer did not get back in touch.

CONTACT_PREFIX = "contact: "
NONE = "(none)"
# What each hotspot means, in the words the registry declares for its signal.
HOTSPOT_DESCRIPTIONS = {s.hotspot: s.description for s in SIGNALS.values() if s.hotspot}


def _error_step(steps) -> sa.ColumnElement[bool]:
    """Is a journey step (a row with ``kind, activity, department``) an error: a checkout error
    (``cxdash.metrics.signals``: a product event named like an error) or a failed payment (a transaction
    with a failed status, which the timeline names ``FAILED_PAYMENT_STEP``)?"""
    return sa.or_(
        _checkout_error_step(steps), sa.and_(steps.kind == "transactions", steps.activity == FAILED_PAYMENT_STEP)
    )


def _checkout_error_step(steps) -> sa.ColumnElement[bool]:
    return sa.and_(steps.kind == "events", product_event(steps.department), matches("checkout_error", steps.activity))


def _seconds_between(later, earlier):
    return _epoch(later) - _epoch(earlier)


def _contacts(jl: sa.FromClause) -> sa.Subquery:
    return (
        sa.select(jl.c.cx_id, jl.c.ts, jl.c.department, jl.c.activity, jl.c.channel)
        .where(jl.c.activity.like(CONTACT_PREFIX + "%"))
        .subquery("contacts")
    )


def _with_absorber(raw: sa.Subquery, contacts: sa.Subquery, days: float) -> sa.Select:
    """Add ``absorbed_department``: the department of the first contact after the moment. Every
    row of ``raw`` stays a moment of its own (two errors in the same second are two errors, as the
    model's features count them); the absorber is looked up once per customer, time and hotspot."""
    at = sa.select(raw.c.cx_id, raw.c.ts, raw.c.hotspot).distinct().subquery(raw.name + "_at")
    after = contacts.c.ts > at.c.ts
    near = _seconds_between(contacts.c.ts, at.c.ts) <= days * 86400.0
    ranked = (
        sa.select(
            at,
            contacts.c.department.label("next_department"),
            sa.func.row_number()
            .over(partition_by=(at.c.cx_id, at.c.ts, at.c.hotspot), order_by=(contacts.c.ts, contacts.c.department))
            .label("rk"),
        )
        .select_from(at.outerjoin(contacts, sa.and_(contacts.c.cx_id == at.c.cx_id, after, near)))
        .subquery(raw.name + "_absorbed")
    )
    first = (
        sa.select(ranked.c.cx_id, ranked.c.ts, ranked.c.hotspot, ranked.c.next_department)
        .where(ranked.c.rk == 1)
        .subquery(raw.name + "_first")
    )
    return sa.select(
        raw.c.cx_id,
        raw.c.ts,
        raw.c.hotspot,
        raw.c.leaked_department,
        sa.func.coalesce(first.c.next_department, NONE).label("absorbed_department"),
    ).select_from(
        raw.join(first, sa.and_(first.c.cx_id == raw.c.cx_id, first.c.ts == raw.c.ts, first.c.hotspot == raw.c.hotspot))
    )


def friction_moments(
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    keyed: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> sa.CTE:
    """Every friction moment in the store (see ``HOTSPOT_DESCRIPTIONS``), or those at a time in
    ``[since, until)``. The moments are found on the whole history and then kept by their time, so
    a repeat contact in the period whose first contact came just before it still counts.

    Out (a CTE, usable like a subquery): ``cx_id, ts, hotspot, leaked_department,
    absorbed_department``. With ``keyed=True`` the ``cx_id`` column holds the customer's
    integer ``cx_key`` (the keyed journey log: no join of every step to the customer table).
    """
    from cxdash.store.database import KIND_TABLES, customer_keys_table, sources_table

    # One scan of the timeline, shared by every part (a CTE referenced several times is
    # materialised once by DuckDB and PostgreSQL).
    if keyed:
        keyed_log = journey_log(keyed=True)
        jl = sa.select(keyed_log.c.cx_key.label("cx_id"), *[c for c in keyed_log.c if c.name != "cx_key"]).cte(
            "journey_steps"
        )
    else:
        jl = journey_log().element.cte("journey_steps")
    contacts = _contacts(jl)
    window = repeat_days * 86400.0
    parts: list[sa.Select] = []

    def moments(q: sa.Select, name: str) -> sa.Subquery:
        return q.subquery(name.replace(" ", "_"))

    # errors: checkout errors and failed payments, as the registry defines them
    errors = sa.select(
        jl.c.cx_id,
        jl.c.ts,
        sa.case(
            (_checkout_error_step(jl.c), SIGNALS["checkout_error"].hotspot), else_=SIGNALS["failed_payment"].hotspot
        ).label("hotspot"),
        jl.c.department.label("leaked_department"),
    ).where(_error_step(jl.c))
    parts.append(_with_absorber(moments(errors, "errors"), contacts, repeat_days))

    # tickets: repeat contacts, transfers and long waits, read from the tickets table
    k, im, src = KIND_TABLES["tickets"], customer_keys_table, sources_table
    dept = sa.func.coalesce(k.c.department, src.c.department, "unknown")
    if keyed:
        tickets_from, ticket_customer = k.join(src, src.c.name == k.c.source), k.c.cx_key
    else:
        tickets_from, ticket_customer = (
            k.join(im, im.c.cx_key == k.c.cx_key).join(src, src.c.name == k.c.source),
            im.c.cx_id,
        )

    # repeat contacts: the registry's (the same tickets the repeat-contact KPI counts). The earlier
    # ticket's department leaked the customer, the repeat's own absorbed them.
    by_topic = (k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k))
    same_topic = (
        sa.select(
            ticket_customer.label("cx_id"),
            k.c.opened_at.label("ts"),
            dept.label("absorbed_department"),
            previous_same_topic(*by_topic).label("prev_at"),
            sa.func.lag(dept).over(**repeat_window(*by_topic)).label("leaked_department"),
        )
        .select_from(tickets_from)
        .where(k.c.cx_key.is_not(None), k.c.opened_at.is_not(None))
        .subquery("same_topic")
    )
    parts.append(
        sa.select(
            same_topic.c.cx_id,
            same_topic.c.ts,
            sa.literal(SIGNALS["repeat_contact"].hotspot, sa.String).label("hotspot"),
            same_topic.c.leaked_department,
            same_topic.c.absorbed_department,
        ).where(is_repeat(same_topic.c.ts, same_topic.c.prev_at, repeat_days))
    )

    # help page, then a contact within N days
    help_visits = sa.select(jl.c.cx_id, jl.c.ts, jl.c.department).where(jl.c.activity == "help_page").subquery("hv")
    hp = (
        sa.select(
            contacts.c.cx_id,
            contacts.c.ts,
            help_visits.c.department.label("leaked_department"),
            contacts.c.department.label("absorbed_department"),
            sa.func.row_number()
            .over(partition_by=(contacts.c.cx_id, contacts.c.ts, contacts.c.activity), order_by=help_visits.c.ts.desc())
            .label("rk"),
        )
        .select_from(
            contacts.join(
                help_visits,
                sa.and_(
                    help_visits.c.cx_id == contacts.c.cx_id,
                    help_visits.c.ts <= contacts.c.ts,
                    _seconds_between(contacts.c.ts, help_visits.c.ts) <= window,
                ),
            )
        )
        .subquery("help_then_contact")
    )
    parts.append(
        sa.select(
            hp.c.cx_id,
            hp.c.ts,
            sa.literal("help page then contact", sa.String).label("hotspot"),
            hp.c.leaked_department,
            hp.c.absorbed_department,
        ).where(hp.c.rk == 1)
    )

    transferred = (
        sa.select(
            ticket_customer.label("cx_id"),
            k.c.opened_at.label("ts"),
            sa.literal("transferred ticket", sa.String).label("hotspot"),
            dept.label("leaked_department"),
        )
        .select_from(tickets_from)
        .where(matches("transfer", k.c.transfers), k.c.opened_at.is_not(None), ticket_customer.is_not(None))
    )
    parts.append(_with_absorber(moments(transferred, "transferred"), contacts, repeat_days))
    topic = sa.func.coalesce(k.c.topic, "other")
    durations = (
        sa.select(
            ticket_customer.label("cx_id"),
            k.c.opened_at.label("ts"),
            dept.label("department"),
            topic.label("topic"),
            _seconds_between(k.c.closed_at, k.c.opened_at).label("seconds"),
        )
        .select_from(tickets_from)
        .where(k.c.closed_at.is_not(None), k.c.opened_at.is_not(None), ticket_customer.is_not(None))
        .subquery("durations")
    )
    p90 = (
        sa.select(durations.c.topic, _p90(durations.c.seconds).label("p90"))
        .group_by(durations.c.topic)
        .having(sa.func.count() >= 20)
        .subquery("topic_p90")
    )
    waits = (
        sa.select(
            durations.c.cx_id,
            durations.c.ts,
            sa.literal("long wait", sa.String).label("hotspot"),
            durations.c.department.label("leaked_department"),
        )
        .select_from(durations.join(p90, p90.c.topic == durations.c.topic))
        .where(durations.c.seconds > p90.c.p90)
    )
    parts.append(_with_absorber(moments(waits, "waits"), contacts, repeat_days))

    # rework and dead ends, from each step's neighbours
    w = dict(partition_by=jl.c.cx_id, order_by=(*step_order(jl), jl.c.activity))
    # A period needs only the steps near it: a rework counts a previous step at most `window`
    # earlier, a dead end looks `dead_end_days` ahead, so steps outside [since - window,
    # until + dead end) cannot change a moment inside [since, until), and the window (the
    # costliest sort of the hotspots) runs on the period's steps instead of the whole history.
    near = in_period(
        jl.c.ts,
        since - timedelta(seconds=window) if since is not None else None,
        until + timedelta(days=dead_end_days) if until is not None else None,
    )
    seq = (
        sa.select(
            jl.c.cx_id,
            jl.c.ts,
            jl.c.activity,
            jl.c.department,
            jl.c.kind,
            sa.func.lag(jl.c.activity).over(**w).label("prev_activity"),
            sa.func.lag(jl.c.ts).over(**w).label("prev_ts"),
            sa.func.lead(jl.c.ts).over(**w).label("next_ts"),
        )
        .where(jl.c.activity != "subscription ended", *near)
        .cte("seq")  # read by rework and dead ends: one window pass, not two
    )
    rework = sa.select(
        seq.c.cx_id,
        seq.c.ts,
        sa.literal("rework", sa.String).label("hotspot"),
        seq.c.department.label("leaked_department"),
    ).where(
        seq.c.activity == seq.c.prev_activity,
        seq.c.department.not_in(("web", "marketing")),
        _seconds_between(seq.c.ts, seq.c.prev_ts) <= window,
    )
    parts.append(_with_absorber(moments(rework, "rework"), contacts, repeat_days))
    data_end = sa.select(sa.func.max(jl.c.ts)).scalar_subquery()
    dead = sa.select(
        seq.c.cx_id,
        seq.c.ts,
        sa.literal("dead end", sa.String).label("hotspot"),
        seq.c.department.label("leaked_department"),
        sa.literal(NONE, sa.String).label("absorbed_department"),
    ).where(
        _error_step(seq.c),
        _seconds_between(data_end, seq.c.ts) > dead_end_days * 86400.0,
        sa.or_(seq.c.next_ts.is_(None), _seconds_between(seq.c.next_ts, seq.c.ts) > dead_end_days * 86400.0),
    )
    parts.append(dead)
    if since is None and until is None:
        return sa.union_all(*parts).cte("friction_moments")
    every = sa.union_all(*parts).subquery("every_moment")
    return sa.select(every).where(*in_period(every.c.ts, since, until)).cte("friction_moments")


def customer_outcomes(conn: Connection, *, keyed: bool = False, churn=None) -> sa.Subquery:
    """Per customer of the KPI universe: ``case_id`` (cx_id, or the integer cx_key with
    ``keyed=True``), ``churned`` under the churn definition in force (``churn``, a
    ``cxdash.metrics.churn.Definition``; default the suggested one), ``churned_at`` (when, NULL for an
    undated label), ``churn_known`` (the definition judges the customer: ``churn.covered``; false
    for everyone when no definition fits the data), ``revenue_12m`` (revenue in the 365 days up to
    the data's latest date, same rule as the revenue KPI)."""
    from datetime import timedelta

    from cxdash.metrics import as_of
    from cxdash.metrics import churn as churn_defs
    from cxdash.metrics.timeline import FAILED_PAYMENT_STATUSES
    from cxdash.store.database import KIND_TABLES, customer_keys_table

    by = "cx_key" if keyed else "cx_id"
    now = as_of(conn)
    universe = churn_defs.customer_universe(conn, by=by).subquery("universe")
    definition = churn_defs.in_force(conn, churn)
    if definition is None:
        churned = (
            sa.select(universe.c[by], sa.cast(sa.null(), sa.DateTime).label("churn_at"))
            .where(sa.false())
            .subquery("churned")
        )
        judged = sa.select(universe.c[by]).where(sa.false()).subquery("judged")
    else:
        churned = churn_defs.churned(conn, definition, now=now, by=by).subquery("churned")
        judged = churn_defs.covered(conn, definition, by=by).subquery("judged")
    im, tx = customer_keys_table, KIND_TABLES["transactions"]

    def per_customer(t: sa.Table, value, name: str, *where) -> sa.Select:
        if keyed:  # the rows carry the key: no join
            return (
                sa.select(t.c.cx_key.label(by), value.label(name))
                .where(t.c.cx_key.is_not(None), *where)
                .group_by(t.c.cx_key)
            )
        return (
            sa.select(im.c.cx_id.label(by), value.label(name))
            .select_from(t.join(im, im.c.cx_key == t.c.cx_key))
            .where(*where)
            .group_by(im.c.cx_id)
        )

    since = (now or sa.func.now()) - timedelta(days=365) if now else None
    paid = sa.func.lower(sa.func.coalesce(tx.c.status, "")).not_in(FAILED_PAYMENT_STATUSES)
    recent = (tx.c.timestamp > since,) if since is not None else ()
    rev = per_customer(tx, sa.func.sum(tx.c.amount), "revenue", paid, *recent).subquery("revenue")
    is_churned = churned.c[by].is_not(None)
    return (
        sa.select(
            universe.c[by].label("case_id"),
            is_churned.label("churned"),
            sa.cast(churned.c.churn_at, sa.DateTime).label("churned_at"),
            # a churned customer is judged by definition, whatever covered() says of them
            sa.or_(judged.c[by].is_not(None), is_churned).label("churn_known"),
            sa.func.coalesce(rev.c.revenue, 0.0).label("revenue_12m"),
        )
        .select_from(
            universe.outerjoin(churned, churned.c[by] == universe.c[by])
            .outerjoin(judged, judged.c[by] == universe.c[by])
            .outerjoin(rev, rev.c[by] == universe.c[by])
        )
        .subquery("outcomes")
    )


HOTSPOT_COLUMNS = [
    "hotspot",
    "customers",
    "moments",
    "customer_share",
    "customers_judged",
    "churned",
    "churned_before",
    "churn_rate",
    "baseline_customers",
    "baseline_churned",
    "baseline_churn_rate",
    "lift",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "tested",
    "significant",
    "why",
    "churn_definition",
    "excess_churned",
    "revenue_at_stake",
    "leaked_department",
    "absorbed_department",
    "route_share",
    "description",
]


def hotspots(
    conn: Connection,
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    moments: sa.FromClause | None = None,
    keyed: bool = False,
    churn=None,
) -> pd.DataFrame:
    """Friction hotspots with the churn they come with (under ``churn``, a
    ``cxdash.metrics.churn.Definition``; default the suggested definition), ranked by excess churned
    customers, or by customers touched when churn cannot be compared.

    Out: one row per hotspot, ``HOTSPOT_COLUMNS``: ``customers`` touched (of the KPI universe),
    ``moments`` and ``customer_share``; the 2x2 table of the comparison: ``customers_judged`` (touched,
    churn known, not churned before the first moment; ``churned_before`` counts those left out for
    that), ``churned`` (of them, churned after it), ``baseline_customers`` (never hit it, churn
    known) and ``baseline_churned``; then the rates, ``lift`` (risk ratio, NaN with a ``why`` when
    a zero cell or unknown churn leaves none), ``ci_low``/``ci_high`` (95%), ``p_value`` (Fisher,
    two-sided), ``p_adjusted`` (Benjamini-Hochberg across the hotspots ``tested``), ``significant``
    and ``churn_definition`` (its name, NA when none): see ``cxdash.journeys.hotspot_stats``.
    ``excess_churned`` = customers_judged x (churn_rate - baseline_churn_rate) is the ranking key;
    ``revenue_at_stake`` = last-12-months revenue of touched customers who have not churned (yet);
    ``leaked_department -> absorbed_department`` = the most common route and ``route_share`` its
    share of the moments. ``keyed`` computes on integer customer keys (the same result, less work
    on a large store).
    """
    from cxdash.journeys.hotspot_stats import hotspot_statistics
    from cxdash.metrics import churn as churn_defs

    m = (
        moments
        if moments is not None
        else friction_moments(repeat_days=repeat_days, dead_end_days=dead_end_days, keyed=keyed)
    )
    definition = churn_defs.in_force(conn, churn)
    out = customer_outcomes(conn, keyed=keyed, churn=definition)
    per_cx = (
        sa.select(m.c.hotspot, m.c.cx_id, sa.func.min(m.c.ts).label("first_ts"), sa.func.count().label("n"))
        .group_by(m.c.hotspot, m.c.cx_id)
        .subquery("per_cx")
    )
    known = out.c.churn_known.is_(True)
    is_churned = out.c.churned.is_(True)
    # an undated churn (a snapshot label) cannot be placed before the moment: it counts as after
    after = sa.and_(known, is_churned, sa.or_(out.c.churned_at.is_(None), out.c.churned_at >= per_cx.c.first_ts))
    before = sa.and_(known, is_churned, out.c.churned_at < per_cx.c.first_ts)

    def count_if(condition) -> sa.ColumnElement:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    stats_q = (
        sa.select(
            per_cx.c.hotspot,
            sa.func.count().label("customers"),
            sa.func.sum(per_cx.c.n).label("moments"),
            count_if(known).label("known"),
            count_if(after).label("churned"),
            count_if(before).label("churned_before"),
            count_if(sa.and_(known, is_churned)).label("churned_any"),
            sa.func.sum(sa.case((is_churned, 0.0), else_=out.c.revenue_12m)).label("revenue_at_stake"),
        )
        .select_from(per_cx.join(out, out.c.case_id == per_cx.c.cx_id))
        .group_by(per_cx.c.hotspot)
        .subquery("hotspot_stats")
    )
    routes = (
        sa.select(m.c.hotspot, m.c.leaked_department, m.c.absorbed_department, sa.func.count().label("n"))
        .group_by(m.c.hotspot, m.c.leaked_department, m.c.absorbed_department)
        .subquery("routes")
    )
    ranked = sa.select(
        routes,
        sa.func.row_number()
        .over(
            partition_by=routes.c.hotspot,
            order_by=(routes.c.n.desc(), routes.c.leaked_department, routes.c.absorbed_department),
        )
        .label("rk"),
        (sa.cast(routes.c.n, sa.Double) / sa.func.sum(routes.c.n).over(partition_by=routes.c.hotspot)).label("share"),
    ).subquery("ranked_routes")
    q = (
        sa.select(stats_q, ranked.c.leaked_department, ranked.c.absorbed_department, ranked.c.share)
        .join(ranked, sa.and_(ranked.c.hotspot == stats_q.c.hotspot, ranked.c.rk == 1))
        .order_by(stats_q.c.hotspot)
    )
    stats = _frame(
        conn,
        q,
        [
            "hotspot",
            "customers",
            "moments",
            "known",
            "churned",
            "churned_before",
            "churned_any",
            "revenue_at_stake",
            "leaked_department",
            "absorbed_department",
            "route_share",
        ],
    )
    total, total_known, total_churned = conn.execute(
        sa.select(sa.func.count(), count_if(known), count_if(sa.and_(known, is_churned)))
    ).one()
    total, total_known, total_churned = int(total or 0), int(total_known or 0), int(total_churned or 0)
    if stats.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in HOTSPOT_COLUMNS})
    stats = _numeric(
        stats,
        ints=("customers", "moments", "known", "churned", "churned_before", "churned_any"),
        floats=("revenue_at_stake", "route_share"),
    )
    stats["customer_share"] = stats["customers"] / total if total else float("nan")
    stats["customers_judged"] = stats["known"] - stats["churned_before"]
    stats["baseline_customers"] = total_known - stats["known"]
    stats["baseline_churned"] = total_churned - stats["churned_any"]
    frame = hotspot_statistics(stats, churn_definition=definition.name if definition is not None else None)
    frame["description"] = frame["hotspot"].map(HOTSPOT_DESCRIPTIONS).fillna("")
    # the name breaks ties: the same order every run; no comparable churn (NaN) ranks by reach
    frame = frame.sort_values(
        ["excess_churned", "customers", "hotspot"],
        ascending=[False, False, True],
        na_position="last",
        ignore_index=True,
        kind="stable",
    )
    for col in ("hotspot", "leaked_department", "absorbed_department", "description"):
        frame[col] = frame[col].astype("string")
    return frame[HOTSPOT_COLUMNS]


# ----------------------------------------------------------------------------- drill-down


def hotspot_customers(
    conn: Connection,
    hotspot: str,
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    limit: int | None = 500,
    moments: sa.FromClause | None = None,
    keyed: bool = False,
    churn=None,
) -> pd.DataFrame:
    """The customers in one hotspot, most moments first, with masked contact details (``churned``
    under ``churn``, default the suggested definition).

    Out: ``cx_id, moments, first_at, last_at, leaked_department, absorbed_department, churned,
    revenue_12m, email, phone`` (email and phone masked: cohorts leave the app as files).
    ``keyed`` computes on integer customer keys and names the customers on the result.
    """
    from cxdash.store.database import KIND_TABLES, customer_keys_table

    m = (
        moments
        if moments is not None
        else friction_moments(repeat_days=repeat_days, dead_end_days=dead_end_days, keyed=keyed)
    )
    out = customer_outcomes(conn, keyed=keyed, churn=churn)
    crm, im = KIND_TABLES["customers"], customer_keys_table
    crm_customer = crm.c.cx_key if keyed else im.c.cx_id
    contact = (
        sa.select(
            crm_customer.label("cx_id"),
            sa.func.min(crm.c.email).label("email"),
            sa.func.min(crm.c.phone).label("phone"),
        )
        .select_from(crm if keyed else crm.join(im, im.c.cx_key == crm.c.cx_key))
        .where(crm.c.cx_key.is_not(None))
        .group_by(crm_customer)
        .subquery("contact")
    )
    per_cx = (
        sa.select(
            m.c.cx_id,
            sa.func.count().label("moments"),
            sa.func.min(m.c.ts).label("first_at"),
            sa.func.max(m.c.ts).label("last_at"),
            sa.func.min(m.c.leaked_department).label("leaked"),
            sa.func.min(m.c.absorbed_department).label("absorbed"),
        )
        .where(m.c.hotspot == hotspot)
        .group_by(m.c.cx_id)
        .subquery("per_cx")
    )
    joined = per_cx.join(out, out.c.case_id == per_cx.c.cx_id).outerjoin(contact, contact.c.cx_id == per_cx.c.cx_id)
    name = per_cx.c.cx_id
    if keyed:  # name the customers on the (small) result
        names = case_names()
        joined, name = joined.join(names, names.c.case_id == per_cx.c.cx_id), names.c.name
    rest = [c for c in per_cx.c if c.name != "cx_id"]
    q = (
        sa.select(name.label("cx_id"), *rest, out.c.churned, out.c.revenue_12m, contact.c.email, contact.c.phone)
        .select_from(joined)
        .order_by(per_cx.c.moments.desc(), name)
    )
    if limit:
        q = q.limit(limit)
    cols = [
        "cx_id",
        "moments",
        "first_at",
        "last_at",
        "leaked_department",
        "absorbed_department",
        "churned",
        "revenue_12m",
        "email",
        "phone",
    ]
    frame = _frame(conn, q, cols)
    frame = _numeric(frame, ints=("moments",), floats=("revenue_12m",))
    frame["churned"] = frame["churned"].astype("bool")
    frame["email"] = pd.array([mask_email(v) for v in frame["email"]], dtype="string")
    frame["phone"] = pd.array([mask_phone(v) for v in frame["phone"]], dtype="string")
    return frame


def customer_journey(conn: Connection, cx_id: str, *, limit: int = 500) -> pd.DataFrame:
    """One customer's timeline, oldest first (steps at the same time in the files' order):
    ``ts, activity, department, channel, value``."""
    jl = journey_log()
    q = (
        sa.select(jl.c.ts, jl.c.activity, jl.c.department, jl.c.channel, jl.c.value)
        .where(jl.c.cx_id == cx_id)
        .order_by(*step_order(jl), jl.c.activity)
        .limit(limit)
    )
    return _numeric(_frame(conn, q, ["ts", "activity", "department", "channel", "value"]), floats=("value",))


def neutralise_cell(value):
    """Prefix text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
    CR) with a quote, so an exported cohort cannot carry CSV injection."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def cohort_csv(frame: pd.DataFrame) -> bytes:
    """The cohort as a spreadsheet-safe CSV (``cxdash.exporting.safe_csv``): formulas neutralised,
    and a cell holding a carriage return quoted so it cannot start a row of its own."""
    from cxdash.exporting import safe_csv

    return safe_csv(frame)


def customer_segments(field_name: str = "segment", *, keyed: bool = False) -> sa.Subquery:
    """``case_id, segment``: each customer's CRM ``segment`` (or another CRM field, e.g.
    ``plan`` or ``region``), for funnel breakdowns; ``case_id`` is the cx_key with ``keyed=True``."""
    from cxdash.store.database import KIND_TABLES, customer_keys_table

    crm, im = KIND_TABLES["customers"], customer_keys_table
    if keyed:
        return (
            sa.select(crm.c.cx_key.label("case_id"), sa.func.min(crm.c[field_name]).label("segment"))
            .where(crm.c.cx_key.is_not(None))
            .group_by(crm.c.cx_key)
            .subquery("segments")
        )
    return (
        sa.select(im.c.cx_id.label("case_id"), sa.func.min(crm.c[field_name]).label("segment"))
        .select_from(crm.join(im, im.c.cx_key == crm.c.cx_key))
        .group_by(im.c.cx_id)
        .subquery("segments")
    )
