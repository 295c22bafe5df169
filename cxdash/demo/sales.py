"""The sales department's files: the CRM customer list and the opportunities that won and grew them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import cxdash.demo.parameters as P
from cxdash.demo.arrays import concat, dates, digits, expand, money, strings, take, uniform_between
from cxdash.demo.episodes import Block
from cxdash.demo.extracts import SCHEMAS


def crm_customers(block: Block) -> pa.Table:
    c, a, b = block.customers, block.a, block.b
    n = b - a
    sl = slice(a, b)
    campaign = c.campaign[sl]
    return pa.table(
        {
            "CustomerID": c.customer_id.slice(a, n),
            "Full Name": c.full_name.slice(a, n),
            "Email": c.email.slice(a, n),
            "Phone": c.phone_e164.slice(a, n),
            "Billing Account": c.account.slice(a, n),
            "Signup Date": dates(c.signup_day[sl]),
            "Segment": take(strings(P.SEGMENTS), c.seg[sl]),
            "Company": pc.if_else(pa.array(c.seg[sl] > 0), c.company.slice(a, n), None),
            "Region": take(strings(P.REGIONS), c.region[sl]),
            "Plan": take(strings(P.PLANS), c.plan[sl]),
            "Acquisition Channel": take(strings(P.CHANNELS), c.channel[sl]),
            "Campaign": take(strings(P.CAMPAIGNS), np.maximum(campaign, 0), campaign >= 0),
            "Marketing Opt-In": take(strings(["no", "yes"]), c.consent[sl].astype(np.int64)),
        },
        schema=SCHEMAS["crm"],
    )


def opportunities(block: Block) -> pa.Table:
    """The deal that won each business customer, then upsell / expansion deals."""
    rng, c, a, b, m = block.rng, block.customers, block.a, block.b, block.m
    business = c.seg[a:b] > 0
    owner, j = expand(np.where(business, rng.integers(*P.OPPORTUNITIES, m), 0))
    k = owner.size
    acv = c.mrr_cents[a:b][owner] * 12
    created = np.empty(k, np.int64)
    closed = np.empty(k, np.int64)
    first = j == 0
    created[first] = block.signup_day[owner[first]] - rng.integers(*P.FIRST_DEAL_DAYS, first.sum())
    closed[first] = block.signup_day[owner[first]]
    later = ~first
    last_day = (block.limit_sec - 1) // P.DAY
    created[later] = uniform_between(rng, block.signup_day[owner[later]] + P.UPSELL_AFTER_DAYS, last_day[owner[later]])
    closed[later] = created[later] + rng.integers(*P.UPSELL_DAYS_TO_CLOSE, later.sum())
    ok = created <= last_day[owner]
    owner, created, closed, acv, first = owner[ok], created[ok], closed[ok], acv[ok], first[ok]
    k = owner.size
    end_cut = last_day[owner]
    still_open = (closed > end_cut) & ~block.churned[owner]
    lost_by_churn = (closed > end_cut) & block.churned[owner]
    closed = np.where(lost_by_churn, end_cut, closed)
    won = first | (~still_open & ~lost_by_churn & (rng.random(k) < P.P_UPSELL_WON))
    stage = np.where(still_open, P.STAGE_OPEN, np.where(won, P.STAGE_WON, P.STAGE_LOST))
    product = np.where(first, c.plan[a:b][owner], rng.integers(1, len(P.OPP_PRODUCTS), k))
    upsell = (acv * rng.uniform(*P.UPSELL_SHARE, k)).astype(np.int64) // 100 * 100
    amount = np.where(first, acv, upsell)
    ids = block.next_ids("opp", k)
    return pa.table(
        {
            "Opp ID": concat("OPP-", digits(ids + 1, 7)),
            "CustomerID": take(c.customer_id, a + owner),
            "Created": dates(created),
            "Closed": dates(closed, ~still_open),
            "Stage": take(strings(P.OPP_STAGES), stage),
            "Amount": money(amount),
            "Owner": take(strings(P.OWNERS), rng.integers(0, len(P.OWNERS), k)),
            "Product": take(strings(P.OPP_PRODUCTS), product),
        },
        schema=SCHEMAS["sales"],
    )
