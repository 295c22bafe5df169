"""One block of customers: their friction episodes, and the churn those episodes trigger.

Every generator module (web, support, billing, marketing, sales) reads a ``Block`` and draws the
rows of its file from the block's random generator, in the fixed order ``world`` calls them.
"""

from __future__ import annotations

import numpy as np

import cxdash.demo.parameters as P
from cxdash.demo.arrays import add_months, month_index, month_start_day
from cxdash.demo.customers import Customers


class Block:
    """Everything for customers [a, b): episodes, churn, and the id counters shared across blocks.

    ``episodes`` holds one entry per friction episode (``owner`` is the customer's position in the
    block, ``type`` one of ``parameters.EP_*``, ``t`` its time) and the attributes drawn for it.
    """

    def __init__(self, rng: np.random.Generator, customers: Customers, a: int, b: int, counters: dict):
        self.rng, self.customers, self.a, self.b = rng, customers, a, b
        self.m = b - a
        self.counters = counters
        self.cutoff_sec = (customers.as_of_day + 1) * P.DAY  # data runs to the end of as_of
        self.signup_day = customers.signup_day[a:b]
        self.signup_sec = self.signup_day * P.DAY
        # day of month of the monthly charge (the signup day, clamped to 28)
        self.dom = np.minimum(self.signup_day - month_start_day(self.signup_day) + 1, 28)
        self.episodes = _draw_episodes(self)
        self._churn()

    def _churn(self) -> None:
        """Churn at the baseline time, the spring_blast time, or the first triggered episode."""
        c, a, b, episodes = self.customers, self.a, self.b, self.episodes
        end = self.signup_day + np.minimum(c.t0_days[a:b], c.spring_fast_days[a:b])
        trig = episodes["trig"]
        np.minimum.at(end, episodes["owner"][trig], episodes["trig_day"][trig])
        self.end_day = end
        self.churned = end <= c.as_of_day
        self.limit_sec = np.minimum(end * P.DAY, self.cutoff_sec)  # no activity at/after this
        keep = episodes["t"] < self.limit_sec[episodes["owner"]]
        self.episodes = {k: v[keep] for k, v in episodes.items()}

    def active_years(self) -> np.ndarray:
        """Years each customer was active in the data (signup to end or as_of)."""
        return (self.limit_sec - self.signup_sec) / P.YEAR_S

    def next_ids(self, name: str, k: int) -> np.ndarray:
        """``k`` consecutive ids from the population-wide counter ``name``."""
        start = self.counters[name]
        self.counters[name] = start + k
        return start + np.arange(k, dtype=np.int64)


def _draw_episodes(block: Block) -> dict[str, np.ndarray]:
    rng, c, a, b, m = block.rng, block.customers, block.a, block.b, block.m
    span = block.cutoff_sec - block.signup_sec
    years = span / P.YEAR_S
    lam = P.EP_RATE[None, :] * (c.propensity[a:b] * years)[:, None]
    counts = rng.poisson(lam)
    # failed payments need a monthly charge after the first one, before as_of
    months = month_index(np.full(m, c.as_of_day)) - month_index(block.signup_day) + 1
    counts[months <= 1, P.EP_PAYMENT] = 0
    ep_type = np.repeat(np.tile(np.arange(P.EPISODE_TYPES), m), counts.ravel())
    owner = np.repeat(np.repeat(np.arange(m), P.EPISODE_TYPES), counts.ravel())
    ne = owner.size
    t = block.signup_sec[owner] + 8 * P.HOUR + (rng.random(ne) * (span[owner] - 9 * P.HOUR)).astype(np.int64)
    is_pay = ep_type == P.EP_PAYMENT
    charge = np.zeros(ne, dtype=np.int64)  # which monthly charge failed (payment episodes)
    if is_pay.any():
        po = owner[is_pay]
        charge[is_pay] = rng.integers(1, months[po])
        t[is_pay] = add_months(block.signup_day[po], charge[is_pay], block.dom[po]) * P.DAY + c.bill_sec[a:b][po]
    episodes = {"owner": owner, "type": ep_type, "t": t, "k": charge}
    _draw_attributes(rng, episodes, ne)
    last_off = _last_offset(episodes)
    q = P.EP_TRIGGER_P[ep_type]
    q = np.where(is_pay, np.where(episodes["recovered"], P.P_TRIGGER_PAYMENT_RECOVERED, P.P_TRIGGER_PAYMENT_LOST), q)
    q = q * P.SEG_TOLERANCE[c.seg[a:b][owner]]  # contracts and switching costs
    episodes["trig"] = rng.random(ne) < q
    delay = np.round(rng.gamma(*P.TRIGGER_DELAY_GAMMA, ne)).astype(np.int64)
    episodes["trig_day"] = (t + last_off) // P.DAY + P.TRIGGER_MIN_DAYS + delay
    return episodes


