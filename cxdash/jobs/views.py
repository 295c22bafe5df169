"""The Shared KPIs and Journeys pages' computations as plain functions of their parameters, and
each page's default view.

A page's first render on a large store is its default view (the last 90 days, no filters, the
default journey filters). ``cxdash.jobs.summaries`` computes those views after every load and stores
them with the data version, so the first visit reads them instead of scanning every row; any
other view is computed live. Both sides build their parameters with the functions here, so a
stored view is found exactly when the page asks for the same thing.

Parameters are plain JSON values (strings, numbers, lists, dicts): ``params_key`` turns them into
the stored name.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import date, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.metrics.churn import Definition
from cxdash.metrics.periods import moves_as_of
from cxdash.metrics.queries import count_rows
from cxdash.store.database import KIND_TABLES
from cxdash.store.rollups import appended_keys, appended_kinds
from cxdash.store.version import data_stamp

__all__ = [
    "COMPUTATIONS",
    "DEFAULT_MAP_FILTERS",
    "DEPENDS_ON",
    "INCREMENTS",
    "JOURNEY_DEFAULTS",
    "cohorts_params",
    "conflicts_params",
    "default_params",
    "edge_params",
    "filter_params",
    "forget_journey_maps",
    "funnel_params",
    "handoffs_params",
    "hotspot_params",
    "hotspots_params",
    "map_params",
    "params_key",
    "paths_params",
    "people_params",
    "period_params",
    "report_params",
    "trends_params",
    "variants_params",
]

# The Journeys page's widget defaults (cxdash/ui/journeys.py seeds its session state from these).
JOURNEY_DEFAULTS: dict[str, object] = {
    "min_share": 0.005,
    "top_n": 15,
    "collapse": True,
    "by_department": False,
    "anchor": "cancel_page",
    "direction": "before",
    "steps": 3,  # paths of more steps are nearly all unique: the diagram would be one (other paths) ribbon
    "repeat_days": 7,
    "funnel_days": 30,
    "variant_steps": 5,
}
DEFAULT_MAP_FILTERS = jr.MapFilters(
    min_share=float(JOURNEY_DEFAULTS["min_share"]),
    top_n=int(JOURNEY_DEFAULTS["top_n"]),
    collapse=bool(JOURNEY_DEFAULTS["collapse"]),
    by_department=bool(JOURNEY_DEFAULTS["by_department"]),
    rename=(),
)


def _churn(params: dict, churn: str | None) -> dict:
    """``params`` with the churn definition in force (its name; ``cxdash.metrics.churn``) for a view whose
    figures depend on it: a stored view is found only for the definition it was computed with."""
    return {**params, "churn": churn} if churn else params


def _definition(churn: str | None) -> Definition | None:
    return Definition.parse(churn) if churn else None


def params_key(name: str, params: dict | None) -> str:
    """The stored name of ``name`` computed with ``params``: the same parameters give the same key."""
    if not params:
        return name
    return name + "?" + json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


# ----------------------------------------------------------------------------- Shared KPIs


def filter_params(filters: metrics.Filters) -> dict:
    return {name: list(values) for name, values in asdict(filters).items() if values}


def report_params(
    first: date, last: date, filters: metrics.Filters, repeat_days: int, horizon: int, churn: str | None = None
) -> dict:
    return _churn(
        {
            "first": first.isoformat(),
            "last": last.isoformat(),
            "filters": filter_params(filters),
            "repeat_days": int(repeat_days),
            "horizon": int(horizon),
        },
        churn,
    )


def trends_params(filters: metrics.Filters, repeat_days: int, months: int, churn: str | None = None) -> dict:
    return _churn({"filters": filter_params(filters), "repeat_days": int(repeat_days), "months": int(months)}, churn)


def cohorts_params(filters: metrics.Filters, churn: str | None = None) -> dict:
    return _churn({"filters": filter_params(filters)}, churn)


def conflicts_params(filters: metrics.Filters, repeat_days: int, churn: str | None = None) -> dict:
    return _churn({"filters": filter_params(filters), "repeat_days": int(repeat_days)}, churn)


def _report(
    conn: Connection, first: str, last: str, filters: dict, repeat_days: int, horizon: int, churn: str | None = None
) -> metrics.KpiReport:
    period = metrics.Period.from_dates(date.fromisoformat(first), date.fromisoformat(last))
    return metrics.kpi_report(
        conn,
        period,
        metrics.Filters(**filters),
        repeat_days=repeat_days,
        horizon_months=horizon,
        churn=_definition(churn),
    )


def _trends(conn: Connection, filters: dict, repeat_days: int, months: int, churn: str | None = None):
    periods = metrics.monthly_periods(metrics.as_of(conn), months)
    return metrics.kpi_table(
        conn, periods, metrics.Filters(**filters), repeat_days=repeat_days, churn=_definition(churn)
    )


def _cohorts(conn: Connection, filters: dict, churn: str | None = None):
    return metrics.cohort_retention(conn, metrics.Filters(**filters), churn=_definition(churn))


def _conflicts(conn: Connection, filters: dict, repeat_days: int, churn: str | None = None):
    return metrics.conflicts(conn, metrics.Filters(**filters), repeat_days=repeat_days, churn=_definition(churn))


def _executive_defaults(conn: Connection, churn: str | None) -> dict[str, dict] | None:
    period = metrics.default_period(metrics.as_of(conn))
    if period is None:
        return None
    first, last = period.start.date(), (period.end - timedelta(days=1)).date()
    repeat, horizon = metrics.DEFAULT_REPEAT_DAYS, metrics.DEFAULT_CLV_HORIZON_MONTHS
    return {
        "executive.report": report_params(first, last, metrics.Filters(), repeat, horizon, churn),
        "executive.trends": trends_params(metrics.Filters(), repeat, 12, churn),
        "executive.cohorts": cohorts_params(metrics.Filters(), churn),
        "executive.conflicts": conflicts_params(metrics.Filters(), repeat, churn),
    }


# ----------------------------------------------------------------------------- Journeys


def period_params(first: date | None, last: date | None) -> dict:
    """The Journeys period (both days included) as view parameters; nothing when the period is
    open (all history), so a view without a period keeps its stored name."""
    if first is None or last is None:
        return {}
    return {"period": [first.isoformat(), last.isoformat()]}


def _bounds(period) -> dict:
    """``period`` parameter -> ``since``/``until`` keywords of the journey functions."""
    if not period:
        return {}
    p = metrics.Period.from_dates(date.fromisoformat(period[0]), date.fromisoformat(period[1]))
    return {"since": p.start, "until": p.end}


def map_params(filters: jr.MapFilters, period: dict | None = None) -> dict:
    return {"filters": {**asdict(filters), "rename": [list(pair) for pair in filters.rename]}, **(period or {})}


def _map(params: dict) -> jr.MapFilters:
    f = dict(params)
    f["rename"] = tuple(tuple(pair) for pair in f.get("rename", ()))
    return jr.MapFilters(**f)


def activity_filters(filters: jr.MapFilters) -> jr.MapFilters:
    """The filters the activity picker is keyed on: only those that change the names."""
    return replace(filters, top_n=None, min_share=0.0, collapse=False)


def path_filters(filters: jr.MapFilters) -> jr.MapFilters:
    """Every activity can be a path's anchor, so top-N does not apply to paths."""
    return replace(filters, top_n=None)


