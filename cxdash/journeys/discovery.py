"""Process discovery on an event log: the directly-follows graph, its activities, and variants.

The pm4py-style verbs (``discover_dfg``, ``start_activities``, ``discover_variants``...) take an
event log and a ``LogSpec`` (see ``cxdash.journeys.log``); ``edge_customers`` is the cohort
behind one edge of the graph.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys import percentile_runs
from cxdash.journeys.log import (
    OTHER,
    LogSpec,
    _drop_repeats,
    _epoch,
    _frame,
    _median,
    _median_and_p90,
    _numeric,
    _spec,
    _step_order,
    _tiebreaks,
    prepare_log,
)

__all__ = [
    "DFG_COLUMNS",
    "activity_counts",
    "activity_nodes",
    "case_steps",
    "dfg_counts",
    "dfg_query",
    "discover_dfg",
    "edge_customers",
    "end_activities",
    "journey_customers",
    "journey_map",
    "start_activities",
]


def _coded_steps(events: sa.FromClause, spec: LogSpec | None, keys, *, nodes: bool = False) -> tuple[sa.CTE, sa.CTE]:
    """The log's steps with activities as integer codes, each beside its case's next step.

    Returns ``(codes, steps)``: ``codes`` is ``activity, code`` (code = the activity's rank by
    name, so codes sort like names); ``steps`` is ``case_id, ts, source, target, seconds``
    with one row per step, ``target`` and ``seconds`` NULL on each case's last step (so
    counting those rows counts the cases).

    Why codes: the window's sort and the aggregations then compare integers instead of text,
    which is most of the cost of the graph on a large log; names come back on the few result
    rows. Rename rules and top N act on the small table of distinct activities (same rules
    as ``prepare_log``), and collapsing repeats works on the codes, in ``prepare_log``'s order.

    ``nodes=True`` also carries each step's ``department`` and ``is_start`` (1 on a case's first
    step), from the same window: what ``activity_nodes`` counts, for ``journey_map``.
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
        sa.select(log.c.case_id, dictionary.c.code, log.c.ts, *_tiebreaks(log), *([log.c.department] if nodes else []))
        .select_from(log.join(dictionary, dictionary.c.activity == log.c.activity))
        .cte("coded_log")
    )
    if s.collapse_repeats:
        coded = _drop_repeats(coded, "code", _step_order(coded, coded.c.code), "coded_collapsed")
    # PARTITION BY case: DuckDB sorts the cases' partitions apart (in parallel, each smaller) where
    # one ordering of the whole log (case, time, ...) is one big sort. At 1M customers the 90-day
    # map went from 5.4-6.3 s to 4.1-4.9 s, the 10M-event bench log's graph from 3.3 s to 2.7-2.9 s
    # (an earlier measurement at 200k had favoured the one ordering; it no longer does).
    w = dict(partition_by=coded.c.case_id, order_by=_step_order(coded, coded.c.code))
    steps = sa.select(
        coded.c.case_id,
        coded.c.ts,
        coded.c.code.label("source"),
        sa.func.lead(coded.c.code).over(**w).label("target"),
        (_epoch(sa.func.lead(coded.c.ts).over(**w)) - _epoch(coded.c.ts)).label("seconds"),
        *(
            [
                coded.c.department,
                sa.case((sa.func.row_number().over(**w) == 1, 1), else_=0).label("is_start"),
            ]
            if nodes
            else []
        ),
    ).cte("coded_steps")
    return codes, steps


def dfg_query(events: sa.FromClause, spec: LogSpec | None = None, *, min_share: float = 0.0, **keys) -> sa.Select:
    """The directly-follows graph as a query (see ``discover_dfg``).

    One window pass over the log (on activity codes, see ``_coded_steps``); counts, customers
    and times are aggregated on codes, and pooling rare edges into ``(other)`` maps each small
    edge to the pooled one through the (small) table of edge counts.
    """
    codes, steps = _coded_steps(events, spec, keys)
    return _dfg_select(codes, steps, min_share)


def _pooled_pairs(codes: sa.CTE, steps: sa.CTE, min_share: float) -> sa.CTE:
    """The transitions the graph counts: ``source, target, case_id, seconds`` (codes), each edge
    carrying less than ``min_share`` of them pooled into the ``(other)`` edge."""
    pairs = sa.select(steps.c.case_id, steps.c.source, steps.c.target, steps.c.seconds)
    pairs = pairs.where(steps.c.target.is_not(None)).subquery("pairs")
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
    return pairs


def _dfg_select(codes: sa.CTE, steps: sa.CTE, min_share: float, pairs: sa.CTE | None = None) -> sa.Select:
    """``dfg_query`` on ``_coded_steps``' result (and its ``_pooled_pairs``, when already built)."""
    if pairs is None:
        pairs = _pooled_pairs(codes, steps, min_share)
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


