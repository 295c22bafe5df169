"""Variants: whole journeys (each case's first steps, in order) and how often each occurs, and what
an append moves (``discover_variants(waits=True)``, ``variants_after``)."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys import percentile_runs
from cxdash.journeys.log import LogSpec, _epoch, _frame, _median, _numeric, _positions, prepare_log

__all__ = [
    "VARIANT_COLUMNS",
    "VARIANT_SEPARATOR",
    "case_variants",
    "discover_variants",
    "variants_after",
    "variants_frame",
]

VARIANT_SEPARATOR = " > "
VARIANT_COLUMNS = ["variant", "steps", "customers", "share", "churn_rate", "median_seconds"]

# The stored view keeps this many times its ``limit`` of the most common variants, each whole
# (customers, churned, judged, seconds near the median), and the customers of the next one: a
# variant below them can enter the top ``limit`` only past that count, which an append bounds.
KEPT_PER_SHOWN = 2


def _variant_per_case(events: sa.FromClause, spec: LogSpec | None, keys, max_steps: int | None) -> sa.Select:
    """Each case's variant: ``case_id, variant, steps, seconds`` (its first ``max_steps`` steps, the
    time from the first to the last of them)."""
    log = prepare_log(events, spec, **keys)
    p = _positions(log)
    kept = sa.select(p).where(p.c.pos <= max_steps).subquery() if max_steps else p
    return sa.select(
        kept.c.case_id,
        # SQLAlchemy 2.1's portable ordered aggregate: string_agg(x, sep ORDER BY pos).
        sa.func.aggregate_strings(kept.c.activity, VARIANT_SEPARATOR).aggregate_order_by(kept.c.pos).label("variant"),
        sa.func.count().label("steps"),
        (_epoch(sa.func.max(kept.c.ts)) - _epoch(sa.func.min(kept.c.ts))).label("seconds"),
    ).group_by(kept.c.case_id)


def case_variants(
    conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, *, max_steps: int | None = None, **keys
) -> pd.DataFrame:
    """Each case's variant as ``discover_variants`` counts it: ``case_id, variant, steps, seconds``,
    by case (what a view of a few cases compares)."""
    q = _variant_per_case(events, spec, keys, max_steps)
    sub = q.subquery("case_variant")
    frame = _frame(conn, sa.select(sub).order_by(sub.c.case_id), ["case_id", "variant", "steps", "seconds"])
    return _numeric(frame, ints=("steps",), floats=("seconds",))


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
    waits: bool = False,
    **keys,
) -> pd.DataFrame:
    """Whole journeys (each case's sequence of activities) and how often each occurs.

    ``max_steps`` keeps each case's first N steps (long customer histories are otherwise all
    unique). ``outcomes`` is an optional selectable ``case_id, churned`` (boolean) that adds
    each variant's churn rate. ``rarest`` sorts the least frequent first; ``contains`` keeps
    variants containing that text.

    Out: ``variant, steps, customers, share, churn_rate, median_seconds`` (first to last step).

    ``waits=True`` (the stored default view: most common first, every variant, a ``limit``) keeps
    in ``attrs["waits"]`` what an append needs to move it (``variants_after``): the
    ``KEPT_PER_SHOWN * limit`` most common variants, each with its churned and judged customers and
    its seconds near the median (``percentile_runs``), the customers of the next variant and of
    every variant; the medians are then read from the kept seconds.
    """
    per_case = _variant_per_case(events, spec, keys, max_steps).cte("per_case")  # read three times below
    churned = sa.literal(None, sa.Boolean)
    src = per_case
    if outcomes is not None:
        src = per_case.outerjoin(outcomes, outcomes.c.case_id == per_case.c.case_id)
        churned = outcomes.c.churned
    if waits and limit and not rarest and not contains:
        return _kept_variants(conn, per_case, src, churned, limit)
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
    return _numeric(
        _frame(conn, q, VARIANT_COLUMNS), ints=("steps", "customers"), floats=("share", "churn_rate", "median_seconds")
    )


def _kept_variants(conn: Connection, per_case: sa.CTE, src, churned, limit: int) -> pd.DataFrame:
    """``discover_variants(waits=True)``: one statement reads the most common variants' counts (one
    past those kept) and the kept ones' seconds near their medians."""
    keep = KEPT_PER_SHOWN * limit
    customers = sa.func.count()
    counts = (
        sa.select(
            per_case.c.variant,
            sa.func.min(per_case.c.steps).label("steps"),
            customers.label("customers"),
            sa.func.sum(sa.case((churned.is_(True), 1), else_=0)).label("churned"),
            sa.func.count(churned).label("judged"),
            sa.func.row_number().over(order_by=(customers.desc(), per_case.c.variant)).label("place"),
            sa.func.sum(customers).over().label("cases"),
        )
        .select_from(src)
        .group_by(per_case.c.variant)
        .cte("variant_counts")
    )
    top = sa.select(counts.c.variant).where(counts.c.place <= keep).subquery("kept_variants")
    ranked = (
        sa.select(
            per_case.c.variant,
            per_case.c.seconds,
            (sa.func.row_number().over(partition_by=per_case.c.variant, order_by=per_case.c.seconds) - 1).label("rk"),
            sa.func.count().over(partition_by=per_case.c.variant).label("n"),
        )
        .select_from(per_case.join(top, top.c.variant == per_case.c.variant))
        .subquery("ranked_seconds")
    )
    none_int, none_float = sa.cast(sa.null(), sa.BigInteger), sa.cast(sa.null(), sa.Double)
    near = percentile_runs.near_positions(ranked.c.rk, ranked.c.n, (0.5,))
    rows = conn.execute(
        sa.union_all(
            sa.select(
                counts.c.variant,
                sa.cast(counts.c.steps, sa.BigInteger),
                sa.cast(counts.c.customers, sa.BigInteger),
                sa.cast(counts.c.churned, sa.BigInteger),
                sa.cast(counts.c.judged, sa.BigInteger),
                sa.cast(counts.c.place, sa.BigInteger),
                sa.cast(counts.c.cases, sa.BigInteger),
                none_int,
                none_float,
            ).where(counts.c.place <= keep + 1),
            sa.select(
                ranked.c.variant,
                none_int,
                sa.cast(ranked.c.n, sa.BigInteger),
                none_int,
                none_int,
                none_int,
                none_int,
                sa.cast(ranked.c.rk, sa.BigInteger),
                sa.cast(ranked.c.seconds, sa.Double),
            ).where(near),
        )
    ).all()
    found: dict[str, list] = {}
    seconds: dict[str, list] = defaultdict(list)
    cases, beyond = 0, 0
    for variant, steps, n, had, judged, place, total, rank, secs in rows:
        if rank is not None:
            seconds[variant].append((int(rank), float(secs)))
        elif place > keep:
            beyond, cases = int(n), int(total)
        else:
            found[variant] = [variant, int(steps), int(had), int(judged), int(n)]
            cases = int(total)
    kept = [
        [variant, steps, had, judged, percentile_runs.runs_from_ranks(n, seconds[variant])]
        for variant, steps, had, judged, n in found.values()
    ]
    return variants_frame({"limit": limit, "cases": cases, "beyond": beyond, "variants": kept})