def edge_params(filters: jr.MapFilters, source: str, target: str, period: dict | None = None) -> dict:
    return {**map_params(filters, period), "source": source, "target": target}


# The paths view's shape: whole paths (``journeys.anchor_paths``) since issue 16, not links.
PATHS_SHAPE = 2


def paths_params(filters: jr.MapFilters, anchor: str, direction: str, steps: int, period: dict | None = None) -> dict:
    """``filters`` as the page passes them (``path_filters``), the anchor step and the direction."""
    return {
        **map_params(filters, period),
        "anchor": anchor,
        "direction": direction,
        "steps": int(steps),
        "shape": PATHS_SHAPE,
    }


def variants_params(
    filters: jr.MapFilters,
    max_steps: int,
    rarest: bool,
    contains: str,
    churn: str | None = None,
    period: dict | None = None,
) -> dict:
    return _churn(
        {
            **map_params(filters, period),
            "max_steps": int(max_steps),
            "rarest": bool(rarest),
            "contains": contains or "",
        },
        churn,
    )


def funnel_params(steps, days: int, by_segment: bool, period: dict | None = None) -> dict:
    return {"steps": list(steps), "days": int(days), "by_segment": bool(by_segment), **(period or {})}


def hotspot_params(hotspot: str, repeat_days: int, churn: str | None = None, period: dict | None = None) -> dict:
    return _churn({"hotspot": hotspot, "repeat_days": int(repeat_days), **(period or {})}, churn)


