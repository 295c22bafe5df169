"""Every role walks every page it may open, in Chromium at 1440 x 900, and no page shows a raw
value: no ``None``/``nan``/``NaN`` in its text, tables or charts, no snake_case column header or widget
label, no bare department code ("tech") in a chart's legend (nor, on Data health, the customer card,
At-risk and Shared KPIs, in a department or owner column or on a chart's axis), and nothing wider than
the page (issue 16). A screenshot of each role x page is kept in test-artifacts/
as ``walk_<role>_<page>.png``. The store is the session's shared demo app (tests/conftest.py: a
3,000-customer demo with a trained churn model).

How tables are read: ``st.dataframe`` is a glide data grid drawn on a <canvas>, so its text is not in
the DOM as the reader sees it. Two sources are used:

- the grid's accessibility table (``role=columnheader`` / ``role=gridcell`` elements that glide keeps
  for screen readers): the column headers exactly, and the cells' raw values;
- every string the page paints on a canvas, recorded by wrapping ``CanvasRenderingContext2D.fillText``
  before the app loads (``add_init_script``): the cells as formatted and shown, including the grey
  ``None`` Streamlit paints for a missing value, which the accessibility table leaves empty.

Both see only the rows the grid has drawn (it is virtualised: the first screenful), which is what a
person sees first. Plotly charts are SVG: their text (titles, ticks, legends) is read from the DOM.

The upload page is walked twice by the admin: empty, and with a file staged and its kind chosen, so the
mapping (its selectboxes and its table) is checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from cxdash.governance import DEPARTMENT_NAMES
from cxdash.governance.auth import ALL_PAGES, ROLE_PAGES, ROLES
from cxdash.store.database import open_store, sources_table
from cxdash.store.kinds import KINDS
from cxdash.ui.frame import PAGE_REGISTRY
from tests.browser_support import settle as settle_run
from tests.browser_support import sign_in
from tests.conftest import FIXTURES, ensure_user
from tests.test_upload_browser import _choose_kind

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1440, "height": 900}
PASSWORD = "walk-the-pages-password"
USERS = {f"walk-{role.replace('_', '-')}": (role, PASSWORD) for role in ROLES}

# Recorded before any app script runs: which strings each canvas painted (the data grids' cells).
RECORD_CANVAS_TEXT = """
(() => {
  const painted = new WeakMap();
  window.__cxPainted = painted;
  const original = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
    let seen = painted.get(this.canvas);
    if (!seen) { seen = new Set(); painted.set(this.canvas, seen); }
    seen.add(String(text));
    return original.call(this, text, x, y, ...rest);
  };
})();
"""

# Reads what a page shows, for the checks below (returns a plain object).
READ_PAGE = """
() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const block = document.querySelector('[data-testid="stMainBlockContainer"]') || main;
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  const painted = window.__cxPainted;
  const grids = [...document.querySelectorAll('[data-testid="stDataFrame"]')].map((el, i) => {
    const box = el.getBoundingClientRect();
    const scroller = el.querySelector('.dvn-scroller');
    const cells = new Set();
    for (const c of el.querySelectorAll('canvas')) {
      for (const t of (painted && painted.get(c)) || []) cells.add(t);
    }
    for (const c of el.querySelectorAll('[role=gridcell]')) cells.add(c.innerText);
    // each column's cells as the accessibility table holds them (raw values: our text columns' words)
    const byIndex = {};
    for (const h of el.querySelectorAll('[role=columnheader]')) byIndex[h.getAttribute('aria-colindex')] = h.innerText.trim();
    const columns = Object.fromEntries(Object.values(byIndex).map(h => [h, []]));
    for (const c of el.querySelectorAll('[role=gridcell]')) {
      const header = byIndex[c.getAttribute('aria-colindex')];
      if (header !== undefined) columns[header].push(c.innerText.trim());
    }
    return {
      index: i,
      columns,
      headers: [...el.querySelectorAll('[role=columnheader]')].map(h => h.innerText.trim()),
      cells: [...cells],
      right: box.right,
      boxWidth: box.width,
      colWidths: [...el.querySelectorAll("[role=columnheader]")].map(h => Math.round(h.getBoundingClientRect().width)),
      width: box.width,
      // columns that need a horizontal scroll to be seen (glide's scroller is wider inside than out)
      hiddenWidth: scroller ? scroller.scrollWidth - scroller.clientWidth : 0,
    };
  });
  const charts = [...document.querySelectorAll('.js-plotly-plot')].map(p =>
    [...p.querySelectorAll('text')].map(t => t.textContent).join(' | '));
  const legends = [...document.querySelectorAll('.js-plotly-plot')].map(p =>
    [...p.querySelectorAll('.legendtext')].map(t => t.textContent));
  const ticks = [...document.querySelectorAll('.js-plotly-plot')].map(p =>
    [...p.querySelectorAll('.xtick text, .ytick text')].map(t => t.textContent));
  const labels = [...block.querySelectorAll('[data-testid="stWidgetLabel"]')].map(l => l.innerText.trim());
  const wide = [...block.querySelectorAll('[data-testid="stElementContainer"]')]
    .filter(e => e.getBoundingClientRect().right > block.getBoundingClientRect().right + 2)
    .map(e => (e.innerText || e.getAttribute('data-testid') || '').slice(0, 80));
  return {
    text: block.innerText,
    sidebar: sidebar ? sidebar.innerText : '',
    grids,
    charts,
    legends,
    ticks,
    labels,
    wide,
    pageScroll: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    mainScroll: main.scrollWidth - main.clientWidth,
    blockScroll: block.scrollWidth - block.clientWidth,
    viewport: window.innerWidth,
  };
}
"""

RAW_WORD = re.compile(r"(?<![\w.-])(None|nan|NaN|NaT|null|undefined)(?![\w-])")
SNAKE = re.compile(r"[A-Za-z0-9]_[A-Za-z0-9]")


def raw_words(text: str) -> list[str]:
    """The raw-value words (``None``, ``nan``, ...) in ``text``, with a little context each."""
    out = []
    for m in RAW_WORD.finditer(text):
        start, end = max(m.start() - 30, 0), min(m.end() + 30, len(text))
        out.append(text[start:end].replace("\n", " / "))
    return out


# The pages that name departments in tables and on chart axes as well as in legends (Data health's
# owners, the card's signals and timeline, the at-risk list and its chart, the Shared KPIs conflicts):
# there a column about departments, and an axis, must not show a bare code either.
DEPARTMENT_PAGES = frozenset({"data_health", "customer_card", "at_risk", "executive"})
DEPARTMENT_COLUMNS = ("department", "owner", "group")


def _is_code(text: str) -> bool:
    """A department code as the data holds it ("support"); a capitalised team name ("Support", a KPI's
    owner in the definitions table) reads as a word."""
    return text.strip() in DEPARTMENT_NAMES


def findings(shown: dict, sources: frozenset[str] = frozenset(), departments_everywhere: bool = False) -> list[str]:
    """Everything on a page a person should not see, in words (empty when the page is clean).
    ``sources``: the loaded sources' names, which a legend shows as named even when a source is
    named like a department ("web"). ``departments_everywhere``: also no bare department code in a
    table column headed with a department word (``DEPARTMENT_COLUMNS``; a source's name excepted
    nowhere there: those columns hold departments) or in a chart's axis labels (a source's name
    excepted: Data health draws one bar per source)."""
    out = [f"page text shows a raw value: ...{c}..." for c in raw_words(shown["text"])]
    out += [f"sidebar shows a raw value: ...{c}..." for c in raw_words(shown["sidebar"])]
    for n, chart in enumerate(shown["charts"]):
        out += [f"chart {n + 1} shows a raw value: ...{c}..." for c in raw_words(chart)]
    for n, legend in enumerate(shown.get("legends", [])):
        out += [
            f"chart {n + 1}'s legend shows a department code: {entry!r}"
            for entry in legend
            if entry.strip().lower() in DEPARTMENT_NAMES and entry.strip() not in sources
        ]
    if departments_everywhere:
        for n, ticks in enumerate(shown.get("ticks", [])):
            out += [
                f"chart {n + 1}'s axis shows a department code: {t!r}"
                for t in ticks
                if _is_code(t) and t.strip() not in sources
            ]
        for grid in shown["grids"]:
            for header, cells in grid.get("columns", {}).items():
                if any(word in header.lower() for word in DEPARTMENT_COLUMNS):
                    out += [
                        f"table {grid['index'] + 1}'s {header!r} column shows a department code: {c!r}"
                        for c in sorted(set(cells))
                        if _is_code(c)
                    ]
    out += [f"a widget label is in snake_case: {w!r}" for w in shown.get("labels", []) if SNAKE.search(w)]
    for grid in shown["grids"]:
        name = f"table {grid['index'] + 1} ({', '.join(grid['headers'][:4])}...)"
        out += [f"{name} has a snake_case header: {h!r}" for h in grid["headers"] if SNAKE.search(h)]
        out += [f"{name} has a raw-value header: {h!r}" for h in grid["headers"] if RAW_WORD.fullmatch(h)]
        bad_cells = sorted({c for c in grid["cells"] if RAW_WORD.fullmatch(c.strip())})
        if bad_cells:
            out.append(f"{name} shows {bad_cells} in its cells")
        if grid["right"] > shown["viewport"] + 1:
            out.append(f"{name} ends at {grid['right']:.0f} px, past the {shown['viewport']} px window")
        if grid["hiddenWidth"] > 2:
            out.append(f"{name} hides {grid['hiddenWidth']} px of columns behind a horizontal scroll")
    for what in ("pageScroll", "mainScroll", "blockScroll"):
        if shown[what] > 2:
            out.append(f"the page is {shown[what]} px wider than the window ({what})")
    out += [f"an element runs past the page's right edge: {w!r}" for w in shown["wide"]]
    return out


def _walk() -> list[tuple[str, str, str, str]]:
    """(role, page file, page title, url path) for every page every role may open."""
    out = []
    for role in ROLES:
        allowed = ROLE_PAGES[role]
        for file, title, _icon, _section in PAGE_REGISTRY:
            if allowed == ALL_PAGES or file in allowed:
                out.append((role, file, title, Path(file).stem))
    return out


WALK = _walk()


@pytest.fixture(scope="module")
def app(demo_app):
    """The session's shared demo app (a 3,000-customer demo with a trained churn model, as `make run`
    leaves one, so the at-risk list and the card show their tables), with the walk's users added."""
    for name, (role, password) in USERS.items():
        ensure_user(demo_app["db"], name, role, password)
    return demo_app


