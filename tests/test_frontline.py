"""The front line's path (issue 16): the demo comes with a churn model, the card finds a customer by
name, email, phone or any id, contact details are shown in full to the roles whose job needs them,
a mark made on the card shows on the card and in the at-risk list at once, and in a real browser
an agent opens the top at-risk customer's card from the list and marks them contacted."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cxdash.cli.main import main
from cxdash.governance import privacy
from cxdash.risk import at_risk, card, follow_up, model_versions
from cxdash.store.database import open_store
from tests.conftest import seed_session

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "pages"


@pytest.fixture(scope="module")
def crm(demo_store) -> pd.DataFrame:
    """The demo's CRM extract as written (read with pandas, apart from the code under test)."""
    return pd.read_csv(demo_store["dir"] / "crm_customers.csv", dtype=str)


@pytest.fixture
def conn(demo_store):
    s = open_store(demo_store["url"])
    with s.connect() as c:
        yield c
    s.dispose()


def _copy(url: str, tmp_path: Path, name: str = "copy.duckdb") -> str:
    """A private copy of a shared store, so marks and models made here do not leak into other tests."""
    path = tmp_path / name
    shutil.copy(url.removeprefix("duckdb:///"), path)
    return f"duckdb:///{path}"


# ----------------------------------------------------------------------------- search
def test_a_name_search_is_a_case_insensitive_substring_of_the_crm_name(conn, crm):
    expected = set(crm.loc[crm["Full Name"].str.lower().str.contains("abbott", regex=False), "CustomerID"])
    assert len(expected) > 1  # the demo has several Abbotts: the test means something
    found = card.find_customers(conn, "abbott", limit=10_000)
    assert set(found["customer_id"]) == expected
    assert set(found["matched"]) == {"name"}
    assert set(card.find_customers(conn, "ABBOTT", limit=10_000)["customer_id"]) == expected


def test_a_search_returns_at_most_the_limit(conn, crm):
    n = int(crm["Full Name"].str.lower().str.contains("a", regex=False).sum())
    assert n > 20
    assert len(card.find_customers(conn, "a", limit=20)) == 20


def test_an_email_in_any_case_finds_its_customer(conn, crm):
    row = crm.dropna(subset=["Email"]).iloc[17]
    found = card.find_customers(conn, row["Email"].upper())
    assert found["customer_id"].tolist() == [row["CustomerID"]] and found["matched"].iloc[0] == "email"


