"""The models table: save a fitted model as the newest version, load one, list them.

Models are saved with the versions of python, scikit-learn, numpy and pandas they were fitted
with; ``load_model`` refuses one fitted with other versions (``ModelVersionError``) before
unpickling it. A model pickled before the risk package was split (its classes then lived in
``cxdash.model`` or ``cxdash.risk.model``) still loads: ``_MOVED`` says where each class went.
"""

from __future__ import annotations

import io
import json
import pickle
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from cxdash.risk.model import ChurnModel, ModelNotTrainedError, ModelVersionError, fitted_with
from cxdash.store.database import Store, models_table

__all__ = ["latest_model", "load_model", "model_versions", "save_model", "version_problem"]

# Where the classes and functions a pickled model refers to went when ``cxdash.model`` became
# ``cxdash.risk.model`` and then several modules: (old module, name) -> new module.
_OLD_HOMES = ("cxdash.model", "cxdash.risk.model")
_MOVED = {
    "ChurnModel": "cxdash.risk.model",
    "BlendClassifier": "cxdash.risk.estimator",
    "PlattCalibration": "cxdash.risk.estimator",
    "as_text": "cxdash.risk.estimator",
}


class _Unpickler(pickle.Unpickler):
    """Reads a stored model, finding the classes that moved in their new modules."""

    def find_class(self, module: str, name: str):
        if module in _OLD_HOMES and name in _MOVED:
            module = _MOVED[name]
        return super().find_class(module, name)


# ----------------------------------------------------------------------------- library versions
# What a pickled pipeline depends on. Python is compared on major.minor (pickles are stable across
# its patch releases); the libraries exactly (scikit-learn itself warns on any difference).
_VERSIONED = ("python", "scikit-learn", "numpy", "pandas")


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
    # written by save_model into our own store, with the same library versions (checked above)
    model = _Unpickler(io.BytesIO(row.pipeline)).load()
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
