"""The journey map moved by a few customers' steps, from what its stored result keeps.

``journey_map(waits=True)`` keeps, beside the graph and the nodes, every edge's count before pooling,
the cases, each pooled edge's seconds (their sum, and those near its percentiles' ranks) and the
steps per activity and department. The map's figures are counts, shares and percentiles over every
customer's steps (``case_steps``), so taking out a few customers' steps as they were and putting in
their steps as they are gives the map computed whole, as long as no edge crosses the share that
pools it and no percentile moves past the seconds kept (then None: compute it whole).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from cxdash.journeys import percentile_runs
from cxdash.journeys.discovery import DFG_COLUMNS, MAP_FRACTIONS, NODE_COLUMNS
from cxdash.journeys.log import OTHER, _numeric

__all__ = ["graph_after", "nodes_after"]


def _transitions(steps: pd.DataFrame) -> pd.DataFrame:
    """The steps that have a next step: ``case_id, activity, next_activity, seconds``."""
    return steps[steps["next_activity"].notna()]


def graph_after(
    before: pd.DataFrame, now: pd.DataFrame, earlier: pd.DataFrame, min_share: float
) -> pd.DataFrame | None:
    """The graph ``before`` (with ``attrs["map"]``) after some customers' steps went from
    ``earlier`` to ``now`` (``case_steps`` of those customers), or None when it cannot be moved."""
    kept = before.attrs.get("map")
    if kept is None:
        return None
    counts = Counter({(a, b): n for a, b, n in kept["edges"]})
    was = dict(counts)
    came, left = _transitions(now), _transitions(earlier)
    for frame, sign in ((came, 1), (left, -1)):
        for edge, n in Counter(zip(frame["activity"], frame["next_activity"], strict=True)).items():
            counts[edge] += sign * n
    counts = Counter({edge: n for edge, n in counts.items() if n > 0})
    total, total_was = sum(counts.values()), sum(was.values())
    pooled_was = {e for e, n in was.items() if min_share > 0 and n / total_was < min_share}
    pooled_now = {e for e, n in counts.items() if min_share > 0 and n / total < min_share}
    # an edge crossing the share that pools it would move its seconds between edges: compute whole
    if any((e in pooled_was) != (e in pooled_now) for e in was.keys() & counts.keys()):
        return None

    def edge_of(a, b, pooled: set) -> tuple:
        return (OTHER, OTHER) if (a, b) in pooled else (a, b)

    edges = {(s, t): [s, t, total_seconds, runs] for s, t, total_seconds, runs in kept["pooled"]}
    customers = {(r.source, r.target): int(r.customers) for r in before.itertuples(index=False)}
    moved: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    who: dict[tuple, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for frame, side, pooled in ((came, 0, pooled_now), (left, 1, pooled_was)):
        for case, a, b, seconds in zip(
            frame["case_id"], frame["activity"], frame["next_activity"], frame["seconds"], strict=True
        ):
            edge = edge_of(a, b, pooled)
            moved[edge][side].append(float(seconds))
            who[edge][side].add(case)
    for edge, (added, removed) in moved.items():
        _, _, total_seconds, runs = edges.get(edge, [*edge, 0.0, None])
        runs = percentile_runs.moved(runs, removed, added, MAP_FRACTIONS)
        if runs is None:
            return None
        edges[edge] = [*edge, total_seconds + sum(added) - sum(removed), runs]
        customers[edge] = customers.get(edge, 0) + len(who[edge][0]) - len(who[edge][1])
    cases = kept["cases"] + len(set(now["case_id"]) - set(earlier["case_id"]))
    rows = []
    for (source, target), (_, _, total_seconds, runs) in edges.items():
        n = runs["n"]
        if n <= 0:
            continue
        rows.append(
            [
                source,
                target,
                n,
                customers[(source, target)],
                n / total,
                customers[(source, target)] / cases if cases else None,
                percentile_runs.percentile(runs, MAP_FRACTIONS[0]),
                percentile_runs.percentile(runs, MAP_FRACTIONS[1]),
                total_seconds / n,
            ]
        )
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    graph = _numeric(
        pd.DataFrame(rows, columns=DFG_COLUMNS),
        ints=("count", "customers"),
        floats=("share", "customer_share", "median_seconds", "p90_seconds", "mean_seconds"),
    )
    for col in ("source", "target"):
        graph[col] = graph[col].astype("string")
    graph.attrs["map"] = percentile_runs.kept(
        {
            "edges": [[a, b, n] for (a, b), n in counts.items()],
            "cases": cases,
            "pooled": [w for w in edges.values() if w[3]["n"] > 0],
        }
    )
    return graph


def nodes_after(before: pd.DataFrame, now: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame | None:
    """The nodes ``before`` (with ``attrs["departments"]``) after some customers' steps went from
    ``earlier`` to ``now``, or None when it cannot be moved."""
    kept = before.attrs.get("departments")
    if kept is None:
        return None
    by_dept = Counter({(a, d): n for a, d, n in kept})
    figures = {
        r.activity: [int(r.count), int(r.customers), int(r.starts), int(r.ends)] for r in before.itertuples(index=False)
    }
    for frame, sign in ((now, 1), (earlier, -1)):
        for a, d in zip(frame["activity"], frame["department"], strict=True):
            by_dept[(a, d)] += sign
        for a, group in frame.groupby("activity"):
            f = figures.setdefault(a, [0, 0, 0, 0])
            f[0] += sign * len(group)
            f[1] += sign * group["case_id"].nunique()
            f[2] += sign * int(group["is_start"].sum())
            f[3] += sign * int(group["next_activity"].isna().sum())
    if any(n < 0 for n in by_dept.values()):
        return None
    top: dict[str, tuple[int, str]] = {}
    for (a, d), n in by_dept.items():
        if n > 0 and (a not in top or (-n, d) < (-top[a][0], top[a][1])):
            top[a] = (n, d)
    rows = [[a, f[0], f[1], top[a][1], f[2], f[3]] for a, f in figures.items() if f[0] > 0]
    rows.sort(key=lambda r: (-r[1], r[0], r[3]))
    nodes = _numeric(pd.DataFrame(rows, columns=NODE_COLUMNS), ints=("count", "customers", "starts", "ends"))
    for col in ("activity", "department"):
        nodes[col] = nodes[col].astype("string")
    nodes.attrs["departments"] = percentile_runs.kept([[a, d, n] for (a, d), n in by_dept.items() if n > 0])
    return nodes
