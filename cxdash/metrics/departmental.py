"""Departmental conflicts: each department's own KPI per cohort beside the shared outcome of the
same customers, and the cohorts where a department's best number goes with a bad shared one."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.churn import Definition
from cxdash.metrics.customers import (
    ATTRIBUTE_FILTERS,
    Filters,
    customers_in_view,
    department_of_ticket,
    paid_transactions,
    tickets_in_view,
)
from cxdash.metrics.definitions import DEFAULT_REPEAT_DAYS
from cxdash.metrics.periods import as_of
from cxdash.metrics.queries import epoch, read_frame
from cxdash.metrics.signals import file_order, is_repeat, next_same_topic
from cxdash.store.database import KIND_TABLES, sources_table

__all__ = ["CONFLICT_ALPHA", "CONFLICT_COLUMNS", "MIN_COHORT_CUSTOMERS", "conflicts"]

MIN_COHORT_CUSTOMERS = 20  # smaller cohorts are shown but not ranked (their shares are noise)
# A flagged cohort's shared outcome must also be worse than the other cohorts' beyond chance
# (one-sided z-test at this level, Bonferroni-corrected for the number of cohorts compared).
CONFLICT_ALPHA = 0.01
CONFLICT_COLUMNS = (
    "department",
    "cohort_by",
    "cohort",
    "customers",
    "departmental_kpi",
    "departmental_value",
    "shared_kpi",
    "shared_value",
    "clv_per_customer",
    "repeat_contact_rate",
    "departmental_top_quartile",
    "shared_bottom_quartile",
    "p_value",
    "shared_significantly_worse",
    "conflict",
)


def _customer_outcomes(conn: Connection, cust: sa.Subquery, basis: str, now: datetime, repeat_days: int) -> sa.CTE:
    """Per customer in view: ``cx_key``, the CRM attributes, ``retained_90`` (1/0, NULL when too recent or
    unknown), ``revenue`` to date and the ``payments`` behind it, ``contacts`` and ``repeats``. A CTE:
    the cohorts by attribute and by sales owner read it in one statement, and DuckDB and PostgreSQL
    compute it once for both (at 1M customers it is most of the conflicts' time)."""
    if basis == "dated":
        lived = epoch(cust.c.churn_at) - epoch(cust.c.signup_at)
        retained = sa.case(
            (sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at > now - timedelta(days=90)), sa.null()),
            (sa.or_(cust.c.churn_at.is_(None), lived >= 90 * 86400.0), 1),
            else_=0,
        )
    elif basis == "snapshot":
        retained = 1 - cust.c.label_churned
    else:
        retained = sa.cast(sa.null(), sa.Integer)
    paid = paid_transactions(cust)
    revenue = (
        sa.select(paid.c.cx_key, sa.func.sum(paid.c.amount).label("revenue"), sa.func.count().label("payments"))
        .group_by(paid.c.cx_key)
        .subquery("rev")
    )
    tk = tickets_in_view(cust, Filters(), repeat_days)
    contacts = (
        sa.select(tk.c.cx_key, sa.func.count().label("contacts"), sa.func.sum(tk.c.is_repeat).label("repeats"))
        .group_by(tk.c.cx_key)
        .subquery("con")
    )
    return (
        sa.select(
            cust.c.cx_key,
            *[cust.c[col] for col in ATTRIBUTE_FILTERS.values()],
            sa.cast(retained, sa.Integer).label("retained_90"),
            sa.func.coalesce(revenue.c.revenue, 0.0).label("revenue"),
            sa.func.coalesce(revenue.c.payments, 0).label("payments"),
            sa.func.coalesce(contacts.c.contacts, 0).label("contacts"),
            sa.func.coalesce(contacts.c.repeats, 0).label("repeats"),
        )
        .select_from(
            cust.outerjoin(revenue, revenue.c.cx_key == cust.c.cx_key).outerjoin(
                contacts, contacts.c.cx_key == cust.c.cx_key
            )
        )
        .cte("outcomes")
    )


def _shared_by(oc: sa.Subquery) -> list:
    return [
        sa.func.count(sa.distinct(oc.c.cx_key)).label("customers"),
        sa.func.avg(sa.cast(oc.c.retained_90, sa.Double)).label("retention_90d"),
        sa.func.count(oc.c.retained_90).label("ranked_customers"),
        (sa.func.sum(oc.c.revenue) / sa.func.count(sa.distinct(oc.c.cx_key))).label("clv_per_customer"),
        (sa.cast(sa.func.sum(oc.c.repeats), sa.Double) / sa.func.nullif(sa.func.sum(oc.c.contacts), 0)).label(
            "repeat_contact_rate"
        ),
    ]


