"""The churn model's report holds: choice and calibration on one part, figures on a held-out part
that neither saw, recomputed here with sklearn.metrics; too little churn saves no model; a model
fitted with other library versions is refused with both versions named."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sklearn
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from streamlit.testing.v1 import AppTest

from cxdash.cli import main as cli
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.risk import (
    ModelVersionError,
    NotEnoughChurnError,
    SnapshotReader,
    labelled_features,
    latest_model,
    load_model,
    model_versions,
)
from cxdash.risk.estimator import candidate_pipeline
from cxdash.risk.evaluation import weighted_roc_auc
from cxdash.risk.training import train, train_labelled_model
from cxdash.store.database import models_table, open_store
from tests.test_risk_pages import PAGES


def _accounts(tmp_path, *, n: int, churned: int, seed: int = 0):
    """A customer table with its own yes/no label: ``churned`` of ``n`` customers left, monthly
    contracts and short tenures more often. Returns (csv path, mapping, frame)."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["monthly", "yearly"], n)
    tenure = rng.integers(1, 60, n)
    risk = (contract == "monthly") * 2.0 - 0.03 * tenure + rng.normal(0, 1, n)
    churn = np.full(n, "No", dtype=object)
    churn[np.argsort(-risk, kind="stable")[:churned]] = "Yes"
    frame = pd.DataFrame(
        {
            "AccountNo": [f"A{i:05d}" for i in range(n)],
            "Contract": contract,
            "tenure": tenure,
            "Seats": rng.integers(1, 50, n),
            "Churn": churn,
        }
    )
    path = tmp_path / "accounts.csv"
    frame.to_csv(path, index=False)
    mapping = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "AccountNo", "plan": "Contract"}})
    return path, mapping, frame


def _model_count(url: str) -> int:
    s = open_store(url)
    try:
        with s.app_begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(models_table)).scalar())
    finally:
        s.dispose()


# ----------------------------------------------------------------------------- too little churn
def test_a_label_with_under_20_churned_customers_saves_no_model_and_the_cli_exits_non_zero(tmp_path, capsys):
    path, mapping, _frame = _accounts(tmp_path, n=400, churned=15)
    url = f"duckdb:///{tmp_path / 'few.duckdb'}"
    s = open_store(url)
    ingest_file(s, path, source="accounts", mapping=mapping)
    with pytest.raises(NotEnoughChurnError) as caught:
        train(s, label_column="Churn", source="accounts")
    s.dispose()
    err = caught.value
    assert (err.found, err.customers, err.needed) == (15, 400, 20)
    text = str(err)
    assert "Only 15 churned customers" in text and "400 labelled customers" in text
    assert "python -m cxdash churn" in text and "another churn definition" in text and "no model" in text
    assert _model_count(url) == 0

    assert cli.main(["--db", url, "train", "--label-column", "Churn", "--source", "accounts", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no JSON for a model that does not exist
    assert "Only 15 churned customers" in captured.err and "python -m cxdash churn" in captured.err
    assert _model_count(url) == 0


def test_a_label_whose_held_out_part_holds_under_20_churned_customers_is_refused_before_fitting(tmp_path):
    # 50 churned: the stratified 30% held out holds 15 of them
    path, mapping, _ = _accounts(tmp_path, n=500, churned=50)
    s = open_store(f"duckdb:///{tmp_path / 'fifty.duckdb'}")
    ingest_file(s, path, source="accounts", mapping=mapping)
    with s.connect() as conn, pytest.raises(NotEnoughChurnError) as caught:
        train_labelled_model(conn, label_column="Churn")
    s.dispose()
    assert caught.value.part == "held-out validation"
    assert (caught.value.found, caught.value.customers) == (15, 150)  # 30% of 50 and of 500
    assert "Only 15 churned customers in the held-out validation (150 held-out customers)" in str(caught.value)


def _quiet_subscriptions(store, tmp_path) -> None:
    """200 subscribers; 40 left during 2025, 3 in the last two months before 1 Jan 2026 (the data's end)."""
    n = 200
    ends = [""] * n
    for i in range(40):
        ends[i] = (datetime(2025, 1, 10) + timedelta(days=7 * i)).strftime("%Y-%m-%d")
    ends[40], ends[41], ends[42] = "2025-11-17", "2025-11-22", "2025-12-22"  # 45, 40 and 10 days before the end
    crm = pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "signup_date": "2023-06-01",
            "plan": np.where(np.arange(n) % 3 == 0, "pro", "basic"),
        }
    )
    subs = pd.DataFrame(
        {
            "subscription_id": [f"S{i:03d}" for i in range(n)],
            "customer_id": crm["customer_id"],
            "start": "2023-06-01",
            "end": ends,
        }
    )
    web = pd.DataFrame({"customer_id": ["C199"], "timestamp": ["2026-01-01 00:00:00"], "activity": ["home"]})
    for name, kind, frame in (("crm", "customers", crm), ("subs", "subscriptions", subs), ("web", "events", web)):
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        ingest_file(
            store, path, source=name, mapping=Mapping.from_dict({"kind": kind, "columns": {c: c for c in frame}})
        )


