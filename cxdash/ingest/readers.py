"""Reading departmental extracts: sniff the encoding and delimiter, stream rows as text.

Everything is read as text (``StringDtype``) so that nothing is silently converted before
validation; ``cxdash.ingest.validation`` decides what each value means.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = [
    "ExtractError",
    "FileFormat",
    "LineMap",
    "WorkbookLimits",
    "as_csv",
    "iter_chunks",
    "read_columns",
    "read_header",
    "sniff_format",
]

_SAMPLE_BYTES = 256 * 1024
_DELIMITERS = ",;\t|"
_MAX_HEADER_CHARS = 1_000_000


class ExtractError(ValueError):
    """The file cannot be read as a table; the message says what, where and how to fix it."""


@dataclass(frozen=True)
class FileFormat:
    encoding: str
    delimiter: str
    compression: str | None

    def describe(self) -> str:
        names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
        comp = f", {self.compression}-compressed" if self.compression else ""
        return f"{self.encoding}, {names.get(self.delimiter, repr(self.delimiter))}-separated{comp}"


class LineMap:
    """The physical line of the file each data record starts on.

    A quoted value may hold line breaks, so record ``r`` (0-based) starts on line
    ``r + 2 + (line breaks inside the records before it)``. Only records holding a break are
    remembered (as breakpoints), so a file without any costs nothing but the scan that finds none.
    ``iter_chunks(..., lines=LineMap())`` fills it as it reads; ask it only about records read.
    Blank lines are skipped by the reader and not seen here: ``exact`` checks for them.
    """

    def __init__(self) -> None:
        self._records: list[np.ndarray] = []  # records holding line breaks, ascending
        self._cumulative: list[np.ndarray] = []  # breaks in the records up to and including each
        self._total = 0

    def add(self, first_record: int, breaks: np.ndarray) -> None:
        """Record the line breaks inside each record of a batch starting at ``first_record``."""
        where = np.flatnonzero(breaks)
        if not len(where):
            return
        counts = breaks[where].astype("int64")
        self._records.append(where.astype("int64") + first_record)
        self._cumulative.append(np.cumsum(counts) + self._total)
        self._total += int(counts.sum())

    @property
    def breaks(self) -> int:
        """Line breaks found inside values so far."""
        return self._total

    def lines(self, records) -> np.ndarray:
        """Physical line numbers (header = line 1) of 0-based data ``records``."""
        records = np.asarray(records, dtype="int64")
        if not self._records:
            return records + 2
        if len(self._records) > 1:  # asked once per chunk: join the batches' breakpoints once
            self._records, self._cumulative = [np.concatenate(self._records)], [np.concatenate(self._cumulative)]
        at, cum = self._records[0], self._cumulative[0]
        pos = np.searchsorted(at, records, side="left")  # breakpoints strictly before each record
        before = np.where(pos > 0, cum[np.maximum(pos - 1, 0)], 0)
        return records + 2 + before

    def exact(self, path: str | Path, fmt: FileFormat, n_records: int, records) -> np.ndarray:
        """``lines(records)`` checked against the file: when the file holds more line breaks than
        its records account for (blank lines, which the reader skips) or is UTF-16, the lines are
        counted by reading the file with Python's csv module up to the last record asked about.
        Meant for the few records a failure report cites, after the whole file was read."""
        records = np.asarray(records, dtype="int64")
        if not len(records):
            return records
        if not fmt.encoding.startswith("utf-16"):
            total = _count_newlines(Path(path))
            if total in (1 + n_records + self._total, n_records + self._total):
                return self.lines(records)
        return _scan_lines(Path(path), fmt, records)


def _count_newlines(path: Path) -> int:
    n = 0
    with _open_binary(path) as fh:
        while block := fh.read(8 << 20):
            n += block.count(b"\n")
    return n


def _scan_lines(path: Path, fmt: FileFormat, records: np.ndarray) -> np.ndarray:
    """The physical start line of each 0-based data record, counted by Python's csv reader
    (blank lines skipped as the Arrow reader skips them)."""
    csv.field_size_limit(1 << 24)
    wanted = set(int(r) for r in records)
    last = max(wanted)
    found: dict[int, int] = {}
    with _text_stream(path, fmt) as fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        next(reader, None)
        end_of_previous, record = reader.line_num, -1
        for row in reader:
            if row:
                record += 1
                if record in wanted:
                    found[record] = end_of_previous + 1
                if record >= last:
                    break
            end_of_previous = reader.line_num
    fallback = records + 2
    return np.array([found.get(int(r), int(f)) for r, f in zip(records, fallback, strict=True)], dtype="int64")


def _breaks_per_row(batch: pa.RecordBatch) -> np.ndarray | None:
    """Line breaks inside the values of each row of ``batch`` (None when there are none)."""
    total = None
    for col in batch.columns:
        # A cheap test first: most columns of most files hold no line break at all.
        if not pc.any(pc.match_substring(col, "\n")).as_py():
            continue
        n = pc.count_substring(col, "\n").fill_null(0).to_numpy(zero_copy_only=False)
        total = n if total is None else total + n
    return total


_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"


def _compression(path: Path) -> str | None:
    """ "gzip" when the file starts with gzip's magic bytes, whatever its name; else None."""
    try:
        with open(path, "rb") as fh:
            return "gzip" if fh.read(2) == _GZIP_MAGIC else None
    except OSError:
        return None