def handoffs_params(period: dict | None = None) -> dict:
    return dict(period or {})


def people_params(period: dict | None = None) -> dict:
    return dict(period or {})


# The hotspot frame's shape (cxdash.journeys.HOTSPOT_COLUMNS). Part of its stored name, so a frame
# stored by an older version of the code is not found and is computed again; raise it whenever
# the columns or their meaning change.
HOTSPOTS_SHAPE = 2


def hotspots_params(repeat_days: int, churn: str | None = None, period: dict | None = None) -> dict:
    return _churn({"repeat_days": int(repeat_days), "shape": HOTSPOTS_SHAPE, **(period or {})}, churn)


# The journey log's cases are integer customer keys; only results that list customers name them.
def _log(period=None):
    return jr.journey_log(**_bounds(period))


def _spec(filters: dict) -> jr.LogSpec:
    return _map(filters).spec()


# The journey map's graph and nodes come from one query (``jr.journey_map``: one sort of the
# period's steps instead of two; at 1M customers 6.8-7.2 s -> 5.1-5.9 s). The page and the refresh
# ask for them as two views, one right after the other: the pair is kept for the second, for a
# minute at most, keyed by the store, its data stamp (version and when it was made) and the
# parameters, so it is never served for other data.
_MAP_PAIRS: OrderedDict[tuple, tuple[float, tuple]] = OrderedDict()
_MAP_PAIRS_KEPT, _MAP_PAIR_SECONDS = 4, 60.0
_map_lock = threading.Lock()


def _journey_map(conn, filters, period):
    key = (
        conn.engine.url.render_as_string(hide_password=True),
        data_stamp(conn),
        json.dumps([filters, period], sort_keys=True, default=str),
    )
    now = time.monotonic()
    with _map_lock:
        kept = _MAP_PAIRS.get(key)
    if kept is None or now - kept[0] > _MAP_PAIR_SECONDS:
        kept = (now, jr.journey_map(conn, _log(period), _spec(filters), min_share=_map(filters).min_share))
        with _map_lock:
            _MAP_PAIRS[key] = kept
            while len(_MAP_PAIRS) > _MAP_PAIRS_KEPT:
                _MAP_PAIRS.popitem(last=False)
    graph, nodes = kept[1]
    return graph.copy(), nodes.copy()


def forget_journey_maps() -> None:
    """Drop the kept journey maps (a benchmark's warm run measures the computation, not this)."""
    with _map_lock:
        _MAP_PAIRS.clear()


def _dfg(conn, filters, period=None):
    return _journey_map(conn, filters, period)[0]


def _nodes(conn, filters, period=None):
    return _journey_map(conn, filters, period)[1]


def _activities(conn, filters, period=None):
    return jr.activity_counts(conn, _log(period), _spec(filters))["activity"].tolist()