def test_a_phone_matches_by_its_digits_in_any_format(conn, crm):
    row = crm.dropna(subset=["Phone"]).iloc[23]
    digits = re.sub(r"\D", "", row["Phone"])[-10:]
    spaced = f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}"
    for typed in (spaced, digits, f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"):
        found = card.find_customers(conn, typed)
        assert row["CustomerID"] in found["customer_id"].tolist(), typed
        assert found.set_index("customer_id").loc[row["CustomerID"], "matched"] == "phone"


def test_any_stitched_id_finds_the_customer(conn, crm, demo_store):
    row = crm.dropna(subset=["Billing Account"]).iloc[5]
    by_account = card.find_customers(conn, row["Billing Account"])
    assert by_account["customer_id"].tolist() == [row["CustomerID"]] and by_account["matched"].iloc[0] == "account_id"
    by_id = card.find_customers(conn, row["CustomerID"])
    assert by_id["customer_id"].tolist() == [row["CustomerID"]] and by_id["matched"].iloc[0] == "customer_id"
    # a customer id typed in lower case still finds it (as a prefix match)
    assert row["CustomerID"] in card.find_customers(conn, row["CustomerID"].lower())["customer_id"].tolist()

    # a web visitor id that signed in with exactly one customer's email is stitched to that customer
    web = pd.read_csv(demo_store["dir"] / "web_events.csv", dtype=str).dropna(subset=["cookie_id", "user_email"])
    emails = web.groupby("cookie_id")["user_email"].agg(lambda e: set(e.str.lower()))
    owners = crm.assign(email=crm["Email"].str.lower()).groupby("email")["CustomerID"].agg(set)
    cookie, email = next(
        (c, next(iter(e))) for c, e in emails.items() if len(e) == 1 and len(owners.get(next(iter(e)), ())) == 1
    )
    by_visitor = card.find_customers(conn, cookie)
    assert by_visitor["customer_id"].tolist() == list(owners[email]) and by_visitor["matched"].iloc[0] == "visitor_id"


def test_the_customer_key_itself_finds_an_anonymous_visitor(conn):
    import sqlalchemy as sa

    from cxdash.store.database import customer_keys_table

    key = conn.execute(
        sa.select(customer_keys_table.c.cx_id).where(customer_keys_table.c.cx_id.like("visitor_id:%")).limit(1)
    ).scalar()
    found = card.find_customers(conn, key)
    assert found["cx_id"].tolist() == [key] and found["matched"].tolist() == ["cx_id"]
    assert found["name"].isna().all()  # no CRM record: no name, and the card says "—"


def test_like_wildcards_in_a_query_are_taken_literally(conn, crm):
    assert not crm["Full Name"].str.contains("_", regex=False).any()
    assert card.find_customers(conn, "_").empty
    assert card.find_customers(conn, "%").empty


def test_search_reads_the_same_on_every_backend(store, tmp_path):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping

    (tmp_path / "crm.csv").write_text(
        "id,full_name,mail,tel\n"
        "C1,Ann Abbott,Ann.Abbott@Example.com,+1 (555) 123-4567\n"
        "C2,Bob ABBOTTSON,bob@example.com,555.987.6543\n"
        "C3,Cy 50%_off,cy@example.com,\n"
    )
    mapping = {"customer_id": "id", "name": "full_name", "email": "mail", "phone": "tel"}
    ingest_file(store, tmp_path / "crm.csv", source="crm", mapping=Mapping("customers", mapping))
    with store.connect() as c:

        def ids(q):
            return sorted(card.find_customers(c, q)["customer_id"])

        assert ids("abbott") == ["C1", "C2"]  # any case, anywhere in the name
        assert ids("ann.abbott@example.com") == ["C1"] and ids("ANN.ABBOTT@EXAMPLE.COM") == ["C1"]
        assert ids("+1 555 123 4567") == ["C1"] and ids("5551234567") == ["C1"] and ids("555-987-6543") == ["C2"]
        assert ids("c2") == ["C2"]  # a customer id in another case (prefix)
        assert ids("%_") == ["C3"]  # wildcards are literal: only the name that holds "%_"
        assert ids("nobody") == []


# ----------------------------------------------------------------------------- contact details by role
@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agents_and_admins_see_email_and_phone_in_full(conn, crm, role):
    row = crm.dropna(subset=["Email", "Phone"]).iloc[3]
    cx_id = card.find_customers(conn, row["CustomerID"])["cx_id"].iloc[0]
    prof = card.profile(conn, cx_id, mask=not privacy.sees_personal_data(role))
    assert prof["email"] == row["Email"].lower() or prof["email"] == row["Email"]
    assert re.sub(r"\D", "", prof["phone"])[-10:] == re.sub(r"\D", "", row["Phone"])[-10:]


@pytest.mark.parametrize("role", ["executive", "journey_owner", "ops"])
def test_the_aggregate_roles_get_masked_contact_details(conn, crm, role):
    row = crm.dropna(subset=["Email", "Phone"]).iloc[3]
    cx_id = card.find_customers(conn, row["CustomerID"])["cx_id"].iloc[0]
    prof = card.profile(conn, cx_id, mask=not privacy.sees_personal_data(role))
    local, domain = row["Email"].lower().split("@")
    assert prof["email"] == f"{local[0]}***@{domain}"
    assert prof["phone"] == "***" + re.sub(r"\D", "", row["Phone"])[-2:]


@pytest.fixture
def trained_copy(trained_demo, tmp_path, monkeypatch):
    url = _copy(trained_demo["url"], tmp_path, "marks.duckdb")
    monkeypatch.setenv("CXDASH_DB_URL", url)
    return {**trained_demo, "url": url}


def _card_as(role: str, cx_id: str | None = None, query: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / "customer_card.py"), default_timeout=120)
    seed_session(at, f"front-{role}", role)
    if cx_id is not None:
        at.session_state["card_customer"] = cx_id
    if query is not None:
        at.session_state["card_query"] = query
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_card_shows_an_agent_the_email_and_phone_in_full_with_the_consent_beside_them(trained_copy):
    crm = pd.read_csv(trained_copy["dir"] / "crm_customers.csv", dtype=str)
    row = crm.dropna(subset=["Email", "Phone"]).iloc[40]
    at = _card_as("agent", query=row["Email"])
    texts = [t.value for t in at.text]
    assert f"Email: {row['Email'].lower()}" in texts
    assert any(t.startswith("Phone: ") and re.sub(r"\D", "", t)[-10:] == row["Phone"][-10:] for t in texts)
    consent = {"yes": "yes", "no": "no"}.get(str(row["Marketing Opt-In"]).lower(), "unknown")
    assert f"Marketing consent: {consent}" in texts
    assert at.header[0].value == row["Full Name"]


# ----------------------------------------------------------------------------- marks reach list and card
def test_a_mark_on_the_card_shows_on_the_card_and_in_the_list_at_once(trained_copy):
    store = open_store(trained_copy["url"])
    top = at_risk(store, limit=1)
    store.dispose()
    cx_id, customer_id = top["cx_id"].iloc[0], top["customer_id"].iloc[0]

    listing = AppTest.from_file(str(PAGES / "at_risk.py"), default_timeout=120)
    seed_session(listing, "front-agent", "agent")
    listing.run()  # fills the cached list with the customer still open
    table = listing.dataframe[0].value.set_index("customer id")
    assert table.loc[customer_id, "status"] == "open"

    at = _card_as("agent", cx_id=cx_id)
    assert {m.label: m.value for m in at.metric}["Follow-up status"] == "open"
    at.button(key="card_mark_contacted").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Follow-up status"] == "contacted"
    # the signed-in user, never typed (captions hold markdown: the name is escaped)
    assert any("by front-agent" in c.value.replace("\\", "") for c in at.caption)
    assert any("as contacted" in s.value for s in at.success)  # the message outlives the rerun

    store = open_store(trained_copy["url"])
    logged = follow_up(store, cx_id)
    store.dispose()
    assert logged["status"] == "contacted" and logged["actor"] == "front-agent"

    listing.run()
    table = listing.dataframe[0].value.set_index("customer id")
    assert table.loc[customer_id, "status"] == "contacted"
    assert {m.label: m.value for m in listing.metric}["Contacted"] == "1"


