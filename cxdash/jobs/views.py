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
from collections import OrderedDict
from dataclasses import asdict, replace
from datetime import date, timedelta

import pandas as pd
from sqlalchemy.engine import Connection

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.metrics.churn import Definition
from cxdash.store.version import data_stamp

__all__ = [
    "COMPUTATIONS",
    "DEFAULT_MAP_FILTERS",
    "DEPENDS_ON",
    "JOURNEY_DEFAULTS",
    "STORED_COMPUTATIONS",
    "activity_counts_kept",
    "cohorts_params",
    "conflicts_params",
    "counting_spec",
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
    "stored_nodes",
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


def _journey_map(conn, filters, period, waits: bool = False):
    key = (
        conn.engine.url.render_as_string(hide_password=True),
        data_stamp(conn),
        json.dumps([filters, period, waits], sort_keys=True, default=str),
    )
    now = time.monotonic()
    with _map_lock:
        kept = _MAP_PAIRS.get(key)
    if kept is None or now - kept[0] > _MAP_PAIR_SECONDS:
        kept = (
            now,
            jr.journey_map(conn, _log(period), _spec(filters), min_share=_map(filters).min_share, waits=waits),
        )
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


def counting_spec(spec: jr.LogSpec) -> jr.LogSpec:
    """The log spec whose activity counts top N ranks: renamed, not pooled, not collapsed."""
    return replace(spec, top_n=None, collapse_repeats=False)


def activity_counts_kept(counts: pd.Series) -> list[list]:
    """Steps per activity (a Series by name) as a stored view's ``attrs`` keep them."""
    return sorted([str(a), int(n)] for a, n in counts.items() if n > 0)


def stored_nodes(conn, filters, period=None):
    """The journey map's nodes as the refresh stores them (``jr.journey_map(waits=True)``), and with
    top N ``attrs["activity_counts"]``: the period's steps per activity before top N ranks them, so
    an append counts only its own steps to know whether top N keeps the same activities
    (``view_increments._kept_names``; at 1M customers counting every step took 0.5 s)."""
    nodes = _journey_map(conn, filters, period, waits=True)[1]
    spec = _spec(filters)
    if spec.top_n:
        counts = jr.activity_counts(conn, _log(period), counting_spec(spec)).set_index("activity")["count"]
        nodes.attrs["activity_counts"] = activity_counts_kept(counts)
    return nodes


def _activities(conn, filters, period=None):
    return jr.activity_counts(conn, _log(period), _spec(filters))["activity"].tolist()


def _customers(conn, filters, period=None):
    return {"customers": jr.journey_customers(conn, _log(period), _spec(filters))}


def _people(conn, period=None):
    return jr.journey_people(conn, **_bounds(period))


def _positions(conn, filters, period=None, *, waits: bool = False):
    return jr.first_positions(conn, _log(period), _spec(filters), waits=waits)


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


def _variants(conn, filters, max_steps, rarest, contains, churn=None, period=None, *, waits: bool = False):
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
        waits=waits,
    )


def _funnel(conn, steps, days, by_segment, period=None, *, waits: bool = False):
    return jr.funnel(
        conn,
        _log(period),
        list(steps),
        window_days=days,
        segments=jr.customer_segments() if by_segment else None,
        waits=waits,
    )


def _handoffs(conn, period=None, *, waits: bool = False):
    return jr.discover_handoffs(conn, _log(period), department_key="department", waits=waits)


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


# How the refresh computes the views whose stored result keeps more than the page shows: what
# their increments need (``cxdash.jobs.view_increments``). The same figures as ``COMPUTATIONS``.
STORED_COMPUTATIONS = {
    **COMPUTATIONS,
    "journeys.handoffs": lambda conn, period=None: _handoffs(conn, period, waits=True),  # each pair's waits
    "journeys.positions": lambda conn, filters, period=None: _positions(conn, filters, period, waits=True),
    "journeys.funnel": lambda conn, steps, days, by_segment, period=None: _funnel(
        conn, steps, days, by_segment, period, waits=True
    ),
    # the most common variants whole, the customers of the next one
    "journeys.variants": lambda conn, **params: _variants(conn, **params, waits=True),
    # the edges' counts before pooling, their seconds near the percentiles, the nodes' departments
    "journeys.dfg": lambda conn, filters, period=None: _journey_map(conn, filters, period, waits=True)[0],
    "journeys.nodes": stored_nodes,  # and the steps per activity top N ranks
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
