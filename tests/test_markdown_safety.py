"""Loaded text is always shown as text (issue 15, item 1).

A ticket topic, a customer name, an activity, a source, a campaign, a churn reason or an uploaded file's
name is written by whoever filled in the file (often the customer). The pages show them in markdown
sentences, headers, captions and charts; here they must show as typed: no link, no image fetched, no
emphasis, no LaTeX, no colour, no icon.

The unit tests check the escaping helpers against hostile strings; the browser test loads a store whose
values are hostile, opens every page as admin in Debian's Chromium with a local listener standing in
for the attacker's server, and checks that nothing was fetched, nothing links or points at it, and the
values appear literally.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import re
import shutil
import socket
import threading
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go
import pytest

from cxdash.ui.figures import escape_figure_text
from cxdash.ui.formatting import WORD_JOINER, plain, plot_text

HOSTILE = [
    "![p](http://127.0.0.1:9/pixel.png)",
    "[click](http://127.0.0.1:9/x)",
    "**bold** and __bold__ and *em* and _em_",
    "$x^2$ and $$\\int$$",
    ":red[alert] :blue-background[x] :material/home: :smile:",
    "<img src=http://127.0.0.1:9/i.png>",
    "<a href=http://127.0.0.1:9/a>a</a> &lt;b&gt; &#42;",
    "http://127.0.0.1:9/bare https://example.com WWW.example.com www.example.com",
    "ann@example.com",
    "# heading",
    "- item",
    "+ item",
    "1. item",
    "12) item",
    "> quote",
    "`code` ```fence```",
    "~~strike~~ ~single~",
    "| a | b |",
    "a\n===",
    "a\r\n---",
    "line\u2028break",
    "    indented code",
    "back\\slash \\*",
    "{curly} =eq= %pct% ^caret^ 'q' \"dq\" ?q ;s ,c /s",
]

PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _as_read(escaped: str) -> str:
    """What a markdown reader shows for ``escaped`` if every backslash escape is honoured: each
    ``\\`` + punctuation pair becomes the punctuation, word joiners are invisible."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", escaped).replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_shows_the_value_as_typed_on_one_line(text):
    expected = " ".join(re.split(r"[\r\n\u2028]+", text)).strip()  # line breaks fold to one space
    assert _as_read(plain(text)) == expected


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_leaves_no_markdown_character_unescaped(text):
    out = plain(text).replace(WORD_JOINER, "")
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert i + 1 < len(out) and out[i + 1] in PUNCTUATION, (text, out)
            i += 2
            continue
        assert out[i] not in PUNCTUATION, (text, out, i)
        i += 1
    assert "\n" not in out and "\r" not in out and not out.startswith(" ")


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_breaks_every_pattern_the_markdown_renderer_links_or_turns_into_icons(text):
    # Streamlit's markdown links these on the parsed text, after escapes are removed
    seen = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", plain(text))
    assert not re.search(r"https?://", seen, re.I)
    assert not re.search(r"(?<![\w\u2060])www\.", seen, re.I)
    assert not re.search(r"[\w.+-]@", seen)
    assert not re.search(r":[a-z]*/", seen, re.I)  # http://, :material/
    assert text.count(":") == seen.count(":")  # ":red[x]" and ":smile:" are left to the escapes


def test_plain_takes_any_value():
    assert _as_read(plain(None)) == "None"
    assert _as_read(plain(1.5)) == "1.5"
    assert _as_read(plain(ValueError("bad *value*"))) == "bad *value*"


@pytest.mark.parametrize("text", HOSTILE)
def test_plot_text_shows_tags_and_entities_as_typed(text):
    out = plot_text(text)
    assert "<" not in out and ">" not in out
    assert html.unescape(out) == text


