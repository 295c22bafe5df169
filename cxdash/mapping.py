"""Column mappings: which column of a file holds which canonical field of a kind.

A mapping is the JSON object ``{"kind": KIND, "columns": {FIELD: COLUMN_IN_FILE}}``, optionally
with ``"formats"`` (detected date formats / decimal separators) and ``"links"`` (columns holding
another source's keys, ``{COLUMN_IN_FILE: {"source": SOURCE, "field": FIELD}}``, see
``cxdash.links``), exactly what the upload page saves per source and what
``python -m cxdash ingest --mapping`` reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxdash.kinds import IDENTITY_FIELDS, KINDS, SourceKind, get_kind

__all__ = ["Mapping", "MappingError", "detect_kind", "load_mapping", "suggest_mapping"]


class MappingError(ValueError):
    """The mapping does not fit the file or the kind; the message says which field and how to fix it."""


@dataclass
class Mapping:
    kind: str
    columns: dict[str, str]
    formats: dict = field(default_factory=dict)
    # file column -> {"source": SOURCE, "field": FIELD}: the column holds keys of another source
    links: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "columns": dict(self.columns)}
        if self.formats:
            d["formats"] = self.formats
        if self.links:
            d["links"] = {c: dict(t) for c, t in self.links.items()}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Mapping:
        if not isinstance(d, dict) or "kind" not in d or "columns" not in d:
            raise MappingError('A mapping is a JSON object like {"kind": "tickets", "columns": {"ticket_id": "Ticket #"}}.')
        get_kind(d["kind"])
        if not isinstance(d["columns"], dict):
            raise MappingError('"columns" must be an object of FIELD: COLUMN_IN_FILE.')
        return cls(d["kind"], {str(k): str(v) for k, v in d["columns"].items() if v}, dict(d.get("formats") or {}),
                   _links_from(d.get("links")))

    def check(self, header: list[str], *, file_name: str = "the file") -> None:
        """Raise ``MappingError`` unless every mapped column exists and the kind's needs are met."""
        kind = get_kind(self.kind)
        unknown = [f for f in self.columns if f not in kind.field_names]
        if unknown:
            raise MappingError(
                f"mapping names field(s) {unknown} that kind {kind.name!r} does not have; "
                f"its fields are: {', '.join(kind.field_names)}"
            )
        missing_cols = {f: c for f, c in self.columns.items() if c not in header}
        if missing_cols:
            f, c = next(iter(missing_cols.items()))
            raise MappingError(
                f"{file_name}: column {c!r} (mapped to {f}) is not in the file. Columns in the file: {header}"
            )
        missing = [f for f in kind.required_fields if f not in self.columns]
        if missing:
            raise MappingError(
                f"{file_name}: no column is mapped to the required field(s) {missing} of kind {kind.name!r}. "
                "Map them in the upload page or in the mapping JSON."
            )
        for column in self.links:
            if column not in header:
                raise MappingError(f"{file_name}: link column {column!r} is not in the file. Columns in the file: {header}")
        if kind.identity_fields and not any(f in self.columns for f in kind.identity_fields) and not self.links:
            raise MappingError(
                f"{file_name}: no column identifies the customer. Map one of {list(kind.identity_fields)} "
                "(for example a CustomerID, account number or email column), or declare a link column "
                "holding another source's keys (--link COLUMN=SOURCE.FIELD)."
            )


def _links_from(raw) -> dict[str, dict[str, str]]:
    """The mapping's ``links`` checked for shape: ``{COLUMN: {"source": S, "field": F}}``."""
    if not raw:
        return {}
    example = '"links": {"subscription_id": {"source": "subs", "field": "subscription_id"}}'
    if not isinstance(raw, dict):
        raise MappingError(f'"links" must be an object of COLUMN: {{"source", "field"}}, like {example}.')
    out = {}
    for column, target in raw.items():
        if not isinstance(target, dict) or not target.get("source") or not target.get("field"):
            raise MappingError(f'link {column!r} needs a "source" and a "field", like {example}.')
        out[str(column)] = {"source": str(target["source"]), "field": str(target["field"])}
    return out


def load_mapping(path: str | Path) -> Mapping:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MappingError(f"mapping file {path}: cannot be read as JSON ({exc})") from exc
    return Mapping.from_dict(data)


# ---------------------------------------------------------------- suggestions
def _norm(name: str) -> str:
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