def test_the_list_shows_name_value_with_period_and_currency_reason_and_action(trained_copy):
    crm = pd.read_csv(trained_copy["dir"] / "crm_customers.csv", dtype=str).set_index("CustomerID")
    listing = AppTest.from_file(str(PAGES / "at_risk.py"), default_timeout=120)
    seed_session(listing, "front-agent", "agent")
    listing.run()
    assert not listing.exception
    table = listing.dataframe[0].value
    assert list(table.columns) == [
        "customer",
        "customer id",
        "risk",
        "12-month value (USD)",
        "top reason",
        "next best action · owner",
        "status",
    ]
    assert list(table["customer"]) == list(crm.loc[table["customer id"], "Full Name"])
    store = open_store(trained_copy["url"])
    top = at_risk(store, limit=100_000)
    store.dispose()
    assert list(table["risk"]) == [round(r * 100) for r in top["risk"]]
    assert list(table["12-month value (USD)"]) == [round(v) for v in top["value"]]
    assert list(table["top reason"]) == [r[0]["label"] for r in top["reasons"]]
    # the owning department spelled out after the action (the house's names, written out here)
    names = {"support": "Customer support", "web": "Web / digital", "billing": "Billing", "sales": "Sales"}
    names["marketing"] = "Marketing"
    assert list(table["next best action · owner"]) == [
        f"{a} · {names[d]} ({d})" for a, d in zip(top["action"], top["department"], strict=True)
    ]
    shown = table.astype(str).to_string()
    assert "None" not in shown and "nan" not in shown
    at_stake = (top["risk"] * top["value"]).sum()  # the list's expected revenue at risk, by hand
    assert f"{at_stake / 1e3:,.1f} k USD" in listing.markdown[0].value


# ----------------------------------------------------------------------------- no model yet
def test_without_a_model_an_agent_is_told_to_ask_an_admin(demo_store, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", demo_store["url"])
    for page in ("at_risk.py", "customer_card.py"):
        at = AppTest.from_file(str(PAGES / page), default_timeout=120)
        seed_session(at, "front-agent", "agent")
        at.run()
        assert not at.exception
        assert "Ask an admin to train the churn model" in at.info[0].value, page
        assert not [b for b in at.button if b.label == "Open the Churn model page"]


def test_without_a_model_an_admin_gets_the_way_to_the_churn_model_page(demo_store, monkeypatch):
    monkeypatch.setenv("CXDASH_DB_URL", demo_store["url"])
    at = AppTest.from_file(str(PAGES / "at_risk.py"), default_timeout=120)
    at.run()  # conftest signs AppTests in as an admin
    assert not at.exception
    assert "Train the first one on the Churn model page" in at.info[0].value
    assert [b.label for b in at.button] == ["Open the Churn model page"]


# ----------------------------------------------------------------------------- the demo trains its model
def test_train_if_missing_trains_once_and_then_leaves_the_model_alone(demo_store, tmp_path, capsys):
    url = _copy(demo_store["url"], tmp_path)
    assert main(["--db", url, "train", "--if-missing"]) == 0
    out = capsys.readouterr()
    assert "model version 1" in out.out
    assert "Scoring today's customers" in out.err and "trained in" in out.err  # progress on the terminal
    assert main(["--db", url, "train", "--if-missing"]) == 0
    assert "exists; not retrained" in capsys.readouterr().out
    store = open_store(url)
    assert list(model_versions(store)["version"]) == [1]
    assert len(at_risk(store, limit=10)) > 0  # the at-risk list has customers to show
    store.dispose()


def test_the_demo_says_so_when_it_is_too_small_to_train_and_still_succeeds(tmp_path, capsys):
    url = f"duckdb:///{tmp_path / 'small.duckdb'}"
    assert main(["--db", url, "demo", "--customers", "300", "--seed", "3", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr()
    assert "300 customers" in out.out and "training the first churn model" in out.out
    assert "no churn model was trained" in out.err
    store = open_store(url)
    assert model_versions(store).empty
    store.dispose()
    assert main(["--db", url, "demo", "--if-empty", "--no-train", "--out", str(tmp_path / "x")]) == 0
    assert "training" not in capsys.readouterr().out


# The agent's trip in a real browser (open the top customer from the list, mark them contacted, see the
# list follow) is step 3 of the first-visit tour: tests/test_tour.py.
