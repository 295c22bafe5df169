"""Churn features per customer as of a cutoff, from every department, computed in the database.

``customer_features(conn, cutoff=...)`` returns one row per customer who was a customer at the
cutoff. Only rows *before* the cutoff are read, so a snapshot never sees its own future. The
heavy work (counts, sums, latest timestamps, repeat contacts via a window function) runs as
portable SQLAlchemy Core aggregates, one query per source kind; pandas only joins the per-kind
results (one row per customer each) and turns timestamps into ages.

``labelled_features(conn, label_column=...)`` is the "bring your own label" path: a customer
table that carries its own churn column (``churn_label`` or any unmapped attribute such as
Telco's ``Churn``). Rows with an empty label are returned too (label NaN): they are scored but
never trained on.

Columns that look like identifiers (row numbers, ids, names, emails, phones, free text with a
different value on almost every row) are recognised by name and by content and never become
features.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import signals
from cxdash.metrics.signals import (
    COMPLAINT_MAX_SATISFACTION,  # noqa: F401 (read here by older callers; declared in cxdash.metrics.signals)
    INTENT,
    REPEAT_WINDOW_DAYS,
    file_order,
    is_repeat,
    matches,
    previous_same_topic,
    product_event,
)
from cxdash.store.database import KIND_TABLES, customer_keys_table, loads_table, read_frame, sources_table

__all__ = [
    "AGE_CAP_DAYS",
    "FeatureFrame",
    "INTENT_SIGNALS",
    "LabelError",
    "MISSING_CATEGORY",
    "Sample",
    "SnapshotReader",
    "VALUE_BASES",
    "attribute_columns",
    "churned_between",
    "customer_features",
    "data_as_of",
    "identifier_like",
    "value_basis",
    "labelled_features",
    "parse_label",
]

log = logging.getLogger(__name__)

AGE_CAP_DAYS = 365.0  # "never" and anything older than a year look the same to the model
# An empty category is a category of its own, spelled the same everywhere: None and NaN would
# reach the model's encoders as two different things (one a category, one imputed).
MISSING_CATEGORY = "(none)"
MARKETING_WINDOW_DAYS = 90

# The intent signals the model reads, from the registry (``cxdash.metrics.signals``): feature stem ->
# (source kind, LIKE patterns). Each stem gives ``{stem}_7d``, ``{stem}_30d`` and ``days_since_{stem}``.
INTENT_SIGNALS: dict[str, tuple[str, tuple[str, ...]]] = {
    s.name: (s.kind, s.patterns) for kind in ("events", "tickets") for s in signals.of_kind(kind, strength=INTENT)
}

# Columns that are part of the CRM record but never features.
_NOT_FEATURES = {"customer_id", "account_id", "email", "phone", "name", "churn_label", "signup_date"}
_CATEGORICAL_CRM = ("segment", "region", "plan", "acquisition_channel", "campaign")
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


@dataclass
class FeatureFrame:
    """A feature snapshot: ``frame`` is indexed by ``cx_id`` and holds ``customer_id`` (as the
    source gave it), the ``numeric`` and ``categorical`` feature columns, ``value`` (what the
    customer is worth a year, by ``value_basis``: revenue in the year before the cutoff, else 12
    × the MRR live at the cutoff; NaN when neither is known) and ``label`` (float 0/1, NaN when
    unknown)."""

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    cutoff: datetime | None
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


# What a customer's ``value`` is, by basis (``value_basis``), in words for the pages.
VALUE_BASES = {
    "revenue": "value = revenue in the last 12 months",
    "mrr": "value = 12 × MRR of live subscriptions (no transactions loaded)",
}


def value_basis(conn: Connection) -> str | None:
    """Where customers' value comes from: ``"revenue"`` when transactions are loaded (last 12
    months' revenue), else ``"mrr"`` when subscriptions carry an MRR (12 × the MRR live at the
    cutoff), else None (unknown). One basis for every customer, so values compare."""
    if _has_rows(conn, "transactions"):
        return "revenue"
    u = KIND_TABLES["subscriptions"]
    if conn.execute(sa.select(sa.literal(1)).where(u.c.mrr.is_not(None)).limit(1)).first() is not None:
        return "mrr"
    return None


# ----------------------------------------------------------------------------- helpers
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


def _epoch(col) -> sa.ColumnElement:
    return sa.extract("epoch", col)


def _since(cutoff: datetime, days: float) -> datetime:
    return cutoff - timedelta(days=days)


def _count_if(cond) -> sa.ColumnElement:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def _max_if(cond, col) -> sa.ColumnElement:
    return sa.func.max(sa.case((cond, col), else_=None))


def _frame(conn: Connection, query) -> pd.DataFrame:
    # columnar on DuckDB: building a frame from Python row tuples took 2/3 of a snapshot's time
    return read_frame(conn, query)


@dataclass(frozen=True)
class Sample:
    """A deterministic customer sample: the customers whose integer key ``cx_key`` leaves
    ``offset`` when divided by ``every`` (1 in ``every`` customers; keys follow the customer id
    order, so this is a systematic sample across the customer base)."""

    every: int
    offset: int = 0

    def __post_init__(self):
        if self.every < 1 or not 0 <= self.offset < self.every:
            raise ValueError(f"a sample needs every >= 1 and 0 <= offset < every, not {self}")

    def where(self, cx_key) -> sa.ColumnElement:
        return (cx_key % self.every) == self.offset


def _key(cx_key) -> sa.ColumnElement:
    """The customer's integer key beside its ``cx_id`` in a per-customer aggregate (one key per
    id): pandas then joins the kinds' results on integers, not on a million strings."""
    return sa.func.min(cx_key).label("cx_key")


