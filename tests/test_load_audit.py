"""A load's ``upload`` audit entry commits with its data (issue 15, item 6).

Before, the entry was written after the summaries refresh, so a load killed (or failing) after
its commit had stored data with no ``upload`` entry. Now ``ingest_file(..., actor=...)`` writes the
entry as started before the load and marks it stored inside the load's transaction.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.cli.main import main
from cxdash.ingest.load import ingest_file
from cxdash.jobs import loads
from cxdash.store import audit
from cxdash.store.database import loads_table, open_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def crm_file(tmp_path) -> Path:
    path = tmp_path / "crm.csv"
    pd.DataFrame({"customer_id": ["a1", "a2", "a3"], "email": ["a@x.org", "b@x.org", "c@x.org"]}).to_csv(
        path, index=False
    )
    return path


def _uploads(url: str) -> list[dict]:
    store = open_store(url)
    try:
        log = audit.recent(store, action="upload")
    finally:
        store.dispose()
    return [{"actor": a, **json.loads(d)} for a, d in zip(log["actor"], log["detail"], strict=True)]


def _load_ids(url: str) -> list[int]:
    store = open_store(url)
    try:
        with store.connect() as conn:
            return [int(v) for v in conn.execute(sa.select(loads_table.c.load_id)).scalars()]
    finally:
        store.dispose()


def test_a_summaries_refresh_that_fails_after_the_load_still_leaves_the_upload_entry(tmp_path, crm_file, monkeypatch):
    url = f"duckdb:///{tmp_path / 'cx.duckdb'}"

    def broken_refresh(*_args, **_kwargs):
        raise RuntimeError("summaries refresh failed")

    monkeypatch.setattr(loads, "refresh", broken_refresh)  # what runs after the load
    code = main(["--db", url, "ingest", str(crm_file), "--source", "crm", "--kind", "customers"])
    assert code == 1  # the refresh failure is reported...
    entries = _uploads(url)
    assert len(entries) == 1  # ...but the load it followed is on the record
    entry = entries[0]
    assert entry["status"] == "stored" and entry["rows_loaded"] == 3 and entry["source"] == "crm"
    assert entry["file"] == "crm.csv" and entry["actor"].startswith("cli:")
    assert [entry["load_id"]] == _load_ids(url)


def test_a_process_killed_right_after_the_commit_leaves_a_stored_upload_entry(tmp_path, crm_file):
    url = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    # The first thing after the commit is saving the mapping: the process dies there, as with kill -9.
    script = textwrap.dedent(f"""
        import os
        import cxdash.ingest.load as ingest
        from cxdash.store.database import open_store
        ingest.save_mapping = lambda *a, **k: os._exit(9)
        ingest.ingest_file(open_store({url!r}), {str(crm_file)!r}, source="crm", kind="customers", actor="ann")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    load_ids = _load_ids(url)
    assert len(load_ids) == 1  # the data is committed
    entries = _uploads(url)
    assert [(e["actor"], e["status"], e["load_id"], e["rows_loaded"]) for e in entries] == [
        ("ann", "stored", load_ids[0], 3)
    ]


def test_a_load_that_rolls_back_is_recorded_as_failed_and_stores_nothing(tmp_path, crm_file, monkeypatch):
    url = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    store = open_store(url)

    def broken_identity_map(*_args, **_kwargs):  # the last step inside the load's transaction
        raise OSError("disk full")

    # An append restitches incrementally; a first load or a replace rebuilds: break both.
    monkeypatch.setattr("cxdash.ingest.load.rebuild_identity_map", broken_identity_map)
    monkeypatch.setattr("cxdash.ingest.load.update_identity_map", broken_identity_map)
    try:
        with pytest.raises(OSError, match="disk full"):
            ingest_file(store, crm_file, source="crm", kind="customers", actor="ann")
    finally:
        store.dispose()
    assert _load_ids(url) == []
    entries = _uploads(url)
    assert [(e["status"], e["error"]) for e in entries] == [("failed", "OSError")]
    assert "disk full" not in json.dumps(entries)  # the type only: a message may quote data


def test_with_app_state_in_another_database_the_entry_is_completed_after_the_commit(tmp_path, crm_file):
    url, app_url = f"duckdb:///{tmp_path / 'data.duckdb'}", f"duckdb:///{tmp_path / 'app.duckdb'}"
    store = open_store(url, app_url)
    try:
        assert store.app_engine is not store.engine
        result = ingest_file(store, crm_file, source="crm", kind="customers", actor="bo")
        log = audit.recent(store, action="upload")
    finally:
        store.dispose()
    detail = json.loads(log.iloc[0]["detail"])
    assert len(log) == 1 and log.iloc[0]["actor"] == "bo"
    assert (detail["status"], detail["load_id"], detail["rows_loaded"]) == ("stored", result.load_id, 3)


def test_a_dry_run_and_a_load_without_an_actor_write_no_upload_entry(tmp_path, crm_file):
    url = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    store = open_store(url)
    try:
        ingest_file(store, crm_file, source="crm", kind="customers", actor="ann", dry_run=True)
        ingest_file(store, crm_file, source="crm", kind="customers")
    finally:
        store.dispose()
    assert _uploads(url) == []