def test_a_figure_s_data_labels_are_escaped_once_and_its_templates_are_not():
    fig = go.Figure(
        go.Bar(
            x=["<a href=http://h/x>x</a>", "a & b"],
            y=[1, 2],
            name="<b>dept</b>",
            hovertemplate="%{x}<br>%{y}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Sankey(node=dict(label=["<img src=http://h/i.png>", "plain"]), link=dict(source=[0], target=[1], value=[1]))
    )
    escape_figure_text(fig)
    escape_figure_text(fig)  # a memoised figure shown again is not escaped twice
    assert list(fig.data[0].x) == ["&lt;a href=http://h/x&gt;x&lt;/a&gt;", "a &amp; b"]
    assert fig.data[0].name == "&lt;b&gt;dept&lt;/b&gt;"
    assert list(fig.data[0].y) == [1, 2]
    assert fig.data[0].hovertemplate == "%{x}<br>%{y}<extra></extra>"
    assert list(fig.data[1].node.label) == ["&lt;img src=http://h/i.png&gt;", "plain"]


# ----------------------------------------------------------------------------- in a real browser
class _Listener(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _listener():
    """A local HTTP server standing in for the attacker's: yields (port, list of request paths)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = type("Recorder", (_Listener,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, handler.requests
    finally:
        server.shutdown()
        server.server_close()


def _payload(label: str, port: int) -> str:
    host = f"http://127.0.0.1:{port}"
    return (
        f"{label} ![p]({host}/pixel.png) [click]({host}/x) **bold** $x^2$ :red[alert] :material/home: "
        f":smile: <img src={host}/i.png> <a href={host}/a>a</a>"
    )


HOSTILE_ID = "HX-0"
N_HOSTILE = 30  # enough customers for every group to be shown (the page's floor is smaller)


def _hostile_files(root, port: int, start: pd.Timestamp) -> dict[str, tuple[object, dict]]:
    """CSV extracts whose names, topics, activities, departments, campaign, plan, segment and churn
    reason are hostile: ``{source name: (path, mapping)}``."""
    ids = [f"HX-{i}" for i in range(N_HOSTILE)]
    crm = pd.DataFrame(
        {
            "customer_id": ids,
            "name": [_payload("Name", port)] + [f"Hostile customer {i}" for i in range(1, N_HOSTILE)],
            "signup_date": [(start - pd.Timedelta(days=100 + i)).date() for i in range(N_HOSTILE)],
            "campaign": _payload("Campaign", port),
            "plan": _payload("Plan", port),
            "segment": _payload("Segment", port),
        }
    )
    events = pd.DataFrame(
        [
            {
                "customer_id": c,
                "timestamp": start + pd.Timedelta(days=i % 20, hours=h),
                "activity": _payload("Activity", port) if h == 1 else "Visited pricing",
                "department": _payload("Dept", port),
            }
            for i, c in enumerate(ids)
            for h in (0, 1, 2)
        ]
    )
    tickets = pd.DataFrame(
        [
            {
                "ticket_id": f"HT-{i}",
                "customer_id": c,
                "opened_at": start + pd.Timedelta(days=i % 20, hours=5),
                "topic": _payload("Topic", port),
                "department": _payload("Team", port),
            }
            for i, c in enumerate(ids)
        ]
    )
    churn = pd.DataFrame(
        {
            "customer_id": [HOSTILE_ID],
            "churned_at": [start + pd.Timedelta(days=25)],
            "reason": [_payload("Reason", port)],
        }
    )
    out = {}
    for name, frame, kind, columns in (
        ("crm_hostile", crm, "customers", {c: c for c in crm.columns}),
        (_payload("Source", port), events, "events", {c: c for c in events.columns}),
        ("helpdesk_hostile", tickets, "tickets", {c: c for c in tickets.columns}),
        ("churn_hostile", churn, "churn", {c: c for c in churn.columns}),
    ):
        path = root / f"{kind}.csv"
        frame.to_csv(path, index=False)
        out[name] = (path, {"kind": kind, "columns": columns})
    return out


@pytest.fixture(scope="module")
def hostile_app(trained_demo, tmp_path_factory):
    """The trained demo store plus the hostile extracts (and a model retrained so the hostile customers
    are scored), served by the real app; yields the app URL, the listener's port and its requests."""
    from tests.browser_support import chromium, require_browser, running_app

    require_browser()
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from cxdash.risk import data_as_of
    from cxdash.risk.training import train
    from cxdash.store.database import open_store

    root = tmp_path_factory.mktemp("hostile_markdown")
    path = root / "hostile.duckdb"
    shutil.copy(trained_demo["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    with _listener() as (port, requests):
        store = open_store(url)
        with store.connect() as conn:
            start = pd.Timestamp(data_as_of(conn)).normalize() - pd.Timedelta(days=40)
        for source, (csv, mapping) in _hostile_files(root, port, start).items():
            if mapping["kind"] == "churn":  # after the retrain: the demo's churn definition stays the one trained on
                train(store)
            ingest_file(store, csv, source=source, mapping=Mapping.from_dict(json.loads(json.dumps(mapping))))
        store.dispose()
        with running_app(url, root / "server.log") as app, chromium() as browser:
            yield {"app": app, "port": port, "requests": requests, "browser": browser, "root": root}


def _open(ctx, path: str, ready: str):
    from tests.browser_support import sign_in

    ctx["requests"].clear()  # each page is judged on what it fetched itself
    page = ctx["browser"].new_page(viewport={"width": 1440, "height": 1200})
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(f"{ctx['app']}/{path}", wait_until="networkidle")
    sign_in(page)
    page.get_by_text(ready).first.wait_for(timeout=120_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2500)  # charts and late fragments
    return page, fetched


def _seen(page) -> str:
    """Every text node of the page (SVG chart text included), as the reader sees it."""
    return page.evaluate("document.body.textContent").replace(WORD_JOINER, "")


def _assert_inert(ctx, page, fetched: list[str]) -> None:
    host = f"127.0.0.1:{ctx['port']}"
    assert ctx["requests"] == [], f"the page fetched the attacker's address: {ctx['requests']}"
    assert not [u for u in fetched if host in u or re.search(r"/(pixel|i)\.png$|/[xa]$", u)]
    pointing = page.evaluate(
        """host => [...document.querySelectorAll('*')].flatMap(el => [...el.attributes]
             .filter(a => /(^|:)(href|src|srcset|action|data)$/i.test(a.name) && a.value.includes(host))
             .map(a => el.tagName + ' ' + a.name + '=' + a.value))""",
        host,
    )
    assert pointing == [], pointing
    assert page.locator(".katex").count() == 0  # no $...$ turned into LaTeX
    assert "Traceback" not in page.content()


PAGES = [
    ("", "customers joined across"),
    ("executive", "Trends"),
    ("journeys", "Friction hotspots"),
    ("at_risk", "Customers, highest risk"),
    ("model", "What drives churn"),
    ("data_health", "Churn definition"),
    ("admin", "Audit log"),
]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize(("path", "ready"), PAGES, ids=[p or "overview" for p, _ in PAGES])
def test_hostile_values_fetch_nothing_and_link_nowhere_on_every_page(hostile_app, artifacts, path, ready):
    page, fetched = _open(hostile_app, path, ready)
    _assert_inert(hostile_app, page, fetched)
    if path == "journeys":
        # the hostile step (30 customers of thousands) as the anchor of "Paths around one step": its
        # name is the sankey's middle node and the selector's value
        step = page.get_by_role("combobox", name="Step")
        step.click()
        page.keyboard.type("Activity ![p]")
        page.keyboard.press("Enter")
        page.get_by_text("Paths around one step").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(4000)
        _assert_inert(hostile_app, page, fetched)
        page.screenshot(path=str(artifacts / "hostile_journeys.png"), full_page=True)
        seen = _seen(page)
        assert _payload("Activity", hostile_app["port"]) in seen  # the step's name, as typed
    page.close()


@pytest.mark.browser
def test_the_customer_card_shows_a_hostile_name_topic_and_reason_as_typed(hostile_app, artifacts):
    port = hostile_app["port"]
    page, fetched = _open(hostile_app, "customer_card", "Find a customer")
    page.get_by_label("Find a customer by name, email, phone or any id").fill(HOSTILE_ID)
    page.keyboard.press("Enter")
    page.get_by_text("What they already told us").wait_for(timeout=120_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(artifacts / "hostile_customer_card.png"), full_page=True)
    _assert_inert(hostile_app, page, fetched)
    header = page.locator('[data-testid="stHeading"] h2').first.inner_text().replace(WORD_JOINER, "")
    assert header == _payload("Name", port)
    seen = _seen(page)
    assert f"were about {_payload('Topic', port)} (1×)" in seen
    assert f"reason: {_payload('Reason', port)}." in seen
    assert "**bold**" in seen and ":red[alert]" in seen and "$x^2$" in seen
    page.close()


@pytest.mark.browser
def test_an_uploaded_file_s_hostile_name_and_a_hostile_source_name_show_as_typed(hostile_app, artifacts):
    port = hostile_app["port"]
    page, fetched = _open(hostile_app, "upload", "Drop one or more CSV extracts")
    name = "**bold** $x^2$ :red[alert] [click](x) ![p](pixel.png) <img src=i.png>.csv"
    path = hostile_app["root"] / "upload" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("customer_id,timestamp,activity,department\nHX-1,2025-06-03,Visited pricing,web\n")
    page.locator('input[type="file"]').set_input_files(str(path))
    page.get_by_text("Choose the kind of extract above").wait_for(timeout=120_000)
    source = page.get_by_role("textbox", name="Source name")
    source.fill(_payload("Source", port))  # a loaded source: its saved mapping is named in a caption
    source.press("Enter")
    page.get_by_text("has a saved mapping of kind events").wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2000)
    page.screenshot(path=str(artifacts / "hostile_upload.png"), full_page=True)
    _assert_inert(hostile_app, page, fetched)
    seen = _seen(page)
    assert f"{name}: 4 columns" in seen
    assert f"Source '{_payload('Source', port)}' has a saved mapping" in seen
    page.close()


def test_the_hotspot_owner_note_escapes_a_department_code_from_a_file():
    import pandas as pd

    from cxdash.ui import journeys as ju

    spots = pd.DataFrame({"leaked_department": ["*team*[x](http://evil)"]})
    owners = pd.DataFrame({"name": ["crm"], "department": ["sales"], "owner": ["sales"]})
    note = ju.owners_note(spots, owners)
    assert "*team*" not in note and "](http" not in note
    assert r"\*team\*" in note