def _sampled(query, cx_key, sample: Sample | None):
    return query if sample is None or sample.every == 1 else query.where(sample.where(cx_key))


def _has_rows(conn: Connection, kind: str) -> bool:
    t = KIND_TABLES[kind]
    return conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None


def data_as_of(conn: Connection) -> datetime | None:
    """The latest timestamp among event-like rows (the data's "now")."""
    candidates = []
    for kind, col in (
        ("events", "timestamp"),
        ("tickets", "opened_at"),
        ("transactions", "timestamp"),
        ("subscriptions", "start"),
        ("subscriptions", "end"),
        ("customers", "signup_date"),
    ):
        candidates.append(conn.execute(sa.select(sa.func.max(KIND_TABLES[kind].c[col]))).scalar())
    found = [pd.Timestamp(c).to_pydatetime() for c in candidates if c is not None and not pd.isna(c)]
    return max(found) if found else None


# ----------------------------------------------------------------------------- the customer record
def _crm(conn: Connection, source: str | None) -> pd.DataFrame:
    """One CRM row per customer: canonical fields, attrs, source."""
    c, im = KIND_TABLES["customers"], customer_keys_table
    cols = [
        im.c.cx_id,
        im.c.cx_key,
        c.c.source,
        c.c.load_id,
        c.c.row_number,
        c.c.customer_id,
        c.c.signup_date,
        *[c.c[n] for n in _CATEGORICAL_CRM],
        c.c.consent_marketing,
        c.c.churn_label,
        c.c.attrs,
    ]
    q = sa.select(*cols).select_from(c.join(im, im.c.cx_key == c.c.cx_key))
    if source:
        q = q.where(c.c.source == source)
    crm = _frame(conn, q)
    if crm.empty:
        return crm
    crm = crm.sort_values(["load_id", "row_number"]).drop_duplicates("cx_id", keep="last")
    return crm.set_index("cx_id")


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


