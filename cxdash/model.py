"""The churn/intent model: train, choose, calibrate, report honestly, explain each score, persist.

Every model is fitted on one part of the data, chosen among the candidates and calibrated on a
second part, and its reported figures come from a third, held-out part that neither choice nor
calibration saw:

* **Event data** (``train_event_model``): feature snapshots at several cutoffs one horizon apart
  (``cxdash.features.customer_features``). The latest ``valid_snapshots`` are held out for the
  report; the ``select_snapshots`` before them choose the candidate and fit the calibration; the
  ``train_snapshots`` before those fit the candidates. Each part's labels are known before the next
  part's first cutoff (time-based, no leakage). Above ``MAX_TRAIN_ROWS`` (``MAX_VALID_ROWS``) rows the
  snapshots are a customer sample drawn in the database, reported in ``metrics["sample_note"]``;
  every customer is still scored.
* **A labelled customer table** (``train_labelled_model``, a snapshot-only label): a stratified
  ``HOLDOUT_SHARE`` of the labelled customers is held out for the report; stratified 5-fold
  cross-validation on the rest chooses the candidate and gives the out-of-fold scores the
  calibration is fitted on; the chosen candidate is then fitted on the rest (never on the held-out
  customers). Rows with an empty label are left out of training.

Fewer than ``MIN_CHURNED`` churned customers in the held-out validation (or in the part that
chooses and calibrates) raise ``NotEnoughChurnError`` before any model is fitted or saved.

The report (``model_metrics``): ``n_valid``, ``n_positive_valid``, the base rate, ROC AUC with a 95%
bootstrap interval (customers resampled with replacement, a fixed seed), PR AUC (average
precision) beside the base rate, and the top decile's lift with its counts.

Candidates are scikit-learn ``Pipeline(ColumnTransformer, estimator)``: a logistic regression,
a plain ``HistGradientBoostingClassifier``, a more regularised one and the average of the
logistic and the regularised booster. The one with the best selection ROC AUC is kept (every
candidate's selection score is reported, so the plain baselines are on the page beside the
choice). Probabilities are calibrated with a Platt (sigmoid) map fitted on out-of-sample scores.

Models are saved with the versions of python, scikit-learn, numpy and pandas they were fitted
with; ``load_model`` refuses one fitted with other versions (``ModelVersionError``) before
unpickling it.

Reasons: each driver *group* (for example "cancel page visit": its age and its 7/30-day
counts) is reset to the value of a typical training customer, and the change in log-odds is the
driver's contribution. Positive contributions are the customer's reasons, each with the
department that owns the driver and a next best action.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sklearn
import sqlalchemy as sa
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sqlalchemy.engine import Connection
from threadpoolctl import threadpool_limits

from cxdash import churn as churn_defs
from cxdash.churn import Definition
from cxdash.features import (
    AGE_CAP_DAYS,
    INTENT_SIGNALS,
    MISSING_CATEGORY,
    FeatureFrame,
    Sample,
    SnapshotReader,
    data_as_of,
    labelled_features,
)
from cxdash.store import Store, models_table

__all__ = [
    "CANDIDATES",
    "ChurnModel",
    "MIN_CHURNED",
    "ModelNotTrainedError",
    "ModelVersionError",
    "NotEnoughChurnError",
    "fitted_with",
    "version_problem",
    "driver_info",
    "explain",
    "latest_model",
    "load_model",
    "save_model",
    "score_frame",
    "train_event_model",
    "train_labelled_model",
    "model_metrics",
]

log = logging.getLogger(__name__)

CANDIDATES = ("logistic", "gradient_boosting", "gradient_boosting_regularised", "blend")
_BLEND_OF = ("logistic", "gradient_boosting_regularised")
DEFAULT_HORIZON_DAYS = 30
N_REASONS = 3
# Above these many rows, the training (validation) snapshots are a customer sample: a boosted
# model learns no more from millions of rows than from 200,000, and features, fits and the
# validation scoring all cost in proportion to the rows. Every customer is still scored.
MAX_TRAIN_ROWS = 200_000
MAX_VALID_ROWS = 200_000
# HistGradientBoostingClassifier takes at most 255 categories per feature; rarer ones share one.
MAX_CATEGORIES = 255
# Below this many churned customers a ROC AUC swings by more than 0.1 from one sample to the next
# (3 leavers in 1,714 once read 0.934 where the truth was 0.45): no model is saved.
MIN_CHURNED = 20
# The share of a snapshot-only label's customers held out for the report (stratified).
HOLDOUT_SHARE = 0.3
# The ROC AUC interval: customers resampled with replacement this many times, from this seed.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
Progress = Callable[[float, str], None]


def _few_threads(fn):
    """Run ``fn`` with OpenMP limited to half the cores: the boosted trees' OpenMP threads slow
    down 20-40x when they compete with a busy machine (the app, the database, other jobs)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=max(1, (os.cpu_count() or 2) // 2), user_api="openmp"):
            return fn(*args, **kwargs)

    return wrapper


class ModelNotTrainedError(RuntimeError):
    """No churn model has been trained on this store yet."""


class NotEnoughChurnError(ValueError):
    """Too few churned customers in one part of the data for a model's figures to mean anything;
    raised before anything is fitted, so no model is saved. ``part`` names the part ("held-out
    validation", "selection and calibration", "training"), ``found`` its churned customers,
    ``customers`` its rows (customers, or customer-snapshots), ``needed`` the minimum."""

    def __init__(self, message: str, *, part: str, found: int, customers: int, needed: int = MIN_CHURNED):
        super().__init__(message)
        self.part, self.found, self.customers, self.needed = part, found, customers, needed


class ModelVersionError(RuntimeError):
    """A stored model was fitted with other library versions than the running ones: unpickling it
    could fail or, worse, score differently without a word. Retrain instead."""


# ----------------------------------------------------------------------------- library versions
# What a pickled pipeline depends on. Python is compared on major.minor (pickles are stable across
# its patch releases); the libraries exactly (scikit-learn itself warns on any difference).
_VERSIONED = ("python", "scikit-learn", "numpy", "pandas")


def fitted_with() -> dict[str, str]:
    """The running versions of python, scikit-learn, numpy and pandas: ``{name: version}``."""
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "pandas": pd.__version__}


