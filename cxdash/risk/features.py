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

The SQL behind each snapshot is in ``cxdash.risk.aggregates``; the customer record's columns
(attributes, identifiers, labels) in ``cxdash.risk.attributes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.churn import churned
from cxdash.risk.aggregates import (
    INTENT_SIGNALS,
    Customers,
    Sample,
    crm_records,
    data_as_of,
    event_aggregates,
    has_rows,
    mapped_label_columns,
    subscription_state,
    ticket_aggregates,
    transaction_aggregates,
    value_basis,
)
from cxdash.risk.attributes import LabelError, attribute_columns, crm_features, parse_label
from cxdash.store.database import KIND_TABLES, customer_keys_table, read_frame

__all__ = ["AGE_CAP_DAYS", "FeatureFrame", "SnapshotReader", "customer_features", "labelled_features"]

AGE_CAP_DAYS = 365.0  # "never" and anything older than a year look the same to the model


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

    def __init__(
        self,
        conn: Connection,
        *,
        source: str | None = None,
        churn=None,
        customers: Customers | None = None,
        schema: tuple[list[str], list[str]] | None = None,
    ):
        """``churn``: a dated ``cxdash.metrics.churn.Definition`` whose churn dates give the labels and the
        customers already gone at a cutoff (None: subscription ends, as before). ``customers``: read
        only these customers (a rescore of the ones a load touched), with their attributes typed by
        ``schema``, the model's (numeric, categorical) features; every snapshot is then limited to them."""
        self.conn = conn
        self.customers = customers
        self.schema = schema
        self.dropped: dict[str, str] = {}
        self.churn_at: pd.Series | None = None  # cx_key -> when the customer churned, under ``churn``
        if churn is not None:
            gone_q = churned(conn, churn).subquery()
            gone = read_frame(conn, _sampled_select(gone_q, customers))
            self.churn_at = pd.Series(
                pd.to_datetime(gone["churn_at"]).to_numpy(),
                index=gone["cx_key"].astype("int64"),
                dtype="datetime64[ns]",
            )
        # keyed by the integer cx_key: a snapshot joins the kinds' results on it
        self.crm = crm_records(conn, source, customers).reset_index().set_index("cx_key")
        # whether the store holds CRM records at all (a few customers' may all be missing)
        self.has_crm = not self.crm.empty or (customers is not None and _has_crm(conn, source))
        self.loaded = {k: has_rows(conn, k) for k in ("events", "tickets", "transactions", "subscriptions")}
        self.value_basis = value_basis(conn)
        self.crm_features = pd.DataFrame(index=self.crm.index)
        self.crm_numeric: list[str] = []
        self.crm_categorical: list[str] = []
        if not self.crm.empty:
            # tenure depends on the cutoff: added per snapshot
            self.crm_features, self.crm_numeric, self.crm_categorical = crm_features(
                self.crm, None, self.dropped, exclude_attrs=set(), schema=schema
            )
            self.signup = pd.to_datetime(self.crm["signup_date"])

    def features(
        self, cutoff: datetime, *, horizon_days: float | None = None, sample: Sample | None = None
    ) -> FeatureFrame:
        """One snapshot; see ``customer_features``."""
        if self.customers is not None:
            if sample is not None:
                raise ValueError("a reader limited to given customers takes no sample")
            sample = self.customers
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


def _sampled_select(rows: sa.Subquery, customers: Customers | None) -> sa.Select:
    """``rows`` (with a ``cx_key`` column), only ``customers``' when given."""
    q = sa.select(rows)
    return q if customers is None else q.where(customers.where(rows.c.cx_key))


def _has_crm(conn: Connection, source: str | None) -> bool:
    """Whether any CRM record (of ``source``) is stitched to a customer."""
    c = KIND_TABLES["customers"]
    q = sa.select(sa.literal(1)).select_from(c).where(c.c.cx_key.is_not(None))
    if source:
        q = q.where(c.c.source == source)
    return conn.execute(q.limit(1)).first() is not None


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
    # every per-customer query result: cx_id, cx_key, aggregates
    results, subs, universe = _live_customers(reader, cutoff, horizon_days, sample)

    kinds = [
        event_aggregates(conn, cutoff, sample),
        ticket_aggregates(conn, cutoff, sample),
        transaction_aggregates(conn, cutoff, sample),
    ]
    results += kinds
    parts = [_by_key(r) for r in kinds]
    if not reader.has_crm and not has_subs:
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
        if reader.signup.notna().any() or (reader.schema is not None and "tenure_days" in reader.schema[0]):
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

    numeric += _activity_features(frame, cutoff, reader.loaded)

    frame["value"] = _value(frame, reader.value_basis)
    frame["label"] = _label(frame, cutoff, horizon_days, churn_at, has_subs=has_subs)

    numeric = list(dict.fromkeys(n for n in numeric if n in frame))
    for n in numeric:
        frame[n] = pd.to_numeric(frame[n], errors="coerce").astype(float)
    keep = ["customer_id", *numeric, *categorical, "value", "label"]
    out = frame[keep].copy()
    out.index = pd.Index(cx_id.to_numpy(), name="cx_id")
    return FeatureFrame(out, numeric, categorical, cutoff, dropped)


