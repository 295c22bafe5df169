"""Validation at the point of entry, and turning validated text into typed values.

Shape in: a frame of text whose columns are a kind's canonical field names (after mapping),
indexed by data-row number. Shape out: a failure-case frame (one row per failed value:
``row``, ``field``, ``rule``, ``value``, ``expected``) and the typed frame of the valid rows.

The contract per kind is a pandera ``DataFrameSchema`` built from ``cxdash.store.kinds``; the
parsers here are the single definition of what a date, a number or a yes/no is, shared by
the checks and by the conversion so the two cannot disagree.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from cxdash.store.kinds import IDENTITY_FIELDS, SourceKind

__all__ = [
    "FAILURE_COLUMNS",
    "Formats",
    "build_schema",
    "check",
    "coerce",
    "detect_formats",
    "NULL_TOKENS",
    "check_formats",
    "identity_flags",
    "identity_examples",
    "identity_notes",
    "normalise_identity",
    "parse_bool",
    "parse_datetime",
    "parse_number",
    "parse_fields",
    "parse_money",
    "refine_dates",
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
        out.notes = [f"{k}: dates read as {_describe_date_format(v)}{saved}" for k, v in out.dates.items()]
        out.notes += [f"{k}: numbers use a decimal comma{saved}" for k, v in out.decimal.items() if v == ","]
        out.notes += [f"{k}: amounts were in {v} when the mapping was saved" for k, v in out.currency.items()]
        return out


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


_ZONE_WORD = re.compile(r"\s*\b(?:UTC|GMT)$", re.IGNORECASE)


def parse_datetime(s: pd.Series, fmt: str) -> pd.Series:
    """Parse text to naive UTC timestamps; unparseable values become NaT.

    ISO text with ``Z``, an offset (``+02:00``) or a trailing ``UTC``/``GMT`` word is converted
    to UTC; ISO text without a zone is taken as UTC already. ``epoch_s``/``epoch_ms`` read Unix
    time in seconds / milliseconds.
    """
    if fmt == "ISO8601":
        fast = _iso_fast(s)
        if fast is not None:
            return fast
        # "2019-10-01 00:00:00 UTC" (BigQuery, many exports): the zone word is an offset of zero.
        text = s.astype("string")
        if text.str.contains(_ZONE_WORD, regex=True).fillna(False).any():
            s = text.str.replace(_ZONE_WORD, "Z", regex=True)
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


# ---------------------------------------------------------------- amounts
# Currency signs and the ISO 4217 codes exports commonly write beside an amount. A "$" alone does
# not say which dollar: it is read as USD and the load notes say so.
_CURRENCY_SIGNS = {
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "₩": "KRW",
    "R$": "BRL",
    "CHF": "CHF",
    "zł": "PLN",
}
_CURRENCY_CODES = frozenset(
    [
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CHF",
        "CAD",
        "AUD",
        "NZD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "INR",
        "CNY",
        "HKD",
        "SGD",
        "ZAR",
        "BRL",
        "MXN",
        "KRW",
        "TRY",
        "ILS",
        "AED",
        "SAR",
        "RUB",
    ]
)
_SIGN_PATTERN = "|".join(re.escape(k) for k in sorted(_CURRENCY_SIGNS, key=len, reverse=True))
_MONEY = re.compile(
    r"^\(?\s*(?P<s1>[-+\u2212])?\s*(?P<pre>" + _SIGN_PATTERN + r"|[A-Za-z]{3}(?=[\s\d(+\-.,]))?\s*"
    r"(?P<s2>[-+\u2212])?\s*(?P<num>\d[\d.,'\u00a0\u202f ]*|[.,]\d+)\s*"
    r"(?P<post>" + _SIGN_PATTERN + r"|[A-Za-z]{3})?\s*(?P<s3>-)?\s*\)?$"
)
_GROUP = r"[,'\u00a0\u202f ]"  # thousands separators of a decimal-point number
# A number as one decimal mark writes it: grouped thousands (1,234 / 1.234 / 1 234) or none.
_POINT_NUMBER = re.compile(r"\d{1,3}(?:(?P<g>[,'\u00a0\u202f ])\d{3})(?:(?P=g)\d{3})*(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+")
_COMMA_NUMBER = re.compile(r"\d{1,3}(?:(?P<g>[.'\u00a0\u202f ])\d{3})(?:(?P=g)\d{3})*(?:,\d*)?|\d+(?:,\d*)?|,\d+")


def _currency_of(token: str | None) -> str | None:
    if not token:
        return None
    if token in _CURRENCY_SIGNS:
        return _CURRENCY_SIGNS[token]
    code = token.upper()
    return code if code in _CURRENCY_CODES else ""  # "" = letters that are no currency: not a number


def _money_one(text: str, decimal: str) -> tuple[float, str | None]:
    """One written amount -> (value or NaN, ISO currency or None)."""
    m = _MONEY.match(text.strip())
    if not m:
        return np.nan, None
    opened, closed = text.strip().startswith("("), text.strip().endswith(")")
    if opened != closed:
        return np.nan, None
    pre, post = _currency_of(m["pre"]), _currency_of(m["post"])
    if pre == "" or post == "" or (pre and post and pre != post):
        return np.nan, None
    signs = [x for x in (m["s1"], m["s2"], m["s3"]) if x]
    if len(signs) > 1 or (signs and opened):
        return np.nan, None
    num = m["num"].strip()
    if not (_COMMA_NUMBER if decimal == "," else _POINT_NUMBER).fullmatch(num):
        return np.nan, None
    num = re.sub(r"[.'\u00a0\u202f ]", "", num).replace(",", ".") if decimal == "," else re.sub(_GROUP, "", num)
    value = float(num)
    if opened or (signs and signs[0] in "-\u2212"):
        value = -value
    return value, pre or post


def parse_money(s: pd.Series, decimal: str = ".") -> tuple[pd.Series, pd.Series]:
    """Written amounts -> (float values, currency codes), NA where a value is not an amount.

    Reads ``1234.5``, ``1,234.56`` (``decimal='.'``) or ``1.234,56`` (``decimal=','``), a currency
    sign or ISO code before or after (``$12``, ``€12``, ``12 EUR``, ``USD 12.00``) and accounting
    negatives ``(12.00)``. A value written with the other decimal mark is not read (``1.234,56``
    in a decimal-point column is NA, never 1.23456): the check reports it.
    Plain numbers take Arrow's parser; only the rest go value by value.
    """
    currency = pd.Series(pd.NA, index=s.index, dtype="string")
    out = pd.Series(np.nan, index=s.index, dtype="float64")
    try:
        arr = pyarrow.array(s.array, type=pyarrow.large_string(), from_pandas=True)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, TypeError):
        arr = pyarrow.array(s.astype("string").array, type=pyarrow.large_string(), from_pandas=True)
    # A plain number reads the same with either mark unless it holds a "." (1.234 is 1234 with a
    # decimal comma): only then is the fast cast wrong for a decimal-comma column.
    plain = pc.match_substring_regex(arr, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    if decimal == ",":
        plain = pc.and_(plain, pc.invert(pc.match_substring(arr, ".")))
    plain = plain.fill_null(False)
    n_plain = pc.sum(plain).as_py() or 0
    mask = np.zeros(len(s), dtype=bool)
    if n_plain:
        try:
            values = pc.cast(pc.utf8_trim_whitespace(pc.filter(arr, plain)), pyarrow.float64())
        except pyarrow.ArrowInvalid:  # a value Arrow declines goes the slow way with the rest
            values = None
        if values is not None:
            mask = np.asarray(plain.to_numpy(zero_copy_only=False), dtype=bool)
            out.iloc[np.flatnonzero(mask)] = values.to_numpy(zero_copy_only=False)
    rest = ~mask & np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    if rest.any():
        # Written amounts repeat (prices, plan fees): each distinct text is read once.
        idx = np.flatnonzero(rest)
        texts = arr.take(pyarrow.array(idx))
        distinct = pc.unique(texts)
        pairs = [_money_one(t, decimal) for t in distinct.to_pylist()]
        where = pc.index_in(texts, value_set=distinct).to_numpy(zero_copy_only=False)
        out.iloc[idx] = np.array([p[0] for p in pairs], dtype="float64")[where]
        currency.iloc[idx] = np.array([p[1] for p in pairs], dtype=object)[where]
    out = out.where(np.isfinite(out))
    return out, currency.mask(out.isna())


def parse_number(s: pd.Series, decimal: str = ".") -> pd.Series:
    """Parse text to float (see ``parse_money``: signs, codes, ``(12.00)``, the column's decimal mark)."""
    return parse_money(s, decimal)[0]


def parse_bool(s: pd.Series) -> pd.Series:
    """Yes/no text -> boolean: true/false, yes/no, y/n, t/f, 1/0 (any case, trimmed); NA otherwise."""
    low = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[low.isin(_TRUE)] = True
    out[low.isin(_FALSE)] = False
    return out


# Texts that spreadsheets and databases write for "no value": in an identifier column they are
# missing, never an id (``customer_id:NULL`` would merge every such row into one customer).
NULL_TOKENS = frozenset({"null", "n/a", "na", "none", "nan", "#n/a", "-", "--", "nil", "(null)", "(blank)"})


@functools.cache
def _invisible_pattern() -> str:
    """A regex class of every control (Cc) and format (Cf: zero-width, bidi marks, BOM, soft
    hyphen) character, plus line/paragraph separators: invisible in an identifier, so removed.
    Built once from the Unicode database rather than kept as a hand-written list."""
    ranges: list[str] = []
    start = prev = None
    for cp in range(0x110000):
        hit = unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp")
        if hit and start is None:
            start = cp
        if not hit and start is not None:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev != start else ""))
            start = None
        prev = cp
    return "[" + "".join(ranges) + "]"


