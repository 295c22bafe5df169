"""Validation at the point of entry, and turning validated text into typed values.

Shape in: a frame of text whose columns are a kind's canonical field names (after mapping),
indexed by data-row number. Shape out: a failure-case frame (one row per failed value:
``row``, ``field``, ``rule``, ``value``, ``expected``) and the typed frame of the valid rows.

The contract per kind is a pandera ``DataFrameSchema`` built from ``cxdash.kinds``; the
parsers here are the single definition of what a date, a number or a yes/no is, shared by
the checks and by the conversion so the two cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from cxdash.kinds import IDENTITY_FIELDS, SourceKind

__all__ = [
    "FAILURE_COLUMNS",
    "Formats",
    "build_schema",
    "check",
    "coerce",
    "detect_formats",
    "normalise_identity",
    "parse_bool",
    "parse_datetime",
    "parse_number",
    "parse_fields",
    "typed_frame",
    "validate",
]

FAILURE_COLUMNS = ["row", "field", "rule", "value", "expected"]

_DATE_FORMATS = (
    "ISO8601",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y",
    "%d-%m-%Y %H:%M",
    "%d-%m-%y",
    "%d-%m-%y %H:%M",
    "%d-%m-%y %H:%M:%S",
    "%d/%m/%y",
    "%m/%d/%y",
    "%m/%d/%y %H:%M",
    "%y-%m-%d",
    "%Y%m%d",
    "epoch_s",
    "epoch_ms",
)

_TRUE = {"1", "true", "t", "yes", "y", "churned", "x"}
_FALSE = {"0", "false", "f", "no", "n", "active", "retained", ""}


@dataclass
class Formats:
    """How the text of a file's columns is to be read (detected once, reused for every chunk)."""

    dates: dict[str, str] = field(default_factory=dict)  # field -> format
    decimal: dict[str, str] = field(default_factory=dict)  # field -> "." or ","
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dates": dict(self.dates), "decimal": dict(self.decimal)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Formats:
        d = d or {}
        return cls(dict(d.get("dates", {})), dict(d.get("decimal", {})))


# ---------------------------------------------------------------- parsers (one definition each)
def _iso_fast(s: pd.Series) -> pd.Series | None:
    """ISO 8601 text parsed by Arrow's C++ parser, or None when pandas has to decide.

    Arrow's cast accepts a strict subset of what ``pd.to_datetime(format="ISO8601")`` accepts
    (``YYYY-MM-DD[( |T)hh[:mm[:ss[.ffffff]]]]``, and the same with a zone offset) and gives the
    same instants (tests/test_ingest_fast_path.py compares the two value by value). A column
    where any value is outside that subset, or mixes offsets and local times, returns None
    and goes through pandas whole, so the result never depends on which path ran.
    """
    try:
        arr = pyarrow.array(s.array, type=pyarrow.large_string(), from_pandas=True)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, TypeError):
        return None
    for target in (pyarrow.timestamp("us"), pyarrow.timestamp("us", tz="UTC")):
        try:
            ts = pc.cast(arr, target)
        except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
            continue
        values = ts.cast(pyarrow.timestamp("us")).to_numpy(zero_copy_only=False)
        return pd.Series(values.astype("datetime64[us]"), index=s.index)
    return None


def parse_datetime(s: pd.Series, fmt: str) -> pd.Series:
    """Parse text to naive UTC timestamps; unparseable values become NaT."""
    if fmt == "ISO8601":
        fast = _iso_fast(s)
        if fast is not None:
            return fast
    if fmt in ("epoch_s", "epoch_ms"):
        num = pd.to_numeric(s, errors="coerce")
        out = pd.to_datetime(num, unit="s" if fmt == "epoch_s" else "ms", errors="coerce", utc=True)
    else:
        out = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
        # pandas reads "now" and "today" as the moment of parsing: in an extract they are not a date
        words = s.astype("string").str.strip().str.lower().isin(_RELATIVE_DATE_WORDS).fillna(False).astype(bool)
        if words.any():
            out = out.mask(words)
    return out.dt.tz_localize(None).astype("datetime64[us]")


_RELATIVE_DATE_WORDS = ("now", "today", "yesterday", "tomorrow")


_NUM_JUNK = re.compile(r"[\s\u00a0$€£¥]")


