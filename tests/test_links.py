"""Links between extracts, on a hand-built SaaS company (tests/fixtures/saas).

Five departments' exports: CRM accounts, billing subscriptions, support tickets keyed by
account, and a product-usage log that knows only the subscription id. Expected values are
computed here with plain pandas joins on the fixture files, not read from cxdash.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.cli.main import main
from cxdash.governance.health import stitch_coverage
from cxdash.governance.sources import department_owners, set_source_owner, source_owners
from cxdash.identity.links import LinkError, match_rates, parse_link, suggest_links
from cxdash.ingest.load import IngestError, ingest_file
from cxdash.ingest.mapping import Mapping, MappingError
from cxdash.metrics.timeline import timeline
from cxdash.store import audit
from cxdash.store.database import (
    KIND_TABLES,
    customer_keys_table,
    link_conflicts_table,
    source_links_table,
    sources_table,
)
from tests.conftest import FIXTURES

SAAS = FIXTURES / "saas"
# The mappings a person would write for these exports (tests/fixtures/saas/*.mapping.json);
# usage declares its subscription_id column a link to the "subs" source.
ACCOUNTS, SUBSCRIPTIONS, TICKETS, USAGE = (
    json.loads((SAAS / f"{name}.mapping.json").read_text())
    for name in ("accounts", "subscriptions", "tickets", "feature_usage")
)


def csv(name: str) -> pd.DataFrame:
    return pd.read_csv(SAAS / name, dtype=str, keep_default_na=False).replace("", pd.NA)


def load_company(store, *, usage: bool = True):
    ingest_file(store, SAAS / "accounts.csv", source="crm", mapping=Mapping.from_dict(ACCOUNTS))
    ingest_file(store, SAAS / "subscriptions.csv", source="subs", mapping=Mapping.from_dict(SUBSCRIPTIONS))
    ingest_file(store, SAAS / "tickets.csv", source="helpdesk", mapping=Mapping.from_dict(TICKETS))
    if usage:
        return ingest_file(
            store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(USAGE), department="product"
        )
    return None


def customer_of_rows(conn, source: str) -> pd.DataFrame:
    """``row_number, cx_id`` of every stored row of ``source`` (events), cx_id None when unmatched."""
    t, ck = KIND_TABLES["events"], customer_keys_table
    q = (
        sa.select(t.c.row_number, ck.c.cx_id)
        .select_from(t.outerjoin(ck, ck.c.cx_key == t.c.cx_key))
        .where(t.c.source == source)
        .order_by(t.c.row_number)
    )
    return pd.DataFrame([tuple(r) for r in conn.execute(q)], columns=["row_number", "cx_id"], dtype=object)


def expected_usage_accounts() -> pd.Series:
    """Each usage row's account by a plain join: a subscription id the extract repeats keeps its
    first line (the subscriptions kind's natural key), as a person reading the file top-down would."""
    usage = csv("feature_usage.csv")
    subs = csv("subscriptions.csv").drop_duplicates("subscription_id", keep="first")
    joined = usage.merge(subs[["subscription_id", "account_id"]], on="subscription_id", how="left")
    joined.index = joined.index + 2  # file line of each row (header is line 1)
    return joined["account_id"]


def test_every_usage_row_keyed_by_subscription_reaches_its_account(store):
    result = load_company(store)
    expected = expected_usage_accounts()
    with store.connect() as conn:
        got = customer_of_rows(conn, "usage").set_index("row_number")["cx_id"]
    assert len(got) == len(expected) == 18
    for line, account in expected.items():
        assert (got[line] if pd.notna(got[line]) else None) == (account if pd.notna(account) else None), line
    per_account = expected.dropna().value_counts().sort_index()
    assert got.dropna().value_counts().sort_index().to_dict() == per_account.to_dict()
    # the load says how its linked rows fared: 17 rows carry a subscription id, S99 is unknown
    usage = csv("feature_usage.csv")
    carried = int(usage["subscription_id"].notna().sum())
    known = int(usage["subscription_id"].isin(csv("subscriptions.csv")["subscription_id"]).sum())
    assert result.links == {"linked": carried, "matched": known, "ambiguous": 0, "unknown": carried - known}
    assert result.links["unknown"] == 1


def test_an_unknown_subscription_id_stays_unmatched_and_is_counted_in_stitch_coverage(store):
    load_company(store)
    with store.connect() as conn:
        cov = stitch_coverage(conn)
    usage = cov[cov["source"] == "usage"].set_index(["matched_via", "status"])["rows"].to_dict()
    assert usage[("link", "crm customer")] == 16
    assert usage[("link", "unmatched link")] == 1  # S99
    assert usage[("none", "anonymous")] == 1  # the row without any key


def test_the_match_rate_suggestion_equals_the_true_overlap(store):
    load_company(store, usage=False)
    usage = csv("feature_usage.csv")
    subs = csv("subscriptions.csv")
    values = usage["subscription_id"].dropna()
    true_rate = values.isin(subs["subscription_id"]).mean()
    suggestions = suggest_links(store, usage)
    best = suggestions[0]
    assert (best.column, best.source, best.field) == ("subscription_id", "subs", "subscription_id")
    assert best.total == len(values) and best.matched == int(values.isin(subs["subscription_id"]).sum())
    assert best.match_rate == pytest.approx(true_rate)
    assert [s.column for s in suggestions] == ["subscription_id"]  # usage ids, dates, counts match nothing
    declared = match_rates(store, usage, USAGE["links"])
    assert declared[0].match_rate == pytest.approx(true_rate)


def test_a_subscription_id_reused_by_a_second_account_merges_nobody(store):
    load_company(store)
    with store.connect() as conn:
        ck = customer_keys_table
        known = sorted(r[0] for r in conn.execute(sa.select(ck.c.cx_id).where(ck.c.known.is_(True))))
    assert known == sorted(csv("accounts.csv")["account_id"])  # A3 and A4 are still two customers


def test_an_order_id_on_two_accounts_leaves_its_lines_unmatched_and_counted(store, tmp_path):
    ingest_file(store, SAAS / "accounts.csv", source="crm", mapping=Mapping.from_dict(ACCOUNTS))
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,account_id,ordered_at,amount\nO1,A1,2024-05-01,10\nO2,A2,2024-05-02,20\n"
        "O3,A3,2024-05-03,30\nO3,A4,2024-05-03,31\n"
    )
    lines = tmp_path / "lines.csv"
    lines.write_text(
        "line_id,order_id,added_at,product\nL1,O1,2024-05-01,pen\nL2,O1,2024-05-01,ink\n"
        "L3,O2,2024-05-02,pad\nL4,O3,2024-05-03,desk\nL5,O3,2024-05-03,lamp\n"
    )
    ingest_file(
        store,
        orders,
        source="orders",
        mapping=Mapping.from_dict(
            {
                "kind": "transactions",
                "columns": {
                    "transaction_id": "order_id",
                    "account_id": "account_id",
                    "timestamp": "ordered_at",
                    "amount": "amount",
                },
            }
        ),
    )
    result = ingest_file(
        store,
        lines,
        source="order_lines",
        links={"order_id": {"source": "orders", "field": "transaction_id"}},
        mapping=Mapping.from_dict({"kind": "events", "columns": {"timestamp": "added_at", "activity": "product"}}),
    )
    assert result.links == {"linked": 5, "matched": 3, "ambiguous": 2, "unknown": 0}
    with store.connect() as conn:
        got = [None if pd.isna(c) else c for c in customer_of_rows(conn, "order_lines")["cx_id"]]
        conflicts = [tuple(r) for r in conn.execute(sa.select(link_conflicts_table))]
        cov = stitch_coverage(conn)
        known = sorted(
            r[0]
            for r in conn.execute(sa.select(customer_keys_table.c.cx_id).where(customer_keys_table.c.known.is_(True)))
        )
    assert got == ["A1", "A1", "A2", None, None]
    assert conflicts == [("orders.transaction_id:O3", 2)]
    lines_cov = cov[cov["source"] == "order_lines"].set_index("status")["rows"].to_dict()
    assert lines_cov == {"crm customer": 3, "ambiguous link": 2}
    assert "A3" in known and "A4" in known  # the shared order id merged nobody