def _not_plain(t: pd.Series) -> pd.Series:
    """True where a value holds anything but printable ASCII (one Arrow kernel: ~10 ms a million)."""
    plain = pc.ascii_is_printable(pyarrow.array(t, type=pyarrow.large_string()))
    return pd.Series(pc.invert(plain).fill_null(False).to_numpy(zero_copy_only=False), index=t.index)


def _visible(t: pd.Series) -> pd.Series:
    """``t`` in Unicode NFKC with control and format characters removed. Only values holding
    something other than printable ASCII are touched (the rest are already so)."""
    odd = _not_plain(t)
    if not odd.any():
        return t
    fixed = t[odd].str.normalize("NFKC").str.replace(_invisible_pattern(), "", regex=True)
    return t.mask(odd, fixed)


def normalise_identity(field_name: str, s: pd.Series) -> pd.Series:
    """Normalise an identifier for matching, stitching and erasure: Unicode NFKC (full-width
    ``ＡＮＮ`` is ``ANN``), control and zero-width characters removed, trimmed; emails lower-cased,
    phones to their last 10 digits; empty text and the null-like ``NULL_TOKENS`` become NA.

    Shape: text Series in, ``string`` Series out (same index). Letters of other scripts that look
    Latin (Cyrillic ``а``) are not folded: ``identity_flags`` reports them instead.
    """
    t = _visible(s.astype("string")).str.strip()
    t = t.mask(t.str.lower().isin(NULL_TOKENS).fillna(False).astype(bool))
    if field_name == "email":
        t = t.str.lower()
    elif field_name == "phone":
        digits = t.str.replace(r"\D", "", regex=True)
        t = digits.str.slice(-10)
    t = t.mask(t == "")
    return t