def parse_number(s: pd.Series, decimal: str = ".") -> pd.Series:
    """Parse text to float; ``1.234,50`` with ``decimal=','``; currency signs and spaces ignored."""
    t = s.astype("string").str.replace(_NUM_JUNK, "", regex=True)
    if decimal == ",":
        t = t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        t = t.str.replace(",", "", regex=False)
    out = pd.to_numeric(t, errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def parse_bool(s: pd.Series) -> pd.Series:
    low = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[low.isin(_TRUE)] = True
    out[low.isin(_FALSE)] = False
    return out


def normalise_identity(field_name: str, s: pd.Series) -> pd.Series:
    """Normalise an identifier for matching: emails lower-cased, phones to their last 10 digits."""
    t = s.astype("string").str.strip()
    if field_name == "email":
        t = t.str.lower()
    elif field_name == "phone":
        digits = t.str.replace(r"\D", "", regex=True)
        t = digits.str.slice(-10)
    t = t.mask(t == "")
    return t


# ---------------------------------------------------------------- format detection
def _detect_date_format(sample: pd.Series) -> tuple[str | None, str | None]:
    sample = sample.dropna()
    if sample.empty:
        return "ISO8601", None

    def score(values: pd.Series, fmt: str) -> int:
        parsed = parse_datetime(values, fmt)
        ok = parsed.notna()
        if fmt.startswith("epoch"):
            # Epochs must land in a plausible range to count (not any number).
            ok &= parsed.between(pd.Timestamp("1990-01-01"), pd.Timestamp("2100-01-01"))
            ok &= values.str.fullmatch(r"\d{9,13}").fillna(False).astype(bool)
        return int(ok.sum())

    # A format is first tried on the head of the sample: when even a perfect rest could not
    # reach the best full score so far, it can neither win nor tie, and the rest is skipped.
    head = sample.iloc[:200]
    rest = len(sample) - len(head)
    scores: dict[str, int] = {}
    for fmt in _DATE_FORMATS:
        best_so_far = max(scores.values(), default=0)
        if rest and best_so_far:
            on_head = score(head, fmt)
            if on_head + rest < best_so_far:
                scores[fmt] = on_head  # below the best either way: not a winner
                continue
        scores[fmt] = score(sample, fmt)
    best = max(scores.values())
    if best == 0:
        return None, None
    winners = [f for f in _DATE_FORMATS if scores[f] == best]
    note = None
    if len(winners) > 1:
        note = f"every value also reads as {winners[1]}; chose {winners[0]} (day-first); check a few dates"
    return winners[0], note


def _detect_decimal(sample: pd.Series) -> str:
    sample = sample.dropna().astype("string").str.replace(_NUM_JUNK, "", regex=True)
    if sample.empty:
        return "."
    comma = sample.str.fullmatch(r"-?\d{1,3}(\.\d{3})*(,\d+)?|-?\d+,\d+").fillna(False).astype(bool)
    point = sample.str.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d+)?|-?\d+(\.\d+)?").fillna(False).astype(bool)
    return "," if comma.sum() > point.sum() else "."


def detect_formats(kind: SourceKind, frame: pd.DataFrame, sample_rows: int = 5000) -> Formats:
    """Detect date formats and decimal separators of a canonical-named text frame."""
    formats = Formats()
    head = frame.head(sample_rows)
    for f in kind.fields:
        if f.name not in head.columns:
            continue
        col = head[f.name]
        if f.dtype == "datetime":
            fmt, note = _detect_date_format(col)
            formats.dates[f.name] = fmt or "ISO8601"
            if fmt:
                formats.notes.append(f"{f.name}: dates read as {fmt}" + (f" ({note})" if note else ""))
        elif f.dtype in ("float", "int"):
            formats.decimal[f.name] = _detect_decimal(col)
            if formats.decimal[f.name] == ",":
                formats.notes.append(f"{f.name}: numbers use a decimal comma (1.234,50)")
    return formats


# ---------------------------------------------------------------- the contract
def _parses(parser, expected: str, name: str) -> pa.Check:
    return pa.Check(lambda s: s.isna() | parser(s).notna(), name=name, error=expected)


