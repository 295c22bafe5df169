"""The risk package's shape: its light public API does not load scikit-learn, and a model pickled
when its classes lived in ``cxdash.model`` / ``cxdash.risk.model`` still loads after the split."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import sqlalchemy as sa

from cxdash.risk import ChurnModel, load_model, save_model
from cxdash.risk.estimator import BlendClassifier, PlattCalibration, candidate_pipeline
from cxdash.store.database import models_table, open_store


def test_importing_the_risk_api_loads_neither_sklearn_nor_pandera():
    code = (
        "import sys, cxdash.risk, cxdash.risk.next_action, cxdash.risk.scoring, cxdash.risk.persistence\n"
        "print(sorted(m for m in ('sklearn', 'pandera') if m in sys.modules))"
    )
    # a fresh interpreter: this one has both loaded already
    argv = [sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _small_model() -> tuple[ChurnModel, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "contacts_90d": rng.poisson(2, n).astype(float),
            "plan": rng.choice(["monthly", "yearly"], n),
        },
        index=pd.Index([f"C{i}" for i in range(n)], name="cx_id"),
    )
    y = ((frame["contacts_90d"] + (frame["plan"] == "monthly") * 2 + rng.normal(0, 1, n)) > 3).astype(int).to_numpy()
    estimator = candidate_pipeline("blend", ["contacts_90d"], ["plan"]).fit(frame, y)
    raw = estimator.predict_proba(frame)[:, 1]
    model = ChurnModel(
        estimator,
        PlattCalibration().fit(raw, y),
        ["contacts_90d"],
        ["plan"],
        {"contacts_90d": 2.0, "plan": "monthly"},
        kind="labelled",
        name="blend",
    )
    return model, frame


def test_a_model_pickled_under_the_old_module_names_still_loads(tmp_path):
    store = open_store(f"duckdb:///{tmp_path / 'm.duckdb'}")
    model, frame = _small_model()
    expected = model.predict_proba(frame)
    version = save_model(store, model, data_version=1)
    # protocol 3 names each class as text ("c<module>\n<name>\n"): write it as the app did before
    # the split, with the classes in cxdash.risk.model (and, older still, cxdash.model)
    for old in (b"cxdash.risk.model", b"cxdash.model"):
        blob = pickle.dumps(model, protocol=3)
        blob = blob.replace(b"ccxdash.risk.estimator\n", b"c" + old + b"\n").replace(
            b"ccxdash.risk.model\n", b"c" + old + b"\n"
        )
        assert b"cxdash.risk.estimator" not in blob
        assert blob.count(b"c" + old + b"\n") >= 4  # ChurnModel, BlendClassifier, PlattCalibration, as_text
        with store.app_begin() as conn:
            conn.execute(models_table.update().where(models_table.c.version == version).values(pipeline=blob))
        loaded = load_model(store, version)
        assert isinstance(loaded, ChurnModel)
        assert isinstance(loaded.estimator, BlendClassifier)
        assert isinstance(loaded.calibration, PlattCalibration)
        np.testing.assert_allclose(loaded.predict_proba(frame), expected)
    with store.app_begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(models_table)).scalar() == 1
    store.dispose()
