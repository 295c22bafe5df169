"""Column mappings: which column of a file holds which canonical field of a kind.

A mapping is the JSON object ``{"kind": KIND, "columns": {FIELD: COLUMN_IN_FILE}}``, optionally
with ``"formats"`` (detected date formats / decimal separators) and ``"links"`` (columns holding
another source's keys, ``{COLUMN_IN_FILE: {"source": SOURCE, "field": FIELD}}``, see
``cxdash.identity.links``), exactly what the upload page saves per source and what
``python -m cxdash ingest --mapping`` reads.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxdash.ingest.errors import MappingError
from cxdash.ingest.formats import detect_date_format
from cxdash.ingest.parsers import parse_bool, parse_datetime, parse_number
from cxdash.store.kinds import IDENTITY_FIELDS, KINDS, SourceKind, get_kind

__all__ = [
    "CLEAR_MARGIN",
    "CLEAR_MIN_SCORE",
    "KindGuess",
    "Mapping",
    "MappingError",
    "clear_guess",
    "detect_kind",
    "field_confidence",
    "load_mapping",
    "rank_kinds",
    "suggest_mapping",
    "suggest_source_name",
]


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
            raise MappingError(
                'A mapping is a JSON object like {"kind": "tickets", "columns": {"ticket_id": "Ticket #"}}.'
            )
        get_kind(d["kind"])
        if not isinstance(d["columns"], dict):
            raise MappingError('"columns" must be an object of FIELD: COLUMN_IN_FILE.')
        formats = d.get("formats") or {}
        if not isinstance(formats, dict):  # each entry is checked against the kind when a file is loaded
            raise MappingError(
                f'"formats" must be an object like {{"dates": {{"opened_at": "%d/%m/%Y"}}, '
                f'"decimal": {{"amount": ","}}}}, not {formats!r}.'
            )
        return cls(
            d["kind"],
            {str(k): str(v) for k, v in d["columns"].items() if v},
            dict(formats),
            _links_from(d.get("links")),
        )

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
                raise MappingError(
                    f"{file_name}: link column {column!r} is not in the file. Columns in the file: {header}"
                )
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


# Name patterns per field, most specific first. Matched against the normalised column name
# (``_norm``: "Complaint ID" and "ComplaintID" both become ``complaint_id``). A name match is
# only taken when the column's values fit the field (``_values_fit``).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": (
        r"customer_?id",
        r"cust(omer)?_?(no|num|number|key|ref)",
        r"client_?id",
        r"user_?id",
        r"contact_?id",
        r"member_?id",
        r"case_concept_name_customer",
        r"account$",
        r"^caller(_id)?$",
        r"^requester(_id)?$",
        r"^customer$",
        r"^account_?(id|no|number)$",
    ),
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
    "timestamp": (
        r"time_?stamp",
        r"event_?(time|date|at|ts)$",
        r"time_timestamp",
        r"(txn|transaction|invoice|order|payment|usage|activity|churn)_?(date|time|at)",
        r"occurred",
        r"date_?time",
        r"sent_?at",
        r"^created",
        r"^ts$",
        r"date$",
        r"time$",
        r"_at$",
    ),
    "activity": (
        r"activity",
        r"event_?(name|type)?$",
        r"feature(_?name)?$",
        r"action",
        r"concept_name$",
        r"touch",
        r"step",
        r"page",
    ),
    "case_id": (r"case_?id", r"session", r"case_concept_name", r"visit_?id"),
    "department": (r"department", r"team", r"dept", r"org_?(unit|resource)", r"assignment_?group", r"queue"),
    "channel": (r"channel", r"medium", r"device", r"submitted_via", r"^via$", r"origin$"),
    "value": (r"value", r"revenue", r"costs?$"),
    "ticket_id": (
        r"ticket_?(id|no|number|_)?$",
        r"complaint_?(id|no|number)?$",
        r"case_?(id|no|number)",
        r"incident(_?(id|no|number))?$",
        r"^number$",
    ),
    "opened_at": (
        r"(created|opened|submitted|reported|received)(_at|_date|_on|_time)?$",
        r"^date_?(received|opened|created)$",
        r"open_?date",
        r"first_response",
    ),
    "closed_at": (
        r"(closed|resolved|solved|completed)(_at|_date|_on|_time)?$",
        r"close_?date",
        r"resolution_?(date|at)",
        r"time_to_resolution",
    ),
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
_OWN_ID = {
    "customers": "customer_id",
    "tickets": "ticket_id",
    "transactions": "transaction_id",
    "subscriptions": "subscription_id",
    "opportunities": "opportunity_id",
}
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
    v = values.dropna().astype("string").str.strip().head(200)
    v = v[v != ""]
    if v.empty:
        return False
    # Ranking a file asks this of the same column once per kind (and the upload page again on every
    # rerun); trying every date format is most of the time it takes to reach the mapping step, so
    # the answer for the same 200 values and name is remembered.
    return _dates_in(tuple(v.tolist()), name)


@functools.lru_cache(maxsize=4096)
def _dates_in(values: tuple[str, ...], name: str) -> bool:
    """``_looks_like_dates`` of these (stripped, non-empty) values: a pure function of its arguments."""
    # No date format reads a value without a digit, and the verdict needs half of the values read:
    # a column of words is answered without trying the formats.
    if sum(any(c.isdigit() for c in x) for x in values) * 2 < len(values):
        return False
    v = pd.Series(values, dtype="string")
    if v.str.fullmatch(_DURATION_VALUE).fillna(False).mean() >= 0.5:
        return False
    fmt, _ = detect_date_format(v)
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
        return bool(parse_bool(v).notna().mean() >= 0.9)
    if f.dtype in ("int", "float"):
        if low.isin(_BOOL_WORDS).all():
            return False
        if low.isin({"0", "1"}).all() and _FLAG_NAME.search(_norm(name)):
            return False
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
        found = _column_by_name(kind, f, normed, taken, values)
        if found:
            columns[f.name] = found
            taken.add(found)
    _map_bare_id(kind, normed, columns, taken)
    if sample is not None:
        _map_required_dates(kind, header, sample, columns, taken)
    return Mapping(kind.name, columns)


def _column_by_name(kind: SourceKind, f, normed: dict[str, str], taken: set[str], values) -> str | None:
    """The first free column whose normalised name matches one of ``f``'s patterns (in order) and
    whose values fit the field."""
    for pat in (*_SYNONYMS.get(f.name, ()), rf"^{re.escape(f.name)}$"):
        for col, n in normed.items():
            if col in taken or n == "id":
                continue
            if f.name == "customer_id" and pat.startswith("^account") and "account_id" in kind.field_names:
                continue  # the kind has an account_id field of its own for this column
            if re.search(pat, n) and _values_fit(f, values(col), col):
                return col
    return None


def _map_bare_id(kind: SourceKind, normed: dict[str, str], columns: dict[str, str], taken: set[str]) -> None:
    """A column named just ``id`` is the kind's own key, or the customer when nothing else is."""
    bare_id = next((c for c, n in normed.items() if n == "id" and c not in taken), None)
    if bare_id is None:
        return
    has_identity = any(f in columns for f in kind.identity_fields)
    own = _OWN_ID.get(kind.name)
    if own and own in kind.field_names and own not in columns and (has_identity or own in IDENTITY_FIELDS):
        columns[own] = bare_id
    elif not has_identity and "customer_id" in kind.field_names:
        columns["customer_id"] = bare_id  # e.g. lifetimes' (id, date) purchases: the id is the customer