def _plausible_dates(parsed: pd.Series) -> pd.Series:
    """Unparsed values are the ``date`` rule's business; parsed ones must fall in 1900-2100."""
    return parsed.isna() | parsed.between(pd.Timestamp("1900-01-01"), pd.Timestamp("2100-12-31"))


def _field_parser(kind: SourceKind, name: str, formats: Formats):
    """The one parser of field ``name``: text Series -> typed Series (NA where unreadable).

    Identity fields are normalised, text is stripped; ``int`` fields stay float here (see
    ``typed_frame``) so a check can see a fractional value before it is rounded.
    """
    f = kind.field(name)
    if name in IDENTITY_FIELDS:
        return lambda s: normalise_identity(name, s)
    if f.dtype == "datetime":
        fmt = formats.dates.get(name, "ISO8601")
        return lambda s: parse_datetime(s, fmt)
    if f.dtype in ("float", "int"):
        dec = formats.decimal.get(name, ".")
        return lambda s: parse_number(s, dec)
    if f.dtype == "bool":
        return parse_bool

    def text(s: pd.Series) -> pd.Series:
        t = s.astype("string").str.strip()
        return t.mask(t == "")

    return text


def parse_fields(kind: SourceKind, frame: pd.DataFrame, formats: Formats) -> dict[str, pd.Series]:
    """Every canonical field of ``frame`` parsed once, in the kind's field order."""
    return {f.name: _field_parser(kind, f.name, formats)(frame[f.name]) for f in kind.fields if f.name in frame.columns}


def _reusing(parsed: dict[str, pd.Series] | None, name: str, parse):
    """``parse``, answered from ``parsed[name]``: the parse of the frame being validated.

    pandera hands a check the column, or for a nullable column its non-missing values: rows of
    that same frame, so the answer is the parsed values of those rows, without a second parse.
    """
    if not parsed or name not in parsed:
        return parse
    done = parsed[name]

    def run(s: pd.Series) -> pd.Series:
        if len(s) == len(done) and s.index.equals(done.index):
            return done
        return done.reindex(s.index)

    return run


def build_schema(
    kind: SourceKind, present: list[str], formats: Formats, parsed: dict[str, pd.Series] | None = None
) -> pa.DataFrameSchema:
    """The pandera contract for ``kind`` restricted to the mapped fields in ``present``.

    ``parsed``, when given, must be ``parse_fields`` of the very frame this schema will validate
    (as in ``check``): the checks then reuse those parses. The rules and their outcome are the
    same with or without it.
    """
    columns: dict[str, pa.Column] = {}
    for f in kind.fields:
        if f.name not in present:
            continue
        checks: list[pa.Check] = []
        parse = _reusing(parsed, f.name, _field_parser(kind, f.name, formats))
        if f.dtype == "datetime":
            fmt = formats.dates.get(f.name, "ISO8601")
            shown = "ISO 8601 like 2024-01-31 or 2024-01-31 14:05" if fmt == "ISO8601" else fmt
            checks.append(_parses(parse, f"a date/time in the format {shown}", "date"))
            checks.append(
                pa.Check(
                    lambda s, parse=parse: _plausible_dates(parse(s)),
                    name="plausible_date",
                    error="a date between 1900 and 2100",
                )
            )
        elif f.dtype in ("float", "int"):
            dec = formats.decimal.get(f.name, ".")
            checks.append(_parses(parse, "a number" + (" (decimal comma)" if dec == "," else ""), "number"))
            if f.dtype == "int":
                checks.append(
                    pa.Check(
                        lambda s, parse=parse: s.isna() | ((parse(s) % 1).fillna(0) == 0),
                        name="whole_number",
                        error="a whole number",
                    )
                )
            lo, hi = kind.ranges.get(f.name, (None, None))
            if lo is not None:
                checks.append(
                    pa.Check(
                        lambda s, parse=parse, lo=lo: s.isna() | ~(parse(s) < lo).fillna(False),
                        name="minimum",
                        error=f"a value of at least {lo}",
                    )
                )
            if hi is not None:
                checks.append(
                    pa.Check(
                        lambda s, parse=parse, hi=hi: s.isna() | ~(parse(s) > hi).fillna(False),
                        name="maximum",
                        error=f"a value of at most {hi}",
                    )
                )
        elif f.dtype == "bool":
            checks.append(_parses(parse, "yes/no, true/false or 1/0", "yes_no"))
        columns[f.name] = pa.Column(
            dtype=None,
            nullable=not f.required,
            checks=checks,
            required=True,
            description=f.description or None,
        )
    return pa.DataFrameSchema(columns, name=kind.name, strict=False, coerce=False)