def _customers(conn, filters, period=None):
    return {"customers": jr.journey_customers(conn, _log(period), _spec(filters))}


def _people(conn, period=None):
    return jr.journey_people(conn, **_bounds(period))


def _positions(conn, filters, period=None):
    return jr.first_positions(conn, _log(period), _spec(filters))


def _paths(conn, filters, anchor, direction, steps, shape=PATHS_SHAPE, period=None):
    return jr.anchor_paths(conn, _log(period), anchor, direction=direction, steps=steps, spec=_spec(filters))


def _moments(repeat_days, period):
    return jr.friction_moments(repeat_days=repeat_days, **_bounds(period))


def _hotspots(conn, repeat_days, churn=None, shape=HOTSPOTS_SHAPE, period=None):
    return jr.hotspots(conn, repeat_days=repeat_days, churn=_definition(churn), moments=_moments(repeat_days, period))


def _hotspot_customers(conn, hotspot, repeat_days, churn=None, period=None):
    return jr.hotspot_customers(
        conn,
        hotspot,
        repeat_days=repeat_days,
        churn=_definition(churn),
        moments=_moments(repeat_days, period),
        limit=None,
    )


def _edge_customers(conn, filters, source, target, period=None):
    return jr.edge_customers(conn, _log(period), source, target, _spec(filters), case_names=jr.case_names())


def _variants(conn, filters, max_steps, rarest, contains, churn=None, period=None):
    outcomes = jr.customer_outcomes(conn, churn=_definition(churn), revenue=False)  # the variants read churn alone
    return jr.discover_variants(
        conn,
        _log(period),
        _spec(filters),
        outcomes=outcomes,
        max_steps=max_steps,
        rarest=rarest,
        contains=contains or None,
        limit=30,
    )


def _funnel(conn, steps, days, by_segment, period=None):
    return jr.funnel(
        conn,
        _log(period),
        list(steps),
        window_days=days,
        segments=jr.customer_segments() if by_segment else None,
    )


def _handoffs(conn, period=None):
    return jr.discover_handoffs(conn, _log(period), department_key="department")


KNOWN_FUNNELS = (["pricing", "checkout", "purchase"], ["register request", "decide", "pay compensation"])


def default_funnel(activities: list[str], positions=None) -> list[str]:
    """A sensible first funnel: a known path (``KNOWN_FUNNELS``, already in its order) when the
    data has one, else the three most frequent activities (``activities`` comes most frequent
    first) put in the order customers reach them: by ``positions`` (``journeys.first_positions``:
    median position of the first occurrence, then reach, then name). A funnel in frequency order
    would put a frequent late step (cart lines outnumber views) before the steps leading to it.
    Without ``positions`` the three keep their frequency order."""
    for candidate in KNOWN_FUNNELS:
        if all(a in activities for a in candidate):
            return candidate
    top = activities[:3]
    if positions is None or not len(positions):
        return top
    rank = {a: i for i, a in enumerate(positions["activity"])}
    return sorted(top, key=lambda a: (rank.get(a, len(rank)), activities.index(a)))


def default_funnel_note(activities: list[str], steps: list[str]) -> str:
    """What the default funnel is, in words, for the page's caption."""
    if any(steps == candidate for candidate in KNOWN_FUNNELS):
        return "Default steps: the data's purchase path, in its own order."
    return (
        "Default steps: the three most frequent activities, in the order customers first reach them "
        "(median position of their first occurrence in each journey), not by frequency."
    )


def edge_labels(edges, limit: int = 60) -> list[tuple[str, str]]:
    """The edges offered for a cohort, busiest first, leaving out (other) -> (other)."""
    top = edges[(edges["source"] != jr.OTHER) | (edges["target"] != jr.OTHER)].head(limit)
    return list(zip(top["source"], top["target"], strict=True))


