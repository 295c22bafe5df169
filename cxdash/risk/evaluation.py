"""How good a churn model is, measured on customers it never saw.

``model_metrics``: ``n_valid``, ``n_positive_valid``, the base rate, ROC AUC with a 95% bootstrap
interval (customers resampled with replacement, a fixed seed), PR AUC (average precision) beside the
base rate, the Brier score, the top decile's lift with its counts and a calibration curve.
``driver_importance``: permutation importance per driver group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from cxdash.risk.drivers import driver_info
from cxdash.risk.model import ChurnModel

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "driver_importance",
    "model_metrics",
    "roc_auc_interval",
    "weighted_roc_auc",
]

# The ROC AUC interval: customers resampled with replacement this many times, from this seed.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def weighted_roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """ROC AUC with row weights (``roc_auc_score(y, p, sample_weight=w)``, ties counted half), in
    one pass over the scores' distinct values: the bootstrap calls it a thousand times."""
    levels, level = np.unique(p, return_inverse=True)
    return _auc_at_levels(np.asarray(y), level, len(levels), np.asarray(w, dtype=float))


def _auc_at_levels(y: np.ndarray, level: np.ndarray, n_levels: int, w: np.ndarray) -> float:
    pos = np.bincount(level, weights=w * (y == 1), minlength=n_levels)
    neg = np.bincount(level, weights=w * (y == 0), minlength=n_levels)
    below = np.cumsum(neg) - neg  # negative weight strictly below each level
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def roc_auc_interval(
    y: np.ndarray,
    p: np.ndarray,
    groups=None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict:
    """A percentile bootstrap interval for ROC AUC: ``groups`` (one per row; the customer) are drawn
    with replacement, every row of a drawn customer counting once per draw, so a customer seen in
    two snapshots is resampled as one. Resamples without both classes are skipped (counted).

    Out: ``roc_auc_ci_low``, ``roc_auc_ci_high``, ``roc_auc_ci_level``, ``roc_auc_ci_resamples``
    (used), ``roc_auc_ci_method`` (words).
    """
    y = np.asarray(y, dtype=int)
    codes = pd.factorize(pd.Series(np.arange(len(y)) if groups is None else np.asarray(groups)))[0]
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(seed)
    levels, rank = np.unique(np.asarray(p, dtype=float), return_inverse=True)  # the scores' order, once
    aucs = []
    for _ in range(resamples):
        draws = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        w = draws[codes].astype(float)
        if (w * y).sum() == 0 or (w * (1 - y)).sum() == 0:
            continue
        aucs.append(_auc_at_levels(y, rank, len(levels), w))
    tail = (1 - level) / 2
    low, high = np.quantile(aucs, [tail, 1 - tail]) if aucs else (np.nan, np.nan)
    return {
        "roc_auc_ci_low": float(low),
        "roc_auc_ci_high": float(high),
        "roc_auc_ci_level": level,
        "roc_auc_ci_resamples": len(aucs),
        "roc_auc_ci_method": (
            f"percentile bootstrap, {resamples:,} resamples of the held-out customers with replacement (seed {seed})"
        ),
    }


def model_metrics(y: np.ndarray, p: np.ndarray, groups=None, *, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """The held-out report of calibrated probabilities ``p`` against labels ``y`` (one row each;
    ``groups``: the customer of each row, for the interval).

    Out: ``n_valid``, ``n_positive_valid``, ``base_rate``, ``roc_auc`` and its interval (see
    ``roc_auc_interval``), ``pr_auc`` (average precision: compare with the base rate, what a random
    ranking scores), ``brier``, the top decile (``top_decile_n`` rows whose risk is at least the
    ``ceil(10%)``-th highest, ties kept together; ``top_decile_positive`` of them churned;
    ``top_decile_rate``, ``top_decile_lift`` = rate / base rate, ``top_decile_capture`` = share of
    all churned) and a 10-bin quantile calibration curve.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    k = max(1, int(np.ceil(0.1 * len(p))))
    threshold = float(np.sort(p)[::-1][k - 1])
    top = p >= threshold
    base = y.mean()
    n_top, pos_top = int(top.sum()), int(y[top].sum())
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    out = {
        "n_valid": len(y),
        "n_positive_valid": int(y.sum()),
        "base_rate": float(base),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "top_decile_threshold": threshold,
        "top_decile_n": n_top,
        "top_decile_positive": pos_top,
        "top_decile_rate": pos_top / n_top,
        "top_decile_lift": float(pos_top / n_top / base) if base else None,
        "top_decile_capture": float(pos_top / y.sum()) if y.sum() else None,
        "calibration": {"predicted": [float(v) for v in mean_pred], "observed": [float(v) for v in frac_pos]},
    }
    out.update(roc_auc_interval(y, p, groups, resamples=resamples))
    return out


def driver_importance(model: ChurnModel, x: pd.DataFrame, y: np.ndarray, *, repeats: int = 3) -> list[dict]:
    """Permutation importance on validation rows: the drop in ROC AUC when a driver's features are
    shuffled together (a driver's age and counts move as one, so they are permuted as one)."""
    xs = model._x(x)
    n = min(len(xs), 5000)
    rng = np.random.default_rng(0)
    if len(xs) > n:
        idx = rng.choice(len(xs), n, replace=False)
        xs, y = xs.iloc[idx].reset_index(drop=True), y[idx]
    else:
        xs = xs.reset_index(drop=True)
    base_p = model.estimator.predict_proba(xs)[:, 1]
    base = roc_auc_score(y, base_p)
    rows = []
    for group, cols in model.groups().items():
        drops = []
        for _ in range(repeats):
            order = rng.permutation(len(xs))
            moved = xs[cols].iloc[order].reset_index(drop=True)
            # a row whose shuffled driver values equal its own keeps its score: re-score the others
            # (exact, and most rows for a rare signal such as a cancel-page visit)
            same = np.ones(len(xs), dtype=bool)
            for c in cols:
                a, b = xs[c], moved[c]
                same &= ((a == b) | (a.isna() & b.isna())).to_numpy(dtype=bool)
            p = base_p.copy()
            if not same.all():
                shuffled = xs.loc[~same].copy()
                shuffled[cols] = moved.loc[~same, cols].to_numpy()
                p[~same] = model.estimator.predict_proba(shuffled)[:, 1]
            drops.append(base - roc_auc_score(y, p))
        d = driver_info(group)
        rows.append(
            {
                "driver": group,
                "label": d.label,
                "department": d.department,
                "features": cols,
                "importance": float(np.mean(drops)),
                "std": float(np.std(drops)),
            }
        )
    return sorted(rows, key=lambda r: -r["importance"])
