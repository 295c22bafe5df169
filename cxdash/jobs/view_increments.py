"""The stored default views brought up to date after small appends (issue 17: a small append
refreshes what it touches), each beside the view it catches up (``cxdash.jobs.views``).

``INCREMENTS`` maps a view's name to a function ``(conn, before, loads, **params)`` that returns the
view as computed whole would be, from ``before`` (the view stored for the same parameters before
the loads ``loads``, each an append that only added rows: ``cxdash.store.rollups.appends_since``),
or None to compute it whole.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.jobs.views import (
    _MAP_PAIRS_KEPT,
    _bounds,
    _definition,
    _log,
    _map,
    _map_lock,
    _spec,
    activity_counts_kept,
    counting_spec,
)
from cxdash.journeys import percentile_runs
from cxdash.metrics.periods import as_of, moves_as_of
from cxdash.metrics.queries import count_rows
from cxdash.store.database import KIND_TABLES
from cxdash.store.dialect import among
from cxdash.store.rollups import appended_keys, appended_kinds
from cxdash.store.version import data_stamp

__all__ = ["INCREMENTS", "headline_after"]


# A stored view brought up to date after appends that only added rows (``rollups.appends_since``:
# no earlier row, customer key, CRM flag, hub, link or department changed), for the same
# parameters, so the same period: each returns the view as computed whole would be, or None to
# compute it whole. Views whose figures are sums over customers, or a row per customer, are
# caught up: a customer's rows depend on their own steps alone, so the appended customers (at most
# ``rollups.INCREMENT_MAX_KEYS``) are looked at again and the rest kept; the KPI tables compute
# again only their parts that read the appended kinds. Views with medians or top-N lists over
# every customer are kept only when the appended rows provably leave them as they were (the
# variants, hotspots, paths: each function says when); the handoffs, the first positions, the
# funnel and the journey map move their counts by the appended customers' difference and their
# medians by the values that came and left, from the values their stored result keeps near each
# median (``jr.percentile_runs``).


# The kinds whose rows the CLV forecasts never read (they read purchases, and the customer keys no
# noted append moves).
_NOT_PURCHASES = frozenset({"events", "tickets"})


# The kinds each churn basis reads: appends of them move who churned when, so every part of the KPIs.
_CHURN_READS = {
    "label": {"customers"},
    "subscriptions": {"subscriptions"},
    "events": {"events", "churn"},
    "inactivity": {"events", "transactions", "tickets", "subscriptions", "customers", "opportunities"},
}


# Answers two increments of one refresh ask alike (``_for_this_refresh``), a few of each kind.
_PERIOD_COUNTS: OrderedDict[tuple, object] = OrderedDict()
_STANDING_MOMENTS: OrderedDict[tuple, object] = OrderedDict()
_STANDING_MAPS: OrderedDict[tuple, object] = OrderedDict()
_THEIR_STEPS: OrderedDict[tuple, object] = OrderedDict()


def _for_this_refresh(conn: Connection, kept: OrderedDict, params: list, compute: Callable[[], object]):
    """``compute()``, or its answer kept in ``kept`` for the same ``params`` on the same data: keyed by
    the store, its data stamp (version and when it was made) and ``params`` as JSON, so never served
    for other data; the ``_MAP_PAIRS_KEPT`` newest are kept, as the journey maps are."""
    key = (
        conn.engine.url.render_as_string(hide_password=True),
        data_stamp(conn),
        json.dumps(params, sort_keys=True, default=str),
    )
    with _map_lock:
        if key in kept:
            return kept[key]
    answer = compute()
    with _map_lock:
        kept[key] = answer
        while len(kept) > _MAP_PAIRS_KEPT:
            kept.popitem(last=False)
    return answer


def _customers_stand(conn: Connection, loads: list[int], churn: str | None, kinds: set[str]) -> bool:
    """Whether the KPIs' customers and who of them churned when are as before the appends ``loads``
    (of ``kinds``): no CRM or churn records among them, a churn definition named (else the
    suggestion is read from the data) that reads none of their kinds, CRM records in the store (else
    the customers are everyone on the timeline, and their first row their signup), and the same data
    date (the periods and "churned by now" move with it)."""
    definition = _definition(churn)
    if definition is None or kinds & ({"customers", "churn"} | _CHURN_READS.get(definition.basis, set(KIND_TABLES))):
        return False
    return bool(count_rows(conn, KIND_TABLES["customers"])) and not moves_as_of(conn, loads)


def _kpi_sections_after(conn: Connection, loads: list[int], churn: str | None) -> frozenset[str] | None:
    """The parts of the KPI table (``metrics.period_kpis.SECTIONS``) the appends ``loads`` may have
    moved: those reading their kinds. None (all of them) unless the customers stand
    (``_customers_stand``)."""
    kinds = appended_kinds(conn, loads)
    sections = metrics.sections_reading(kinds)
    if sections is None or not _customers_stand(conn, loads, churn, kinds):
        return None
    return sections


def _standing_unless(reads: frozenset[str]) -> Callable[..., object]:
    """The increment of a view that reads the customers, their churn and rows of ``reads`` alone: as
    it was after appends of other kinds, when the customers stand (``_customers_stand``)."""

    def after(conn: Connection, before, loads: list[int], churn: str | None = None, **params):
        kinds = appended_kinds(conn, loads)
        return None if kinds & reads or not _customers_stand(conn, loads, churn, kinds) else before

    return after


def headline_after(conn: Connection, before, loads: list[int], churn: str | None = None):
    """The landing headline after appends: its customers, who churned, the data's date and the revenue
    as they were when the customers stand (``_customers_stand``) and no transaction came; the active
    customers then move by the appended customers' own (``metrics.headline_after``, from their
    journey steps read once: ``_their_steps``). Else None."""
    kinds = appended_kinds(conn, loads)
    cases = appended_keys(conn, loads)
    if cases is None or "transactions" in kinds or not _customers_stand(conn, loads, churn, kinds):
        return None
    return metrics.headline_after(conn, before, cases, loads, _their_steps(conn, cases), _definition(churn))


def _events_touched(conn: Connection, loads: list[int]) -> tuple | None:
    """``(customers, loads, their journey steps)`` for ``kpi_table(touched=...)`` when the loads hold
    events alone and touch at most ``rollups.INCREMENT_MAX_KEYS`` customers; else None (their
    activity part computed whole)."""
    if appended_kinds(conn, loads) != {"events"}:
        return None
    cases = appended_keys(conn, loads)
    return None if cases is None else (cases, loads, _their_steps(conn, cases))


def _trends_after(
    conn: Connection,
    before: pd.DataFrame,
    loads: list[int],
    filters: dict,
    repeat_days: int,
    months: int,
    churn: str | None = None,
) -> pd.DataFrame | None:
    """The monthly KPI table with only the parts the appends may have moved computed again."""
    sections = _kpi_sections_after(conn, loads, churn)
    if sections is None:
        return None
    periods = metrics.monthly_periods(metrics.as_of(conn), months)
    if before["period_start"].tolist() != [p.start for p in periods]:
        return None
    return metrics.kpi_table(
        conn,
        periods,
        metrics.Filters(**filters),
        repeat_days=repeat_days,
        churn=_definition(churn),
        keep=before,
        sections=sections,
        touched=_events_touched(conn, loads),
    )


def _report_after(
    conn: Connection,
    before: metrics.KpiReport,
    loads: list[int],
    first: str,
    last: str,
    filters: dict,
    repeat_days: int,
    horizon: int,
    churn: str | None = None,
) -> metrics.KpiReport | None:
    """The KPI report after appends of events or tickets alone: every figure computed again but the
    two CLV fits, which read only purchases and are kept with their totals (without filters: the
    total covers every customer, so no customer's moving into view changes it), the parts of the
    KPI table the appends cannot move, and after events alone the coverage but its share of
    customers with activity."""
    kinds = appended_kinds(conn, loads)
    if filters or not kinds <= _NOT_PURCHASES:
        return None
    period = metrics.Period.from_dates(date.fromisoformat(first), date.fromisoformat(last))
    sections = _kpi_sections_after(conn, loads, churn)
    return metrics.kpi_report(
        conn,
        period,
        metrics.Filters(),
        repeat_days=repeat_days,
        horizon_months=horizon,
        churn=_definition(churn),
        clv_from=before,
        kpi_sections=sections,
        kpi_touched=_events_touched(conn, loads),
        # events alone, the customers and their churn standing: only the share with activity can move
        coverage_after=before.coverage if kinds == {"events"} and sections is not None else None,
    )


def _people_after(conn: Connection, before: dict, loads: list[int], period=None) -> dict | None:
    cases = appended_keys(conn, loads)
    if cases is None:
        return None
    new = jr.people_new_to_period(conn, cases, loads, steps=_their_steps(conn, cases), **_bounds(period))
    return {side: int(before[side]) + new[side] for side in ("identified", "anonymous")}


def _customers_after(conn: Connection, before: dict, loads: list[int], filters: dict, period=None) -> dict | None:
    """Every case with a step in the period, whatever the filters (none removes a customer). Only
    for a period: an open one would count steps without a time, which the journey log drops."""
    cases = None if not period else appended_keys(conn, loads)
    if cases is None:
        return None
    new = jr.people_new_to_period(conn, cases, loads, steps=_their_steps(conn, cases), **_bounds(period))
    return {"customers": int(before["customers"]) + new["identified"] + new["anonymous"]}


def _ranked(counts: pd.Series, n: int) -> list[str] | None:
    """The ``n`` most frequent names (ties by name), or None when a tie straddles the cut (the
    database's collation, not Python's, would then decide which name is kept)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) > n and ordered[n - 1][1] == ordered[n][1]:
        return None
    return [name for name, _ in ordered[:n]]


