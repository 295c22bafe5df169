"""The customer record's columns as features: typed attributes, identifiers recognised, labels parsed.

Columns that look like identifiers (row numbers, ids, names, emails, phones, free text with a
different value on almost every row) are recognised by name and by content and never become
features. ``parse_label`` reads a customer table's own churn column (yes/no, 1/0, churned/active).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "CRM_CATEGORIES",
    "MISSING_CATEGORY",
    "LabelError",
    "attribute_columns",
    "crm_features",
    "identifier_like",
    "parse_label",
]

# An empty category is a category of its own, spelled the same everywhere: None and NaN would
# reach the model's encoders as two different things (one a category, one imputed).
MISSING_CATEGORY = "(none)"

CRM_CATEGORIES = ("segment", "region", "plan", "acquisition_channel", "campaign")
# Names that always mean an identifier, and names that do only when nearly every row differs
# ("PhoneService" yes/no and "PlanName" are features; "Phone" numbers and "Name" are not).
_ID_NAME = re.compile(
    r"(^|_)(id|ids|uuid|guid|key|surname|firstname|lastname|fullname|email|e_mail|ssn|iban|rownum|rownumber|"
    r"row_number|row_no|row_id|index|idx)($|_)"
)
_WEAK_ID_NAME = re.compile(r"(^|_)(name|phone|mobile|tel|telephone|address|mail|number|no|nr|ip|row)($|_)")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")


class LabelError(ValueError):
    """The label column cannot be used (missing, one class only, not yes/no)."""


def _norm_name(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def identifier_like(name: str, values: pd.Series) -> str | None:
    """Why ``values`` (column ``name``) is an identifier and not a feature, or None.

    By name (``customerID``, ``RowNumber``, ``Surname``, ``email``...) or by content: emails or
    phone numbers, integers that count 1..n or are unique per row, or text with a different value
    on (almost) every row.
    """
    norm = _norm_name(name)
    if _ID_NAME.search(norm):
        return "identifier by its name"
    s = values.dropna()
    if s.empty:
        return None
    if _WEAK_ID_NAME.search(norm) and s.astype(str).nunique() > 0.5 * len(s) and len(s) >= 20:
        return "identifier by its name and a different value on almost every row"
    if not pd.api.types.is_numeric_dtype(s):
        text = s.astype(str).str.strip()
        sample = text.head(500)
        if sample.str.match(_EMAIL).mean() > 0.8:
            return "holds email addresses"
        if sample.str.match(_PHONE).mean() > 0.8 and pd.to_numeric(sample, errors="coerce").isna().mean() > 0.5:
            return "holds phone numbers"
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.notna().mean() < 0.9 and len(s) >= 50 and text.nunique() > 0.5 * len(s):
            return "a different value on almost every row (free text or an id)"
        s = numeric.dropna()
    if len(s) >= 50 and pd.api.types.is_numeric_dtype(s):
        ints = s[np.isclose(s, np.round(s))]
        if len(ints) == len(s) and s.nunique() == len(s):
            d = np.diff(np.sort(s.to_numpy(dtype=float)))
            if (d == 1).mean() > 0.95:
                return "counts 1, 2, 3... (a row number)"
            if s.min() > 1e5:
                return "an integer unique to every row (an id)"
    return None


def parse_label(values: pd.Series) -> pd.Series:
    """Yes/no, true/false, 1/0, churned/active as float 1/0; empty or unknown as NaN."""
    text = values.astype("string").str.strip().str.lower()
    yes = {"1", "1.0", "true", "t", "yes", "y", "churned", "churn", "left", "cancelled", "canceled", "lost", "exited"}
    no = {"0", "0.0", "false", "f", "no", "n", "active", "retained", "stayed", "current"}
    out = pd.Series(np.nan, index=values.index, dtype=float)
    out[text.isin(yes).fillna(False).to_numpy(dtype=bool)] = 1.0
    out[text.isin(no).fillna(False).to_numpy(dtype=bool)] = 0.0
    return out


def attribute_columns(attrs: pd.Series) -> pd.DataFrame:
    """Parse the ``attrs`` JSON text (one object per row) into columns (strings, NaN if absent).

    Each distinct text is parsed once (a million customers often carry a few hundred distinct
    attribute sets), then spread back over the rows.
    """
    codes, texts = pd.factorize(attrs, use_na_sentinel=True)
    parsed = [json.loads(a) if isinstance(a, str) and a else {} for a in texts]
    if not any(parsed):
        return pd.DataFrame(index=attrs.index)
    table = pd.DataFrame.from_records([*parsed, {}])  # the extra last row: no attrs at all
    codes = np.where(codes < 0, len(parsed), codes)
    frame = table.iloc[codes]
    frame.index = attrs.index
    return frame


def _typed_attributes(attrs: pd.DataFrame, dropped: dict[str, str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Attribute columns as numbers or low-cardinality categories; identifiers and free text dropped."""
    out, numeric, categorical = {}, [], []
    for name in attrs.columns:
        col = attrs[name]
        raw = col.astype("string").str.strip().replace("", pd.NA)
        if raw.notna().sum() == 0:
            dropped[f"attr:{name}"] = "always empty"
            continue
        why = identifier_like(name, raw)
        if why:
            dropped[f"attr:{name}"] = why
            continue
        key = "attr_" + _norm_name(name)
        num = pd.to_numeric(raw, errors="coerce")
        if num.notna().sum() >= 0.95 * raw.notna().sum():
            out[key] = num.astype(float)
            numeric.append(key)
        elif raw.nunique() <= max(50, 0.02 * len(raw)):
            out[key] = raw.astype(object).where(raw.notna(), MISSING_CATEGORY)
            categorical.append(key)
        else:
            dropped[f"attr:{name}"] = "too many distinct values to be a category"
    return pd.DataFrame(out, index=attrs.index), numeric, categorical