def _journey_defaults(conn: Connection, computed: dict[str, object], churn: str | None) -> dict[str, dict]:
    """The default view's parameters; the cohorts and the funnel follow from results already computed."""
    d = JOURNEY_DEFAULTS
    f = DEFAULT_MAP_FILTERS
    # the period both pages open on (cxdash.ui.period): the KPIs' default, all history when undated
    default = metrics.default_period(metrics.as_of(conn))
    p = period_params(default.start.date(), (default.end - timedelta(days=1)).date()) if default else {}
    out = {
        "journeys.hotspots": hotspots_params(int(d["repeat_days"]), churn, p),
        "journeys.dfg": map_params(f, p),
        "journeys.nodes": map_params(f, p),
        "journeys.customers": map_params(activity_filters(f), p),
        "journeys.people": people_params(p),
        "journeys.activities": map_params(activity_filters(f), p),
        "journeys.positions": map_params(activity_filters(f), p),
        "journeys.variants": variants_params(f, d["variant_steps"], False, "", churn, p),
        "journeys.handoffs": handoffs_params(p),
    }
    activities = computed.get("journeys.activities")
    if activities is not None:
        anchor = d["anchor"] if d["anchor"] in activities or not activities else activities[0]
        out["journeys.paths"] = paths_params(path_filters(f), anchor, d["direction"], d["steps"], p)
        steps = default_funnel(activities, computed.get("journeys.positions"))
        if steps:
            out["journeys.funnel"] = funnel_params(steps, d["funnel_days"], False, p)
    spots = computed.get("journeys.hotspots")
    if spots is not None and len(spots):
        out["journeys.hotspot_customers"] = hotspot_params(str(spots["hotspot"].iloc[0]), d["repeat_days"], churn, p)
    edges = computed.get("journeys.dfg")
    if edges is not None and len(edge_labels(edges)):
        source, target = edge_labels(edges)[0]
        out["journeys.edge_customers"] = edge_params(f, source, target, p)
    return out


# ----------------------------------------------------------------------------- the registry

# name -> compute(conn, **params)
COMPUTATIONS = {
    "executive.report": _report,
    "executive.trends": _trends,
    "executive.cohorts": _cohorts,
    "executive.conflicts": _conflicts,
    "journeys.hotspots": _hotspots,
    "journeys.dfg": _dfg,
    "journeys.nodes": _nodes,
    "journeys.customers": _customers,
    "journeys.activities": _activities,
    "journeys.positions": _positions,
    "journeys.paths": _paths,
    "journeys.variants": _variants,
    "journeys.funnel": _funnel,
    "journeys.handoffs": _handoffs,
    "journeys.people": _people,
    "journeys.hotspot_customers": _hotspot_customers,
    "journeys.edge_customers": _edge_customers,
}


# ----------------------------------------------------------------------------- after small appends
# A stored view brought up to date after appends that only added rows (``rollups.appends_since``:
# no earlier row, customer key, CRM flag, hub, link or department changed), for the same
# parameters, so the same period: each returns the view as computed whole would be, or None to
# compute it whole. Views whose figures are sums over customers, or a row per customer, are
# caught up: a customer's rows depend on their own steps alone, so the appended customers (at most
# ``rollups.INCREMENT_MAX_KEYS``) are looked at again and the rest kept. Medians and top-N lists
# over every customer (the graph, positions, hotspots, the KPIs) are computed whole; the KPI
# report keeps its CLV fits when no purchase was appended. Two views with medians stand as they
# were when the appended steps provably cannot change them: the funnel (none of them is one of its
# steps) and the handoffs (each customer's come last and stay in their last department).


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