def _crm_features(
    crm: pd.DataFrame, cutoff: datetime | None, dropped: dict[str, str], exclude_attrs: set[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    feats = pd.DataFrame(index=crm.index)
    numeric, categorical = [], []
    signup = pd.to_datetime(crm["signup_date"])
    if cutoff is not None and signup.notna().any():
        feats["tenure_days"] = (pd.Timestamp(cutoff) - signup).dt.total_seconds() / 86400
        numeric.append("tenure_days")
    for name in _CATEGORICAL_CRM:
        col = crm[name].astype("string")
        if col.notna().any():
            feats[name] = col.astype(object).where(col.notna(), MISSING_CATEGORY)
            categorical.append(name)
    if crm["consent_marketing"].notna().any():
        feats["consent_marketing"] = crm["consent_marketing"].astype("Float64").astype(float)
        numeric.append("consent_marketing")
    attrs = attribute_columns(crm["attrs"])
    attrs = attrs[[c for c in attrs.columns if c not in exclude_attrs]]
    typed, n2, c2 = _typed_attributes(attrs, dropped)
    feats = feats.join(typed)
    return feats, numeric + n2, categorical + c2


# ----------------------------------------------------------------------------- per-kind aggregates
def _event_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    e, im, s = KIND_TABLES["events"], customer_keys_table, sources_table
    product = product_event(sa.func.coalesce(e.c.department, s.c.department))
    marketing = sa.not_(product)
    act = sa.func.lower(sa.func.coalesce(e.c.activity, ""))
    checkout_error = sa.and_(product, matches("checkout_error", e.c.activity))
    d7, d30, d90 = _since(cutoff, 7), _since(cutoff, 30), _since(cutoff, MARKETING_WINDOW_DAYS)
    cols = [
        _count_if(product).label("web_events"),
        _count_if(sa.and_(product, e.c.timestamp >= d30)).label("web_events_30d"),
        _count_if(sa.and_(product, e.c.timestamp >= d90)).label("web_events_90d"),
        _max_if(product, e.c.timestamp).label("last_web_ts"),
        _count_if(checkout_error).label("checkout_errors"),
        _count_if(sa.and_(checkout_error, e.c.timestamp >= d30)).label("checkout_errors_30d"),
        _max_if(checkout_error, e.c.timestamp).label("last_checkout_errors_ts"),
        _count_if(sa.and_(marketing, e.c.timestamp >= d90)).label("marketing_touches_90d"),
        _count_if(sa.and_(marketing, e.c.timestamp >= d90, sa.or_(act.like("%open%"), act.like("%click%")))).label(
            "marketing_engaged_90d"
        ),
        _max_if(sa.and_(marketing, sa.or_(act.like("%open%"), act.like("%click%"))), e.c.timestamp).label(
            "last_marketing_engaged_ts"
        ),
    ]
    for stem, (kind, _) in INTENT_SIGNALS.items():
        if kind != "events":
            continue
        hit = sa.and_(product, matches(stem, e.c.activity))
        cols += [
            _max_if(hit, e.c.timestamp).label(f"last_{stem}_ts"),
            _count_if(sa.and_(hit, e.c.timestamp >= d7)).label(f"{stem}_7d"),
            _count_if(sa.and_(hit, e.c.timestamp >= d30)).label(f"{stem}_30d"),
        ]
    q = (
        sa.select(im.c.cx_id, _key(im.c.cx_key), *cols)
        .select_from(e.join(im, im.c.cx_key == e.c.cx_key).join(s, s.c.name == e.c.source))
        .where(e.c.timestamp < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, e.c.cx_key, sample))


def _ticket_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    k, im = KIND_TABLES["tickets"], customer_keys_table
    base = _sampled(
        sa.select(
            im.c.cx_id,
            im.c.cx_key,
            k.c.opened_at,
            k.c.closed_at,
            k.c.transfers,
            k.c.satisfaction,
            k.c.topic,
            # the cutoff drops only tickets after it, which a look back never reads
            previous_same_topic(k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k)).label("prev_at"),
        )
        .select_from(k.join(im, im.c.cx_key == k.c.cx_key))
        .where(k.c.opened_at < cutoff),
        k.c.cx_key,
        sample,
    ).subquery("t")
    t = base.c
    d7, d30, d90 = _since(cutoff, 7), _since(cutoff, 30), _since(cutoff, 90)
    repeat = is_repeat(t.opened_at, t.prev_at, REPEAT_WINDOW_DAYS)
    closed = sa.and_(t.closed_at.is_not(None), t.closed_at < cutoff)
    transferred = matches("transfer", t.transfers)
    cols = [
        sa.func.count().label("contacts"),
        _count_if(t.opened_at >= d30).label("contacts_30d"),
        _count_if(t.opened_at >= d90).label("contacts_90d"),
        sa.func.max(t.opened_at).label("last_contact_ts"),
        _count_if(sa.not_(closed)).label("open_tickets"),
        _count_if(repeat).label("repeat_contacts"),
        _count_if(sa.and_(repeat, t.opened_at >= d90)).label("repeat_contacts_90d"),
        _max_if(repeat, t.opened_at).label("last_repeat_contacts_ts"),
        sa.func.sum(sa.func.coalesce(t.transfers, 0)).label("transfers"),
        _count_if(sa.and_(transferred, t.opened_at >= d90)).label("transferred_contacts_90d"),
        _max_if(transferred, t.opened_at).label("last_transfers_ts"),
        # satisfaction only once the contact is closed before the cutoff (it is given at closing)
        sa.func.avg(sa.case((closed, t.satisfaction), else_=None)).label("satisfaction_avg"),
        sa.func.min(sa.case((closed, t.satisfaction), else_=None)).label("satisfaction_min"),
        sa.func.avg(sa.case((closed, _epoch(t.closed_at) - _epoch(t.opened_at)), else_=None)).label("resolution_s_avg"),
    ]
    for stem, (kind, _) in INTENT_SIGNALS.items():
        if kind != "tickets":
            continue
        # a rating counts once the contact was closed before the cutoff (it is given at closing)
        hit = matches(stem, t.topic, satisfaction=t.satisfaction, closed=closed)
        cols += [
            _max_if(hit, t.opened_at).label(f"last_{stem}_ts"),
            _count_if(sa.and_(hit, t.opened_at >= d7)).label(f"{stem}_7d"),
            _count_if(sa.and_(hit, t.opened_at >= d30)).label(f"{stem}_30d"),
        ]
    return _frame(conn, sa.select(t.cx_id, _key(t.cx_key), *cols).group_by(t.cx_id))


def _transaction_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    x, im = KIND_TABLES["transactions"], customer_keys_table
    failed = matches("failed_payment", x.c.status)
    paid = sa.and_(sa.not_(failed), x.c.amount >= 0)
    refund = sa.and_(sa.not_(failed), x.c.amount < 0)
    d30, d90, d365 = _since(cutoff, 30), _since(cutoff, 90), _since(cutoff, 365)
    q = (
        sa.select(
            im.c.cx_id,
            _key(im.c.cx_key),
            _count_if(paid).label("purchases"),
            _count_if(sa.and_(paid, x.c.timestamp >= d90)).label("purchases_90d"),
            sa.func.sum(sa.case((sa.not_(failed), x.c.amount), else_=0.0)).label("revenue"),
            sa.func.sum(sa.case((sa.and_(sa.not_(failed), x.c.timestamp >= d365), x.c.amount), else_=0.0)).label(
                "revenue_365d"
            ),
            sa.func.sum(sa.case((sa.and_(sa.not_(failed), x.c.timestamp >= d90), x.c.amount), else_=0.0)).label(
                "revenue_90d"
            ),
            _max_if(paid, x.c.timestamp).label("last_purchase_ts"),
            _count_if(refund).label("refunds"),
            _count_if(failed).label("failed_payments"),
            _count_if(sa.and_(failed, x.c.timestamp >= d30)).label("failed_payments_30d"),
            _count_if(sa.and_(failed, x.c.timestamp >= d90)).label("failed_payments_90d"),
            _max_if(failed, x.c.timestamp).label("last_failed_payments_ts"),
        )
        .select_from(x.join(im, im.c.cx_key == x.c.cx_key))
        .where(x.c.timestamp < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, x.c.cx_key, sample))


def _subscription_state(
    conn: Connection, cutoff: datetime, horizon_days: float | None, sample: Sample | None = None
) -> pd.DataFrame:
    """Per customer with a subscription started before the cutoff: first start, MRR live at the
    cutoff, whether anything is live at the cutoff, and (with a horizon) whether the last live
    subscription ended within it."""
    u, im = KIND_TABLES["subscriptions"], customer_keys_table
    live = sa.and_(u.c.start < cutoff, sa.or_(u.c.end.is_(None), u.c.end > cutoff))
    far = datetime(9999, 1, 1)
    cols = [
        im.c.cx_id,
        _key(im.c.cx_key),
        sa.func.min(u.c.start).label("first_start_ts"),
        sa.func.sum(sa.case((live, sa.func.coalesce(u.c.mrr, 0.0)), else_=0.0)).label("mrr"),
        _count_if(live).label("live_subscriptions"),
        _count_if(sa.and_(u.c.end.is_not(None), u.c.end <= cutoff)).label("ended_subscriptions"),
        # latest end among subscriptions live at the cutoff (far future when one has no end)
        sa.func.max(sa.case((live, sa.func.coalesce(u.c.end, sa.literal(far, sa.DateTime))), else_=None)).label(
            "live_until"
        ),
    ]
    q = (
        sa.select(*cols)
        .select_from(u.join(im, im.c.cx_key == u.c.cx_key))
        .where(u.c.start < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, u.c.cx_key, sample))


def churned_between(conn: Connection, start: datetime, end: datetime) -> pd.Series:
    """For customers live at ``start``: True when every subscription they had live then has
    ended by ``end``. Index ``cx_id``."""
    subs = _subscription_state(conn, start, None)
    subs = subs[subs["live_subscriptions"] > 0].set_index("cx_id")
    return pd.to_datetime(subs["live_until"]) <= pd.Timestamp(end)


# ----------------------------------------------------------------------------- assembling a snapshot
def _age_days(cutoff: datetime, ts: pd.Series) -> pd.Series:
    ages = (pd.Timestamp(cutoff) - pd.to_datetime(ts)).dt.total_seconds() / 86400
    return ages.clip(lower=0, upper=AGE_CAP_DAYS).fillna(AGE_CAP_DAYS)


def customer_features(
    conn: Connection,
    *,
    cutoff: datetime,
    horizon_days: float | None = None,
    source: str | None = None,
    sample: Sample | None = None,
) -> FeatureFrame:
    """Features for every customer live at ``cutoff``; with ``horizon_days``, ``label`` says
    whether they churned within that many days after it (from subscription end dates).

    Live at the cutoff: a subscription started before and not ended by the cutoff; without
    subscriptions, a CRM record signed up before the cutoff (or any identified activity).
    Every aggregate reads only rows timestamped before the cutoff. With ``sample``, only that
    sample of customers (filtered in the database, so a sample costs a fraction of the work).
    Several snapshots of one store: ``SnapshotReader``.
    """
    return SnapshotReader(conn, source=source).features(cutoff, horizon_days=horizon_days, sample=sample)


class SnapshotReader:
    """Feature snapshots of one store at any number of cutoffs.

    The customer table (with its JSON attributes) is read and typed once, not once per cutoff:
    an attribute is a number, a category or dropped for the whole customer base, so every
    snapshot of a training run has the same columns.
    """

    def __init__(self, conn: Connection, *, source: str | None = None, churn=None):
        """``churn``: a dated ``cxdash.metrics.churn.Definition`` whose churn dates give the labels and the
        customers already gone at a cutoff (None: subscription ends, as before)."""
        self.conn = conn
        self.dropped: dict[str, str] = {}
        self.churn_at: pd.Series | None = None  # cx_key -> when the customer churned, under ``churn``
        if churn is not None:
            from cxdash.metrics.churn import churned

            gone = _frame(conn, churned(conn, churn))
            self.churn_at = pd.Series(
                pd.to_datetime(gone["churn_at"]).to_numpy(),
                index=gone["cx_key"].astype("int64"),
                dtype="datetime64[ns]",
            )
        # keyed by the integer cx_key: a snapshot joins the kinds' results on it
        self.crm = _crm(conn, source).reset_index().set_index("cx_key")
        self.loaded = {k: _has_rows(conn, k) for k in ("events", "tickets", "transactions", "subscriptions")}
        self.value_basis = value_basis(conn)
        self.crm_features = pd.DataFrame(index=self.crm.index)
        self.crm_numeric: list[str] = []
        self.crm_categorical: list[str] = []
        if not self.crm.empty:
            # tenure depends on the cutoff: added per snapshot
            self.crm_features, self.crm_numeric, self.crm_categorical = _crm_features(
                self.crm, None, self.dropped, exclude_attrs=set()
            )
            self.signup = pd.to_datetime(self.crm["signup_date"])

    def features(
        self, cutoff: datetime, *, horizon_days: float | None = None, sample: Sample | None = None
    ) -> FeatureFrame:
        """One snapshot; see ``customer_features``."""
        return _snapshot(self, cutoff, horizon_days, sample)

    def live_count(self, cutoff: datetime) -> int:
        """About how many customers a full snapshot at ``cutoff`` holds, without computing it
        (to size a sample before paying for the features)."""
        if self.loaded["subscriptions"]:
            u = KIND_TABLES["subscriptions"]
            live = sa.and_(u.c.start < cutoff, sa.or_(u.c.end.is_(None), u.c.end > cutoff))
            q = sa.select(sa.func.count(sa.distinct(u.c.cx_key))).where(live)
            return int(self.conn.execute(q).scalar() or 0)
        if not self.crm.empty:
            return int((self.signup.isna() | (self.signup < pd.Timestamp(cutoff))).sum())
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(customer_keys_table)).scalar() or 0)