NODE_COLUMNS = ["activity", "count", "customers", "department", "starts", "ends"]
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


def _edge_counts(steps: sa.CTE, name: str) -> sa.Subquery:
    """``source, target, n``: the transitions of ``_coded_steps``' steps per edge (codes), before
    any pooling."""
    return (
        sa.select(steps.c.source, steps.c.target, sa.func.count().label("n"))
        .where(steps.c.target.is_not(None))
        .group_by(steps.c.source, steps.c.target)
        .subquery(name)
    )


def dfg_counts(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Transition counts only, pm4py ``discover_dfg``'s measure (no customers, no times): the
    like-for-like figure for benchmarks. Out: ``source, target, count``, most frequent first."""
    codes, steps = _coded_steps(events, spec, keys)
    src, tgt = codes.alias("source_name"), codes.alias("target_name")
    edges = _edge_counts(steps, "edge_n")
    q = (
        sa.select(src.c.activity, tgt.c.activity, edges.c.n)
        .select_from(edges.join(src, src.c.code == edges.c.source).join(tgt, tgt.c.code == edges.c.target))
        .order_by(edges.c.n.desc(), src.c.activity, tgt.c.activity)
    )
    return _numeric(_frame(conn, q, ["source", "target", "count"]), ints=("count",))


def case_steps(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Every step of every case as ``journey_map`` counts it (renamed, pooled by top N, repeats
    collapsed): ``case_id, activity, department, is_start, next_activity, seconds`` (the next step's
    activity and the seconds to it; missing on a case's last step), sorted. The graph and the nodes
    are sums, shares and percentiles over these rows of every case, so a case whose rows are the same
    leaves both as they were (what a view of a few cases compares)."""
    codes, steps = _coded_steps(events, spec, keys, nodes=True)
    src, tgt = codes.alias("step_name"), codes.alias("next_name")
    picked = (
        steps.c.case_id,
        src.c.activity,
        steps.c.department,
        steps.c.is_start,
        tgt.c.activity.label("next_activity"),
        steps.c.seconds,
    )
    q = (
        sa.select(*picked)
        .select_from(steps.join(src, src.c.code == steps.c.source).outerjoin(tgt, tgt.c.code == steps.c.target))
        .order_by(*picked)
    )
    cols = ["case_id", "activity", "department", "is_start", "next_activity", "seconds"]
    return _numeric(_frame(conn, q, cols), ints=("is_start",), floats=("seconds",))


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


def _top_department(key, department, *where, name: str) -> sa.Subquery:
    """Per ``key`` (an activity or its code), its departments ranked by how many steps (``where``)
    carry each, ties by name: ``rk = 1`` is the activity's department on the map."""
    by_dept = (
        sa.select(key.label("key"), department.label("department"), sa.func.count().label("n"))
        .where(*where)
        .group_by(key, department)
        .subquery(name + "_counts")
    )
    return sa.select(
        by_dept.c.key,
        by_dept.c.department,
        sa.func.row_number()
        .over(partition_by=by_dept.c.key, order_by=(by_dept.c.n.desc(), by_dept.c.department))
        .label("rk"),
    ).subquery(name)


def _nodes_select(codes: sa.CTE, steps: sa.CTE) -> sa.Select:
    """``activity_nodes``' figures from ``_coded_steps(..., nodes=True)``: the steps left after
    collapsing repeats are the steps it counts, their first and last per case its starts and ends."""
    dept = _top_department(steps.c.source, steps.c.department, name="node_top_department")
    stats = (
        sa.select(
            steps.c.source,
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(steps.c.case_id)).label("cust"),
            sa.func.sum(steps.c.is_start).label("starts"),
            sa.func.sum(sa.case((steps.c.target.is_(None), 1), else_=0)).label("ends"),
        )
        .group_by(steps.c.source)
        .subquery("node_stats")
    )
    name = codes.alias("node_name")
    return sa.select(
        sa.func.coalesce(name.c.activity, sa.literal(OTHER, sa.String)).label("activity"),
        stats.c.n,
        stats.c.cust,
        dept.c.department,
        stats.c.starts,
        stats.c.ends,
    ).select_from(
        stats.join(dept, sa.and_(dept.c.key == stats.c.source, dept.c.rk == 1)).outerjoin(
            name, name.c.code == stats.c.source
        )
    )