_LATIN = re.compile(r"[A-Za-z]")
_LOOKALIKE_SCRIPTS = re.compile(r"[\u0370-\u03ff\u0400-\u052f]")  # Greek, Cyrillic (+ supplement)


def identity_flags(frame: pd.DataFrame) -> pd.DataFrame:
    """Identifier values worth a note: ``null_token`` (a ``NULL``-like text read as missing) and
    ``mixed_script`` (Latin mixed with Greek or Cyrillic letters, which can look identical to
    Latin ones: a second, look-alike customer rather than a typo).

    Shape in: a canonical-named text frame. Out: columns ``row`` (the frame's index), ``field``,
    ``flag``, ``value`` (as written); empty when nothing is flagged.
    """
    parts = []
    for name in IDENTITY_FIELDS:
        if name not in frame.columns:
            continue
        raw = frame[name].astype("string")
        text = _visible(raw).str.strip()
        nulls = text.str.lower().isin(NULL_TOKENS).fillna(False).astype(bool)
        mixed = pd.Series(False, index=raw.index)
        odd = _not_plain(raw)  # only a value with non-ASCII letters can mix scripts
        if odd.any():
            some = text[odd]
            hit = some.str.contains(_LOOKALIKE_SCRIPTS, regex=True) & some.str.contains(_LATIN, regex=True)
            mixed[hit[hit.fillna(False)].index] = True
        for flag, hit in (("null_token", nulls), ("mixed_script", mixed)):
            if hit.any():
                parts.append(
                    pd.DataFrame(
                        {
                            "row": raw.index[hit.to_numpy()],
                            "field": name,
                            "flag": flag,
                            "value": raw[hit].astype(object).to_numpy(),
                        }
                    )
                )
    if not parts:
        return pd.DataFrame(columns=["row", "field", "flag", "value"])
    return pd.concat(parts, ignore_index=True)