@pytest.fixture(scope="module")
def source_names(app) -> frozenset[str]:
    """The demo's source names (some are named like departments: "web", "billing")."""
    store = open_store(app["db"], create=False)
    try:
        with store.connect() as conn:
            return frozenset(r[0] for r in conn.execute(sa.select(sources_table.c.name)))
    finally:
        store.dispose()


def settle(page, timeout_ms: int = 90_000) -> None:
    """The run over and the page unchanged for two seconds, then a moment for charts and grids to paint."""
    settle_run(page, timeout_ms)
    page.wait_for_timeout(1000)


def screenshot(page, path: Path) -> None:
    """The whole page as a picture: Streamlit scrolls inside its main block, so the window is made as
    tall as the page for the shot (same 1440 px width) and put back after."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 900; }"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, VIEWPORT["height"]), 12_000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def expand_all(page) -> None:
    """Open every closed expander (client-side only: no script run), so what it holds is checked too."""
    closed = page.locator('[data-testid="stExpander"] details:not([open]) > summary')
    for _ in range(closed.count()):
        closed.first.click()
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)


def open_as(browser, base: str, role: str, path: str):
    """A fresh browser session on ``base/path``, signed in as the walk's user for ``role``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORD_CANVAS_TEXT)
    page = context.new_page()
    page.goto(f"{base}/{path}", wait_until="domcontentloaded")
    user = next(name for name, (r, _) in USERS.items() if r == role)
    sign_in(page, user, PASSWORD)
    settle(page)
    return page


