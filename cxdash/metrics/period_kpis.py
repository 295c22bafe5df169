"""The KPI table: every period-based shared KPI for any list of periods, in one pass in the database.

Every KPI is written once, as SQL parameterised by a *period spine* (``periods.period_spine``): a
small derived table of ``(bucket, p_start, p_end, prev_start)`` rows. The fact tables are joined to
the spine on their timestamp, so the same query gives the current period, the previous one and
each month of a trend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.churn import Definition
from cxdash.metrics.customers import Filters, customers_in_view, not_churned_by, paid_transactions, tickets_in_view
from cxdash.metrics.definitions import DEFAULT_REPEAT_DAYS
from cxdash.metrics.periods import Period, day_spine, period_spine
from cxdash.metrics.queries import at_midnight, count_rows, day_of, epoch, ratio, read_frame
from cxdash.metrics.signals import matches
from cxdash.metrics.timeline import timeline
from cxdash.store import rollups
from cxdash.store.database import KIND_TABLES, sources_table
from cxdash.store.dialect import among

__all__ = ["COUNT_COLUMNS", "KPI_COLUMNS", "SECTIONS", "kpi_table", "sections_reading"]


KPI_COLUMNS = (
    "customers",
    "active_customers",
    "customers_at_start",
    "churned_in_period",
    "churn_rate",
    "retention_rate",
    "revenue_churn_rate",
    "renewal_rate",
    "net_revenue_retention",
    "revenue",
    "contacts",
    "silent_customers",
    "silence_rate",
    "contacts_per_active_customer",
    "repeat_contact_rate",
    "transfer_rate",
    "handoffs_per_resolved",
    "median_hours_to_resolution",
    "satisfaction",
    "clv_historical_total",
    "clv_historical_per_customer",
)


COUNT_COLUMNS = (
    "customers",
    "active_customers",
    "customers_at_start",
    "churned_in_period",
    "contacts",
    "silent_customers",
)

# The table's parts, each one query (or two) over the kinds of rows it reads: a part whose kinds
# did not change gives the same figures (for the same periods, customers and churn definition),
# so ``kpi_table(keep=...)`` computes only the parts asked for. Two ratios straddle two parts and
# are worked out from the figures either way.
SECTIONS: dict[str, tuple[str, ...]] = {
    "customers": ("customers", "customers_at_start", "churned_in_period", "churn_rate", "retention_rate"),
    "subscriptions": ("renewal_rate", "revenue_churn_rate"),
    "activity": ("active_customers", "silent_customers", "silence_rate"),
    "contacts": (
        "contacts",
        "repeat_contact_rate",
        "transfer_rate",
        "handoffs_per_resolved",
        "median_hours_to_resolution",
        "satisfaction",
    ),
    "revenue": ("revenue", "net_revenue_retention", "clv_historical_total"),
}
_ACROSS = ("contacts_per_active_customer", "clv_historical_per_customer")
# Which parts read each kind's rows. Every dated row is an activity; the CRM records are the
# customers themselves (every part joins them), and the churn records feed the churn definition.
_READ_BY: dict[str, frozenset[str] | None] = {
    "events": frozenset({"activity"}),
    "tickets": frozenset({"activity", "contacts"}),
    "transactions": frozenset({"activity", "revenue"}),
    "subscriptions": frozenset({"activity", "subscriptions"}),
    "opportunities": frozenset({"activity"}),
    "customers": None,
    "churn": None,
}


def sections_reading(kinds) -> frozenset[str] | None:
    """The parts of the table that read rows of ``kinds``, or None when one of them changes the
    customers (CRM records), the churn records or is unknown here: every part then."""
    out: set[str] = set()
    for kind in kinds:
        parts = _READ_BY.get(kind)
        if parts is None:
            return None
        out |= parts
    return frozenset(out)


def kpi_table(
    conn: Connection,
    periods: list[Period],
    filters: Filters | None = None,
    *,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    churn: Definition | None = None,
    use_rollups: bool = True,
    keep: pd.DataFrame | None = None,
    sections: frozenset[str] | None = None,
    touched: tuple | None = None,
) -> pd.DataFrame:
    """Every period-based shared KPI for each period, computed in the database (churn under ``churn``,
    default the suggested definition).

    ``keep`` and ``sections``: a table computed before for the same periods, filters, repeat window
    and churn definition, and the parts of it (``SECTIONS``) to compute again; the others are taken
    from ``keep`` as they are (the caller knows their rows did not change: ``sections_reading``).
    ``touched`` (customers, loads holding events alone, no other change since ``keep``, and
    optionally those customers' journey steps read once by the caller: ``journeys.journey_log``'s
    columns): the activity part is then ``keep``'s, plus those customers' counts now, less their
    counts without the loads' rows (a customer is active or contacted in a period by their own rows
    alone).

    Active customers, silence and revenue read the daily rollups (``cxdash.store.rollups``) when the
    periods start and end at midnight and the rollups hold the current data (``use_rollups``: False
    reads the rows always); the same numbers, from fewer rows.

    In: periods (any lengths, may overlap). Out: one row per period, indexed ``0..len-1`` like
    ``periods``, columns ``period_start, period_end`` and ``KPI_COLUMNS`` (NaN where the data has no
    answer: no subscriptions, no tickets...). Rates are fractions (0.25 = 25%).
    """
    filters = filters or Filters()
    if repeat_days < 0:
        raise ValueError("repeat_days must be >= 0")
    out = pd.DataFrame(
        {"period_start": [p.start for p in periods], "period_end": [p.end for p in periods]},
        index=pd.RangeIndex(len(periods), name="bucket"),
    )
    for col in KPI_COLUMNS:
        out[col] = np.nan
    if not periods:
        return out
    if keep is not None:
        if (
            sections is None
            or len(keep) != len(periods)
            or not (keep["period_start"].tolist() == out["period_start"].tolist())
        ):
            raise ValueError("keep: a table of the same periods, with the sections to compute again")
        for name, columns in SECTIONS.items():
            if name not in sections:
                for c in columns:
                    out[c] = keep[c].to_numpy()

    spine = period_spine(periods)
    cust, basis = customers_in_view(conn, filters, churn)
    day_aligned = all(at_midnight(p.start) and at_midnight(p.end) for p in periods)
    table = _Table(
        conn=conn,
        out=out,
        periods=periods,
        filters=filters,
        spine=spine,
        cust=cust,
        basis=basis,
        tickets=tickets_in_view(cust, filters, repeat_days),
        has_tickets=count_rows(conn, KIND_TABLES["tickets"]) > 0,
        has_purchases=count_rows(conn, KIND_TABLES["transactions"]) > 0,
        # With periods on day boundaries, the timeline is first reduced to one row per customer and
        # day (several times fewer rows to join against the periods; the same answer): kept so in
        # the rollups.
        day_aligned=day_aligned,
        from_rollups=bool(day_aligned and use_rollups and rollups.current(conn)),
        # the figures kept must be known ones for counts to be added to them
        touched=touched if keep is not None and keep[list(SECTIONS["activity"][:2])].notna().all().all() else None,
        keep=keep,
        churn=churn,
    )
    parts = {
        "customers": _customers_part,
        "subscriptions": _subscriptions_part,
        "activity": _activity_part,
        "contacts": _contacts_part if table.has_tickets else None,
        "revenue": _revenue_part if table.has_purchases else None,
    }
    for name, part in parts.items():
        if part is not None and (keep is None or name in sections):
            part(table)
    # the ratios across two parts
    if table.has_tickets:
        out["contacts_per_active_customer"] = ratio(out["contacts"], out["active_customers"])
    if table.has_purchases:
        out["clv_historical_per_customer"] = ratio(out["clv_historical_total"], out["customers"])
    return out


@dataclass
class _Table:
    """What every part of ``kpi_table`` reads, and the frame they fill (``out``)."""

    conn: Connection
    out: pd.DataFrame
    periods: list[Period]
    filters: Filters
    spine: sa.FromClause
    cust: sa.FromClause
    basis: str
    tickets: sa.FromClause
    has_tickets: bool
    has_purchases: bool
    day_aligned: bool
    from_rollups: bool
    touched: tuple | None = None  # (customers, loads[, their journey steps])
    keep: pd.DataFrame | None = None
    churn: Definition | None = None


def _customers_part(t: _Table) -> None:
    """Customers, the base at each period's start and who of them churned in it (CRM records, churn)."""
    conn, out, spine, cust, basis = t.conn, t.out, t.spine, t.cust, t.basis
    signed_by_end = sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at < spine.c.p_end)
    at_start = sa.and_(
        sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at < spine.c.p_start),
        not_churned_by(cust, spine.c.p_start),
    )
    churned_in = sa.and_(at_start, cust.c.churn_at.is_not(None), cust.c.churn_at < spine.c.p_end)
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.sum(sa.case((signed_by_end, 1), else_=0)).label("customers"),
            sa.func.sum(sa.case((at_start, 1), else_=0)).label("customers_at_start"),
            sa.func.sum(sa.case((churned_in, 1), else_=0)).label("churned_in_period"),
            sa.func.sum(cust.c.label_churned).label("label_churned"),
        )
        .select_from(spine.join(cust, sa.true()))
        .group_by(spine.c.bucket)
    )
    f = read_frame(conn, q)
    out["customers"] = f["customers"].reindex(out.index).fillna(0).astype(int)
    if basis == "dated":
        out["customers_at_start"] = f["customers_at_start"]
        out["churned_in_period"] = f["churned_in_period"]
        out["churn_rate"] = ratio(f["churned_in_period"], f["customers_at_start"])
    elif basis == "snapshot":
        out["churned_in_period"] = f["label_churned"]
        out["churn_rate"] = ratio(f["label_churned"], f["customers"])
    out["retention_rate"] = 1.0 - out["churn_rate"]