def _events_touched(conn: Connection, loads: list[int]) -> tuple[list[int], list[int]] | None:
    """``(customers, loads)`` for ``kpi_table(touched=...)`` when the loads hold events alone and touch
    at most ``rollups.INCREMENT_MAX_KEYS`` customers; else None (their activity part computed whole)."""
    if appended_kinds(conn, loads) != {"events"}:
        return None
    cases = appended_keys(conn, loads)
    return None if cases is None else (cases, loads)


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
    total covers every customer, so no customer's moving into view changes it)."""
    if filters or not appended_kinds(conn, loads) <= _NOT_PURCHASES:
        return None
    period = metrics.Period.from_dates(date.fromisoformat(first), date.fromisoformat(last))
    return metrics.kpi_report(
        conn,
        period,
        metrics.Filters(),
        repeat_days=repeat_days,
        horizon_months=horizon,
        churn=_definition(churn),
        clv_from=before,
        kpi_sections=_kpi_sections_after(conn, loads, churn),
        kpi_touched=_events_touched(conn, loads),
    )


def _people_after(conn: Connection, before: dict, loads: list[int], period=None) -> dict | None:
    cases = appended_keys(conn, loads)
    if cases is None:
        return None
    new = jr.people_new_to_period(conn, cases, loads, **_bounds(period))
    return {side: int(before[side]) + new[side] for side in ("identified", "anonymous")}


def _customers_after(conn: Connection, before: dict, loads: list[int], filters: dict, period=None) -> dict | None:
    """Every case with a step in the period, whatever the filters (none removes a customer). Only
    for a period: an open one would count steps without a time, which the journey log drops."""
    cases = None if not period else appended_keys(conn, loads)
    if cases is None:
        return None
    new = jr.people_new_to_period(conn, cases, loads, **_bounds(period))
    return {"customers": int(before["customers"]) + new["identified"] + new["anonymous"]}


def _ranked(counts: pd.Series, n: int) -> list[str] | None:
    """The ``n`` most frequent names (ties by name), or None when a tie straddles the cut (the
    database's collation, not Python's, would then decide which name is kept)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) > n and ordered[n - 1][1] == ordered[n][1]:
        return None
    return [name for name, _ in ordered[:n]]


def _same_top_n(conn: Connection, spec: jr.LogSpec, period, loads: list[int]) -> bool:
    """Whether top N keeps the same activities as before the loads ``loads``: the period's counts
    now, and without those loads' steps, rank the same names first. Kept names are what pools
    every other customer's steps into ``(other)``, so a per-customer view stands only then."""
    if not spec.top_n:
        return True
    plain = replace(spec, top_n=None, collapse_repeats=False)
    log = _log(period)
    now = jr.activity_counts(conn, log, plain).set_index("activity")["count"]
    added = jr.activity_counts(conn, sa.select(log).where(log.c.load_id.in_(loads)).subquery(), plain)
    before = now.sub(added.set_index("activity")["count"], fill_value=0)
    kept_now, kept_before = _ranked(now, spec.top_n), _ranked(before[before > 0], spec.top_n)
    return kept_now is not None and kept_now == kept_before


