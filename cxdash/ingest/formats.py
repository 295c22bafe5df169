"""The formats of a file's values: which date format, decimal mark and currency each column uses.

``detect_formats`` judges them on a sample (``refine_dates`` settles day-first against
month-first on a whole column); ``check_formats`` checks the formats a saved mapping gives.
Each detected format comes with a note in words for the load report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxdash.ingest.errors import MappingError
from cxdash.ingest.parsers import COMMA_NUMBER, DATE_FORMATS, MONEY, POINT_NUMBER, parse_datetime, parse_money
from cxdash.store.kinds import IDENTITY_FIELDS, SourceKind

__all__ = ["Formats", "check_formats", "describe_date_format", "detect_date_format", "detect_formats", "refine_dates"]


@dataclass
class Formats:
    """How the text of a file's columns is to be read (detected once, reused for every chunk)."""

    dates: dict[str, str] = field(default_factory=dict)  # field -> format
    decimal: dict[str, str] = field(default_factory=dict)  # field -> "." or ","
    notes: list[str] = field(default_factory=list)
    # field -> the currency its amounts carry ("EUR"; "EUR, USD" when mixed), from signs/codes
    currency: dict[str, str] = field(default_factory=dict)
    # field -> date formats that read every value of the sample equally well (day- vs month-first);
    # ``refine_dates`` settles them on the whole column. Not saved: a saved format is a decision.
    ambiguous: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"dates": dict(self.dates), "decimal": dict(self.decimal)}
        if self.currency:
            d["currency"] = dict(self.currency)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> Formats:
        """Formats saved with a mapping; their notes say they are the saved ones."""
        d = d or {}
        out = cls(dict(d.get("dates", {})), dict(d.get("decimal", {})), currency=dict(d.get("currency", {})))
        saved = " (as saved with the mapping)"
        out.notes = [f"{k}: dates read as {describe_date_format(v)}{saved}" for k, v in out.dates.items()]
        out.notes += [f"{k}: numbers use a decimal comma{saved}" for k, v in out.decimal.items() if v == ","]
        out.notes += [f"{k}: amounts were in {v} when the mapping was saved" for k, v in out.currency.items()]
        return out


_FORMAT_SECTIONS = ("dates", "decimal", "currency")


def check_formats(kind: SourceKind, formats: dict, file_name: str = "the mapping") -> None:
    """Raise ``ValueError`` (a ``MappingError`` when raised through ingest) unless a mapping's
    ``"formats"`` is ``{"dates": {FIELD: FORMAT}, "decimal": {FIELD: "." or ","}, "currency":
    {FIELD: TEXT}}`` with fields of ``kind`` of the right type; the message names the entry and
    the allowed values."""
    if not isinstance(formats, dict):
        raise MappingError(
            f'{file_name}: "formats" must be an object like {{"dates": {{"opened_at": "%d/%m/%Y"}}, '
            f'"decimal": {{"amount": ","}}}}, not {formats!r}.'
        )
    for section, entries in formats.items():
        if section not in _FORMAT_SECTIONS:
            raise MappingError(
                f'{file_name}: "formats" has an unknown entry {section!r}; '
                f"the allowed entries are {', '.join(_FORMAT_SECTIONS)}."
            )
        if not isinstance(entries, dict):
            raise MappingError(
                f'{file_name}: "formats"."{section}" must be an object of FIELD: VALUE, not {entries!r}.'
            )
        for name, value in entries.items():
            if name not in kind.field_names:
                raise MappingError(
                    f'{file_name}: "formats"."{section}" names {name!r}, not a field of kind '
                    f"{kind.name!r}; its fields are: {', '.join(kind.field_names)}."
                )
            dtype = kind.field(name).dtype
            if section == "dates":
                allowed = ", ".join(DATE_FORMATS)
                if dtype != "datetime":
                    raise MappingError(f'{file_name}: "formats"."dates" names {name!r}, which is not a date field.')
                if not isinstance(value, str) or (value not in DATE_FORMATS and not _valid_strftime(value)):
                    raise MappingError(
                        f'{file_name}: "formats"."dates"."{name}" is {value!r}, not a date format. '
                        f'Use one of {allowed}, or a strftime pattern such as "%d/%m/%Y %H:%M".'
                    )
            elif section == "decimal":
                if dtype not in ("float", "int"):
                    raise MappingError(f'{file_name}: "formats"."decimal" names {name!r}, which is not a number field.')
                if value not in (".", ","):
                    raise MappingError(
                        f'{file_name}: "formats"."decimal"."{name}" is {value!r}; '
                        'the allowed values are "." (decimal point) and "," (decimal comma).'
                    )
            elif not isinstance(value, str):
                raise MappingError(
                    f'{file_name}: "formats"."currency"."{name}" is {value!r}; give a currency code such as "EUR".'
                )