def _map_required_dates(
    kind: SourceKind, header: list[str], sample: pd.DataFrame, columns: dict[str, str], taken: set[str]
) -> None:
    """A required date field no name matched takes the first free column whose values are dates."""
    for f in kind.fields:
        if f.dtype == "datetime" and f.required and f.name not in columns:
            for col in header:
                if col not in taken and col in sample.columns and _looks_like_dates(sample[col], col):
                    columns[f.name] = col
                    taken.add(col)
                    break


# ---------------------------------------------------------------- which kind is this file?
# A guess is "clear" when the best kind fits (every required field found), scores at least
# CLEAR_MIN_SCORE and leads the runner-up by CLEAR_MARGIN, and nothing in the file contradicts
# it (its own key repeating). Measured on the 6 hand-made extracts and 12 public files of
# tests/test_kind_guessing.py: the 9 files with one right kind score 3.8 to 8.0 and lead the next
# fitting kind by 2.3 to 6.3 (the closest: the clickstream over transactions, 2.4, and the CRM
# accounts over transactions, 2.3); the leaders of the 9 others (churn events with no churn kind
# yet, feature usage keyed by subscription, the process log with no customer, summaries, lookup
# tables) score -3.0 to 2.3. The thresholds sit between the two groups, with little room at the
# margin: a new kind or synonym can move these numbers, and the tests say which file moved.
CLEAR_MIN_SCORE = 3.5
CLEAR_MARGIN = 2.0
# Share of rows repeating the kind's own key above which the kind is contradicted.
REPEAT_CONTRADICTS = 0.05
MIN_ROWS_FOR_UNIQUENESS = 20
# Below this a reading that fits is called "unlikely" (shown, but with little for it).
POSSIBLE_MIN_SCORE = 1.5