def _value(frame: pd.DataFrame, basis: str | None) -> pd.Series:
    """Each customer's value on ``basis`` (see ``value_basis``); a customer without revenue or a
    live subscription is worth 0, and every value is NaN when the basis is unknown."""
    if basis == "revenue" and "revenue_365d" in frame:
        return frame["revenue_365d"].astype(float).fillna(0.0)
    if basis == "mrr" and "mrr" in frame:
        return 12.0 * frame["mrr"].astype(float).fillna(0.0)
    return pd.Series(np.nan, index=frame.index, dtype="float64")


def _snapshot(
    reader: SnapshotReader, cutoff: datetime, horizon_days: float | None, sample: Sample | None
) -> FeatureFrame:
    conn, crm = reader.conn, reader.crm  # crm: indexed by cx_key
    dropped = dict(reader.dropped)
    has_subs = reader.loaded["subscriptions"]
    churn_at = reader.churn_at
    results = []  # every per-customer query result: cx_id, cx_key, aggregates
    if has_subs:
        results.append(_subscription_state(conn, cutoff, horizon_days, sample))
        subs = _by_key(results[-1])
        # with another churn definition, who is still a customer is that definition's call
        universe = subs.index if churn_at is not None else subs.index[subs["live_subscriptions"] > 0]
        if not crm.empty:
            universe = universe.intersection(crm.index)
    elif not crm.empty:
        signup = reader.signup
        live = signup.isna() | (signup < pd.Timestamp(cutoff))
        if sample is not None:
            live &= (crm.index % sample.every) == sample.offset
        universe = crm.index[live]
        subs = pd.DataFrame(index=universe)
    else:
        universe = pd.Index([], dtype="int64")
        subs = pd.DataFrame()

    kinds = [
        _event_aggregates(conn, cutoff, sample),
        _ticket_aggregates(conn, cutoff, sample),
        _transaction_aggregates(conn, cutoff, sample),
    ]
    results += kinds
    parts = [_by_key(r) for r in kinds]
    if crm.empty and not has_subs:
        universe = parts[0].index.union(parts[1].index).union(parts[2].index)
    if churn_at is not None:  # customers already gone at the cutoff are not at risk of leaving
        gone_by = churn_at.reindex(universe)
        universe = universe[~(gone_by <= pd.Timestamp(cutoff)).to_numpy()]
    # the customer's cx_id per key (from the CRM when it is loaded, else from the query results)
    ids = (
        crm["cx_id"]
        if not crm.empty
        else (
            pd.concat([r[["cx_key", "cx_id"]] for r in results]).drop_duplicates("cx_key").set_index("cx_key")["cx_id"]
        )
    )
    # sorted by cx_id, so a snapshot (and the model trained on it) does not depend on the order in
    # which the database happened to return its groups, nor on the keys' history
    order = ids.reindex(universe).sort_values(kind="stable")
    frame = pd.DataFrame(index=pd.Index(order.index, name="cx_key"))
    for p in parts:
        frame = frame.join(p)
    if has_subs:
        frame = frame.join(subs)
    cx_id = pd.Series(order.to_numpy(), index=frame.index)

    numeric: list[str] = []
    categorical: list[str] = []
    if not crm.empty:
        crm_part = crm.reindex(frame.index)
        signup = reader.signup.reindex(frame.index)
        if reader.signup.notna().any():
            frame["tenure_days"] = (pd.Timestamp(cutoff) - signup).dt.total_seconds() / 86400
            numeric.append("tenure_days")
        frame = frame.join(reader.crm_features)
        numeric += reader.crm_numeric
        categorical += reader.crm_categorical
        frame["customer_id"] = crm_part["customer_id"].astype(object)
    if "customer_id" not in frame:
        frame["customer_id"] = cx_id.astype(object)
    frame["customer_id"] = frame["customer_id"].where(frame["customer_id"].notna(), cx_id.astype(object))

    if has_subs:
        first = pd.to_datetime(frame["first_start_ts"])
        tenure = (pd.Timestamp(cutoff) - first).dt.total_seconds() / 86400
        if "tenure_days" in frame:
            frame["tenure_days"] = frame["tenure_days"].fillna(tenure)
        else:
            frame["tenure_days"] = tenure
            numeric.append("tenure_days")
        numeric += ["mrr", "ended_subscriptions"]

    counts = [
        "web_events",
        "web_events_30d",
        "web_events_90d",
        "checkout_errors",
        "checkout_errors_30d",
        "marketing_touches_90d",
        "marketing_engaged_90d",
        "contacts",
        "contacts_30d",
        "contacts_90d",
        "open_tickets",
        "repeat_contacts",
        "repeat_contacts_90d",
        "transfers",
        "transferred_contacts_90d",
        "purchases",
        "purchases_90d",
        "revenue",
        "revenue_90d",
        "refunds",
        "failed_payments",
        "failed_payments_30d",
        "failed_payments_90d",
    ]
    for stem in INTENT_SIGNALS:
        counts += [f"{stem}_7d", f"{stem}_30d"]
    present = [c for c in counts if c in frame]
    if present:
        frame[present] = frame[present].astype(float).fillna(0.0)
    # Only keep event-derived features when the kind is loaded at all: a CRM-only table must not
    # get a wall of constant zeros.
    loaded = reader.loaded
    by_kind = {
        "events": [
            "web_events",
            "web_events_30d",
            "web_events_90d",
            "checkout_errors",
            "checkout_errors_30d",
            "marketing_touches_90d",
            "marketing_engaged_90d",
        ],
        "tickets": [
            "contacts",
            "contacts_30d",
            "contacts_90d",
            "open_tickets",
            "repeat_contacts",
            "repeat_contacts_90d",
            "transfers",
            "transferred_contacts_90d",
            "satisfaction_avg",
            "satisfaction_min",
        ],
        "transactions": [
            "purchases",
            "purchases_90d",
            "revenue",
            "revenue_90d",
            "refunds",
            "failed_payments",
            "failed_payments_30d",
            "failed_payments_90d",
        ],
    }
    ages = {
        "events": ["web", "checkout_errors", "marketing_engaged"],
        "tickets": ["contact", "repeat_contacts", "transfers"],
        "transactions": ["purchase", "failed_payments"],
    }
    for stem, (kind, _) in INTENT_SIGNALS.items():
        by_kind[kind] += [f"{stem}_7d", f"{stem}_30d"]
        ages[kind].append(stem)
    for kind, cols in by_kind.items():
        if not loaded[kind]:
            continue
        numeric += [c for c in cols if c in frame]
        for stem in ages[kind]:
            frame[f"days_since_{stem}"] = _age_days(cutoff, frame.get(f"last_{stem}_ts"))
            numeric.append(f"days_since_{stem}")
    if loaded["tickets"]:
        frame["resolution_hours_avg"] = frame["resolution_s_avg"].astype(float) / 3600
        numeric.append("resolution_hours_avg")

    frame["value"] = _value(frame, reader.value_basis)
    frame["label"] = np.nan
    if horizon_days is not None and churn_at is not None:
        when = churn_at.reindex(frame.index)
        frame["label"] = (when <= pd.Timestamp(cutoff + timedelta(days=horizon_days))).astype(float)
    elif horizon_days is not None and has_subs:
        live_until = pd.to_datetime(frame["live_until"])
        frame["label"] = (live_until <= pd.Timestamp(cutoff + timedelta(days=horizon_days))).astype(float)

    numeric = list(dict.fromkeys(n for n in numeric if n in frame))
    for n in numeric:
        frame[n] = pd.to_numeric(frame[n], errors="coerce").astype(float)
    keep = ["customer_id", *numeric, *categorical, "value", "label"]
    out = frame[keep].copy()
    out.index = pd.Index(cx_id.to_numpy(), name="cx_id")
    return FeatureFrame(out, numeric, categorical, cutoff, dropped)