def _subscriptions_part(t: _Table) -> None:
    """Renewals and revenue churn (subscriptions)."""
    conn, out, spine, cust = t.conn, t.out, t.spine, t.cust
    subs = KIND_TABLES["subscriptions"]
    running = sa.and_(subs.c.start < spine.c.p_start, sa.or_(subs.c.end.is_(None), subs.c.end >= spine.c.p_start))
    ended_in = sa.and_(running, subs.c.end.is_not(None), subs.c.end < spine.c.p_end)
    kept = sa.and_(running, sa.or_(subs.c.end.is_(None), subs.c.end >= spine.c.p_end))
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.sum(sa.case((running, 1), else_=0)).label("due"),
            sa.func.sum(sa.case((kept, 1), else_=0)).label("renewed"),
            sa.func.sum(sa.case((running, subs.c.mrr), else_=0.0)).label("mrr_start"),
            sa.func.sum(sa.case((ended_in, subs.c.mrr), else_=0.0)).label("mrr_lost"),
        )
        .select_from(spine.join(subs, sa.true()).join(cust, cust.c.cx_key == subs.c.cx_key))
        .group_by(spine.c.bucket)
    )
    f = read_frame(conn, q)
    if not f.empty:
        out["renewal_rate"] = ratio(f["renewed"], f["due"])
        out["revenue_churn_rate"] = ratio(f["mrr_lost"], f["mrr_start"])