def conflicts(
    conn: Connection,
    filters: Filters | None = None,
    *,
    now: datetime | None = None,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    churn: Definition | None = None,
) -> pd.DataFrame:
    """Departmental KPIs per cohort beside the shared outcome of the same customers.

    Cohorts: campaign and acquisition channel (marketing: new customers), sales owner (revenue
    closed), support team (tickets closed; shared: repeat contacts after its tickets), region
    (billing: collections). Within each department's cohorts, ``departmental_top_quartile`` marks
    values at or above the 75th percentile and ``shared_bottom_quartile`` shared values at or below
    the 25th; ``conflict`` is both. Only cohorts with at least ``MIN_COHORT_CUSTOMERS`` customers
    behind the shared number are ranked, and only when at least four such cohorts exist.

    Out: ``CONFLICT_COLUMNS``, sorted with the conflicts first.
    """
    filters = filters or Filters()
    now = now or as_of(conn)
    if now is None:
        return pd.DataFrame(columns=list(CONFLICT_COLUMNS))
    cust, basis = customers_in_view(conn, filters, churn)
    oc = _customer_outcomes(conn, cust, basis, now, repeat_days)
    frames = []

    # marketing (new customers per campaign and per acquisition channel) and billing (collections per
    # region), each beside the 90-day retention of the same customers: one pass over the customers'
    # outcomes grouped three ways (GROUPING SETS), not one pass per attribute; and sales (revenue
    # closed per owner, beside the retention of the customers they won), in the same statement
    attributes = {"campaign": ("marketing", "campaign"), "acquisition_channel": ("marketing", "channel"), "region": ("billing", "region")}  # fmt: skip
    o = KIND_TABLES["opportunities"]
    won = sa.func.lower(sa.func.coalesce(o.c.stage, "")).in_(("won", "closed won", "closed_won"))
    per_owner = (
        sa.select(o.c.owner.label("cohort"), sa.func.sum(o.c.amount).label("departmental_value"))
        .where(won, o.c.owner.is_not(None))
        .group_by(o.c.owner)
        .subquery("per_owner")
    )
    owner_customers = (
        sa.select(o.c.owner, o.c.cx_key)
        .where(won, o.c.owner.is_not(None), o.c.cx_key.is_not(None))
        .distinct()
        .subquery("owner_customers")
    )

    def none(type_) -> sa.ColumnElement:
        return sa.cast(sa.null(), type_)

    by_attribute = sa.select(
        sa.literal("attribute", sa.String).label("part"),
        *[sa.cast(oc.c[col], sa.String).label(col) for col in attributes],
        *[sa.cast(sa.func.grouping(oc.c[col]), sa.Integer).label(f"g_{col}") for col in attributes],
        sa.cast(sa.func.sum(oc.c.revenue), sa.Double).label("collections"),
        sa.cast(sa.func.sum(oc.c.payments), sa.BigInteger).label("payments"),
        none(sa.String).label("cohort"),
        none(sa.Double).label("departmental_value"),
        *_shared_by(oc),
    ).group_by(sa.func.grouping_sets(*[oc.c[col] for col in attributes]))
    by_owner = (
        sa.select(
            sa.literal("owner", sa.String).label("part"),
            *[none(sa.String).label(col) for col in attributes],
            *[none(sa.Integer).label(f"g_{col}") for col in attributes],
            none(sa.Double).label("collections"),
            none(sa.BigInteger).label("payments"),
            sa.cast(per_owner.c.cohort, sa.String).label("cohort"),
            sa.cast(sa.func.max(per_owner.c.departmental_value), sa.Double).label("departmental_value"),
            *_shared_by(oc),
        )
        .select_from(
            per_owner.join(owner_customers, owner_customers.c.owner == per_owner.c.cohort).join(
                oc, oc.c.cx_key == owner_customers.c.cx_key
            )
        )
        .group_by(per_owner.c.cohort)
    )
    both = read_frame(conn, sa.union_all(by_attribute, by_owner), index="")
    parts = both.pop("part")
    by_attribute = both[(parts == "attribute").to_numpy()].drop(columns=["cohort", "departmental_value"])
    for col, (department, label) in attributes.items():
        # the rows grouped by this attribute (the others rolled up), a customer without a value left out
        f = by_attribute[(by_attribute[f"g_{col}"] == 0) & by_attribute[col].notna()]
        if department == "billing":  # a region where nobody paid has no collections to rank, and no row
            f = f[pd.to_numeric(f["payments"]) > 0]
        if f.empty:
            continue
        others = [c for c in by_attribute.columns if (c in attributes and c != col) or c.startswith("g_")]
        f = f.drop(columns=[*others, "payments"]).rename(columns={col: "cohort"}).reset_index(drop=True)
        f["department"], f["cohort_by"] = department, label
        f["shared_kpi"], f["shared_value"] = "retention_90d", f["retention_90d"]
        if department == "marketing":
            f["departmental_kpi"], f["departmental_value"] = "new_customers", f["customers"].astype(float)
        else:
            f["departmental_kpi"], f["departmental_value"] = "collections", f["collections"]
        frames.append(f.drop(columns=["collections"]))

    f = both[(parts == "owner").to_numpy()]
    f = f.drop(
        columns=[c for c in f.columns if c in attributes or c.startswith("g_") or c in ("collections", "payments")]
    )
    if not f.empty:
        f = f.reset_index(drop=True)
        f["department"], f["cohort_by"] = "sales", "owner"
        f["departmental_kpi"] = "revenue_closed"
        f["shared_kpi"], f["shared_value"] = "retention_90d", f["retention_90d"]
        frames.append(f)

    # support: tickets closed per team -> share of them followed by a repeat contact
    k = KIND_TABLES["tickets"]
    next_opened = next_same_topic(k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k))
    tw = (
        sa.select(
            k.c.cx_key,
            sa.cast(department_of_ticket(), sa.String).label("team"),
            k.c.opened_at,
            k.c.closed_at,
            next_opened.label("next_opened"),
        )
        .select_from(k.join(cust, cust.c.cx_key == k.c.cx_key).join(sources_table, sources_table.c.name == k.c.source))
        .subquery("tw")
    )
    again = is_repeat(tw.c.next_opened, tw.c.opened_at, repeat_days)  # the next ticket on the topic repeats this one
    q = (
        sa.select(
            tw.c.team.label("cohort"),
            sa.func.count(sa.distinct(tw.c.cx_key)).label("customers"),
            sa.func.count().label("departmental_value"),
            sa.func.avg(sa.case((again, 1.0), else_=0.0)).label("shared_value"),
            sa.func.count().label("ranked_customers"),
            sa.func.percentile_cont(0.5)
            .within_group((epoch(tw.c.closed_at) - epoch(tw.c.opened_at)) / 3600.0)
            .label("median_hours_to_close"),
        )
        .where(tw.c.closed_at.is_not(None), tw.c.team.is_not(None))
        .group_by(tw.c.team)
    )
    f = read_frame(conn, q, index="")
    if not f.empty:
        f["department"], f["cohort_by"] = "support", "team"
        f["departmental_kpi"], f["shared_kpi"] = "tickets_closed", "repeat_after_close"
        frames.append(f)

    if not frames:
        return pd.DataFrame(columns=list(CONFLICT_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    for col in (
        "departmental_value",
        "shared_value",
        "clv_per_customer",
        "repeat_contact_rate",
        "median_hours_to_close",
    ):
        if col not in out.columns:
            out[col] = np.nan
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["cohort"] = out["cohort"].astype(str)
    out["customers"] = out["customers"].astype(int)
    out["ranked_customers"] = pd.to_numeric(out["ranked_customers"], errors="coerce").fillna(0).astype(int)
    # Higher is better for every departmental KPI here; for the shared outcome, retention is better
    # high and repeat-after-close better low.
    out["shared_score"] = np.where(out["shared_kpi"] == "repeat_after_close", -out["shared_value"], out["shared_value"])
    out["departmental_top_quartile"] = False
    out["shared_bottom_quartile"] = False
    out["p_value"] = np.nan
    for _, idx in out.groupby(["department", "cohort_by"]).groups.items():
        part = out.loc[idx]
        rankable = part[(part["ranked_customers"] >= MIN_COHORT_CUSTOMERS) & part["shared_score"].notna()]
        if len(rankable) < 4:
            continue
        top = rankable["departmental_value"] >= rankable["departmental_value"].quantile(0.75)
        bottom = rankable["shared_score"] <= rankable["shared_score"].quantile(0.25)
        out.loc[rankable.index, "departmental_top_quartile"] = top
        out.loc[rankable.index, "shared_bottom_quartile"] = bottom
        out.loc[rankable.index, "p_value"] = _worse_than_rest_p(rankable)
    out["shared_significantly_worse"] = out["p_value"] < CONFLICT_ALPHA / out.groupby(["department", "cohort_by"])[
        "cohort"
    ].transform("size")
    out["conflict"] = (
        out["departmental_top_quartile"] & out["shared_bottom_quartile"] & out["shared_significantly_worse"]
    )
    # the cohort name breaks ties, so equal values come out in the same order on every run and engine
    out = out.sort_values(
        ["conflict", "department", "cohort_by", "departmental_value", "cohort"],
        ascending=[False, True, True, False, True],
        ignore_index=True,
        kind="stable",
    )
    return out[[*CONFLICT_COLUMNS, "median_hours_to_close"]]


def _worse_than_rest_p(part: pd.DataFrame) -> np.ndarray:
    """One-sided two-proportion z-test per cohort: is its shared outcome worse than the other cohorts' pooled?"""
    from scipy.stats import norm

    n = part["ranked_customers"].to_numpy(dtype=float)
    share = part["shared_value"].to_numpy(dtype=float)
    hits = share * n
    worse_sign = np.where(part["shared_kpi"].to_numpy() == "repeat_after_close", 1.0, -1.0)  # worse = higher / lower
    n_rest = n.sum() - n
    p_rest = (hits.sum() - hits) / np.where(n_rest > 0, n_rest, np.nan)
    pooled = hits.sum() / n.sum()
    se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / np.where(n_rest > 0, n_rest, np.nan)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = worse_sign * (share - p_rest) / se
    return norm.sf(z)