def _draw_attributes(rng: np.random.Generator, e: dict[str, np.ndarray], ne: int) -> None:
    """Per-episode attributes, drawn for every episode (each type uses its own)."""
    e["n_err"] = 1 + rng.binomial(*P.P_CHECKOUT_ERROR_RETRY, ne)
    e["help"] = rng.random(ne) < P.P_CHECKOUT_HELP
    e["ticket"] = rng.random(ne) < P.P_FOLLOW_UP_TICKET
    e["ticket_off"] = rng.integers(10 * P.MINUTE, P.DAY, ne)
    e["recovered"] = rng.random(ne) < P.P_PAYMENT_RECOVERED
    e["retry_off"] = rng.integers(1 * P.DAY, 5 * P.DAY, ne)
    e["page"] = rng.random(ne) < P.P_PAYMENT_PAGE_VISIT
    e["page_off"] = rng.integers(1 * P.HOUR, 2 * P.DAY, ne)
    e["transfers"] = 1 + rng.binomial(*P.TRANSFERS, ne)
    e["topic"] = rng.choice(len(P.TOPICS), ne, p=P.EPISODE_TOPIC_P)
    e["dur"] = rng.integers(4 * P.HOUR, 3 * P.DAY, ne)
    e["slow_dur"] = rng.integers(4 * P.DAY, 20 * P.DAY, ne)
    e["n_rep"] = 2 + (rng.random(ne) < P.P_THIRD_REPEAT)
    # repeat contacts: offsets of the 2nd and 3rd contact, all within 7 days of the first
    gap1 = rng.integers(20 * P.MINUTE, P.DAY, ne)
    gap2 = rng.integers(P.DAY // 2, int(2.5 * P.DAY), ne)
    gap3 = rng.integers(P.DAY // 2, int(2.5 * P.DAY), ne)
    e["rep_off"] = np.stack([gap1, gap1 + gap2, np.minimum(gap1 + gap2 + gap3, 7 * P.DAY - P.HOUR)], axis=1)


def _last_offset(e: dict[str, np.ndarray]) -> np.ndarray:
    """Seconds from an episode's start to its last event (churn is triggered after it)."""
    ep_type = e["type"]
    last_off = np.zeros(ep_type.size, dtype=np.int64)
    checkout = ep_type == P.EP_CHECKOUT
    last_off[checkout] = np.where(e["ticket"], e["ticket_off"], 10 * P.MINUTE)[checkout]
    pay = ep_type == P.EP_PAYMENT
    last_off[pay] = np.maximum(e["retry_off"], np.where(e["page"], e["page_off"], 0))[pay]
    transfer = ep_type == P.EP_TRANSFER
    last_off[transfer] = e["dur"][transfer]
    rep = ep_type == P.EP_REPEAT
    last_off[rep] = e["rep_off"][rep, e["n_rep"][rep] - 1]
    slow = ep_type == P.EP_SLOW
    last_off[slow] = e["slow_dur"][slow]
    return last_off