def _period_counts(
    conn: Connection, spec: jr.LogSpec, period, loads: list[int], counts_before: list | None = None
) -> tuple[pd.Series, pd.Series]:
    """``(now, before)``: the period's steps per activity (renamed, before top N and collapsing: what
    top N ranks) now and before the loads ``loads``. ``counts_before``: the counts before them as
    the stored map's nodes keep them (``views.stored_nodes``), so only the loads' steps are
    counted; else every step of the period is (at 1M customers 0.5 s)."""
    plain = counting_spec(spec)

    def compute() -> tuple[pd.Series, pd.Series]:
        log = _log(period)
        added = jr.activity_counts(conn, sa.select(log).where(log.c.load_id.in_(loads)).subquery(), plain)
        added = added.set_index("activity")["count"]
        if counts_before is not None:
            before = pd.Series(dict(counts_before), dtype="int64")
            return before.add(added, fill_value=0).astype("int64"), before
        now = jr.activity_counts(conn, log, plain).set_index("activity")["count"]
        return now, now.sub(added, fill_value=0)

    # the map's nodes, its graph and cohort and the variants ask in one refresh: counted once
    return _for_this_refresh(conn, _PERIOD_COUNTS, [loads, period, plain.__dict__], compute)


def _kept_names(
    conn: Connection, spec: jr.LogSpec, period, loads: list[int], counts_before: list | None = None
) -> list[str] | None:
    """The activities top N keeps (after renaming) when it keeps the same ones as before the loads
    ``loads``: the period's counts now, and without those loads' steps, rank the same names first
    (``_period_counts``). Kept names are what pools every other customer's steps into ``(other)``,
    so a per-customer view stands only then. None when they differ or a tie straddles the cut;
    ``[]`` without top N."""
    if not spec.top_n:
        return []
    now, before = _period_counts(conn, spec, period, loads, counts_before)
    kept_now, kept_before = _ranked(now, spec.top_n), _ranked(before[before > 0], spec.top_n)
    return kept_now if kept_now is not None and kept_now == kept_before else None