def _attributes_as(
    attrs: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Attribute columns typed as a model saw them (``numeric`` and ``categorical`` feature names),
    not as these rows alone would suggest: a few customers cannot tell a number from a category."""
    out, n2, c2 = {}, [], []
    for name in attrs.columns:
        key = "attr_" + _norm_name(name)
        raw = attrs[name].astype("string").str.strip().replace("", pd.NA)
        if key in numeric:
            out[key] = pd.to_numeric(raw, errors="coerce").astype(float)
            n2.append(key)
        elif key in categorical:
            out[key] = raw.astype(object).where(raw.notna(), MISSING_CATEGORY)
            c2.append(key)
    # an attribute none of these rows carries is missing for them, as it is in a full snapshot
    for key in numeric:
        if key.startswith("attr_") and key not in out:
            out[key] = pd.Series(np.nan, index=attrs.index, dtype=float)
            n2.append(key)
    for key in categorical:
        if key.startswith("attr_") and key not in out:
            out[key] = pd.Series(MISSING_CATEGORY, index=attrs.index, dtype=object)
            c2.append(key)
    return pd.DataFrame(out, index=attrs.index), n2, c2


def crm_features(
    crm: pd.DataFrame,
    cutoff: datetime | None,
    dropped: dict[str, str],
    exclude_attrs: set[str],
    schema: tuple[list[str], list[str]] | None = None,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The CRM record's features: tenure (given a cutoff), the CRM categories, marketing consent
    and the typed attributes. ``schema``: a model's (numeric, categorical) features, to type the
    attributes as it was trained on them (a rescore of a few customers)."""
    feats = pd.DataFrame(index=crm.index)
    numeric, categorical = [], []
    signup = pd.to_datetime(crm["signup_date"])
    if cutoff is not None and signup.notna().any():
        feats["tenure_days"] = (pd.Timestamp(cutoff) - signup).dt.total_seconds() / 86400
        numeric.append("tenure_days")
    for name in CRM_CATEGORIES:
        col = crm[name].astype("string")
        if col.notna().any() if schema is None else name in schema[1]:
            feats[name] = col.astype(object).where(col.notna(), MISSING_CATEGORY)
            categorical.append(name)
    if crm["consent_marketing"].notna().any() if schema is None else "consent_marketing" in schema[0]:
        feats["consent_marketing"] = crm["consent_marketing"].astype("Float64").astype(float)
        numeric.append("consent_marketing")
    attrs = attribute_columns(crm["attrs"])
    attrs = attrs[[c for c in attrs.columns if c not in exclude_attrs]]
    typed, n2, c2 = _typed_attributes(attrs, dropped) if schema is None else _attributes_as(attrs, *schema)
    feats = feats.join(typed)
    return feats, numeric + n2, categorical + c2
