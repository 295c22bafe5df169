"""More of the hostile corpus (issue 15): files and mappings that used to load a wrong value
silently or answer with a Python error. Each test asserts the message (what, where, how to fix),
that nothing stored changed when the file is refused, and that no traceback text is shown.
"""

from __future__ import annotations

import gzip
import io
import zipfile

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.cli import main as cli
from cxdash.governance.erasure import erase_customer
from cxdash.ingest.identifiers import normalise_identity
from cxdash.ingest.load import IngestError, ingest_file
from cxdash.ingest.mapping import Mapping, MappingError
from cxdash.ingest.readers import ExtractError
from cxdash.store.database import KIND_TABLES
from tests.hostile_support import EVENTS, GOOD, snapshot, write

CRM = Mapping("customers", {"customer_id": "id", "email": "email"})
TICKETS = Mapping("tickets", {"ticket_id": "t", "email": "email", "opened_at": "opened"})


def no_traceback(message: str) -> None:
    assert "Traceback" not in message and 'File "' not in message and "Error:" not in message


def column(store, kind: str, name: str, source: str) -> list:
    t = KIND_TABLES[kind]
    with store.connect() as conn:
        return conn.execute(sa.select(t.c[name]).where(t.c.source == source).order_by(t.c[name])).scalars().all()


# ---------------------------------------------------------------- reading
def test_a_gzip_file_named_csv_is_read_as_gzip_and_the_notes_say_so(loaded, tmp_path):
    p = write(tmp_path, "export.csv", gzip.compress(b"cust,when,what\nG1,2024-02-01 10:00,login\n"))
    result = ingest_file(loaded, p, source="web2", mapping=EVENTS)
    assert result.rows_loaded == 1 and column(loaded, "events", "customer_id", "web2") == ["G1"]
    assert "gzip-compressed" in result.notes[0]