# The name the appended customers' steps are registered under on a DuckDB connection
# (``_their_steps``), and the key of each connection's ``info`` saying which steps it holds.
_STEPS_VIEW = "cx_appended_steps"


def _their_steps(conn: Connection, cases: list[int]) -> sa.FromClause:
    """Every journey step of the customers ``cases`` (``jr.journey_log``'s columns, any time).

    On DuckDB they are read once per refresh (kept for the same data and keys, as
    ``_for_this_refresh`` keeps its answers) as an Arrow table and registered on each connection
    that asks: a dozen increments read them, and each read of the log for a thousand keys scans
    every stored event (at 1M customers, 36M events: 0.06-0.4 s a read). On other engines, the
    log's rows selected by key."""
    log = jr.journey_log()
    theirs = sa.select(log).where(among(log.c.cx_key, cases))
    if conn.dialect.name != "duckdb":
        return theirs.subquery("appended_steps")

    raw = conn.connection.dbapi_connection

    def finish_results() -> None:
        # DuckDB's own calls wait until the connection's last result is read to its end (a
        # ``first()`` reads one row and stops): a statement read whole ends it
        conn.execute(sa.select(sa.literal(1))).all()

    def read() -> tuple[object, object]:
        # the rows as the database typed them (a frame would guess a column of nulls)
        compiled = theirs.compile(conn, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        finish_results()
        return object(), raw.sql(str(compiled), params=params).to_arrow_table()

    token, table = _for_this_refresh(conn, _THEIR_STEPS, [sorted(cases)], read)
    if conn.info.get(_STEPS_VIEW) is not token:  # registered on this connection: those steps, or others
        finish_results()
        if _STEPS_VIEW in conn.info:
            raw.unregister(_STEPS_VIEW)
        raw.register(_STEPS_VIEW, table)
        conn.info[_STEPS_VIEW] = token
    return sa.table(_STEPS_VIEW, *(sa.column(c.name, c.type) for c in log.c))


def _rows_of(conn: Connection, cases: list[int], period) -> sa.Subquery:
    """The period's journey steps of the customers ``cases`` alone (``_their_steps``)."""
    steps = _their_steps(conn, cases)
    return sa.select(steps).where(*jr.in_period(steps.c.ts, **_bounds(period))).subquery("their_steps")


def _without(rows: sa.Subquery, loads: list[int]) -> sa.Subquery:
    """``rows`` without the loads' ``loads`` steps: the appended customers' steps before them."""
    return sa.select(rows).where(rows.c.load_id.not_in(loads)).subquery("their_steps_before")


def _same_without(read: Callable[[sa.FromClause], pd.DataFrame], rows: sa.Subquery, loads: list[int]) -> bool:
    """Whether ``read`` gives the same from ``rows`` as from them without the loads' ``loads`` steps:
    the appended customers' part of a view, compared rather than assumed."""
    return read(rows).equals(read(_without(rows, loads)))


def _their_log(conn: Connection, spec: jr.LogSpec, kept: list[str], cases: list[int], period):
    """``(rows, spec)``: the period's steps of the customers ``cases`` alone, and ``spec`` with top N
    written out as renames (each of their activities to its kept name, or ``(other)``), so a view read
    from those rows pools them as it would among every customer's. None for top N by department
    (renames act on activities, not departments)."""
    rows = _rows_of(conn, cases, period)
    if not spec.top_n:
        return rows, spec
    if spec.by_department:
        return None
    kept_set = set(kept)
    raw = conn.execute(sa.select(rows.c.activity).distinct()).scalars().all()
    pooled = {a: name if (name := spec.rename.get(a, a)) in kept_set else jr.OTHER for a in raw if a is not None}
    return rows, replace(spec, rename=pooled, top_n=None)


def _their_pooled_log(conn: Connection, loads: list[int], spec: jr.LogSpec, period):
    """``(cases, rows, spec)``: the appended customers (``appended_keys``), their steps in the period,
    and ``spec`` with top N written out as renames (``_their_log``), when top N keeps the same
    activities as before the loads (``_kept_names``); else None."""
    cases = appended_keys(conn, loads)
    top = None if cases is None else _kept_names(conn, spec, period, loads)
    theirs = None if top is None else _their_log(conn, spec, top, cases, period)
    return None if theirs is None else (cases, *theirs)


def _edge_customers_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], filters: dict, source: str, target: str, period=None
) -> pd.DataFrame | None:
    """The edge's customers: the appended customers' rows computed again (coded as the whole log
    is), every other customer's kept, in the view's order (most times first, then ``cx_id``)."""
    theirs = _their_pooled_log(conn, loads, _spec(filters), period)
    if theirs is None:
        return None
    cases, rows, pinned = theirs
    fresh = jr.edge_customers(conn, rows, source, target, pinned, case_names=jr.case_names())
    names = jr.case_names()
    touched = set(conn.execute(sa.select(names.c.name).where(among(names.c.case_id, cases))).scalars())
    kept = before[~before["case_id"].isin(touched)]
    both = pd.concat([kept, fresh], ignore_index=True) if len(fresh) else kept.reset_index(drop=True)
    return both.sort_values(["times", "case_id"], ascending=[False, True], kind="stable", ignore_index=True)