def _edge_customers_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], filters: dict, source: str, target: str, period=None
) -> pd.DataFrame | None:
    """The edge's customers: the appended customers' rows computed again (coded as the whole log
    is), every other customer's kept, in the view's order (most times first, then ``cx_id``)."""
    cases = appended_keys(conn, loads)
    spec = _spec(filters)
    if cases is None or not _same_top_n(conn, spec, period, loads):
        return None
    fresh = jr.edge_customers(conn, _log(period), source, target, spec, case_names=jr.case_names(), cases=cases)
    names = jr.case_names()
    touched = set(conn.execute(sa.select(names.c.name).where(names.c.case_id.in_(cases))).scalars())
    kept = before[~before["case_id"].isin(touched)]
    both = pd.concat([kept, fresh], ignore_index=True) if len(fresh) else kept.reset_index(drop=True)
    return both.sort_values(["times", "case_id"], ascending=[False, True], kind="stable", ignore_index=True)


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
    """The variants as they were when each appended customer's first ``max_steps`` steps in the
    period (pooled and collapsed as the view's filters say) all came before their first appended
    step: a variant is those steps alone, so theirs is unchanged; and when the customers and their
    churn stand (``_customers_stand``), top N keeps the same activities, and nobody new enters the
    period (every such customer had those steps)."""
    cases = appended_keys(conn, loads)
    spec = _spec(filters)
    if not max_steps or cases is None or not _customers_stand(conn, loads, churn, appended_kinds(conn, loads)):
        return None
    log = _log(period)
    first_added = (
        sa.select(log.c.cx_key.label("case_id"), sa.func.min(log.c.ts).label("at"))
        .where(log.c.load_id.in_(loads))
        .group_by(log.c.cx_key)
        .subquery("first_added")
    )
    added = dict(conn.execute(sa.select(first_added.c.case_id, first_added.c.at)).all())
    if not added:
        return before  # no appended step in the period
    if not _same_top_n(conn, spec, period, loads):
        return None
    _, steps = jr.coded_steps(log, spec, cases=sorted(added))
    earlier = (
        sa.select(steps.c.case_id, sa.func.count().label("n"))
        .select_from(steps.join(first_added, first_added.c.case_id == steps.c.case_id))
        .where(steps.c.ts < first_added.c.at)
        .group_by(steps.c.case_id)
    )
    counts = dict(conn.execute(earlier).all())
    return before if all(counts.get(case, 0) >= max_steps for case in added) else None


def _moves_log_end(conn: Connection, loads: list[int]) -> bool:
    """Whether the loads' journey steps hold the journey log's last time alone (dead ends are
    measured to it)."""
    log = jr.journey_log()
    end = conn.execute(sa.select(sa.func.max(log.c.ts))).scalar()
    added = conn.execute(sa.select(sa.func.max(log.c.ts)).where(log.c.load_id.in_(loads))).scalar()
    if end is None or added is None or added < end:
        return False
    other = sa.select(sa.literal(1)).where(log.c.ts == end, log.c.load_id.not_in(loads)).limit(1)
    return conn.execute(other).first() is None


# _moments_stand's answers, for the hotspots and then their customers in the same refresh (keyed by
# the store, its data stamp, the loads and the parameters, so never served for other data).
_STANDING_MOMENTS: OrderedDict[tuple, bool] = OrderedDict()


def _moments_stand(conn: Connection, loads: list[int], repeat_days: int, churn: str | None, period) -> bool:
    key = (
        conn.engine.url.render_as_string(hide_password=True),
        data_stamp(conn),
        json.dumps([loads, repeat_days, churn, period], sort_keys=True, default=str),
    )
    with _map_lock:
        known = _STANDING_MOMENTS.get(key)
    if known is None:
        known = _moments_stand_now(conn, loads, repeat_days, churn, period)
        with _map_lock:
            _STANDING_MOMENTS[key] = known
            while len(_STANDING_MOMENTS) > _MAP_PAIRS_KEPT:
                _STANDING_MOMENTS.popitem(last=False)
    return known


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
    if _moves_log_end(conn, loads):
        return False

    def moments(**without) -> Counter:
        m = jr.friction_moments(repeat_days=repeat_days, cases=cases, **_bounds(period), **without)
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
    """The first positions as they were when each appended customer's appended steps in the period
    come after all their earlier steps there and are of activities they had already taken there:
    every first occurrence keeps its position. A step at the same time as the last earlier one
    still comes after it (the loads' order breaks the tie, and these loads are the newest).
    (Only the positions' own filters: names renamed, no top N, no collapsing.)"""
    cases = appended_keys(conn, loads)
    spec = _spec(filters)
    if cases is None or spec.top_n or spec.collapse_repeats or spec.by_department:
        return None
    for added, earlier in _their_steps(conn, loads, cases, period, "activity"):
        if earlier.empty or added["ts"].min() < earlier["ts"].max():
            return None
        if not {spec.rename.get(a, a) for a in added["activity"]} <= {
            spec.rename.get(a, a) for a in earlier["activity"]
        }:
            return None
    return before


