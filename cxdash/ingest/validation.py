"""Validation at the point of entry, and turning validated text into typed values.

Shape in: a frame of text whose columns are a kind's canonical field names (after mapping),
indexed by data-row number. Shape out: a failure-case frame (one row per failed value:
``row``, ``field``, ``rule``, ``value``, ``expected``) and the typed frame of the valid rows.

The contract per kind is a pandera ``DataFrameSchema`` built from ``cxdash.store.kinds``; the
parsers (cxdash.ingest.parsers) are the single definition of what a date, a number or a yes/no
is, shared by the checks and by the conversion so the two cannot disagree.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from cxdash.ingest.formats import Formats
from cxdash.ingest.identifiers import normalise_identity
from cxdash.ingest.parsers import parse_bool, parse_datetime, parse_money, parse_number
from cxdash.store.kinds import IDENTITY_FIELDS, SourceKind

__all__ = [
    "FAILURE_COLUMNS",
    "build_schema",
    "check",
    "coerce",
    "parse_fields",
    "typed_frame",
    "validate",
]

FAILURE_COLUMNS = ["row", "field", "rule", "value", "expected"]


# ---------------------------------------------------------------- the contract
def _parses(parser, expected: str, name: str) -> pa.Check:
    return pa.Check(lambda s: s.isna() | parser(s).notna(), name=name, error=expected)


_NUMBER_EXPECTED = {
    ".": "a number with a decimal point like 1,234.56 (this column's numbers use a decimal point; "
    "a value written 1.234,56 uses a decimal comma and is not guessed)",
    ",": "a number with a decimal comma like 1.234,56 (this column's numbers use a decimal comma; "
    "a value written 1,234.56 uses a decimal point and is not guessed)",
}


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
    """Every canonical field of ``frame`` parsed once, in the kind's field order.

    When an amount is written with its currency (``€12``, ``12 EUR``) and the kind has a
    ``currency`` field that no column feeds, the result also holds ``currency``: each row's code
    (from the first money field that carries one).
    """
    out: dict[str, pd.Series] = {}
    currency: pd.Series | None = None
    fill = "currency" in kind.field_names and "currency" not in frame.columns
    for f in kind.fields:
        if f.name not in frame.columns:
            continue
        if fill and f.dtype == "float" and f.name not in IDENTITY_FIELDS:
            values, codes = parse_money(frame[f.name], formats.decimal.get(f.name, "."))
            out[f.name] = values
            if codes.notna().any():
                currency = codes if currency is None else currency.fillna(codes)
        else:
            out[f.name] = _field_parser(kind, f.name, formats)(frame[f.name])
    if currency is not None:
        out["currency"] = currency
    return out


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
            checks.append(_parses(parse, _NUMBER_EXPECTED[dec], "number"))
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
    if "currency" in present:
        failures.extend(_currency_conflicts(kind, frame, formats, parsed, present))
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
    out = (
        pd.concat([f for f in failures if not f.empty], ignore_index=True)
        if any(not f.empty for f in failures)
        else pd.DataFrame(columns=FAILURE_COLUMNS)
    )
    return out, parsed


def _currency_conflicts(
    kind: SourceKind, frame: pd.DataFrame, formats: Formats, parsed: dict[str, pd.Series], present: list[str]
) -> list[pd.DataFrame]:
    """Rows whose amount is written with one currency (``€12``) while the currency column says another."""
    stated = parsed["currency"].str.upper()
    out = []
    for f in kind.fields:
        if f.dtype != "float" or f.name not in present or f.name in IDENTITY_FIELDS:
            continue
        _, written = parse_money(frame[f.name], formats.decimal.get(f.name, "."))
        bad = frame.index[(written.notna() & stated.notna() & (written != stated)).fillna(False).to_numpy(dtype=bool)]
        if len(bad):
            out.append(
                pd.DataFrame(
                    {
                        "row": bad,
                        "field": f.name,
                        "rule": "currency_match",
                        "value": frame.loc[bad, f.name].astype(object).to_numpy(),
                        "expected": "an amount in the currency the currency column gives for its row",
                    }
                )
            )
    return out


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