def _their_map_steps(conn: Connection, loads: list[int], filters: dict, period):
    # the graph and then the nodes ask in the same refresh: read once
    return _for_this_refresh(
        conn, _STANDING_MAPS, [loads, filters, period], lambda: _their_map_steps_now(conn, loads, filters, period)
    )


def _their_map_steps_now(conn: Connection, loads: list[int], filters: dict, period):
    """``(now, before)``: each appended customer's steps as the journey map counts them (pooled,
    collapsed, each beside the next step and the seconds to it: ``jr.case_steps``) with and without
    the loads' steps, read from their rows alone with top N written out; None when top N keeps
    other activities now. The map's figures are counts, shares and percentiles over every
    customer's such rows: where they are the same, the map stands."""
    theirs = _their_pooled_log(conn, loads, _spec(filters), period)
    if theirs is None:
        return None
    _, rows, pinned = theirs
    return jr.case_steps(conn, rows, pinned), jr.case_steps(conn, _without(rows, loads), pinned)


def _graph_after(conn: Connection, before: pd.DataFrame, loads: list[int], filters: dict, period=None):
    """The journey graph after appends: as it was when no appended customer's steps moved
    (``_their_map_steps``); else each edge's count, customers, seconds' sum and percentiles move by
    the transitions that came and left (``jr.map_after``), from what the stored graph keeps
    (``jr.journey_map(waits=True)``). None (computed whole) without it, or when an edge crossed the
    share that pools it, or a percentile moved past the seconds kept."""
    steps = _their_map_steps(conn, loads, filters, period)
    if steps is None:
        return None
    now, earlier = steps
    if now.equals(earlier):
        return before
    return jr.graph_after(before, now, earlier, _map(filters).min_share)


