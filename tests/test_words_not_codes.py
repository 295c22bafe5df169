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