def _activity_part(t: _Table) -> None:
    """Active customers and the silence metric (every dated row, tickets for the contacted). With
    ``t.touched`` (customers, loads of events): the kept figures, plus those customers' counts now,
    less their counts without those loads' rows."""
    out = t.out
    if t.touched is None:
        f = _activity_counts(t)
    else:
        cases, loads, *steps = t.touched
        moved = _activity_counts(t, cases, loads, steps=steps).fillna(0)
        kept = t.keep.set_axis(out.index)
        f = pd.DataFrame(
            {"active": kept["active_customers"], "contacted": kept["active_customers"] - kept["silent_customers"]}
        )
        f = (
            f.astype(float)
            + moved[["active", "contacted"]]
            - moved[["active_before", "contacted_before"]].set_axis(["active", "contacted"], axis=1)
        )
    out["active_customers"] = f["active"].fillna(0).astype(int)
    out["silent_customers"] = (f["active"] - f["contacted"]).fillna(0).astype(int)
    if t.has_tickets:
        out["silence_rate"] = ratio(out["silent_customers"], out["active_customers"])


def _activity_counts(
    t: _Table, cases: list[int] | None = None, kept_apart: list[int] | None = None, steps: list | None = None
) -> pd.DataFrame:
    """Per period (``t.out``'s index): ``active`` customers (any dated row in it, not churned by its
    end) and of them ``contacted`` (a ticket opened in it); of ``cases`` alone, and with ``kept_apart``
    (loads), ``active_before`` and ``contacted_before`` too: the same from their rows but those of the
    loads (their tickets are read whole: the loads hold events alone), in the same pass. ``steps``:
    ``[their journey steps]`` when the caller read them (``_active_days``)."""
    conn, out, spine, tk = t.conn, t.out, t.spine, t.tickets
    filters, periods, day_aligned, from_rollups = t.filters, t.periods, t.day_aligned, t.from_rollups
    # of a few customers: their own rows and churn alone (every customer's churn is a pass over
    # every subscription, at 1M customers most of the time of a count for 1,000)
    if cases is not None:
        cust = customers_in_view(conn, filters, t.churn, cases)[0]
        tk = tickets_in_view(cust, filters, DEFAULT_REPEAT_DAYS)  # their tickets (the repeats are not read)
    else:
        cust = t.cust
    steps = _active_days(
        filters, periods, day_aligned, from_rollups, cases, *(steps or ()), kept_apart=kept_apart
    ).subquery("steps")
    days = day_spine(periods) if day_aligned else None
    if days is not None:  # rows dated by their day: an equality join on the day
        in_period = spine.join(days, days.c.bucket == spine.c.bucket).join(steps, steps.c.ts == days.c.day)
    else:
        in_period = spine.join(steps, sa.and_(steps.c.ts >= spine.c.p_start, steps.c.ts < spine.c.p_end))
    act = (
        sa.select(spine.c.bucket, steps.c.cx_key, *([sa.func.max(steps.c.kept).label("kept")] if kept_apart else []))
        .select_from(in_period.join(cust, cust.c.cx_key == steps.c.cx_key))
        .where(not_churned_by(cust, spine.c.p_end))
        .group_by(spine.c.bucket, steps.c.cx_key)
        .subquery("act")
    )
    contacted = (
        sa.select(spine.c.bucket, tk.c.cx_key)
        .select_from(spine.join(tk, sa.and_(tk.c.opened_at >= spine.c.p_start, tk.c.opened_at < spine.c.p_end)))
        .where(*([among(tk.c.cx_key, cases)] if cases is not None else []))
        .distinct()
        .subquery("contacted")
    )
    counts = [sa.func.count().label("active"), sa.func.count(contacted.c.cx_key).label("contacted")]
    if kept_apart:  # a customer active in a period by a row outside the loads was active there before them
        before = act.c.kept == 1
        counts += [
            sa.func.count(sa.case((before, 1))).label("active_before"),
            sa.func.count(sa.case((before, contacted.c.cx_key))).label("contacted_before"),
        ]
    q = (
        sa.select(act.c.bucket, *counts)
        .select_from(
            act.outerjoin(contacted, sa.and_(contacted.c.bucket == act.c.bucket, contacted.c.cx_key == act.c.cx_key))
        )
        .group_by(act.c.bucket)
    )
    return read_frame(conn, q).reindex(out.index)[[c.name for c in counts]].astype(float)