def _nodes_after(conn: Connection, before: pd.DataFrame, loads: list[int], filters: dict, period=None):
    """The journey map's nodes after appends: as they were when no appended customer's steps moved;
    else each activity's steps, customers, starts, ends and department (the one most of its steps
    carry) move by the steps that came and left (``jr.nodes_after``). With top N the nodes keep the
    period's steps per activity before it ranks them (``views.stored_nodes``): counted here from
    those and the loads' steps alone, for every view of this refresh that asks whether top N keeps
    the same activities (``_kept_names``), and kept again as they are now."""
    spec = _spec(filters)
    counts = before.attrs.get("activity_counts") if spec.top_n else None
    if counts is not None:
        _period_counts(conn, spec, period, loads, counts)
    steps = _their_map_steps(conn, loads, filters, period)
    if steps is None:
        return None
    now, earlier = steps
    after = before if now.equals(earlier) else jr.nodes_after(before, now, earlier)
    if spec.top_n:
        after = after.copy(deep=False) if after is before else after
        after.attrs["activity_counts"] = activity_counts_kept(_period_counts(conn, spec, period, loads, counts)[0])
    return after


def _activities_after(conn: Connection, before: list[str], loads: list[int], filters: dict, period=None) -> list[str]:
    """The activity picker's names, most steps first, from the period's counts after the loads
    (``_period_counts``: the map's nodes counted them from the counts they keep and the loads'
    steps). Names with as many steps are put in order by the database, as ``jr.activity_counts``
    sorts them (its collation, not Python's, orders names)."""
    now = _period_counts(conn, _spec(filters), period, loads)[0]
    now = now[now > 0]
    if now.duplicated().any():
        counted = sa.union_all(
            *(
                sa.select(sa.literal(str(a), sa.String).label("activity"), sa.literal(int(n), sa.BigInteger).label("n"))
                for a, n in now.items()
            )
        ).subquery("counted")
        order = sa.select(counted.c.activity).order_by(counted.c.n.desc(), counted.c.activity)
        names = [str(a) for a in conn.execute(order).scalars()]
    else:
        names = [str(a) for a in now.sort_values(ascending=False).index]
    return before if names == before else names