def _by_key(result: pd.DataFrame) -> pd.DataFrame:
    """A per-customer query result indexed by the integer key (its cx_id column dropped)."""
    return result.drop(columns="cx_id").set_index("cx_key")


def _mapped_label_columns(conn: Connection, source: str | None) -> set[str]:
    """The file column names that customer loads mapped to ``churn_label``."""
    q = sa.select(loads_table.c.mapping_json).where(loads_table.c.kind == "customers")
    if source:
        q = q.where(loads_table.c.source == source)
    names = set()
    for (text,) in conn.execute(q):
        try:
            column = json.loads(text or "{}").get("columns", {}).get("churn_label")
        except (ValueError, AttributeError):
            column = None
        if column:
            names.add(column)
    return names


def labelled_features(
    conn: Connection, *, label_column: str = "churn_label", source: str | None = None
) -> FeatureFrame:
    """A customer table with its own label: CRM fields and attributes as features, the named
    column as the label (``churn_label`` or any attribute column). Rows with an empty label keep
    label NaN (scored, not trained on). Event-derived features are added as of the data's latest
    timestamp when other kinds are loaded."""
    crm = _crm(conn, source)
    if crm.empty:
        where = f" in source {source!r}" if source else ""
        raise LabelError(f"no customer rows{where}: load a customers table with a label column first")
    attrs = attribute_columns(crm["attrs"])
    if label_column not in attrs.columns and label_column in _mapped_label_columns(conn, source):
        label_column = "churn_label"  # the user named the file's column that was mapped to churn_label
    if label_column == "churn_label":
        label = crm["churn_label"].astype("Float64").astype(float)
    elif label_column in attrs.columns:
        label = parse_label(attrs[label_column])
    else:
        raise LabelError(
            f"label column {label_column!r} not found on the customer table; columns: {['churn_label', *attrs.columns]}"
        )
    if label.dropna().nunique() < 2:
        raise LabelError(
            f"label column {label_column!r} needs both churned and retained rows; found {label.value_counts().to_dict()}"
        )
    now = data_as_of(conn)
    base = customer_features(conn, cutoff=now + timedelta(seconds=1), source=source) if now else None
    dropped: dict[str, str] = {}
    feats, numeric, categorical = _crm_features(crm, now, dropped, exclude_attrs={label_column})
    frame = pd.DataFrame(index=crm.index)
    frame["customer_id"] = (
        crm["customer_id"].astype(object).where(crm["customer_id"].notna(), pd.Series(crm.index, index=crm.index))
    )
    frame = frame.join(feats)
    if base is not None:
        extra = [c for c in base.numeric if c not in frame]
        frame = frame.join(base.frame[extra])
        numeric += extra
        value = base.frame["value"].reindex(frame.index)
        # a customer missing from the snapshot is worth 0 on a known basis; no basis stays unknown
        frame["value"] = value if value_basis(conn) is None else value.fillna(0.0)
    else:
        frame["value"] = np.nan
    frame["label"] = label
    # a constant column tells the model nothing
    numeric = [n for n in dict.fromkeys(numeric) if frame[n].nunique(dropna=True) > 1]
    categorical = [c for c in dict.fromkeys(categorical) if frame[c].nunique(dropna=True) > 1]
    keep = ["customer_id", *numeric, *categorical, "value", "label"]
    return FeatureFrame(frame[keep].copy(), numeric, categorical, now, dropped)