def test_a_file_without_identifier_or_link_is_refused_naming_the_link_to_declare(store):
    load_company(store, usage=False)
    bare = {k: v for k, v in USAGE.items() if k != "links"}
    with pytest.raises(MappingError, match=r"--link subscription_id=subs.subscription_id \(16 of 17 rows match, 94%\)"):
        ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(bare))
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["events"])).scalar() == 0


def test_without_any_loaded_key_to_link_to_the_message_says_to_map_an_identifier(store):
    bare = {k: v for k, v in USAGE.items() if k != "links"}
    with pytest.raises(MappingError, match=r"no column identifies the customer.*or declare a link column"):
        ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(bare))


def test_a_link_to_a_source_not_loaded_is_refused_with_the_fix(store):
    load_company(store, usage=False)
    wrong = {**USAGE, "links": {"subscription_id": {"source": "billing", "field": "subscription_id"}}}
    with pytest.raises(LinkError, match=r"no source named 'billing'.*crm.*helpdesk.*subs"):
        ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(wrong))
    wrong_field = {**USAGE, "links": {"subscription_id": {"source": "subs", "field": "account_id"}}}
    with pytest.raises(LinkError, match="linkable key is subscription_id"):
        ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(wrong_field))
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["events"])).scalar() == 0
        assert "usage" not in {r[0] for r in conn.execute(sa.select(sources_table.c.name))}