_ID_SUFFIX = re.compile(r"(^|_)(id|key|no|nr|num|number|ref|code)$")
_ACTIVITY_HINTS = {"name", "type", "event", "feature", "action", "activity", "kind", "step"}


@dataclass
class KindGuess:
    """One reading of a file as ``kind``: its score, how sure, the evidence in plain words, and
    the column mapping that reading implies (``suggest_mapping`` plus any field found by values)."""

    kind: str
    score: float
    confidence: str  # "clear" | "possible" | "unlikely" (fits, weak evidence) | "no fit" (a required field is missing)
    reasons: list[str]
    mapping: Mapping
    fits: bool  # every required field of the kind has a column
    identified: bool  # some column identifies the customer
    contradicted: bool = False  # the kind's own key repeats
    # How each auto-mapped field was found (see ``field_confidence``).
    found_by: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """``kind (confidence, score): reason; reason`` on one line, for the CLI."""
        return f"{self.kind} ({self.confidence}, score {self.score:.1f}): " + "; ".join(self.reasons)


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _kind_words(kind: SourceKind) -> set[str]:
    """Words that name what one row of ``kind`` is (its name, its description, its key)."""
    words = {_singular(w) for w in re.findall(r"[a-z]+", f"{kind.name} {kind.description}".lower()) if len(w) > 3}
    for k in kind.natural_key:
        words |= {w for w in k.split("_") if w not in ("id",)}
    return words


def _stem(col: str) -> str:
    return _ID_SUFFIX.sub("", _norm(col)).strip("_")


def _is_text(values: pd.Series) -> bool:
    v = values.dropna().astype("string").str.strip()
    v = v[v != ""]
    if v.empty:
        return False
    return pd.to_numeric(v, errors="coerce").isna().mean() > 0.9 and not _looks_like_dates(v)


def _row_id_column(header: list[str], sample: pd.DataFrame | None) -> str | None:
    """The first column named like an id whose values are all present and distinct in the sample:
    what one row of the file is (``ticket_id`` -> a ticket)."""
    if sample is None or len(sample) < 2:
        return None
    for col in header:
        n = _norm(col)
        if not n or col not in sample.columns or not _ID_SUFFIX.search(n):
            continue
        v = sample[col]
        if v.notna().all() and v.is_unique:
            return col
    return None