def _comparable(name: str, version: str) -> str:
    return ".".join(str(version).split(".")[:2]) if name == "python" else str(version)


def version_problem(saved: dict | None, *, version: int | None = None) -> str | None:
    """Why a model fitted with the ``saved`` versions must not be loaded here, or None when it may.

    ``saved``: the ``fitted_with`` dict stored with the model (None or empty for a model saved
    before versions were recorded). The message names both versions of every library that differs
    and says to retrain.
    """
    which = f"Churn model version {version}" if version is not None else "The churn model"
    fix = "Retrain it on the Churn model page or with `python -m cxdash train`."
    if not saved:
        return (f"{which} was saved without the library versions it was fitted with (before they were recorded), "
                f"so it cannot be loaded safely. {fix}")
    now = fitted_with()
    differ = [name for name in _VERSIONED
              if _comparable(name, saved.get(name, "unknown")) != _comparable(name, now[name])]
    if not differ:
        return None
    then_txt = ", ".join(f"{n} {saved.get(n, 'unknown')}" for n in differ)
    now_txt = ", ".join(f"{n} {now[n]}" for n in differ)
    return (f"{which} was fitted with {then_txt}; this app runs {now_txt}. A model is only loaded with the "
            f"versions it was fitted with. {fix}")


# ----------------------------------------------------------------------------- drivers
@dataclass(frozen=True)
class Driver:
    group: str
    label: str
    department: str
    action: str


_INTENT_DRIVERS = {
    "cancel_page": ("Visited the cancel page", "web", "Retention call within 24 h with a save offer"),
    "competitor_compare": ("Compared us with a competitor", "sales",
                           "Account manager sends a side-by-side comparison and a loyalty offer"),
    "downgrade_page": ("Looked at downgrading", "sales", "Offer a right-sized plan before they cancel"),
    "cancellation_ticket": ("Asked support to cancel", "support", "Route to the retention team today"),
    "complaint": ("Complained or rated a contact badly", "support", "Team lead calls back to close the complaint"),
}
_FIXED_DRIVERS: dict[str, tuple[str, str, str]] = {
    "checkout_errors": ("Hit checkout errors", "web", "Fix the checkout issue, apologise and credit the order"),
    "failed_payments": ("Failed payments", "billing", "Help update the payment method; pause dunning"),
    "repeat_contacts": ("Had to repeat a contact within 7 days", "support",
                        "One named owner closes the open issue; no new ticket"),
    "transfers": ("Was transferred between teams", "support", "Assign one owner; no more transfers"),
    "support_contacts": ("Many support contacts", "support", "Proactive check-in on the open issues"),
    "satisfaction": ("Low satisfaction with support", "support", "Service recovery call"),
    "usage": ("Uses the product less", "web", "Success team re-onboards the key features"),
    "marketing": ("Marketing engagement", "marketing", "Move to a relevant nurture track"),
    "purchases": ("Purchase pattern and value", "billing", "Review billing and offer annual pricing"),
    "tenure": ("Tenure", "sales", "Onboarding check-in for new customers"),
    "campaign": ("Acquisition campaign", "marketing", "Campaign cohort gets the onboarding nurture"),
    "acquisition_channel": ("Acquisition channel", "marketing", "Review the channel's onboarding"),
    "plan": ("Plan / contract", "sales", "Offer a longer contract with a discount"),
    "segment": ("Segment", "sales", "Segment-specific success play"),
    "region": ("Region", "sales", "Regional team reviews the account"),
    "consent": ("Marketing consent", "marketing", "Ask for consent at the next contact"),
}
_ATTR_DEPARTMENTS = (
    (("pay", "charge", "bill", "invoice", "price", "cost"), "billing", "Review billing and payment terms"),
    (("support", "ticket", "complain", "security", "protection", "backup"), "support",
     "Offer the support add-on and check open issues"),
    (("stream", "internet", "service", "device", "usage", "login", "online"), "web",
     "Success team reviews how the product is used"),
    (("email", "campaign", "marketing", "newsletter"), "marketing", "Move to a relevant nurture track"),
)


def _group_of(feature: str) -> str:
    for stem in INTENT_SIGNALS:
        if stem in feature:
            return stem
    name = feature
    rules = (
        ("checkout_errors", "checkout_errors"), ("failed_payments", "failed_payments"),
        ("repeat_contacts", "repeat_contacts"), ("transfer", "transfers"), ("satisfaction", "satisfaction"),
        ("contact", "support_contacts"), ("open_tickets", "support_contacts"), ("resolution", "support_contacts"),
        ("marketing", "marketing"), ("web", "usage"), ("purchase", "purchases"), ("revenue", "purchases"),
        ("refund", "purchases"), ("mrr", "purchases"), ("tenure", "tenure"), ("consent", "consent"),
        ("ended_subscriptions", "tenure"),
    )
    if name.startswith("attr_"):
        return name
    for needle, group in rules:
        if needle in name:
            return group
    return name


def driver_info(group: str) -> Driver:
    """Label, owning department and next best action for a driver group."""
    if group in _INTENT_DRIVERS:
        return Driver(group, *_INTENT_DRIVERS[group])
    if group in _FIXED_DRIVERS:
        return Driver(group, *_FIXED_DRIVERS[group])
    if group.startswith("attr_"):
        raw = group[5:]
        label = raw.replace("_", " ").capitalize()
        if "tenure" in raw:
            return Driver(group, "Tenure", "sales", "Onboarding check-in for new customers")
        if "contract" in raw:
            return Driver(group, label, "sales", "Offer a longer contract with a discount")
        for needles, dept, action in _ATTR_DEPARTMENTS:
            if any(n in raw for n in needles):
                return Driver(group, label, dept, action)
        return Driver(group, label, "sales", "Account manager reviews the account")
    return Driver(group, group.replace("_", " ").capitalize(), "sales", "Account manager reviews the account")


