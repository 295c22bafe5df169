"""Identifier values: how an id, an email or a phone is normalised for matching, which values
deserve a note (null-like words, look-alike scripts), and which rows belong to erased customers.

Stitching, the load and erasure all normalise through ``normalise_identity``, so a customer is
matched, stitched and erased under the same key.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import pandas as pd
import pyarrow
import pyarrow.compute as pc

from cxdash.store.kinds import IDENTITY_FIELDS
from cxdash.store.suppression import identifier_hash, secret_salt

__all__ = [
    "NULL_TOKENS",
    "identity_examples",
    "identity_flags",
    "identity_notes",
    "normalise_identity",
    "suppressed_rows",
]

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
    ``\uff21\uff2e\uff2e`` is ``ANN``), control and zero-width characters removed, trimmed; emails lower-cased,
    phones to their last 10 digits; empty text and the null-like ``NULL_TOKENS`` become NA.

    Shape: text Series in, ``string`` Series out (same index). Letters of other scripts that look
    Latin (Cyrillic ``\u0430``) are not folded: ``identity_flags`` reports them instead.
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


def suppressed_rows(typed: pd.DataFrame, hashes: set[str], salt: bytes | None = None) -> pd.Series:
    """Which rows carry an erased customer's identifier.

    In: rows with identifier columns (any of ``IDENTITY_FIELDS``, raw or normalised) and the
    suppressed hashes (``cxdash.store.suppression.suppressed_hashes``). Out: a boolean Series on
    ``typed``'s index. Each distinct identifier is hashed once.
    """
    hit = pd.Series(False, index=typed.index)
    if not hashes:
        return hit
    salt = salt if salt is not None else secret_salt()
    for f in IDENTITY_FIELDS:
        if f not in typed.columns:
            continue
        col = normalise_identity(f, typed[f])
        uniques = col.dropna().unique()
        bad = {v for v in uniques if identifier_hash(f"{f}:{v}", salt) in hashes}
        if bad:
            hit |= col.isin(bad).fillna(False).astype(bool)
    return hit