# Name patterns per field, most specific first. Matched against the normalised column name.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": (r"customer_?id", r"cust(omer)?_?(no|num|number|key|ref)", r"client_?id", r"user_?id",
                    r"contact_?id", r"member_?id", r"case_concept_name_customer", r"account$"),
    "account_id": (r"(billing_)?account_?(no|num|number|id|ref)?$", r"acct_?(no|id)?"),
    "email": (r"e_?mail", r"email_?address", r"requester_email", r"contact_email", r"user_email"),
    "phone": (r"phone(_?(no|num|number))?$", r"^mobile", r"^tel(ephone)?", r"msisdn"),
    "visitor_id": (r"cookie", r"visitor", r"device_?id", r"anonymous_?id", r"client_?cookie"),
    "name": (r"(full_|customer_)?name$",),
    "signup_date": (r"sign_?up", r"created", r"join(ed)?_?date", r"registration", r"start_?date", r"since"),
    "segment": (r"segment", r"tier", r"customer_type"),
    "region": (r"region", r"country", r"state", r"location", r"office"),
    "plan": (r"plan", r"contract", r"package", r"product$"),
    "acquisition_channel": (r"acquisition", r"lead_?source", r"(acquisition_)?channel", r"source$"),
    "campaign": (r"campaign", r"utm_campaign"),
    "consent_marketing": (r"opt_?in", r"consent", r"marketing_?(ok|allowed|permission)"),
    "churn_label": (r"churn(ed)?$", r"is_churn", r"exited", r"attrition"),
    "timestamp": (r"time_?stamp", r"event_?time", r"time_timestamp", r"(txn|transaction|invoice|order|payment)_?(date|time)",
                  r"occurred", r"date_?time", r"sent_?at", r"date$", r"time$"),
    "activity": (r"activity", r"event_?(name|type)?$", r"action", r"concept_name$", r"touch", r"step", r"page"),
    "case_id": (r"case_?id", r"session", r"case_concept_name", r"visit_?id"),
    "department": (r"department", r"team", r"dept", r"org_?(unit|resource)"),
    "channel": (r"channel", r"medium", r"device"),
    "value": (r"value", r"revenue", r"costs?$"),
    "ticket_id": (r"ticket_?(id|no|number|_)?$", r"case_?(id|no|number)", r"incident"),
    "opened_at": (r"(created|opened|submitted|reported)(_at|_date|_on)?$", r"open_?date", r"first_response"),
    "closed_at": (r"(closed|resolved|solved|completed)(_at|_date|_on)?$", r"close_?date", r"resolution_?date"),
    "topic": (r"topic", r"subject", r"category", r"intent", r"issue_?type", r"ticket_?type", r"reason"),
    "transfers": (r"transfer", r"handoffs?", r"escalation"),
    "status": (r"status", r"state$", r"deal_?stage"),
    "satisfaction": (r"csat", r"satisfaction", r"rating", r"nps", r"score"),
    "transaction_id": (r"(txn|transaction|payment|order)_?(id|ref|no|number)", r"invoice_?(no|id|number)"),
    "amount": (r"amount", r"total", r"(close_)?value$", r"revenue", r"price_?paid", r"dollar"),
    "quantity": (r"quantity", r"qty", r"units", r"number_of"),
    "unit_price": (r"unit_?price", r"price$", r"unit_?cost"),
    "product": (r"product", r"sku", r"item", r"description", r"stock_?code"),
    "currency": (r"currency", r"ccy"),
    "subscription_id": (r"sub(scription)?_?(id|ref|no)",),
    "start": (r"start", r"begin", r"activated", r"from$"),
    "end": (r"end", r"cancel", r"terminat", r"churn_?date", r"until$", r"to$"),
    "mrr": (r"mrr", r"monthly", r"recurring", r"arr"),
    "opportunity_id": (r"opp(ortunity)?_?(id|no|ref)?$", r"deal_?id"),
    "created_at": (r"created", r"engage_?date", r"open(ed)?_?date", r"start"),
    "stage": (r"stage", r"deal_?stage", r"status"),
    "owner": (r"owner", r"agent", r"rep$", r"sales_?(agent|rep)"),
}


def _looks_like_dates(values: pd.Series) -> bool:
    from cxdash.validation import _detect_date_format, parse_datetime

    v = values.dropna().head(200)
    if v.empty:
        return False
    fmt, _ = _detect_date_format(v)
    return fmt is not None and parse_datetime(v, fmt).notna().mean() >= 0.5


def suggest_mapping(kind: str | SourceKind, header: list[str], sample: pd.DataFrame | None = None) -> Mapping:
    """Guess which column holds which field from the names (and, for dates, the values)."""
    kind = get_kind(kind) if isinstance(kind, str) else kind
    normed = {c: _norm(c) for c in header}
    columns: dict[str, str] = {}
    taken: set[str] = set()
    # Required and identity fields first so they get first pick of the columns.
    order = sorted(
        kind.fields,
        key=lambda f: (not f.required, f.name not in IDENTITY_FIELDS, kind.field_names.index(f.name)),
    )
    for f in order:
        pats = _SYNONYMS.get(f.name, ()) + (rf"^{re.escape(f.name)}$",)
        found = None
        for pat in pats:
            for col, n in normed.items():
                if col in taken:
                    continue
                if re.search(pat, n):
                    if (
                        f.dtype == "datetime"
                        and sample is not None
                        and col in sample.columns
                        and not _looks_like_dates(sample[col])
                    ):
                        continue
                    found = col
                    break
            if found:
                break
        if found:
            columns[f.name] = found
            taken.add(found)
    if sample is not None:
        for f in kind.fields:
            if f.dtype == "datetime" and f.required and f.name not in columns:
                for col in header:
                    if col not in taken and col in sample.columns and _looks_like_dates(sample[col]):
                        columns[f.name] = col
                        taken.add(col)
                        break
    return Mapping(kind.name, columns)


def detect_kind(header: list[str], sample: pd.DataFrame | None = None) -> str:
    """The kind whose required fields and identifiers the columns fit best."""
    best, best_score = "events", -1.0
    for name, kind in KINDS.items():
        m = suggest_mapping(kind, header, sample)
        required = kind.required_fields
        if any(r not in m.columns for r in required):
            continue
        if kind.identity_fields and not any(f in m.columns for f in kind.identity_fields):
            continue
        if name == "opportunities" and "opportunity_id" not in m.columns and "stage" not in m.columns:
            continue  # nothing says "pipeline"
        score = len(m.columns) / len(kind.fields) + 0.5 * len(required)
        if name == "customers" and sample is not None and "customer_id" in m.columns:
            keys = sample[m.columns["customer_id"]].dropna()
            if len(keys) and keys.is_unique:
                score += 1.0  # one row per customer: an accounts table
        if kind.natural_key and all(k in m.columns for k in kind.natural_key) and kind.name != "customers":
            score += 1.0  # its own record id (ticket, opportunity, subscription) is a strong sign
        if score > best_score:
            best, best_score = name, score
    return best
