"""Statistics of friction hotspots: does churn come more often to the customers who hit one?

Each hotspot compares two groups of customers whose churn is known under the definition in
force (``cxdash.metrics.churn``): those who hit it (and had not churned before their first moment of
it) and those who never hit it. From the four counts of that 2x2 table:

* ``lift``: the risk ratio (churn rate of the hit over the never hit), with its 95% interval
  from ``scipy.stats.contingency.relative_risk`` (Katz's log interval). A lift needs churned
  customers in both groups: a zero cell gives 0 or an unbounded ratio, and no lift is invented
  by adding 0.5 to the cells (Haldane): the hotspot says why instead (``why``).
* ``p_value``: Fisher's exact test, two-sided (friction can also come with less churn, e.g. a
  contact that saves the customer; a one-sided test would hide that side), and ``p_adjusted``:
  Benjamini-Hochberg across the hotspots tested together, since ranking eight or more hotspots
  at once makes one raw p < 0.05 likely by chance alone.
* ``significant``: adjusted p < ``ALPHA`` and a lift above 1.

Everything here is plain pandas/scipy on the counts (the counting runs in the database, in
``cxdash.journeys.friction.hotspots``), so the statistics are testable on hand-built counts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "ALPHA",
    "COUNT_COLUMNS",
    "HOTSPOT_COLUMNS",
    "REPORT_COLUMNS",
    "STAT_COLUMNS",
    "hotspot_statistics",
    "ranking_note",
    "risk_ratio",
    "significance_counts",
]

ALPHA = 0.05
CONFIDENCE = 0.95
NO_DEFINITION = "churn unknown: no churn definition"
# The hotspot frame (``cxdash.journeys.friction.hotspots``), declared once: each column, in the
# frame's order, with its part: "count" (the counts hotspot_statistics reads), "stat" (what it
# adds), "context" (what the database and the hotspot's description add); and whether the CLI's
# ``hotspots`` report (``REPORT_COLUMNS``) prints it.
_COLUMNS = (
    ("hotspot", "count", True),
    ("customers", "count", True),
    ("moments", "context", False),
    ("customer_share", "context", False),
    ("customers_judged", "count", True),
    ("churned", "count", True),
    ("churned_before", "count", True),
    ("churn_rate", "stat", True),
    ("baseline_customers", "count", True),
    ("baseline_churned", "count", True),
    ("baseline_churn_rate", "stat", True),
    ("lift", "stat", True),
    ("ci_low", "stat", True),
    ("ci_high", "stat", True),
    ("p_value", "stat", True),
    ("p_adjusted", "stat", True),
    ("tested", "stat", False),
    ("significant", "stat", True),
    ("why", "stat", True),
    ("churn_definition", "stat", False),
    ("excess_churned", "stat", False),
    ("revenue_at_stake", "context", False),
    ("leaked_department", "context", True),
    ("absorbed_department", "context", True),
    ("route_share", "context", False),
    ("description", "context", False),
)
HOTSPOT_COLUMNS = [name for name, _, _ in _COLUMNS]
# In: the counts per hotspot that hotspot_statistics reads.
COUNT_COLUMNS = [name for name, part, _ in _COLUMNS if part == "count"]
# Out: what it adds.
STAT_COLUMNS = [name for name, part, _ in _COLUMNS if part == "stat"]
# The columns of the CLI's report, in the frame's order.
REPORT_COLUMNS = [name for name, _, reported in _COLUMNS if reported]


def risk_ratio(a: int, n1: int, c: int, n0: int, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Risk ratio (a/n1)/(c/n0) and its confidence interval (Katz's log interval, as
    ``scipy.stats.contingency.relative_risk`` gives it). NaN for all three when the ratio is not a
    finite positive number: an empty group, or no case in either group (no +0.5 correction).
    When every customer of a group churned (``a == n1`` or ``c == n0``) that group adds no variance
    to Katz's interval, which then looks precise on a single customer (1 of 1 churned gave
    3.34-5.54): the ratio is kept and the interval is NaN (not known)."""
    # scipy.stats takes about as long to import as the rest of the package: only when a lift is computed
    from scipy.stats.contingency import relative_risk

    if n1 <= 0 or n0 <= 0 or a <= 0 or c <= 0:
        return math.nan, math.nan, math.nan
    result = relative_risk(int(a), int(n1), int(c), int(n0))
    if a >= n1 or c >= n0:
        return float(result.relative_risk), math.nan, math.nan
    ci = result.confidence_interval(confidence_level=confidence)
    return float(result.relative_risk), float(ci.low), float(ci.high)


def _why(customers: int, n1: int, a: int, before: int, n0: int, c: int, definition: str | None) -> str:
    """Why a hotspot has no lift, in a few words ("" when it has one)."""
    if definition is None:
        return NO_DEFINITION
    if n1 == 0:
        if before and before == customers:
            return f"all {customers:,} who hit it had churned before their first moment"
        return f"churn unknown for the {customers:,} who hit it (the churn definition {definition} does not judge them)"
    if n0 == 0:
        return "no comparison group: every customer whose churn is known hit it"
    if a == 0 and c == 0:
        return f"nobody churned: 0 of {n1:,} hit and 0 of {n0:,} never hit"
    if a == 0:
        return f"no churned customer among the {n1:,} hit"
    if c == 0:
        return (
            f"no churned customer among the {n0:,} who never hit it, so the ratio has no finite value "
            f"({a:,} of {n1:,} hit churned)"
        )
    return ""