# ----------------------------------------------------------------------------- estimators
class BlendClassifier(ClassifierMixin, BaseEstimator):
    """The average of several classifiers' probabilities (each fitted on the same data)."""

    def __init__(self, estimators=()):
        self.estimators = estimators

    def fit(self, X, y):
        self.estimators_ = [clone(e).fit(X, y) for e in self.estimators]
        self.classes_ = self.estimators_[0].classes_
        return self

    @classmethod
    def of_fitted(cls, fitted: list) -> BlendClassifier:
        """The blend of classifiers already fitted on the same data (what ``fit`` would give when
        they are deterministic, as every candidate is: no second fit of the same model)."""
        blend = cls(list(fitted))
        blend.estimators_ = list(fitted)
        blend.classes_ = fitted[0].classes_
        return blend

    def predict_proba(self, X):
        return np.mean([e.predict_proba(X) for e in self.estimators_], axis=0)

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def as_text(x) -> np.ndarray:
    """Category columns as a fixed-width text array, missing as ``MISSING_CATEGORY``.

    scikit-learn's encoders count and look up categories of a text array in numpy, but those of
    an object array one Python value at a time: seconds per 100,000 rows, most of a fit's time.
    """
    frame = pd.DataFrame(x)
    return frame.where(frame.notna(), MISSING_CATEGORY).to_numpy(dtype=str)


def _categories() -> FunctionTransformer:
    return FunctionTransformer(as_text, feature_names_out="one-to-one")


def _linear_pipeline(numeric: list[str], categorical: list[str]) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", make_pipeline(_categories(), OneHotEncoder(handle_unknown="ignore", min_frequency=5)), categorical),
        ]
    )
    return Pipeline([("prepare", pre), ("model", LogisticRegression(max_iter=5000))])


def _boosted_pipeline(numeric: list[str], categorical: list[str], *, regularised: bool) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("cat", make_pipeline(_categories(), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                                              max_categories=MAX_CATEGORIES)), categorical),
            ("num", "passthrough", numeric),
        ]
    )
    mask = [True] * len(categorical) + [False] * len(numeric)
    params = dict(categorical_features=mask, random_state=0)
    if regularised:
        params.update(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=40,
                      l2_regularization=1.0, early_stopping=True, validation_fraction=0.15, n_iter_no_change=20)
    return Pipeline([("prepare", pre), ("model", HistGradientBoostingClassifier(**params))])


def candidate_pipeline(name: str, numeric: list[str], categorical: list[str]):
    """A fresh, unfitted candidate by name (one of ``CANDIDATES``)."""
    if name == "logistic":
        return _linear_pipeline(numeric, categorical)
    if name == "gradient_boosting":
        return _boosted_pipeline(numeric, categorical, regularised=False)
    if name == "gradient_boosting_regularised":
        return _boosted_pipeline(numeric, categorical, regularised=True)
    if name == "blend":
        return BlendClassifier([candidate_pipeline(p, numeric, categorical) for p in _BLEND_OF])
    raise ValueError(f"unknown candidate {name!r}; choose one of {CANDIDATES}")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class PlattCalibration:
    """Sigmoid map of a score's log-odds, fitted on out-of-sample scores (monotone)."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> PlattCalibration:
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores).reshape(-1, 1), y)
        self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.a_ * _logit(scores) + self.b_)))


@dataclass
class ChurnModel:
    """A fitted, calibrated churn model with what is needed to score and explain new data."""

    estimator: object  # fitted Pipeline or BlendClassifier
    calibration: PlattCalibration
    numeric: list[str]
    categorical: list[str]
    reference: dict  # a typical training customer: median / most frequent value per feature
    kind: str  # "events" or "labelled"
    name: str  # the chosen candidate
    label_column: str | None = None
    source: str | None = None
    cutoff: datetime | None = None
    horizon_days: float | None = None
    metrics: dict = field(default_factory=dict)
    version: int | None = None
    churn_definition: str | None = None  # the churn definition its labels follow (cxdash.churn)
    library_versions: dict = field(default_factory=fitted_with)  # what it was fitted with (``version_problem``)
    # a snapshot-only label: the cx_ids of the held-out customers its figures were measured on
    # (event models are evaluated on whole snapshots: ``metrics["valid_cutoffs"]``)
    held_out_ids: list[str] | None = None

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in frame]
        x = frame.reindex(columns=self.features).copy()
        for c in missing:
            x[c] = self.reference.get(c)
        x[self.numeric] = x[self.numeric].astype(float)
        for c in self.categorical:
            x[c] = x[c].astype(object).where(x[c].notna(), MISSING_CATEGORY)
        return x

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row of a feature frame."""
        raw = self.estimator.predict_proba(self._x(frame))[:, 1]
        return self.calibration.transform(raw)

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in self.features:
            out.setdefault(_group_of(f), []).append(f)
        return out


# ----------------------------------------------------------------------------- metrics
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


