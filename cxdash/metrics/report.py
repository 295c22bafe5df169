"""The reports the pages read: the headline over everything stored, and the KPI report (every
shared KPI for a period against the previous period of the same length, with its coverage: the
share of customers that have the data it needs)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

import cxdash.metrics.churn as churn_defs
from cxdash.metrics.activation import activation_stats
from cxdash.metrics.churn import Definition
from cxdash.metrics.clv_forecast import ClvForecast, predicted_clv
from cxdash.metrics.cohorts import SPLIT_COLUMNS, snapshot_splits
from cxdash.metrics.customers import Filters, customer_base, customers_in_view
from cxdash.metrics.definitions import (
    ACTIVE_WINDOW_DAYS,
    DEFAULT_CLV_HORIZON_MONTHS,
    DEFAULT_REPEAT_DAYS,
    DEFINITIONS,
)
from cxdash.metrics.period_kpis import COUNT_COLUMNS, KPI_COLUMNS, kpi_table
from cxdash.metrics.periods import Period, as_of, default_period
from cxdash.metrics.queries import with_cx_id
from cxdash.metrics.rfm import rfm_at_ends
from cxdash.metrics.signals import matches
from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS, timeline
from cxdash.store import rollups
from cxdash.store.database import KIND_TABLES, Store, customer_keys_table, read_frame
from cxdash.store.dialect import among

__all__ = [
    "Headline",
    "KpiReport",
    "attach_activation",
    "coverage",
    "headline",
    "headline_after",
    "kpi_report",
    "money_currency",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Headline:
    as_of: datetime | None
    customers: int
    active_customers: int
    churned_customers: int
    churn_basis: str  # the definition's basis: "label", "subscriptions", "events", "inactivity", or "none"
    revenue: float
    churn_definition: str | None = None  # the churn definition's name (cxdash.metrics.churn)
    currency: str | None = None  # the transactions' currency (``money_currency``)

    def to_dict(self) -> dict:
        return {
            "currency": self.currency,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "customers": self.customers,
            "active_customers": self.active_customers,
            "churned_customers": self.churned_customers,
            "churn_basis": self.churn_basis,
            "churn_definition": self.churn_definition,
            "revenue": self.revenue,
        }


def _churned(
    conn: Connection, now: datetime | None, by: str = "cx_id", churn: Definition | None = None
) -> tuple[sa.Select, str]:
    """Select of churned customers (``by``: ``cx_id`` or the integer ``cx_key``) under the definition
    in force (``churn``, default the suggestion), and its basis (``none`` when the data supports no definition)."""
    definition = churn_defs.in_force(conn, churn)
    if definition is None:
        return sa.select(customer_keys_table.c[by]).where(sa.false()), "none"
    gone = churn_defs.churned(conn, definition, now=now, by=by).subquery("gone")
    return sa.select(gone.c[by]), definition.basis


def headline(conn: Connection, churn: Definition | None = None) -> Headline:
    """Customers, active, churned (under ``churn``, default the suggested definition) and revenue
    over everything stored."""
    now = as_of(conn)
    churn = churn_defs.in_force(conn, churn)
    # counted on the integer customer keys every row carries: no text joins over the event rows
    universe = churn_defs.customer_universe(conn, by="cx_key").subquery()
    customers = conn.execute(sa.select(sa.func.count()).select_from(universe)).scalar() or 0
    churned_q, basis = _churned(conn, now, by="cx_key", churn=churn)
    churned_sq = churned_q.subquery()
    churned = (
        conn.execute(
            sa.select(sa.func.count()).select_from(universe.join(churned_sq, churned_sq.c.cx_key == universe.c.cx_key))
        ).scalar()
        or 0
    )
    active = 0
    if now is not None:
        since = now - timedelta(days=ACTIVE_WINDOW_DAYS)
        parts = []
        for kind, col in TIMELINE_TIME_COLUMNS:
            t = KIND_TABLES[kind]
            parts.append(sa.select(t.c.cx_key).where(t.c[col] > since, t.c.cx_key.is_not(None)))
        recent = sa.union(*parts).subquery()
        active = (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(universe.join(recent, recent.c.cx_key == universe.c.cx_key))
                .where(universe.c.cx_key.not_in(sa.select(churned_sq.c.cx_key)))
            ).scalar()
            or 0
        )
    tx = KIND_TABLES["transactions"]
    revenue = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(tx.c.amount), 0.0)).where(
            sa.not_(matches("failed_payment", tx.c.status))
        )
    ).scalar()
    return Headline(
        now,
        int(customers),
        int(active),
        int(churned),
        basis,
        float(revenue or 0.0),
        churn.name if churn else None,
        money_currency(conn),
    )


def headline_after(
    conn: Connection,
    before: Headline,
    cases: list[int],
    loads: list[int],
    steps: sa.FromClause,
    churn: Definition | None = None,
) -> Headline:
    """The headline ``before`` after appends ``loads`` (touching the customers ``cases``) that leave
    its customers, who churned, the data's date and the revenue as they were (the caller knows: no
    CRM record, transaction or row the churn definition reads, and no later time): the active
    customers move by those customers' own, counted from their journey steps ``steps`` (every
    timeline row of theirs, read once by the caller) with and without the loads' rows, among them
    the customers of the universe not churned (their own keys and rows looked up, not everyone's)."""
    if before.as_of is None:  # no dated row, before or after: nobody is active, as computed whole
        return before
    churn = churn_defs.in_force(conn, churn)

    def theirs(t: sa.Table) -> tuple:
        return (among(t.c.cx_key, cases),)

    universe = churn_defs.customer_universe(conn, by="cx_key", rows=theirs).subquery()
    if churn is None:
        gone = sa.select(customer_keys_table.c.cx_key).where(sa.false())
    else:
        gone = churn_defs.churned(conn, churn, now=before.as_of, by="cx_key", rows=theirs)
    gone_sq = gone.subquery()
    since = before.as_of - timedelta(days=ACTIVE_WINDOW_DAYS)

    def active(without: list[int] | None) -> int:
        outside = [steps.c.load_id.not_in(without)] if without else []
        recent = sa.select(steps.c.cx_key).where(steps.c.ts > since, *outside).distinct().subquery()
        q = (
            sa.select(sa.func.count())
            .select_from(universe.join(recent, recent.c.cx_key == universe.c.cx_key))
            .where(universe.c.cx_key.not_in(sa.select(gone_sq.c.cx_key)))
        )
        return int(conn.execute(q).scalar() or 0)

    return replace(before, active_customers=before.active_customers + active(None) - active(loads))


def money_currency(conn: Connection) -> str | None:
    """The currency of the money figures: the transactions' one currency code, ``mixed: A, B`` when
    they hold several (amounts are then summed as recorded), None when no currency is known."""
    x = KIND_TABLES["transactions"]
    code = sa.func.upper(sa.func.trim(x.c.currency))
    found = sorted(
        r for (r,) in conn.execute(sa.select(code).where(x.c.currency.is_not(None)).distinct().limit(4)) if r
    )
    if not found:
        return None
    return found[0] if len(found) == 1 else "mixed: " + ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")


def coverage(
    conn: Connection,
    filters: Filters | None = None,
    churn: Definition | None = None,
    *,
    activity_after: dict[str, float | None] | None = None,
) -> dict[str, float | None]:
    """Per KPI, the share of the customers in view that have the data it needs (for churn: the
    customers the definition in force can judge).

    ``activity_after``: the coverage without filters from before appends of events alone that left
    the customers, their churn and every other kind's rows as they were: its figures are taken as
    they are but the share of customers with any activity, counted again (an event can be a
    customer's first)."""
    filters = filters or Filters()
    if activity_after is not None and filters.active:
        raise ValueError("activity_after: the coverage of every customer (no filters)")
    churn = churn_defs.in_force(conn, churn)

    def flags(kind: str, **having) -> tuple[sa.Subquery, dict[str, sa.ColumnElement]]:
        """One row per customer key of ``kind``'s table with a flag per name in ``having`` (1 when
        any of the customer's rows meets that condition, else NULL): one pass over the table for
        all its coverage figures instead of one DISTINCT per figure."""
        t = KIND_TABLES[kind]
        cols = [sa.func.max(sa.case((cond, 1))).label(name) for name, cond in having.items()]
        sq = sa.select(t.c.cx_key, *cols).where(t.c.cx_key.is_not(None)).group_by(t.c.cx_key).subquery(f"cov_{kind}")
        return sq, {name: sq.c[name] for name in having}

    k = KIND_TABLES["tickets"]
    x = KIND_TABLES["transactions"]
    u = KIND_TABLES["subscriptions"]
    crm = KIND_TABLES["customers"]
    tl = timeline(("cx_key", "ts"))
    activity = (
        rollups.customers_with_activity()
        if rollups.current(conn)
        else sa.select(tl.c.cx_key).where(tl.c.cx_key.is_not(None)).distinct().subquery()
    ).alias("cov_activity")
    if activity_after is not None:
        base = customer_base(conn, attributes=False).subquery("cov_customers")
        n, active = conn.execute(
            sa.select(sa.func.count(), sa.func.count(activity.c.cx_key)).select_from(
                base.outerjoin(activity, activity.c.cx_key == base.c.cx_key)
            )
        ).one()
        share = active / n if n else None
        return {**activity_after, "customers": 1.0 if n else None, "active_customers": share, "activation_rate": 0.0}
    cust, basis = customers_in_view(conn, filters, churn)
    churn_keys = (
        churn_defs.covered(conn, churn).subquery("cov_churn")
        if churn is not None
        else sa.select(crm.c.cx_key).where(sa.false()).subquery("cov_churn")
    )
    per_table = [
        flags("subscriptions", subscription=sa.true(), mrr=u.c.mrr.is_not(None)),
        flags("customers", label=crm.c.churn_label.is_not(None)),
        flags(
            "tickets",
            ticket=sa.true(),
            transfers=k.c.transfers.is_not(None),
            closed=k.c.closed_at.is_not(None),
            rated=k.c.satisfaction.is_not(None),
        ),
        flags("transactions", transaction=x.c.amount.is_not(None)),
    ]
    counted = {"activity": activity.c.cx_key, "churn": churn_keys.c.cx_key}
    joined = cust.outerjoin(activity, activity.c.cx_key == cust.c.cx_key).outerjoin(
        churn_keys, churn_keys.c.cx_key == cust.c.cx_key
    )
    for sq, named in per_table:
        joined = joined.outerjoin(sq, sq.c.cx_key == cust.c.cx_key)
        counted |= named
    cols = [sa.func.count().label("n"), *(sa.func.count(col).label(name) for name, col in counted.items())]
    row = conn.execute(sa.select(*cols).select_from(joined)).mappings().one()
    n = row["n"]

    def share(name: str) -> float | None:
        return (row[name] / n) if n else None

    churn_cov = share("churn") if basis != "none" else 0.0
    return {
        "customers": 1.0 if n else None,
        "active_customers": share("activity"),
        "churn_rate": churn_cov,
        "retention_rate": churn_cov,
        "revenue_churn_rate": share("mrr"),
        "renewal_rate": share("subscription"),
        "net_revenue_retention": share("transaction"),
        "silence_rate": share("ticket"),
        "contacts_per_active_customer": share("ticket"),
        "repeat_contact_rate": share("ticket"),
        "transfer_rate": share("transfers"),
        "handoffs_per_resolved": share("closed"),
        "median_hours_to_resolution": share("closed"),
        "satisfaction": share("rated"),
        "clv_historical_total": share("transaction"),
        "clv_predicted_total": share("transaction"),
        "activation_rate": 0.0,
    }


@dataclass
class KpiReport:
    """The shared KPIs for one period, the previous one, and how much of the customer base each covers."""

    as_of: datetime | None
    period: Period | None
    filters: Filters
    churn_basis: str
    repeat_days: int
    current: dict[str, float | None]
    previous: dict[str, float | None]
    coverage: dict[str, float | None]
    clv: ClvForecast | None = None
    clv_previous: ClvForecast | None = None
    notes: dict[str, str] = field(default_factory=dict)
    churn_definition: str | None = None  # the churn definition's name (cxdash.metrics.churn)
    churn_dated: bool = False  # churn has dates: period figures; else a snapshot
    # With no dates at all: churn per CRM attribute value (``snapshot_splits``), else empty.
    splits: pd.DataFrame | None = None
    currency: str | None = None  # the money figures' currency (``money_currency``)

    def value(self, name: str) -> float | None:
        return self.current.get(name)

    def delta(self, name: str) -> float | None:
        a, b = self.current.get(name), self.previous.get(name)
        if a is None or b is None:
            return None
        return a - b

    def to_state(self) -> dict:
        """Everything but the per-customer forecasts, as JSON values (``from_state`` reads it back).
        The totals those forecasts give are already in ``current`` and ``previous``."""

        def forecast(f: ClvForecast | None) -> dict | None:
            if f is None:
                return None
            return {
                "ok": f.ok,
                "message": f.message,
                "horizon_months": f.horizon_months,
                "params": {k: float(v) for k, v in f.params.items()},
                "repeat_buyers": int(f.repeat_buyers),
            }

        return {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "period": [self.period.start.isoformat(), self.period.end.isoformat()] if self.period else None,
            "filters": {f.name: list(getattr(self.filters, f.name)) for f in fields(self.filters)},
            "churn_basis": self.churn_basis,
            "repeat_days": self.repeat_days,
            "current": self.current,
            "previous": self.previous,
            "coverage": self.coverage,
            "clv": forecast(self.clv),
            "clv_previous": forecast(self.clv_previous),
            "notes": self.notes,
            "churn_definition": self.churn_definition,
            "churn_dated": self.churn_dated,
            "splits": None if self.splits is None else self.splits.to_dict(orient="records"),
            "currency": self.currency,
        }

    @classmethod
    def from_state(cls, state: dict) -> KpiReport:
        def forecast(d: dict | None) -> ClvForecast | None:
            return (
                None
                if d is None
                else ClvForecast(
                    d["ok"], d["message"], d["horizon_months"], params=d["params"], repeat_buyers=d["repeat_buyers"]
                )
            )

        period = state["period"]
        return cls(
            datetime.fromisoformat(state["as_of"]) if state["as_of"] else None,
            Period(datetime.fromisoformat(period[0]), datetime.fromisoformat(period[1])) if period else None,
            Filters(**state["filters"]),
            state["churn_basis"],
            state["repeat_days"],
            dict(state["current"]),
            dict(state["previous"]),
            dict(state["coverage"]),
            forecast(state["clv"]),
            forecast(state["clv_previous"]),
            dict(state["notes"]),
            state.get("churn_definition"),
            bool(state.get("churn_dated")),
            None if state.get("splits") is None else pd.DataFrame(state["splits"], columns=list(SPLIT_COLUMNS)),
            state.get("currency"),
        )

    def to_dict(self) -> dict:
        """Flat JSON-ready dict: every KPI under its own key, plus ``previous``, ``coverage`` and context."""
        out: dict = {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "period_start": self.period.start.date().isoformat() if self.period else None,
            "period_end": (self.period.end - timedelta(days=1)).date().isoformat() if self.period else None,
            "filters": {f.name: list(getattr(self.filters, f.name)) for f in fields(self.filters)},
            "churn_basis": self.churn_basis,
            "churn_definition": self.churn_definition,
            "churn_dated": self.churn_dated,
            "repeat_days": self.repeat_days,
        }
        out.update(self.current)
        out["previous"] = dict(self.previous)
        out["coverage"] = dict(self.coverage)
        out["notes"] = dict(self.notes)
        return out


def _clean(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def kpi_report(
    conn: Connection,
    period: Period | None = None,
    filters: Filters | None = None,
    *,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    horizon_months: int = DEFAULT_CLV_HORIZON_MONTHS,
    clv: ClvForecast | None = None,
    clv_previous: ClvForecast | None = None,
    with_clv: bool = True,
    churn: Definition | None = None,
    clv_from: KpiReport | None = None,
    kpi_sections: frozenset[str] | None = None,
    kpi_touched: tuple | None = None,
    coverage_after: dict[str, float | None] | None = None,
) -> KpiReport:
    """Every shared KPI for ``period`` (default: the 90 days to the data's latest date) and the previous period.

    ``clv`` / ``clv_previous`` may be passed in (a cached fit); otherwise they are fitted here unless
    ``with_clv`` is False. The predicted total covers the customers in view.

    ``clv_from``: a report of the same period, without filters, computed before changes that left
    every purchase as it was: its forecasts and predicted totals are taken as they are (the fits
    read purchases alone), the per-customer figure divided by the customers counted now. With it,
    ``kpi_sections``: the parts of the KPI table (``period_kpis.SECTIONS``) the changes may have moved,
    computed again; the others are taken from ``clv_from`` as they are; ``kpi_touched``: the
    table's ``touched`` (its activity part caught up from a few customers' rows); ``coverage_after``:
    ``coverage``'s ``activity_after`` (appends of events alone, the customers and their churn standing).
    """
    if clv_from is not None and ((filters is not None and filters.active) or (period and clv_from.period != period)):
        raise ValueError("clv_from: a report of the same period and no filters, whose purchases are unchanged")
    filters = filters or Filters()
    now = as_of(conn)
    period = period or default_period(now)
    churn = churn_defs.in_force(conn, churn)
    basis = churn.basis if churn else "none"
    dated = churn_defs.is_dated(conn, churn)
    cov = coverage(conn, filters, churn, activity_after=coverage_after)
    if churn is None:
        churn_note = "No churn label, subscriptions, churn records or dated activity loaded: churn is unknown."
    else:
        churn_note = f"Churn = {churn.describe()} [{churn.name}]." + (
            "" if dated else " The definition has no dates: a snapshot, the same for every period."
        )
    notes = {
        "churn_rate": churn_note,
        "activation_rate": "Not available yet: no customers have been scored for churn risk.",
    }
    if period is None:
        # No dates at all (a customer table with a label): every figure a snapshot allows.
        empty = {name: None for name in DEFINITIONS}
        current = dict(empty)
        cust, mode = customers_in_view(conn, filters, churn)
        n, gone = conn.execute(sa.select(sa.func.count(), sa.func.sum(cust.c.label_churned))).one()
        current["customers"] = int(n or 0)
        if mode == "snapshot" and n:
            current["churned_in_period"] = int(gone or 0)
            current["churn_rate"] = float(gone or 0) / n
            current["retention_rate"] = 1.0 - current["churn_rate"]
        notes["period"] = (
            "The loaded data has no dates, so these are a snapshot. Figures over a period (active "
            "customers, the silence metric, contacts, revenue, renewal and CLV) need dated data: "
            "events, tickets, transactions or subscriptions."
        )
        return KpiReport(
            now,
            None,
            filters,
            basis,
            repeat_days,
            current,
            dict(empty),
            cov,
            notes=notes,
            churn_definition=churn.name if churn else None,
            churn_dated=dated,
            splits=snapshot_splits(conn, filters, churn),
            currency=money_currency(conn),
        )
    keep = None
    if clv_from is not None and kpi_sections is not None:
        keep = pd.DataFrame([clv_from.current, clv_from.previous], columns=list(KPI_COLUMNS))
        keep.insert(0, "period_start", [period.start, period.previous.start])
    table = kpi_table(
        conn,
        [period, period.previous],
        filters,
        repeat_days=repeat_days,
        churn=churn,
        keep=keep,
        sections=kpi_sections,
        touched=kpi_touched,
    )
    current = {c: _clean(table.at[0, c]) for c in KPI_COLUMNS}
    previous = {c: _clean(table.at[1, c]) for c in KPI_COLUMNS}
    for values in (current, previous):
        for c in COUNT_COLUMNS:
            if values[c] is not None:
                values[c] = int(values[c])
        if not cov.get("active_customers"):  # no dated activity at all: unknown, not zero
            values["active_customers"] = values["silent_customers"] = None
    if not dated:
        previous["churn_rate"] = previous["retention_rate"] = None  # a snapshot has no previous period
    if clv_from is not None:
        clv, clv_previous = clv_from.clv, clv_from.clv_previous
        kept = (clv_from.current, clv_from.previous)
    else:
        if with_clv and (clv is None or clv_previous is None):
            # both forecasts' purchase summaries from one pass over the transactions
            ends = [e for e, f in ((period.end, clv), (period.previous.end, clv_previous)) if f is None]
            rfms = rfm_at_ends(conn, ends)
            clv = clv or predicted_clv(conn, period.end, horizon_months=horizon_months, rfm=rfms[period.end])
            clv_previous = clv_previous or predicted_clv(
                conn, period.previous.end, horizon_months=horizon_months, rfm=rfms[period.previous.end]
            )
        kept = (None, None)
    _clv_figures(conn, filters, churn, ((clv, current, kept[0]), (clv_previous, previous, kept[1])))
    if clv is not None and not clv.ok:
        notes["clv_predicted_total"] = clv.message
    current["activation_rate"] = previous["activation_rate"] = None
    return KpiReport(
        now,
        period,
        filters,
        basis,
        repeat_days,
        current,
        previous,
        cov,
        clv,
        clv_previous,
        notes,
        churn_definition=churn.name if churn else None,
        churn_dated=dated,
        currency=money_currency(conn),
    )


def _clv_figures(conn: Connection, filters: Filters, churn: Definition | None, pairs) -> None:
    """Set ``clv_predicted_total`` and ``clv_predicted_per_customer`` in each period's figures from
    ``pairs`` of (forecast, figures, kept figures or None): the forecast summed over the customers
    in view, or the kept total as it is; per customer, over the customers counted in ``figures``."""
    ids_in_view = None
    if filters.active and any(f is not None and f.ok and kept is None for f, _, kept in pairs):
        cust, _ = customers_in_view(conn, filters, churn)
        ids_in_view = pd.Index(read_frame(conn, with_cx_id(cust, columns=()))["cx_id"])  # as a column, not rows
    for forecast, target, kept in pairs:
        if forecast is None:
            target["clv_predicted_total"] = None
            target["clv_predicted_per_customer"] = None
            continue
        total = forecast.total(ids_in_view) if kept is None else kept.get("clv_predicted_total")
        target["clv_predicted_total"] = total
        n = target.get("customers") or 0
        target["clv_predicted_per_customer"] = (total / n) if (total is not None and n) else None


def attach_activation(report: KpiReport, store: Store) -> KpiReport:
    """Fill the activation slot from the at-risk list (``cxdash.metrics.activation``), when one has been scored.

    The list covers every scored customer, so filters do not apply to it (the note says so). Without
    scores the slot stays empty with the reason.
    """
    try:
        stats = activation_stats(store)
    except SQLAlchemyError as exc:  # app-state tables missing or unreadable: keep the slot honestly empty
        log.info("activation stats unavailable: %s", exc)
        return report
    if stats.get("share_acted") is None:
        report.notes["activation_rate"] = (
            "No customers have been scored for churn risk yet (train and score on the Churn model page)."
        )
        return report
    acted = stats["contacted"] + stats["actioned"]
    wait = stats.get("median_hours_to_first_action")
    report.current["activation_rate"] = float(stats["share_acted"])
    report.coverage["activation_rate"] = 1.0
    report.notes["activation_rate"] = (
        f"{acted:,} of the {stats['at_risk']:,} customers in the top risk decile were contacted or actioned"
        + (f" (median {wait:,.1f} h from scoring to first action)" if wait is not None else "")
        + "; the at-risk list covers all customers, so filters do not apply."
    )
    return report
