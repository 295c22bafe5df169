"""CXDASH_ANALYTICS_URL (issue 18): the analytical tables go where it points, app state stays on
``--db`` / ``CXDASH_DB_URL``; unset, both share one store. Checked with two DuckDB files, so it runs
without Spark."""

from __future__ import annotations

import duckdb
import pytest

from cxdash.jobs import open_store
from cxdash.store.database import make_engine


def _tables(path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()


def test_analytics_url_splits_the_store(tmp_path, monkeypatch):
    app, analytics = tmp_path / "app.duckdb", tmp_path / "analytics.duckdb"
    monkeypatch.setenv("CXDASH_ANALYTICS_URL", f"duckdb:///{analytics}")
    store = open_store(f"duckdb:///{app}")
    assert store.engine is not store.app_engine
    assert store.engine.url.database == str(analytics) and store.app_engine.url.database == str(app)
    store.dispose()
    on_app, on_analytics = _tables(app), _tables(analytics)
    assert {"src_events", "identity_map", "customer_keys", "loads", "changes"} <= on_analytics
    assert {"users", "audit_log", "mappings", "models"} <= on_app
    assert not on_app & on_analytics  # nothing kept twice


def test_without_it_one_store_holds_both(tmp_path, monkeypatch):
    monkeypatch.delenv("CXDASH_ANALYTICS_URL", raising=False)
    path = tmp_path / "one.duckdb"
    store = open_store(f"duckdb:///{path}")
    assert store.engine is store.app_engine
    store.dispose()
    assert {"src_events", "users"} <= _tables(path)


def test_a_sparkthrift_url_resolves_to_cxdash_dialect():
    """The factory knows the scheme without the caller importing cxdash.store.spark."""
    engine = make_engine("sparkthrift://cxdash@127.0.0.1:1/default")  # no connection is made
    try:
        assert engine.dialect.name == "sparkthrift"
        assert type(engine.dialect).__module__ == "cxdash.store.spark"
    finally:
        engine.dispose()


def test_explicit_urls_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_ANALYTICS_URL", "sparkthrift://nobody@127.0.0.1:1/default")
    a, b = f"duckdb:///{tmp_path / 'a.duckdb'}", f"duckdb:///{tmp_path / 'b.duckdb'}"
    store = open_store(a, b)
    assert store.engine.url.database.endswith("a.duckdb") and store.app_engine.url.database.endswith("b.duckdb")
    store.dispose()


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_analytics_url_is_unset(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CXDASH_ANALYTICS_URL", value)
    store = open_store(f"duckdb:///{tmp_path / 'x.duckdb'}")
    assert store.engine is store.app_engine
    store.dispose()