def _open_binary(path: Path):
    if _compression(path) == "gzip":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _first_nul_line(path: Path) -> int | None:
    """The line number (1 = header) holding the file's first NUL byte, read in binary blocks."""
    newlines = 0
    with _open_binary(path) as fh:
        while block := fh.read(8 << 20):
            at = block.find(b"\x00")
            if at >= 0:
                return newlines + block.count(b"\n", 0, at) + 1
            newlines += block.count(b"\n")
    return None


def _has_nul(batch: pa.RecordBatch) -> bool:
    """True when a value of ``batch`` holds a NUL character. The string columns' data buffers are
    searched as bytes (a few ms per million rows); a hit is confirmed value by value, since a
    buffer may hold bytes beyond the batch's slice."""
    for col in batch.columns:
        data = col.buffers()[2] if len(col.buffers()) > 2 else None
        if data is not None and b"\x00" in data.to_pybytes() and pc.any(pc.match_substring(col, "\x00")).as_py():
            return True
    return False


def _nul_error(path: Path, where: str) -> ExtractError:
    return ExtractError(
        f"{path.name}: {where} holds a NUL byte (character 0), which no text export contains: the file is "
        "damaged or not text. Export it again as CSV, or remove the NUL characters."
    )


def sniff_format(path: str | Path) -> FileFormat:
    """Detect encoding (UTF-8 with/without BOM, UTF-16, Latin-1) and the delimiter."""
    path = Path(path)
    compression = _compression(path)
    try:
        with _open_binary(path) as fh:
            raw = fh.read(_SAMPLE_BYTES)
    except (OSError, EOFError) as exc:
        raise ExtractError(f"{path.name}: cannot be read ({exc}). Check the file is a CSV export.") from exc
    if raw.startswith(_ZIP_MAGIC):
        raise ExtractError(
            f"{path.name}: this is a zip archive, not a text CSV (an Excel workbook or a zipped export). "
            "Name an Excel workbook .xlsx; unzip a zipped export and load the CSV inside."
        )
    if not raw.strip():
        raise ExtractError(f"{path.name}: the file is empty. Export the table again with its header row.")
    if raw.startswith(codecs.BOM_UTF16_LE) or raw.startswith(codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    elif raw.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        if b"\x00" in raw[:4096]:
            raise ExtractError(
                f"{path.name}: looks like a binary file, not a text CSV (it contains NUL bytes). "
                "Export the data as CSV (comma- or semicolon-separated text)."
            )
        try:
            # A sample may end inside a multi-byte character: decode incrementally.
            codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
    text = raw.decode(encoding, errors="replace")
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    delimiter = ","
    if lines:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
        except csv.Error:
            counts = {d: lines[0].count(d) for d in _DELIMITERS}
            best = max(counts, key=counts.get)
            delimiter = best if counts[best] else ","
    return FileFormat(encoding, delimiter, compression)


def _text_stream(path: Path, fmt: FileFormat) -> io.TextIOBase:
    return io.TextIOWrapper(_open_binary(path), encoding=fmt.encoding, newline="")


def read_header(path: str | Path, fmt: FileFormat | None = None) -> list[str]:
    """The column names of the file, as written (blank names become ``column_N``)."""
    path = Path(path)
    fmt = fmt or sniff_format(path)
    with _text_stream(path, fmt) as fh:
        first = fh.readline(_MAX_HEADER_CHARS + 1)
    if "\x00" in first:
        raise _nul_error(path, "line 1 (the header)")
    if len(first) > _MAX_HEADER_CHARS:
        raise ExtractError(
            f"{path.name}: the first line is longer than {_MAX_HEADER_CHARS:,} characters; that is not a header row. "
            "The first line must hold the column names."
        )
    try:
        header = next(csv.reader([first], delimiter=fmt.delimiter))
    except (StopIteration, csv.Error) as exc:
        raise ExtractError(f"{path.name}: the header row cannot be read ({exc or 'empty'}).") from None
    # A blank name (often a spreadsheet's or pandas' index column) is named by its position.
    return [h if h.strip() else f"column_{i}" for i, h in enumerate(header, start=1)]


def _check_header(path: Path, header: list[str]) -> None:
    if all(h == f"column_{i}" for i, h in enumerate(header, start=1)):
        raise ExtractError(f"{path.name}: the first line has no column names. The first line must be the header.")
    seen: dict[str, int] = {}
    for i, h in enumerate(header, start=1):
        if h in seen:
            raise ExtractError(
                f"{path.name}: column name {h!r} appears twice (columns {seen[h]} and {i}). "
                "Rename one of them so every column name is unique."
            )
        seen[h] = i


def iter_chunks(
    path: str | Path, fmt: FileFormat | None = None, chunk_rows: int = 250_000, lines: LineMap | None = None
) -> Iterator[pd.DataFrame]:
    """Yield the file's rows as frames of text (missing values as NA), about ``chunk_rows`` at a time.

    Rows keep their position in the file: the index is the data-record number (0-based). A
    record starts on line ``index + 2`` (line 1 is the header) unless a quoted value before it
    spans lines: give ``lines`` (a ``LineMap``) to learn each record's physical line.
    Streams with pyarrow's CSV reader, so a large file is never held in memory whole.
    """
    path = Path(path)
    fmt = fmt or sniff_format(path)
    header = read_header(path, fmt)
    _check_header(path, header)
    offset = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> pd.DataFrame:
        nonlocal offset, pending, pending_rows
        frame = pa.Table.from_batches(pending).to_pandas()
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        offset += len(frame)
        pending, pending_rows = [], 0
        return frame

    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(path), compression=fmt.compression),
            read_options=pacsv.ReadOptions(encoding=fmt.encoding, block_size=8 << 20, column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
        for batch in reader:
            if _has_nul(batch):
                raise _nul_error(path, _nul_place(path, fmt, batch, offset + pending_rows, lines))
            if lines is not None:
                breaks = _breaks_per_row(batch)
                if breaks is not None:
                    lines.add(offset + pending_rows, breaks)
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= chunk_rows:
                yield flush()
    except pa.ArrowInvalid as exc:
        detail = str(exc).replace("CSV parse error: ", "")
        if "UTF8" in detail or "utf8" in detail.lower():
            bad = _first_undecodable_line(path, fmt.encoding)
            where = (
                f"line {bad:,} is not valid {fmt.encoding}"
                if bad
                else f"after data row {offset + pending_rows:,} the text is not valid {fmt.encoding}"
            )
            raise ExtractError(
                f"{path.name}: mixed text encodings: {where} (the start of the file was). "
                "Re-export the whole file as UTF-8."
            ) from exc
        if "straddling" in detail or "block" in detail:
            raise ExtractError(
                f"{path.name}: a line after data row {offset + pending_rows:,} is longer than 8 MB; this is not a "
                "table export (or a quote is never closed). Check the file."
            ) from exc
        where = _first_ragged_line(path, fmt, len(header))
        at = f"line {where[0]:,} has {where[1]} cells but the header has {len(header)}" if where else detail[:300]
        raise ExtractError(
            f"{path.name}: the rows do not line up with the header: {at}. Check the delimiter "
            f"(detected {fmt.describe()}) and that quoted text is closed."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ExtractError(
            f"{path.name}: mixed text encodings (byte {exc.start} is not {fmt.encoding}). Re-export as UTF-8."
        ) from exc
    if pending:
        yield flush()


def read_columns(path: str | Path, fmt: FileFormat, columns: list[str]) -> pd.DataFrame:
    """Every value of ``columns`` (as text, NA for empty), the rest of the file skipped.

    For decisions that need a whole column rather than its first rows (day-first vs
    month-first dates); the columns are held in memory, the others are not.
    """
    path = Path(path)
    header = read_header(path, fmt)
    table = pacsv.read_csv(
        pa.input_stream(str(path), compression=fmt.compression),
        read_options=pacsv.ReadOptions(encoding=fmt.encoding, block_size=8 << 20, column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            include_columns=list(columns),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    )
    return table.to_pandas()


def _nul_place(path: Path, fmt: FileFormat, batch: pa.RecordBatch, first_record: int, lines: LineMap | None) -> str:
    """Where the first NUL byte is, in words: its line counted in the bytes (UTF-8, Latin-1), or
    for UTF-16 (where every other byte is zero) the data record holding it."""
    if not fmt.encoding.startswith("utf-16"):
        line = _first_nul_line(path)
        if line:
            return f"line {line:,}"
    hit = None
    for col in batch.columns:
        found = pc.match_substring(col, "\x00").fill_null(False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(found)
        if len(rows):
            hit = int(rows[0]) if hit is None else min(hit, int(rows[0]))
    record = first_record + (hit or 0)
    line = int((lines.lines([record]) if lines is not None else np.array([record + 2]))[0])
    return f"line {line:,}"


def _first_undecodable_line(path: Path, encoding: str, max_lines: int = 50_000_000) -> int | None:
    """The file line number (1 = header) of the first line that is not valid ``encoding``, read
    line by line in binary (on the error path only: the block reader cannot say which row)."""
    with _open_binary(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number > max_lines:
                return None
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None


def _first_ragged_line(path: Path, fmt: FileFormat, n_cols: int, max_lines: int = 20_000_000) -> tuple[int, int] | None:
    """(file line number, cells) of the first row whose cell count differs from the header's."""
    csv.field_size_limit(1 << 24)
    try:
        with _text_stream(path, fmt) as fh:
            reader = csv.reader(fh, delimiter=fmt.delimiter)
            next(reader, None)
            for row in reader:
                if reader.line_num > max_lines:
                    return None
                if row and len(row) != n_cols:
                    return reader.line_num, len(row)
    except (csv.Error, UnicodeDecodeError):
        return None
    return None


# Workbook limits: an .xlsx is a zip of XML, so a few MB on disk can expand to gigabytes
# (a "decompression bomb"). Each limit is checked before or while the sheet is read and can be
# raised with the environment variable named here (documented in the README).
@dataclass(frozen=True)
class WorkbookLimits:
    """How much a workbook may expand to before ``as_csv`` refuses it."""

    expanded_mb: float = 1024.0  # all members of the zip together, uncompressed
    ratio: float = 200.0  # uncompressed / compressed size of any member larger than 1 MB
    shared_strings_mb: float = 256.0  # openpyxl holds every shared string in memory
    rows: int = 1_048_576  # Excel's own sheet limit
    cells: int = 50_000_000  # rows x columns, declared or read
    seconds: float = 600.0  # wall time spent streaming the sheet

    ENV: ClassVar[dict[str, str]] = {
        "expanded_mb": "CXDASH_XLSX_MAX_EXPANDED_MB",
        "ratio": "CXDASH_XLSX_MAX_RATIO",
        "shared_strings_mb": "CXDASH_XLSX_MAX_SHARED_STRINGS_MB",
        "rows": "CXDASH_XLSX_MAX_ROWS",
        "cells": "CXDASH_XLSX_MAX_CELLS",
        "seconds": "CXDASH_XLSX_MAX_SECONDS",
    }

    @classmethod
    def from_env(cls) -> WorkbookLimits:
        """The defaults, each overridden by its environment variable when set (a number)."""
        values = {}
        for name, var in cls.ENV.items():
            raw = os.environ.get(var, "").strip()
            if not raw:
                continue
            kind = type(getattr(cls, name))
            try:
                values[name] = kind(float(raw)) if kind is int else float(raw)
            except ValueError:
                raise ExtractError(f"{var}={raw!r} is not a number; set it to a number or unset it.") from None
        return cls(**values)

    def refuse(self, file_name: str, limit: str, found: str, allowed: str) -> ExtractError:
        """The refusal naming the limit, what was found and how to raise it."""
        return ExtractError(
            f"{file_name}: refused as a possible decompression bomb: {found}, above the limit of {allowed}. "
            f"If the workbook is genuine, export the sheet as CSV, or raise the limit with the environment "
            f"variable {self.ENV[limit]}."
        )


_MB = 1 << 20
_RATIO_MIN_BYTES = 1 << 20  # small members (styles, themes) compress far better than data; never a threat
_TIME_CHECK_ROWS = 256
_TICK_ROWS = 20_000  # how often as_csv tells its caller how far it got


def _check_zip(path: Path, limits: WorkbookLimits) -> None:
    """Refuse a workbook whose zip members expand beyond ``limits`` (read from the zip's directory;
    Python's zipfile never yields more than a member's declared size, so the directory binds)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: load_workbook says it is not a workbook
    total = sum(m.file_size for m in members)
    if total > limits.expanded_mb * _MB:
        raise limits.refuse(
            path.name, "expanded_mb", f"its contents expand to {total / _MB:,.0f} MB", f"{limits.expanded_mb:,.0f} MB"
        )
    for m in members:
        if m.filename.lower().endswith("sharedstrings.xml") and m.file_size > limits.shared_strings_mb * _MB:
            raise limits.refuse(
                path.name,
                "shared_strings_mb",
                f"its shared strings ({m.filename}) expand to {m.file_size / _MB:,.0f} MB",
                f"{limits.shared_strings_mb:,.0f} MB",
            )
    for m in members:
        if m.file_size > _RATIO_MIN_BYTES:
            ratio = m.file_size / max(m.compress_size, 1)
            if ratio > limits.ratio:
                raise limits.refuse(
                    path.name,
                    "ratio",
                    f"{m.filename} expands {ratio:,.0f} times ({m.compress_size:,} bytes to {m.file_size:,})",
                    f"{limits.ratio:,.0f} times",
                )


def _tags(buf: bytes, end: int, name: bytes) -> int:
    """Start tags ``<name`` (or ``<prefix:name``) in ``buf[:end]``, counted without allocating
    (plain ``bytes.count``; a stray ``:name `` in text only makes the count err high)."""
    return sum(
        buf.count(lead + name + tail, 0, end)
        for lead in (b"<", b":")
        for tail in (b" ", b">", b"/", b"\n", b"\t", b"\r")
    )


_SHEET_HEAD = re.compile(rb"<(?:\w+:)?(dimension|sheetData)[\s>/]")


def _check_undeclared_sheets(path: Path, limits: WorkbookLimits) -> None:
    """Count the rows and cells of every worksheet that does not declare its size, within the
    time limit, before openpyxl opens the workbook.

    Without a ``<dimension>`` openpyxl reads a whole sheet while opening the workbook just to find
    its size (about 8 MB of XML a second), out of reach of the streaming limits; this byte-level
    count is many times faster and stops at the first limit crossed.
    """
    started = time.monotonic()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    with zf:
        for member in zf.infolist():
            if not member.filename.lower().endswith(".xml") or member.is_dir():
                continue
            with zf.open(member) as fh:
                head = fh.read(64 << 10)
                found = _SHEET_HEAD.search(head)
                if not found or found.group(1) != b"sheetData":
                    continue  # not a worksheet, or one that declares its size (checked after opening)
                rows = cells = 0
                carry = head[found.start() :]
                while True:
                    block = fh.read(4 << 20)
                    buf = carry + block
                    cut = buf.rfind(b"<") if block else len(buf)
                    cut = len(buf) if cut <= 0 else cut
                    rows += _tags(buf, cut, b"row")
                    cells += _tags(buf, cut, b"c")
                    carry = buf[cut:]
                    if rows > limits.rows:
                        raise limits.refuse(
                            path.name,
                            "rows",
                            f"a sheet ({member.filename}) has more than {limits.rows:,} rows",
                            f"{limits.rows:,} rows",
                        )
                    if cells > limits.cells:
                        raise limits.refuse(
                            path.name,
                            "cells",
                            f"a sheet ({member.filename}) has more than {limits.cells:,} cells",
                            f"{limits.cells:,} cells",
                        )
                    if time.monotonic() - started > limits.seconds:
                        raise limits.refuse(
                            path.name,
                            "seconds",
                            f"sizing the sheets took more than {limits.seconds:,g} s",
                            f"{limits.seconds:,g} s",
                        )
                    if not block:
                        break


def _check_dimension(file_name: str, sheet, limits: WorkbookLimits) -> None:
    """Refuse a sheet whose declared size (its ``<dimension>``) is beyond ``limits``: read-only
    openpyxl pads every row up to the declared last row and column, so a 10-million-row
    declaration over two real rows still streams ten million rows."""
    max_row, max_col = sheet.max_row, sheet.max_column
    if not max_row or not max_col:
        return  # unsized sheet: the streaming counts still apply
    rows = max_row - (sheet.min_row or 1) + 1
    cols = max_col - (sheet.min_column or 1) + 1
    if rows > limits.rows:
        raise limits.refuse(file_name, "rows", f"the sheet declares {rows:,} rows", f"{limits.rows:,} rows")
    if rows * cols > limits.cells:
        raise limits.refuse(
            file_name,
            "cells",
            f"the sheet declares {rows:,} rows x {cols:,} columns = {rows * cols:,} cells",
            f"{limits.cells:,} cells",
        )


_FORMULA_NAMES = 12


def _formulas_without_values(book, sheet) -> tuple[list[str], int]:
    """(the first few coordinates, the count) of formula cells that have no saved value.

    ``data_only=True`` reads such a cell as empty (a workbook written by a program rather than
    saved by Excel often has none), which would load as a silent NULL. The sheet's XML is scanned
    for a ``<c>`` holding an ``<f>`` but no ``<v>``; a quick byte search first skips sheets with no
    formula at all.
    """
    archive, member = book._archive, sheet._worksheet_path
    with archive.open(member) as fh:
        tail = b""
        found = False
        while block := fh.read(4 << 20):
            if re.search(rb"<(?:\w+:)?f[ >/]", tail + block):
                found = True
                break
            tail = block[-16:]
    if not found:
        return [], 0
    names: list[str] = []
    count = 0
    with archive.open(member) as fh:
        for _, el in ElementTree.iterparse(fh, events=("end",)):  # noqa: S314 - expat resolves no external entities and caps entity expansion; the sheet is size-limited (WorkbookLimits)
            tag = el.tag.rsplit("}", 1)[-1]
            if tag != "c":
                if tag == "row":
                    el.clear()
                continue
            has_formula = has_value = False
            for child in el:
                ctag = child.tag.rsplit("}", 1)[-1]
                if ctag == "f":
                    has_formula = True
                elif ctag in ("v", "is") and (child.text or len(child)):
                    has_value = True
            if has_formula and not has_value:
                count += 1
                if len(names) < _FORMULA_NAMES:
                    names.append(el.get("r") or "?")
    return names, count


def as_csv(
    path: str | Path,
    out_dir: str | Path | None = None,
    limits: WorkbookLimits | None = None,
    tick: Callable[[int], None] | None = None,
) -> Path:
    """The file itself, or for an Excel workbook its first sheet written as CSV into ``out_dir``
    (default: a new private temporary folder, never beside the input; the caller removes it).

    The sheet is streamed row by row (openpyxl read-only mode), so a large workbook is not held
    in memory; dates become ISO text and numbers keep their full precision. ``limits`` (default:
    ``WorkbookLimits.from_env()``) bound what the workbook may expand to: the zip's sizes and
    ratios and the sheet's declared size are checked before reading, rows, cells and time while
    streaming. Formula cells without a saved value are refused (they would load as empty).
    Raises ``ExtractError`` with the limit, the value found and how to raise it.
    ``tick(rows so far)`` is called now and then while streaming: a caller can show progress, and
    stop the work by raising (the upload page's run is stopped when its session ends).
    """
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return path
    try:
        from openpyxl import load_workbook
    except ImportError as exc:  # pragma: no cover - openpyxl is a pinned dependency
        raise ExtractError(f"{path.name}: reading Excel needs openpyxl; export the sheet as CSV instead.") from exc
    limits = limits or WorkbookLimits.from_env()
    _check_zip(path, limits)
    _check_undeclared_sheets(path, limits)
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="cxdash-sheet-"))
    out = folder / (path.name + ".csv")
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zip or XML errors: not a workbook
        if out_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise ExtractError(
            f"{path.name}: not a readable Excel workbook ({type(exc).__name__}). Export the sheet as CSV."
        ) from exc
    try:
        sheet = book.worksheets[0]
        _check_dimension(path.name, sheet, limits)
        started = time.monotonic()
        rows = cells = 0
        with open(out, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            for row in sheet.iter_rows(values_only=True):
                rows += 1
                cells += len(row)
                if rows > limits.rows:
                    raise limits.refuse(
                        path.name, "rows", f"the sheet has more than {limits.rows:,} rows", f"{limits.rows:,} rows"
                    )
                if cells > limits.cells:
                    raise limits.refuse(
                        path.name, "cells", f"the sheet has more than {limits.cells:,} cells", f"{limits.cells:,} cells"
                    )
                if rows % _TICK_ROWS == 0 and tick is not None:
                    tick(rows)
                if rows % _TIME_CHECK_ROWS == 0 and time.monotonic() - started > limits.seconds:
                    raise limits.refuse(
                        path.name,
                        "seconds",
                        f"reading the sheet took more than {limits.seconds:,g} s (stopped at row {rows:,})",
                        f"{limits.seconds:,g} s",
                    )
                writer.writerow(
                    ["" if v is None else (v.isoformat(sep=" ") if hasattr(v, "isoformat") else v) for v in row]
                )
        names, count = _formulas_without_values(book, sheet)
        if count:
            more = " …" if count > len(names) else ""
            raise ExtractError(
                f"{path.name}: {count:,} formula cell{'s' if count != 1 else ''} "
                f"{'have' if count != 1 else 'has'} no saved value ({', '.join(names)}{more}), so "
                f"{'they' if count != 1 else 'it'} would load as empty. Open the file in Excel and save it "
                "(which stores each formula's result), or export the sheet as CSV."
            )
    except BaseException:
        if out_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            out.unlink(missing_ok=True)
        raise
    finally:
        book.close()
    return out
