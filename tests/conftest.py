"""Shared fixtures: a store on each backend, the public data folder, the demo company."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cxdash.store.database import ANALYTICS, APP_STATE, Store, open_store
from cxdash.store.suppression import secret_salt

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


def _xdist_worker() -> str | None:
    """``gw0``, ``gw1``... in a pytest-xdist worker (``make test`` runs two), None in a plain run."""
    return os.environ.get("PYTEST_XDIST_WORKER")


_PG_WORKER_URLS: dict[str, str] = {}


# ----------------------------------------------------------------------------- two test processes (make test)
# ``make test`` runs pytest-xdist with ``--dist loadgroup``: a group's tests all run on one worker, in
# collected order. pytest-xdist 3.8 marks a group by appending ``@group`` to the test's node id, which
# pytest 9 (structured node ids) ignores, so the workers write each test's group to a file instead
# (``pytest_collection_modifyitems``) and the controller's scheduler (``pytest_xdist_make_scheduler``)
# reads it.
_GROUPS_ENV = "CXDASH_TEST_XDIST_GROUPS"


def pytest_configure(config):
    if _xdist_worker() or not getattr(config.option, "numprocesses", None):
        return
    # Make the installation's secret salt (data/.secret_salt, made on first use) before the workers
    # start: two workers making it at once could read the file between its creation and its write.
    secret_salt()
    folder = tempfile.mkdtemp(prefix="cxdash-xdist-groups-")
    os.environ[_GROUPS_ENV] = folder  # the workers, started after this, inherit it
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test that fails gets the app servers' thread stacks in its report (a hung page
    then says what it waited on; see tests/serve_app.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and item.get_closest_marker("browser"):
        from tests.browser_support import server_stacks

        stacks = server_stacks()
        if stacks:
            report.sections.append(("app server threads", stacks))


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup" or not os.environ.get(_GROUPS_ENV):
        return None
    from xdist.scheduler import LoadGroupScheduling

    class _FileGroups(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != nodeid:  # an xdist that does put the group in the node id
                return scope
            if self.groups is None:
                self.groups = {}
                for path in sorted(Path(os.environ[_GROUPS_ENV]).glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

    return _FileGroups(config, log)


def _pg_url() -> str | None:
    """The PostgreSQL database this test process empties and fills: the harness's own database in a
    plain run, and one database per xdist worker (``cxdash_gw0``...) beside it otherwise, so two
    workers never drop each other's tables."""
    url = os.environ.get("CXDASH_TEST_PG_URL")
    worker = _xdist_worker()
    if not url or not worker:
        return url
    if url not in _PG_WORKER_URLS:
        base = sa.make_url(url)
        name = f"{base.database}_{worker}"
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
                if exists is None:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        _PG_WORKER_URLS[url] = base.set(database=name).render_as_string(hide_password=False)
    return _PG_WORKER_URLS[url]


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


@pytest.fixture
def private_tempdir(tmp_path, monkeypatch) -> Path:
    """A temp folder of this test's own (``tempfile.gettempdir()`` points there): what a test leaves
    or not in it is its own, whatever another worker writes to /tmp meanwhile."""
    import tempfile

    folder = tmp_path / "private-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="session")
def public_data() -> Path:
    if not PUBLIC.is_dir():
        pytest.skip(f"public datasets not found at {PUBLIC} (they live in ../shared beside the repo)")
    return PUBLIC


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> tuple[Path, object]:
    """``(folder, build(folder))``, built once per test run.

    In a plain run that is here and now. Under xdist the first worker to ask builds it while holding
    a file lock in the run's shared temp folder; the others wait for it and get the same folder and a
    copy (pickled) of what ``build`` returned. What is in the folder is for reading: a worker copies a
    store before opening it (DuckDB lets one process at a time write to a file).
    """
    if _xdist_worker() is None:
        folder = tmp_path_factory.mktemp(name)
        return folder, build(folder)
    folder = tmp_path_factory.getbasetemp().parent / f"built-once-{name}"
    done = folder / "built.pickle"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result = build(folder)
            (folder / "built.pickle.part").write_bytes(pickle.dumps(result))
            (folder / "built.pickle.part").rename(done)
        return folder, pickle.loads(done.read_bytes())  # noqa: S301 - our own file, written just above or by a sibling worker


def _store_copy(source: Path, tmp_path_factory, name: str) -> str:
    """URL of a fresh copy of the DuckDB file ``source`` in a new temp folder."""
    path = tmp_path_factory.mktemp(name) / source.name
    shutil.copy(source, path)
    return f"duckdb:///{path}"