def _with_values(
    kind: SourceKind, mapping: Mapping, header: list[str], sample: pd.DataFrame | None, found_by: dict[str, str]
) -> list[str]:
    """Fill required text fields that no column name gave from the values (an event name column:
    text that repeats). Changes ``mapping`` and ``found_by``; returns the reasons."""
    reasons: list[str] = []
    if sample is None or not len(sample):
        return reasons
    taken = set(mapping.columns.values())
    for f in kind.fields:
        if not f.required or f.dtype != "string" or f.name in mapping.columns or f.name in IDENTITY_FIELDS:
            continue
        for col in header:
            if col in taken or col not in sample.columns or not (set(_norm(col).split("_")) & _ACTIVITY_HINTS):
                continue
            v = sample[col].dropna()
            distinct = v.nunique()
            if len(v) and 2 <= distinct <= max(2, len(v) // 2) and _is_text(v):
                mapping.columns[f.name] = col
                found_by[f.name] = "values"
                taken.add(col)
                reasons.append(f"column {col!r} holds {distinct:,} repeating text values: read as the {f.name}")
                break
    return reasons


def field_confidence(kind: str | SourceKind, field_name: str, column: str, sample: pd.DataFrame | None = None) -> str:
    """How an auto-mapped column was matched to a field, in words: ``exact name``, ``synonym``,
    ``values look like dates`` or ``values`` (repeating text read as an activity)."""
    kind = get_kind(kind) if isinstance(kind, str) else kind
    n = _norm(column)
    if n == field_name:
        return "exact name"
    if any(re.search(p, n) for p in _SYNONYMS.get(field_name, ())):
        return "synonym"
    if kind.field(field_name).dtype == "datetime":
        return "values look like dates"
    return "values"


def _customer_entity(kind: SourceKind, mapping: Mapping) -> list[str]:
    """Columns holding what one row of ``kind`` is: its natural key, or for a customer table the
    first identifier found (an accounts table keyed by account_id is still one row per customer)."""
    if kind.natural_key and all(k in mapping.columns for k in kind.natural_key):
        return [mapping.columns[k] for k in kind.natural_key]
    if kind.natural_key and set(kind.natural_key) <= set(IDENTITY_FIELDS):
        ids = [f for f in kind.identity_fields if f in mapping.columns]
        return [mapping.columns[ids[0]]] if ids else []
    return []


def _repeats(sample: pd.DataFrame, cols: list[str]) -> tuple[int, int]:
    """(rows, rows repeating an earlier row's key) among the sample rows that have the key."""
    keyed = sample[cols].dropna()
    return len(keyed), int(keyed.duplicated().sum())


def _rank_one(kind: SourceKind, header: list[str], sample: pd.DataFrame | None, row_id: str | None) -> KindGuess:
    mapping = suggest_mapping(kind, header, sample)
    found_by = {f: field_confidence(kind, f, c, sample) for f, c in mapping.columns.items()}
    reasons = _with_values(kind, mapping, header, sample, found_by)
    score = 0.0
    rows = len(sample) if sample is not None else 0

    missing = [f for f in kind.required_fields if f not in mapping.columns]
    fits = not missing
    if missing:
        score -= 5.0
        reasons.insert(0, "no column for its required field(s) " + ", ".join(missing))

    used = sorted(set(mapping.columns.values()), key=header.index)
    non_id = [f.name for f in kind.fields if f.name not in IDENTITY_FIELDS]
    filled = [f for f in mapping.columns if f not in IDENTITY_FIELDS]
    score += 3.0 * len(used) / max(len(header), 1) + 2.0 * len(filled) / max(len(non_id), 1)
    if filled:
        reasons.append(
            f"{len(used)} of the file's {len(header)} columns fit its fields ("
            + ", ".join(f"{mapping.columns[f]!r} as {f}" for f in filled[:6])
            + (", ..." if len(filled) > 6 else "")
            + ")"
        )

    ids = [f for f in kind.identity_fields if f in mapping.columns]
    identified = bool(ids) or not kind.identity_fields
    if ids:
        score += 1.0
        reasons.append(f"column {mapping.columns[ids[0]]!r} identifies the customer ({ids[0]})")
    elif kind.identity_fields:
        score -= 1.0
        reasons.append("no customer identifier: no column reads as " + ", ".join(kind.identity_fields))
        # (rank_kinds adds which identifier columns the file has that this kind does not take)

    entity = _customer_entity(kind, mapping)
    delta, contradicted = _entity_evidence(kind, mapping, entity, sample, reasons)
    score += delta
    if row_id and row_id not in entity:
        score += _row_id_evidence(kind, row_id, reasons)
    if not kind.natural_key and ids and sample is not None and rows:
        score += _per_customer_evidence(kind, mapping.columns[ids[0]], sample, reasons)
    _date_reasons(kind, mapping, missing, reasons)
    confidence = "no fit" if not fits else "possible" if score >= POSSIBLE_MIN_SCORE else "unlikely"
    return KindGuess(kind.name, round(score, 2), confidence, reasons, mapping, fits, identified, contradicted, found_by)


def _entity_evidence(
    kind: SourceKind, mapping: Mapping, entity: list[str], sample: pd.DataFrame | None, reasons: list[str]
) -> tuple[float, bool]:
    """Does the kind's own key (``entity``) repeat in the sample? Its score and whether the
    repeats contradict the kind; the reason goes first in ``reasons``."""
    what = _singular(kind.name)
    if entity and sample is not None and len(sample):
        keyed, repeated = _repeats(sample, entity)
        cols = " + ".join(repr(c) for c in entity)
        if keyed and repeated == 0:
            reasons.insert(0, f"column {cols} is unique in the {keyed:,} rows read: one row per {what}")
            return 2.0, False
        if keyed:
            share = repeated / keyed
            contradicted = share > REPEAT_CONTRADICTS
            reasons.insert(
                0,
                f"{cols} repeats: {repeated:,} of the {keyed:,} rows read repeat a key, so not one row per {what}",
            )
            return (-(1.0 + 4.0 * share) if contradicted else -0.5), contradicted
        return 0.0, False
    if kind.natural_key and not set(kind.natural_key) <= set(IDENTITY_FIELDS):
        reasons.append(f"no {' + '.join(kind.natural_key)} column")
        return -0.5, False
    return 0.0, False


def _row_id_evidence(kind: SourceKind, row_id: str, reasons: list[str]) -> float:
    """A unique column the kind has no field for says each row is something else."""
    stem = _stem(row_id)
    if set(stem.split("_")) & _kind_words(kind):
        return 0.5
    reasons.insert(
        0,
        f"column {row_id!r} is unique: each row is one {stem.replace('_', ' ') or 'record'}, "
        f"and {kind.name} has no field for that",
    )
    return -2.0


def _per_customer_evidence(kind: SourceKind, column: str, sample: pd.DataFrame, reasons: list[str]) -> float:
    """A keyless kind is a log: several rows per customer (``column`` identifies them) fit it."""
    per = sample[column].dropna()
    if len(per) and per.nunique() < len(per):
        reasons.append(
            f"several rows per customer ({per.nunique():,} distinct {column!r} in {len(per):,} rows), as {kind.name} have"
        )
        return 1.0
    if len(per) >= MIN_ROWS_FOR_UNIQUENESS:  # a handful of rows proves nothing either way
        reasons.append(
            f"every row is a different customer ({column!r} is unique in {len(per):,} rows): "
            f"not a log of many {kind.name} per customer"
        )
        return -1.0
    return 0.0


def _date_reasons(kind: SourceKind, mapping: Mapping, missing: list[str], reasons: list[str]) -> None:
    for f in kind.fields:
        if f.dtype == "datetime" and f.required:
            if f.name in mapping.columns:
                reasons.append(f"values of {mapping.columns[f.name]!r} look like dates ({f.name})")
            else:
                reasons.append(f"no date column for {f.name}")
    if not any(f.dtype == "datetime" and f.name in mapping.columns for f in kind.fields) and not missing:
        reasons.append("no date column")


def rank_kinds(header: list[str], sample: pd.DataFrame | None = None) -> list[KindGuess]:
    """Every kind in ``KINDS`` as a reading of a file (``header`` and a sample of its rows as text),
    best first, each with plain-language reasons. The first is ``confidence == "clear"`` only when
    it fits, scores at least ``CLEAR_MIN_SCORE``, leads the next fitting kind by ``CLEAR_MARGIN``
    and its own key does not repeat; otherwise no guess is clear and a person must choose."""
    row_id = _row_id_column(header, sample)
    guesses = [_rank_one(kind, header, sample, row_id) for kind in KINDS.values()]
    # Identifier columns some kind reads (account_id): name them where a kind cannot take them.
    id_columns = {g.mapping.columns[f]: f for g in guesses for f in IDENTITY_FIELDS if f in g.mapping.columns}
    for g in guesses:
        if not g.identified and id_columns:
            i = next(i for i, r in enumerate(g.reasons) if r.startswith("no customer identifier"))
            g.reasons[i] += "; " + ", ".join(
                f"{col!r} reads as {f}, which {g.kind} do not take" for col, f in id_columns.items()
            )
    guesses.sort(key=lambda g: (not g.fits, -g.score, list(KINDS).index(g.kind)))
    best = guesses[0]
    runner = next((g for g in guesses[1:] if g.fits), None)
    margin = best.score - runner.score if runner else float("inf")
    if best.fits and not best.contradicted and best.score >= CLEAR_MIN_SCORE and margin >= CLEAR_MARGIN:
        best.confidence = "clear"
        if runner:
            best.reasons.append(f"the next best reading, {runner.kind}, has much less for it")
    return guesses


def clear_guess(guesses: list[KindGuess]) -> KindGuess | None:
    """The guess to load without asking, or None when a person must choose."""
    return guesses[0] if guesses and guesses[0].confidence == "clear" else None


def detect_kind(header: list[str], sample: pd.DataFrame | None = None) -> str:
    """The best-ranked kind (clear or not): see ``rank_kinds`` for whether it may be trusted."""
    return rank_kinds(header, sample)[0].kind


# ----------------------------------------------------------------------------- source names
# Extensions an extract's name may end with (``x.csv.gz``): not part of the source's name.
_EXTENSIONS = {"csv", "gz", "txt", "tsv", "xlsx", "xls", "zip", "bz2", "xz", "json"}
# The prefix IBM puts on its Watson Analytics sample files (``WA_Fn-UseC_-Telco-Customer-Churn``).
_VENDOR_PREFIX = re.compile(r"^WA_Fn-UseC_-?", re.IGNORECASE)
# Words that say how a file was made, not what it holds: an export's date, a copy's number, "final".
_NOISE_WORD = re.compile(
    r"(export(ed)?|extract|dump|final|copy|latest|v\d+|\d{6,}|\d{4}-\d{2}(-\d{2})?|\d{1,2})", re.IGNORECASE
)
_DATE_IN_NAME = re.compile(
    r"(?<![0-9])(\d{4}[-_.]?\d{2}([-_.]?\d{2})?([T_ -]?\d{2}[-:.]?\d{2}([-:.]?\d{2})?)?|\d{2}[-_.]\d{2}[-_.]\d{4})(?![0-9])"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def suggest_source_name(file_name: str, known: list[str] | tuple[str, ...] = ()) -> str:
    """The source name a person would give the extract ``file_name`` (an editable default).

    ``WA_Fn-UseC_-Telco-Customer-Churn.csv`` -> ``Telco customer churn``: no extension, vendor
    prefix, export date, copy number or "final"; words split at ``_``, ``-``, ``.``, spaces and
    camelCase; sentence case, acronyms (``CRM``, ``CDNOW``) kept. A loaded source (``known``) whose
    name differs only in case and punctuation (``telco_customer_churn``) is suggested as it is
    spelt, so next week's file goes to the same source and finds its saved mapping. Always a
    non-blank name, as a load requires ("Upload" when nothing is left of the file name).
    """
    base = re.split(r"[\\/]", str(file_name))[-1]
    parts = base.split(".")
    while len(parts) > 1 and parts[-1].lower() in _EXTENSIONS:
        parts.pop()
    stem = ".".join(parts)
    legacy = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    stem = _VENDOR_PREFIX.sub("", stem)
    stem = re.sub(r"\(\d+\)", " ", stem)  # "extract (1).csv": a browser's copy number
    stem = _DATE_IN_NAME.sub(" ", stem)  # the export's date: next week's file has another
    words = [w for w in re.split(r"[^A-Za-z0-9]+", _CAMEL.sub(" ", stem)) if w]
    kept = [w for w in words if not _NOISE_WORD.fullmatch(w)] or words
    words = [w if len(w) > 1 and w.isupper() else w.lower() for w in kept]
    name = " ".join(words)
    name = name[:1].upper() + name[1:] if name else "Upload"
    for existing in known:
        if _squash(existing) and _squash(existing) in (_squash(name), _squash(legacy)):
            return existing
    return name
