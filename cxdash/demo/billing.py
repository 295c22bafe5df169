"""Billing: monthly charges (failed payments and their retries, refunds, one-offs) and subscriptions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import cxdash.demo.parameters as P
from cxdash.demo.arrays import (
    add_months,
    concat,
    dates,
    digits,
    expand,
    money,
    month_index,
    scramble,
    strings,
    take,
    timestamps,
    uniform_between,
)
from cxdash.demo.episodes import Block
from cxdash.demo.extracts import SCHEMAS

_DESCRIPTIONS = strings(P.BILL_DESCRIPTIONS)
_KIND_SUBSCRIPTION, _KIND_RETRY, _KIND_REFUND, _KIND_ONE_OFF = range(4)  # one-off item i: kind 3 + i
_FIRST_ONE_OFF = _KIND_ONE_OFF * len(P.PLANS)  # where the one-offs start in BILL_DESCRIPTIONS


def subscriptions(block: Block) -> pa.Table:
    c, a, b = block.customers, block.a, block.b
    g = np.arange(a, b)
    return pa.table(
        {
            "sub_id": concat("SUB-", digits(scramble(g, 10**8, 61_803_399, 31_337), 8)),
            "account_no": c.account.slice(a, b - a),
            "start_date": dates(block.signup_day),
            "end_date": dates(block.end_day, block.churned),
            "plan": take(strings(P.PLANS), c.plan[a:b]),
            "seats": pa.array(c.seats[a:b]),
            "mrr": money(c.mrr_cents[a:b]),
            "status": take(strings(["active", "cancelled"]), block.churned.astype(np.int64)),
        },
        schema=SCHEMAS["subscriptions"],
    )


def _monthly_charges(block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, month k, time) of every monthly charge: k = 0 on the signup day, then monthly."""
    last_day = (block.limit_sec - 1) // P.DAY
    months = month_index(last_day) - month_index(block.signup_day) + 1
    owner, k = expand(months)
    day = np.where(k == 0, block.signup_day[owner], add_months(block.signup_day[owner], k, block.dom[owner]))
    t = day * P.DAY + block.customers.bill_sec[block.a : block.b][owner]
    keep = t < block.limit_sec[owner]
    return owner[keep], k[keep], t[keep]


def _failed_payments(block: Block, owner: np.ndarray, t: np.ndarray):
    """The failed charges (the payment episodes), and the retry a few days later: paid when recovered.

    Out: the status of every monthly charge, and the retries' customers, times and statuses.
    """
    e = block.episodes
    n_charges = np.bincount(owner, minlength=block.m)
    row_start = np.cumsum(n_charges) - n_charges
    status = np.full(owner.size, P.TXN_PAID, dtype=np.int64)
    pay = e["type"] == P.EP_PAYMENT
    failed_owner, failed_k = e["owner"][pay], e["k"][pay]
    valid = failed_k < n_charges[failed_owner]
    failed_owner, failed_k = failed_owner[valid], failed_k[valid]
    recovered = e["recovered"][pay][valid]
    retry_off = e["retry_off"][pay][valid]
    rows = row_start[failed_owner] + failed_k
    status[rows] = P.TXN_FAILED
    retry_status = np.where(recovered, P.TXN_PAID, P.TXN_FAILED)
    return status, failed_owner, t[rows] + retry_off, retry_status


def _one_offs(block: Block):
    """One-off purchases: (customer, item, time, status); consumers never buy onboarding."""
    rng, c = block.rng, block.customers
    one_off, _ = expand(rng.poisson(P.ONE_OFFS_PER_YEAR * block.active_years()))
    item = np.where(
        c.seg[block.a : block.b][one_off] == P.SEG_CONSUMER,
        rng.choice(len(P.CONSUMER_ONE_OFF_P), one_off.size, p=P.CONSUMER_ONE_OFF_P),
        rng.choice(len(P.BUSINESS_ONE_OFF_P), one_off.size, p=P.BUSINESS_ONE_OFF_P),
    )
    when = uniform_between(rng, block.signup_sec[one_off] + P.HOUR, block.limit_sec[one_off])
    status = np.where(rng.random(one_off.size) < P.P_ONE_OFF_FAILS, P.TXN_FAILED, P.TXN_PAID)
    return one_off, item, when, status


def billing_transactions(block: Block) -> pa.Table:
    rng, c, a, b = block.rng, block.customers, block.a, block.b
    mrr = c.mrr_cents[a:b]
    owner, _k, t = _monthly_charges(block)
    status, failed_owner, retry_t, retry_status = _failed_payments(block, owner, t)
    # refunds of some paid charges
    paid = np.flatnonzero(status == P.TXN_PAID)
    refunded = paid[rng.random(paid.size) < P.P_REFUND]
    one_off, item, one_off_t, one_off_status = _one_offs(block)

    n_ref = refunded.size
    cust = np.concatenate([owner, failed_owner, owner[refunded], one_off])
    tt = np.concatenate([t, retry_t, t[refunded] + rng.integers(P.DAY, 10 * P.DAY, n_ref), one_off_t])
    st = np.concatenate([status, retry_status, np.full(n_ref, P.TXN_REFUNDED), one_off_status])
    kind = np.concatenate(
        [
            np.full(owner.size, _KIND_SUBSCRIPTION, dtype=np.int64),
            np.full(failed_owner.size, _KIND_RETRY, dtype=np.int64),
            np.full(n_ref, _KIND_REFUND),
            _KIND_ONE_OFF + item,
        ]
    )
    amount = np.concatenate([mrr[owner], mrr[failed_owner], -mrr[owner[refunded]], P.ONE_OFF_CENTS[item]])
    ok = tt < block.limit_sec[cust]
    order = np.flatnonzero(ok)[np.argsort(tt[ok], kind="stable")]
    return _table(block, *(x[order] for x in (cust, tt, st, kind, amount)))


def _table(block: Block, cust, tt, st, kind, amount) -> pa.Table:
    c, a, b = block.customers, block.a, block.b
    n = cust.size
    plan = c.plan[a:b][cust]
    description = np.where(kind < _KIND_ONE_OFF, kind * len(P.PLANS) + plan, _FIRST_ONE_OFF + kind - _KIND_ONE_OFF)
    ref = block.next_ids("txn", n)
    return pa.table(
        {
            "txn_ref": concat("TXN", digits(scramble(ref, 10**10, 7_071_067_811, 424_242), 10)),
            "account_no": take(c.account, np.arange(a, b)[cust]),
            "txn_date": timestamps(tt),
            "amount": money(amount),
            "status": take(strings(P.TXN_STATUSES), st),
            "description": take(_DESCRIPTIONS, description),
            "currency": take(strings(["USD"]), np.zeros(n, np.int64)),
        },
        schema=SCHEMAS["billing"],
    )