def _build_demo_store(folder: Path, n_customers: int, seed: int) -> dict:
    from cxdash.demo.build import build_demo

    s = open_store(f"duckdb:///{folder / 'demo.duckdb'}")
    try:
        return build_demo(s, n_customers=n_customers, seed=seed, out_dir=folder / "extracts")
    finally:
        s.dispose()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A DuckDB store holding a 3,000-customer demo company, and the folder of its CSV extracts."""
    folder, summary = _built_once(tmp_path_factory, "demo", lambda f: _build_demo_store(f, 3000, 11))
    url = _store_copy(folder / "demo.duckdb", tmp_path_factory, "demo")
    return {"url": url, "dir": folder / "extracts", "summary": summary}


@pytest.fixture(scope="session")
def trained_demo(demo_store, tmp_path_factory):
    """A copy of the demo store with a churn model trained, saved and its scores stored (issue 6).

    A copy, so tests that count what the demo store holds are not affected by the model tables.
    """
    from cxdash.risk.training import train

    def build(folder: Path):
        shutil.copy(demo_store["url"].removeprefix("duckdb:///"), folder / "demo.duckdb")
        s = open_store(f"duckdb:///{folder / 'demo.duckdb'}")
        try:
            return train(s)
        finally:
            s.dispose()

    folder, model = _built_once(tmp_path_factory, "trained_demo", build)
    url = _store_copy(folder / "demo.duckdb", tmp_path_factory, "trained_demo")
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
    owners and signup months hold fewer than 10 customers. Built once per run; each module gets
    its own copy of the file."""
    folder, _ = _built_once(tmp_path_factory, "small_demo", lambda f: _build_demo_store(f, 300, 3))
    return _store_copy(folder / "demo.duckdb", tmp_path_factory, "small_demo")


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
    from tests.browser_support import chromium, require_browser, running_app

    require_browser()
    root = tmp_path_factory.mktemp("demo_app")
    path = root / "demo.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    with running_app(url, root / "server.log") as base, chromium() as browser:
        yield {"url": base, "db": url, "browser": browser, "root": root, "dir": trained_demo["dir"]}


def _xdist_group(item: pytest.Item) -> str | None:
    """The pytest-xdist group (one worker runs a group's tests in order) ``item`` belongs in.

    - ``spark``: every Spark test, so one worker waits on the Thrift server while the other runs the rest;
    - ``demo_app``: every test on the shared demo app (one server per worker, and the
      ``writes_demo_app`` tests must run after the others on the same app);
    - the test's module, when it uses a module-scoped fixture (a store built, an app started):
      split over two workers it would be built twice.
    """
    if item.get_closest_marker("spark"):
        return "spark"
    if "demo_app" in item.fixturenames or item.get_closest_marker("writes_demo_app"):
        return "demo_app"
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is not None:
        for defs in fixtureinfo.name2fixturedefs.values():
            if any(d.scope in ("module", "class", "package") for d in defs):
                return item.module.__name__ if getattr(item, "module", None) else item.nodeid.split("::")[0]
    return None


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
    if _xdist_worker():
        groups = {}
        for item in items:
            group = _xdist_group(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))
                groups[item.nodeid] = group
        if os.environ.get(_GROUPS_ENV):
            path = Path(os.environ[_GROUPS_ENV]) / f"{_xdist_worker()}.json"
            path.with_suffix(".part").write_text(json.dumps(groups))
            path.with_suffix(".part").rename(path)
        # The two long groups first (``make test`` passes --no-loadscope-reorder, so xdist hands
        # out groups in this order): one worker starts on the demo app, the other on Spark, and
        # both then share what is left. A stable sort: the demo app's writers stay last.
        first = {"demo_app": 0, "spark": 1}
        items.sort(key=lambda i: first.get(_xdist_group(i) or "", 2))


@pytest.fixture
def taken(monkeypatch) -> dict[str, int]:
    """Which stored views' increments (``summaries.INCREMENTS``) ran and gave a result: name -> count,
    so a test sees the increment taken, not only a right result (which computing whole also gives)."""
    from cxdash.jobs import summaries

    counts: dict[str, int] = {}
    for name, fn in list(summaries.INCREMENTS.items()):

        def counted(conn, before, loads, _fn=fn, _name=name, **params):
            out = _fn(conn, before, loads, **params)
            if out is not None:
                counts[_name] = counts.get(_name, 0) + 1
            return out

        monkeypatch.setitem(summaries.INCREMENTS, name, counted)
    return counts