def _variants_after(
    conn: Connection,
    before: pd.DataFrame,
    loads: list[int],
    filters: dict,
    max_steps: int,
    rarest: bool,
    contains: str,
    churn: str | None = None,
    period=None,
) -> pd.DataFrame | None:
    """The variants after appends, from each appended customer's variant (their first ``max_steps``
    steps in the period, pooled and collapsed as the view's filters say, and the time they span)
    with and without the loads' steps: the same, and the variants stand (a step after the fifth, or
    a repeat that collapses); else the variants move by the customers who came and left
    (``jr.variants_after``, from the most common variants the stored view keeps whole). Needs the
    customers and their churn to stand (``_customers_stand``) and top N to keep the same activities;
    None (computed whole) when a median moves past its kept seconds or a variant not kept could now
    be shown."""
    if not max_steps or not _customers_stand(conn, loads, churn, appended_kinds(conn, loads)):
        return None
    theirs = _their_pooled_log(conn, loads, _spec(filters), period)
    if theirs is None:
        return None
    cases, rows, pinned = theirs
    now, earlier = (
        jr.case_variants(conn, steps, pinned, max_steps=max_steps) for steps in (rows, _without(rows, loads))
    )
    if now.equals(earlier):
        return before
    kept = before.attrs.get("waits")
    if kept is None or rarest or contains:
        return None
    outcomes = jr.customer_outcomes(conn, churn=_definition(churn), revenue=False)
    churned = dict(
        conn.execute(sa.select(outcomes.c.case_id, outcomes.c.churned).where(among(outcomes.c.case_id, cases))).all()
    )
    return jr.variants_after(kept, now, earlier, churned)


def _log_end(conn: Connection, loads: list[int]) -> tuple[datetime | None, bool]:
    """``(end, moved)``: the journey log's last time (dead ends are measured to it), and whether the
    loads' steps hold it alone (without them it would be earlier)."""
    log = jr.journey_log()
    # the data's date (a max per source table) is the log's last time when a step is at it: a
    # look-up, where the log's own max is a pass over every step (0.2-0.45 s at 1M customers)
    now = as_of(conn)
    at_now = now is not None and conn.execute(sa.select(sa.literal(1)).where(log.c.ts == now).limit(1)).first()
    end = now if at_now else conn.execute(sa.select(sa.func.max(log.c.ts))).scalar()
    added = conn.execute(sa.select(sa.func.max(log.c.ts)).where(log.c.load_id.in_(loads))).scalar()
    if end is None or added is None or added < end:
        return end, False
    other = sa.select(sa.literal(1)).where(log.c.ts == end, log.c.load_id.not_in(loads)).limit(1)
    return end, conn.execute(other).first() is None


def _moments_stand(conn: Connection, loads: list[int], repeat_days: int, churn: str | None, period) -> bool:
    # the hotspots and then their customers ask in the same refresh: compared once
    return _for_this_refresh(
        conn,
        _STANDING_MOMENTS,
        [loads, repeat_days, churn, period],
        lambda: _moments_stand_now(conn, loads, repeat_days, churn, period),
    )


def _moments_stand_now(conn: Connection, loads: list[int], repeat_days: int, churn: str | None, period) -> bool:
    """Whether the period's friction moments, and the outcomes of the customers beside them, are as
    before the appends ``loads``: events alone (the tickets, their wait percentiles and the revenue
    are as they were), the customers and their churn standing (``_customers_stand``), the journey
    log's last time the same, and each appended customer's moments the same with and without those
    loads' steps (at most ``rollups.INCREMENT_MAX_KEYS`` customers, looked at apart)."""
    kinds = appended_kinds(conn, loads)
    cases = appended_keys(conn, loads)
    if cases is None or not kinds <= {"events"} or not _customers_stand(conn, loads, churn, kinds):
        return False
    end, moved = _log_end(conn, loads)
    if moved:
        return False
    # the moments the appended steps can move, compared alone: without a contact among them, the
    # tickets' moments (and their wait percentiles, a pass over every ticket) are not
    only = jr.parts_moved_by(conn, loads)

    def moments(**without) -> Counter:
        # the log's last time is the same without the loads' steps (not moved): read once, above
        m = jr.friction_moments(
            repeat_days=repeat_days,
            cases=cases,
            data_end=end,
            only=only,
            steps=_their_steps(conn, cases),
            **_bounds(period),
            **without,
        )
        columns = (m.c.cx_key, m.c.ts, m.c.hotspot, m.c.leaked_department, m.c.absorbed_department)
        return Counter(tuple(row) for row in conn.execute(sa.select(*columns)))

    return moments() == moments(steps_without=loads)


