"""The hostile corpus: each bad file gets a clear, specific message and leaves the store as it was.

The corpus is built here, byte by byte, so each file is exactly the trap it names (a committed
copy of a 1 GB line would not fit in a repository).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.exporting import safe_csv
from cxdash.ingest.load import IngestError, ingest_file
from cxdash.ingest.mapping import Mapping, MappingError
from cxdash.ingest.readers import ExtractError
from cxdash.store.database import KIND_TABLES
from tests.hostile_support import EVENTS, GOOD, snapshot, write

HOSTILE = [
    ("empty.csv", b"", ExtractError, "empty"),
    ("header_only.csv", b"cust,when,what\n", ExtractError, "no data rows"),
    ("binary.csv", bytes(range(256)) * 64, ExtractError, "binary"),
    ("wrong_delimiter.csv", b"cust,when,what\nC1;2024-01-01;login\nC2;2024-01-02;login\n", ExtractError, "delimiter"),
    ("ragged.csv", b"cust,when,what\nC1,2024-01-01,login\nC2,2024-01-02,login,extra,cells\n", ExtractError, "line"),
    ("duplicate_names.csv", b"cust,when,what,when\nC1,2024-01-01,login,x\n", ExtractError, "appears twice"),
    (
        "mixed_encoding.csv",
        b"cust,when,what\n" + b"C1,2024-01-01,caf\xc3\xa9\n" * 40000 + b"C2,2024-01-02,caf\xe9\n",
        ExtractError,
        "encodings",
    ),
]


# Where in the file each fault is, counted by hand from the content above (line 1 is the header).
WHERE = {
    "wrong_delimiter.csv": "line 2",
    "ragged.csv": "line 3",
    "duplicate_names.csv": "columns 2 and 4",
    "mixed_encoding.csv": "line 40,002",
}


@pytest.mark.parametrize(("name", "content", "error", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_unreadable_files_say_what_is_wrong_and_store_nothing(loaded, tmp_path, name, content, error, message):
    before = snapshot(loaded)
    with pytest.raises(error, match=message) as info:
        ingest_file(loaded, write(tmp_path, name, content), source="web", mapping=EVENTS)
    assert str(info.value).startswith(f"{name}: ")  # says which file
    where = WHERE.get(name)
    if where:
        assert where in str(info.value)  # and where in it
    assert snapshot(loaded) == before


def test_a_one_gigabyte_line_is_refused_without_reading_it_into_memory(loaded, tmp_path):
    p = tmp_path / "huge_line.csv"
    with open(p, "wb") as fh:
        fh.write(GOOD.encode())
        block = b"A" * (64 << 20)
        for _ in range(16):  # 1 GiB of one unbroken line
            fh.write(block)
        fh.write(b"\n")
    before = snapshot(loaded)
    with pytest.raises(ExtractError, match="longer than 8 MB"):
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    assert snapshot(loaded) == before
    p.unlink()


def test_a_one_gigabyte_header_line_is_refused(loaded, tmp_path):
    p = tmp_path / "huge_header.csv"
    with open(p, "wb") as fh:
        fh.write(b"c" * (2 << 20))
    with pytest.raises(ExtractError, match="not a header row"):
        ingest_file(loaded, p, source="web", mapping=EVENTS)


@pytest.mark.parametrize(
    ("rows", "column", "rule"),
    [
        ("C1,2024-02-30 10:00,login", "when", "date"),  # impossible date
        ("C1,yesterday,login", "when", "date"),  # unparseable
        ("C1,1066-10-14 09:00,login", "when", "plausible_date"),
        (",2024-01-01 10:00,login", "cust", "customer_identifier"),
    ],
)
def test_bad_values_are_reported_with_line_column_and_value(loaded, tmp_path, rows, column, rule):
    p = write(tmp_path, "bad.csv", f"cust,when,what\nC9,2024-03-01 10:00,login\n{rows}\n".encode())
    before = snapshot(loaded)
    with pytest.raises(IngestError) as info:
        ingest_file(loaded, p, source="web", mapping=EVENTS)
    f = info.value.result.failures
    assert f.iloc[0]["line"] == 3 and f.iloc[0]["column"] == column and f.iloc[0]["rule"] == rule
    assert snapshot(loaded) == before


def test_negative_and_text_amounts_are_rejected_where_they_make_no_sense(loaded, tmp_path):
    p = write(tmp_path, "subs.csv", b"acct,start,mrr\nA1,2024-01-01,ten\nA2,2024-01-01,-5\nA3,2024-01-01,9.5\n")
    m = Mapping("subscriptions", {"account_id": "acct", "start": "start", "mrr": "mrr"})
    with pytest.raises(IngestError) as info:
        ingest_file(loaded, p, source="subs", mapping=m)
    got = set(zip(info.value.result.failures["line"], info.value.result.failures["rule"], strict=True))
    assert got == {(2, "number"), (3, "minimum")}


def test_a_customer_key_that_is_always_empty_loads_nothing(loaded, tmp_path):
    p = write(tmp_path, "nokey.csv", b"cust,when,what\n,2024-01-01,login\n,2024-01-02,login\n")
    before = snapshot(loaded)
    with pytest.raises(IngestError, match=r"none of the 2 rows is valid.*customer identifier"):
        ingest_file(loaded, p, source="web", mapping=EVENTS, reject_invalid=True)
    assert snapshot(loaded) == before


def test_sql_looking_names_and_values_are_stored_as_inert_text(loaded, tmp_path):
    evil_col = 'x"); DROP TABLE src_events; --'
    evil_val = "'; DELETE FROM loads; --"
    frame = pd.DataFrame({"cust": ["C7"], "when": ["2024-01-05 10:00"], "what": [evil_val], evil_col: ["1"]})
    p = tmp_path / "sql.csv"
    frame.to_csv(p, index=False)
    ingest_file(loaded, p, source="web", mapping=EVENTS)
    t = KIND_TABLES["events"]
    with loaded.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.customer_id == "C7")).mappings().one()
        assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 3
    assert row["activity"] == evil_val
    assert json.loads(row["attrs"]) == {evil_col: "1"}


def test_formula_cells_are_stored_verbatim_and_neutralised_on_export(loaded, tmp_path):
    p = write(
        tmp_path,
        "formulas.csv",
        b'cust,when,what\nC5,2024-01-05 10:00,=HYPERLINK("http://x")\nC6,2024-01-05,@SUM(A1)\n',
    )
    ingest_file(loaded, p, source="web", mapping=EVENTS)
    t = KIND_TABLES["events"]
    with loaded.connect() as conn:
        acts = pd.DataFrame(conn.execute(sa.select(t.c.activity).where(t.c.customer_id.in_(["C5", "C6"]))).all())
    assert set(acts["activity"]) == {'=HYPERLINK("http://x")', "@SUM(A1)"}
    exported = safe_csv(acts).decode("utf-8-sig")
    assert "'=HYPERLINK" in exported and "'@SUM" in exported
    assert "\n=" not in exported and "\n@" not in exported


def test_a_blank_column_name_is_named_by_position_and_kept(loaded, tmp_path):
    p = write(tmp_path, "blank.csv", b",cust,when,what\n0,C8,2024-01-05 10:00,login\n")
    ingest_file(loaded, p, source="web", mapping=EVENTS)
    t = KIND_TABLES["events"]
    with loaded.connect() as conn:
        attrs = conn.execute(sa.select(t.c.attrs).where(t.c.customer_id == "C8")).scalar()
    assert json.loads(attrs) == {"column_1": "0"}


def test_a_mapping_naming_an_unknown_field_is_refused(loaded, tmp_path):
    p = write(tmp_path, "good2.csv", GOOD.encode())
    with pytest.raises(MappingError, match="does not have"):
        ingest_file(loaded, p, source="web", mapping=Mapping("events", {**EVENTS.columns, "colour": "what"}))