def test_parse_link_reads_column_source_and_field():
    assert parse_link("sub_ref=billing.eu.subscription_id") == (
        "sub_ref",
        {"source": "billing.eu", "field": "subscription_id"},
    )
    with pytest.raises(LinkError, match=r"COLUMN=SOURCE\.FIELD"):
        parse_link("sub_ref")


def test_the_cli_link_flag_loads_usage_through_subscriptions(duck, tmp_path, capsys):
    load_company(duck, usage=False)
    mapping = tmp_path / "usage.json"
    mapping.write_text(json.dumps({k: v for k, v in USAGE.items() if k != "links"}))
    url = duck.url
    duck.dispose()
    code = main(
        [
            "--db",
            url,
            "ingest",
            str(SAAS / "feature_usage.csv"),
            "--source",
            "usage",
            "--mapping",
            str(mapping),
            "--link",
            "subscription_id=subs.subscription_id",
            "--department",
            "product",
            "--owner",
            "Product analytics",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    # the CLI says how the link fared: 16 of the 17 rows with a subscription id matched, S99 did not
    assert "link subscription_id -> subs.subscription_id: 16 of the first 17 rows with a value match" in out
    assert "16 of 17 rows keyed only by a link reached a customer; 1 have a key the linked source does not hold" in out
    with duck.connect() as conn:
        got = customer_of_rows(conn, "usage")["cx_id"]
        owners = source_owners(conn).set_index("name")
    assert int(got.notna().sum()) == int(expected_usage_accounts().notna().sum()) == 16
    assert owners.loc["usage", "department"] == "product" and owners.loc["usage", "owner"] == "Product analytics"


# ----------------------------------------------------------------------------- department and owner


def test_department_and_owner_default_from_the_kind_and_survive_a_reload(store):
    load_company(store)
    with store.connect() as conn:
        owners = source_owners(conn).set_index("name")
    # kinds.py: customers -> sales, subscriptions -> billing, tickets -> support; usage was given "product"
    assert owners.loc["crm", ["department", "owner"]].tolist() == ["sales", "sales"]
    assert owners.loc["subs", ["department", "owner"]].tolist() == ["billing", "billing"]
    assert owners.loc["helpdesk", ["department", "owner"]].tolist() == ["support", "support"]
    assert owners.loc["usage", ["department", "owner"]].tolist() == ["product", "product"]
    set_source_owner(store, "helpdesk", owner="Tier-2 lead (Maya)", actor="ops-ana")
    # re-loads without a department or owner keep the stored ones (the tickets dedupe to nothing new)
    ingest_file(store, SAAS / "tickets.csv", source="helpdesk", mapping=Mapping.from_dict(TICKETS))
    ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(USAGE))
    with store.connect() as conn:
        owners = source_owners(conn).set_index("name")
    assert owners.loc["helpdesk", ["department", "owner"]].tolist() == ["support", "Tier-2 lead (Maya)"]
    assert owners.loc["usage", ["department", "owner"]].tolist() == ["product", "product"]


def test_usage_loaded_as_events_shows_as_product_on_the_timeline(store):
    load_company(store)
    tl = timeline(("source", "department"))
    with store.connect() as conn:
        rows = conn.execute(sa.select(tl.c.source, tl.c.department).distinct()).fetchall()
    departments = dict(rows)
    assert departments["usage"] == "product"
    assert departments["helpdesk"] == "support"


def test_editing_department_and_owner_is_audited_and_refuses_unknown_sources(store):
    load_company(store, usage=False)
    after = set_source_owner(store, "subs", department="finance", owner="Billing ops (Lee)", actor="ops-ana")
    assert after == {"department": "finance", "owner": "Billing ops (Lee)"}
    entry = audit.recent(store, action="source_owner_changed").iloc[0]
    assert entry["actor"] == "ops-ana"
    assert json.loads(entry["detail"]) == {
        "source": "subs",
        "before": {"department": "billing", "owner": "billing"},
        "after": {"department": "finance", "owner": "Billing ops (Lee)"},
    }
    with store.connect() as conn:
        assert department_owners(conn)["finance"] == "Billing ops (Lee)"
    with pytest.raises(KeyError, match="no source named 'nope'"):
        set_source_owner(store, "nope", owner="x")
    with pytest.raises(ValueError, match="cannot be blank"):
        set_source_owner(store, "subs", owner="  ")


def test_the_sources_set_command_changes_department_and_owner(duck, capsys):
    load_company(duck, usage=False)
    url = duck.url
    duck.dispose()
    assert main(["--db", url, "sources", "set", "helpdesk", "--department", "customer care", "--owner", "Sam"]) == 0
    out = capsys.readouterr().out
    assert "helpdesk" in out and "customer care" in out and "Sam" in out
    assert "stored summaries prepared again with the new department" in out  # the views name departments
    with duck.connect() as conn:
        owners = source_owners(conn).set_index("name")
    assert owners.loc["helpdesk", ["department", "owner"]].tolist() == ["customer care", "Sam"]
    assert main(["--db", url, "sources", "set", "ghost", "--owner", "Sam"]) == 1
    capsys.readouterr()
    # a new owner alone changes no figure: nothing to prepare again
    assert main(["--db", url, "sources", "set", "helpdesk", "--owner", "Sam Lee"]) == 0
    assert "prepared again" not in capsys.readouterr().out
    # a known department typed in words is stored as its code, as the Data health form stores it
    assert main(["--db", url, "sources", "set", "helpdesk", "--department", "  Customer  Support "]) == 0
    assert "Customer support (support)" in capsys.readouterr().out
    with duck.connect() as conn:
        assert source_owners(conn).set_index("name").loc["helpdesk", "department"] == "support"


def test_an_invalid_load_keeps_the_sources_department_and_owner(store, tmp_path):
    load_company(store, usage=False)
    set_source_owner(store, "helpdesk", owner="Maya", actor="t")
    bad = tmp_path / "tickets.csv"
    bad.write_text("ticket_id,account_id,created_at,topic,status\nT9,A1,not a date,bug,open\n")
    with pytest.raises(IngestError):
        ingest_file(store, bad, source="helpdesk", mapping=Mapping.from_dict(TICKETS), owner="Someone else")
    with store.connect() as conn:
        assert source_owners(conn).set_index("name").loc["helpdesk", "owner"] == "Maya"


# ----------------------------------------------------------------------------- migrate


def _downgrade(store) -> None:
    """Make ``store`` look like the schema before this change: no account_id on events, tickets
    and opportunities, no link keys, no source owner, no hub reason, no link tables."""
    with store.begin() as conn:
        for name in ("events", "tickets", "opportunities"):
            conn.exec_driver_sql(f'ALTER TABLE "src_{name}" DROP COLUMN account_id')
        for t in KIND_TABLES.values():
            conn.exec_driver_sql(f'ALTER TABLE "{t.name}" DROP COLUMN link_key')
        conn.exec_driver_sql("ALTER TABLE sources DROP COLUMN owner")
        conn.exec_driver_sql("ALTER TABLE identity_hubs DROP COLUMN reason")
        conn.exec_driver_sql("DROP TABLE source_links")
        conn.exec_driver_sql("DROP TABLE link_conflicts")


def test_migrate_upgrades_a_store_of_the_previous_schema(store):
    load_company(store, usage=False)
    _downgrade(store)
    changes = store.create_schema()
    expected = {f"added column src_{k}.account_id" for k in ("events", "tickets", "opportunities")}
    expected |= {f"added column {t.name}.link_key" for t in KIND_TABLES.values()}
    expected |= {"added column sources.owner", "added column identity_hubs.reason"}
    assert expected <= set(changes)
    assert store.create_schema() == []  # idempotent
    with store.connect() as conn:
        owners = source_owners(conn).set_index("name")
        # the new tables exist (and are empty: no link declared yet)
        assert conn.execute(sa.select(sa.func.count()).select_from(link_conflicts_table)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(source_links_table)).scalar() == 0
    assert owners["owner"].isna().all() and owners.loc["helpdesk", "department"] == "support"  # nothing invented
    # the upgraded store takes linked loads and account ids on tickets
    ingest_file(store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(USAGE))
    with store.connect() as conn:
        got = customer_of_rows(conn, "usage")["cx_id"]
        tickets = conn.execute(
            sa.select(sa.func.count())
            .select_from(KIND_TABLES["tickets"])
            .where(KIND_TABLES["tickets"].c.cx_key.is_not(None))
        ).scalar()
    assert int(got.notna().sum()) == int(expected_usage_accounts().notna().sum())
    assert tickets == len(csv("tickets.csv"))


def test_migrate_on_the_command_line_reports_the_new_columns(duck, capsys):
    load_company(duck, usage=False)
    _downgrade(duck)
    url = duck.url
    duck.dispose()
    assert main(["--db", url, "migrate"]) == 0
    out = capsys.readouterr().out
    assert "added column src_events.account_id" in out and "added column sources.owner" in out


def test_erasing_an_account_also_erases_the_usage_rows_that_reached_it_through_a_link(store):
    from cxdash.governance.erasure import erase_customer

    load_company(store)
    expected = expected_usage_accounts()
    with store.connect() as conn:
        before = customer_of_rows(conn, "usage")
    erase_customer(store, "A5", actor="dpo")
    with store.connect() as conn:
        after = customer_of_rows(conn, "usage")
    # A5's usage rows (through S6 and S7) are gone; every other row is still there, still stitched
    assert len(before) - len(after) == int((expected == "A5").sum()) == 4
    assert "A5" not in set(after["cx_id"].dropna())
    kept = expected[expected != "A5"]
    assert (
        after.set_index("row_number")["cx_id"].dropna().value_counts().to_dict()
        == kept.dropna().value_counts().to_dict()
    )


def _product_runs() -> tuple[int, int]:
    """By hand from the fixture files: per account, its steps in time order with their department
    (signup: sales; subscription start/end: billing; ticket: support; usage: product, through the
    subscription), and the maximal runs of product steps. Out: (runs entered from another
    department, runs left for another department)."""
    accounts, subs, tickets = csv("accounts.csv"), csv("subscriptions.csv"), csv("tickets.csv")
    subs = subs.drop_duplicates("subscription_id", keep="first")
    usage = csv("feature_usage.csv").merge(subs[["subscription_id", "account_id"]], on="subscription_id")
    steps = pd.concat(
        [
            pd.DataFrame({"account": accounts["account_id"], "ts": accounts["signup_date"], "dept": "sales"}),
            pd.DataFrame({"account": subs["account_id"], "ts": subs["start_date"], "dept": "billing"}),
            pd.DataFrame({"account": subs["account_id"], "ts": subs["end_date"], "dept": "billing"}),
            pd.DataFrame({"account": tickets["account_id"], "ts": tickets["created_at"], "dept": "support"}),
            pd.DataFrame({"account": usage["account_id"], "ts": usage["usage_date"], "dept": "product"}),
        ]
    ).dropna(subset=["ts"])
    entered = left = 0
    for _, g in steps.sort_values(["account", "ts"], kind="stable").groupby("account"):
        depts = g["dept"].tolist()
        for i, d in enumerate(depts):
            if d == "product" and i > 0 and depts[i - 1] != "product":
                entered += 1
            if d == "product" and i + 1 < len(depts) and depts[i + 1] != "product":
                left += 1
    return entered, left


def test_handoffs_count_product_as_its_own_department(store):
    from cxdash import journeys as jr

    load_company(store)
    with store.connect() as conn:
        h = jr.discover_handoffs(conn, jr.journey_log(), department_key="department")
    entered, left = _product_runs()
    assert entered > 0 and left > 0
    assert int(h.loc[h["target_department"] == "product", "count"].sum()) == entered
    assert int(h.loc[h["source_department"] == "product", "count"].sum()) == left
    assert "web" not in set(h["source_department"]) | set(h["target_department"])


def test_who_to_call_names_the_owner_of_the_department_that_leaked():
    from cxdash.ui.journeys import hotspot_display

    spots = pd.DataFrame(
        {
            "hotspot": ["repeat contact", "dead end"],
            "customers": [3, 2],
            "customer_share": [0.3, 0.2],
            "customers_judged": [3, 2],
            "churned": [2, 1],
            "churn_rate": [2 / 3, 0.5],
            "baseline_customers": [7, 8],
            "baseline_churned": [1, 1],
            "baseline_churn_rate": [1 / 7, 1 / 8],
            "lift": [5.0, 5.0],
            "ci_low": [1.0, 1.0],
            "ci_high": [9.0, 9.0],
            "p_adjusted": [0.2, 0.2],
            "tested": [True, True],
            "significant": [False, False],
            "why": ["", ""],
            "churn_definition": ["subscriptions", "subscriptions"],
            "excess_churned": [1.2, 0.8],
            "revenue_at_stake": [0.0, 0.0],
            "leaked_department": ["support", "product"],
            "absorbed_department": ["support", "(none)"],
            "description": ["", ""],
        }
    )
    owners = pd.DataFrame(
        {"name": ["helpdesk"], "kind": ["tickets"], "department": ["support"], "owner": ["Tier-2 lead (Maya)"]}
    )
    shown = hotspot_display(spots, owners)
    # no source of the product department names an owner: the department spelled out, and said so
    assert shown["who to call"].tolist() == [
        "Tier-2 lead (Maya), owner of the helpdesk source",
        "Product (product): owner not recorded",
    ]


def test_a_dry_run_reports_the_links_match_rate_and_stores_nothing(store):
    load_company(store, usage=False)
    result = ingest_file(
        store, SAAS / "feature_usage.csv", source="usage", mapping=Mapping.from_dict(USAGE), dry_run=True
    )
    values = csv("feature_usage.csv")["subscription_id"].dropna()
    rate = result.link_rates[0]
    assert (rate.matched, rate.total) == (
        int(values.isin(csv("subscriptions.csv")["subscription_id"]).sum()),
        len(values),
    )
    assert any("link subscription_id -> subs.subscription_id: 16 of the first 17" in n for n in result.notes)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["events"])).scalar() == 0