def test_dated_churn_with_3_leavers_in_the_held_out_snapshots_is_refused_with_counts_and_what_to_try(tmp_path, capsys):
    url = f"duckdb:///{tmp_path / 'quiet.duckdb'}"
    s = open_store(url)
    _quiet_subscriptions(s, tmp_path)
    s.dispose()
    assert cli.main(["--db", url, "train"]) == 1
    err = capsys.readouterr().err
    # held-out cutoffs 2 Dec and 2 Nov 2025 (the end minus one and two 30-day horizons): on 2 Nov, 200 - 40
    # customers are live and the two who leave in November churn; on 2 Dec 158 are live and one churns
    assert (
        "Only 3 churned customers in the held-out validation (318 customer-snapshots as of 2025-11-02, "
        "2025-12-02, churn within 30 days)" in err
    )
    assert "a longer horizon than 30 days" in err and "python -m cxdash churn" in err and "more history" in err
    assert _model_count(url) == 0


# ----------------------------------------------------------------------------- the report holds (events)
def test_demo_held_out_figures_equal_sklearn_on_the_snapshots_the_report_names(trained_demo):
    model = trained_demo["model"]
    m = model.metrics
    s = open_store(trained_demo["url"])
    with s.connect() as conn:
        reader = SnapshotReader(conn)  # the demo's churn is its subscriptions' ends
        rows = pd.concat(
            [
                reader.features(pd.Timestamp(c).to_pydatetime(), horizon_days=m["horizon_days"]).frame
                for c in m["valid_cutoffs"]
            ]
        )
    s.dispose()
    assert m["valid_samples"] == [None, None]  # every customer of each held-out snapshot
    y = rows["label"].to_numpy(dtype=int)
    p = model.predict_proba(rows)
    assert (m["n_valid"], m["n_positive_valid"], m["valid_customers"]) == (len(rows), y.sum(), rows.index.nunique())
    assert m["n_positive_valid"] >= 20
    assert m["base_rate"] == pytest.approx(y.mean())
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    # top decile by hand: every row scoring at least the ceil(10%)-th highest risk
    k = int(np.ceil(len(p) / 10))
    top = pd.Series(p) >= pd.Series(p).nlargest(k).min()
    assert (m["top_decile_n"], m["top_decile_positive"]) == (top.sum(), y[top.to_numpy()].sum())
    assert m["top_decile_lift"] == pytest.approx(y[top.to_numpy()].mean() / y.mean())
    assert m["top_decile_capture"] == pytest.approx(y[top.to_numpy()].sum() / y.sum())
    # the bootstrap interval holds the estimate and is about as wide as Hanley & McNeil's normal interval
    a, n1, n0 = m["roc_auc"], y.sum(), len(y) - y.sum()
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    assert m["roc_auc_ci_low"] < a < m["roc_auc_ci_high"]
    assert 0.6 < (m["roc_auc_ci_high"] - m["roc_auc_ci_low"]) / (2 * 1.96 * se) < 1.6
    assert "bootstrap" in m["roc_auc_ci_method"] and m["roc_auc_ci_resamples"] == 1000


