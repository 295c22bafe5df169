"""After an append, the customers it touched are scored again (issue 17: activation latency).

The expected figures come from a full snapshot of the whole store (``current_features`` +
``score_frame``, what ``python -m cxdash score`` stores), computed here beside the partial rescore.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import rescore_touched
from cxdash.risk import at_risk, current_features, data_as_of, latest_model, rescore_customers, score_frame
from cxdash.risk.scoring import renumber_scores
from cxdash.store.database import bulk_insert, customer_keys_table, open_store, scores_table

REPO = Path(__file__).resolve().parents[1]
WEB = {
    "kind": "events",
    "columns": {
        "visitor_id": "cookie_id",
        "email": "user_email",
        "timestamp": "event_time",
        "activity": "event_name",
        "case_id": "session_id",
    },
}


@pytest.fixture
def trained(trained_demo, tmp_path):
    path = tmp_path / "rescore.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    store = open_store(f"duckdb:///{path}")
    yield store
    store.dispose()


def _scores(store) -> pd.DataFrame:
    with store.app_begin() as conn:
        rows = conn.execute(sa.select(scores_table)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows]).set_index("cx_id")


def _full_scores(store, model) -> pd.DataFrame:
    """What a full scoring would store now, for every customer (the reference)."""
    from cxdash.risk.recent import row_signals
    from cxdash.risk.scoring import RECENT_SIGNAL_DAYS, _strong_signals

    with store.connect() as conn:
        ff = current_features(conn, model)
        seen = row_signals(conn, names=_strong_signals(), since_days=RECENT_SIGNAL_DAYS)
    return score_frame(model, ff, seen=seen).set_index("cx_id")


def _keys_of(store, cx_ids) -> list[int]:
    with store.connect() as conn:
        q = sa.select(customer_keys_table.c.cx_key).where(customer_keys_table.c.cx_id.in_(list(cx_ids)))
        return [int(k) for k in conn.execute(q).scalars()]


def _append_signal(store, email: str, when, tmp_path, name: str = "cancel_page"):
    path = tmp_path / "signal.csv"
    path.write_text(
        "cookie_id,user_email,event_time,event_name,session_id\n"
        f"test-cookie-1,{email},{when:%Y-%m-%d %H:%M:%S},{name},test-s1\n"
    )
    return ingest_file(store, path, source="web", mode="append", mapping=Mapping.from_dict(WEB))


def test_a_partial_rescore_gives_the_customers_exactly_what_a_full_scoring_gives_them(trained):
    """Attributes typed by the model, not by the few rows read: the same risk, value, priority,
    reasons and action as the whole snapshot gives the same customers."""
    model = latest_model(trained)
    full = _full_scores(trained, model)
    rng = np.random.default_rng(7)
    chosen = list(rng.choice(full.index.to_numpy(), size=40, replace=False))
    report = rescore_customers(trained, model, _keys_of(trained, chosen))
    assert report == {"customers": 40, "scored": 40, "removed": 0}
    got = _scores(trained).loc[chosen]
    want = full.loc[chosen]
    np.testing.assert_allclose(got["risk"].to_numpy(), want["risk"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(got["priority"].to_numpy(), want["priority"].to_numpy(), rtol=1e-9)
    assert list(got["action"]) == list(want["action"])
    assert list(got["department"]) == list(want["department"])
    assert [json.loads(t) for t in got["reasons_json"]] == [json.loads(json.dumps(r)) for r in want["reasons"]]


def test_an_appended_cancel_page_visit_reaches_the_at_risk_list_ranked_among_everyone(trained, tmp_path):
    model = latest_model(trained)
    before = _scores(trained)
    # a customer in the middle of the list, with an email the web source can match
    with trained.connect() as conn:
        end = data_as_of(conn)
        emails = pd.DataFrame(
            conn.execute(
                sa.text(
                    "select k.cx_id, min(c.email) as email from src_customers c "
                    "join customer_keys k on k.cx_key = c.cx_key where c.email is not null group by k.cx_id"
                )
            ).fetchall(),
            columns=["cx_id", "email"],
        ).set_index("cx_id")
    listed = before.join(emails, how="inner").sort_values("position")
    target = listed.iloc[len(listed) // 2]
    cx_id = target.name
    result = _append_signal(trained, target["email"], end.replace(microsecond=0), tmp_path)
    assert result.rows_loaded == 1

    report = rescore_touched(trained, (result.load_id,))
    assert report["rescored"] is True, report
    assert (report["customers"], report["scored"], report["removed"]) == (1, 1, 0)
    assert report["model_version"] == model.version

    after = _scores(trained)
    # only the touched customer was scored again
    assert after.loc[cx_id, "scored_at"] > before.loc[cx_id, "scored_at"]
    others = after.drop(index=cx_id)
    assert (others["scored_at"] == before.drop(index=cx_id)["scored_at"]).all()
    np.testing.assert_allclose(others["risk"], before.drop(index=cx_id).loc[others.index, "risk"])
    # its figures are what a full scoring gives it now, signal included
    full = _full_scores(trained, model)
    assert after.loc[cx_id, "risk"] == pytest.approx(full.loc[cx_id, "risk"], rel=1e-9)
    assert after.loc[cx_id, "action"] == full.loc[cx_id, "action"]
    assert after.loc[cx_id, "risk"] > before.loc[cx_id, "risk"]
    assert "cancel" in (after.loc[cx_id, "action"] + after.loc[cx_id, "top_reason"]).lower()
    # the list is numbered 1..n again, in priority order (ties by risk, then id)
    assert sorted(after["position"]) == list(range(1, len(after) + 1))
    order = after.reset_index().sort_values(
        ["priority", "risk", "cx_id"], ascending=[False, False, True], kind="stable"
    )
    assert list(order["position"]) == list(range(1, len(after) + 1))
    # and the at-risk list reads it at its new place
    top = at_risk(trained, only_top_decile=False, limit=len(after))
    assert int(top.index[top["cx_id"] == cx_id][0]) + 1 == after.loc[cx_id, "position"]


def test_a_churn_record_takes_the_customer_off_the_list(trained, tmp_path):
    before = _scores(trained)
    cx_id = before.sort_values("position").index[0]
    with trained.connect() as conn:
        customer_id = conn.execute(
            sa.text(
                "select min(c.customer_id) from src_customers c join customer_keys k on k.cx_key = c.cx_key "
                "where k.cx_id = :cx"
            ),
            {"cx": cx_id},
        ).scalar()
        end = data_as_of(conn)
    path = tmp_path / "churn.csv"
    path.write_text(f"customer_id,churned_at,reason\n{customer_id},{end - timedelta(days=1):%Y-%m-%d},price\n")
    mapping = Mapping.from_dict(
        {"kind": "churn", "columns": {"customer_id": "customer_id", "churned_at": "churned_at", "reason": "reason"}}
    )
    result = ingest_file(trained, path, source="churn", mode="append", mapping=mapping)
    assert result.rows_loaded == 1
    report = rescore_touched(trained, (result.load_id,))
    model = latest_model(trained)
    full = _full_scores(trained, model)
    after = _scores(trained)
    # the reference decides whether the record ends the customer under the model's definition
    assert (cx_id in after.index) == (cx_id in full.index)
    assert report["removed"] == (0 if cx_id in full.index else 1)
    assert sorted(after["position"]) == list(range(1, len(after) + 1))


def test_a_rescore_declines_in_words_when_it_would_mix_what_it_should_not(trained, tmp_path):
    with trained.connect() as conn:
        end = data_as_of(conn)
    result = _append_signal(trained, "nobody@example.invalid", end, tmp_path)
    # a visitor nobody knows: nothing to rescore, and that is said
    report = rescore_touched(trained, (result.load_id,))
    assert report["rescored"] and report["customers"] == 0

    # a list from an older model than the newest
    with trained.app_begin() as conn:
        conn.execute(scores_table.update().values(model_version=scores_table.c.model_version - 1))
    report = rescore_touched(trained, (result.load_id,))
    assert report["rescored"] is False and "not the newest" in report["why"]

    # no list at all
    with trained.app_begin() as conn:
        conn.execute(scores_table.delete())
    report = rescore_touched(trained, (result.load_id,))
    assert report["rescored"] is False and "has not scored" in report["why"]


def test_a_replace_load_is_not_rescored_in_part(trained, tmp_path):
    with trained.connect() as conn:
        end = data_as_of(conn)
    path = tmp_path / "replace.csv"
    path.write_text(f"cookie_id,user_email,event_time,event_name,session_id\nc1,a@b.example,{end},home,s1\n")
    result = ingest_file(trained, path, source="web2", mode="replace", mapping=Mapping.from_dict(WEB))
    report = rescore_touched(trained, (result.load_id,))
    assert report["rescored"] is False and "replaced" in report["why"]


@pytest.mark.postgres
def test_the_list_is_numbered_again_in_the_database_on_both_engines(store):
    """``renumber_scores`` on DuckDB and PostgreSQL: priority, then risk, highest first, ties by id;
    NULL priorities last; only rows whose place changed are written."""
    rows = pd.DataFrame(
        {
            "model_version": 1,
            "position": [0, 1, 2, 3, 4, 5],
            "cx_id": ["c", "a", "b", "d", "e", "f"],
            "customer_id": ["c", "a", "b", "d", "e", "f"],
            "risk": [0.5, 0.9, 0.9, 0.2, 0.7, 0.1],
            "value": [10.0, 0.0, 0.0, 100.0, np.nan, 1.0],
            "priority": [5.0, 0.0, 0.0, 20.0, np.nan, 0.1],
            "top_reason": "",
            "department": "support",
            "action": "call",
            "reasons_json": "[]",
            "scored_at": pd.Timestamp("2026-12-01"),
        }
    )
    with store.app_begin() as conn:
        bulk_insert(conn, scores_table, rows)
        moved = renumber_scores(conn)
        got = dict(conn.execute(sa.select(scores_table.c.cx_id, scores_table.c.position)).fetchall())
    want = {"d": 1, "c": 2, "f": 3, "a": 4, "b": 5, "e": 6}
    assert got == want
    assert moved == sum(1 for cx, pos in zip(rows["cx_id"], rows["position"], strict=True) if want[cx] != pos)


def test_the_cli_append_puts_the_signal_in_the_list_says_so_and_data_health_times_it(
    trained, tmp_path, capsys, monkeypatch
):
    from cxdash.cli.main import main
    from cxdash.jobs import activation_times

    before = _scores(trained)
    with trained.connect() as conn:
        end = data_as_of(conn)
        row = conn.execute(
            sa.text(
                "select k.cx_id, min(c.email) from src_customers c join customer_keys k on k.cx_key = c.cx_key "
                "where c.email is not null group by k.cx_id order by k.cx_id limit 1"
            )
        ).one()
    cx_id, email = row
    assert cx_id in before.index
    path = tmp_path / "signal.csv"
    path.write_text(
        "cookie_id,user_email,event_time,event_name,session_id\n"
        f"cli-cookie,{email},{end:%Y-%m-%d %H:%M:%S},cancel_page,cli-s1\n"
    )
    url = (
        trained.url.render_as_string(hide_password=False)
        if hasattr(trained.url, "render_as_string")
        else str(trained.url)
    )
    trained.dispose()
    assert main(["--db", url, "ingest", str(path), "--source", "web", "--mode", "append"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("at-risk list"))
    assert "1 customer(s) this load touched scored again with model v" in line

    store = open_store(url)
    try:
        after = _scores(store)
        assert after.loc[cx_id, "scored_at"] > before.loc[cx_id, "scored_at"]
        times = activation_times(store).set_index("source")
        web = times.loc["web"]
        assert web["customers"] == 1 and pd.isna(web["why"])
        # on the card when stored, in the list after: both measured from the load's start
        assert 0 <= web["card_seconds"] <= web["list_seconds"] < 600
        # the demo's own loads were made before any model: no row for them but web's newest
        assert list(times.index) == ["web"]
    finally:
        store.dispose()

    # Data health says it in words, with units, for the ops person
    from streamlit.testing.v1 import AppTest

    from tests.conftest import seed_session

    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = AppTest.from_file(str(REPO / "pages" / "data_health.py"), default_timeout=120)
    seed_session(at, "health-ops", "ops")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    sentence = next(t.value for t in at.text if t.value.startswith("New records reach the at-risk list"))
    assert re.fullmatch(
        r"New records reach the at-risk list within \d+(\.\d)? s of their load starting "
        r"\(slowest: web, load \d+\)\.",
        sentence,
    ), sentence
    table = next(d.value for d in at.dataframe if "in the at-risk list" in d.value.columns)
    row = table.set_index("source").loc["web"]
    assert re.fullmatch(r"\d+(\.\d)? s", row["on the card"]) and re.fullmatch(
        r"\d+(\.\d)? s", row["in the at-risk list"]
    )
    assert row["customers scored again"] == "1"


def test_an_upload_on_the_page_says_its_customers_were_scored_again(trained, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    with trained.connect() as conn:
        end = data_as_of(conn)
        email = conn.execute(sa.text("select min(email) from src_customers where email is not null")).scalar()
    url = trained.url
    trained.dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    body = (
        "cookie_id,user_email,event_time,event_name,session_id\n"
        f"page-cookie,{email},{end:%Y-%m-%d %H:%M:%S},cancel_page,page-s1\n"
    ).encode()
    at = AppTest.from_file(str(REPO / "pages" / "upload.py"), default_timeout=180).run()
    at.file_uploader(key="upload_files").upload("web.csv", body, "text/csv")
    at.run()
    at.button(key="upload_check").click().run()
    next(b for b in at.button if b.label.startswith("Load 1 row")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = "\n".join(t.value for t in at.text)
    assert re.search(
        r"^1 customer in this file was scored again: the at-risk list shows their new signals "
        r"\(\d+ s after the load began\)\.$",
        shown,
        re.M,
    ), shown


def test_a_customer_merged_into_a_touched_one_leaves_the_list(trained):
    """A merge by the load takes away a customer id: its row goes with the rescore of the customer it
    joined (the vanished id was the label of one of that customer's identifiers)."""
    from cxdash.store.database import identity_map_table

    model = latest_model(trained)
    before = _scores(trained)
    cx_id = before.sort_values("position").index[10]
    [key] = _keys_of(trained, [cx_id])
    with trained.connect() as conn:
        others = [
            k
            for k in conn.execute(
                sa.select(identity_map_table.c.id_key).where(identity_map_table.c.cx_key == key)
            ).scalars()
            if k != f"customer_id:{cx_id}"
        ]
    assert others, "the customer has identifiers besides its customer id"
    merged_away = others[0]  # as if this identifier had been another customer's best one before the load
    row = before.loc[[cx_id]].reset_index().assign(cx_id=merged_away, position=len(before) + 1)
    with trained.app_begin() as conn:
        bulk_insert(conn, scores_table, row)
    report = rescore_customers(trained, model, [key])
    after = _scores(trained)
    assert merged_away not in after.index
    assert cx_id in after.index
    assert report == {"customers": 1, "scored": 1, "removed": 1}
    assert sorted(after["position"]) == list(range(1, len(before) + 1))