def _hotspots_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], repeat_days: int, churn=None, shape=None, period=None
) -> pd.DataFrame | None:
    """The hotspots as they were when the moments and outcomes stand (``_moments_stand``)."""
    return before if _moments_stand(conn, loads, repeat_days, churn, period) else None


def _hotspot_customers_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], hotspot: str, repeat_days: int, churn=None, period=None
) -> pd.DataFrame | None:
    """A hotspot's customers as they were when the moments and outcomes stand (``_moments_stand``;
    their contact details are the CRM's, which no such append holds)."""
    return before if _moments_stand(conn, loads, repeat_days, churn, period) else None


def _positions_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], filters: dict, period=None
) -> pd.DataFrame | None:
    """The first positions after appends, from each appended customer's first position of each
    activity in the period with and without the loads' steps, read from their rows alone (at most
    ``rollups.INCREMENT_MAX_KEYS`` customers): the same, and the positions stand (steps after all
    their earlier ones, of activities they had taken); else each activity's customers move by the
    difference and its median by the positions that left and came (``jr.percentile_runs``, from the
    positions kept near the medians: ``jr.first_positions(waits=True)``). None (computed whole)
    without kept positions, or when the changes moved a median past them. (Only the positions' own
    filters: names renamed, no top N, no collapsing.)"""
    cases = appended_keys(conn, loads)
    spec = _spec(filters)
    if cases is None or spec.top_n or spec.collapse_repeats or spec.by_department:
        return None
    rows = _rows_of(conn, cases, period)
    now, earlier = (jr.case_first_positions(conn, steps, spec) for steps in (rows, _without(rows, loads)))
    if now.equals(earlier):
        return before
    kept = before.attrs.get("waits")
    if kept is None:
        return None
    activities = {w[0]: w for w in kept}
    came, left = (frame.groupby("activity")["first_pos"].agg(list).to_dict() for frame in (now, earlier))
    for activity in came.keys() | left.keys():
        added, removed = came.get(activity, []), left.get(activity, [])
        _, customers, runs = activities.get(activity, [activity, 0, None])
        runs = percentile_runs.moved(runs, [float(p) for p in removed], [float(p) for p in added], (0.5,))
        if runs is None:
            return None
        # each case has one first position per activity it takes: positions counted are customers
        activities[activity] = [activity, customers + len(added) - len(removed), runs]
    return jr.positions_frame(list(activities.values()))


def _paths_after(
    conn: Connection,
    before: pd.DataFrame,
    loads: list[int],
    filters: dict,
    anchor: str,
    direction: str,
    steps: int,
    shape=None,
    period=None,
) -> pd.DataFrame | None:
    """The paths as they were when each appended customer's path into (out of) the anchor is the same
    with and without the loads' steps: a customer's path is read from their own steps in the period
    alone (the paths pool no activity by top N), so every other customer's stands. Compared, not
    assumed, for the appended customers (at most ``rollups.INCREMENT_MAX_KEYS``): a step after the
    first anchor leaves a path into it as it was, an anchor taken for the first time adds one."""
    cases = appended_keys(conn, loads)
    spec = _spec(filters)
    if cases is None or spec.top_n:
        return None

    def paths(rows: sa.FromClause) -> pd.DataFrame:
        # one path per customer at most: ``top`` above that pools none into "(other paths)"
        return jr.anchor_paths(conn, rows, anchor, direction=direction, steps=steps, top=len(cases) + 1, spec=spec)

    return before if _same_without(paths, _rows_of(conn, cases, period), loads) else None