def test_demo_choice_and_calibration_used_only_snapshots_before_the_held_out_ones(trained_demo):
    from cxdash.risk.model import logit

    model = trained_demo["model"]
    m = model.metrics
    h = pd.Timedelta(days=m["horizon_days"])
    train_c, select_c, valid_c = (
        [pd.Timestamp(c) for c in m[k]] for k in ("train_cutoffs", "select_cutoffs", "valid_cutoffs")
    )
    # each part's labels (cutoff, cutoff + horizon] end before the next part begins
    assert max(train_c) + h <= min(select_c) and max(select_c) + h <= min(valid_c)
    assert not set(select_c) & set(valid_c) and not set(train_c) & set(valid_c)
    s = open_store(trained_demo["url"])
    with s.connect() as conn:
        reader = SnapshotReader(conn)
        select = pd.concat([reader.features(c.to_pydatetime(), horizon_days=m["horizon_days"]).frame for c in select_c])
    s.dispose()
    y = select["label"].to_numpy(dtype=int)
    raw = model.estimator.predict_proba(model._x(select))[:, 1]
    assert (m["n_select"], m["n_positive_select"]) == (len(select), y.sum())
    # the chosen candidate's score is its ROC AUC on the selection snapshots, and the best of them
    assert m["candidates"][m["chosen"]] == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    assert m["candidates"][m["chosen"]] == max(m["candidates"].values())
    # the calibration is a logistic fit of the selection snapshots' raw log-odds, not of the held-out ones
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logit(raw).reshape(-1, 1), y)
    assert model.calibration.a_ == pytest.approx(platt.coef_[0, 0], rel=1e-3)
    assert model.calibration.b_ == pytest.approx(platt.intercept_[0], rel=1e-3)


# ----------------------------------------------------------------------------- the report holds (label)
def test_labelled_held_out_customers_are_stratified_never_fitted_on_and_scored_as_reported(tmp_path):
    path, mapping, _frame = _accounts(tmp_path, n=600, churned=120)
    s = open_store(f"duckdb:///{tmp_path / 'lab.duckdb'}")
    ingest_file(s, path, source="accounts", mapping=mapping)
    with s.connect() as conn:
        model = train_labelled_model(conn, label_column="Churn", candidates=("logistic", "gradient_boosting"))
        ff = labelled_features(conn, label_column="Churn")
    s.dispose()
    m = model.metrics
    held = ff.frame.loc[model.held_out_ids]
    rest = ff.frame.drop(index=model.held_out_ids)
    assert len(held) == 180 and held.index.is_unique and not set(held.index) & set(rest.index)
    assert held["label"].sum() == 36  # stratified: 30% of the 120 who left
    y = held["label"].to_numpy(dtype=int)
    p = model.predict_proba(held)
    assert (m["n_valid"], m["n_positive_valid"], m["n_train"]) == (180, 36, 420)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["base_rate"] == pytest.approx(0.2)
    # the saved estimator is the chosen candidate fitted on the other 420 customers only
    refit = candidate_pipeline(model.name, model.numeric, model.categorical).fit(
        rest[model.features], rest["label"].to_numpy(dtype=int)
    )
    np.testing.assert_allclose(
        refit.predict_proba(model._x(held))[:, 1], model.estimator.predict_proba(model._x(held))[:, 1]
    )


def test_the_bootstraps_weighted_auc_equals_sklearns_with_sample_weights_on_tied_scores():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500), 1)  # many ties
    for _ in range(5):
        w = rng.integers(0, 3, 500).astype(float)
        assert weighted_roc_auc(y, p, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)


# ----------------------------------------------------------------------------- library versions
def _trained_labelled_store(tmp_path) -> str:
    path, mapping, _ = _accounts(tmp_path, n=400, churned=100)
    url = f"duckdb:///{tmp_path / 'versions.duckdb'}"
    s = open_store(url)
    ingest_file(s, path, source="accounts", mapping=mapping)
    train(s, label_column="Churn", source="accounts")
    s.dispose()
    return url


def _rewrite_saved_versions(url: str, *, corrupt_blob: bool = False, **versions) -> None:
    s = open_store(url)
    with s.app_begin() as conn:
        metrics = json.loads(conn.execute(sa.select(models_table.c.metrics_json)).scalar())
        metrics["fitted_with"].update(versions)
        values = {"metrics_json": json.dumps(metrics)}
        if corrupt_blob:
            values["pipeline"] = b"not a pickle"
        conn.execute(models_table.update().values(**values))
    s.dispose()


