"""Exports that are safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel and LibreOffice ("CSV injection"). Every CSV the app hands out goes through
``safe_csv``, which prefixes such text cells with a single quote. Numbers are left alone, so a
negative amount stays a number.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["FORMULA_PREFIXES", "neutralise_formulas", "safe_csv"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot be read as formulas."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        if risky.any():
            out[col] = s.astype(object).where(~risky, "'" + text.astype(object))
    renamed = {c: "'" + str(c) for c in out.columns if str(c).startswith(FORMULA_PREFIXES)}
    return out.rename(columns=renamed)


def safe_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV bytes (with BOM so Excel reads accents) of ``frame``, formulas neutralised.

    Rows end in CRLF, which also makes the writer quote any cell holding a bare carriage return:
    with "\n" endings such a cell went out unquoted, and a spreadsheet split it into a new row
    whose first cell could be a live formula.
    """
    return neutralise_formulas(frame).to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")
