"""Hostile workbooks: decompression bombs and formulas without saved values are refused quickly,
in little memory, with a message naming the limit (and how to raise it) or the cells.

Each bomb is built here with zipfile/openpyxl: a few hundred KB on disk that would expand to
hundreds of MB (or tens of millions of padded cells) if read.
"""

from __future__ import annotations

import time
import tracemalloc
import zipfile

import openpyxl
import pytest

from cxdash.ingest.load import ingest_file
from cxdash.ingest.readers import ExtractError, WorkbookLimits, as_csv
from tests.hostile_support import EVENTS, snapshot


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    for var in WorkbookLimits.ENV.values():
        monkeypatch.delenv(var, raising=False)


def small_book(path, rows=(("cust", "when", "what"), ("C1", "2024-01-01 10:00", "login"))):
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(list(r))
    wb.save(path)
    return path


def rewrite(
    src, dst, replace: dict[str, bytes] | None = None, stream: dict[str, tuple[bytes, bytes, int, bytes]] | None = None
):
    """Copy workbook ``src`` to ``dst`` with some members replaced: ``replace`` by bytes, ``stream``
    by head + body * n + tail written in pieces (so a huge member never exists in memory)."""
    replace, stream = replace or {}, stream or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        names = [i.filename for i in zin.infolist()]
        for name in names + [n for n in [*replace, *stream] if n not in names]:
            if name in stream:
                head, body, n, tail = stream[name]
                with zout.open(name, "w", force_zip64=True) as fh:
                    fh.write(head)
                    for _ in range(n):
                        fh.write(body)
                    fh.write(tail)
            else:
                zout.writestr(name, replace[name] if name in replace else zin.read(name))
    return dst


def refused_quickly(store, path, *, match: str, seconds: float = 10, megabytes: float = 64) -> str:
    """Load ``path`` into ``store`` and return the refusal, asserting it came fast, in little memory,
    without a traceback, and with the store unchanged."""
    before = snapshot(store)
    tracemalloc.start()
    began = time.monotonic()
    try:
        with pytest.raises(ExtractError, match=match) as info:
            ingest_file(store, path, source="web", mapping=EVENTS)
        elapsed = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes * (1 << 20), f"peak {peak / (1 << 20):.0f} MB"
    message = str(info.value)
    assert message.startswith(f"{path.name}: ")
    assert "Traceback" not in message and 'File "' not in message
    assert snapshot(store) == before
    return message


def test_shared_strings_expanding_to_300_mb_are_refused_before_reading(loaded, tmp_path):
    src = small_book(tmp_path / "src.xlsx")
    body = b"A" * (1 << 20)
    bomb = rewrite(
        src,
        tmp_path / "strings_bomb.xlsx",
        stream={
            "xl/sharedStrings.xml": (
                b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                b'count="1" uniqueCount="1"><si><t>',
                body,
                300,
                b"</t></si></sst>",
            )
        },
    )
    assert bomb.stat().st_size < 2 << 20  # small on disk
    message = refused_quickly(loaded, bomb, match="shared strings")
    assert "300 MB" in message and "256 MB" in message and "CXDASH_XLSX_MAX_SHARED_STRINGS_MB" in message


def test_a_member_expanding_a_thousand_times_is_refused_by_its_ratio(loaded, tmp_path, monkeypatch):
    src = small_book(tmp_path / "src.xlsx")
    # 40 MB of one repeated row: below every size limit, but a ratio no real sheet has.
    row = b'<row><c t="inlineStr"><is><t>x</t></is></c></row>'
    bomb = rewrite(
        src,
        tmp_path / "ratio_bomb.xlsx",
        stream={
            "xl/worksheets/sheet1.xml": (
                b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                b"<sheetData>",
                row * 20_000,
                40,
                b"</sheetData></worksheet>",
            )
        },
    )
    with zipfile.ZipFile(bomb) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    expected = info.file_size / info.compress_size  # computed from the zip directory itself
    assert expected > 200
    message = refused_quickly(loaded, bomb, match="expands")
    assert f"{expected:,.0f} times" in message and "CXDASH_XLSX_MAX_RATIO" in message