def _pandera_failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        checks = {name: col.checks for name, col in schema.columns.items()}
        rows = []
        for rec in fc.itertuples(index=False):
            column, check = rec.column, str(rec.check)
            if check == "not_nullable":
                rule, expected = "required", "a value (this field is required)"
            else:
                rule, expected = check, check
                for c in checks.get(column, []):
                    if c.error == check:
                        rule, expected = c.name, c.error
            rows.append((rec.index, column, rule, rec.failure_case, expected))
        return pd.DataFrame(rows, columns=FAILURE_COLUMNS)
    return pd.DataFrame(columns=FAILURE_COLUMNS)


def validate(kind: SourceKind, frame: pd.DataFrame, formats: Formats) -> pd.DataFrame:
    """Every failed value of ``frame`` (canonical-named text) as a failure-case frame.

    Besides the per-field contract: every row needs at least one customer identifier, and
    ordered date pairs (opened before closed) must be in order.
    """
    return check(kind, frame, formats)[0]


def check(kind: SourceKind, frame: pd.DataFrame, formats: Formats) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """``validate`` and the parsed values of every row, each field parsed once.

    Returns the failure-case frame and ``parse_fields(kind, frame, formats)``, which the
    pandera checks have just used; ``typed_frame`` turns the valid rows of it into ``coerce``'s result.
    """
    present = [c for c in frame.columns if c in kind.field_names]
    parsed = parse_fields(kind, frame, formats)
    failures = [_pandera_failures(build_schema(kind, present, formats, parsed), frame[present])]

    ids = [f for f in IDENTITY_FIELDS if f in present]
    if ids:
        has_id = pd.Series(False, index=frame.index)
        for f in ids:
            has_id |= parsed[f].notna()
        missing = frame.index[~has_id]
        if len(missing):
            failures.append(
                pd.DataFrame(
                    {
                        "row": missing,
                        "field": "/".join(ids),
                        "rule": "customer_identifier",
                        "value": None,
                        "expected": f"a customer identifier in at least one of: {', '.join(ids)}",
                    }
                )
            )
    for early, late in kind.ordered:
        if early in present and late in present:
            a, b = parsed[early], parsed[late]
            bad = frame.index[(b < a).fillna(False).astype(bool)]
            if len(bad):
                failures.append(
                    pd.DataFrame(
                        {
                            "row": bad,
                            "field": late,
                            "rule": "date_order",
                            "value": frame.loc[bad, late].astype(object).to_numpy(),
                            "expected": f"{late} on or after {early}",
                        }
                    )
                )
    out = pd.concat([f for f in failures if not f.empty], ignore_index=True) if any(
        not f.empty for f in failures
    ) else pd.DataFrame(columns=FAILURE_COLUMNS)
    return out, parsed


def typed_frame(kind: SourceKind, parsed: dict[str, pd.Series], rows: pd.Index | None = None) -> pd.DataFrame:
    """The typed frame of ``parsed`` (from ``parse_fields``/``check``), limited to ``rows``
    (the valid ones; all when None): ``int`` fields become whole numbers (Int64) here."""
    columns = {}
    for name, s in parsed.items():
        if rows is not None and not (len(rows) == len(s) and rows.equals(s.index)):
            s = s.loc[rows]
        if kind.field(name).dtype == "int" and name not in IDENTITY_FIELDS:
            s = s.round().astype("Int64")
        columns[name] = s
    if not columns:
        return pd.DataFrame(index=rows)
    return pd.DataFrame(columns)  # the Series share one index: no alignment work


def coerce(kind: SourceKind, frame: pd.DataFrame, formats: Formats) -> pd.DataFrame:
    """Typed values for the (already validated) canonical fields of ``frame``."""
    if not any(f.name in frame.columns for f in kind.fields):
        return pd.DataFrame(index=frame.index)
    return typed_frame(kind, parse_fields(kind, frame, formats))