def test_the_walk_covers_every_page_each_role_may_open():
    # computed by hand from the README's role table: 2 + 2 + 3 + 3 + every page for the admin
    assert len([w for w in WALK if w[0] == "executive"]) == 2
    assert len([w for w in WALK if w[0] == "agent"]) == 3
    assert len([w for w in WALK if w[0] == "admin"]) == len(PAGE_REGISTRY)


def test_the_checks_catch_what_a_person_should_not_see():
    clean = {
        "text": "Nonetheless 12 customers",
        "sidebar": "",
        "charts": ["Revenue | Jan 2026"],
        "legends": [["Technology (tech)", "crm"]],
        "labels": ["customer id", "timestamp *"],
        "grids": [
            {"index": 0, "headers": ["customer id", "days"], "cells": ["1,426", ""], "right": 1400, "hiddenWidth": 0}
        ],
        "wide": [],
        "pageScroll": 0,
        "mainScroll": 0,
        "blockScroll": 0,
        "viewport": 1440,
    }
    assert findings(clean) == []
    dirty = dict(
        clean,
        text="median None",
        charts=["nan"],
        legends=[["Customer support (support)"], ["tech", "crm", "web"]],
        labels=["customer id", "signup_date"],
        grids=[{"index": 0, "headers": ["cohort_by"], "cells": ["NaN"], "right": 1600, "hiddenWidth": 300}],
        blockScroll=40,
    )
    found = " | ".join(findings(dirty, sources=frozenset({"crm", "web"})))
    for expected in (
        "page text",
        "chart 1",
        "snake_case header: 'cohort_by'",
        "['NaN']",
        "1600 px",
        "300 px",
        "40 px",
        "chart 2's legend shows a department code: 'tech'",
        "widget label is in snake_case: 'signup_date'",
    ):
        assert expected in found
    assert "Customer support" not in found and "customer id" not in found
    assert "'crm'" not in found and "'web'" not in found  # source names, as loaded
    assert "'web'" in " | ".join(findings(dirty))  # "web" as a department, where no source has that name

    # on the pages that name departments in tables and on axes too
    coded = dict(
        clean,
        ticks=[["Web / digital (web)", "support"], ["web", "helpdesk"]],
        grids=[
            {
                "index": 0,
                "headers": ["signal", "KPI owner", "owner", "department and owner"],
                "columns": {
                    "signal": ["support"],  # not a department column: a signal may be named anything
                    "KPI owner": ["Support", "Finance"],  # team names, capitalised: words
                    "owner": ["Customer support (support)", "web"],
                    "department and owner": ["Sales (sales), owner Dana"],
                },
                "cells": [],
                "right": 1400,
                "hiddenWidth": 0,
            }
        ],
    )
    assert findings(coded, sources=frozenset({"web"})) == []  # checked only where asked
    found = findings(coded, sources=frozenset({"web"}), departments_everywhere=True)
    assert found == [
        "chart 1's axis shows a department code: 'support'",
        "table 1's 'owner' column shows a department code: 'web'",  # a source's name is no excuse here
    ]
    assert findings(clean, departments_everywhere=True) == []


