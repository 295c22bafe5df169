"""An injection corpus stays inert: SQL in column names, values and source names is stored as text,
formula cells are neutralised on export, and hostile upload file names cannot leave the upload folder."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.exporting import FORMULA_PREFIXES, safe_csv
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store import audit
from cxdash.store.database import ANALYTICS, APP_STATE, KIND_TABLES, loads_table, read_frame

REPO = Path(__file__).resolve().parents[1]

EVIL_COLUMN = 'x"; DROP TABLE src_customers; --'
SQL_VALUES = [
    "Robert'); DROP TABLE users;--",
    "' OR '1'='1",
    '"; DELETE FROM loads; --',
    "1; UPDATE identity_map SET cx_id = 'x'",
    "Zoë \\'; SELECT pg_sleep(10); --",
]
FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+SUM(1,2)", "-2+3", "@cmd|' /C calc'!A0", "\tTAB", "\rCR"]
EVIL_SOURCE = 'crm"; DROP TABLE loads; --'


@pytest.fixture
def loaded(store, tmp_path):
    # A carriage return inside a cell is a line break to the CSV reader, so "\rCR" is in the
    # export test only.
    names = SQL_VALUES + [f for f in FORMULAS if "\r" not in f]
    frame = pd.DataFrame(
        {
            "CustomerID": [f"C{i}" for i in range(len(names))],
            "Full Name": names,
            "Email": [f"p{i}@example.com" for i in range(len(names))],
            EVIL_COLUMN: list(reversed(names)),
            "=1+1": ["=2+2"] * len(names),
        }
    )
    path = tmp_path / "evil.csv"
    frame.to_csv(path, index=False)
    mapping = Mapping.from_dict(
        {"kind": "customers", "columns": {"customer_id": "CustomerID", "name": "Full Name", "email": "Email"}}
    )
    result = ingest_file(store, path, source=EVIL_SOURCE, mapping=mapping)
    return {"store": store, "frame": frame, "result": result}


def test_sql_in_names_values_and_source_is_stored_as_plain_text(loaded):
    store, frame = loaded["store"], loaded["frame"]
    assert loaded["result"].rows_loaded == len(frame)
    t = KIND_TABLES["customers"]
    with store.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert {x.name for x in ANALYTICS.sorted_tables} <= tables
        stored = read_frame(conn, sa.select(t.c.customer_id, t.c.name, t.c.attrs, t.c.source).order_by(t.c.row_number))
        assert conn.execute(sa.select(loads_table.c.source)).scalars().all() == [EVIL_SOURCE]
    with store.app_begin() as conn:
        assert {x.name for x in APP_STATE.sorted_tables} <= set(sa.inspect(conn).get_table_names())
    # Leading/trailing whitespace is trimmed by design; the text is otherwise kept byte for byte.
    assert stored["name"].tolist() == [v.strip() for v in frame["Full Name"]]
    assert set(stored["source"]) == {EVIL_SOURCE}
    attrs = [json.loads(a) for a in stored["attrs"]]
    assert [a[EVIL_COLUMN] for a in attrs] == frame[EVIL_COLUMN].tolist()
    assert {a["=1+1"] for a in attrs} == {"=2+2"}


def test_formula_cells_are_neutralised_in_every_export(loaded):
    # A bare carriage return must not split a row (the second half would start with a live formula).
    frame = pd.concat(
        [loaded["frame"], pd.DataFrame({"Full Name": ["\rCR", "ok\r=cmd|' /C calc'!A0"]})], ignore_index=True
    )
    data = safe_csv(frame).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data, newline="")))
    assert len(rows) == len(frame) + 1 and {len(r) for r in rows} == {len(frame.columns)}
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c.startswith(FORMULA_PREFIXES)]
    assert '\'=HYPERLINK("http://evil.example","click")' in cells and "'-2+3" in cells
    assert "'=1+1" in rows[0]  # a hostile header too


def test_sql_in_audit_details_is_stored_verbatim(store):
    audit.record(store, "'; DROP TABLE audit_log; --", "export", {"file": SQL_VALUES[0]})
    log = audit.recent(store)
    assert log.iloc[0]["actor"] == "'; DROP TABLE audit_log; --"
    assert json.loads(log.iloc[0]["detail"]) == {"file": SQL_VALUES[0]}


HOSTILE_NAMES = [
    "../../../../etc/passwd",
    "..\\..\\windows\\system32\\config\\sam",
    "/abs/path/x.csv",
    "....//....//x.csv",
    "a/../../b.csv",
    "\x00evil.csv",
    "..",
    ".",
    "",
    "CON",
    "x" * 500 + ".csv",
    "name with spaces;rm -rf ~.csv",
    "%2e%2e%2fsecret.csv",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_upload_file_names_cannot_leave_the_upload_folder(name, tmp_path, monkeypatch):
    from cxdash.ui import ops

    safe = ops._safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".") and len(safe) <= 120
    monkeypatch.setattr(ops, "UPLOAD_DIR", tmp_path / "uploads")

    class Uploaded(io.BytesIO):
        pass

    up = Uploaded(b"CustomerID,Email\nC1,a@example.com\n")
    up.name = name
    staged = ops.stage_upload(up)  # every name stages: the name is rewritten, the content is what counts
    assert staged.path.resolve().is_relative_to((tmp_path / "uploads").resolve())
    assert staged.path.read_bytes() == up.getvalue()
    if name.lower().endswith(".csv"):
        assert staged.path.suffix == ".csv"  # the extension survives, so the file is read as what it is
    shutil.rmtree(tmp_path / "uploads")


def test_no_sql_text_is_built_from_strings_in_the_package():
    """ruff's S608 (SQL built by string formatting) is on; the package must pass it."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff not installed")
    out = subprocess.run(
        [str(ruff), "check", "--select", "S608", "--no-cache", "cxdash", "pages", "app.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout


def test_uploads_abandoned_for_a_day_are_swept_when_the_next_file_is_staged(tmp_path, monkeypatch):
    import os
    import time

    from cxdash.ui import ops

    monkeypatch.setattr(ops, "UPLOAD_DIR", tmp_path / "uploads")
    old, fresh = tmp_path / "uploads" / "old", tmp_path / "uploads" / "fresh"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "export.csv").write_text("CustomerID,Email\nC1,a@example.com\n")
    day_ago = time.time() - ops.STALE_UPLOAD_S - 60
    os.utime(old, (day_ago, day_ago))
    up = io.BytesIO(b"CustomerID,Email\nC2,b@example.com\n")
    up.name = "next.csv"
    staged = ops.stage_upload(up)
    left = {p.name for p in (tmp_path / "uploads").iterdir()}
    assert "old" not in left and "fresh" in left and staged.path.parent.name in left


def test_a_file_that_cannot_be_read_is_not_kept_in_the_upload_folder(tmp_path, monkeypatch):
    from cxdash.ingest.readers import ExtractError
    from cxdash.ui import ops

    monkeypatch.setattr(ops, "UPLOAD_DIR", tmp_path / "uploads")
    up = io.BytesIO(bytes(range(256)) * 64)  # binary, not a CSV
    up.name = "export.csv"
    with pytest.raises(ExtractError, match="binary"):
        ops.stage_upload(up)
    assert list((tmp_path / "uploads").iterdir()) == []