def journey_map(
    conn: Connection,
    events: sa.FromClause,
    spec: LogSpec | None = None,
    *,
    min_share: float = 0.0,
    waits: bool = False,
    **keys,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(discover_dfg(...), activity_nodes(...))`` from one query: the log is filtered, coded,
    collapsed and sorted once for both (the Journeys page shows both; issue 17: the nodes were a
    second sort of the period's steps). Same frames, same order, as the two functions give.

    ``waits=True`` (the stored default view) also keeps what an append needs to move them
    (``map_after``): in the graph's ``attrs["map"]`` every edge's count before pooling
    (``edges``), the cases (``cases``) and per pooled edge its seconds' sum and the seconds near
    its median's and 90th percentile's ranks (``pooled``: ``[source, target, sum, runs]``, see
    ``percentile_runs``); in the nodes' ``attrs["departments"]`` the steps per activity and
    department. Numbering each edge's transitions by seconds sorts them all, which the page's
    views do without."""
    codes, steps = _coded_steps(events, spec, keys, nodes=True)
    pairs = _pooled_pairs(codes, steps, min_share)
    edges = _dfg_select(codes, steps, min_share, pairs).order_by(None).subquery("map_edges")
    nodes = _nodes_select(codes, steps).subquery("map_nodes")
    big, num, text = sa.BigInteger, sa.Double, sa.String

    def col(value, type_):
        return sa.cast(value if value is not None else sa.null(), type_)

    def part(number: int, a=None, b=None, n=(), x=()):
        """One part of the result in the aligned columns: names ``a, b``, integers, numbers."""
        n, x = list(n) + [None] * (4 - len(n)), list(x) + [None] * (5 - len(x))
        return [
            sa.literal(number, sa.Integer).label("part"),
            col(a, text).label("a"),
            col(b, text).label("b"),
            *[col(v, big).label(f"n{i}") for i, v in enumerate(n, start=1)],
            *[col(v, num).label(f"x{i}") for i, v in enumerate(x, start=1)],
        ]

    selects = [
        # edges (part 0) and nodes (part 1)
        sa.select(
            *part(
                0,
                edges.c.source,
                edges.c.target,
                (edges.c.count, edges.c.customers),
                (
                    edges.c.share,
                    edges.c.customer_share,
                    edges.c.median_seconds,
                    edges.c.p90_seconds,
                    edges.c.mean_seconds,
                ),
            )
        ),
        sa.select(
            *part(1, nodes.c.activity, nodes.c.department, (nodes.c.n, nodes.c.cust, nodes.c.starts, nodes.c.ends))
        ),
    ]
    if waits:
        selects += _map_waits_parts(codes, steps, pairs, part)
    parts = sa.union_all(*selects).subquery("journey_map")
    m = parts.c
    q = sa.select(parts).order_by(m.part, m.n1.desc(), m.a, m.b)
    rows = _frame(conn, q, ["part", "a", "b", "n1", "n2", "n3", "n4", "x1", "x2", "x3", "x4", "x5"])
    e = rows[rows["part"] == 0].reset_index(drop=True)
    n = rows[rows["part"] == 1].reset_index(drop=True)
    dfg = pd.DataFrame(
        {
            "source": e["a"],
            "target": e["b"],
            "count": e["n1"],
            "customers": e["n2"],
            "share": e["x1"],
            "customer_share": e["x2"],
            "median_seconds": e["x3"],
            "p90_seconds": e["x4"],
            "mean_seconds": e["x5"],
        },
        columns=DFG_COLUMNS,
    )
    graph = _numeric(
        dfg,
        ints=("count", "customers"),
        floats=("share", "customer_share", "median_seconds", "p90_seconds", "mean_seconds"),
    )
    node_frame = pd.DataFrame(
        {
            "activity": n["a"],
            "count": n["n1"],
            "customers": n["n2"],
            "department": n["b"],
            "starts": n["n3"],
            "ends": n["n4"],
        },
        columns=NODE_COLUMNS,
    )
    node_frame = _numeric(node_frame, ints=("count", "customers", "starts", "ends"))
    if waits:
        graph.attrs["map"], node_frame.attrs["departments"] = (percentile_runs.kept(v) for v in _map_waits(rows))
    return graph, node_frame


MAP_FRACTIONS = (0.5, 0.9)


def _map_waits_parts(codes: sa.CTE, steps: sa.CTE, pairs: sa.CTE, part) -> list[sa.Select]:
    """``journey_map(waits=True)``'s extra parts: every edge before pooling (2), the steps per
    activity and department (3), the cases (4), each pooled edge's seconds near its percentiles'
    ranks with their count and sum (5)."""
    src, tgt = codes.alias("raw_source"), codes.alias("raw_target")
    other = sa.literal(OTHER, sa.String)
    raw = _edge_counts(steps, "raw_edges")
    by_dept = (
        sa.select(steps.c.source, steps.c.department, sa.func.count().label("n"))
        .group_by(steps.c.source, steps.c.department)
        .subquery("activity_departments")
    )
    name = codes.alias("dept_activity")
    pair = (pairs.c.source, pairs.c.target)
    ranked = sa.select(
        *pair,
        pairs.c.seconds,
        (sa.func.row_number().over(partition_by=pair, order_by=pairs.c.seconds) - 1).label("rk"),
        sa.func.count().over(partition_by=pair).label("n"),
        sa.func.sum(pairs.c.seconds).over(partition_by=pair).label("total"),
    ).subquery("ranked_seconds")
    psrc, ptgt = codes.alias("pooled_source"), codes.alias("pooled_target")
    cases = sa.select(sa.func.count()).select_from(steps).where(steps.c.target.is_(None)).scalar_subquery()
    return [
        sa.select(
            *part(2, sa.func.coalesce(src.c.activity, other), sa.func.coalesce(tgt.c.activity, other), (raw.c.n,))
        ).select_from(raw.outerjoin(src, src.c.code == raw.c.source).outerjoin(tgt, tgt.c.code == raw.c.target)),
        sa.select(*part(3, sa.func.coalesce(name.c.activity, other), by_dept.c.department, (by_dept.c.n,))).select_from(
            by_dept.outerjoin(name, name.c.code == by_dept.c.source)
        ),
        sa.select(*part(4, None, None, (cases,))),
        sa.select(
            *part(
                5,
                sa.func.coalesce(psrc.c.activity, other),
                sa.func.coalesce(ptgt.c.activity, other),
                (ranked.c.n, ranked.c.rk),
                (ranked.c.seconds, ranked.c.total),
            )
        )
        .select_from(
            ranked.outerjoin(psrc, psrc.c.code == ranked.c.source).outerjoin(ptgt, ptgt.c.code == ranked.c.target)
        )
        .where(percentile_runs.near_positions(ranked.c.rk, ranked.c.n, MAP_FRACTIONS)),
    ]


def _map_waits(rows: pd.DataFrame) -> tuple[dict, list[list]]:
    """The graph's ``attrs["map"]`` and the nodes' ``attrs["departments"]`` from those parts."""
    raw = rows[rows["part"] == 2]
    depts = rows[rows["part"] == 3]
    cases = rows[rows["part"] == 4]
    ranked = rows[rows["part"] == 5]
    pooled = []
    for (source, target), group in ranked.groupby(["a", "b"], sort=True):
        runs = percentile_runs.runs_from_ranks(
            int(group["n1"].iloc[0]), zip(group["n2"].astype(int), group["x1"].astype(float), strict=True)
        )
        pooled.append([str(source), str(target), float(group["x2"].iloc[0]), runs])
    return (
        {
            "edges": [[str(a), str(b), int(n)] for a, b, n in zip(raw["a"], raw["b"], raw["n1"], strict=True)],
            "cases": int(cases["n1"].iloc[0]) if len(cases) else 0,
            "pooled": pooled,
        },
        [[str(a), str(b), int(n)] for a, b, n in zip(depts["a"], depts["b"], depts["n1"], strict=True)],
    )


def activity_nodes(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """One row per activity: ``activity, count, customers, department`` (its most frequent
    department), ``starts, ends`` (cases starting / ending with it), most frequent first.

    One pass over the log: each step is flagged as its case's first or last, and (with
    ``collapse_repeats``) as a repeat of the step before, by looking at its neighbours in its
    case's order (time, ...); then everything is counted. Collapsing never removes a case's
    first step, a case's last run keeps its activity, and no activity leaves a case entirely,
    so starts, ends and customers are the same with or without it; counts skip the repeats.
    """
    s = _spec(spec, **keys)
    log = prepare_log(events, LogSpec(**{**s.__dict__, "collapse_repeats": False}))
    w = dict(partition_by=log.c.case_id, order_by=_step_order(log))
    repeat = sa.func.lag(log.c.activity).over(**w) == log.c.activity  # NULL (no repeat) on a case's first step
    steps = sa.select(
        log.c.case_id,
        log.c.activity,
        log.c.department,
        sa.case((sa.func.lag(log.c.activity).over(**w).is_(None), 1), else_=0).label("is_start"),
        sa.case((sa.func.lead(log.c.activity).over(**w).is_(None), 1), else_=0).label("is_end"),
        (sa.case((repeat, 0), else_=1) if s.collapse_repeats else sa.literal(1)).label("kept"),
    ).cte("flagged_steps")
    dept = _top_department(steps.c.activity, steps.c.department, steps.c.kept == 1, name="top_department")
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
        .join(dept, sa.and_(dept.c.key == stats.c.activity, dept.c.rk == 1))
        .order_by(stats.c.n.desc(), stats.c.activity)
    )
    return _numeric(_frame(conn, q, NODE_COLUMNS), ints=("count", "customers", "starts", "ends"))


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
    ``case_names`` (``case_id, name``) names the cases on the result: ``case_names()`` for the
    journey log, whose cases are customer keys; without it ``case_id`` holds the log's own cases."""
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