def test_a_model_fitted_with_another_scikit_learn_is_refused_naming_both_versions(tmp_path, capsys):
    url = _trained_labelled_store(tmp_path)
    s = open_store(url)
    saved = model_versions(s)["metrics"].iloc[0]["fitted_with"]
    assert saved["scikit-learn"] == sklearn.__version__ and saved["numpy"] == np.__version__
    assert saved["pandas"] == pd.__version__ and "python" in saved
    assert latest_model(s).version == 1  # the same versions load
    s.dispose()

    # the check reads the registry row before unpickling: a blob that would not even unpickle is not touched
    _rewrite_saved_versions(url, corrupt_blob=True, **{"scikit-learn": "0.20.4"})
    s = open_store(url)
    for load in (lambda: load_model(s, 1), lambda: latest_model(s)):
        with pytest.raises(ModelVersionError) as caught:
            load()
        text = str(caught.value)
        assert "scikit-learn 0.20.4" in text and f"scikit-learn {sklearn.__version__}" in text
        assert "Retrain" in text and "numpy" not in text  # only what differs
    s.dispose()
    assert cli.main(["--db", url, "score", "--rescore"]) == 1
    assert "scikit-learn 0.20.4" in capsys.readouterr().err


def test_another_python_patch_release_still_loads_but_another_minor_release_does_not(tmp_path):
    import platform

    url = _trained_labelled_store(tmp_path)
    major, minor, _ = platform.python_version_tuple()
    _rewrite_saved_versions(url, python=f"{major}.{minor}.999")
    s = open_store(url)
    assert load_model(s, 1).version == 1
    s.dispose()
    _rewrite_saved_versions(url, python=f"{major}.{int(minor) + 1}.0")
    s = open_store(url)
    with pytest.raises(ModelVersionError, match=f"python {major}.{int(minor) + 1}.0"):
        load_model(s, 1)
    s.dispose()


# ----------------------------------------------------------------------------- the Churn model page
def _page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = AppTest.from_file(str(PAGES / "model.py"), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_model_page_shows_the_held_out_counts_interval_and_base_rate(trained_demo, monkeypatch):
    m = trained_demo["model"].metrics
    at = _page(trained_demo["url"], monkeypatch)
    tiles = {x.label: x.value for x in at.metric}
    assert tiles["Held-out churned"] == f"{m['n_positive_valid']:,}"
    assert tiles["ROC AUC"] == f"{m['roc_auc']:.3f}"
    captions = " ".join(c.value for c in at.caption)
    assert f"95% interval {m['roc_auc_ci_low']:.3f}–{m['roc_auc_ci_high']:.3f}" in captions
    assert f"of {m['n_valid']:,} held-out rows: base rate {m['base_rate']:.1%}" in captions
    assert f"random ranking: {m['base_rate']:.3f}" in captions
    assert f"{m['top_decile_positive']:,} churned among the riskiest {m['top_decile_n']:,}" in captions
    assert not at.warning or all("fitted with" not in w.value for w in at.warning)


def test_model_page_says_in_words_that_too_little_churn_saved_no_model(tmp_path, monkeypatch):
    path, mapping, _ = _accounts(tmp_path, n=400, churned=15)
    url = f"duckdb:///{tmp_path / 'page_few.duckdb'}"
    s = open_store(url)
    ingest_file(s, path, source="accounts", mapping=mapping)
    s.dispose()
    at = _page(url, monkeypatch)
    at.selectbox(key="model_label").set_value("Churn")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    error = at.error[0].value
    assert "Too little churn" in error and "no model was saved" in error and "Only 15 churned customers" in error
    assert "Traceback" not in error and _model_count(url) == 0


def test_model_page_warns_when_the_model_was_fitted_with_other_library_versions(trained_demo, tmp_path, monkeypatch):
    path = tmp_path / "old_versions.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    _rewrite_saved_versions(url, numpy="1.26.4")
    at = _page(url, monkeypatch)
    warned = " ".join(w.value for w in at.warning)
    assert "numpy 1\\.26\\.4" in warned and f"numpy {np.__version__}".replace(".", "\\.") in warned
    assert "Retrain" in warned
