"""Starting the real app and Debian's Chromium for the end-to-end tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CXDASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does this)")
    pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sign-in is on in the app: the browser tests sign in as this admin (created by running_app).
ADMIN_USER = "browser-admin"
ADMIN_PASSWORD = "browser-admin-password-0"


def sign_in(page, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
    """Fill in the app's sign-in form (shown to every new browser session) and wait until it is gone."""
    page.get_by_label("User name").wait_for(timeout=60_000)
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign in").wait_for(state="detached", timeout=60_000)


def all_gone(locator, timeout_ms: int = 30_000) -> int:
    """Wait until nothing matches ``locator``; return how many still match when the time is up.

    Streamlit keeps the previous run's elements on screen (stale) until the new run finishes, so an
    element the new run no longer draws can outlive the first element it does draw by a moment."""
    waited = 0
    while locator.count() and waited < timeout_ms:
        locator.page.wait_for_timeout(250)
        waited += 250
    return locator.count()


def settle(page, timeout_ms: int = 120_000, min_lines: int = 0) -> None:
    """Wait until the app has finished running the page: its script state says not running and the
    main block's text has not changed for two seconds (and has at least ``min_lines`` lines).

    The script state on ``stApp`` is what Streamlit's own browser tests wait on. The running
    indicator (``stStatusWidget``) never shows under the app's minimal toolbar, not even through a
    5 s rerun, so waiting for it to go passed at once and the next click could land on the previous
    run's widgets."""
    main = page.locator('[data-testid="stMain"]')
    app = page.locator('[data-testid="stApp"]')
    waited, last, stable = 0, None, 0
    while waited < timeout_ms:
        page.wait_for_timeout(500)
        waited += 500
        text = main.inner_text() if main.count() else ""
        running = app.get_attribute("data-test-script-state") != "notRunning"
        stable = stable + 1 if (text == last and not running and len(text.splitlines()) >= min_lines) else 0
        last = text
        if stable >= 4:
            return
    raise AssertionError(f"the page was still changing after {timeout_ms / 1000:.0f} s")


@contextlib.contextmanager
def running_app(
    db_url: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    users: dict[str, tuple[str, str]] | None = None,
) -> Iterator[str]:
    """`streamlit run app.py` on a free port against ``db_url``; yields the base URL.

    ``users`` ({name: (role, password)}) are created first; the admin of ``sign_in`` always is.
    """
    from tests.conftest import ensure_user

    for name, (role, password) in {ADMIN_USER: ("admin", ADMIN_PASSWORD), **(users or {})}.items():
        ensure_user(db_url, name, role, password)
    port = _free_port()
    env = dict(os.environ, CXDASH_DB_URL=db_url, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **(extra_env or {}))
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "serve_app.py"),
                "run",
                str(REPO / "app.py"),
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    RUNNING[proc.pid] = (proc, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":  # noqa: S310 - our own local server
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start in 90 s:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    except BaseException:  # the test failed inside ``with running_app(...)``: where the server's threads were
        stacks = server_stacks(pids=(proc.pid,))
        if stacks:
            print(stacks, file=sys.stderr)  # pytest shows it under the failure
        raise
    finally:
        RUNNING.pop(proc.pid, None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


_SHARED: dict[str, object] = {}
# the app servers this test process runs now: {pid: (process, log file)}
RUNNING: dict[int, tuple[subprocess.Popen, Path]] = {}


def server_stacks(wait_s: float = 2.0, pids: tuple[int, ...] | None = None) -> str:
    """Every running app server's thread stacks (``tests/serve_app.py`` writes them to its log on
    SIGUSR1), the end of each log: what a hung page was waiting on, for a failed test's report."""
    sent = []
    for pid, (proc, log_path) in list(RUNNING.items()):
        if proc.poll() is None and (pids is None or pid in pids):
            start = log_path.stat().st_size if log_path.exists() else 0
            os.kill(pid, signal.SIGUSR1)
            sent.append((pid, log_path, start))
    if not sent:
        return ""
    time.sleep(wait_s)
    parts = []
    for pid, log_path, start in sent:
        with open(log_path, errors="replace") as fh:
            fh.seek(start)
            parts.append(f"--- app server {pid} ({log_path.name}), threads at the failure:\n{fh.read()[-20_000:]}")
    return "\n".join(parts)


def _stop_shared() -> None:
    browser, playwright = _SHARED.pop("browser", None), _SHARED.pop("playwright", None)
    if browser is not None:
        browser.close()
    if playwright is not None:
        playwright.stop()


@contextlib.contextmanager
def chromium():
    """The test process's one Chromium. Playwright's sync API runs one event loop per thread, so a
    second ``sync_playwright()`` while another is alive fails ("Sync API inside the asyncio loop"):
    the shared demo app (a session fixture) and the modules that start their own app all use this
    browser, started on first use and closed when the process exits. Tests open their own pages or
    contexts on it and close them."""
    if "browser" not in _SHARED:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        _SHARED["playwright"] = playwright
        _SHARED["browser"] = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        atexit.register(_stop_shared)
    yield _SHARED["browser"]
