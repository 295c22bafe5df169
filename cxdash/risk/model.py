"""The churn/intent model: train, choose, calibrate, report honestly, explain each score, persist.

Every model is fitted on one part of the data, chosen among the candidates and calibrated on a
second part, and its reported figures come from a third, held-out part that neither choice nor
calibration saw:

* **Event data** (``train_event_model``): feature snapshots at several cutoffs one horizon apart
  (``cxdash.risk.features.customer_features``). The latest ``valid_snapshots`` are held out for the
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
driver's contribution. Positive contributions are the customer's reasons when the customer's own
value is on the risky side of the typical *retained* training customer's (``reason_baseline``), each
with its value, that reference, the side on which risk rises, the owning department and a next best
action; a driver that is a signal takes its words, owner and action from ``cxdash.metrics.signals``.
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

from cxdash.metrics import churn as churn_defs
from cxdash.metrics import signals
from cxdash.metrics.churn import Definition
from cxdash.risk.features import (
    AGE_CAP_DAYS,
    MISSING_CATEGORY,
    FeatureFrame,
    Sample,
    SnapshotReader,
    data_as_of,
    labelled_features,
)
from cxdash.store.database import Store, models_table

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
    "main_feature",
    "reason_baseline",
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
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


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
        return (
            f"{which} was saved without the library versions it was fitted with (before they were recorded), "
            f"so it cannot be loaded safely. {fix}"
        )
    now = fitted_with()
    differ = [
        name for name in _VERSIONED if _comparable(name, saved.get(name, "unknown")) != _comparable(name, now[name])
    ]
    if not differ:
        return None
    then_txt = ", ".join(f"{n} {saved.get(n, 'unknown')}" for n in differ)
    now_txt = ", ".join(f"{n} {now[n]}" for n in differ)
    return (
        f"{which} was fitted with {then_txt}; this app runs {now_txt}. A model is only loaded with the "
        f"versions it was fitted with. {fix}"
    )


# ----------------------------------------------------------------------------- drivers
@dataclass(frozen=True)
class Driver:
    group: str
    label: str
    department: str
    action: str
    signal: str | None = None  # the cxdash.metrics.signals name when the driver is a signal


# Driver groups that are signals: their words, owner and next action are the registry's. The
# intent signals' groups carry the signal's own name (their features are ``cancel_page_30d``...).
_SIGNAL_GROUPS = {
    "checkout_errors": "checkout_error",
    "failed_payments": "failed_payment",
    "repeat_contacts": "repeat_contact",
    "transfers": "transfer",
    "satisfaction": "low_satisfaction",
    **{s.name: s.name for s in signals.SIGNALS.values() if s.strength == signals.INTENT},
}
_INTENT_DRIVERS = tuple(s.name for s in signals.SIGNALS.values() if s.strength == signals.INTENT)
# Drivers that are not signals: what the customer is (tenure, plan) or does (usage, purchases).
_FIXED_DRIVERS: dict[str, tuple[str, str, str]] = {
    "support_contacts": (
        "More support contacts than retained customers",
        "support",
        "Proactive check-in on the open issues",
    ),
    "usage": ("Product usage", "web", "Success team re-onboards the key features"),
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
    (
        ("support", "ticket", "complain", "security", "protection", "backup"),
        "support",
        "Offer the support add-on and check open issues",
    ),
    (
        ("stream", "internet", "service", "device", "usage", "login", "online"),
        "web",
        "Success team reviews how the product is used",
    ),
    (("email", "campaign", "marketing", "newsletter"), "marketing", "Move to a relevant nurture track"),
)
# A driver's *main feature*: the value a reason shows and compares with retained customers. The
# first one the model has wins. Its risky side: "higher"/"lower" as declared, ``"signal"`` for the
# signal's own direction, None when the training data tells (``reason_baseline``).
_MAIN_FEATURES: dict[str, tuple[tuple[str, str | None], ...]] = {
    **{
        stem: ((f"{stem}_30d", "signal"), (f"{stem}_7d", "signal"), (f"days_since_{stem}", "lower"))
        for stem in _INTENT_DRIVERS
    },
    "checkout_errors": (
        ("checkout_errors_30d", "signal"),
        ("checkout_errors", "signal"),
        ("days_since_checkout_errors", "lower"),
    ),
    "failed_payments": (
        ("failed_payments_90d", "signal"),
        ("failed_payments_30d", "signal"),
        ("failed_payments", "signal"),
        ("days_since_failed_payments", "lower"),
    ),
    "repeat_contacts": (
        ("repeat_contacts_90d", "signal"),
        ("repeat_contacts", "signal"),
        ("days_since_repeat_contacts", "lower"),
    ),
    "transfers": (("transferred_contacts_90d", "signal"), ("transfers", "signal"), ("days_since_transfers", "lower")),
    "satisfaction": (("satisfaction_min", "signal"), ("satisfaction_avg", "signal")),
    "support_contacts": (
        ("contacts_90d", "higher"),
        ("contacts_30d", "higher"),
        ("contacts", "higher"),
        ("open_tickets", "higher"),
    ),
    "usage": (("web_events_30d", None), ("web_events_90d", None), ("web_events", None)),
    "marketing": (("marketing_engaged_90d", None), ("marketing_touches_90d", None)),
    "purchases": (("revenue_90d", None), ("purchases_90d", None), ("mrr", None), ("revenue", None)),
    "tenure": (("tenure_days", None), ("ended_subscriptions", None)),
    "consent": (("consent_marketing", None),),
}


def _group_of(feature: str) -> str:
    for stem in _INTENT_DRIVERS:
        if stem in feature:
            return stem
    name = feature
    rules = (
        ("checkout_errors", "checkout_errors"),
        ("failed_payments", "failed_payments"),
        ("repeat_contacts", "repeat_contacts"),
        ("transfer", "transfers"),
        ("satisfaction", "satisfaction"),
        ("contact", "support_contacts"),
        ("open_tickets", "support_contacts"),
        ("resolution", "support_contacts"),
        ("marketing", "marketing"),
        ("web", "usage"),
        ("purchase", "purchases"),
        ("revenue", "purchases"),
        ("refund", "purchases"),
        ("mrr", "purchases"),
        ("tenure", "tenure"),
        ("consent", "consent"),
        ("ended_subscriptions", "tenure"),
    )
    if name.startswith("attr_"):
        return name
    for needle, group in rules:
        if needle in name:
            return group
    return name


def driver_info(group: str) -> Driver:
    """Label, owning department and next best action for a driver group; a signal's come from
    ``cxdash.metrics.signals``."""
    if group in _SIGNAL_GROUPS:
        s = signals.signal(_SIGNAL_GROUPS[group])
        return Driver(group, s.label, s.department, s.action, s.name)
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


def main_feature(group: str, features: list[str]) -> tuple[str | None, str | None]:
    """The feature a driver group's reason shows (the first of its declared ones the model has,
    else its first feature) and its declared risky side ("higher", "lower", or None: learned)."""
    have = set(features)
    for feature, side in _MAIN_FEATURES.get(group, ()):
        if feature in have:
            if side == "signal":
                side = signals.signal(_SIGNAL_GROUPS[group]).direction
            return feature, side
    own = [f for f in features if _group_of(f) == group]
    return (own[0], None) if own else (None, None)


def reason_baseline(rows: pd.DataFrame, y: np.ndarray, numeric: list[str], categorical: list[str]) -> dict:
    """What a retained customer typically looks like, per feature, for the reasons' comparison.

    In: training rows, their labels (1 = churned), the feature names. Out: ``{feature:
    {"reference": median (number) or most frequent value (category) among the retained rows,
    "learned": "higher"/"lower"/None}}``; ``learned`` is the side where the churned rows' mean lies
    (None when equal, for a category, or with no churned or no retained rows).
    """
    y = np.asarray(y, dtype=float)
    kept, gone = rows[y == 0], rows[y == 1]
    out: dict[str, dict] = {}
    for c in numeric:
        v = pd.to_numeric(kept[c], errors="coerce")
        ref = float(v.median()) if v.notna().any() else None
        m0, m1 = v.mean(), pd.to_numeric(gone[c], errors="coerce").mean()
        learned = None if pd.isna(m0) or pd.isna(m1) or m0 == m1 else ("higher" if m1 > m0 else "lower")
        out[c] = {"reference": ref, "learned": learned}
    for c in categorical:
        mode = kept[c].dropna().astype(str).mode()
        out[c] = {"reference": mode.iloc[0] if len(mode) else None, "learned": None}
    return out


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
            (
                "cat",
                make_pipeline(
                    _categories(),
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=MAX_CATEGORIES
                    ),
                ),
                categorical,
            ),
            ("num", "passthrough", numeric),
        ]
    )
    mask = [True] * len(categorical) + [False] * len(numeric)
    params = dict(categorical_features=mask, random_state=0)
    if regularised:
        params.update(
            learning_rate=0.05,
            max_iter=300,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=20,
        )
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
    churn_definition: str | None = None  # the churn definition its labels follow (cxdash.metrics.churn)
    library_versions: dict = field(default_factory=fitted_with)  # what it was fitted with (``version_problem``)
    # a snapshot-only label: the cx_ids of the held-out customers its figures were measured on
    # (event models are evaluated on whole snapshots: ``metrics["valid_cutoffs"]``)
    held_out_ids: list[str] | None = None
    # per feature, the typical retained training customer and the side churners lean to
    # (``reason_baseline``); models saved before it existed have none (see ``explain``)
    reason_baseline: dict = field(default_factory=dict)

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
        part=part,
        found=found,
        customers=int(len(y)),
    )


def _fixes(*, horizon_days: float | None) -> str:
    parts = ["another churn definition (the command 'python -m cxdash churn' lists them; choose one on Data health)"]
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


def _select(scores: dict[str, float]) -> str:
    return max(scores, key=lambda k: (scores[k], -CANDIDATES.index(k)))


def _report(progress: Progress | None, share: float, text: str) -> None:
    log.info(text)
    if progress:
        progress(share, text)


def _snapshot_samples(
    reader: SnapshotReader,
    valid_cutoffs: list[datetime],
    train_cutoffs: list[datetime],
    max_train_rows: int,
    max_valid_rows: int,
) -> dict:
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
            parts.append(
                f"trained on 1 in {train_every} customers of each training snapshot "
                f"(of {train_full:,} customer-snapshots)"
            )
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
    dev_idx, valid_idx = train_test_split(
        np.arange(len(y_all)), test_size=holdout_share, stratify=y_all, random_state=0
    )
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
    model = ChurnModel(
        estimator,
        calibration,
        numeric,
        categorical,
        _reference(x, numeric, categorical),
        kind="labelled",
        name=chosen,
        label_column=label_column,
        source=source,
        cutoff=ff.cutoff,
        held_out_ids=[str(i) for i in valid.index],
    )
    model.reason_baseline = reason_baseline(x, y, numeric, categorical)
    _report(progress, 0.88, f"Measuring on {len(y_valid):,} held-out customers")
    metrics = model_metrics(y_valid, model.predict_proba(valid))
    _report(progress, 0.92, "Permutation importance on held-out rows")
    metrics.update(
        validation="stratified_holdout",
        evaluated_on=(
            f"{len(y_valid):,} customers held out at random (stratified by the label, {holdout_share:.0%}, "
            "seed 0), used neither to choose the model nor to calibrate it"
        ),
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
    ``cxdash.metrics.churn`` definition: churn records, a dated label, inactivity) when given.

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
        raise ValueError(
            f"cutoff {cutoff:%Y-%m-%d} + {horizon_days:g} days is after the data's end ({now:%Y-%m-%d}): "
            "the labels would be incomplete; choose an earlier cutoff or a shorter horizon"
        )
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
    for y, part, cutoffs in (
        (y_valid, "held-out validation", valid_cutoffs),
        (y_select, "selection and calibration snapshots", select_cutoffs),
        (y_train, "training snapshots", train_cutoffs),
    ):
        _too_little_churn(
            y, part=part, fix=fix, where=f"customer-snapshots as of {when(cutoffs)}, churn within {horizon_days:g} days"
        )
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
    model = ChurnModel(
        fitted[chosen],
        calibration,
        numeric,
        categorical,
        _reference(x_train, numeric, categorical),
        kind="events",
        name=chosen,
        source=source,
        cutoff=cutoff,
        horizon_days=horizon_days,
    )
    model.reason_baseline = reason_baseline(x_train, y_train, numeric, categorical)
    _report(progress, 0.88, f"Measuring on the held-out snapshots ({when(valid_cutoffs)})")
    metrics = model_metrics(y_valid, model.predict_proba(valid), groups=valid.index.to_numpy())
    # Importance is description, not a figure of merit nor an input to the choice: measured on every
    # snapshot the candidates were not fitted on (selection and held-out), it rests on twice the leavers.
    _report(progress, 0.9, "Permutation importance on the selection and held-out snapshots")
    unseen = pd.concat([valid, select])
    metrics.update(
        validation="time_based",
        evaluated_on=(
            f"{len(y_valid):,} customer-snapshots as of {when(valid_cutoffs)} "
            f"({valid.index.nunique():,} customers), held out: later than every snapshot the model was "
            "fitted, chosen or calibrated on"
        ),
        train_cutoffs=[c.isoformat() for c in train_cutoffs],
        select_cutoffs=[c.isoformat() for c in select_cutoffs],
        valid_cutoffs=[c.isoformat() for c in valid_cutoffs],
        valid_samples=[
            None if smp is None else [smp.every, smp.offset] for smp in sampling["samples"][:valid_snapshots]
        ],
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
def explain(
    model: ChurnModel, frame: pd.DataFrame, *, top: int = N_REASONS, risky_side_only: bool = True
) -> list[list[dict]]:
    """The top reasons for each row's score, in the structured form the card, the at-risk list and
    the CLI show.

    For every driver group, the row's group features are set to the typical training customer's
    values and the row is scored again; the drop in log-odds is the group's contribution. A driver
    is a reason when it adds over ~5% to the odds *and* the customer's own value of its main
    feature (``main_feature``) is strictly on the risky side of the typical retained customer's
    (``ChurnModel.reason_baseline``): more support contacts than retained customers have, a lowest
    rating below theirs and at most ``signals.COMPLAINT_MAX_SATISFACTION``, never a count of 0. A
    category is a reason when it differs from the retained customers' most frequent one. A number
    whose risky side is neither declared nor learned is not shown (the model's contribution alone
    could contradict the customer's own data). ``risky_side_only=False`` keeps every driver above
    the threshold (to study the model, not to show).

    Returns, per row, up to ``top`` reasons, largest contribution first: ``signal`` (the signal's
    name, or the driver's for a non-signal driver), ``driver``, ``label``, ``feature``, ``value``,
    ``reference``, ``direction`` ("higher"/"lower": the side on which risk rises; None for a
    category), ``department``, ``action``, ``contribution``, ``detail`` (words).
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
    mains = [_main_spec(model, n) for n in names]
    # the largest contributions of every row at once; words only for the rows and drivers that are reasons
    order = np.argsort(-contrib, axis=1, kind="stable")
    above = np.take_along_axis(contrib, order, axis=1) > 0.05  # under ~5% change in the odds is not a reason
    n_above = above.sum(axis=1)  # sorted: a prefix
    columns, values = list(x.columns), x.to_numpy(dtype=object)
    out = []
    for i in range(len(x)):
        n = int(n_above[i])
        if n == 0:
            out.append([])
            continue
        row = dict(zip(columns, values[i], strict=True))
        reasons = []
        for j in order[i, :n]:
            feature, reference, direction = mains[j]
            value = _plain(row.get(feature)) if feature else None
            if risky_side_only and not _on_risky_side(
                names[j], feature, value, reference, direction, feature in model.categorical
            ):
                continue
            d = _directed(infos[j], direction)
            action = d.action
            if names[j] in ("tenure", "attr_tenure") and _tenure_days(row, names[j]) > 365:
                action = "Account manager's loyalty check-in: review usage and renewal terms"
            reasons.append(
                {
                    "signal": d.signal or names[j],
                    "driver": names[j],
                    "label": d.label,
                    "feature": feature,
                    "value": value,
                    "reference": _plain(reference),
                    "direction": direction,
                    "department": d.department,
                    "action": action,
                    "contribution": round(float(contrib[i, j]), 3),
                    "detail": _detail(
                        names[j], row, groups[names[j]], feature=feature, reference=reference, direction=direction
                    ),
                }
            )
            if len(reasons) == top:
                break
        out.append(reasons)
    return out


# Non-signal drivers whose risky side the data decides: their words depend on that side (the
# label must not say "uses the product less" of a customer who uses it more than retained ones).
_DIRECTED_WORDS = {
    ("usage", "lower"): ("Uses the product less than retained customers", "Success team re-onboards the key features"),
    ("usage", "higher"): (
        "More web activity than retained customers",
        "Success team asks what they came for (help, billing or cancel pages)",
    ),
    ("marketing", "lower"): ("Less marketing engagement than retained customers", "Move to a relevant nurture track"),
    ("marketing", "higher"): (
        "More marketing engagement than retained customers",
        "Check the messages they open; move to a relevant nurture track",
    ),
    ("purchases", "lower"): ("Buys less than retained customers", "Review billing and offer annual pricing"),
    ("purchases", "higher"): ("Spends more than retained customers", "Account manager reviews value for money"),
    ("tenure", "lower"): ("Newer than retained customers", "Onboarding check-in for new customers"),
    ("tenure", "higher"): (
        "Longer-standing than retained customers",
        "Account manager's loyalty check-in: review usage and renewal terms",
    ),
}


def _directed(d: Driver, direction: str | None) -> Driver:
    words = _DIRECTED_WORDS.get((d.group, direction or ""))
    return d if words is None else Driver(d.group, words[0], d.department, words[1], d.signal)


def _main_spec(model: ChurnModel, group: str) -> tuple[str | None, object, str | None]:
    """A driver group's main feature, the typical retained customer's value of it, and the side on
    which risk rises (declared, else learned from the training data; None for a category or when
    neither tells). A model saved before ``reason_baseline`` existed compares with its typical
    training customer and shows no number whose side is not declared."""
    feature, side = main_feature(group, model.groups()[group])
    if feature is None:
        return None, None, None
    baseline = (getattr(model, "reason_baseline", None) or {}).get(feature)
    if baseline is None:
        reference, learned = model.reference.get(feature), None
    else:
        reference, learned = baseline.get("reference"), baseline.get("learned")
    if feature in model.categorical:
        return feature, reference, None
    return feature, reference, side or learned


def _plain(v):
    """A feature value as JSON holds it: float, str or None (NaN and missing are None)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return float(v)
    if isinstance(v, int | float | np.integer | np.floating):
        return None if np.isnan(float(v)) else float(v)
    return str(v)


def _on_risky_side(group: str, feature: str | None, value, reference, direction: str | None, categorical: bool) -> bool:
    """Is the customer's value strictly on the side of the retained customers' typical value where
    risk rises? Missing values and unknown sides are not."""
    if feature is None or value is None or reference is None:
        return False
    if categorical:
        return str(value) != str(reference)
    if direction == "higher":
        risky = value > reference
    elif direction == "lower":
        risky = value < reference
    else:
        return False
    if group in _SIGNAL_GROUPS:
        if feature.startswith("days_since_"):
            risky = risky and value < AGE_CAP_DAYS  # the cap means never
        elif group == "satisfaction":
            risky = risky and value <= signals.COMPLAINT_MAX_SATISFACTION
        else:  # a count of a signal: none on record is never a reason
            risky = risky and value > 0
    return bool(risky)


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


def _detail(
    group: str, row: dict, cols: list[str], *, feature: str | None = None, reference=None, direction: str | None = None
) -> str:
    """Words for the customer's own values of a driver ("most recently 3 days ago", "2 in 90 days") and, but
    for an intent signal, how the main ``feature`` compares with the typical retained customer's
    value; ``row`` maps feature names to the customer's values, ``cols`` are the driver group's
    features."""
    own = _own_words(group, row, cols)
    if group in _INTENT_DRIVERS or feature is None or reference is None:
        return own
    value = _plain(row.get(feature))
    own = own or _feature_words(feature, value)
    than = {"higher": "more than", "lower": "less than"}.get(direction or "", "unlike")
    return f"{own}; {than} a typical retained customer ({_feature_words(feature, _plain(reference))})"


# how a feature's value reads ("{} web visits in 30 days")
_FEATURE_WORDS = {
    "web_events_30d": "{:,.0f} web visits in 30 days",
    "web_events_90d": "{:,.0f} web visits in 90 days",
    "web_events": "{:,.0f} web visits in all",
    "marketing_engaged_90d": "{:,.0f} marketing opens or clicks in 90 days",
    "marketing_touches_90d": "{:,.0f} marketing messages in 90 days",
    "revenue_90d": "{:,.0f} revenue in 90 days",
    "purchases_90d": "{:,.0f} purchases in 90 days",
    "mrr": "MRR {:,.0f}",
    "revenue": "{:,.0f} revenue in all",
    "contacts_90d": "{:,.0f} contacts in 90 days",
    "contacts_30d": "{:,.0f} contacts in 30 days",
    "contacts": "{:,.0f} contacts in all",
    "open_tickets": "{:,.0f} open tickets",
    "ended_subscriptions": "{:,.0f} ended subscriptions",
    "consent_marketing": "consent {:.0f} (1 = yes)",
    "checkout_errors_30d": "{:,.0f} in 30 days",
    "checkout_errors": "{:,.0f} in all",
    "failed_payments_90d": "{:,.0f} in 90 days",
    "failed_payments_30d": "{:,.0f} in 30 days",
    "failed_payments": "{:,.0f} in all",
    "repeat_contacts_90d": "{:,.0f} in 90 days",
    "repeat_contacts": "{:,.0f} in all",
    "transferred_contacts_90d": "{:,.0f} transferred contacts in 90 days",
    "transfers": "{:,.0f} transfers in all",
}


def _feature_words(feature: str, v) -> str:
    """One feature value in words: months of tenure, days ago, a rating, a count."""
    if v is None:
        return "none recorded"
    if isinstance(v, str):
        return "none recorded" if v == MISSING_CATEGORY else v
    if feature == "tenure_days":
        return f"{v / 30.44:.0f} months"
    if feature.startswith("days_since_"):
        if v >= AGE_CAP_DAYS:
            return "none in a year"
        return "today" if v < 1 else ("yesterday" if v < 2 else f"{int(v)} days ago")
    if feature.startswith("satisfaction"):
        return f"lowest rating {v:.3g}" if feature == "satisfaction_min" else f"average rating {v:.3g}"
    if feature in _FEATURE_WORDS:
        return _FEATURE_WORDS[feature].format(v)
    return f"{v:,.4g}"


def _own_words(group: str, row: dict, cols: list[str]) -> str:
    def age(col):
        v = row.get(col)
        if v is None or pd.isna(v) or v >= AGE_CAP_DAYS:
            return None
        # whole days elapsed, as the card's signals
        return "today" if v < 1 else ("yesterday" if v < 2 else f"{int(v)} days ago")

    if group in _INTENT_DRIVERS:
        a = age(f"days_since_{group}")
        n = row.get(f"{group}_30d")
        if a:
            return f"most recently {a}" + (f", {n:.0f}× in 30 days" if n and not pd.isna(n) and n > 1 else "")
        return "not recently"
    counts = {
        "checkout_errors": ("checkout_errors_30d", "days_since_checkout_errors", "in 30 days"),
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
            parts.append(f"most recently {a}")
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
        return f"{v:.0f} web visit{'' if v == 1 else 's'} in 30 days" if v is not None and not pd.isna(v) else ""
    if group == "satisfaction":
        v = row.get("satisfaction_min")
        return f"lowest rating {v:.0f}" if v is not None and not pd.isna(v) else ""
    if len(cols) == 1:
        v = _plain(row[cols[0]])
        return "" if v is None else _feature_words(cols[0], v)
    return ""


@_few_threads
def score_frame(
    model: ChurnModel, ff: FeatureFrame, *, reasons_for: int | None = None, seen: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Risk, value, reasons and next action per customer of a feature snapshot.

    ``seen``: the customers' recent strong signals (``cx_id, signal, age_days``, as
    ``cxdash.risk.card.row_signals`` gives them); without it they are read from the snapshot's
    ``days_since_<intent signal>`` features. The next action follows ``cxdash.risk.next_action``.
    Out (sorted by priority = risk x value, highest first; by risk when no value is known):
    ``cx_id, customer_id, risk, value, priority, reasons`` (list of dicts, see ``explain``),
    ``top_reason, department, action``. ``reasons_for`` limits the (slower) explanation to the
    riskiest rows.
    """
    from cxdash.risk.next_action import next_action

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
    by_customer = _seen_by_customer(frame, seen)
    nexts = [next_action(by_customer.get(cx, ()), r) for cx, r in zip(out["cx_id"], reasons, strict=True)]
    out["department"] = [a["department"] for a in nexts]
    out["action"] = [a["action"] for a in nexts]
    return out


def _seen_by_customer(frame: pd.DataFrame, seen: pd.DataFrame | None) -> dict[str, list[tuple[str, float]]]:
    """``cx_id -> [(signal, age_days)]``: from ``seen`` when given, else from the snapshot's
    intent-signal ages (a signal older than ``AGE_CAP_DAYS`` is none)."""
    out: dict[str, list[tuple[str, float]]] = {}
    if seen is not None:
        for cx, name, age in zip(seen["cx_id"].astype(str), seen["signal"], seen["age_days"], strict=True):
            out.setdefault(cx, []).append((name, float(age)))
        return out
    for stem in _INTENT_DRIVERS:
        col = f"days_since_{stem}"
        if col not in frame:
            continue
        ages = frame[col]
        hit = ages.notna() & (ages < AGE_CAP_DAYS)
        for cx, age in zip(frame.index[hit].astype(str), ages[hit], strict=True):
            out.setdefault(cx, []).append((stem, float(age)))
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
            "No churn model has been trained yet. Train one on the Churn model page or with `python -m cxdash train`."
        )
    return load_model(store, int(version))


# ----------------------------------------------------------------------------- one call for the CLI and the page
def _has_subscriptions(conn: Connection) -> bool:
    from cxdash.store.database import KIND_TABLES

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
    from cxdash.risk.activation import store_scores
    from cxdash.store.version import data_version

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
                    "with a churn label, subscriptions, churn records, or dated purchases or activity"
                )
            if definition.basis == "label" and not res.dated:
                label_column, source = "churn_label", source or definition.source
        if label_column is not None:
            model = train_labelled_model(conn, label_column=label_column, source=source, progress=sub(0.0, 0.8))
        else:
            reader_definition = _reader_definition(definition.name)
            # read the customer table once for both
            reader = SnapshotReader(conn, source=source, churn=reader_definition)
            model = train_event_model(
                conn,
                cutoff=cutoff,
                horizon_days=horizon_days,
                source=source,
                progress=sub(0.0, 0.8),
                reader=reader,
                churn=reader_definition,
            )
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
            sa.select(
                t.c.version,
                t.c.created_at,
                t.c.kind,
                t.c.estimator,
                t.c.label_column,
                t.c.source,
                t.c.cutoff,
                t.c.horizon_days,
                t.c.data_version,
                t.c.metrics_json,
                t.c.features_json,
            ).order_by(t.c.version.desc())
        ).fetchall()
    frame = pd.DataFrame(
        rows,
        columns=[
            "version",
            "created_at",
            "kind",
            "estimator",
            "label_column",
            "source",
            "cutoff",
            "horizon_days",
            "data_version",
            "metrics_json",
            "features_json",
        ],
    )
    frame["metrics"] = frame.pop("metrics_json").map(json.loads)
    frame["features"] = frame.pop("features_json").map(json.loads)
    return frame
