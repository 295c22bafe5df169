"""Values as real systems write them: yes/no flags, zoned and epoch timestamps, day-first vs
month-first decided on the whole column, amounts with currencies and either decimal mark, and
failures that cite the physical line of the file. Expected values are worked out by hand or by
plain pandas in each test; every refused file leaves the store empty."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdash.cli.main import main
from cxdash.ingest.load import IngestError, ingest_file
from cxdash.ingest.mapping import Mapping, suggest_mapping
from cxdash.ingest.readers import iter_chunks, read_header, sniff_format
from cxdash.store.database import KIND_TABLES, loads_table, quarantine_table
from tests.conftest import FIXTURES


def _rows(store, kind: str) -> pd.DataFrame:
    t = KIND_TABLES[kind]
    with store.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(t).order_by(t.c.row_number)).mappings().all())


def _nothing_stored(store, kind: str) -> None:
    with store.connect() as conn:
        for t in (KIND_TABLES[kind], loads_table, quarantine_table):
            assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 0, t.name


def _write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------- booleans
def test_yes_no_flags_in_every_common_spelling_load_as_booleans(duck, tmp_path):
    written = ["True", "false", "Y", "n", "1", "0", "t", "F", " yes ", "NO"]
    meaning = [True, False, True, False, True, False, True, False, True, False]  # read by hand
    text = "customer_id,churn_flag,opt_in\n" + "".join(f"C{i},{w},{w}\n" for i, w in enumerate(written))
    p = _write(tmp_path, "flags.csv", text)
    result = ingest_file(duck, p, source="crm", kind="customers")
    assert (
        result.mapping.columns["churn_label"] == "churn_flag"
        and result.mapping.columns["consent_marketing"] == "opt_in"
    )
    rows = _rows(duck, "customers")
    assert rows["churn_label"].tolist() == meaning
    assert rows["consent_marketing"].tolist() == meaning


def test_a_flag_that_is_not_yes_or_no_is_refused_with_its_line_and_nothing_is_stored(duck, tmp_path):
    p = _write(tmp_path, "flags.csv", "customer_id,churn_flag\nC1,True\nC2,maybe\nC3,False\n")
    with pytest.raises(IngestError) as err:
        ingest_file(
            duck,
            p,
            source="crm",
            mapping=Mapping("customers", {"customer_id": "customer_id", "churn_label": "churn_flag"}),
        )
    assert "churn_flag" in str(err.value) and "yes/no" in str(err.value)
    f = err.value.result.failures
    assert f[["line", "record", "value"]].values.tolist() == [[3, 2, "maybe"]]
    _nothing_stored(duck, "customers")


def test_an_escalation_flag_is_never_mapped_as_a_transfer_count_nor_a_duration_as_a_date():
    header = [
        "ticket_id",
        "account_id",
        "submitted_at",
        "resolution_time_hours",
        "first_response_time_minutes",
        "escalation_flag",
        "Time to Resolution",
        "escalations",
    ]
    sample = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "account_id": ["A1", "A2"],
            "submitted_at": ["2024-01-02 10:00", "2024-01-03 11:00"],
            "resolution_time_hours": ["6.5", "48"],
            "first_response_time_minutes": ["12", "5"],
            "escalation_flag": ["True", "False"],
            "Time to Resolution": ["02:30:00", "1 days 04:00:00"],
            "escalations": ["0", "1"],
        },
        dtype="str",
    )
    m = suggest_mapping("tickets", header, sample).columns
    assert m["opened_at"] == "submitted_at"
    assert "closed_at" not in m  # neither hours, minutes nor a "Time to Resolution" duration is a date
    assert m.get("transfers") == "escalations"  # a count of escalations is; the yes/no flag is not
    no_count = suggest_mapping("tickets", header[:-1], sample.drop(columns="escalations")).columns
    assert "transfers" not in no_count


# ---------------------------------------------------------------- timestamps
def test_utc_words_z_and_offsets_are_stored_as_naive_utc(duck, tmp_path):
    written = [
        "2019-10-01 00:00:00 UTC",
        "2019-10-01T10:00:00Z",
        "2019-10-01T10:00:00+02:00",
        "2019-10-01T23:30:00-05:00",
    ]
    utc = ["2019-10-01 00:00:00", "2019-10-01 10:00:00", "2019-10-01 08:00:00", "2019-10-02 04:30:00"]  # by hand
    p = _write(
        tmp_path,
        "events.csv",
        "user_id,event_time,event_type\n" + "".join(f"U{i},{w},view\n" for i, w in enumerate(written)),
    )
    result = ingest_file(duck, p, source="web", kind="events")
    assert [str(t) for t in _rows(duck, "events")["timestamp"]] == utc
    assert any("converted to UTC" in n for n in result.notes)


@pytest.mark.parametrize(("scale", "word"), [(1, "epoch seconds"), (1000, "epoch milliseconds")])
def test_epoch_times_are_read_by_magnitude_and_the_notes_say_which(duck, tmp_path, scale, word):
    seconds = [1569888000, 1569891600, 1572566400]  # 2019-10-01 00:00, 01:00 and 2019-11-01 00:00 UTC
    p = _write(
        tmp_path,
        "events.csv",
        "user_id,ts,event_type\n" + "".join(f"U{i},{s * scale},view\n" for i, s in enumerate(seconds)),
    )
    result = ingest_file(
        duck,
        p,
        source="web",
        mapping=Mapping("events", {"customer_id": "user_id", "timestamp": "ts", "activity": "event_type"}),
    )
    assert [str(t) for t in _rows(duck, "events")["timestamp"]] == [
        "2019-10-01 00:00:00",
        "2019-10-01 01:00:00",
        "2019-11-01 00:00:00",
    ]
    assert any(word in n for n in result.notes), result.notes


def test_a_column_where_every_date_reads_both_ways_loads_day_first_and_the_notes_name_both_readings(duck, tmp_path):
    p = _write(
        tmp_path, "orders.csv", "order_id,customer_id,order_date,amount\nO1,C1,03/04/2024,10\nO2,C2,05/06/2024,20\n"
    )
    result = ingest_file(duck, p, source="shop", kind="transactions")
    note = next(n for n in result.notes if n.startswith("timestamp: dates"))
    assert "AMBIGUOUS" in note and "%d/%m/%Y" in note and "%m/%d/%Y" in note
    assert "03/04/2024 is 03 April 2024, not 04 March 2024" in note
    assert [str(t) for t in _rows(duck, "transactions")["timestamp"]] == ["2024-04-03 00:00:00", "2024-06-05 00:00:00"]


def test_day_or_month_first_is_decided_on_the_whole_column_not_the_first_rows(duck, tmp_path):
    # 6,000 rows whose month and day are both <= 12 (the 5,000 the formats are detected on decide
    # nothing), then one row only month-first reads: 12/25/2024.
    first = [f"{(i % 12) + 1:02d}/{(i % 11) + 1:02d}/2024" for i in range(6000)]
    dates = [*first, "12/25/2024"]
    text = "order_id,customer_id,order_date,amount\n" + "".join(f"O{i},C{i % 50},{d},1\n" for i, d in enumerate(dates))
    p = _write(tmp_path, "orders.csv", text)
    result = ingest_file(duck, p, source="shop", kind="transactions")
    assert result.rows_loaded == len(dates)
    expected = pd.to_datetime(pd.Series(dates), format="%m/%d/%Y")
    got = _rows(duck, "transactions")["timestamp"]
    assert (pd.to_datetime(got).to_numpy() == expected.to_numpy()).all()
    assert any("month-first" in n and "whole column" in n for n in result.notes), result.notes


# ---------------------------------------------------------------- amounts
def test_amounts_with_signs_codes_and_accounting_negatives_keep_their_currency_per_row(duck, tmp_path):
    written = ["$12", "€12", "12 EUR", "USD 12.00", "(12.00)", "1,234.56", "-£3.50"]
    amounts = [12.0, 12.0, 12.0, 12.0, -12.0, 1234.56, -3.5]  # by hand
    currencies = ["USD", "EUR", "EUR", "USD", None, None, "GBP"]
    text = "order_id,customer_id,order_date,amount\n" + "".join(
        f'O{i},C{i},2024-01-{i + 1:02d},"{w}"\n' for i, w in enumerate(written)
    )
    p = _write(tmp_path, "orders.csv", text)
    result = ingest_file(duck, p, source="shop", kind="transactions")
    rows = _rows(duck, "transactions")
    assert rows["amount"].tolist() == amounts
    assert [None if pd.isna(c) else c for c in rows["currency"]] == currencies
    assert any("MIXED currencies" in n for n in result.notes)
    assert any("decimal point" in n for n in result.notes)
    assert any("dollar sign is read as USD" in n for n in result.notes)


def test_a_european_file_reads_decimal_commas_and_says_so(duck, tmp_path):
    result = ingest_file(duck, FIXTURES / "exports" / "eu_transactions.csv", source="eu", kind="transactions")
    assert _rows(duck, "transactions")["amount"].tolist() == [1234.56, 89.90, 12.0, 2500.0, -45.5, 310.25]
    assert any("decimal comma" in n for n in result.notes)
    assert [str(t)[:10] for t in _rows(duck, "transactions")["timestamp"]][:2] == ["2024-01-31", "2024-02-01"]


@pytest.mark.parametrize(
    ("text", "bad", "mark"),
    [
        (
            'order_id,customer_id,order_date,amount\nO1,C1,2024-01-01,"1,234.56"\nO2,C2,2024-01-02,12.50\n'
            'O3,C3,2024-01-03,"1.234,56"\n',
            "1.234,56",
            "decimal point",
        ),
        (
            "order_id;customer_id;order_date;amount\nO1;C1;2024-01-01;1.234,56\nO2;C2;2024-01-02;12,50\n"
            "O3;C3;2024-01-03;1,234.56\n",
            "1,234.56",
            "decimal comma",
        ),
    ],
    ids=["comma-written value in a decimal-point file", "point-written value in a decimal-comma file"],
)
def test_a_number_written_with_the_other_decimal_mark_is_refused_not_read_as_1_23456(duck, tmp_path, text, bad, mark):
    p = _write(tmp_path, "orders.csv", text)
    with pytest.raises(IngestError) as err:
        ingest_file(duck, p, source="shop", kind="transactions")
    f = err.value.result.failures
    assert f[["line", "record", "column", "value"]].values.tolist() == [[4, 3, "amount", bad]]
    assert mark in f["expected"].iloc[0] and "not guessed" in f["expected"].iloc[0]
    assert "amount" in str(err.value) and "nothing was loaded" in str(err.value)
    _nothing_stored(duck, "transactions")


def test_subscription_revenue_in_euros_records_the_currency_in_the_formats_and_notes(duck, tmp_path):
    p = _write(
        tmp_path,
        "subs.csv",
        "subscription_id,account_id,start_date,mrr\nS1,A1,2024-01-01,€49.00\nS2,A2,2024-02-01,€99.00\n",
    )
    result = ingest_file(duck, p, source="billing", kind="subscriptions")
    assert _rows(duck, "subscriptions")["mrr"].tolist() == [49.0, 99.0]
    assert result.mapping.formats["currency"] == {"mrr": "EUR"}
    assert any(n.startswith("mrr: amounts are in EUR") and "stores no currency" in n for n in result.notes)


# ---------------------------------------------------------------- physical lines
MULTILINE = (
    "ticket_id,email,opened_at,description\n"  # line 1
    'T1,a@x.org,2024-01-01,"one line"\n'  # line 2, record 1
    'T2,b@x.org,2024-01-02,"first\nsecond\nthird"\n'  # lines 3-5, record 2
    "T3,c@x.org,2024-01-03,plain\n"  # line 6, record 3
    'T4,d@x.org,not a date,"again\ntwo lines"\n'  # lines 7-8, record 4
    "T5,e@x.org,2024-01-05,last\n"  # line 9, record 5
)


def test_failures_cite_the_physical_line_and_the_record_when_a_quoted_value_spans_lines(duck, tmp_path):
    p = _write(tmp_path, "tickets.csv", MULTILINE)
    with pytest.raises(IngestError) as err:
        ingest_file(duck, p, source="desk", kind="tickets")
    f = err.value.result.failures
    assert f[["line", "record", "column", "value"]].values.tolist() == [[7, 4, "opened_at", "not a date"]]
    assert MULTILINE.splitlines()[7 - 1].startswith("T4,")  # line 7 of the file is where record 4 starts
    _nothing_stored(duck, "tickets")


def test_stored_rows_and_quarantine_carry_the_physical_line_and_the_cli_report_both(tmp_path, capsys):
    p = _write(tmp_path, "tickets.csv", MULTILINE)
    db = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    report = tmp_path / "report.csv"
    code = main(
        [
            "--db",
            db,
            "ingest",
            str(p),
            "--source",
            "desk",
            "--kind",
            "tickets",
            "--reject-invalid",
            "--report",
            str(report),
        ]
    )
    assert code == 0, capsys.readouterr().err
    rep = pd.read_csv(report)
    assert rep[["line", "record", "column"]].values.tolist() == [[7, 4, "opened_at"]]
    from cxdash.store.database import open_store

    s = open_store(db)
    try:
        assert _rows(s, "tickets")["row_number"].tolist() == [2, 3, 6, 9]  # T1, T2, T3, T5 start there
        with s.connect() as conn:
            assert conn.execute(sa.select(quarantine_table.c.row_number)).scalars().all() == [7]
    finally:
        s.dispose()


def test_a_file_without_line_breaks_in_values_numbers_lines_as_records_plus_one(tmp_path):
    from cxdash.ingest.readers import LineMap

    p = _write(tmp_path, "plain.csv", "a,b\n" + "".join(f"{i},x\n" for i in range(5000)))
    lines = LineMap()
    n = sum(len(c) for c in iter_chunks(p, sniff_format(p), chunk_rows=1000, lines=lines))
    assert n == 5000 and lines.breaks == 0
    assert lines.lines([0, 4999]).tolist() == [2, 5001]
    assert read_header(p) == ["a", "b"]


def test_an_ambiguous_date_column_follows_the_order_of_the_files_other_date_column(duck, tmp_path):
    text = (
        "ticket_id,email,opened_at,closed_at\n"
        "T1,a@x.org,03/04/2024,13/04/2024\n"  # closed_at reads only day-first (13 is no month)
        "T2,b@x.org,05/06/2024,07/06/2024\n"
    )
    result = ingest_file(duck, _write(tmp_path, "t.csv", text), source="desk", kind="tickets")
    assert any("opened_at: day/month order taken from closed_at" in n for n in result.notes), result.notes
    assert [str(t)[:10] for t in _rows(duck, "tickets")["opened_at"]] == ["2024-04-03", "2024-06-05"]


def test_a_second_load_with_the_saved_mapping_says_which_saved_formats_it_used(duck, tmp_path):
    p = _write(tmp_path, "orders.csv", "order_id;customer_id;order_date;amount\nO1;C1;31.01.2024;1.234,56\n")
    ingest_file(duck, p, source="eu", kind="transactions")
    again = ingest_file(duck, p, source="eu")
    assert "amount: numbers use a decimal comma (as saved with the mapping)" in again.notes
    assert any(n.startswith("timestamp: dates read as day-first (%d.%m.%Y) (as saved") for n in again.notes)


def test_the_rejected_rows_download_finds_each_record_by_its_number_not_its_line(duck, tmp_path):
    from cxdash.ui.ops import StagedFile, rejected_rows_csv

    p = _write(tmp_path, "tickets.csv", MULTILINE)
    with pytest.raises(IngestError) as err:
        ingest_file(duck, p, source="desk", kind="tickets")
    fmt = sniff_format(p)
    staged = StagedFile(p, "tickets.csv", p.stat().st_size, fmt, read_header(p, fmt), pd.DataFrame())
    out = pd.read_csv(io.BytesIO(rejected_rows_csv(staged, err.value.result)), dtype=str)
    assert out[["line", "record", "ticket_id"]].values.tolist() == [["7", "4", "T4"]]
    assert out["description"].iloc[0] == "again\ntwo lines"


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_any_amount_written_with_either_decimal_mark_reads_back_and_the_other_mark_is_never_guessed(d):
    from cxdash.ingest.parsers import parse_number

    point = f"{d:,.2f}"  # Python's own formatting: 1,234.56
    comma = point.replace(",", "_").replace(".", ",").replace("_", ".")  # 1.234,56
    value = float(d)
    assert parse_number(pd.Series([point], dtype="str"), ".").iloc[0] == pytest.approx(value)
    assert parse_number(pd.Series([comma], dtype="str"), ",").iloc[0] == pytest.approx(value)
    assert pd.isna(parse_number(pd.Series([comma], dtype="str"), ".").iloc[0])
    assert pd.isna(parse_number(pd.Series([point], dtype="str"), ",").iloc[0])
    accounting = f"({abs(d):,.2f})"
    assert parse_number(pd.Series([accounting], dtype="str"), ".").iloc[0] == pytest.approx(-abs(value))


def test_an_amount_written_in_another_currency_than_its_currency_column_is_refused(duck, tmp_path):
    text = "order_id,customer_id,order_date,amount,currency\nO1,C1,2024-01-01,€12.00,EUR\nO2,C2,2024-01-02,$30.00,eur\n"
    with pytest.raises(IngestError) as err:
        ingest_file(duck, _write(tmp_path, "orders.csv", text), source="shop", kind="transactions")
    f = err.value.result.failures
    assert f[["line", "record", "column", "rule", "value"]].values.tolist() == [
        [3, 2, "amount", "currency_match", "$30.00"]
    ]
    assert "currency column" in str(err.value)
    _nothing_stored(duck, "transactions")


def test_blank_lines_before_a_bad_record_still_give_its_physical_line(duck, tmp_path):
    text = (
        "ticket_id,email,opened_at,description\n"  # line 1
        "T1,a@x.org,2024-01-01,one\n"  # line 2, record 1
        "\n"  # line 3: blank, skipped
        'T2,b@x.org,2024-01-02,"two\nlines"\n'  # lines 4-5, record 2
        "\n"  # line 6: blank
        "T3,c@x.org,never,three\n"  # line 7, record 3
    )
    with pytest.raises(IngestError) as err:
        ingest_file(duck, _write(tmp_path, "t.csv", text), source="desk", kind="tickets")
    f = err.value.result.failures
    assert f[["line", "record", "value"]].values.tolist() == [[7, 3, "never"]]
    assert text.splitlines()[7 - 1].startswith("T3,")
    _nothing_stored(duck, "tickets")