def roc_auc_interval(y: np.ndarray, p: np.ndarray, groups=None, *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> dict:
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
    low, high = (np.quantile(aucs, [tail, 1 - tail]) if aucs else (np.nan, np.nan))
    return {
        "roc_auc_ci_low": float(low), "roc_auc_ci_high": float(high), "roc_auc_ci_level": level,
        "roc_auc_ci_resamples": len(aucs),
        "roc_auc_ci_method": (f"percentile bootstrap, {resamples:,} resamples of the held-out customers "
                              f"with replacement (seed {seed})"),
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
        "n_valid": int(len(y)),
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


def _too_little_churn(y: np.ndarray, *, part: str, where: str, fix: str) -> None:
    """Raise ``NotEnoughChurnError`` when ``y`` holds fewer than ``MIN_CHURNED`` churned rows."""
    found = int(np.asarray(y).sum())
    if found >= MIN_CHURNED:
        return
    raise NotEnoughChurnError(
        f"Only {found} churned customer{'s' if found != 1 else ''} in the {part} ({len(y):,} {where}); at least "
        f"{MIN_CHURNED} are needed for the model's figures to mean anything, so no model was trained or saved. "
        f"Try {fix}.",
        part=part, found=found, customers=int(len(y)))


def _fixes(*, horizon_days: float | None) -> str:
    parts = ["another churn definition (`python -m cxdash churn` lists them; choose one on Data health)"]
    if horizon_days is not None:
        parts.append(f"a longer horizon than {horizon_days:g} days")
    parts.append("more history (older extracts)" if horizon_days is not None else "more labelled customers")
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _usable(ff: FeatureFrame, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Features that vary in the training rows (a constant tells the model nothing)."""
    numeric = [c for c in ff.numeric if rows[c].nunique(dropna=True) > 1]
    categorical = [c for c in ff.categorical if rows[c].astype(str).nunique() > 1]
    return numeric, categorical


def _reference(rows: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    ref = {c: float(rows[c].median()) if rows[c].notna().any() else 0.0 for c in numeric}
    for c in categorical:
        mode = rows[c].dropna().astype(str).mode()
        ref[c] = mode.iloc[0] if len(mode) else MISSING_CATEGORY
    return ref


def _importance(model: ChurnModel, x: pd.DataFrame, y: np.ndarray, *, repeats: int = 3) -> list[dict]:
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
        rows.append({"driver": group, "label": d.label, "department": d.department, "features": cols,
                     "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(rows, key=lambda r: -r["importance"])


def _select(scores: dict[str, float]) -> str:
    return max(scores, key=lambda k: (scores[k], -CANDIDATES.index(k)))


def _report(progress: Progress | None, share: float, text: str) -> None:
    log.info(text)
    if progress:
        progress(share, text)


def _snapshot_samples(reader: SnapshotReader, valid_cutoffs: list[datetime], train_cutoffs: list[datetime],
                      max_train_rows: int, max_valid_rows: int) -> dict:
    """One ``Sample`` (or None: every customer) per snapshot, validation cutoffs first, so that
    the training and the validation snapshots each hold at most about their row cap. Consecutive
    snapshots take different customers (offsets 0, 1, 2...), so the sample spans more of the base."""
    def plan(cutoffs: list[datetime], cap: int) -> tuple[int, int]:
        full = sum(reader.live_count(c) for c in cutoffs)
        return full, max(1, -(-full // max(cap, 1)))

    train_full, train_every = plan(train_cutoffs, max_train_rows)
    valid_full, valid_every = plan(valid_cutoffs, max_valid_rows)
    samples = [None if valid_every == 1 else Sample(valid_every, k % valid_every) for k in range(len(valid_cutoffs))]
    samples += [None if train_every == 1 else Sample(train_every, k % train_every) for k in range(len(train_cutoffs))]
    note = None
    if train_every > 1 or valid_every > 1:
        parts = []
        if train_every > 1:
            parts.append(f"trained on 1 in {train_every} customers of each training snapshot "
                         f"(of {train_full:,} customer-snapshots)")
        if valid_every > 1:
            parts.append(f"validated on 1 in {valid_every} of each validation snapshot (of {valid_full:,})")
        note = "; ".join(parts) + ": a different systematic customer sample per snapshot. Every customer is scored."
    return {"samples": samples, "train_every": train_every, "valid_every": valid_every, "note": note}


# ----------------------------------------------------------------------------- training
@_few_threads
def train_labelled_model(
    conn: Connection,
    *,
    label_column: str = "churn_label",
    source: str | None = None,
    folds: int = 5,
    holdout_share: float = HOLDOUT_SHARE,
    candidates: tuple[str, ...] = CANDIDATES,
    progress: Progress | None = None,
) -> ChurnModel:
    """A customer table with its own (snapshot-only) label.

    A stratified ``holdout_share`` of the labelled customers is held out (seed 0). On the rest,
    stratified ``folds``-fold CV scores every candidate; the best is fitted on the rest and
    calibrated on its out-of-fold scores. The report (``metrics``) is measured on the held-out
    customers only (their cx_ids: ``model.held_out_ids``). Raises ``NotEnoughChurnError`` before
    fitting when the held-out part would hold fewer than ``MIN_CHURNED`` churned customers.
    """
    _report(progress, 0.02, "Reading the customer table")
    ff = labelled_features(conn, label_column=label_column, source=source)
    rows = ff.frame[ff.frame["label"].notna()]
    y_all = rows["label"].to_numpy(dtype=int)
    fix = _fixes(horizon_days=None)
    # the held-out part cannot hold more churned customers than the whole label (and a stratified
    # split needs a few of each class): say so before splitting
    _too_little_churn(y_all, part="label", where=f"labelled customers, {label_column}", fix=fix)
    dev_idx, valid_idx = train_test_split(np.arange(len(y_all)), test_size=holdout_share, stratify=y_all,
                                          random_state=0)
    dev_idx, valid_idx = np.sort(dev_idx), np.sort(valid_idx)
    y_valid = y_all[valid_idx]
    _too_little_churn(y_valid, part="held-out validation", where="held-out customers", fix=fix)
    dev, valid = rows.iloc[dev_idx], rows.iloc[valid_idx]
    y = y_all[dev_idx]
    numeric, categorical = _usable(ff, dev)
    x, x_valid = dev[numeric + categorical], valid[numeric + categorical]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    splits = list(cv.split(x, y))
    oof = {name: np.zeros(len(y)) for name in candidates}
    for i, name in enumerate(candidates):
        _report(progress, 0.05 + 0.7 * i / len(candidates), f"Cross-validating {name.replace('_', ' ')}")
        for train_idx, test_idx in splits:
            est = candidate_pipeline(name, numeric, categorical).fit(x.iloc[train_idx], y[train_idx])
            oof[name][test_idx] = est.predict_proba(x.iloc[test_idx])[:, 1]
    fold_auc = {name: float(np.mean([roc_auc_score(y[t], oof[name][t]) for _, t in splits])) for name in candidates}
    chosen = _select(fold_auc)
    _report(progress, 0.8, f"Fitting {chosen.replace('_', ' ')} on {len(y):,} labelled customers (held-out ones apart)")
    estimator = candidate_pipeline(chosen, numeric, categorical).fit(x, y)
    calibration = PlattCalibration().fit(oof[chosen], y)
    model = ChurnModel(estimator, calibration, numeric, categorical, _reference(x, numeric, categorical),
                       kind="labelled", name=chosen, label_column=label_column, source=source, cutoff=ff.cutoff,
                       held_out_ids=[str(i) for i in valid.index])
    _report(progress, 0.88, f"Measuring on {len(y_valid):,} held-out customers")
    metrics = model_metrics(y_valid, model.predict_proba(valid))
    _report(progress, 0.92, "Permutation importance on held-out rows")
    metrics.update(
        validation="stratified_holdout",
        evaluated_on=(f"{len(y_valid):,} customers held out at random (stratified by the label, {holdout_share:.0%}, "
                      "seed 0), used neither to choose the model nor to calibrate it"),
        holdout_share=holdout_share,
        valid_customers=int(len(y_valid)),
        selection=f"stratified_{folds}fold",
        candidates=fold_auc,
        chosen=chosen,
        n_train=int(len(y)),
        n_select=int(len(y)),
        n_positive_select=int(y.sum()),
        n_unlabelled=int(ff.frame["label"].isna().sum()),
        label_column=label_column,
        importance=_importance(model, x_valid, y_valid),
        importance_on="held-out customers",
        dropped=ff.dropped,
    )
    model.metrics = metrics
    _report(progress, 1.0, "Done")
    return model


@_few_threads
def train_event_model(
    conn: Connection,
    *,
    cutoff: datetime | None = None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    train_snapshots: int = 6,
    select_snapshots: int = 2,
    valid_snapshots: int = 2,
    max_train_rows: int = MAX_TRAIN_ROWS,
    max_valid_rows: int = MAX_VALID_ROWS,
    source: str | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
    progress: Progress | None = None,
    reader: SnapshotReader | None = None,
    churn: Definition | None = None,
) -> ChurnModel:
    """Time-based validation on event data; labels from subscription ends, or from ``churn`` (a dated
    ``cxdash.churn`` definition: churn records, a dated label, inactivity) when given.

    Snapshots one horizon apart, newest first: ``valid_snapshots`` held out for the report, ending at
    ``cutoff`` (which defaults to the data's latest timestamp minus the horizon, so its labels are
    complete); ``select_snapshots`` before them, on which the candidate is chosen and the calibration
    fitted; ``train_snapshots`` before those, on which the candidates are fitted. Each part's labels
    end by the next part's first cutoff. Several snapshots give enough leavers to learn from and span
    seasonal causes (a spring campaign).

    When the training (selection and held-out) snapshots together would hold more than
    ``max_train_rows`` (``max_valid_rows``) customers, each snapshot is a 1-in-k customer sample, a
    different one per snapshot, drawn in the database; ``metrics["sample_note"]`` says so and
    ``metrics["valid_samples"]`` gives each held-out snapshot's ``[every, offset]`` (None: everyone).

    Raises ``NotEnoughChurnError`` before fitting when the held-out, the selection or the training
    snapshots hold fewer than ``MIN_CHURNED`` churned customers.
    """
    now = data_as_of(conn)
    if now is None:
        raise ModelNotTrainedError("no data loaded: nothing to train on")
    h = timedelta(days=horizon_days)
    cutoff = cutoff or (now - h)
    if cutoff + h > now + timedelta(days=1):
        raise ValueError(f"cutoff {cutoff:%Y-%m-%d} + {horizon_days:g} days is after the data's end ({now:%Y-%m-%d}): "
                         "the labels would be incomplete; choose an earlier cutoff or a shorter horizon")
    valid_cutoffs = [cutoff - k * h for k in range(valid_snapshots)]
    select_cutoffs = [cutoff - (valid_snapshots + k) * h for k in range(select_snapshots)]
    train_cutoffs = [cutoff - (valid_snapshots + select_snapshots + k) * h for k in range(train_snapshots)]
    _report(progress, 0.01, "Reading the customer table")
    reader = reader or SnapshotReader(conn, source=source, churn=churn)
    # the held-out and the selection snapshots share the validation row cap
    sampling = _snapshot_samples(reader, valid_cutoffs + select_cutoffs, train_cutoffs, max_train_rows, max_valid_rows)
    frames = []
    all_cutoffs = valid_cutoffs + select_cutoffs + train_cutoffs
    for i, c in enumerate(all_cutoffs):
        _report(progress, 0.02 + 0.45 * i / len(all_cutoffs), f"Features as of {c:%Y-%m-%d}")
        frames.append(reader.features(c, horizon_days=horizon_days, sample=sampling["samples"][i]))
    template = frames[0]
    n_vs = valid_snapshots + select_snapshots
    valid = pd.concat([f.frame for f in frames[:valid_snapshots]])
    select = pd.concat([f.frame for f in frames[valid_snapshots:n_vs]])
    train = pd.concat([f.frame for f in frames[n_vs:]])
    del frames
    fix = _fixes(horizon_days=horizon_days)

    def when(cutoffs: list[datetime]) -> str:
        return ", ".join(f"{c:%Y-%m-%d}" for c in sorted(cutoffs))

    y_valid = valid["label"].to_numpy(dtype=int)
    y_select = select["label"].to_numpy(dtype=int)
    y_train = train["label"].to_numpy(dtype=int)
    for y, part, cutoffs in ((y_valid, "held-out validation", valid_cutoffs),
                             (y_select, "selection and calibration snapshots", select_cutoffs),
                             (y_train, "training snapshots", train_cutoffs)):
        _too_little_churn(y, part=part, fix=fix,
                          where=f"customer-snapshots as of {when(cutoffs)}, churn within {horizon_days:g} days")
    numeric, categorical = _usable(template, train)
    x_train, x_select = train[numeric + categorical], select[numeric + categorical]
    fitted, select_scores, aucs = {}, {}, {}
    for i, name in enumerate(candidates):
        _report(progress, 0.5 + 0.35 * i / len(candidates), f"Training {name.replace('_', ' ')}")
        parts = _BLEND_OF if name == "blend" else ()
        if parts and all(p in fitted for p in parts):  # the blend averages two fitted candidates
            est = BlendClassifier.of_fitted([fitted[p] for p in parts])
        else:
            est = candidate_pipeline(name, numeric, categorical).fit(x_train, y_train)
        fitted[name] = est
        select_scores[name] = est.predict_proba(x_select)[:, 1]
        aucs[name] = float(roc_auc_score(y_select, select_scores[name]))
    chosen = _select(aucs)
    calibration = PlattCalibration().fit(select_scores[chosen], y_select)
    model = ChurnModel(fitted[chosen], calibration, numeric, categorical,
                       _reference(x_train, numeric, categorical), kind="events", name=chosen,
                       source=source, cutoff=cutoff, horizon_days=horizon_days)
    _report(progress, 0.88, f"Measuring on the held-out snapshots ({when(valid_cutoffs)})")
    metrics = model_metrics(y_valid, model.predict_proba(valid), groups=valid.index.to_numpy())
    # Importance is description, not a figure of merit nor an input to the choice: measured on every
    # snapshot the candidates were not fitted on (selection and held-out), it rests on twice the leavers.
    _report(progress, 0.9, "Permutation importance on the selection and held-out snapshots")
    unseen = pd.concat([valid, select])
    metrics.update(
        validation="time_based",
        evaluated_on=(f"{len(y_valid):,} customer-snapshots as of {when(valid_cutoffs)} "
                      f"({valid.index.nunique():,} customers), held out: later than every snapshot the model was "
                      "fitted, chosen or calibrated on"),
        train_cutoffs=[c.isoformat() for c in train_cutoffs],
        select_cutoffs=[c.isoformat() for c in select_cutoffs],
        valid_cutoffs=[c.isoformat() for c in valid_cutoffs],
        valid_samples=[None if smp is None else [smp.every, smp.offset]
                       for smp in sampling["samples"][:valid_snapshots]],
        valid_customers=int(valid.index.nunique()),
        horizon_days=horizon_days,
        selection="time_based",
        candidates=aucs,
        chosen=chosen,
        n_train=int(len(y_train)),
        n_select=int(len(y_select)),
        n_positive_select=int(y_select.sum()),
        n_positive_train=int(y_train.sum()),
        sample_note=sampling["note"],
        train_sample_every=sampling["train_every"],
        valid_sample_every=sampling["valid_every"],
        train_base_rate=float(y_train.mean()),
        importance=_importance(model, unseen[numeric + categorical], unseen["label"].to_numpy(dtype=int)),
        importance_on="selection and held-out snapshots",
        dropped=template.dropped,
    )
    model.metrics = metrics
    _report(progress, 1.0, "Done")
    return model


# ----------------------------------------------------------------------------- scoring and reasons
@_few_threads
def explain(model: ChurnModel, frame: pd.DataFrame, *, top: int = N_REASONS) -> list[list[dict]]:
    """The top drivers of each row's score.

    For every driver group, the row's group features are set to the typical training customer's
    values and the row is scored again; the drop in log-odds is the group's contribution. Returns,
    per row, up to ``top`` drivers with a positive contribution, largest first: ``driver, label,
    department, action, contribution, detail``.
    """
    if frame.empty:
        return []
    x = model._x(frame)
    base = _logit(model.estimator.predict_proba(x)[:, 1])
    groups = model.groups()
    contrib = np.zeros((len(x), len(groups)))
    names = list(groups)
    for j, g in enumerate(names):
        # Only rows whose driver differs from the typical customer's can change score when it is
        # reset (most customers never visited the cancel page): score just those (exact).
        rows = _differs_from(x, groups[g], model.reference)
        if not rows.any():
            continue
        xr = x.loc[rows].copy()
        for c in groups[g]:
            xr[c] = float(model.reference.get(c)) if c in model.numeric else model.reference.get(c)
        contrib[rows, j] = base[rows] - _logit(model.estimator.predict_proba(xr)[:, 1])
    infos = [driver_info(n) for n in names]
    # the top drivers of every row at once; words only for the rows and drivers that are reasons
    k = min(top, len(names))
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(contrib, order, axis=1)
    n_reasons = (picked > 0.05).sum(axis=1)  # under ~5% change in the odds is not a reason (sorted: a prefix)
    columns, values = list(x.columns), x.to_numpy(dtype=object)
    out = []
    for i in range(len(x)):
        n = int(n_reasons[i])
        if n == 0:
            out.append([])
            continue
        row = dict(zip(columns, values[i], strict=True))
        reasons = []
        for j in order[i, :n]:
            d = infos[j]
            action = d.action
            if names[j] in ("tenure", "attr_tenure") and _tenure_days(row, names[j]) > 365:
                action = "Account manager's loyalty check-in: review usage and renewal terms"
            reasons.append({
                "driver": names[j], "label": d.label, "department": d.department, "action": action,
                "contribution": round(float(contrib[i, j]), 3), "detail": _detail(names[j], row, groups[names[j]]),
            })
        out.append(reasons)
    return out


def _differs_from(x: pd.DataFrame, cols: list[str], reference: dict) -> np.ndarray:
    """Per row of ``x``: does any of ``cols`` differ from its ``reference`` value (missing = missing)?"""
    out = np.zeros(len(x), dtype=bool)
    for c in cols:
        ref, v = reference.get(c), x[c]
        if ref is None or (isinstance(ref, float) and np.isnan(ref)):
            out |= v.notna().to_numpy()
        else:
            out |= (v.isna() | (v != ref)).to_numpy(dtype=bool)
    return out


def _tenure_days(row: dict, group: str) -> float:
    if group == "tenure":
        v = row.get("tenure_days")
    else:  # a customer table's own tenure column is usually in months
        v = row.get("attr_tenure")
        v = v * 30.44 if v is not None and not pd.isna(v) else v
    return float(v) if v is not None and not pd.isna(v) else 0.0


def _detail(group: str, row: dict, cols: list[str]) -> str:
    """Words for the customer's own values of a driver ("3 days ago", "2 in 90 days"); ``row``
    maps feature names to the customer's values, ``cols`` are the driver group's features."""
    def age(col):
        v = row.get(col)
        if v is None or pd.isna(v) or v >= AGE_CAP_DAYS:
            return None
        return "today" if v < 1 else f"{v:.0f} days ago"

    if group in INTENT_SIGNALS:
        a = age(f"days_since_{group}")
        n = row.get(f"{group}_30d")
        if a:
            return f"last {a}" + (f", {n:.0f}× in 30 days" if n and not pd.isna(n) and n > 1 else "")
        return "not recently"
    counts = {
        "checkout_errors": ("checkout_errors", "days_since_checkout_errors", "in total"),
        "failed_payments": ("failed_payments_90d", "days_since_failed_payments", "in 90 days"),
        "repeat_contacts": ("repeat_contacts_90d", "days_since_repeat_contacts", "in 90 days"),
        "transfers": ("transferred_contacts_90d", "days_since_transfers", "transferred contacts in 90 days"),
        "support_contacts": ("contacts_90d", "days_since_contact", "contacts in 90 days"),
    }
    if group in counts:
        n_col, age_col, what = counts[group]
        n, a = row.get(n_col), age(age_col)
        parts = []
        if n is not None and not pd.isna(n):
            parts.append(f"{n:.0f} {what}")
        if a:
            parts.append(f"last {a}")
        return ", ".join(parts)
    if group == "tenure":
        v = row.get("tenure_days")
        return f"{v / 30.44:.0f} months" if v is not None and not pd.isna(v) else ""
    if group == "purchases":
        v, n = row.get("revenue_90d"), row.get("purchases_90d")
        if v is not None and not pd.isna(v):
            return f"{n:.0f} purchases worth {v:,.0f} in 90 days"
        return ""
    if group == "usage":
        v = row.get("web_events_30d")
        return f"{v:.0f} web visits in 30 days" if v is not None and not pd.isna(v) else ""
    if group == "satisfaction":
        v = row.get("satisfaction_min")
        return f"lowest rating {v:.0f}" if v is not None and not pd.isna(v) else ""
    if len(cols) == 1:
        v = row[cols[0]]
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:,.4g}"
        return "" if v is None else str(v)
    return ""


@_few_threads
def score_frame(model: ChurnModel, ff: FeatureFrame, *, reasons_for: int | None = None) -> pd.DataFrame:
    """Risk, value and reasons per customer of a feature snapshot.

    Out (sorted by priority = risk x value, highest first; by risk when no value is known):
    ``cx_id, customer_id, risk, value, priority, reasons`` (list of dicts), ``top_reason,
    department, action``. ``reasons_for`` limits the (slower) explanation to the riskiest rows.
    """
    frame = ff.frame
    out = pd.DataFrame({"cx_id": frame.index.astype(str), "customer_id": frame["customer_id"].astype(str).to_numpy()})
    out["risk"] = model.predict_proba(frame)
    out["value"] = frame["value"].to_numpy(dtype=float)
    has_value = (out["value"] > 0).any()
    out["priority"] = out["risk"] * (out["value"] if has_value else 1.0)
    out = out.sort_values(["priority", "risk"], ascending=False, kind="stable").reset_index(drop=True)
    n = len(out) if reasons_for is None else min(reasons_for, len(out))
    reasons = explain(model, frame.loc[out["cx_id"].iloc[:n]]) + [[] for _ in range(len(out) - n)]
    out["reasons"] = reasons
    out["top_reason"] = [r[0]["label"] if r else "" for r in reasons]
    out["department"] = [r[0]["department"] if r else "" for r in reasons]
    out["action"] = [r[0]["action"] if r else "Keep in the regular success cadence" for r in reasons]
    return out


def current_features(conn: Connection, model: ChurnModel, *, reader: SnapshotReader | None = None) -> FeatureFrame:
    """Features for today's customers, the way the model was trained (as of the data's end).
    ``reader``: one already open on ``conn`` (training's), so the customer table is not read again."""
    if model.kind == "labelled":
        ff = labelled_features(conn, label_column=model.label_column or "churn_label", source=model.source)
        # customers the label already marks as gone are not at risk any more
        ff.frame = ff.frame[ff.frame["label"] != 1]
        return ff
    now = data_as_of(conn)
    if reader is None:
        reader = SnapshotReader(conn, source=model.source, churn=_reader_definition(model.churn_definition))
    return reader.features(now + timedelta(seconds=1))


def _reader_definition(name: str | None) -> Definition | None:
    """The definition a snapshot reads labels and leavers from: None for subscriptions (their own
    columns), else the dated definition."""
    if not name:
        return None
    d = Definition.parse(name)
    return None if d.basis == "subscriptions" else d


# ----------------------------------------------------------------------------- persistence
def save_model(store: Store, model: ChurnModel, *, data_version: int) -> int:
    """Store the fitted model as the newest version; returns its version number. The library
    versions it was fitted with go into the registry row's metrics (``fitted_with``), readable
    without unpickling it."""
    model.metrics["fitted_with"] = dict(model.library_versions)
    with store.app_begin() as conn:
        version = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(models_table.c.version), 0))).scalar()) + 1
        model.version = version
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        conn.execute(
            models_table.insert().values(
                version=version,
                created_at=datetime.now(UTC).replace(tzinfo=None),
                kind=model.kind,
                estimator=model.name,
                label_column=model.label_column,
                source=model.source,
                cutoff=model.cutoff,
                horizon_days=model.horizon_days,
                data_version=data_version,
                metrics_json=json.dumps(model.metrics, default=str),
                features_json=json.dumps({"numeric": model.numeric, "categorical": model.categorical}),
                pipeline=blob,
            )
        )
    return version