def _contacts_part(t: _Table) -> None:
    """Contacts, repeats, transfers and resolution (tickets)."""
    conn, out, spine, tk = t.conn, t.out, t.spine, t.tickets
    opened_in = sa.and_(tk.c.opened_at >= spine.c.p_start, tk.c.opened_at < spine.c.p_end)
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.count().label("contacts"),
            sa.func.sum(tk.c.is_repeat).label("repeats"),
            sa.func.count(tk.c.transfers).label("with_transfers"),
            sa.func.sum(sa.case((matches("transfer", tk.c.transfers), 1), else_=0)).label("transferred"),
        )
        .select_from(spine.join(tk, opened_in))
        .group_by(spine.c.bucket)
    )
    f = read_frame(conn, q).reindex(out.index)
    out["contacts"] = f["contacts"].fillna(0).astype(int)
    out["repeat_contact_rate"] = ratio(f["repeats"], f["contacts"])
    out["transfer_rate"] = ratio(f["transferred"], f["with_transfers"])
    closed_in = sa.and_(tk.c.closed_at >= spine.c.p_start, tk.c.closed_at < spine.c.p_end)
    hours = (epoch(tk.c.closed_at) - epoch(tk.c.opened_at)) / 3600.0
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.count().label("resolved"),
            sa.func.sum(sa.func.coalesce(tk.c.transfers, 0)).label("handoffs"),
            sa.func.percentile_cont(0.5).within_group(hours).label("median_hours"),
            sa.func.avg(tk.c.satisfaction).label("satisfaction"),
        )
        .select_from(spine.join(tk, closed_in))
        .group_by(spine.c.bucket)
    )
    f = read_frame(conn, q).reindex(out.index)
    out["handoffs_per_resolved"] = ratio(f["handoffs"], f["resolved"])
    out["median_hours_to_resolution"] = pd.to_numeric(f["median_hours"], errors="coerce").astype(float)
    out["satisfaction"] = pd.to_numeric(f["satisfaction"], errors="coerce").astype(float)