def _valid_strftime(fmt: str) -> bool:
    """True when ``fmt`` holds a ``%`` directive that pandas accepts as a date format."""
    if "%" not in fmt:
        return False
    try:
        pd.to_datetime(pd.Series(["2024-01-01"]), format=fmt, errors="coerce")
    except (ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------- format detection
def _date_scores(sample: pd.Series) -> dict[str, int]:
    """How many values of ``sample`` (no NA) each of ``DATE_FORMATS`` reads (pruned: see below)."""

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
    for fmt in DATE_FORMATS:
        best_so_far = max(scores.values(), default=0)
        if rest and best_so_far:
            on_head = score(head, fmt)
            if on_head + rest < best_so_far:
                scores[fmt] = on_head  # below the best either way: not a winner
                continue
        scores[fmt] = score(sample, fmt)
    return scores


def _date_winners(sample: pd.Series) -> list[str]:
    """The formats that read the most values of ``sample``, in ``DATE_FORMATS`` order ([] if none)."""
    sample = sample.dropna()
    if sample.empty:
        return ["ISO8601"]
    scores = _date_scores(sample)
    best = max(scores.values())
    return [f for f in DATE_FORMATS if scores[f] == best] if best else []


def detect_date_format(sample: pd.Series) -> tuple[str | None, str | None]:
    """The best date format of ``sample`` and, when another reads it as well, a note saying so."""
    winners = _date_winners(sample)
    if not winners:
        return None, None
    note = None
    if len(winners) > 1:
        note = f"every value also reads as {winners[1]}; chose {winners[0]} (day-first); check a few dates"
    return winners[0], note


def _order(fmt: str) -> str | None:
    """``day`` / ``month`` for a format that puts the day / the month first, else None."""
    if re.match(r"%d[/.\-]%m", fmt):
        return "day"
    if re.match(r"%m[/.\-]%d", fmt):
        return "month"
    return None


def describe_date_format(fmt: str) -> str:
    if fmt == "epoch_s":
        return "epoch seconds (Unix time, e.g. 1569888000 = 2019-10-01 00:00 UTC)"
    if fmt == "epoch_ms":
        return "epoch milliseconds (Unix time in ms, e.g. 1569888000000 = 2019-10-01 00:00 UTC)"
    if fmt == "ISO8601":
        return "ISO 8601"
    order = _order(fmt)
    return f"{order}-first ({fmt})" if order else fmt


_ZONED = re.compile(r"(?:Z|[+\-]\d{2}:?\d{2}|\s(?:UTC|GMT))$", re.IGNORECASE)


def _date_note(name: str, fmt: str, values: pd.Series, alternatives: list[str] | None = None) -> str:
    """The load note for a date column: its format, zones, and for an ambiguous column both readings."""
    note = f"{name}: dates read as {describe_date_format(fmt)}"
    if fmt == "ISO8601" and values.dropna().astype("string").str.strip().str.contains(_ZONED).fillna(False).any():
        note += "; times written with Z, an offset (+02:00) or UTC are converted to UTC (stored without a zone)"
    if alternatives:
        other = next(a for a in alternatives if a != fmt)
        text = values.dropna().astype("string").head(1000)
        first, second = parse_datetime(text, fmt), parse_datetime(text, other)
        # a value one reading cannot parse (another format in the same column) shows no difference
        differ = (first.notna() & second.notna() & (first != second)).fillna(False).to_numpy()
        if not differ.any():  # every day equals its month: both readings give the same dates
            return note
        i = int(np.flatnonzero(differ)[0])
        example, one, two = text.iloc[i], first.iloc[i], second.iloc[i]
        note += (
            f". AMBIGUOUS: every value of the column reads both day-first and month-first ({fmt} and {other}); "
            f"read as {_order(fmt)}-first, so {example} is {one:%d %B %Y}, not {two:%d %B %Y}. If that is wrong, "
            f'give the mapping "formats": {{"dates": {{"{name}": "{other}"}}}}'
        )
    return note


def _prefer_sibling_order(formats: Formats) -> None:
    """An ambiguous date column reads in the order an unambiguous date column of the file uses."""
    known = {_order(fmt) for f, fmt in formats.dates.items() if f not in formats.ambiguous} - {None}
    if len(known) != 1:
        return
    order = known.pop()
    sibling = next(f for f, fmt in formats.dates.items() if f not in formats.ambiguous and _order(fmt) == order)
    for name, alternatives in formats.ambiguous.items():
        formats.dates[name] = next((a for a in alternatives if _order(a) == order), formats.dates[name])
        formats.notes.append(f"{name}: day/month order taken from {sibling}, whose dates read only {order}-first")


def refine_dates(formats: Formats, columns: dict[str, pd.Series]) -> Formats:
    """Settle day-first vs month-first on the whole column: ``columns`` holds every value of the
    ambiguous date fields (``formats.ambiguous``). A column where some value reads only one way
    takes that way; a column where every value reads both ways keeps the default and its note
    naming both readings. Returns ``formats``, updated in place."""
    for name, alternatives in list(formats.ambiguous.items()):
        if name not in columns:
            continue
        values = pd.Series(pd.unique(columns[name].dropna().astype("string").str.strip()), dtype="string")
        scores = {fmt: int(parse_datetime(values, fmt).notna().sum()) for fmt in alternatives}
        best = max(scores.values())
        winners = [fmt for fmt in alternatives if scores[fmt] == best]
        formats.notes = [n for n in formats.notes if not n.startswith(f"{name}: dates read as")]
        if len(winners) == 1:
            fmt = winners[0]
            formats.dates[name] = fmt
            del formats.ambiguous[name]
            formats.notes.append(
                f"{name}: dates read as {describe_date_format(fmt)}, decided on the whole column "
                f"(the first rows read both ways; {best - min(scores.values()):,} distinct values read only this way)"
            )
        else:
            formats.notes.append(_date_note(name, formats.dates[name], values, alternatives))
    return formats


def _number_text(value: str) -> str | None:
    """The digits-and-marks part of a written amount (no sign, currency or parentheses)."""
    m = MONEY.match(value.strip())
    return m["num"].strip() if m else None


def _decimal_evidence(sample: pd.Series) -> tuple[int, int, int]:
    """(values only a decimal point reads, only a decimal comma reads, both read differently)."""
    point_only = comma_only = both = 0
    for v in pd.unique(sample.dropna().astype("string")):
        num = _number_text(str(v))
        if num is None:
            continue
        p, c = bool(POINT_NUMBER.fullmatch(num)), bool(COMMA_NUMBER.fullmatch(num))
        if p and not c:
            point_only += 1
        elif c and not p:
            comma_only += 1
        elif p and c and ("." in num or "," in num):
            both += 1
    return point_only, comma_only, both


def _decimal_note(name: str, sample: pd.Series) -> tuple[str, str]:
    """(decimal mark, the load note saying which mark was detected and what the other one means)."""
    point_only, comma_only, both = _decimal_evidence(sample)
    mark = "," if comma_only > point_only else "."
    if mark == ",":
        note = f"{name}: numbers use a decimal comma (1.234,56 = 1234.56)"
        minority = point_only
    else:
        note = f"{name}: numbers use a decimal point (1,234.56)"
        minority = comma_only
    if minority:
        note += (
            f"; {minority:,} distinct value(s) in the first rows are written with the other mark and will be "
            "rejected, not guessed"
        )
    elif both and not (point_only or comma_only):
        note += (
            "; no value shows which mark the file uses (values like 1.234 read either way): read with a decimal "
            'point; if the file uses a decimal comma give the mapping "formats": {"decimal": {"' + name + '": ","}}'
        )
    return mark, note


def _currency_note(kind: SourceKind, name: str, currencies: pd.Series, mapped: set[str]) -> str | None:
    counts = currencies.dropna().value_counts()
    if counts.empty:
        return None
    listed = ", ".join(f"{c} ({n:,} rows)" for c, n in counts.items())
    if len(counts) > 1:
        note = f"{name}: MIXED currencies in one column (first rows: {listed})"
    else:
        note = f"{name}: amounts are in {counts.index[0]} (from the sign or code written beside them)"
    if "currency" in kind.field_names and "currency" not in mapped:
        note += "; each row's currency is stored in the currency field"
    elif "currency" not in kind.field_names:
        note += "; this kind stores no currency: the figures are shown as the numbers written"
        if len(counts) > 1:
            note += ", so totals add different currencies; load one currency per file"
    return note


def detect_formats(kind: SourceKind, frame: pd.DataFrame, sample_rows: int | None = 5000) -> Formats:
    """Detect date formats, decimal marks and currencies of a canonical-named text frame.

    Shape in: text columns named by the kind's fields. Out: ``Formats`` whose ``notes`` say, per
    field, what was detected (date format, time zones, epoch unit, decimal mark, currencies) and
    whose ``ambiguous`` lists date fields the sample could not settle (see ``refine_dates``).
    """
    formats = Formats()
    head = frame.head(sample_rows) if sample_rows else frame
    money_notes: list[str] = []
    readable: set[str] = set()  # date fields some format reads
    for f in kind.fields:
        if f.name not in head.columns or f.name in IDENTITY_FIELDS:
            continue
        col = head[f.name]
        if f.dtype == "datetime":
            winners = _date_winners(col)
            if not winners:
                formats.dates[f.name] = "ISO8601"
                continue
            formats.dates[f.name] = winners[0]
            readable.add(f.name)
            orders = {_order(w) for w in winners}
            if {"day", "month"} <= orders:
                day = next(w for w in winners if _order(w) == "day")
                month = next(w for w in winners if _order(w) == "month")
                formats.ambiguous[f.name] = [day, month]
        elif f.dtype in ("float", "int"):
            mark, note = _decimal_note(f.name, col)
            formats.decimal[f.name] = mark
            if col.dropna().astype("string").str.contains(r"\d[.,]\d", regex=True).fillna(False).any() or mark == ",":
                formats.notes.append(note)
            if f.dtype == "float":
                _, cur = parse_money(col, mark)
                codes = cur.dropna().unique()
                if len(codes):
                    formats.currency[f.name] = ", ".join(sorted(codes))
                    text = _currency_note(kind, f.name, cur, set(frame.columns))
                    if text and col.dropna().astype("string").str.contains(r"\$", regex=True).fillna(False).any():
                        text += " (a dollar sign is read as USD: it does not say which dollar)"
                    if text:
                        money_notes.append(text)
    _prefer_sibling_order(formats)
    for name, fmt in formats.dates.items():
        col = head[name]
        if name not in readable or col.dropna().empty:
            continue
        formats.notes.append(_date_note(name, fmt, col, formats.ambiguous.get(name)))
    formats.notes.extend(money_notes)
    return formats