def load_model(store: Store, version: int) -> ChurnModel:
    """The stored model ``version``. Raises ``ModelNotTrainedError`` when there is none, and
    ``ModelVersionError`` (naming both versions, saying to retrain) when it was fitted with other
    library versions than the running ones: checked on the registry row, before unpickling."""
    t = models_table
    with store.app_begin() as conn:
        row = conn.execute(sa.select(t.c.metrics_json, t.c.pipeline).where(t.c.version == version)).first()
    if row is None:
        raise ModelNotTrainedError(f"no churn model version {version} in the store")
    problem = version_problem(json.loads(row.metrics_json).get("fitted_with"), version=version)
    if problem:
        raise ModelVersionError(problem)
    model = pickle.loads(row.pipeline)  # noqa: S301 - written by save_model into our own store, same versions
    model.version = version
    return model


def latest_model(store: Store) -> ChurnModel:
    """The newest stored model. Raises ``ModelNotTrainedError`` with the fix when there is none."""
    with store.app_begin() as conn:
        version = conn.execute(sa.select(sa.func.max(models_table.c.version))).scalar()
    if version is None:
        raise ModelNotTrainedError(
            "No churn model has been trained yet. Train one on the Churn model page or with "
            "`python -m cxdash train`."
        )
    return load_model(store, int(version))