def test_a_zip_archive_named_csv_is_named_as_one(loaded, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner.csv", GOOD)
    before = snapshot(loaded)
    with pytest.raises(ExtractError) as info:
        ingest_file(loaded, write(tmp_path, "zipped.csv", buf.getvalue()), source="web", mapping=EVENTS)
    message = str(info.value)
    assert message.startswith("zipped.csv: this is a zip archive") and "unzip" in message
    no_traceback(message)
    assert snapshot(loaded) == before


def test_a_nul_byte_after_the_first_4_kb_is_refused_with_its_line(loaded, tmp_path):
    body = "cust,when,what\n" + "C3,2024-01-03 10:00,login\n" * 1000  # 26 KB: lines 2..1001
    p = write(tmp_path, "nul.csv", body.encode() + b"C4,2024-01-04 10:00,a\x00b@example.com\n")
    before = snapshot(loaded)
    with pytest.raises(ExtractError) as info:
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    message = str(info.value)
    assert message.startswith("nul.csv: line 1,002 holds a NUL byte") and "Export it again" in message
    no_traceback(message)
    assert snapshot(loaded) == before


def test_a_nul_byte_in_a_later_chunk_of_a_utf16_file_is_refused(loaded, tmp_path):
    body = "cust,when,what\n" + "C3,2024-01-03 10:00,login\n" * 10 + "C4,2024-01-04 10:00,a\x00b\n"
    p = write(tmp_path, "nul16.csv", body.encode("utf-16"))
    before = snapshot(loaded)
    with pytest.raises(ExtractError, match=r"^nul16\.csv: line 12 holds a NUL byte"):
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    assert snapshot(loaded) == before


def test_a_nul_byte_in_the_header_is_refused(loaded, tmp_path):
    p = write(tmp_path, "nulhead.csv", b"cu\x00st,when,what\n" + b"x" * 5000 + b"\n")
    with pytest.raises(ExtractError) as info:
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    # within the first 4 KB the old refusal still speaks (binary file); either way the file is named
    assert str(info.value).startswith("nulhead.csv: ") and "NUL" in str(info.value)


# ---------------------------------------------------------------- mappings
BAD_FORMATS = [
    ({"dates": {"timestamp": "bogus"}}, '"formats"."dates"."timestamp" is \'bogus\', not a date format', "%d/%m/%Y"),
    ({"dates": "x"}, '"formats"."dates" must be an object', "FIELD: VALUE"),
    ({"decimal": {"timestamp": ","}}, '"formats"."decimal" names \'timestamp\', which is not a number field', ""),
    (
        {"decimal": {"value": ";"}},
        '"formats"."decimal"."value" is \';\'',
        '"." (decimal point) and "," (decimal comma)',
    ),
    ({"colour": {}}, "\"formats\" has an unknown entry 'colour'", "dates, decimal, currency"),
    ({"dates": {"when": "%Y"}}, "\"formats\".\"dates\" names 'when', not a field of kind 'events'", "timestamp"),
]


@pytest.mark.parametrize(("formats", "says", "allowed"), BAD_FORMATS, ids=[str(f) for f, _, _ in BAD_FORMATS])
def test_a_bad_formats_entry_names_the_entry_and_the_allowed_values(loaded, tmp_path, formats, says, allowed):
    p = write(tmp_path, "good2.csv", GOOD.encode())
    before = snapshot(loaded)
    with pytest.raises(MappingError) as info:
        ingest_file(loaded, p, source="web", mapping=Mapping("events", EVENTS.columns, formats))
    message = str(info.value)
    assert message.startswith("good2.csv: ") and says in message and allowed in message
    no_traceback(message)
    assert snapshot(loaded) == before


def test_a_mapping_file_whose_formats_is_not_an_object_is_refused_in_words():
    with pytest.raises(MappingError, match='"formats" must be an object like'):
        Mapping.from_dict({"kind": "events", "columns": EVENTS.columns, "formats": "x"})


# ---------------------------------------------------------------- identifiers
NULL_LIKE = ["NULL", "N/A", "None", "NaN", "#N/A", "-", "null", " n/a "]


@pytest.mark.parametrize("token", NULL_LIKE)
def test_a_null_like_text_is_a_missing_identifier(token):
    for f in ("customer_id", "email", "account_id"):
        assert normalise_identity(f, pd.Series([token], dtype="string")).isna().all(), (f, token)


def test_null_like_customer_ids_are_refused_as_missing_and_never_become_customers(loaded, tmp_path):
    body = "cust,when,what\n" + "".join(f"{t},2024-01-01 10:00,login\n" for t in NULL_LIKE) + "C9,2024-01-01 10:00,x\n"
    p = write(tmp_path, "nulls.csv", body.encode())
    before = snapshot(loaded)
    with pytest.raises(IngestError) as info:
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    failures = info.value.result.failures
    assert sorted(failures.loc[failures["rule"] == "customer_identifier", "line"]) == list(range(2, 10))
    assert snapshot(loaded) == before
    result = ingest_file(loaded, p, source="web3", mapping=EVENTS, reject_invalid=True)
    assert column(loaded, "events", "customer_id", "web3") == ["C9"]
    note = next(n for n in result.notes if n.startswith("cust: 8 value(s)"))
    assert "read as missing, not as identifiers" in note and "line 2: 'NULL'" in note


def test_zero_width_and_full_width_characters_do_not_make_a_second_customer_and_erasure_reaches_both(duck, tmp_path):
    crm = write(tmp_path, "crm.csv", b"id,email\nK1,ann@example.com\nK2,bo@example.com\n")
    ingest_file(duck, crm, source="crm", mapping=CRM)
    desk = write(
        tmp_path,
        "desk.csv",
        (
            "t,email,opened\n"
            "T1,ann\u200b@example.com,2024-01-01\n"  # a zero-width space inside
            "T2,\ufeff\uff21\uff2e\uff2e@example.com,2024-01-02\n"  # a BOM and full-width letters
            "T3,bo@example.com,2024-01-03\n"
        ).encode(),
    )
    ingest_file(duck, desk, source="desk", mapping=TICKETS)
    assert column(duck, "tickets", "email", "desk") == ["ann@example.com", "ann@example.com", "bo@example.com"]
    erase_customer(duck, "ann@example.com", actor="dpo")
    assert column(duck, "tickets", "ticket_id", "desk") == ["T3"]
    assert column(duck, "customers", "customer_id", "crm") == ["K2"]


def test_a_cyrillic_look_alike_email_is_kept_apart_and_named_in_the_notes(duck, tmp_path):
    crm = write(tmp_path, "crm.csv", b"id,email\nK1,ann@example.com\n")
    ingest_file(duck, crm, source="crm", mapping=CRM)
    spoof = "\u0430nn@example.com"  # Cyrillic a
    desk = write(
        tmp_path, "desk.csv", f"t,email,opened\nT1,{spoof},2024-01-01\nT2,ann@example.com,2024-01-02\n".encode()
    )
    result = ingest_file(duck, desk, source="desk", mapping=TICKETS)
    note = next(n for n in result.notes if "Greek or Cyrillic" in n)
    assert note.startswith("email: 1 value(s) mix Latin") and f"line 2: {spoof!r}" in note
    assert "not merged" in note
    erase_customer(duck, "ann@example.com", actor="dpo")
    assert column(duck, "tickets", "ticket_id", "desk") == ["T1"]  # the look-alike is another identifier


# ---------------------------------------------------------------- the failure report
def test_failures_beyond_the_kept_list_are_counted_and_noted(duck, tmp_path):
    body = "cust,when,what\n" + "".join(f"C{i},not a date,x\n" for i in range(50))
    p = write(tmp_path, "bad.csv", body.encode())
    with pytest.raises(IngestError) as info:
        ingest_file(duck, p, source="web", mapping=EVENTS, max_failures=10)
    result = info.value.result
    assert len(result.failures) == 10 and result.failures_total == 50
    assert result.failures["line"].tolist() == list(range(2, 12))  # the first ten, in file order
    assert any("only the first 10 of 50 are listed (through line 11)" in n for n in result.notes)


def test_the_cli_report_writes_every_failure_neutralised(tmp_path, capsys):
    body = "cust,when,what\n" + "".join(f'=HYPERLINK("http://x/{i}"),never,x\n' for i in range(300))
    p = write(tmp_path, "bad.csv", body.encode())
    report = tmp_path / "report.csv"
    db = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    code = cli.main(
        [
            "--db",
            db,
            "ingest",
            str(p),
            "--source",
            "web",
            "--kind",
            "events",
            "--mapping",
            str(write(tmp_path, "m.json", EVENTS.to_json().encode())),
            "--report",
            str(report),
        ]
    )
    assert code != 0
    out = capsys.readouterr().out
    assert f"report: {report} holds all 300 failures" in out
    text = report.read_bytes().decode("utf-8-sig")
    rows = pd.read_csv(io.StringIO(text))
    assert len(rows) == 300 and sorted(rows["line"]) == list(range(2, 302))
    assert "\n=" not in text.replace("\r\n", "\n") and ",=" not in text


def test_the_cli_report_says_when_it_was_cut_and_where_the_rest_are(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cxdash.cli.load.REPORT_MAX_FAILURES", 100)
    body = "cust,when,what\n" + "".join(f"C{i},never,x\n" for i in range(250))
    p = write(tmp_path, "bad.csv", body.encode())
    report = tmp_path / "report.csv"
    db = f"duckdb:///{tmp_path / 'cx.duckdb'}"
    cli.main(
        [
            "--db",
            db,
            "ingest",
            str(p),
            "--source",
            "web",
            "--kind",
            "events",
            "--mapping",
            str(write(tmp_path, "m.json", EVENTS.to_json().encode())),
            "--report",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert "holds the first 100 of 250 failures (through line 101)" in out
    assert "the other 150 are on line 101 or later" in out
    assert len(pd.read_csv(report, encoding="utf-8-sig")) == 100


def test_a_cut_failure_list_keeps_the_first_lines_of_the_file_whatever_the_rule_order(duck, tmp_path):
    body = "cust,when,what\n" + ",never,x\n" * 50  # two failures a line: no customer, no date
    p = write(tmp_path, "bad2.csv", body.encode())
    with pytest.raises(IngestError) as info:
        ingest_file(duck, p, source="web", mapping=EVENTS, max_failures=10)
    result = info.value.result
    assert result.failures_total == 100
    assert sorted(result.failures["line"].tolist()) == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert any("only the first 10 of 100 are listed (through line 6)" in n for n in result.notes)
