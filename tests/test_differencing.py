"""Small groups do not leak by differencing (issue 15, item 2).

The attack: on Shared KPIs an executive compared ``campaign=X & plan=Y`` (21 customers) with the
same view restricted to four of its five regions (20 customers) and read the one customer left
out (alone in the fifth region) by subtraction. The store below is built by hand so that every
count in the assertions can be read off its construction.

k is 5 here (``CXDASH_MIN_GROUP_SIZE`` / an explicit k), so the four big regions (5 customers each)
are shown on their own and only the lone customer is at risk.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cxdash.governance import privacy
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.metrics import Filters
from cxdash.store.database import open_store
from tests.conftest import seed_session

REPO = Path(__file__).resolve().parents[1]
K = 5
FOUR = ("R1", "R2", "R3", "R4")


def _customers() -> pd.DataFrame:
    rows = []
    # The attacked group: campaign X & plan Y, 5 customers in each of R1..R4 and one alone in R5.
    for region in FOUR:
        rows += [("X", "Y", region)] * 5
    rows.append(("X", "Y", "R5"))  # the lone customer, c020
    rows += [("Z", "Y", f"R{1 + i % 5}") for i in range(10)]  # what the campaign filter removes: 10
    rows += [("X", "W", f"R{1 + i % 5}") for i in range(10)]  # what the plan filter removes: 10
    frame = pd.DataFrame(rows, columns=["campaign", "plan", "region"])
    frame.insert(0, "id", [f"c{i:03d}" for i in range(len(frame))])
    frame["signup"] = "2024-01-15"
    return frame


@pytest.fixture(scope="module")
def attack_url(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("differencing")
    customers = _customers()
    customers.to_csv(root / "crm.csv", index=False)
    tx = pd.DataFrame(
        {"cust": customers["id"], "when": "2024-03-01", "amount": [1000.0 + i for i in range(len(customers))]}
    )
    tx.to_csv(root / "billing.csv", index=False)
    url = f"duckdb:///{root / 'attack.duckdb'}"
    store = open_store(url)
    ingest_file(
        store,
        root / "crm.csv",
        source="crm",
        mapping=Mapping.from_dict(
            {
                "kind": "customers",
                "columns": {
                    "customer_id": "id",
                    "campaign": "campaign",
                    "plan": "plan",
                    "region": "region",
                    "signup_date": "signup",
                },
            }
        ),
    )
    ingest_file(
        store,
        root / "billing.csv",
        source="billing",
        mapping=Mapping.from_dict(
            {"kind": "transactions", "columns": {"customer_id": "cust", "timestamp": "when", "amount": "amount"}}
        ),
    )
    store.dispose()
    return url


def _check(url: str, filters: Filters, k: int | None = K) -> privacy.DifferencingCheck:
    store = open_store(url)
    try:
        with store.connect() as conn:
            return privacy.differencing_check(conn, filters, k)
    finally:
        store.dispose()


VIEW_A = Filters(campaign=("X",), plan=("Y",))
VIEW_B = Filters(campaign=("X",), plan=("Y",), region=FOUR)


def test_the_campaign_and_plan_view_of_21_customers_is_shown(attack_url):
    check = _check(attack_url, VIEW_A)
    assert check.allowed
    assert check.customers == 21
    # campaign X removes the 10 of campaign Z; plan Y removes the 10 of plan W
    assert check.complements == {"campaign": 10, "plan": 10}


def test_four_of_five_regions_is_refused_because_it_removes_one_customer(attack_url):
    check = _check(attack_url, VIEW_B)
    assert not check.allowed
    assert check.customers == 20
    assert check.complements["region"] == 1
    assert [(r.dimension, r.kind, r.customers) for r in check.refusals] == [("region", "complement", 1)]


def test_the_lone_region_on_its_own_is_refused(attack_url):
    check = _check(attack_url, Filters(campaign=("X",), plan=("Y",), region=("R5",)))
    assert not check.allowed
    assert (None, "view", 1) in [(r.dimension, r.kind, r.customers) for r in check.refusals]


def test_a_filter_that_removes_nobody_is_allowed(attack_url):
    # all five regions: the region filter removes no one from campaign X & plan Y
    check = _check(attack_url, Filters(campaign=("X",), plan=("Y",), region=(*FOUR, "R5")))
    assert check.complements["region"] == 0
    assert check.customers == 21
    assert check.allowed


def test_several_kept_values_each_need_k_customers(attack_url):
    # "R1, R5" minus "R1" would give R5's customer away: R5 kept inside a wider set is refused
    # (view 6 and complement 15 are both fine: only the per-value rule catches it)
    check = _check(attack_url, Filters(campaign=("X",), plan=("Y",), region=("R1", "R5")))
    assert not check.allowed
    assert [(r.dimension, r.values, r.customers) for r in check.refusals if r.kind == "value"] == [
        ("region", ("R5",), 1)
    ]


def test_a_role_that_sees_individuals_sees_both_views(attack_url):
    for role in ("admin", "agent"):
        k = privacy.min_group_size() if privacy.hides_small_groups(role) else None
        assert k is None
        assert _check(attack_url, VIEW_A, k).allowed
        assert _check(attack_url, VIEW_B, k).allowed
    assert privacy.hides_small_groups("executive") and privacy.hides_small_groups("ops")


def _page(url: str, role: str, filters: dict[str, list[str]], monkeypatch) -> AppTest:
    monkeypatch.setenv("CXDASH_DB_URL", url)
    monkeypatch.setenv("CXDASH_MIN_GROUP_SIZE", str(K))
    at = AppTest.from_file(str(REPO / "pages" / "executive.py"), default_timeout=120)
    seed_session(at, f"test-{role}", role)
    for name, values in filters.items():
        at.query_params[name] = values
    return at.run()


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.warning, *at.info, *at.caption, *at.error])


def test_the_executive_page_refuses_view_b_in_words_and_shows_no_figure(attack_url, monkeypatch):
    at = _page(attack_url, "executive", {"campaign": ["X"], "plan": ["Y"], "region": list(FOUR)}, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.metric) == 0
    warning = " ".join(w.value for w in at.warning)
    assert "cannot be shown" in warning
    assert "Region filter" in warning and "removes only 1 customer" in warning
    assert "Drop the Region filter" in warning
    assert "R1, R2, R3, R4" in warning  # the values, escaped for markdown, read the same
    # the lone customer's revenue (1020) appears nowhere
    assert "1,020" not in _texts(at) and "1020" not in _texts(at)


def test_the_executive_page_shows_view_a(attack_url, monkeypatch):
    at = _page(attack_url, "executive", {"campaign": ["X"], "plan": ["Y"]}, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("cannot be shown" in w.value for w in at.warning)
    assert len(at.metric) > 0


def test_an_admin_sees_view_b_on_the_page(attack_url, monkeypatch):
    at = _page(attack_url, "admin", {"campaign": ["X"], "plan": ["Y"], "region": list(FOUR)}, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("cannot be shown" in w.value for w in at.warning)
    assert len(at.metric) > 0


def test_the_refusal_names_filter_values_as_text_never_as_markdown():
    from cxdash.ui.executive import refusal_text

    check = privacy.DifferencingCheck(
        K, 20, {"region": 1}, (privacy.Refusal("region", ("![p](http://h/x.png)",), 1, "complement"),)
    )
    text = refusal_text(check)
    # every punctuation character escaped by a backslash, and a word joiner (U+2060) after the
    # scheme's colon so no autolink forms (written out by hand)
    assert r"\!\[p\]\(http\:" + "\u2060" + r"\/\/h\/x\.png\)" in text, text
    assert "![p](" not in text