# ----------------------------------------------------------------------------- one call for the CLI and the page
def _has_subscriptions(conn: Connection) -> bool:
    from cxdash.store import KIND_TABLES

    t = KIND_TABLES["subscriptions"]
    return conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None


def train(
    store: Store,
    *,
    label_column: str | None = None,
    source: str | None = None,
    cutoff: datetime | None = None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    progress: Progress | None = None,
) -> ChurnModel:
    """Train, save as the newest version, and score today's customers into the ``scores`` table.

    With ``label_column`` the customer table's own label is used (stratified CV); otherwise the
    label is churn within ``horizon_days`` from subscription end dates (time-based validation),
    falling back to the CRM's ``churn_label`` when no subscriptions are loaded.
    """
    from cxdash.activation import store_scores
    from cxdash.overview import data_version

    def sub(lo: float, hi: float) -> Progress | None:
        return (lambda share, text: progress(lo + (hi - lo) * share, text)) if progress else None

    today = None
    chosen = churn_defs.chosen_name(store)
    with store.connect() as conn:
        version = data_version(conn)
        definition = None
        if label_column is None:
            res = churn_defs.resolve(conn, chosen)
            definition = res.definition
            if definition is None:
                raise ModelNotTrainedError(
                    "no churn definition fits the loaded data, so there is nothing to learn: load a customer table "
                    "with a churn label, subscriptions, churn records, or dated purchases or activity")
            if definition.basis == "label" and not res.dated:
                label_column, source = "churn_label", source or definition.source
        if label_column is not None:
            model = train_labelled_model(conn, label_column=label_column, source=source, progress=sub(0.0, 0.8))
        else:
            reader_definition = _reader_definition(definition.name)
            # read the customer table once for both
            reader = SnapshotReader(conn, source=source, churn=reader_definition)
            model = train_event_model(conn, cutoff=cutoff, horizon_days=horizon_days, source=source,
                                      progress=sub(0.0, 0.8), reader=reader, churn=reader_definition)
            model.churn_definition = definition.name  # current_features below reads it
            _report(progress, 0.82, "Features of today's customers")
            today = current_features(conn, model, reader=reader)
            del reader
        if definition is not None:
            model.churn_definition = definition.name
            model.metrics["churn_definition"] = definition.name
            model.metrics["churn_definition_text"] = definition.describe()
    save_model(store, model, data_version=version)
    _report(progress, 0.85, "Scoring today's customers")
    store_scores(store, model, features=today)
    _report(progress, 1.0, f"Model version {model.version} saved and customers scored")
    return model


def model_versions(store: Store) -> pd.DataFrame:
    """The registry without the blobs: version, created_at, kind, estimator, cutoff, metrics (dict)."""
    t = models_table
    with store.app_begin() as conn:
        rows = conn.execute(
            sa.select(t.c.version, t.c.created_at, t.c.kind, t.c.estimator, t.c.label_column, t.c.source, t.c.cutoff,
                      t.c.horizon_days, t.c.data_version, t.c.metrics_json, t.c.features_json)
            .order_by(t.c.version.desc())
        ).fetchall()
    frame = pd.DataFrame(rows, columns=["version", "created_at", "kind", "estimator", "label_column", "source", "cutoff",
                                        "horizon_days", "data_version", "metrics_json", "features_json"])
    frame["metrics"] = frame.pop("metrics_json").map(json.loads)
    frame["features"] = frame.pop("features_json").map(json.loads)
    return frame