def test_the_data_health_page_edits_a_sources_department_and_owner(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from cxdash.store.database import open_store
    from tests.conftest import REPO, TEST_ADMIN

    url = f"duckdb:///{tmp_path / 'page.duckdb'}"
    s = open_store(url)
    load_company(s, usage=False)
    s.dispose()
    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = AppTest.from_file(str(REPO / "pages" / "data_health.py"), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    # no owner named (the load recorded the department's code): the department's team answers for it
    assert table.set_index("source").loc["helpdesk", "department and owner"] == (
        "Customer support (support), owner not set: the Customer support team"
    )
    at.selectbox(key="health_owner_source").set_value("helpdesk").run()
    # the department is a choice among the known ones (tests/test_department_form.py), the current one selected
    assert next(s for s in at.selectbox if s.label == "Department").value == "support"
    next(t for t in at.text_input if t.label == "Owner (team or person)").set_value("Tier-2 lead (Maya)").run()
    at.button(key="health_owner_save").click().run()
    assert not at.exception
    s = open_store(url)
    with s.connect() as conn:
        owners = source_owners(conn).set_index("name")
    entry = audit.recent(s, action="source_owner_changed").iloc[0]
    s.dispose()
    assert owners.loc["helpdesk", ["department", "owner"]].tolist() == ["support", "Tier-2 lead (Maya)"]
    assert entry["actor"] == TEST_ADMIN
    table = at.dataframe[0].value.set_index("source")
    assert table.loc["helpdesk", "department and owner"] == "Customer support (support), owner Tier-2 lead (Maya)"


def test_ticket_comments_reach_the_account_through_tickets_and_links_chain(store, tmp_path):
    """Comments know the ticket; these tickets know only the subscription: two links to the account."""
    load_company(store, usage=False)
    tickets = tmp_path / "sub_tickets.csv"
    tickets.write_text("case_ref,sub,opened\nK1,S1,2024-03-01\nK2,S6,2024-04-01\nK3,S99,2024-04-02\n")
    comments = tmp_path / "comments.csv"
    comments.write_text(
        "comment_id,case_ref,written_at,body\nC1,K1,2024-03-01,hello\nC2,K1,2024-03-02,thanks\n"
        "C3,K2,2024-04-01,help\nC4,K3,2024-04-03,anyone\nC5,T2,2024-05-12,ok\n"
    )
    ingest_file(
        store,
        tickets,
        source="sub_desk",
        links={"sub": {"source": "subs", "field": "subscription_id"}},
        mapping=Mapping.from_dict({"kind": "tickets", "columns": {"ticket_id": "case_ref", "opened_at": "opened"}}),
    )
    result = ingest_file(
        store,
        comments,
        source="comments",
        links={"case_ref": {"source": "sub_desk", "field": "ticket_id"}},
        mapping=Mapping.from_dict({"kind": "events", "columns": {"timestamp": "written_at", "activity": "body"}}),
    )
    # by hand: K1 -> S1 -> A1, K2 -> S6 -> A5, K3 -> S99 (unknown), T2 is not a sub_desk ticket
    with store.connect() as conn:
        got = [None if pd.isna(c) else c for c in customer_of_rows(conn, "comments")["cx_id"]]
    assert got == ["A1", "A1", "A5", None, None]
    assert result.links == {"linked": 5, "matched": 3, "ambiguous": 0, "unknown": 2}