def identity_examples(flags: pd.DataFrame, examples: int = 3) -> pd.DataFrame:
    """The part of ``identity_flags`` a note needs: the first ``examples`` rows of each field and
    flag, plus the first row of each distinct null-like token (so a note can list them all)."""
    if flags.empty:
        return flags
    first = flags.groupby(["field", "flag"], sort=False).head(examples)
    token = flags["value"].astype(str).str.strip().str.lower()
    nulls = flags[flags["flag"] == "null_token"].loc[~token[flags["flag"] == "null_token"].duplicated()]
    return pd.concat([first, nulls]).drop_duplicates().sort_values("row", kind="stable")


def identity_notes(
    flags: pd.DataFrame, counts: dict[tuple[str, str], int], columns: dict[str, str], examples: int = 3
) -> list[str]:
    """Load notes, one per field and flag, from ``identity_examples`` rows whose ``row`` is a file
    line number; ``counts`` holds how many values each (field, flag) had in the whole file and
    ``columns`` maps field -> the file's column name."""
    notes = []
    for (name, flag), n in sorted(counts.items()):
        group = flags[(flags["field"] == name) & (flags["flag"] == flag)]
        column = columns.get(name, name)
        shown = ", ".join(f"line {int(r.row):,}: {r.value!r}" for r in group.head(examples).itertuples())
        more = f" and {n - min(n, examples):,} more" if n > examples else ""
        if flag == "null_token":
            tokens = ", ".join(repr(v) for v in sorted(set(group["value"].astype(str).str.strip())))
            notes.append(f"{column}: {n:,} value(s) like {tokens} read as missing, not as identifiers ({shown}{more})")
        else:
            notes.append(
                f"{column}: {n:,} value(s) mix Latin with Greek or Cyrillic letters that can look identical "
                f"({shown}{more}); they are kept as separate identifiers, not merged with the Latin look-alike. "
                "Check them at the source."
            )
    return notes


_FORMAT_SECTIONS = ("dates", "decimal", "currency")


def check_formats(kind: SourceKind, formats: dict, file_name: str = "the mapping") -> None:
    """Raise ``ValueError`` (a ``MappingError`` when raised through ingest) unless a mapping's
    ``"formats"`` is ``{"dates": {FIELD: FORMAT}, "decimal": {FIELD: "." or ","}, "currency":
    {FIELD: TEXT}}`` with fields of ``kind`` of the right type; the message names the entry and
    the allowed values."""
    from cxdash.ingest.mapping import MappingError

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
                allowed = ", ".join(_DATE_FORMATS)
                if dtype != "datetime":
                    raise MappingError(f'{file_name}: "formats"."dates" names {name!r}, which is not a date field.')
                if not isinstance(value, str) or (value not in _DATE_FORMATS and not _valid_strftime(value)):
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
    """How many values of ``sample`` (no NA) each of ``_DATE_FORMATS`` reads (pruned: see below)."""

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
    return scores


def _date_winners(sample: pd.Series) -> list[str]:
    """The formats that read the most values of ``sample``, in ``_DATE_FORMATS`` order ([] if none)."""
    sample = sample.dropna()
    if sample.empty:
        return ["ISO8601"]
    scores = _date_scores(sample)
    best = max(scores.values())
    return [f for f in _DATE_FORMATS if scores[f] == best] if best else []


def _detect_date_format(sample: pd.Series) -> tuple[str | None, str | None]:
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


def _describe_date_format(fmt: str) -> str:
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
    note = f"{name}: dates read as {_describe_date_format(fmt)}"
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
                f"{name}: dates read as {_describe_date_format(fmt)}, decided on the whole column "
                f"(the first rows read both ways; {best - min(scores.values()):,} distinct values read only this way)"
            )
        else:
            formats.notes.append(_date_note(name, formats.dates[name], values, alternatives))
    return formats


def _number_text(value: str) -> str | None:
    """The digits-and-marks part of a written amount (no sign, currency or parentheses)."""
    m = _MONEY.match(value.strip())
    return m["num"].strip() if m else None


def _decimal_evidence(sample: pd.Series) -> tuple[int, int, int]:
    """(values only a decimal point reads, only a decimal comma reads, both read differently)."""
    point_only = comma_only = both = 0
    for v in pd.unique(sample.dropna().astype("string")):
        num = _number_text(str(v))
        if num is None:
            continue
        p, c = bool(_POINT_NUMBER.fullmatch(num)), bool(_COMMA_NUMBER.fullmatch(num))
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