def test_a_total_expansion_above_the_limit_is_refused(loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_XLSX_MAX_EXPANDED_MB", "1")
    src = small_book(
        tmp_path / "src.xlsx",
        rows=[("cust", "when", "what")] + [(f"C{i}", "2024-01-01", f"a{i}" * 40) for i in range(20_000)],
    )
    message = refused_quickly(loaded, src, match="expand to")
    assert "above the limit of 1 MB" in message and "CXDASH_XLSX_MAX_EXPANDED_MB" in message


def test_a_sheet_declaring_ten_million_rows_is_refused_before_streaming(loaded, tmp_path):
    src = small_book(tmp_path / "src.xlsx")
    with zipfile.ZipFile(src) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
    assert b'<dimension ref="A1:C2"/>' in sheet
    bomb = rewrite(
        src,
        tmp_path / "rows_bomb.xlsx",
        replace={"xl/worksheets/sheet1.xml": sheet.replace(b'ref="A1:C2"', b'ref="A1:Z10000000"')},
    )
    message = refused_quickly(loaded, bomb, match="declares", seconds=5)
    assert "10,000,000 rows" in message and "1,048,576 rows" in message and "CXDASH_XLSX_MAX_ROWS" in message


def test_a_sheet_declaring_too_many_cells_is_refused(loaded, tmp_path):
    src = small_book(tmp_path / "src.xlsx")
    with zipfile.ZipFile(src) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
    bomb = rewrite(
        src,
        tmp_path / "cells_bomb.xlsx",
        replace={"xl/worksheets/sheet1.xml": sheet.replace(b'ref="A1:C2"', b'ref="A1:XFD1000000"')},
    )
    message = refused_quickly(loaded, bomb, match="cells", seconds=5)
    assert f"{1_000_000 * 16_384:,} cells" in message and "CXDASH_XLSX_MAX_CELLS" in message


def test_rows_beyond_the_limit_are_refused_while_streaming_when_the_sheet_hides_its_size(loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_XLSX_MAX_ROWS", "1000")
    src = small_book(tmp_path / "src.xlsx")
    rows = b"".join(b'<row r="%d"><c r="A%d"><v>%d</v></c></row>' % (i, i, i) for i in range(1, 5001))
    bomb = rewrite(
        src,
        tmp_path / "hidden_rows.xlsx",
        replace={
            "xl/worksheets/sheet1.xml": (
                b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                b"<sheetData>" + rows + b"</sheetData></worksheet>"
            )
        },
    )  # no <dimension>: size unknown up front
    message = refused_quickly(loaded, bomb, match="more than 1,000 rows")
    assert "CXDASH_XLSX_MAX_ROWS" in message


def slow_sheet(tmp_path, name: str, dimension: bytes):
    """A million small rows (64 MB of XML, 190 KB on disk): seconds to read, not a bomb by size."""
    src = small_book(tmp_path / "src.xlsx")
    row = b'<row><c t="inlineStr"><is><t>x</t></is></c><c><v>1</v></c></row>'
    return rewrite(
        src,
        tmp_path / name,
        stream={
            "xl/worksheets/sheet1.xml": (
                b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                + dimension
                + b"<sheetData>",
                row * 1000,
                1000,
                b"</sheetData></worksheet>",
            )
        },
    )


@pytest.mark.parametrize(
    ("dimension", "stage"),
    [
        (b'<dimension ref="A1:B1000000"/>', "reading the sheet"),  # streamed: the clock is read every 256 rows
        (b"", "sizing the sheets"),  # no declared size: counted before openpyxl would read it all to size it
    ],
)
def test_reading_longer_than_the_time_limit_stops(loaded, tmp_path, monkeypatch, dimension, stage):
    monkeypatch.setenv("CXDASH_XLSX_MAX_SECONDS", "0.5")
    monkeypatch.setenv("CXDASH_XLSX_MAX_RATIO", "100000")  # only the clock may stop this one
    slow = slow_sheet(tmp_path, "slow.xlsx", dimension)
    message = refused_quickly(loaded, slow, match=f"{stage} took more than 0.5 s", seconds=5)
    assert "CXDASH_XLSX_MAX_SECONDS" in message


def test_a_million_undeclared_rows_are_counted_exactly_against_the_row_limit(loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_XLSX_MAX_RATIO", "100000")
    slow = slow_sheet(tmp_path, "million.xlsx", b"")
    monkeypatch.setenv("CXDASH_XLSX_MAX_ROWS", "999999")
    refused_quickly(loaded, slow, match="more than 999,999 rows")
    monkeypatch.setenv("CXDASH_XLSX_MAX_ROWS", "1000000")
    monkeypatch.setenv("CXDASH_XLSX_MAX_CELLS", "1999999")  # two cells a row
    refused_quickly(loaded, slow, match="more than 1,999,999 cells")


def test_a_bad_limit_value_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CXDASH_XLSX_MAX_ROWS", "lots")
    with pytest.raises(ExtractError, match="CXDASH_XLSX_MAX_ROWS='lots' is not a number"):
        as_csv(small_book(tmp_path / "x.xlsx"))


def test_a_workbook_within_the_limits_still_reads(tmp_path):
    out = as_csv(small_book(tmp_path / "fine.xlsx"))
    assert out.read_text().splitlines() == ["cust,when,what", "C1,2024-01-01 10:00,login"]


def test_a_bomb_through_ingest_leaves_the_store_and_disk_as_they_were(loaded, tmp_path):
    src = small_book(tmp_path / "src.xlsx")
    with zipfile.ZipFile(src) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
    bomb = rewrite(
        src,
        tmp_path / "rows_bomb.xlsx",
        replace={"xl/worksheets/sheet1.xml": sheet.replace(b'ref="A1:C2"', b'ref="A1:Z10000000"')},
    )
    before, files = snapshot(loaded), sorted(tmp_path.iterdir())
    with pytest.raises(ExtractError, match="CXDASH_XLSX_MAX_ROWS"):
        ingest_file(loaded, bomb, source="web", mapping=EVENTS)
    assert snapshot(loaded) == before
    assert sorted(tmp_path.iterdir()) == files  # no converted copy left beside it


def formula_book(path, cached: bool):
    """Two data rows whose 'what' column is a formula; with ``cached`` the value Excel would save."""
    src = small_book(
        path.with_name("plain.xlsx"),
        rows=[("cust", "when", "what", "n"), ("C1", "2024-01-01", None, 2), ("C2", "2024-01-02", None, 3)],
    )
    with zipfile.ZipFile(src) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode()
    for r in (2, 3):
        cell = f'<c r="C{r}"><f>D{r}*2</f>' + (f"<v>{r * 2}</v>" if cached else "") + "</c>"
        sheet = sheet.replace(f'<c r="D{r}"', cell + f'<c r="D{r}"', 1)
    return rewrite(src, path, replace={"xl/worksheets/sheet1.xml": sheet.encode()})


def test_formula_cells_without_saved_values_are_refused_naming_the_cells(loaded, tmp_path):
    book = formula_book(tmp_path / "formulas.xlsx", cached=False)
    before = snapshot(loaded)
    with pytest.raises(ExtractError) as info:
        ingest_file(loaded, book, source="web", mapping=EVENTS)
    message = str(info.value)
    assert message.startswith("formulas.xlsx: 2 formula cells have no saved value (C2, C3)")
    assert "save it" in message and "export the sheet as CSV" in message
    assert snapshot(loaded) == before


def test_formula_cells_with_saved_values_load_those_values(tmp_path):
    out = as_csv(formula_book(tmp_path / "cached.xlsx", cached=True))
    assert out.read_text().splitlines()[1:] == ["C1,2024-01-01,4,2", "C2,2024-01-02,6,3"]


def test_more_formula_cells_than_named_are_counted(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["cust", "v"])
    for i in range(2, 32):
        wb.active.append([f"C{i}", f"=1+{i}"])  # openpyxl writes formulas without results
    wb.save(tmp_path / "many.xlsx")
    with pytest.raises(ExtractError) as info:
        as_csv(tmp_path / "many.xlsx")
    expected_names = ", ".join(f"B{i}" for i in range(2, 14))  # the first twelve
    assert f"30 formula cells have no saved value ({expected_names} …)" in str(info.value)


def test_a_caller_that_stops_listening_stops_the_reading_and_nothing_is_left(tmp_path, private_tempdir):
    """The upload page's tick redraws a line; when its session has ended Streamlit raises there.
    Here the tick raises after the first report: the conversion stops and its temp folder goes."""
    rows = [("cust", "when", "what")] + [(f"C{i}", "2024-01-01 10:00", "login") for i in range(50_000)]
    book = small_book(tmp_path / "big.xlsx", rows=rows)
    seen = []

    class SessionEnded(Exception):
        pass

    def tick(n):
        seen.append(n)
        raise SessionEnded

    with pytest.raises(SessionEnded):
        as_csv(book, tick=tick)
    assert seen == [20_000]  # stopped at the first report, not after the 50,000 rows
    assert not list(private_tempdir.glob("cxdash-sheet-*"))  # its own temp folder only: no other worker's
    # Listened to until the end, the same workbook reads through and reports as it goes.
    seen.clear()
    out = as_csv(book, out_dir=tmp_path, tick=seen.append)
    assert seen == [20_000, 40_000] and sum(1 for _ in out.open()) == 50_001