def _their_steps(conn: Connection, loads: list[int], cases: list[int], period, column: str):
    """Per appended customer with appended steps in the period: ``(added, earlier)``, their steps
    there (``ts`` and ``column``) from the loads ``loads`` and from before them."""
    log = _log(period)
    rows = conn.execute(
        sa.select(log.c.cx_key, log.c.ts, log.c[column], log.c.load_id.in_(loads).label("added")).where(
            log.c.cx_key.in_(cases)
        )
    ).all()
    steps = pd.DataFrame(rows, columns=["case", "ts", column, "added"])
    for _, case in steps.groupby("case", sort=False):
        added = case["added"].astype(bool)
        if added.any():
            yield case[added], case[~added]


def _funnel_after(
    conn: Connection, before: pd.DataFrame, loads: list[int], steps, days: int, by_segment: bool, period=None
) -> pd.DataFrame | None:
    """The funnel as it was when none of the appended steps in the period is one of its steps: a
    customer's entry, conversions and their times are read from those steps alone, and a step
    between them changes their order no more than their times. (A segment is a CRM attribute: with
    segments, appended CRM records have it computed whole.)"""
    if by_segment and "customers" in appended_kinds(conn, loads):
        return None
    log = _log(period)
    added = conn.execute(sa.select(log.c.activity).where(log.c.load_id.in_(loads)).distinct()).scalars()
    return None if set(added) & set(steps) else before


def _handoffs_after(conn: Connection, before: pd.DataFrame, loads: list[int], period=None) -> pd.DataFrame | None:
    """The handoffs as they were when each appended customer's appended steps in the period come
    after every earlier step of theirs there (a later time) and stay in the department of their last
    one: they only lengthen a stay in one department, so no handoff is added, moved or timed
    differently. Read from the appended customers' steps alone (at most
    ``rollups.INCREMENT_MAX_KEYS``)."""
    cases = appended_keys(conn, loads)
    if cases is None:
        return None
    for added, earlier in _their_steps(conn, loads, cases, period, "department"):
        departments = set(added["department"])
        if len(departments) > 1:
            return None
        if earlier.empty:
            continue
        latest = earlier["ts"].max()
        if added["ts"].min() <= latest or set(earlier.loc[earlier["ts"] == latest, "department"]) != departments:
            return None
    return before


INCREMENTS: dict[str, Callable[..., object]] = {
    "executive.report": _report_after,
    "executive.trends": _trends_after,
    # signup cohorts: when each customer signed up and churned
    "executive.cohorts": _standing_unless(frozenset()),
    # revenue and payments, contacts and repeats, tickets closed per team, deals won per owner
    "executive.conflicts": _standing_unless(frozenset({"transactions", "tickets", "opportunities"})),
    "journeys.people": _people_after,
    "journeys.customers": _customers_after,
    "journeys.edge_customers": _edge_customers_after,
    "journeys.funnel": _funnel_after,
    "journeys.positions": _positions_after,
    "journeys.variants": _variants_after,
    "journeys.hotspots": _hotspots_after,
    "journeys.hotspot_customers": _hotspot_customers_after,
    "journeys.handoffs": _handoffs_after,
}


# The default-view results whose values set another view's default parameters.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "journeys.paths": ("journeys.activities",),
    "journeys.funnel": ("journeys.activities", "journeys.positions"),
    "journeys.hotspot_customers": ("journeys.hotspots",),
    "journeys.edge_customers": ("journeys.dfg",),
}


def default_params(conn: Connection, name: str, computed: dict[str, object], churn: str | None = None) -> dict | None:
    """The parameters of ``name`` in its page's default view (None: the view has no such part),
    given the default-view results ``computed`` so far (in ``COMPUTATIONS`` order) and the churn
    definition in force (its name)."""
    if name.startswith("executive."):
        defaults = _executive_defaults(conn, churn)
        return None if defaults is None else defaults[name]
    return _journey_defaults(conn, computed, churn).get(name)
