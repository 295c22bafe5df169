"""Shared fixtures: a store on each backend, the public data folder, the demo company."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxdash.store.database import ANALYTICS, APP_STATE, Store, open_store

REPO = Path(__file__).resolve().parents[1]
PUBLIC = REPO.parent / "shared" / "data" / "public"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = Path(os.environ.get("CXDASH_TEST_ARTIFACTS", REPO / "test-artifacts"))

BACKENDS = ["duckdb", "postgresql"]

# scripts/with_spark.sh exports CXDASH_ANALYTICS_URL for the Spark server it started. Every store a
# test opens would put its analytical tables there; only the Spark tests (tests/test_spark_*.py)
# mean to, so they read it as CXDASH_SPARK_TEST_URL and the rest of the run never sees it.
if os.environ.get("CXDASH_ANALYTICS_URL"):
    os.environ["CXDASH_SPARK_TEST_URL"] = os.environ.pop("CXDASH_ANALYTICS_URL")


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
    from cxdash.demo.build import build_demo

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

    from cxdash.risk.training import train

    root = tmp_path_factory.mktemp("trained_demo")
    path = root / "demo.duckdb"
    shutil.copy(demo_store["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    s = open_store(url)
    model = train(s)
    s.dispose()
    return {"url": url, "model": model, "dir": demo_store["dir"]}


# ----------------------------------------------------------------------------- sign-in (issue 7)
# Sign-in is on by default, so AppTest runs of pages start signed in as an admin: the user is
# created in the store the test points CXDASH_DB_URL at, and the session is seeded into the
# AppTest's session state exactly as the sign-in form would leave it. A test that needs another
# role (or nobody) overwrites the seeded session with ``seed_session``.
TEST_ADMIN = "pytest-admin"
_users_made: set[tuple[str, str, str]] = set()


def ensure_user(url: str, username: str, role: str, password: str | None = None) -> None:
    """Make sure ``username`` exists with ``role`` (and ``password`` when given) in the store at ``url``."""
    from cxdash.governance import auth

    key = (url, username, role)
    if key in _users_made and password is None:
        return
    s = open_store(url)
    try:
        user = auth.get_user(s, username)
        if user is None:
            auth.add_user(s, username, role, password or auth.generate_password(), actor="pytest")
        else:
            if user["role"] != role:
                auth.set_role(s, username, role, actor="pytest")
            if password is not None:
                auth.reset_password(s, username, password, actor="pytest")
            if user["disabled"]:
                auth.set_disabled(s, username, False, actor="pytest")
    finally:
        s.dispose()
    _users_made.add(key)


def seed_session(at, username: str | None, role: str = "admin", url: str | None = None) -> None:
    """Sign ``at`` (an AppTest) in as ``username`` with ``role``; None signs it out."""
    from datetime import UTC, datetime

    from cxdash.config import database_url
    from cxdash.governance.auth import Session
    from cxdash.ui.auth import SESSION_KEY

    if username is None:
        at.session_state[SESSION_KEY] = None
        return
    ensure_user(database_url(url), username, role)
    now = datetime.now(UTC).replace(tzinfo=None)
    at.session_state[SESSION_KEY] = Session(username, role, now, now).to_dict()


@pytest.fixture(autouse=True)
def _apptest_signed_in_as_admin(monkeypatch):
    from streamlit.testing.v1 import AppTest

    original = AppTest.from_file.__func__

    def from_file(cls, *args, **kwargs):
        at = original(cls, *args, **kwargs)
        if os.environ.get("CXDASH_DB_URL"):  # never touch the developer's own store
            seed_session(at, TEST_ADMIN, "admin")
        return at

    monkeypatch.setattr(AppTest, "from_file", classmethod(from_file))


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> str:
    """URL of a 300-customer demo store (seed 3), one per test module: many campaigns, sales
    owners and signup months hold fewer than 10 customers."""
    from cxdash.demo.build import build_demo

    root = tmp_path_factory.mktemp("small_demo")
    url = f"duckdb:///{root / 'demo.duckdb'}"
    s = open_store(url)
    build_demo(s, n_customers=300, seed=3, out_dir=root / "extracts")
    s.dispose()
    return url


@pytest.fixture(autouse=True)
def _background_refreshes_finish():
    """An upload hands the default views to a background thread; a test's store must outlive it."""
    yield
    from cxdash.jobs import summaries

    summaries.wait_for_background(timeout=600)


@pytest.fixture
def db(tmp_path, monkeypatch):
    """An empty DuckDB store the pages run against (``CXDASH_DB_URL``), with uploads staged under tmp_path."""
    url = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    open_store(url).dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    monkeypatch.setattr("cxdash.ui.ops.UPLOAD_DIR", tmp_path / "uploads")
    return url


@pytest.fixture
def loaded(store, tmp_path):
    """A store that already holds a good load, so 'untouched' means something (hostile-file tests)."""
    from cxdash.ingest.load import ingest_file
    from tests.hostile_support import EVENTS, GOOD

    p = tmp_path / "good.csv"
    p.write_text(GOOD)
    ingest_file(store, p, source="web", mapping=EVENTS)
    return store


# ----------------------------------------------------------------------------- one app for the browser tests
@pytest.fixture(scope="session")
def demo_app(trained_demo, tmp_path_factory):
    """One `streamlit run app.py` and one Chromium for the browser tests that look at the demo company:
    a copy of ``trained_demo`` (3,000 customers, a trained model), shared by the whole session so the
    demo is built, the server started and its caches warmed once, not once per module.

    Each test opens its own browser context (its own app session, signed in afresh). Tests that
    change what the store holds are marked ``writes_demo_app`` and run after every other test (see
    ``pytest_collection_modifyitems``), so what the others read is the demo as built. A module adds
    its own users with ``ensure_user(demo_app["db"], ...)`` before signing them in.
    """
    import shutil

    from tests.browser_support import chromium, require_browser, running_app

    require_browser()
    root = tmp_path_factory.mktemp("demo_app")
    path = root / "demo.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    with running_app(url, root / "server.log") as base, chromium() as browser:
        yield {"url": base, "db": url, "browser": browser, "root": root, "dir": trained_demo["dir"]}


def pytest_collection_modifyitems(config, items):
    # Tests that write to the shared demo app go last, in their collected order.
    writers = [i for i in items if i.get_closest_marker("writes_demo_app")]
    if writers:
        items[:] = [i for i in items if not i.get_closest_marker("writes_demo_app")] + writers
    # Every test run on PostgreSQL (a backend parameter) carries the postgres marker.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(isinstance(v, str) and v == "postgresql" for v in callspec.params.values()):
            item.add_marker(pytest.mark.postgres)
