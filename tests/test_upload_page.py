"""The upload page headless (AppTest): it waits for the user to choose the kind, shows the guesses
and the mapping with how each column was found, loads only what was checked, and keeps "Load the
valid rows" apart from "Load"."""

from __future__ import annotations

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from cxdash.store.database import KIND_TABLES, open_store, quarantine_table, sources_table
from tests.conftest import FIXTURES, REPO

PAGE = str(REPO / "pages" / "upload.py")
KINDS_DIR = FIXTURES / "kinds"


def counts(url: str) -> dict[str, int]:
    store = open_store(url)
    with store.connect() as conn:
        out = {k: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for k, t in KIND_TABLES.items()}
        out["sources"] = conn.execute(sa.select(sa.func.count()).select_from(sources_table)).scalar()
        out["quarantine"] = conn.execute(sa.select(sa.func.count()).select_from(quarantine_table)).scalar()
    store.dispose()
    return out


def upload(name: str, content: bytes) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="upload_files").upload(name, content, "text/csv")
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(t.value for t in at.text)


def kind_box(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Kind of extract")


def button(at: AppTest, start: str):
    return next(b for b in at.button if b.label.startswith(start))


def test_without_a_saved_mapping_the_page_shows_the_guesses_and_waits_for_a_kind(db):
    at = upload("saas_support_tickets.csv", (KINDS_DIR / "saas_support_tickets.csv").read_bytes())
    assert not at.exception
    box = kind_box(at)
    assert box.value is None  # no default: the user must choose
    assert "Choose the kind of extract above" in " ".join(i.value for i in at.info)
    headings = [m.value for m in at.markdown if m.value.startswith("**1. ")]
    assert headings == ["**1. tickets** · clearly this"]
    assert "• column 'ticket_id' is unique in the 150 rows read: one row per ticket" in texts(at)
    from cxdash.store.kinds import KINDS

    if "account_id" in KINDS["tickets"].field_names:  # identifiers on every kind (issue 13, another part)
        assert "• column 'account_id' identifies the customer (account id)" in texts(at)
    else:
        assert (
            "• no customer identifier: no column reads as customer id, email, phone; "
            "'account_id' reads as account id, which tickets do not take"
        ) in texts(at)
    assert not any(b.label == "Check the file" for b in at.button)  # nothing to check before a kind


def test_the_mapping_shows_how_each_column_was_found(db):
    at = upload("clickstream.csv", (KINDS_DIR / "clickstream.csv").read_bytes())
    kind_box(at).select("events").run()
    table = next(d.value for d in at.dataframe if "found by" in d.value.columns).set_index("stored as")
    assert table.loc["timestamp", "column"] == "timestamp" and table.loc["timestamp", "found by"] == "exact name"
    assert table.loc["customer_id", "found by"] == "synonym"
    assert table.loc["email", "found by"] == "not mapped"
    next(s for s in at.selectbox if s.label == "value").select("referrer").run()
    table = next(d.value for d in at.dataframe if "found by" in d.value.columns).set_index("stored as")
    assert table.loc["value", "found by"] == "chosen by you"


def test_a_check_is_invalidated_by_a_change_of_mapping_and_nothing_loads_until_checked_again(db):
    at = upload("clickstream.csv", (KINDS_DIR / "clickstream.csv").read_bytes())
    kind_box(at).select("events").run()
    at.button(key="upload_check").click().run()
    assert any(b.label.startswith("Load 1,000 rows") for b in at.button)
    assert "New customers: 330." in texts(at)  # the impact, before loading (330 users in make_files.py)
    next(s for s in at.selectbox if s.label == "channel").select(ops_not_mapped()).run()
    assert "changed since the last check" in " ".join(w.value for w in at.warning)
    assert not any(b.label.startswith("Load") for b in at.button)
    assert counts(db)["events"] == 0
    at.button(key="upload_check").click().run()
    button(at, "Load 1,000 rows").click().run()
    assert counts(db)["events"] == 1000


def ops_not_mapped() -> str:
    from cxdash.ui.ops import NOT_MAPPED

    return NOT_MAPPED


def test_load_valid_rows_and_load_are_separate_choices(db):
    bad = (
        "ticket_id,email,opened_at\n"
        "T1,a@example.com,2024-01-01 10:00\nT2,b@example.com,not a date\nT3,c@example.com,2024-01-03 10:00\n"
    )
    at = upload("helpdesk.csv", bad.encode())
    kind_box(at).select("tickets").run()
    at.button(key="upload_check").click().run()
    labels = [b.label for b in at.button]
    assert "Load the 2 valid rows, quarantine 1" in labels and not any(x.startswith("Load 2 rows") for x in labels)
    button(at, "Load the 2 valid rows").click().run()
    got = counts(db)
    assert got["tickets"] == 2 and got["quarantine"] == 1


def test_a_file_mostly_repeating_its_key_is_refused_on_the_page(db):
    at = upload("clickstream.csv", (KINDS_DIR / "clickstream.csv").read_bytes())
    kind_box(at).select("customers").run()
    at.button(key="upload_check").click().run()
    assert "670 of 1,000 rows repeat a customer_id" in texts(at)
    assert "probably not a customers extract" in texts(at)
    assert not any(b.label.startswith("Load") for b in at.button)
    assert counts(db)["customers"] == 0 and counts(db)["sources"] == 0


def test_file_text_is_never_rendered_as_markdown(db):
    hostile = "ticket_id,email,opened_at\n**T1**,a@example.com,2024-01-01\n**T1**,b@example.com,2024-01-02\n"
    at = upload("[click](http_evil).csv", hostile.encode())
    kind_box(at).select("tickets").run()
    at.button(key="upload_check").click().run()
    rendered = " ".join(m.value for m in at.markdown) + " ".join(e.value for e in at.error)
    assert "**T1**" not in rendered and "[click]" not in rendered
    assert "**T1**" in texts(at)  # shown, as plain text


def test_a_source_with_a_saved_mapping_starts_from_it(db):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping

    store = open_store(db)
    saved = Mapping("events", {"customer_id": "user_id", "timestamp": "timestamp", "activity": "page"})
    ingest_file(store, KINDS_DIR / "clickstream.csv", source="clickstream", mapping=saved)
    store.dispose()
    at = upload("clickstream.csv", (KINDS_DIR / "clickstream.csv").read_bytes())
    assert kind_box(at).value == "events"  # the user's earlier choice, not a fresh guess
    assert "has a saved mapping of kind events" in " ".join(c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "found by" in d.value.columns).set_index("stored as")
    assert table.loc["activity", "column"] == "page"  # the saved column, not the guessed event_type
    assert table.loc["activity", "found by"] == "saved for this source"


def test_a_file_that_matches_nobody_says_so_before_it_is_loaded(db):
    from cxdash.ingest.load import ingest_file

    store = open_store(db)
    ingest_file(store, KINDS_DIR / "saas_accounts.csv", source="crm", kind="customers")
    store.dispose()
    at = upload("clickstream.csv", (KINDS_DIR / "clickstream.csv").read_bytes())
    kind_box(at).select("events").run()
    at.button(key="upload_check").click().run()
    warnings = " ".join(w.value for w in at.warning)
    assert "None of the 1,000 valid rows matches a customer already stored" in warnings
    assert "Customers (headline): 60 -> 60 (+0)." in texts(at)  # 60 accounts in the fixture
    assert counts(db)["events"] == 0


# ----------------------------------------------------------------------------- links to loaded sources
SAAS = FIXTURES / "saas"


def _load_subscriptions(url: str) -> None:
    """The hand-built SaaS fixture's subscriptions, loaded as source 'subs' (the usage log links to it)."""
    import json

    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping

    store = open_store(url)
    mapping = Mapping.from_dict(json.loads((SAAS / "subscriptions.mapping.json").read_text()))
    ingest_file(store, SAAS / "subscriptions.csv", source="subs", mapping=mapping)
    store.dispose()


def _usage_match() -> tuple[int, int]:
    """By hand from the fixture files: usage rows with a subscription id, and those the subscriptions hold."""
    import pandas as pd

    usage = pd.read_csv(SAAS / "feature_usage.csv", dtype=str)
    subs = pd.read_csv(SAAS / "subscriptions.csv", dtype=str)
    carried = usage["subscription_id"].dropna()
    return len(carried), int(carried.isin(subs["subscription_id"]).sum())


def link_box(at: AppTest):
    return next(c for c in at.checkbox if c.label == "Link 1: to the subscription id of subs")


def test_a_usage_log_without_identifier_is_offered_its_link_ticked_with_the_match_rate(db):
    _load_subscriptions(db)
    at = upload("feature_usage.csv", (SAAS / "feature_usage.csv").read_bytes())
    kind_box(at).select("events").run()
    total, matched = _usage_match()  # 17 and 16 (S99 is no subscription)
    assert link_box(at).value is True
    assert (
        f"column 'subscription_id': {matched} of the {total} rows with a value hold a subscription id of subs "
        f"({matched / total:.0%}); 1 row has no value (they stay without a customer)" in texts(at)
    )
    assert "rows reach their customer only through the ticked link" in " ".join(i.value for i in at.info)


def test_a_link_is_not_ticked_for_you_when_an_identifier_is_mapped(db):
    _load_subscriptions(db)
    rows = (
        "usage_id,account_id,subscription_id,usage_date,feature_name\nU1,A1,S1,2024-02-01,reports\n"
        "U2,A2,S3,2024-02-02,api\nU3,A1,S2,2024-02-03,api\n"
    )
    at = upload("usage_with_accounts.csv", rows.encode())
    kind_box(at).select("events").run()
    assert link_box(at).value is False
    assert "A customer identifier is mapped, so no link is ticked for you" in " ".join(c.value for c in at.caption)


def test_an_unticked_link_without_identifier_is_refused_and_nothing_is_stored(db):
    _load_subscriptions(db)
    before = counts(db)
    at = upload("feature_usage.csv", (SAAS / "feature_usage.csv").read_bytes())
    kind_box(at).select("events").run()
    link_box(at).uncheck().run()
    assert "no link is ticked: the check will refuse the file" in " ".join(w.value for w in at.warning)
    at.button(key="upload_check").click().run()
    assert "The file cannot be checked with this mapping:" in " ".join(e.value for e in at.error)
    assert "no column identifies the customer" in texts(at)
    assert "a link is declared by ticking it" in " ".join(i.value for i in at.info)
    assert not any(b.label.startswith("Load") for b in at.button)
    after = counts(db)
    assert after == before and after["events"] == 0


def test_ticking_or_unticking_a_link_invalidates_the_check(db):
    _load_subscriptions(db)
    at = upload("feature_usage.csv", (SAAS / "feature_usage.csv").read_bytes())
    kind_box(at).select("events").run()
    at.button(key="upload_check").click().run()
    total, matched = _usage_match()
    assert (
        f"column 'subscription_id' -> subs: {matched} of the {total} rows with a value (in the "
        f"first block read) hold a subscription id of subs ({matched / total:.0%})." in texts(at)
    )
    assert any(b.label.startswith("Load 18 rows") for b in at.button)  # 18 lines in the fixture
    link_box(at).uncheck().run()
    assert "changed since the last check" in " ".join(w.value for w in at.warning)
    assert not any(b.label.startswith("Load") for b in at.button)
    link_box(at).check().run()  # back to the mapping that was checked: its report applies again
    assert any(b.label.startswith("Load 18 rows") for b in at.button)
    button(at, "Load 18 rows").click().run()
    assert counts(db)["events"] == 18
    assert f"  {matched} reached a customer;" in texts(at)


def test_a_count_that_equals_numeric_ticket_ids_is_offered_unticked_and_the_named_link_ticked(db, tmp_path):
    from cxdash.ingest.load import ingest_file

    _load_subscriptions(db)
    tickets = tmp_path / "numeric_tickets.csv"
    tickets.write_text(
        "ticket_id,email,opened_at\n"
        + "".join(f"{i},user{i}@example.com,2024-01-{1 + i % 28:02d}\n" for i in range(1, 101))
    )
    store = open_store(db)
    ingest_file(store, tickets, source="helpdesk", kind="tickets")
    store.dispose()
    at = upload("feature_usage.csv", (SAAS / "feature_usage.csv").read_bytes())  # its usage counts are 1..300
    kind_box(at).select("events").run()
    boxes = {c.label: c.value for c in at.checkbox}
    assert boxes["Link 1: to the subscription id of subs"] is True
    assert boxes["Link 2: to the ticket id of helpdesk"] is False  # 15 of the 18 counts are ticket numbers, by chance
    assert "does not say it holds a ticket id" in " ".join(c.value for c in at.caption)


def test_after_a_load_no_load_button_is_left_and_another_file_can_follow(db):
    at = upload("helpdesk.csv", b"ticket_id,email,opened_at\nT1,a@example.com,2024-01-01 10:00\n")
    kind_box(at).select("tickets").run()
    at.button(key="upload_check").click().run()
    button(at, "Load 1 row into 'Helpdesk'").click().run()
    assert not at.exception
    assert counts(db)["tickets"] == 1
    assert [s.value for s in at.success] == ["1 row loaded into 'Helpdesk' (tickets)."]
    # what the load did to the at-risk list, in words (here: there is none yet)
    assert (
        "The at-risk list was not updated: no churn model has been trained yet, so there is no at-risk list "
        "to update." in texts(at)
    )
    labels = [b.label for b in at.button]
    assert labels == ["Upload another file"], labels  # neither Check nor any Load button
    button(at, "Upload another file").click().run()
    assert not at.exception and not at.success
    assert "Drop one or more CSV extracts here to start." in [i.value for i in at.info]
    assert counts(db)["tickets"] == 1  # nothing loaded twice


def test_the_suggested_source_name_reads_as_a_person_would_name_the_file():
    from cxdash.ingest.mapping import suggest_source_name

    cases = {
        "WA_Fn-UseC_-Telco-Customer-Churn.csv": "Telco customer churn",
        "online_retail_sample.csv": "Online retail sample",
        "sales_pipeline.csv": "Sales pipeline",
        "CDNOW_master.txt": "CDNOW master",
        "running-example.csv": "Running example",
        "helpdesk_export_2024-11-03.csv.gz": "Helpdesk",
        "billingExport_20241103_final.xlsx": "Billing",
        "CRM customers (1).csv": "CRM customers",
        "../../etc/passwd": "Passwd",
        "....csv": "Upload",
    }
    for file_name, expected in cases.items():
        assert suggest_source_name(file_name) == expected, file_name
    # next week's file finds the source loaded under last week's spelling (and its saved mapping)
    assert suggest_source_name("Telco-Customer-Churn.csv", ["crm", "telco_customer_churn"]) == "telco_customer_churn"
    assert suggest_source_name("WA_Fn-UseC_-Telco-Customer-Churn.csv", ["wa_fn_usec_telco_customer_churn"]) == (
        "wa_fn_usec_telco_customer_churn"
    )
    assert suggest_source_name("clickstream.csv", ["Clickstream"]) == "Clickstream"