def variants_frame(state: dict) -> pd.DataFrame:
    """The most common variants from what ``discover_variants(waits=True)`` keeps (``state``:
    ``limit``; ``cases``, every variant's customers; ``beyond``, at least the customers of any variant
    not kept, 0 when every one is; ``variants``, each ``[variant, steps, churned, judged, runs]``), in
    ``discover_variants``' order; ``state`` kept in ``attrs["waits"]``."""
    variants = sorted((v for v in state["variants"] if v[4]["n"] > 0), key=lambda v: (-v[4]["n"], v[0]))
    cases = state["cases"]
    rows = [
        [
            variant,
            steps,
            runs["n"],
            runs["n"] / cases if cases else None,
            had / judged if judged else None,
            percentile_runs.percentile(runs, 0.5),
        ]
        for variant, steps, had, judged, runs in variants[: state["limit"]]
    ]
    frame = _numeric(
        pd.DataFrame(rows, columns=VARIANT_COLUMNS),
        ints=("steps", "customers"),
        floats=("share", "churn_rate", "median_seconds"),
    )
    frame["variant"] = frame["variant"].astype("string")
    frame.attrs["waits"] = percentile_runs.kept(dict(state, variants=variants))
    return frame


def variants_after(
    state: dict, now: pd.DataFrame, earlier: pd.DataFrame, churned: dict[object, bool | None]
) -> pd.DataFrame | None:
    """The variants after some customers' variants moved: ``state`` as ``discover_variants(waits=True)``
    keeps it, ``now`` and ``earlier`` those customers' variants as they are and were
    (``case_variants``), ``churned`` their churn (True, False, None: not judged; it did not move).
    Each kept variant's customers, churned, judged and seconds move by the customers who came and
    left; a variant not kept moves only the bound on such variants (``beyond``) unless every variant
    is kept. None (computed whole) when a median moves past its kept seconds, or when a variant not
    kept could now be among the ``limit`` shown."""
    variants = {v[0]: list(v) for v in state["variants"]}
    every = state["beyond"] == 0
    came: dict[str, list] = defaultdict(list)
    left: dict[str, list] = defaultdict(list)
    for frame, into in ((now, came), (earlier, left)):
        for row in frame.itertuples(index=False):
            outcome = churned.get(row.case_id)
            into[row.variant].append((float(row.seconds), None if outcome is None else bool(outcome), int(row.steps)))
    gained = 0
    for variant in came.keys() | left.keys():
        added, removed = came.get(variant, []), left.get(variant, [])
        entry = variants.get(variant)
        if entry is None and not every:
            gained = max(gained, len(added) - len(removed))
            continue
        if entry is None:
            entry = [variant, added[0][2] if added else 0, 0, 0, None]
        runs = percentile_runs.moved(entry[4], [s for s, _, _ in removed], [s for s, _, _ in added], (0.5,))
        if runs is None:
            return None
        had = entry[2] + sum(c is True for _, c, _ in added) - sum(c is True for _, c, _ in removed)
        judged = entry[3] + sum(c is not None for _, c, _ in added) - sum(c is not None for _, c, _ in removed)
        variants[variant] = [variant, entry[1], had, judged, runs]
    beyond = 0 if every else state["beyond"] + gained
    shown = sorted((v[4]["n"] for v in variants.values() if v[4]["n"] > 0), reverse=True)[: state["limit"]]
    if not every and (len(shown) < state["limit"] or shown[-1] <= beyond):
        return None
    cases = state["cases"] + len(now) - len(earlier)
    return variants_frame(dict(state, cases=cases, beyond=beyond, variants=list(variants.values())))