def hotspot_statistics(counts: pd.DataFrame, *, churn_definition: str | None, alpha: float = ALPHA) -> pd.DataFrame:
    """The lift, interval, p-values and significance of each hotspot from its counts.

    In: one row per hotspot with ``COUNT_COLUMNS``: ``customers`` touched; ``customers_judged``,
    the hit group (touched, churn known, not churned before the first moment); ``churned``, of
    those, churned after it; ``churned_before``, touched customers left out because they had
    churned before their first moment; ``baseline_customers`` (never hit, churn known) and
    ``baseline_churned``. ``churn_definition``: the name of the definition in force (None: churn
    is unknown, and every count of churn is 0).
    Out: the same rows and order plus ``STAT_COLUMNS``. ``tested`` marks the hotspots with a
    Fisher p-value (both groups non-empty, churned and retained customers among them); the
    Benjamini-Hochberg adjustment runs over those. ``excess_churned`` = customers_judged x
    (churn_rate - baseline_churn_rate), NaN when a rate is unknown.
    """
    from scipy.stats import false_discovery_control, fisher_exact  # heavy: see risk_ratio

    out = counts.copy()
    n = len(out)
    col = {c: out[c].fillna(0).astype("int64").to_numpy() for c in COUNT_COLUMNS[1:]}
    n1, a, n0, c = col["customers_judged"], col["churned"], col["baseline_customers"], col["baseline_churned"]
    known = churn_definition is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        rate1 = np.where(known & (n1 > 0), a / np.maximum(n1, 1), np.nan)
        rate0 = np.where(known & (n0 > 0), c / np.maximum(n0, 1), np.nan)
    lift, low, high, p = (np.full(n, np.nan) for _ in range(4))
    tested = np.zeros(n, dtype=bool)
    why = []
    for i in range(n):
        why.append(
            _why(
                int(col["customers"][i]),
                int(n1[i]),
                int(a[i]),
                int(col["churned_before"][i]),
                int(n0[i]),
                int(c[i]),
                churn_definition,
            )
        )
        if not known:
            continue
        if not why[i]:
            lift[i], low[i], high[i] = risk_ratio(int(a[i]), int(n1[i]), int(c[i]), int(n0[i]))
        retained = (n1[i] - a[i]) + (n0[i] - c[i])
        if n1[i] > 0 and n0[i] > 0 and a[i] + c[i] > 0 and retained > 0:
            table = [[int(a[i]), int(n1[i] - a[i])], [int(c[i]), int(n0[i] - c[i])]]
            p[i] = fisher_exact(table, alternative="two-sided").pvalue
            tested[i] = True
    adjusted = np.full(n, np.nan)
    if tested.any():
        adjusted[tested] = false_discovery_control(p[tested], method="bh")
    out["churn_rate"] = rate1
    out["baseline_churn_rate"] = rate0
    out["lift"], out["ci_low"], out["ci_high"] = lift, low, high
    out["p_value"], out["p_adjusted"] = p, adjusted
    out["tested"] = tested
    with np.errstate(invalid="ignore"):
        out["significant"] = (
            tested & ~np.isnan(lift) & (np.nan_to_num(adjusted, nan=1.0) < alpha) & (np.nan_to_num(lift, nan=0.0) > 1.0)
        )
    out["why"] = pd.array(why, dtype="string")
    out["excess_churned"] = n1 * (rate1 - rate0)
    out["churn_definition"] = pd.array([churn_definition] * n, dtype="string")
    return out


def significance_counts(spots: pd.DataFrame) -> tuple[int, int]:
    """``(significant, tested)`` among the rows of a hotspot frame (``hotspot_statistics``'s columns)."""
    if spots.empty:
        return 0, 0
    return int(spots["significant"].fillna(False).astype(bool).sum()), int(
        spots["tested"].fillna(False).astype(bool).sum()
    )


def ranking_note(spots: pd.DataFrame) -> str | None:
    """Why the hotspots are ranked by customers touched rather than by churn, in one sentence
    for the page and the CLI; None when at least one hotspot could be tested."""
    if spots.empty or spots["tested"].fillna(False).astype(bool).any():
        return None
    tail = "hotspots are ranked by customers touched; lift needs churned and retained customers."
    definition = spots["churn_definition"].iloc[0]
    if definition is None or pd.isna(definition):
        return "No churn data: " + tail
    first = spots.iloc[0]
    churned = int(first["churned"]) + int(first["churned_before"]) + int(first["baseline_churned"])
    judged = int(first["customers_judged"]) + int(first["churned_before"]) + int(first["baseline_customers"])
    if judged == 0:
        return f"Churn under {definition} is known for none of these customers: " + tail
    if churned == 0:
        return f"Nobody churned under {definition} (0 of {judged:,} customers judged): " + tail
    if churned == judged:
        return f"Every customer judged churned under {definition} ({judged:,}): " + tail
    return "No hotspot has churned and retained customers in both groups compared: " + tail
