"""Column mappings: which column of a file holds which canonical field of a kind.

A mapping is the JSON object ``{"kind": KIND, "columns": {FIELD: COLUMN_IN_FILE}}``, optionally
with ``"formats"`` (detected date formats / decimal separators), exactly what the upload
page saves per source and what ``python -m cxdash ingest --mapping`` reads.
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

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "columns": dict(self.columns)}
        if self.formats:
            d["formats"] = self.formats
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
        return cls(d["kind"], {str(k): str(v) for k, v in d["columns"].items() if v}, dict(d.get("formats") or {}))

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
        if kind.identity_fields and not any(f in self.columns for f in kind.identity_fields):
            raise MappingError(
                f"{file_name}: no column identifies the customer. Map one of {list(kind.identity_fields)} "
                "(for example a CustomerID, account number or email column)."
            )


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


# Name patterns per field, most specific first. Matched against the normalised column name
# (``_norm``: "Complaint ID" and "ComplaintID" both become ``complaint_id``). A name match is
# only taken when the column's values fit the field (``_values_fit``).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": (r"customer_?id", r"cust(omer)?_?(no|num|number|key|ref)", r"client_?id", r"user_?id",
                    r"contact_?id", r"member_?id", r"case_concept_name_customer", r"account$",
                    r"^caller(_id)?$", r"^requester(_id)?$", r"^customer$", r"^account_?(id|no|number)$"),
    "account_id": (r"(billing_)?account_?(no|num|number|id|ref)?$", r"acct_?(no|id)?"),
    "email": (r"e_?mail", r"email_?address", r"requester_email", r"contact_email", r"user_email"),
    "phone": (r"phone(_?(no|num|number))?$", r"^mobile", r"^tel(ephone)?", r"msisdn"),
    "visitor_id": (r"cookie", r"visitor", r"device_?id", r"anonymous_?id", r"anon_?id", r"client_?cookie"),
    "name": (r"(full_|customer_|account_|company_)?name$", r"^company$"),
    "signup_date": (r"sign_?up", r"^created", r"join(ed)?_?date", r"registration", r"start_?date", r"since"),
    "segment": (r"segment", r"sector", r"industry", r"vertical", r"customer_type", r"^(customer_)?tier$"),
    "region": (r"region", r"country", r"geography", r"state", r"location", r"office"),
    "plan": (r"plan", r"contract", r"package", r"product$"),
    "acquisition_channel": (r"acquisition", r"lead_?source", r"(acquisition_)?channel", r"source$"),
    "campaign": (r"campaign", r"utm_campaign"),
    "consent_marketing": (r"opt_?in", r"consent", r"marketing_?(ok|allowed|permission)"),
    "churn_label": (r"churn(ed)?$", r"^churn_?(flag|label|status|ind(icator)?)$", r"is_churn", r"exited", r"attrition"),
    "timestamp": (r"time_?stamp", r"event_?(time|date|at|ts)$", r"time_timestamp",
                  r"(txn|transaction|invoice|order|payment|usage|activity|churn)_?(date|time|at)",
                  r"occurred", r"date_?time", r"sent_?at", r"^created", r"^ts$", r"date$", r"time$", r"_at$"),
    "activity": (r"activity", r"event_?(name|type)?$", r"feature(_?name)?$", r"action", r"concept_name$", r"touch",
                 r"step", r"page"),
    "case_id": (r"case_?id", r"session", r"case_concept_name", r"visit_?id"),
    "department": (r"department", r"team", r"dept", r"org_?(unit|resource)", r"assignment_?group", r"queue"),
    "channel": (r"channel", r"medium", r"device", r"submitted_via", r"^via$", r"origin$"),
    "value": (r"value", r"revenue", r"costs?$"),
    "ticket_id": (r"ticket_?(id|no|number|_)?$", r"complaint_?(id|no|number)?$", r"case_?(id|no|number)",
                  r"incident(_?(id|no|number))?$", r"^number$"),
    "opened_at": (r"(created|opened|submitted|reported|received)(_at|_date|_on|_time)?$", r"^date_?(received|opened|created)$",
                  r"open_?date", r"first_response"),
    "closed_at": (r"(closed|resolved|solved|completed)(_at|_date|_on|_time)?$", r"close_?date", r"resolution_?(date|at)",
                  r"time_to_resolution"),
    "topic": (r"topic", r"subject", r"category", r"intent", r"issue_?type", r"ticket_?type", r"reason", r"^issue$"),
    "transfers": (r"transfers?(_count)?$", r"handoffs?", r"escalations?(_count)?$", r"reassignment_?count"),
    "status": (r"status", r"state$", r"deal_?stage"),
    "satisfaction": (r"csat", r"satisfaction", r"rating", r"nps", r"score"),
    "transaction_id": (r"(txn|transaction|payment|order|charge)_?(id|ref|no|number)", r"invoice_?(no|id|number)?$"),
    "amount": (r"amount", r"total", r"(close_)?value$", r"revenue", r"price_?paid", r"dollar"),
    "quantity": (r"quantity", r"qty", r"units", r"number_of"),
    "unit_price": (r"unit_?price", r"price$", r"unit_?cost"),
    "product": (r"product", r"sku", r"item", r"description", r"stock_?code"),
    "currency": (r"currency", r"ccy"),
    "subscription_id": (r"sub(scription)?_?(id|ref|no)",),
    "start": (r"start", r"begin", r"activated", r"from$"),
    "end": (r"end", r"cancel", r"terminat", r"churn_?date", r"until$", r"to$"),
    # the churn kind: one row per churn or cancellation (and a customer table's dated churn label)
    # never a bare "date": a customer table's other dates must not date its churn label
    "churned_at": (r"churn(ed)?_?(date|at|on|time)", r"cancel+(ed|ation)_?(date|at|on)", r"termination_?date"),
    "reason": (r"reason", r"cause", r"why", r"feedback"),
    "churn_id": (r"(churn|cancel+ation)_?(event_)?id",),
    "mrr": (r"mrr", r"monthly", r"recurring", r"arr"),
    "opportunity_id": (r"opp(ortunity)?_?(id|no|ref)?$", r"deal_?id"),
    "created_at": (r"created", r"engage_?date", r"open(ed)?_?date", r"start"),
    "stage": (r"stage", r"deal_?stage", r"status"),
    "owner": (r"owner", r"agent", r"rep$", r"sales_?(agent|rep)"),
}

# Each kind's own record id: a bare "id" column is that, unless nothing else identifies the customer.
_OWN_ID = {"customers": "customer_id", "tickets": "ticket_id", "transactions": "transaction_id",
           "subscriptions": "subscription_id", "opportunities": "opportunity_id"}
# A column whose name says it measures a span of time holds durations, not dates.
_DURATION_NAME = re.compile(
    r"(hours?|hrs?|minutes?|mins?|seconds?|secs?|days|duration|elapsed|sla|^time_to_|_time_to_|"
    r"(response|resolution|handle|handling|wait)_time)"
)
_DURATION_VALUE = re.compile(
    r"\d+:\d{2}(:\d{2})?|[-+]?\d+([.,]\d+)?\s*(d|h|m|s|ms|days?|hours?|hrs?|minutes?|mins?|seconds?|secs?)\b.*"
    r"|P(T?\d+[YMWDHS])+.*|\d+ days? \d+:\d{2}(:\d{2})?"
)
_PLAIN_NUMBER = re.compile(r"[-+]?\d+([.,]\d+)?")
_FLAG_NAME = re.compile(r"(flag|^is_|^has_|^was_|escalated$|_yn$|_bool$|indicator)")
_BOOL_WORDS = {"true", "false", "yes", "no", "y", "n", "t", "f"}


def _looks_like_dates(values: pd.Series, name: str = "") -> bool:
    """Do most of ``values`` (text) read as dates? Durations never do: ``01:30``, ``35``, ``2 days``,
    ``PT4H``, or plain numbers in a column named like ``resolution_time_hours`` (unless they are
    8-digit ``YYYYMMDD`` dates or epoch times in a column not named like a duration)."""
    from cxdash.validation import _detect_date_format, parse_datetime

    v = values.dropna().astype("string").str.strip().head(200)
    v = v[v != ""]
    if v.empty:
        return False
    if v.str.fullmatch(_DURATION_VALUE).fillna(False).mean() >= 0.5:
        return False
    fmt, _ = _detect_date_format(v)
    if fmt is None:
        return False
    plain = v.str.fullmatch(_PLAIN_NUMBER).fillna(False).mean() >= 0.5
    if plain and (fmt not in ("epoch_s", "epoch_ms", "%Y%m%d") or _DURATION_NAME.search(_norm(name))):
        return False
    return bool(parse_datetime(v, fmt).notna().mean() >= 0.5)


def _values_fit(f, values: pd.Series | None, name: str) -> bool:
    """Do the sample ``values`` of column ``name`` fit field ``f``? (No sample: the name decides.)

    Dates must read as dates and not as durations; yes/no fields must hold yes/no values; a
    count or measure never takes a yes/no column (an escalation flag is not a transfer count).
    """
    if values is None:
        return True
    v = values.dropna().astype("string").str.strip().head(500)
    v = v[v != ""]
    if f.dtype == "datetime":
        return _looks_like_dates(values, name)
    if v.empty or f.name in IDENTITY_FIELDS:
        return True
    low = v.str.lower()
    if f.dtype == "bool":
        from cxdash.validation import parse_bool

        return bool(parse_bool(v).notna().mean() >= 0.9)
    if f.dtype in ("int", "float"):
        if low.isin(_BOOL_WORDS).all():
            return False
        if low.isin({"0", "1"}).all() and _FLAG_NAME.search(_norm(name)):
            return False
        from cxdash.validation import parse_number

        # Numbers under either decimal mark: which mark is right is validation's question.
        return bool((parse_number(v, ".").notna() | parse_number(v, ",").notna()).mean() >= 0.8)
    return True


def suggest_mapping(kind: str | SourceKind, header: list[str], sample: pd.DataFrame | None = None) -> Mapping:
    """Guess which column holds which field from the names, checked against the values.

    Shape in: the file's column names and (optionally) a text frame of its first rows. Out: a
    ``Mapping`` of field -> column. Without a sample only names decide; with one, a column whose
    values do not fit a field is not taken for it (see ``_values_fit``).
    """
    kind = get_kind(kind) if isinstance(kind, str) else kind
    normed = {c: _norm(c) for c in header}
    columns: dict[str, str] = {}
    taken: set[str] = set()

    def values(col: str) -> pd.Series | None:
        return sample[col] if sample is not None and col in sample.columns else None

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
                if col in taken or n == "id":
                    continue
                if f.name == "customer_id" and pat.startswith("^account") and "account_id" in kind.field_names:
                    continue  # the kind has an account_id field of its own for this column
                if re.search(pat, n) and _values_fit(f, values(col), col):
                    found = col
                    break
            if found:
                break
        if found:
            columns[f.name] = found
            taken.add(found)
    bare_id = next((c for c, n in normed.items() if n == "id" and c not in taken), None)
    if bare_id is not None:
        has_identity = any(f in columns for f in kind.identity_fields)
        own = _OWN_ID.get(kind.name)
        if own and own in kind.field_names and own not in columns and (has_identity or own in IDENTITY_FIELDS):
            columns[own] = bare_id
        elif not has_identity and "customer_id" in kind.field_names:
            columns["customer_id"] = bare_id  # e.g. lifetimes' (id, date) purchases: the id is the customer
    if sample is not None:
        for f in kind.fields:
            if f.dtype == "datetime" and f.required and f.name not in columns:
                for col in header:
                    if col not in taken and col in sample.columns and _looks_like_dates(sample[col], col):
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