@pytest.mark.slow
@pytest.mark.parametrize(("role", "file", "title", "path"), WALK, ids=[f"{w[0]}-{w[3]}" for w in WALK])
def test_every_page_shows_words_and_numbers_not_raw_values(app, artifacts, source_names, role, file, title, path):
    page = open_as(app["browser"], app["url"], role, path)
    try:
        page.get_by_role("heading", level=1).first.wait_for(timeout=60_000)
        expand_all(page)
        shown = page.evaluate(READ_PAGE)
        screenshot(page, artifacts / f"walk_{role}_{path}.png")
        assert "Traceback" not in shown["text"], shown["text"][-2000:]
        # the page the role asked for, not a refusal or another page
        assert title in page.locator('[data-testid="stSidebarNav"]').inner_text()
        problems = findings(shown, source_names, departments_everywhere=path in DEPARTMENT_PAGES)
        assert not problems, f"{title} as {role}:\n- " + "\n- ".join(problems)
    finally:
        page.context.close()


# The mapping table's cells as the grid's accessibility table holds them: {header: [cells]}.
READ_MAPPING = """
() => {
  const grid = [...document.querySelectorAll('[data-testid="stDataFrame"]')].find(el =>
    [...el.querySelectorAll('[role=columnheader]')].some(h => h.innerText.trim() === 'stored as'));
  if (!grid) return null;
  const headers = {};
  for (const h of grid.querySelectorAll('[role=columnheader]')) {
    headers[h.getAttribute('aria-colindex')] = h.innerText.trim();
  }
  const out = Object.fromEntries(Object.values(headers).map(h => [h, []]));
  for (const c of grid.querySelectorAll('[role=gridcell]')) {
    out[headers[c.getAttribute('aria-colindex')]].push(c.innerText);
  }
  return out;
}
"""


@pytest.mark.slow
def test_the_upload_mapping_names_fields_in_words(app, artifacts, source_names):
    """With a file staged and its kind chosen (the clickstream fixture, read as events), the mapping's
    selectboxes and table name each field in words, and the page passes every check of the walk; the
    table's "stored as" column keeps the names the mapping JSON uses. Nothing is loaded."""
    page = open_as(app["browser"], app["url"], "admin", "upload")
    try:
        page.get_by_text("Drop one or more CSV extracts").wait_for(timeout=60_000)
        page.locator('input[type="file"]').set_input_files(str(FIXTURES / "kinds" / "clickstream.csv"))
        page.get_by_text("Choose the kind of extract above").wait_for(timeout=120_000)
        _choose_kind(page, "events")
        page.get_by_text("Mapping used").wait_for(timeout=60_000)
        settle(page)
        expand_all(page)
        shown = page.evaluate(READ_PAGE)
        mapping = page.evaluate(READ_MAPPING)
        screenshot(page, artifacts / "walk_admin_upload_mapping.png")
        assert "Traceback" not in shown["text"], shown["text"][-2000:]
        # the preview shows the file as it is: its own column names are data, not ours to reword
        file_columns = (FIXTURES / "kinds" / "clickstream.csv").read_text().splitlines()[0].split(",")
        problems = [
            p
            for p in findings(shown, source_names)
            if not any(p.endswith(f"snake_case header: {c!r}") for c in file_columns)
        ]
        assert not problems, "Upload with a file staged:\n- " + "\n- ".join(problems)
        assert mapping is not None, "no mapping table with a 'stored as' column"
        assert sorted(mapping["stored as"]) == sorted(KINDS["events"].field_names)
        assert "customer id" in mapping["field"] and "timestamp *" in mapping["field"]
        assert not [f for f in mapping["field"] if SNAKE.search(f)], mapping["field"]
        assert "customer id" in shown["labels"] and "customer_id" not in shown["labels"]
    finally:
        page.context.close()
