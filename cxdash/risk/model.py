"""The fitted churn model as it is stored and scored: ``ChurnModel``, its errors, the library versions.

A ``ChurnModel`` holds the fitted estimator (``cxdash.risk.estimator``), its calibration, the features
it reads and a typical training customer per feature; ``cxdash.risk.training`` builds one,
``cxdash.risk.persistence`` stores it, ``cxdash.risk.scoring`` and ``cxdash.risk.reasons`` use it.
Importing this module does not import scikit-learn (a stored model does when it is unpickled).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from cxdash.risk.attributes import MISSING_CATEGORY
from cxdash.risk.drivers import group_of

__all__ = [
    "MIN_CHURNED",
    "ChurnModel",
    "ModelNotTrainedError",
    "ModelVersionError",
    "NotEnoughChurnError",
    "few_threads",
    "fitted_with",
    "logit",
]

# Below this many churned customers a ROC AUC swings by more than 0.1 from one sample to the next
# (3 leavers in 1,714 once read 0.934 where the truth was 0.45): no model is saved.
MIN_CHURNED = 20


def few_threads(fn):
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


def fitted_with() -> dict[str, str]:
    """The running versions of python, scikit-learn, numpy and pandas: ``{name: version}``."""
    import sklearn  # here, not at the top: about 1 s, and only training and loading a model need it

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class ChurnModel:
    """A fitted, calibrated churn model with what is needed to score and explain new data."""

    estimator: object  # fitted Pipeline or BlendClassifier
    calibration: object  # fitted PlattCalibration (cxdash.risk.estimator)
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
    library_versions: dict = field(
        default_factory=fitted_with
    )  # what it was fitted with (``cxdash.risk.persistence.version_problem``)
    # a snapshot-only label: the cx_ids of the held-out customers its figures were measured on
    # (event models are evaluated on whole snapshots: ``metrics["valid_cutoffs"]``)
    held_out_ids: list[str] | None = None
    # per feature, the typical retained training customer and the side churners lean to
    # (``cxdash.risk.drivers.reason_baseline``); models saved before it existed have none (see ``cxdash.risk.reasons.explain``)
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
            out.setdefault(group_of(f), []).append(f)
        return out