def _funnel_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], steps, days: int, by_segment: bool, period=None
) -> pd.DataFrame | None:
    """The funnel after appends. As it was when none of the appended steps in the period is one of
    its steps (a step between them changes their order no more than their times). Else from each
    appended customer's steps reached and seconds from entry, read from their rows alone with and
    without the loads' steps (at most ``rollups.INCREMENT_MAX_KEYS`` customers): the same, and the
    funnel stands; else each segment's and step's customers move by the difference and its median
    by the seconds that left and came (``jr.percentile_runs``, from the seconds kept near the
    medians: ``jr.funnel(waits=True)``). None (computed whole) without kept seconds, or when the
    changes moved a median past them. (A segment is a CRM attribute: with segments, appended CRM
    records have it computed whole.)"""
    if by_segment and "customers" in appended_kinds(conn, loads):
        return None
    log = _log(period)
    added = conn.execute(sa.select(log.c.activity).where(log.c.load_id.in_(loads)).distinct()).scalars()
    if not set(added) & set(steps):
        return before
    cases = appended_keys(conn, loads)
    if cases is None:
        return None
    rows = _rows_of(conn, cases, period)
    segments = jr.customer_segments() if by_segment else None
    now, earlier = (
        jr.case_funnel(conn, their, list(steps), window_days=days, segments=segments)
        for their in (rows, _without(rows, loads))
    )
    if now.equals(earlier):
        return before
    kept = before.attrs.get("waits")
    if kept is None:
        return None
    groups = {(segment, step): runs for segment, step, runs in kept}
    came, left = (frame.groupby(["segment", "step"])["seconds"].agg(list).to_dict() for frame in (now, earlier))
    for key in came.keys() | left.keys():
        runs = percentile_runs.moved(groups.get(key), left.get(key, []), came.get(key, []), (0.5,))
        if runs is None:
            return None
        groups[key] = runs
    return jr.funnel_frame([[segment, step, runs] for (segment, step), runs in groups.items()], list(steps))


def _handoffs_after(conn: Connection, before: pd.DataFrame, loads: list[int], period=None) -> pd.DataFrame | None:
    """The handoffs after appends, from each appended customer's handoffs in the period (which
    department handed them to which, and the wait between) with and without the loads' steps,
    read from their rows alone (at most ``rollups.INCREMENT_MAX_KEYS`` customers): the same, and
    the handoffs stand (a step that lengthens a stay in the customer's last department); else each
    pair's count and customers move by the difference, and its median and 90th percentile by the
    waits that left and came (``jr.percentile_runs``, from the waits kept near those percentiles:
    ``jr.discover_handoffs(waits=True)``). None (computed whole) without kept waits, or when the
    waits moved a percentile past them."""
    cases = appended_keys(conn, loads)
    if cases is None:
        return None
    rows = _rows_of(conn, cases, period)
    now, earlier = (
        jr.case_handoffs(conn, steps, department_key="department") for steps in (rows, _without(rows, loads))
    )
    if now.equals(earlier):
        return before
    kept = before.attrs.get("waits")
    if kept is None:
        return None
    pairs = {(w[0], w[1]): w for w in kept}

    def by_pair(handoffs: pd.DataFrame) -> dict[tuple[str, str], tuple[list[float], set]]:
        out: dict[tuple[str, str], tuple[list[float], set]] = {}
        for row in handoffs.itertuples(index=False):
            waits, who = out.setdefault((row.source_department, row.target_department), ([], set()))
            waits.append(float(row.seconds))
            who.add(row.case_id)
        return out

    came, left = by_pair(now), by_pair(earlier)
    for pair in came.keys() | left.keys():
        added, customers_now = came.get(pair, ([], set()))
        removed, customers_before = left.get(pair, ([], set()))
        source, target, customers, runs = pairs.get(pair, [*pair, 0, None])
        runs = percentile_runs.moved(runs, removed, added, jr.WAIT_FRACTIONS)
        if runs is None:
            return None
        pairs[pair] = [source, target, customers + len(customers_now) - len(customers_before), runs]
    return jr.handoffs_frame(list(pairs.values()))


INCREMENTS: dict[str, Callable[..., object]] = {
    "executive.report": _report_after,
    "executive.trends": _trends_after,
    # signup cohorts: when each customer signed up and churned
    "executive.cohorts": _standing_unless(frozenset()),
    # revenue and payments, contacts and repeats, tickets closed per team, deals won per owner
    "executive.conflicts": _standing_unless(frozenset({"transactions", "tickets", "opportunities"})),
    "journeys.people": _people_after,
    "journeys.customers": _customers_after,
    "journeys.activities": _activities_after,
    "journeys.edge_customers": _edge_customers_after,
    "journeys.dfg": _graph_after,
    "journeys.nodes": _nodes_after,
    "journeys.funnel": _funnel_after,
    "journeys.positions": _positions_after,
    "journeys.variants": _variants_after,
    "journeys.hotspots": _hotspots_after,
    "journeys.hotspot_customers": _hotspot_customers_after,
    "journeys.handoffs": _handoffs_after,
    "journeys.paths": _paths_after,
}
