"""The ingest path on tiny hand-made extracts, on DuckDB and PostgreSQL."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.ingest.load import IngestError, ingest_file, saved_mapping
from cxdash.ingest.mapping import Mapping, MappingError
from cxdash.ingest.readers import ExtractError
from cxdash.store.database import KIND_TABLES, loads_table, quarantine_table

TICKETS = """Ticket #,Requester Email,Created,Resolved,Topic,Transfers,CSAT
T1,Ann@Example.com,2024-01-02 10:00,2024-01-03 10:00,billing,1,4
T2,bob@example.com,2024-01-05 10:00,,login,0,
T3,,2024-01-06 09:00,2024-01-07 09:00,login,0,5
T4,cy@example.com,notadate,2024-01-07 10:00,login,-1,5
T5,dee@example.com,2024-01-08 10:00,2024-01-07 10:00,bug,0,3
"""

TICKET_MAPPING = {
    "kind": "tickets",
    "columns": {
        "ticket_id": "Ticket #",
        "email": "Requester Email",
        "opened_at": "Created",
        "closed_at": "Resolved",
        "topic": "Topic",
        "transfers": "Transfers",
        "satisfaction": "CSAT",
    },
}


def counts(store) -> dict[str, int]:
    with store.connect() as conn:
        out = {
            name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for name, t in KIND_TABLES.items()
        }
        out["loads"] = conn.execute(sa.select(sa.func.count()).select_from(loads_table)).scalar()
        out["quarantine"] = conn.execute(sa.select(sa.func.count()).select_from(quarantine_table)).scalar()
    return out


def rows(store, kind: str) -> pd.DataFrame:
    t = KIND_TABLES[kind]
    with store.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(t).order_by(t.c.row_number)).mappings().all())


@pytest.fixture
def tickets_csv(tmp_path):
    p = tmp_path / "tickets.csv"
    p.write_text(TICKETS, encoding="utf-8")
    return p


def test_an_invalid_row_loads_nothing_by_default_and_reports_every_failure(store, tickets_csv):
    before = counts(store)
    with pytest.raises(IngestError) as err:
        ingest_file(store, tickets_csv, source="helpdesk", mapping=Mapping.from_dict(TICKET_MAPPING))
    assert counts(store) == before
    report = err.value.result.failures
    got = set(zip(report["line"], report["column"], report["rule"], strict=True))
    # Worked out by hand: line numbers count the header as line 1.
    assert got == {
        (4, "Requester Email", "customer_identifier"),  # T3 has no identifier
        (5, "Created", "date"),  # T4 'notadate'
        (5, "Transfers", "minimum"),  # T4 -1 transfers
        (6, "Resolved", "date_order"),  # T5 closed before opened
    }
    bad_date = report[(report["line"] == 5) & (report["column"] == "Created")].iloc[0]
    assert bad_date["value"] == "notadate"
    assert "3 of 5 rows are invalid" in str(err.value)


def test_reject_invalid_loads_valid_rows_and_quarantines_the_rest(store, tickets_csv):
    result = ingest_file(
        store, tickets_csv, source="helpdesk", mapping=Mapping.from_dict(TICKET_MAPPING), reject_invalid=True
    )
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (5, 2, 3)
    loaded = rows(store, "tickets")
    assert list(loaded["ticket_id"]) == ["T1", "T2"]
    assert list(loaded["email"]) == ["ann@example.com", "bob@example.com"]  # normalised
    assert loaded.loc[0, "transfers"] == 1 and loaded.loc[0, "satisfaction"] == 4.0
    assert pd.Timestamp(loaded.loc[0, "closed_at"]) == pd.Timestamp("2024-01-03 10:00")
    assert pd.isna(loaded.loc[1, "closed_at"])
    with store.connect() as conn:
        q = pd.DataFrame(conn.execute(sa.select(quarantine_table)).mappings().all())
    assert sorted(q["row_number"].unique().tolist()) == [4, 5, 6]
    assert q["reason"].str.startswith("expected").all()


def test_the_same_file_twice_changes_nothing(store, tickets_csv):
    m = Mapping.from_dict(TICKET_MAPPING)
    ingest_file(store, tickets_csv, source="helpdesk", mapping=m, reject_invalid=True)
    first = counts(store)
    again = ingest_file(store, tickets_csv, source="helpdesk", mapping=m, reject_invalid=True)
    assert again.rows_loaded == 0 and again.rows_duplicate == 2
    after = counts(store)
    assert after["tickets"] == first["tickets"] == 2


def test_identical_lines_without_a_natural_key_are_kept_but_not_reloaded(store, tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text("acct,when,amt\nA1,2024-01-01,10\nA1,2024-01-01,10\nA2,2024-01-02,5\n", encoding="utf-8")
    m = Mapping("transactions", {"account_id": "acct", "timestamp": "when", "amount": "amt"})
    assert ingest_file(store, p, source="billing", mapping=m).rows_loaded == 3
    assert ingest_file(store, p, source="billing", mapping=m).rows_loaded == 0
    assert counts(store)["transactions"] == 3


def test_an_append_drops_the_earlier_rows_it_repeats_at_either_end_of_its_time_range(store, tmp_path):
    # events are keyed by their content: an earlier row with the same key has the same time, so the
    # append compares only earlier rows within its own time range (the first and last included)
    m = Mapping("events", {"visitor_id": "cookie", "timestamp": "when", "activity": "page"})
    first = tmp_path / "monday.csv"
    first.write_text(
        "cookie,when,page\nc1,2024-01-01 09:00,home\nc1,2024-01-02 09:00,pricing\nc2,2024-01-03 09:00,home\n",
        encoding="utf-8",
    )
    assert ingest_file(store, first, source="web", mapping=m).rows_loaded == 3
    other = tmp_path / "shop.csv"  # the same row in another source is that source's own row
    other.write_text("cookie,when,page\nc9,2024-01-02 12:00,home\n", encoding="utf-8")
    assert ingest_file(store, other, source="shop", mapping=m).rows_loaded == 1
    again = tmp_path / "tuesday.csv"
    again.write_text(
        "cookie,when,page\n"
        "c1,2024-01-01 09:00,home\n"  # repeats the earliest earlier row: the load's first time
        "c1,2024-01-02 09:00,checkout\n"  # same time as an earlier row, another page: new
        "c9,2024-01-02 12:00,home\n"  # repeats a row of the shop source only: new for web
        "c2,2024-01-03 09:00,home\n",  # repeats the latest earlier row: the load's last time
        encoding="utf-8",
    )
    result = ingest_file(store, again, source="web", mapping=m, mode="append")
    assert result.rows_loaded == 2 and result.rows_already_loaded == 2
    got = rows(store, "events")
    web = got[got["source"] == "web"]
    assert sorted(web["activity"]) == ["checkout", "home", "home", "home", "pricing"]
    assert len(web) == 5 and (web["row_key"].value_counts() == 1).all()


def test_replace_swaps_the_source_and_leaves_other_sources_alone(store, tmp_path):
    m = Mapping("transactions", {"account_id": "acct", "timestamp": "when", "amount": "amt"})
    a = tmp_path / "a.csv"
    a.write_text("acct,when,amt\nA1,2024-01-01,10\nA2,2024-01-02,5\n", encoding="utf-8")
    b = tmp_path / "b.csv"
    b.write_text("acct,when,amt\nA3,2024-02-01,7\n", encoding="utf-8")
    ingest_file(store, a, source="billing", mapping=m)
    ingest_file(store, a, source="shop", mapping=m)
    ingest_file(store, b, source="billing", mapping=m, mode="replace")
    got = rows(store, "transactions")
    assert sorted(got.loc[got["source"] == "billing", "account_id"]) == ["A3"]
    assert sorted(got.loc[got["source"] == "shop", "account_id"]) == ["A1", "A2"]


def test_an_odd_but_valid_export_loads_correctly(store, tmp_path):
    # Latin-1, semicolons, decimal comma with thousands dots, day-first dotted dates.
    text = "Kundennr;Datum;Betrag;Beschreibung\nK1;02.01.2024;1.234,50;Müller Gebühr\nK2;13.01.2024;-5,00;Rückgabe\n"
    p = tmp_path / "export.csv"
    p.write_bytes(text.encode("latin-1"))
    m = Mapping("transactions", {"customer_id": "Kundennr", "timestamp": "Datum", "amount": "Betrag"})
    result = ingest_file(store, p, source="erp", mapping=m)
    assert result.rows_loaded == 2
    assert any("latin-1" in n and "semicolon" in n for n in result.notes)
    got = rows(store, "transactions")
    assert got["amount"].tolist() == [1234.50, -5.0]
    assert [pd.Timestamp(t) for t in got["timestamp"]] == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-13")]
    assert json.loads(got.loc[0, "attrs"]) == {"Beschreibung": "Müller Gebühr"}  # unmapped column kept


def test_quantity_and_unit_price_give_the_amount(store, tmp_path):
    p = tmp_path / "lines.csv"
    p.write_text(
        "Invoice,Cust,When,Qty,Price\n1,C1,2024-01-01 10:00,3,2.5\n1,C1,2024-01-01 10:00,-1,2.5\n", encoding="utf-8"
    )
    m = Mapping(
        "transactions",
        {
            "transaction_id": "Invoice",
            "customer_id": "Cust",
            "timestamp": "When",
            "quantity": "Qty",
            "unit_price": "Price",
        },
    )
    ingest_file(store, p, source="shop", mapping=m)
    assert rows(store, "transactions")["amount"].tolist() == [7.5, -2.5]


def test_a_mapping_to_a_missing_column_says_which(store, tickets_csv):
    bad = dict(TICKET_MAPPING, columns=dict(TICKET_MAPPING["columns"], opened_at="Opened On"))
    with pytest.raises(MappingError, match=r"'Opened On' \(mapped to opened_at\) is not in the file"):
        ingest_file(store, tickets_csv, source="helpdesk", mapping=Mapping.from_dict(bad))
    assert counts(store)["loads"] == 0


def test_without_a_customer_identifier_the_mapping_is_refused(store, tmp_path):
    p = tmp_path / "events.csv"
    p.write_text("when,what\n2024-01-01,login\n", encoding="utf-8")
    with pytest.raises(MappingError, match="no column identifies the customer"):
        ingest_file(store, p, source="web", mapping=Mapping("events", {"timestamp": "when", "activity": "what"}))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"a,b,c\n", "no data rows"),
        (b"\x00\x01\x02binary\x00junk" * 50, "binary"),
    ],
)
def test_unreadable_files_get_a_clear_message_and_store_nothing(store, tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises((ExtractError, MappingError), match=message):
        ingest_file(store, p, source="x", kind="events")
    assert counts(store)["loads"] == 0


def test_the_mapping_is_remembered_per_source(store, tickets_csv):
    ingest_file(store, tickets_csv, source="helpdesk", mapping=Mapping.from_dict(TICKET_MAPPING), reject_invalid=True)
    remembered = saved_mapping(store, "helpdesk")
    assert remembered.columns == TICKET_MAPPING["columns"]
    # Next week's upload needs no mapping at all.
    again = ingest_file(store, tickets_csv, source="helpdesk", reject_invalid=True)
    assert again.mapping.columns == TICKET_MAPPING["columns"]


def test_auto_suggested_mapping_finds_the_ticket_fields(store, tickets_csv):
    result = ingest_file(store, tickets_csv, source="helpdesk", reject_invalid=True)
    assert result.kind == "tickets"
    assert result.mapping.columns["ticket_id"] == "Ticket #"
    assert result.mapping.columns["opened_at"] == "Created"
    assert result.mapping.columns["closed_at"] == "Resolved"


def test_an_excel_workbook_loads_through_the_same_path(store, tmp_path, private_tempdir):
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Kunde", "Zeit", "Aktion"])
    sheet.append(["K1", datetime(2024, 3, 1, 9, 30), "login"])
    sheet.append(["K2", datetime(2024, 3, 2, 17, 5), "checkout"])
    p = tmp_path / "export.xlsx"
    book.save(p)
    m = Mapping("events", {"customer_id": "Kunde", "timestamp": "Zeit", "activity": "Aktion"})
    result = ingest_file(store, p, source="app", mapping=m)
    assert result.rows_loaded == 2 and result.file_name == "export.xlsx"
    # the sheet's CSV copy is gone: nothing beside the input, nothing left in the temp folder
    assert not (tmp_path / "export.xlsx.csv").exists()
    assert not list(private_tempdir.glob("cxdash-sheet-*"))
    got = rows(store, "events")
    assert [pd.Timestamp(t) for t in got["timestamp"]] == [
        pd.Timestamp("2024-03-01 09:30"),
        pd.Timestamp("2024-03-02 17:05"),
    ]


def test_a_corrupt_workbook_gets_a_clear_message(store, tmp_path, private_tempdir):
    p = tmp_path / "broken.xlsx"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ExtractError, match="not a readable Excel workbook"):
        ingest_file(store, p, source="app", kind="events")
    assert not list(private_tempdir.glob("cxdash-sheet-*"))


def test_the_callers_mapping_is_never_changed_by_a_load(store, tmp_path):
    p = tmp_path / "events.csv"
    p.write_text("who,when,what\nC1,2024-03-01 09:30,login\nC2,02/03/2024 10:00,checkout\n")
    m = Mapping("events", {"customer_id": "who", "timestamp": "when", "activity": "what"})
    before = json.dumps(m.to_dict(), sort_keys=True)
    result = ingest_file(store, p, source="app", mapping=m, reject_invalid=True, links={})
    # (two date formats in one column once crashed the format note; one row is read, the other refused)
    assert result.rows_loaded + result.rows_rejected == 2 and result.rows_loaded >= 1
    assert result.mapping.formats  # the load settled the formats on its own copy...
    assert json.dumps(m.to_dict(), sort_keys=True) == before  # ...never on the caller's


def test_a_source_of_another_kind_is_refused_before_the_file_is_read_through(store, tmp_path):
    crm = tmp_path / "crm.csv"
    crm.write_text("id,email\nC1,a@x.com\n")
    ingest_file(store, crm, source="app", mapping=Mapping("customers", {"customer_id": "id", "email": "email"}))
    # An events file whose last line is broken: the kind is refused first, so the break is never reached.
    events = tmp_path / "events.csv"
    good = "".join(f"C{i},2024-03-01 09:30,login\n" for i in range(400_000))  # past the first 8 MB block
    events.write_text("who,when,what\n" + good + "C9,2024-03-02,login,extra,cells\n")
    with pytest.raises(IngestError, match="already holds customers data"):
        ingest_file(
            store,
            events,
            source="app",
            mapping=Mapping("events", {"customer_id": "who", "timestamp": "when", "activity": "what"}),
        )
