"""Shared fixtures: a store on each backend, the public data folder, the demo company."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxdash.store import ANALYTICS, APP_STATE, Store, open_store

REPO = Path(__file__).resolve().parents[1]
PUBLIC = REPO.parent / "shared" / "data" / "public"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = Path(os.environ.get("CXDASH_TEST_ARTIFACTS", REPO / "test-artifacts"))

BACKENDS = ["duckdb", "postgresql"]


def _pg_url() -> str | None:
    return os.environ.get("CXDASH_TEST_PG_URL")


def make_store(backend: str, tmp_path: Path) -> Store:
    if backend == "duckdb":
        return open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    url = _pg_url()
    if not url:
        pytest.skip("CXDASH_TEST_PG_URL is not set: no PostgreSQL server for this run (make test starts one)")
    store = open_store(url, create=False)
    with store.begin() as conn:
        ANALYTICS.drop_all(conn)
        APP_STATE.drop_all(conn)
    store.create_schema()
    return store


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> Store:
    """An empty store on DuckDB and on PostgreSQL (the latter skipped when no server)."""
    s = make_store(request.param, tmp_path)
    yield s
    s.dispose()


@pytest.fixture
def duck(tmp_path) -> Store:
    s = make_store("duckdb", tmp_path)
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def public_data() -> Path:
    if not PUBLIC.is_dir():
        pytest.skip(f"public datasets not found at {PUBLIC} (they live in ../shared beside the repo)")
    return PUBLIC


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A DuckDB store holding a 3,000-customer demo company, and the folder of its CSV extracts."""
    from cxdash.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    url = f"duckdb:///{root / 'demo.duckdb'}"
    s = open_store(url)
    summary = build_demo(s, n_customers=3000, seed=11, out_dir=root / "extracts")
    s.dispose()
    return {"url": url, "dir": root / "extracts", "summary": summary}


@pytest.fixture(scope="session")
def trained_demo(demo_store, tmp_path_factory):
    """A copy of the demo store with a churn model trained, saved and its scores stored (issue 6).

    A copy, so tests that count what the demo store holds are not affected by the model tables.
    """
    import shutil

    from cxdash.model import train

    root = tmp_path_factory.mktemp("trained_demo")
    path = root / "demo.duckdb"
    shutil.copy(demo_store["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    s = open_store(url)
    model = train(s)
    s.dispose()
    return {"url": url, "model": model, "dir": demo_store["dir"]}
