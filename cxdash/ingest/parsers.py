"""What a date, a number, an amount or a yes/no is: the one definition of each value parser.

Shared by format detection (cxdash.ingest.formats), the contract checks and the conversion
(cxdash.ingest.validation) and the kind guessing (cxdash.ingest.mapping), so none can disagree.
Shape: a text Series in, a typed Series out (same index); a value that does not parse is NA.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

__all__ = [
    "COMMA_NUMBER",
    "DATE_FORMATS",
    "MONEY",
    "POINT_NUMBER",
    "parse_bool",
    "parse_datetime",
    "parse_money",
    "parse_number",
]

DATE_FORMATS = (
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
MONEY = re.compile(
    r"^\(?\s*(?P<s1>[-+\u2212])?\s*(?P<pre>" + _SIGN_PATTERN + r"|[A-Za-z]{3}(?=[\s\d(+\-.,]))?\s*"
    r"(?P<s2>[-+\u2212])?\s*(?P<num>\d[\d.,'\u00a0\u202f ]*|[.,]\d+)\s*"
    r"(?P<post>" + _SIGN_PATTERN + r"|[A-Za-z]{3})?\s*(?P<s3>-)?\s*\)?$"
)
_GROUP = r"[,'\u00a0\u202f ]"  # thousands separators of a decimal-point number
# A number as one decimal mark writes it: grouped thousands (1,234 / 1.234 / 1 234) or none.
POINT_NUMBER = re.compile(r"\d{1,3}(?:(?P<g>[,'\u00a0\u202f ])\d{3})(?:(?P=g)\d{3})*(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+")
COMMA_NUMBER = re.compile(r"\d{1,3}(?:(?P<g>[.'\u00a0\u202f ])\d{3})(?:(?P=g)\d{3})*(?:,\d*)?|\d+(?:,\d*)?|,\d+")


def _currency_of(token: str | None) -> str | None:
    if not token:
        return None
    if token in _CURRENCY_SIGNS:
        return _CURRENCY_SIGNS[token]
    code = token.upper()
    return code if code in _CURRENCY_CODES else ""  # "" = letters that are no currency: not a number


def _money_one(text: str, decimal: str) -> tuple[float, str | None]:
    """One written amount -> (value or NaN, ISO currency or None)."""
    m = MONEY.match(text.strip())
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
    if not (COMMA_NUMBER if decimal == "," else POINT_NUMBER).fullmatch(num):
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
