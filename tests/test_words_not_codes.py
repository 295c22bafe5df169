"""What Overview and Upload show a person: department codes spelled out ("Technology (tech)") in the
charts' legends, the opening sentence and the sources table; the upload mapping's fields in words,
with the name the mapping JSON stores each one under beside it. Expected strings are written by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from streamlit.testing.v1 import AppTest

from cxdash.ingest.mapping import Mapping
from cxdash.metrics import Headline
from cxdash.store.kinds import KINDS
from cxdash.ui import charts, ops
from cxdash.ui import formatting as f
from cxdash.ui.figures import escape_figure_text
from tests.conftest import FIXTURES, REPO

SNAKE = "_"


def _activity() -> pd.DataFrame:
    months = pd.to_datetime(["2026-09-01", "2026-10-01"])
    return pd.DataFrame(
        {
            "month": list(months) * 4,
            "department": ["tech", "tech", "support", "support", "web", "web", "<b>ops</b>", "<b>ops</b>"],
            "customers": [10, 12, 40, 41, 300, 310, 3, 4],
        }
    )


def _sources() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["crm", "helpdesk", "web", "ledger"],
            "kind": ["customers", "tickets", "events", "transactions"],
            "department": ["sales", "tech", "web", None],
            "rows": [10_000, 5_000, 324_917, 12],
            "customers": [10_000, 4_000, 13_966, 10],
            "identified": [10_000, 4_000, 10_000, 10],
            "unmatched": [0, 0, 3_966, 0],
            "first_at": pd.to_datetime(["2023-11-02", "2024-01-01", "2023-10-04", "2024-02-01"]),
            "last_at": pd.to_datetime(["2026-10-30", "2026-10-31", "2026-10-31", "2026-10-31"]),
            "loaded_at": pd.to_datetime(["2026-12-01"] * 4),
            "loads": [1, 1, 1, 1],
            "rows_rejected": [0, 0, 0, 0],
        }
    )


def test_the_monthly_chart_legend_spells_departments_out_and_keeps_their_colours():
    fig = charts.monthly_customers_by_department(_activity())
    colours = {t.name: t.line.color for t in fig.data}
    assert set(colours) == {"Technology (tech)", "Customer support (support)", "Web / digital (web)", "<b>ops</b>"}
    assert colours["Customer support (support)"] == "#f97316"  # support's colour, as before
    assert colours["Web / digital (web)"] == "#0ea5e9"
    # a code the house does not know is shown as written, and escaped before plotly draws it
    assert "&lt;b&gt;ops&lt;/b&gt;" in {t.name for t in escape_figure_text(fig).data}


def test_the_rows_per_source_legend_spells_departments_out():
    fig = charts.rows_by_source(_sources())
    names = {t.name: list(t.y) for t in fig.data}
    assert names == {
        "Sales (sales)": ["crm"],
        "Technology (tech)": ["helpdesk"],
        "Web / digital (web)": ["web"],
        "Unknown department (unknown)": ["ledger"],  # no department recorded
    }


def test_the_overview_sentence_names_departments_in_words():
    head = Headline(pd.Timestamp("2026-10-31"), 10_000, 6_907, 3_021, "subscriptions", 1.0, "x", None)
    sentence = f.overview_sentence(head, _sources())
    # escaped for markdown (every punctuation mark carries a backslash): read without the escapes
    shown = sentence.replace("\\", "")
    assert "4 sources** (Sales (sales), Technology (tech), Web / digital (web));" in shown


def test_the_sources_table_names_each_owning_department_in_words():
    table = f.sources_table(_sources()).set_index("source")
    assert table["owner"].to_dict() == {
        "crm": "Sales (sales)",
        "helpdesk": "Technology (tech)",
        "web": "Web / digital (web)",
        "ledger": "—",
    }


def test_the_mapping_table_names_fields_in_words_and_says_how_each_is_stored():
    start = Mapping("events", {"customer_id": "user", "timestamp": "ts"})
    link = SimpleNamespace(
        source="subs", field="subscription_id", column="sub", matched=16, total=17, match_rate=16 / 17
    )
    table = ops.mapping_table(
        "events", {"customer_id": "user", "timestamp": "ts"}, start, {"customer_id": "synonym"}, [link]
    )
    assert list(table.columns) == ["field", "column", "found by", "stored as"]
    rows = table.set_index("stored as")
    assert rows.loc["customer_id", "field"] == "customer id"
    assert rows.loc["visitor_id", "field"] == "visitor id"
    assert rows.loc["timestamp", "field"] == "timestamp *"  # required
    assert rows.loc["customer_id", ["column", "found by"]].tolist() == ["user", "synonym"]
    assert rows.loc["link -> subs.subscription_id", "field"] == "link to subscription id of subs"
    fields = table["field"].tolist()
    assert not [x for x in fields if SNAKE in x and not x.startswith("link to")], fields
    assert set(table["stored as"]) == {*KINDS["events"].field_names, "link -> subs.subscription_id"}


def test_every_field_of_every_kind_reads_as_words():
    for kind in KINDS.values():
        for field in kind.fields:
            shown = ops.field_label(field)
            assert SNAKE not in shown, (kind.name, field.name, shown)
            assert shown.endswith(" *") == field.required
            assert f"`{field.name}`" in ops.field_help(field)
    assert f.label("mrr") == "monthly recurring revenue"
    assert f.label("consent_marketing") == "marketing consent"


def test_the_evidence_for_a_kind_names_fields_in_words_and_quotes_columns_as_the_file_has_them():
    assert ops.field_words("column 'user_id' identifies the customer (customer_id)") == (
        "column 'user_id' identifies the customer (customer id)"
    )
    assert ops.field_words("2 of the file's 7 columns fit its fields ('signup_date' as signup_date)") == (
        "2 of the file's 7 columns fit its fields ('signup_date' as signup date)"
    )
    # a column name holding a quote is quoted the other way by repr: still left alone
    assert ops.field_words("""column "o'ticket_id" is unique; no ticket_id column""") == (
        """column "o'ticket_id" is unique; no ticket id column"""
    )
    assert ops.field_words("no date column for churned_at") == "no date column for churned at"
    assert ops.field_words("my_ticket_id_x stays") == "my_ticket_id_x stays"  # not a field name on its own


def test_the_upload_page_labels_its_mapping_in_words(db):
    at = AppTest.from_file(str(REPO / "pages" / "upload.py"), default_timeout=120).run()
    at.file_uploader(key="upload_files").upload(
        "clickstream.csv", (FIXTURES / "kinds" / "clickstream.csv").read_bytes(), "text/csv"
    )
    at.run()
    next(s for s in at.selectbox if s.label == "Kind of extract").select("events").run()
    assert not at.exception
    mapping_boxes = [s for s in at.selectbox if s.key and s.key.startswith("upload_map_")]
    labels = [s.label for s in mapping_boxes]
    assert len(labels) == len(KINDS["events"].fields)
    assert "customer id" in labels and "timestamp *" in labels
    assert not [x for x in labels if SNAKE in x], labels
    evidence = "\n".join(t.value for t in at.text)
    assert "• column 'user_id' identifies the customer (customer id)" in evidence
    assert "(customer_id)" not in evidence
    customer = next(s for s in mapping_boxes if s.label == "customer id")
    assert "`customer_id`" in customer.help  # the stored name, for ops
    table = next(d.value for d in at.dataframe if "stored as" in d.value.columns)
    assert not [x for x in table["field"] if SNAKE in x]
    assert "customer_id" in set(table["stored as"])
    # the preview shows the file's empty cells empty, not as "None"
    preview = next(d.value for d in at.dataframe if "event_type" in d.value.columns)
    assert not preview.isna().any().any() and (preview == "").any().any()


def test_the_journey_map_and_the_conflicts_chart_name_departments_in_words():
    from cxdash.ui import executive_charts, journeys_charts

    edges = pd.DataFrame(
        {
            "source": ["ticket opened", "page view"],
            "target": ["ticket closed", "ticket opened"],
            "count": [30, 12],
            "customers": [30, 12],
            "customer_share": [0.5, 0.2],
            "median_seconds": [3600.0, 60.0],
            "p90_seconds": [7200.0, 600.0],
        }
    )
    nodes = pd.DataFrame(
        {
            "activity": ["ticket opened", "ticket closed", "page view"],
            "department": ["tech", "tech", "web"],
            "customers": [30, 30, 12],
        }
    )
    legend = {t.name for t in journeys_charts.journey_map(edges, nodes).data if t.showlegend is not False}
    assert {"Technology (tech)", "Web / digital (web)"} <= legend
    assert not legend & {"tech", "web"}

    frame = pd.DataFrame(
        {
            "department": ["support", "support", "marketing", "marketing"],
            "cohort_by": ["channel", "channel", "campaign", "campaign"],
            "cohort": ["chat", "phone", "spring", "autumn"],
            "departmental_value": [0.9, 0.2, 0.5, 0.1],
            "shared_kpi": ["churn_rate"] * 4,
            "shared_value": [0.3, 0.1, 0.2, 0.4],
            "conflict": [False, False, False, False],
        }
    )
    names = {t.name for t in executive_charts.conflict_quadrants(frame).data}
    assert {"Customer support (support)", "Marketing (marketing)"} <= names
    assert not names & {"support", "marketing"}


# ----------------------------------------------------------------------------- Data health, card, at-risk, conflicts
def test_a_department_and_its_owner_read_as_words_and_say_what_is_not_set():
    assert f.department_words("tech") == "Technology (tech)"
    assert f.department_words("ops") == "ops"  # a code the house does not know: as written
    assert f.department_words(None) == f.department_words("  ") == "department not set"
    assert f.department_words(float("nan"), missing="—") == "—"
    assert f.department_and_owner("tech", "Dana") == "Technology (tech), owner Dana"
    # no owner named, or the department's own code (what a load records): the department's team
    assert (
        f.department_and_owner("support", None)
        == "Customer support (support), owner not set: the Customer support team"
    )
    assert f.department_and_owner("support", "support") == f.department_and_owner("support", None)
    # an owner that is another department's code is that department's team
    assert f.department_and_owner("billing", "support") == "Billing (billing), owner Customer support team (support)"
    assert f.department_and_owner(None, "Dana") == "department not set, owner Dana"
    assert f.department_and_owner(None, "") == "department and owner not set"


def _governance() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["helpdesk", "web", "ledger", "future"],
            "kind": ["tickets", "events", "transactions", "events"],
            "department": ["support", "web", None, "tech"],
            "owner": ["Tier-2 lead (Maya)", "web", None, None],
            "rows": [4_866, 98_594, 0, 3],
            "quality": [1.0, 0.99, None, 1.0],
            "stitched_share": [0.9992, 0.9554, None, 1.0],
            "freshness_hours": [72.0, 0.5, None, -2.0],
            "loaded_hours": [2.0, 71 / 3600, None, 49.0],
            "latency_newest_hours": [70.0, None, None, None],
            "latency_p50_hours": [None, None, None, None],
            "latency_p95_hours": [None, None, None, None],
        }
    )


def test_the_data_health_sources_table_names_owners_in_words_and_keeps_record_age_and_load_time_apart():
    from cxdash.ui import opsview

    table = opsview.governance_table(_governance()).set_index("source")
    assert "department" not in table.columns and "owner" not in table.columns and "freshness" not in table.columns
    assert table["department and owner"].to_dict() == {
        "helpdesk": "Customer support (support), owner Tier-2 lead (Maya)",
        "web": "Web / digital (web), owner not set: the Web / digital team",
        "ledger": "department and owner not set",
        "future": "Technology (tech), owner not set: the Technology team",
    }
    assert table["newest record"].to_dict() == {
        "helpdesk": "3.0 days old",
        "web": "30 min old",
        "ledger": "no dated record",
        "future": "dated 2.0 h ahead",  # a record dated after now is not "-2 h old"
    }
    assert table["loaded"].to_dict() == {
        "helpdesk": "loaded 2.0 h ago",
        "web": "loaded 71 s ago",
        "ledger": "never loaded",
        "future": "loaded 2.0 days ago",
    }
    # every column the page configures is in the table (a renamed column would lose its width and help)
    assert set(opsview.GOVERNANCE_COLUMNS) <= set(table.columns) | {"source"}


def _signals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "noun": ["asked to cancel", "failed payment", "page error"],
            "strength": ["intent", "friction", "friction"],
            "age_days": [2.0, 400.0, 5.0],
            "count_30d": [1, 0, 2],
            "detail": ["cancellation", "status failed", ""],
            "department": ["support", "billing", None],
        }
    )


def test_the_customer_card_names_departments_in_words_in_its_signals_and_timeline():
    from cxdash.ui import card

    signals = card.signals_table(_signals())
    assert list(signals["owner"]) == ["Customer support (support)", "Billing (billing)", "—"]
    assert list(signals["when"]) == ["2 days ago", "over a year ago", "5 days ago"]
    assert set(card.SIGNALS_COLUMNS) == set(signals.columns)
    assert card.SIGNALS_ROW_HEIGHT > 64  # over 4rem: only then does Streamlit wrap the long owners

    timeline = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2026-10-29 23:22", "2026-10-24 15:25", "2026-10-10 03:51"]),
            "activity": ["resolved: cancellation", "competitor_compare", "purchase"],
            "department": ["support", "web", None],
            "channel": ["phone", None, None],
            "source": ["helpdesk", "web", "ledger"],
        }
    )
    table = card.timeline_table(timeline)
    assert list(table["department"]) == [
        "Customer support (support)",
        "Web / digital (web)",
        "Unknown department (unknown)",
    ]
    assert list(table["source"]) == ["helpdesk", "web", "ledger"]  # a source is named as loaded
    rows = {y for trace in card.timeline_figure(timeline).data for y in trace.y}
    assert rows == {"Customer support (support)", "Web / digital (web)", "Unknown department (unknown)"}

    lead = card.next_action_sentence({"action": "Route to the retention team", "department": "support"})
    assert (
        lead.replace("\\", "")
        == "next best action: **Route to the retention team** (owner: Customer support (support))"
    )


def test_a_reason_names_its_signal_and_owning_department_in_words():
    from cxdash.ui import risk

    line = risk.reason_line(
        {
            "signal": "cancel_page",
            "label": "Visited the cancel page",
            "detail": "most recently 18 days ago",
            "department": "web",
            "action": "Retention call within 24 h",
        }
    )
    # escaped for markdown (punctuation carries a backslash): read without the escapes
    assert line.replace("\\", "") == (
        "- **Visited the cancel page** — most recently 18 days ago · owner **Web / digital (web)** · "
        "Retention call within 24 h"
    )
    # a reason stored without its label names the signal in words, never as the column it came from
    bare = risk.reason_line({"signal": "failed_payments", "department": None, "action": "Fix the card"})
    assert bare.replace("\\", "") == "- **Failed payments** · owner **department not set** · Fix the card"
    assert SNAKE not in bare


def test_the_at_risk_list_and_its_chart_name_the_owning_department_in_words():
    from cxdash.ui import risk

    frame = pd.DataFrame(
        {
            "cx_id": ["a", "b", "c"],
            "name": ["Ann", "Bo", None],
            "customer_id": ["C1", "C2", "C3"],
            "risk": [0.89, 0.3, 0.2],
            "value": [4948.0, 100.0, 50.0],
            "priority": [4403.72, 30.0, 10.0],
            "reasons": [[{"label": "Visited the cancel page"}], [], []],
            "top_reason": ["Visited the cancel page", "", ""],
            "action": ["Route to the retention team today", "Move to a nurture track", None],
            "department": ["support", "marketing", "web"],
            "status": ["open", "contacted", None],
        }
    )
    table = risk.at_risk_table(frame)
    assert list(table["next best action · owner"]) == [
        "Route to the retention team today · Customer support (support)",
        "Move to a nurture track · Marketing (marketing)",
        "—",
    ]
    bars = risk.department_figure(frame).data[0]
    assert set(bars.y) == {"Customer support (support)", "Marketing (marketing)", "Web / digital (web)"}


def test_the_conflicts_table_and_sentences_name_the_department_in_words():
    from cxdash.ui import executive

    frame = pd.DataFrame(
        {
            "conflict": [True, False, False, False],
            "department": ["marketing", "marketing", "support", "product"],
            "cohort_by": ["campaign", "campaign", "team", "squad_name"],
            "cohort": ["spring_blast", "autumn", "tier 2", "growth"],
            "customers": [404, 300, 120, 50],
            "departmental_kpi": ["new_customers", "new_customers", "tickets_closed", "new_customers"],
            "departmental_value": [404, 300, 800, 50],
            "shared_kpi": ["retention_90d", "retention_90d", "repeat_after_close", "retention_90d"],
            "shared_value": [0.24, 0.97, 0.05, 0.9],
            "clv_per_customer": [1184.0, 2000.0, None, None],
            "repeat_contact_rate": [0.044, 0.05, 0.1, None],
            "median_hours_to_close": [None, None, 5.0, None],
            "p_value": [0.0001, 1.0, 0.3, None],
        }
    )
    table = executive.conflict_table(frame)
    assert list(table["group"]) == [
        "Marketing (marketing): campaign",
        "Marketing (marketing): campaign",
        "Customer support (support): team",
        "Product (product): squad name",  # a grouping the house does not name: in words too
    ]
    assert executive.CONFLICT_ROW_HEIGHT > 64
    (sentence,) = executive.conflict_sentences(frame)
    assert sentence.replace("\\", "").startswith("**spring_blast**, campaign of Marketing (marketing): top quartile")
