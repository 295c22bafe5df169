"""The candidate estimators: scikit-learn pipelines, their blend and the Platt calibration.

Candidates are ``Pipeline(ColumnTransformer, estimator)``: a logistic regression, a plain
``HistGradientBoostingClassifier``, a more regularised one and the average of the logistic and the
regularised booster (``CANDIDATES``). Probabilities are calibrated with a Platt (sigmoid) map
fitted on out-of-sample scores. This is the only risk module that builds scikit-learn estimators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from cxdash.risk.attributes import MISSING_CATEGORY
from cxdash.risk.model import logit

__all__ = ["BLEND_OF", "CANDIDATES", "BlendClassifier", "PlattCalibration", "as_text", "candidate_pipeline"]

CANDIDATES = ("logistic", "gradient_boosting", "gradient_boosting_regularised", "blend")
BLEND_OF = ("logistic", "gradient_boosting_regularised")
# HistGradientBoostingClassifier takes at most 255 categories per feature; rarer ones share one.
MAX_CATEGORIES = 255


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
        return BlendClassifier([candidate_pipeline(p, numeric, categorical) for p in BLEND_OF])
    raise ValueError(f"unknown candidate {name!r}; choose one of {CANDIDATES}")


class PlattCalibration:
    """Sigmoid map of a score's log-odds, fitted on out-of-sample scores (monotone)."""

    def fit(self, scores: np.ndarray, y: np.ndarray) -> PlattCalibration:
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit(scores).reshape(-1, 1), y)
        self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.a_ * logit(scores) + self.b_)))