def _live_customers(
    reader: SnapshotReader, cutoff: datetime, horizon_days: float | None, sample: Sample | None
) -> tuple[list[pd.DataFrame], pd.DataFrame, pd.Index]:
    """Who is a customer at ``cutoff`` before the activity is read: the subscription query's result
    (a list of the one result, or empty), its rows by key, and the customers' keys."""
    conn, crm = reader.conn, reader.crm
    if reader.loaded["subscriptions"]:
        result = subscription_state(conn, cutoff, horizon_days, sample)
        subs = _by_key(result)
        # with another churn definition, who is still a customer is that definition's call
        universe = subs.index if reader.churn_at is not None else subs.index[subs["live_subscriptions"] > 0]
        if reader.has_crm:
            universe = universe.intersection(crm.index)
        return [result], subs, universe
    if reader.has_crm:
        if crm.empty:  # none of the given customers has a CRM record: none is a customer
            return [], pd.DataFrame(), pd.Index([], dtype="int64", name="cx_key")
        signup = reader.signup
        live = signup.isna() | (signup < pd.Timestamp(cutoff))
        if sample is not None:
            live &= sample.keeps(crm.index)
        universe = crm.index[live]
        return [], pd.DataFrame(index=universe), universe
    return [], pd.DataFrame(), pd.Index([], dtype="int64")


# The activity features of each kind (their intent signals' 7/30-day counts are added per signal)
# and the stems of the ``days_since_<stem>`` ages read from ``last_<stem>_ts``.
_KIND_FEATURES = {
    "events": (
        "web_events",
        "web_events_30d",
        "web_events_90d",
        "checkout_errors",
        "checkout_errors_30d",
        "marketing_touches_90d",
        "marketing_engaged_90d",
    ),
    "tickets": (
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
    ),
    "transactions": (
        "purchases",
        "purchases_90d",
        "revenue",
        "revenue_90d",
        "refunds",
        "failed_payments",
        "failed_payments_30d",
        "failed_payments_90d",
    ),
}
_NOT_COUNTS = ("satisfaction_avg", "satisfaction_min")  # a missing rating is unknown, not 0
_AGE_STEMS = {
    "events": ("web", "checkout_errors", "marketing_engaged"),
    "tickets": ("contact", "repeat_contacts", "transfers"),
    "transactions": ("purchase", "failed_payments"),
}


def _activity_features(frame: pd.DataFrame, cutoff: datetime, loaded: dict[str, bool]) -> list[str]:
    """Fill the activity counts (none is 0) and add the ages, in ``frame``; returns the numeric
    features of the kinds that are loaded. Only kinds loaded at all give features: a CRM-only
    table must not get a wall of constant zeros."""
    by_kind = {kind: list(cols) for kind, cols in _KIND_FEATURES.items()}
    ages = {kind: list(stems) for kind, stems in _AGE_STEMS.items()}
    for stem, (kind, _) in INTENT_SIGNALS.items():
        by_kind[kind] += [f"{stem}_7d", f"{stem}_30d"]
        ages[kind].append(stem)
    present = [c for cols in by_kind.values() for c in cols if c not in _NOT_COUNTS and c in frame]
    if present:
        frame[present] = frame[present].astype(float).fillna(0.0)
    numeric = []
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
    return numeric


def _label(
    frame: pd.DataFrame, cutoff: datetime, horizon_days: float | None, churn_at: pd.Series | None, *, has_subs: bool
) -> pd.Series | float:
    """1.0 when the customer churned within ``horizon_days`` after ``cutoff`` (by the churn
    definition's dates, else by subscription ends), 0.0 when not, NaN without a horizon."""
    if horizon_days is None:
        return np.nan
    end = pd.Timestamp(cutoff + timedelta(days=horizon_days))
    if churn_at is not None:
        return (churn_at.reindex(frame.index) <= end).astype(float)
    if has_subs:
        return (pd.to_datetime(frame["live_until"]) <= end).astype(float)
    return np.nan


def _by_key(result: pd.DataFrame) -> pd.DataFrame:
    """A per-customer query result indexed by the integer key (its cx_id column dropped)."""
    return result.drop(columns="cx_id").set_index("cx_key")


def labelled_features(
    conn: Connection, *, label_column: str = "churn_label", source: str | None = None
) -> FeatureFrame:
    """A customer table with its own label: CRM fields and attributes as features, the named
    column as the label (``churn_label`` or any attribute column). Rows with an empty label keep
    label NaN (scored, not trained on). Event-derived features are added as of the data's latest
    timestamp when other kinds are loaded."""
    crm = crm_records(conn, source)
    if crm.empty:
        where = f" in source {source!r}" if source else ""
        raise LabelError(f"no customer rows{where}: load a customers table with a label column first")
    attrs = attribute_columns(crm["attrs"])
    if label_column not in attrs.columns and label_column in mapped_label_columns(conn, source):
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
    feats, numeric, categorical = crm_features(crm, now, dropped, exclude_attrs={label_column})
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
