"""Customer groups: the monthly signup-cohort retention matrix, and churn per CRM attribute value
(what a customer table without dates can show)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.churn import Definition
from cxdash.metrics.customers import ATTRIBUTE_FILTERS, Filters, customers_in_view
from cxdash.metrics.periods import as_of
from cxdash.metrics.queries import read_frame

__all__ = ["SPLIT_COLUMNS", "cohort_retention", "snapshot_splits"]


def cohort_retention(
    conn: Connection, filters: Filters | None = None, *, now: datetime | None = None, churn: Definition | None = None
) -> pd.DataFrame:
    """Monthly signup-cohort retention matrix (dated churn definitions only, see ``cxdash.metrics.churn``).

    Out: index ``cohort`` (first day of the signup month), columns ``0, 1, 2, ...`` (months since
    signup), values the share of the cohort not churned at the end of that month since signup
    (calendar months: a customer who signed up in March and left in May is retained at months 0 and 1).
    Cells after the data's latest month are NaN. Also a ``customers`` column (cohort size).
    Empty when churn dates are unknown (an undated label, or no churn data).
    """
    filters = filters or Filters()
    now = now or as_of(conn)
    cust, basis = customers_in_view(conn, filters, churn)
    if basis != "dated" or now is None:
        return pd.DataFrame()
    sy, sm = sa.extract("year", cust.c.signup_at), sa.extract("month", cust.c.signup_at)
    cy, cm = sa.extract("year", cust.c.churn_at), sa.extract("month", cust.c.churn_at)
    q = (
        sa.select(sy.label("sy"), sm.label("sm"), cy.label("cy"), cm.label("cm"), sa.func.count().label("n"))
        .where(cust.c.signup_at.is_not(None))
        .group_by(sy, sm, cy, cm)
    )
    f = read_frame(conn, q, index="")
    if f.empty:
        return pd.DataFrame()
    f["start"] = f["sy"].astype(int) * 12 + f["sm"].astype(int) - 1
    f["left"] = (f["cy"].astype(float) * 12 + f["cm"].astype(float) - 1).fillna(np.inf)  # month index of churn
    last = now.year * 12 + now.month - 1
    cohorts = np.sort(f["start"].unique())
    horizon = int(last - cohorts.min())
    rows = {}
    sizes = {}
    for c in cohorts:
        part = f[f["start"] == c]
        size = part["n"].sum()
        months_alive = part["left"] - c  # churned during month k since signup -> retained for k < that
        row = []
        for k in range(horizon + 1):
            if c + k > last:
                row.append(np.nan)
            else:
                row.append(float(part.loc[months_alive > k, "n"].sum()) / size)
        rows[pd.Timestamp(year=int(c // 12), month=int(c % 12) + 1, day=1)] = row
        sizes[pd.Timestamp(year=int(c // 12), month=int(c % 12) + 1, day=1)] = int(size)
    matrix = pd.DataFrame.from_dict(rows, orient="index", columns=list(range(horizon + 1)))
    matrix.index.name = "cohort"
    matrix.insert(0, "customers", pd.Series(sizes))
    return matrix


SPLIT_COLUMNS = ("attribute", "value", "customers", "churned", "churn_rate")


def snapshot_splits(conn: Connection, filters: Filters | None = None, churn: Definition | None = None) -> pd.DataFrame:
    """Churn per value of each CRM attribute filter (segment, region, plan, channel, campaign) under
    the definition in force, over everything stored: what a customer table without dates can show.

    Out: ``SPLIT_COLUMNS``, one row per attribute value (attributes with one value or none left
    out), the most customers first within each attribute.
    """
    cust, mode = customers_in_view(conn, filters or Filters(), churn)
    frames = []
    if mode == "none":
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    gone = cust.c.label_churned if mode == "snapshot" else sa.case((cust.c.churn_at.is_not(None), 1), else_=0)
    for name, col in ATTRIBUTE_FILTERS.items():
        q = (
            sa.select(
                cust.c[col].label("value"), sa.func.count().label("customers"), sa.func.sum(gone).label("churned")
            )
            .where(cust.c[col].is_not(None))
            .group_by(cust.c[col])
        )
        f = read_frame(conn, q, index="")
        if len(f) < 2:
            continue
        f.insert(0, "attribute", name)
        frames.append(f.sort_values(["customers", "value"], ascending=[False, True], kind="stable"))
    if not frames:
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    out["value"] = out["value"].astype(str)
    out["customers"] = out["customers"].astype(int)
    out["churned"] = out["churned"].astype(int)
    out["churn_rate"] = out["churned"] / out["customers"]
    return out[list(SPLIT_COLUMNS)]