def _revenue_part(t: _Table) -> None:
    """Revenue, net revenue retention and historical CLV (transactions)."""
    conn, out, spine, cust = t.conn, t.out, t.spine, t.cust
    periods, day_aligned, from_rollups = t.periods, t.day_aligned, t.from_rollups
    paid = _paid_days(cust) if from_rollups else paid_transactions(cust)
    both = day_spine(periods, previous=True) if day_aligned else None
    if both is not None:  # each period and its comparison period, day by day: an equality join
        bucket, in_cur = both.c.bucket, both.c.cur == 1
        joined = both.join(paid, (paid.c.ts if from_rollups else day_of(paid.c.ts)) == both.c.day)
    else:
        bucket, in_cur = spine.c.bucket, sa.and_(paid.c.ts >= spine.c.p_start, paid.c.ts < spine.c.p_end)
        joined = spine.join(paid, sa.and_(paid.c.ts >= spine.c.prev_start, paid.c.ts < spine.c.p_end))
    per = (
        sa.select(
            bucket.label("bucket"),
            paid.c.cx_key,
            sa.func.sum(sa.case((in_cur, paid.c.amount), else_=0.0)).label("cur"),
            sa.func.sum(sa.case((in_cur, 0.0), else_=paid.c.amount)).label("prev"),
        )
        .select_from(joined)
        .group_by(bucket, paid.c.cx_key)
        .subquery("per")
    )
    q = sa.select(
        per.c.bucket,
        sa.func.sum(per.c.cur).label("revenue"),
        sa.func.sum(sa.case((per.c.prev > 0, per.c.cur), else_=0.0)).label("kept"),
        sa.func.sum(sa.case((per.c.prev > 0, per.c.prev), else_=0.0)).label("base"),
    ).group_by(per.c.bucket)
    f = read_frame(conn, q).reindex(out.index)
    out["revenue"] = pd.to_numeric(f["revenue"], errors="coerce").fillna(0.0).astype(float)
    out["net_revenue_retention"] = ratio(f["kept"], f["base"])
    ts = day_of(paid.c.ts) if day_aligned and not from_rollups else paid.c.ts
    by_time = sa.select(ts.label("ts"), sa.func.sum(paid.c.amount).label("amount")).group_by(ts).subquery("by_time")
    q = (
        sa.select(spine.c.bucket, sa.func.sum(by_time.c.amount).label("to_date"))
        .select_from(spine.join(by_time, by_time.c.ts < spine.c.p_end))
        .group_by(spine.c.bucket)
    )
    f = read_frame(conn, q).reindex(out.index)
    out["clv_historical_total"] = pd.to_numeric(f["to_date"], errors="coerce").fillna(0.0).astype(float)


