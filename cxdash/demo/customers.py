"""The demo population: every customer's attributes, identifiers and latent churn drivers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import cxdash.demo.parameters as P
from cxdash.demo.arrays import concat, digits, row_choice, strings, take

_EPOCH = date(1970, 1, 1)


def _spring_windows(as_of: date) -> list[tuple[int, int]]:
    """(first day, length) of each March-May inside the history window before ``as_of``."""
    as_of_day = (as_of - _EPOCH).days
    lo_day, hi_day = as_of_day - P.HISTORY_DAYS, as_of_day - 1
    windows = []
    for year in range(as_of.year - 3, as_of.year + 1):
        first = max((date(year, 3, 1) - _EPOCH).days, lo_day)
        last = min((date(year, 5, 31) - _EPOCH).days, hi_day)
        if last >= first:
            windows.append((first, last - first + 1))
    return windows


class Customers:
    """Per-customer attributes for the whole population (numpy + a few string arrays).

    The draws happen in a fixed order (the constructor's), so one seed gives one population.
    """

    def __init__(self, rng: np.random.Generator, n: int, as_of: date):
        self.n = n
        self.as_of_day = (as_of - _EPOCH).days
        self._draw_plans(rng)
        self._draw_acquisition(rng)
        self._draw_signups(rng, as_of)
        self._draw_identity(rng)
        self._draw_churn_drivers(rng)
        self._build_strings()

    def _draw_plans(self, rng: np.random.Generator) -> None:
        n = self.n
        self.seg = rng.choice(len(P.SEGMENTS), n, p=P.SEG_P)
        self.region = rng.choice(len(P.REGIONS), n, p=P.REGION_P)
        self.plan = row_choice(rng, P.PLAN_P_BY_SEG[self.seg])
        seats = np.ones(n, dtype=np.int64)
        smb, enterprise = self.seg == P.SEG_SMB, self.seg == P.SEG_ENTERPRISE
        seats[smb] = rng.integers(*P.SMB_SEATS, smb.sum())
        seats[enterprise] = rng.integers(*P.ENTERPRISE_SEATS, enterprise.sum())
        self.seats = seats
        discount = np.where(enterprise, P.ENTERPRISE_DISCOUNT, 1.0)
        self.mrr_cents = np.round(P.PLAN_CENTS[self.plan] * seats * discount).astype(np.int64)

    def _draw_acquisition(self, rng: np.random.Generator) -> None:
        self.channel = rng.choice(len(P.CHANNELS), self.n, p=P.CHANNEL_P)
        campaign = row_choice(rng, P.CAMPAIGN_P_BY_CHANNEL[self.channel])
        self.campaign = np.where(self.channel == P.CH_ORGANIC, -1, campaign)  # -1: no campaign

    def _draw_signups(self, rng: np.random.Generator, as_of: date) -> None:
        """Signups over the 3 years before as_of, growing towards the present; spring_blast in spring."""
        age = 1 + np.floor((P.HISTORY_DAYS - 1) * rng.random(self.n) ** P.SIGNUP_GROWTH).astype(np.int64)
        signup = self.as_of_day - age
        spring = np.flatnonzero(self.campaign == P.SPRING)
        windows = _spring_windows(as_of)
        if windows and spring.size:
            starts = np.array([w[0] for w in windows])
            lengths = np.array([w[1] for w in windows])
            cum = np.cumsum(lengths)
            r = rng.integers(0, cum[-1], spring.size)
            w = np.searchsorted(cum, r, side="right")
            signup[spring] = starts[w] + (r - (cum[w] - lengths[w]))
        self.signup_day = signup

    def _draw_identity(self, rng: np.random.Generator) -> None:
        n = self.n
        self.first = rng.integers(0, len(P.FIRST_NAMES), n)
        self.last = rng.integers(0, len(P.LAST_NAMES), n)
        self.email_num = rng.permutation(n).astype(np.int64) + 1
        self.email_fmt = rng.choice(len(P.EMAIL_FORMAT_P), n, p=P.EMAIL_FORMAT_P)
        self.domain = rng.choice(len(P.DOMAINS), n, p=P.DOMAIN_P)
        self.has_phone = rng.random(n) < P.P_HAS_PHONE
        self.phone7 = rng.choice(10_000_000, n, replace=False).astype(np.int64)
        self.account_no = rng.choice(9_000_000, n, replace=False).astype(np.int64) + 1_000_000
        self.consent = rng.random(n) < P.P_MARKETING_CONSENT
        self.company_suffix = rng.integers(0, len(P.COMPANY_SUFFIX), n)

    def _draw_churn_drivers(self, rng: np.random.Generator) -> None:
        n = self.n
        self.base_hazard = P.PLAN_HAZARD[self.plan] * P.SEG_HAZARD[self.seg]
        # t0_days: when the customer would leave with no friction at all
        self.t0_days = 1 + np.floor(rng.exponential(365.25 / self.base_hazard)).astype(np.int64)
        sigma = P.PROPENSITY_SIGMA
        self.propensity = P.REGION_FRICTION[self.region] * rng.lognormal(-(sigma**2) / 2, sigma, n)
        fast = (self.campaign == P.SPRING) & (rng.random(n) < P.P_SPRING_FAST_CHURN)
        fast_days = np.clip(np.round(rng.gamma(*P.SPRING_FAST_GAMMA, n)), *P.SPRING_FAST_DAYS).astype(np.int64)
        self.spring_fast_days = np.where(fast, fast_days, np.iinfo(np.int64).max // 4)
        self.bill_sec = rng.integers(P.BILLING_HOURS[0] * P.HOUR, P.BILLING_HOURS[1] * P.HOUR, n)
        low, high = P.COOKIE_BIRTH_JITTER_DAYS
        self.cookie_birth_jitter = rng.integers(low * P.DAY, high * P.DAY, n)

    def _build_strings(self) -> None:
        """Strings for the whole population (linked to from every other file)."""
        index = np.arange(self.n, dtype=np.int64)
        self.customer_id = concat("CUS-", digits(index + 1, 7))
        first = take(strings(P.FIRST_NAMES), self.first)
        last = take(strings(P.LAST_NAMES), self.last)
        self.full_name = concat(first, last, sep=" ")
        first_lower = take(strings(name.lower() for name in P.FIRST_NAMES), self.first)
        last_lower = take(strings(name.lower() for name in P.LAST_NAMES), self.last)
        number = digits(self.email_num)
        local = pc.choose(
            pa.array(self.email_fmt.astype(np.int8)),
            concat(first_lower, ".", last_lower, number),
            concat(first_lower, number),
            concat(pc.utf8_slice_codeunits(first_lower, 0, 1), last_lower, number),
            concat(first_lower, "_", last_lower, number),
        )
        self.email = concat(local, take(strings(P.DOMAINS), self.domain), sep="@")
        exchange = digits(self.phone7 // 10_000, 3)
        line = digits(self.phone7 % 10_000, 4)
        self.phone_e164 = pc.if_else(pa.array(self.has_phone), concat("+1555", exchange, line), None)
        self.phone_fmts = [  # helpdesk formats (not E.164)
            concat("(555) ", exchange, "-", line),
            concat("555.", exchange, ".", line),
            concat("555-", exchange, "-", line),
            concat("+1 555 ", exchange, " ", line),
        ]
        self.account = concat("ACC-", digits(self.account_no, 7))
        self.company = concat(last, take(strings(P.COMPANY_SUFFIX), self.company_suffix), sep=" ")