def _active_days(
    filters: Filters,
    periods: list[Period],
    day_aligned: bool,
    from_rollups: bool,
    cases: list[int] | None = None,
    their_steps: sa.FromClause | None = None,
    *,
    kept_apart: list[int] | None = None,
) -> sa.Select:
    """``cx_key, ts``: who did anything when, between the first period's start and the last one's
    end (in the departments of ``filters``): customer and day when ``day_aligned`` (from the daily
    rollups when ``from_rollups``, where a day can repeat), else customer and time. ``cases``: those
    customers' rows alone, from the rows (not the rollups); ``their_steps``: their journey steps,
    read once by the caller, read then instead of the timeline when no department is asked (every
    timeline row with a customer is a journey step, as every kind's row names its step, but the log
    names a missing department "unknown").
    ``kept_apart`` (loads; with ``cases``): every row of theirs, with ``kept`` (1: a row outside
    those loads, else 0)."""
    first, last = min(p.start for p in periods), max(p.end for p in periods)

    def kept(load_id: sa.ColumnElement) -> list:
        return [sa.case((load_id.not_in(kept_apart), 1), else_=0).label("kept")] if kept_apart else []

    if cases is not None and their_steps is not None and not filters.department:
        st = their_steps
        q = sa.select(st.c.cx_key, (day_of(st.c.ts) if day_aligned else st.c.ts).label("ts"), *kept(st.c.load_id))
        return q.where(among(st.c.cx_key, cases), st.c.ts >= first, st.c.ts < last).distinct()
    if from_rollups and cases is None:
        ad, s = rollups.activity_days_table, sources_table
        q = sa.select(ad.c.cx_key, ad.c.day.label("ts")).where(ad.c.day >= first, ad.c.day < last)
        if filters.department:
            department = sa.cast(sa.func.coalesce(ad.c.department, s.c.department), sa.String)
            q = q.select_from(ad.join(s, s.c.name == ad.c.source)).where(department.in_(filters.department))
        else:  # the timeline keeps only rows of a known source
            q = q.where(ad.c.source.in_(sa.select(s.c.name)))
        return q  # a customer's day may repeat (a row per source): counted once per period all the same
    tl = timeline(("cx_key", "ts", "department", "load_id"))
    q = sa.select(tl.c.cx_key, (day_of(tl.c.ts) if day_aligned else tl.c.ts).label("ts"), *kept(tl.c.load_id)).where(
        tl.c.cx_key.is_not(None), tl.c.ts >= first, tl.c.ts < last
    )
    if cases is not None:
        q = q.where(among(tl.c.cx_key, cases))
    if filters.department:
        q = q.where(tl.c.department.in_(filters.department))
    return q.distinct()


def _paid_days(cust: sa.Subquery) -> sa.Subquery:
    """``paid_transactions`` per customer and day, from the daily rollups: ``cx_key, ts`` (the day), ``amount``."""
    r = rollups.revenue_days_table
    return (
        sa.select(r.c.cx_key, r.c.day.label("ts"), r.c.amount)
        .select_from(r.join(cust, cust.c.cx_key == r.c.cx_key))
        .where(sa.not_(matches("failed_payment", r.c.status)))
        .subquery("paid")
    )
