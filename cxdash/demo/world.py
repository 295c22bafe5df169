"""Synthetic demo company: departmental CSV extracts with planted, true causes.

``write_demo_extracts`` writes one CSV per departmental system (CRM, web analytics,
marketing, helpdesk, billing transactions, billing subscriptions, sales), each with its own
id system and column naming, the way real exports look.  Underneath is one simulated world:

* customers sign up over the ~3 years before ``as_of``;
* each customer has a baseline churn hazard (a little higher for basic/consumer);
* friction *episodes* happen to them (checkout errors, failed payments, transferred tickets,
  repeat contacts about the same topic within 7 days across channels, slow tickets), at a rate
  that varies a little by region; each episode may *trigger* churn a few weeks later (repeat
  contacts most strongly);
* the ``spring_blast`` campaign brings many signups, most of whom churn within ~90 days;
* most churners visit ``cancel_page`` and/or ``competitor_compare`` 1-21 days before their end
  date, whatever their tenure ("most recent signal wins"); a few non-churners do too;
* churn is the subscription's end date: no web events, tickets, touches or charges after it.

Pure generation with numpy and pyarrow (no database, no UI), vectorised per block of
customers and written with pyarrow's CSV writer on a background thread, so a million customers
(~54 million rows, ~4.5 GB of CSV) take about a minute on two cores and under 1 GB of RAM.
Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import queue
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = ["DemoExtract", "write_demo_extracts", "HUB_EMAIL", "FILES", "MAX_CUSTOMERS"]

DAY = 86_400
HOUR = 3_600
MINUTE = 60
YEAR_S = 365.25 * DAY
_CHUNK = 25000  # customers per vectorised block (bounds memory; fixed => deterministic)

HUB_EMAIL = "support@helpdesk.example"
MAX_CUSTOMERS = 9_000_000  # unique 7-digit billing accounts / 555 phone numbers

# ----------------------------------------------------------------------------- vocabulary
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Andre",
    "Anika",
    "Arjun",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dana",
    "David",
    "Diego",
    "Elena",
    "Emeka",
    "Emma",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jada",
    "James",
    "Jin",
    "Kai",
    "Kemi",
    "Lars",
    "Layla",
    "Leo",
    "Lina",
    "Lucas",
    "Maya",
    "Mei",
    "Mia",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Sofia",
    "Tariq",
    "Tom",
    "Uma",
    "Victor",
    "Wei",
    "Xena",
    "Yara",
    "Yusuf",
    "Zane",
    "Zoe",
    "Nils",
]
LAST_NAMES = [
    "Abbott",
    "Adeyemi",
    "Alvarez",
    "Baker",
    "Bauer",
    "Berg",
    "Chen",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hansen",
    "Ito",
    "Jensen",
    "Kahn",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Perez",
    "Quinn",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Sousa",
    "Suzuki",
    "Tan",
    "Taylor",
    "Torres",
    "Usman",
    "Vargas",
    "Virtanen",
    "Wagner",
    "Walsh",
    "Wang",
    "Weber",
    "Wilson",
    "Wright",
    "Yamada",
    "Yilmaz",
    "Young",
    "Zhang",
    "Ziegler",
]
COMPANY_SUFFIX = ["Ltd", "LLC", "Group", "Labs", "Logistics", "Studio", "Partners", "Systems"]
DOMAINS = ["example.com", "example.org", "example.net"]
DOMAIN_P = [0.5, 0.3, 0.2]

SEGMENTS = ["consumer", "smb", "enterprise"]
SEG_P = [0.72, 0.21, 0.07]
REGIONS = ["NA-East", "NA-West", "EMEA", "APAC", "LATAM"]
REGION_P = [0.30, 0.22, 0.25, 0.13, 0.10]
REGION_FRICTION = np.array([1.0, 0.85, 1.1, 1.4, 1.25])
PLANS = ["basic", "plus", "pro"]
PLAN_LABEL = ["Basic", "Plus", "Pro"]
PLAN_CENTS = np.array([1499, 3499, 7999], dtype=np.int64)
PLAN_P_BY_SEG = np.array([[0.55, 0.32, 0.13], [0.25, 0.45, 0.30], [0.05, 0.25, 0.70]])
# baseline churn hazard per year (before friction / campaign effects)
PLAN_HAZARD = np.array([0.06, 0.045, 0.035])
SEG_HAZARD = np.array([1.25, 0.85, 0.6])
SEG_TOLERANCE = np.array([1.1, 0.85, 0.6])  # scales the churn a friction episode triggers

CHANNELS = ["organic", "paid_search", "social", "referral", "partner"]
CHANNEL_P = [0.35, 0.22, 0.20, 0.12, 0.11]
CAMPAIGNS = [
    "spring_blast",
    "brand_search",
    "generic_search",
    "retargeting",
    "influencer_collab",
    "summer_social",
    "refer_a_friend",
    "double_referral",
    "partner_webinar",
    "reseller_program",
    "marketplace_listing",
]
SPRING = 0
_CAMP_P = np.zeros((5, len(CAMPAIGNS)))
_CAMP_P[1, [0, 1, 2, 3]] = [0.32, 0.28, 0.22, 0.18]
_CAMP_P[2, [0, 3, 4, 5]] = [0.36, 0.17, 0.29, 0.18]
_CAMP_P[3, [6, 7]] = [0.75, 0.25]
_CAMP_P[4, [8, 9, 10]] = [0.40, 0.35, 0.25]

EVENT_NAMES = [
    "home",
    "pricing",
    "login",
    "feature_use",
    "help_page",
    "checkout",
    "checkout_error",
    "payment_page",
    "cancel_page",
    "competitor_compare",
    "downgrade_page",
]
(
    E_HOME,
    E_PRICING,
    E_LOGIN,
    E_FEATURE,
    E_HELP,
    E_CHECKOUT,
    E_CHECKOUT_ERR,
    E_PAYMENT,
    E_CANCEL,
    E_COMPETITOR,
    E_DOWNGRADE,
) = range(len(EVENT_NAMES))
DEVICES = ["desktop", "mobile", "tablet"]
DEVICE_P = [0.55, 0.38, 0.07]
# routine event mixes
_LOGGED_EV = (
    [E_FEATURE, E_HOME, E_HELP, E_PRICING, E_PAYMENT, E_CHECKOUT, E_DOWNGRADE],
    [0.64, 0.08, 0.10, 0.06, 0.04, 0.07, 0.01],
)
_ANON_EV = ([E_HOME, E_PRICING, E_HELP], [0.5, 0.3, 0.2])
_VISITOR_EV = ([E_HOME, E_PRICING, E_HELP, E_COMPETITOR], [0.45, 0.27, 0.18, 0.10])

TICKET_CHANNELS = ["chat", "email", "phone", "web_form"]
T_CHAT, T_EMAIL, T_PHONE, T_WEB = range(4)
TOPICS = ["billing", "login", "checkout", "cancellation", "how_to", "bug"]
TP_BILLING, TP_LOGIN, TP_CHECKOUT, TP_CANCEL, TP_HOWTO, TP_BUG = range(6)
TEAMS = ["support", "billing", "tech"]
TOPIC_TEAM = np.array([1, 2, 2, 0, 0, 2])

TOUCHES = ["email_sent", "email_open", "email_click", "ad_click"]
NURTURE = [
    "welcome_series",
    "monthly_newsletter",
    "product_update",
    "upsell_pro",
    "feature_webinar",
    "renewal_reminder",
]
TOUCH_CAMPAIGNS = CAMPAIGNS + NURTURE

ONE_OFFS = ["Add-on: extra storage", "Add-on: priority support", "Training session", "Onboarding package"]
ONE_OFF_CENTS = np.array([999, 2499, 14900, 49900], dtype=np.int64)
_BILL_DESC = pa.array(
    [f"Subscription - {p} plan (monthly)" for p in PLAN_LABEL]
    + [f"Subscription - {p} plan (monthly) - payment retry" for p in PLAN_LABEL]
    + [f"Refund - {p} plan" for p in PLAN_LABEL]
    + ONE_OFFS,
    pa.string(),
)

OWNERS = ["J. Rivera", "M. Okafor", "S. Lindqvist", "A. Tanaka", "R. Haddad", "L. Moreau", "K. Novak", "D. Mensah"]
OPP_PRODUCTS = ["Basic plan", "Plus plan", "Pro plan", "Seat expansion", "Premium support", "Professional services"]

# friction episode types
EP_CHECKOUT, EP_PAYMENT, EP_TRANSFER, EP_REPEAT, EP_SLOW = range(5)
EP_RATE = np.array([0.16, 0.08, 0.10, 0.07, 0.06])  # per customer-year at propensity 1

FILES = {
    "crm": "crm_customers.csv",
    "web": "web_events.csv",
    "marketing": "marketing_touches.csv",
    "helpdesk": "helpdesk_tickets.csv",
    "billing": "billing_transactions.csv",
    "subscriptions": "billing_subscriptions.csv",
    "sales": "sales_opportunities.csv",
}


@dataclass(frozen=True)
class DemoExtract:
    path: Path  # the CSV written
    source: str  # source name: crm, web, marketing, helpdesk, billing, subscriptions, sales
    kind: str  # customers|events|tickets|transactions|subscriptions|opportunities
    department: str  # owning department: sales|web|marketing|support|billing
    mapping: dict  # {"kind": kind, "columns": {FIELD: COLUMN_NAME_IN_FILE, ...}}


_META = {
    "crm": (
        "customers",
        "sales",
        {
            "customer_id": "CustomerID",
            "name": "Full Name",
            "email": "Email",
            "phone": "Phone",
            "account_id": "Billing Account",
            "signup_date": "Signup Date",
            "segment": "Segment",
            "region": "Region",
            "plan": "Plan",
            "acquisition_channel": "Acquisition Channel",
            "campaign": "Campaign",
            "consent_marketing": "Marketing Opt-In",
        },
    ),
    "web": (
        "events",
        "web",
        {
            "visitor_id": "cookie_id",
            "email": "user_email",
            "timestamp": "event_time",
            "activity": "event_name",
            "case_id": "session_id",
        },
    ),
    "marketing": (
        "events",
        "marketing",
        {"email": "Contact Email", "timestamp": "Sent At", "activity": "Touch", "channel": "Channel"},
    ),
    "helpdesk": (
        "tickets",
        "support",
        {
            "ticket_id": "Ticket #",
            "email": "Requester Email",
            "phone": "Requester Phone",
            "opened_at": "Created",
            "closed_at": "Resolved",
            "channel": "Channel",
            "topic": "Topic",
            "transfers": "Transfers",
            "status": "Status",
            "satisfaction": "CSAT",
            "department": "Team",
        },
    ),
    "billing": (
        "transactions",
        "billing",
        {
            "transaction_id": "txn_ref",
            "account_id": "account_no",
            "timestamp": "txn_date",
            "amount": "amount",
            "status": "status",
            "product": "description",
            "currency": "currency",
        },
    ),
    "subscriptions": (
        "subscriptions",
        "billing",
        {
            "subscription_id": "sub_id",
            "account_id": "account_no",
            "start": "start_date",
            "end": "end_date",
            "plan": "plan",
            "mrr": "mrr",
            "status": "status",
        },
    ),
    "sales": (
        "opportunities",
        "sales",
        {
            "opportunity_id": "Opp ID",
            "customer_id": "CustomerID",
            "created_at": "Created",
            "closed_at": "Closed",
            "stage": "Stage",
            "amount": "Amount",
            "owner": "Owner",
            "product": "Product",
        },
    ),
}

_MONEY = pa.decimal128(18, 2)
_TS = pa.timestamp("s")
_STR = pa.string()
SCHEMAS = {
    "crm": pa.schema(
        [
            ("CustomerID", _STR),
            ("Full Name", _STR),
            ("Email", _STR),
            ("Phone", _STR),
            ("Billing Account", _STR),
            ("Signup Date", pa.date32()),
            ("Segment", _STR),
            ("Company", _STR),
            ("Region", _STR),
            ("Plan", _STR),
            ("Acquisition Channel", _STR),
            ("Campaign", _STR),
            ("Marketing Opt-In", _STR),
        ]
    ),
    "web": pa.schema(
        [
            ("cookie_id", _STR),
            ("user_email", _STR),
            ("event_time", _TS),
            ("event_name", _STR),
            ("session_id", _STR),
            ("device", _STR),
        ]
    ),
    "marketing": pa.schema(
        [("Contact Email", _STR), ("Sent At", _TS), ("Campaign", _STR), ("Touch", _STR), ("Channel", _STR)]
    ),
    "helpdesk": pa.schema(
        [
            ("Ticket #", pa.int64()),
            ("Requester Email", _STR),
            ("Requester Phone", _STR),
            ("Created", _TS),
            ("Resolved", _TS),
            ("Channel", _STR),
            ("Topic", _STR),
            ("Transfers", pa.int64()),
            ("Status", _STR),
            ("CSAT", pa.int64()),
            ("Team", _STR),
        ]
    ),
    "billing": pa.schema(
        [
            ("txn_ref", _STR),
            ("account_no", _STR),
            ("txn_date", _TS),
            ("amount", _MONEY),
            ("status", _STR),
            ("description", _STR),
            ("currency", _STR),
        ]
    ),
    "subscriptions": pa.schema(
        [
            ("sub_id", _STR),
            ("account_no", _STR),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("plan", _STR),
            ("seats", pa.int64()),
            ("mrr", _MONEY),
            ("status", _STR),
        ]
    ),
    "sales": pa.schema(
        [
            ("Opp ID", _STR),
            ("CustomerID", _STR),
            ("Created", pa.date32()),
            ("Closed", pa.date32()),
            ("Stage", _STR),
            ("Amount", _MONEY),
            ("Owner", _STR),
            ("Product", _STR),
        ]
    ),
}


# ----------------------------------------------------------------------------- helpers
def _sa(values) -> pa.Array:
    return pa.array(list(values), _STR)


def _take(strings: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    ia = pa.array(np.asarray(idx, dtype=np.int64), mask=None if valid is None else ~valid)
    return strings.take(ia)


def _num(x: np.ndarray, width: int | None = None) -> pa.Array:
    s = pa.array(np.asarray(x, dtype=np.int64)).cast(_STR)
    return pc.utf8_lpad(s, width=width, padding="0") if width else s


def _join(*parts, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _ts(sec: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    a = np.asarray(sec, dtype=np.int64).astype("datetime64[s]")
    return pa.array(a, type=_TS, mask=None if valid is None else ~valid)


def _date(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    a = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    return pa.array(a, type=pa.date32(), mask=None if valid is None else ~valid)


def _money(cents: np.ndarray) -> pa.Array:
    c = np.asarray(cents, dtype=np.int64)
    buf = np.empty((c.size, 2), dtype="<i8")
    buf[:, 0] = c
    buf[:, 1] = np.where(c < 0, -1, 0)
    return pa.Array.from_buffers(_MONEY, c.size, [None, pa.py_buffer(buf.tobytes())])


def _bij(counter: np.ndarray, mod: int, mult: int, add: int) -> np.ndarray:
    """Bijective scramble of unique counters into [0, mod) (mult coprime with mod)."""
    return (np.asarray(counter, dtype=np.int64) * mult + add) % mod


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(owner.size, dtype=np.int64) - starts[owner]
    return owner, within


def _rowchoice(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def _pick(rng, n, items_probs):
    items, probs = items_probs
    return np.asarray(items)[rng.choice(len(items), n, p=probs)]


def _uniform_between(rng, lo, hi):
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    return lo + (rng.random(lo.shape) * np.maximum(hi - lo, 1)).astype(np.int64)


def _add_months(start_day: np.ndarray, k: np.ndarray, dom: np.ndarray) -> np.ndarray:
    """Day number of the k-th monthly anniversary (k>=1) of start_day, dom clamped to 28."""
    sm = np.asarray(start_day).astype("datetime64[D]").astype("datetime64[M]")
    d = (sm + k.astype("timedelta64[M]")).astype("datetime64[D]")
    return d.astype(np.int64) + (dom - 1)


def _month_index(day: np.ndarray) -> np.ndarray:
    return np.asarray(day).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


# ----------------------------------------------------------------------------- customers
class _Customers:
    """Per-customer attributes for the whole population (numpy + a few string arrays)."""

    def __init__(self, rng: np.random.Generator, n: int, as_of: date):
        as_of_day = (as_of - date(1970, 1, 1)).days
        self.n = n
        self.as_of_day = as_of_day
        self.seg = rng.choice(3, n, p=SEG_P)
        self.region = rng.choice(5, n, p=REGION_P)
        self.plan = _rowchoice(rng, PLAN_P_BY_SEG[self.seg])
        seats = np.ones(n, dtype=np.int64)
        smb, ent = self.seg == 1, self.seg == 2
        seats[smb] = rng.integers(1, 11, smb.sum())
        seats[ent] = rng.integers(10, 61, ent.sum())
        self.seats = seats
        disc = np.where(ent, 0.85, 1.0)
        self.mrr_cents = np.round(PLAN_CENTS[self.plan] * seats * disc).astype(np.int64)
        self.channel = rng.choice(5, n, p=CHANNEL_P)
        camp = _rowchoice(rng, _CAMP_P[self.channel])
        self.campaign = np.where(self.channel == 0, -1, camp)

        # signups over the 3 years before as_of, growing towards the present
        age = 1 + np.floor(1094 * rng.random(n) ** 1.15).astype(np.int64)
        signup = as_of_day - age
        spring = np.flatnonzero(self.campaign == SPRING)
        lo_day, hi_day = as_of_day - 1095, as_of_day - 1
        wins = []
        for y in range(as_of.year - 3, as_of.year + 1):
            a = max((date(y, 3, 1) - date(1970, 1, 1)).days, lo_day)
            b = min((date(y, 5, 31) - date(1970, 1, 1)).days, hi_day)
            if b >= a:
                wins.append((a, b - a + 1))
        if wins and spring.size:
            starts = np.array([w[0] for w in wins])
            lens = np.array([w[1] for w in wins])
            cum = np.cumsum(lens)
            r = rng.integers(0, cum[-1], spring.size)
            w = np.searchsorted(cum, r, side="right")
            signup[spring] = starts[w] + (r - (cum[w] - lens[w]))
        self.signup_day = signup

        self.first = rng.integers(0, len(FIRST_NAMES), n)
        self.last = rng.integers(0, len(LAST_NAMES), n)
        self.email_num = rng.permutation(n).astype(np.int64) + 1
        self.email_fmt = rng.choice(4, n, p=[0.4, 0.2, 0.25, 0.15])
        self.domain = rng.choice(3, n, p=DOMAIN_P)
        self.has_phone = rng.random(n) < 0.9
        self.phone7 = rng.choice(10_000_000, n, replace=False).astype(np.int64)
        self.account_no = rng.choice(9_000_000, n, replace=False).astype(np.int64) + 1_000_000
        self.consent = rng.random(n) < 0.62
        self.company_suffix = rng.integers(0, len(COMPANY_SUFFIX), n)

        # latent churn drivers
        self.base_hazard = PLAN_HAZARD[self.plan] * SEG_HAZARD[self.seg]
        self.t0_days = 1 + np.floor(rng.exponential(365.25 / self.base_hazard)).astype(np.int64)
        sigma = 0.9
        self.propensity = REGION_FRICTION[self.region] * rng.lognormal(-(sigma**2) / 2, sigma, n)
        fast = (self.campaign == SPRING) & (rng.random(n) < 0.75)
        sb_days = np.clip(np.round(rng.gamma(2.2, 16.0, n)), 7, 88).astype(np.int64)
        self.spring_fast_days = np.where(fast, sb_days, np.iinfo(np.int64).max // 4)
        self.bill_sec = rng.integers(1 * HOUR, 5 * HOUR, n)  # billing run time of day
        self.cookie_birth_jitter = rng.integers(31 * DAY, 36 * DAY, n)

        # strings for the whole population (linked to from every other file)
        gidx = np.arange(n, dtype=np.int64)
        self.customer_id = _join("CUS-", _num(gidx + 1, 7))
        first = _take(_sa(FIRST_NAMES), self.first)
        last = _take(_sa(LAST_NAMES), self.last)
        self.full_name = _join(first, last, sep=" ")
        lf = _take(_sa(n_.lower() for n_ in FIRST_NAMES), self.first)
        ll = _take(_sa(n_.lower() for n_ in LAST_NAMES), self.last)
        num = _num(self.email_num)
        local = pc.choose(
            pa.array(self.email_fmt.astype(np.int8)),
            _join(lf, ".", ll, num),
            _join(lf, num),
            _join(pc.utf8_slice_codeunits(lf, 0, 1), ll, num),
            _join(lf, "_", ll, num),
        )
        self.email = _join(local, _take(_sa(DOMAINS), self.domain), sep="@")
        ex = _num(self.phone7 // 10_000, 3)
        line = _num(self.phone7 % 10_000, 4)
        self.phone_e164 = pc.if_else(pa.array(self.has_phone), _join("+1555", ex, line), None)
        self.phone_fmts = [  # helpdesk formats (not E.164)
            _join("(555) ", ex, "-", line),
            _join("555.", ex, ".", line),
            _join("555-", ex, "-", line),
            _join("+1 555 ", ex, " ", line),
        ]
        self.account = _join("ACC-", _num(self.account_no, 7))
        self.company = _join(last, _take(_sa(COMPANY_SUFFIX), self.company_suffix), sep=" ")


# ----------------------------------------------------------------------------- world chunk
class _Chunk:
    """Everything for customers [a, b): episodes, churn, and the rows of every file."""

    def __init__(self, rng: np.random.Generator, C: _Customers, a: int, b: int, counters: dict):
        self.rng, self.C, self.a, self.b = rng, C, a, b
        self.m = b - a
        self.counters = counters
        self.cutoff_sec = (C.as_of_day + 1) * DAY  # data runs to the end of as_of
        self.signup_day = C.signup_day[a:b]
        self.signup_sec = self.signup_day * DAY
        self._episodes()
        self._churn()

    # ---- friction episodes and churn ------------------------------------------------
    def _episodes(self):
        rng, C, a, b, m = self.rng, self.C, self.a, self.b, self.m
        span = self.cutoff_sec - self.signup_sec
        years = span / YEAR_S
        lam = EP_RATE[None, :] * (C.propensity[a:b] * years)[:, None]
        counts = rng.poisson(lam)
        # failed payments need a monthly charge after the first one, before as_of
        self.dom = np.minimum(self.signup_day - _month_start_day(self.signup_day) + 1, 28)
        k_ub = _month_index(np.full(m, C.as_of_day)) - _month_index(self.signup_day) + 1
        counts[k_ub <= 1, EP_PAYMENT] = 0
        ep_type = np.repeat(np.tile(np.arange(5), m), counts.ravel())
        owner = np.repeat(np.repeat(np.arange(m), 5), counts.ravel())
        ne = owner.size
        t = self.signup_sec[owner] + 8 * HOUR + (rng.random(ne) * (span[owner] - 9 * HOUR)).astype(np.int64)
        is_pay = ep_type == EP_PAYMENT
        pk = np.zeros(ne, dtype=np.int64)
        if is_pay.any():
            po = owner[is_pay]
            pk[is_pay] = rng.integers(1, k_ub[po])
            t[is_pay] = _add_months(self.signup_day[po], pk[is_pay], self.dom[po]) * DAY + C.bill_sec[a:b][po]
        # per-episode attributes (drawn for all, used per type)
        E = dict(owner=owner, type=ep_type, t=t, k=pk)
        E["n_err"] = 1 + rng.binomial(2, 0.35, ne)
        E["help"] = rng.random(ne) < 0.45
        E["ticket"] = rng.random(ne) < 0.25
        E["ticket_off"] = rng.integers(10 * MINUTE, DAY, ne)
        E["recovered"] = rng.random(ne) < 0.7
        E["retry_off"] = rng.integers(1 * DAY, 5 * DAY, ne)
        E["page"] = rng.random(ne) < 0.45
        E["page_off"] = rng.integers(1 * HOUR, 2 * DAY, ne)
        E["transfers"] = 1 + rng.binomial(2, 0.3, ne)
        E["topic"] = rng.choice(6, ne, p=[0.25, 0.2, 0.15, 0.0, 0.1, 0.3])
        E["dur"] = rng.integers(4 * HOUR, 3 * DAY, ne)
        E["slow_dur"] = rng.integers(4 * DAY, 20 * DAY, ne)
        E["n_rep"] = 2 + (rng.random(ne) < 0.45)
        g1 = rng.integers(20 * MINUTE, DAY, ne)
        g2 = rng.integers(DAY // 2, int(2.5 * DAY), ne)
        g3 = rng.integers(DAY // 2, int(2.5 * DAY), ne)
        E["rep_off"] = np.stack([g1, g1 + g2, np.minimum(g1 + g2 + g3, 7 * DAY - HOUR)], axis=1)
        last_off = np.zeros(ne, dtype=np.int64)
        last_off[ep_type == EP_CHECKOUT] = np.where(E["ticket"], E["ticket_off"], 10 * MINUTE)[ep_type == EP_CHECKOUT]
        last_off[is_pay] = np.maximum(E["retry_off"], np.where(E["page"], E["page_off"], 0))[is_pay]
        last_off[ep_type == EP_TRANSFER] = E["dur"][ep_type == EP_TRANSFER]
        rep = ep_type == EP_REPEAT
        last_off[rep] = E["rep_off"][rep, E["n_rep"][rep] - 1]
        last_off[ep_type == EP_SLOW] = E["slow_dur"][ep_type == EP_SLOW]
        q = np.array([0.3, 0.0, 0.25, 0.5, 0.3])[ep_type]
        q = np.where(is_pay, np.where(E["recovered"], 0.1, 0.6), q)
        q = q * SEG_TOLERANCE[C.seg[a:b][owner]]  # contracts and switching costs
        E["trig"] = rng.random(ne) < q
        E["trig_day"] = (t + last_off) // DAY + 2 + np.round(rng.gamma(2.0, 9.0, ne)).astype(np.int64)
        self.E = E

    def _churn(self):
        C, a, b, E = self.C, self.a, self.b, self.E
        end = self.signup_day + np.minimum(C.t0_days[a:b], C.spring_fast_days[a:b])
        trig = E["trig"]
        np.minimum.at(end, E["owner"][trig], E["trig_day"][trig])
        self.end_day = end
        self.churned = end <= C.as_of_day
        self.limit_sec = np.minimum(end * DAY, self.cutoff_sec)  # no activity at/after this
        keep = E["t"] < self.limit_sec[E["owner"]]
        self.E = {k: v[keep] for k, v in E.items()}

    # ---- helpers on rows ------------------------------------------------------------
    def _next(self, name, k):
        start = self.counters[name]
        self.counters[name] = start + k
        return start + np.arange(k, dtype=np.int64)

    # ---- web ---------------------------------------------------------------------
    def web(self) -> pa.Table:
        rng, C, a, m, E = self.rng, self.C, self.a, self.m, self.E
        n_cookie = 1 + rng.binomial(2, 0.3, m)
        cookie_base = np.cumsum(n_cookie) - n_cookie
        active = (self.limit_sec - self.signup_sec) / YEAR_S
        blocks = []  # (cust, start, logged, slot, names2d)
        W = 8

        def names_from(dist, rows, cols):
            items, probs = dist
            return np.asarray(items, dtype=np.int8)[rng.choice(len(items), (rows, cols), p=probs)]

        def pad(names, lengths):
            names = names.copy()
            names[np.arange(names.shape[1])[None, :] >= lengths[:, None]] = -1
            out = np.full((names.shape[0], W), -1, dtype=np.int8)
            out[:, : names.shape[1]] = names
            return out

        # routine sessions
        n_sess = 2 + rng.poisson(1.5 + 4.5 * np.sqrt(active))
        o, _ = _expand(n_sess)
        s = o.size
        start = _uniform_between(rng, self.signup_sec[o], self.limit_sec[o])
        logged = rng.random(s) < 0.62
        ln = np.minimum(1 + rng.poisson(2.0, s), W)
        nm = np.where(logged[:, None], names_from(_LOGGED_EV, s, W), names_from(_ANON_EV, s, W))
        nm[:, 0] = np.where(logged & (rng.random(s) < 0.6), E_LOGIN, nm[:, 0])
        blocks.append((o, start, logged, rng.integers(0, n_cookie[o]), pad(nm, ln)))
        # pre-signup browsing (anonymous, first cookie) and the first login
        n_pre = 1 + rng.binomial(2, 0.4, m)
        o, _ = _expand(n_pre)
        s = o.size
        start = self.signup_sec[o] - rng.integers(HOUR, 30 * DAY, s)
        blocks.append(
            (
                o,
                start,
                np.zeros(s, bool),
                np.zeros(s, np.int64),
                pad(names_from(_ANON_EV, s, 4), np.minimum(1 + rng.poisson(1.5, s), 4)),
            )
        )
        o = np.arange(m)
        start = self.signup_sec + rng.integers(10 * HOUR, 20 * HOUR, m)
        nm = np.stack([np.full(m, E_LOGIN), np.full(m, E_FEATURE), np.full(m, E_HELP)], 1).astype(np.int8)
        blocks.append((o, start, np.ones(m, bool), np.zeros(m, np.int64), pad(nm, 2 + rng.binomial(1, 0.4, m))))

        def special(mask, start, names2d, logged):
            o = E["owner"][mask]
            blocks.append((o, start, logged, rng.integers(0, n_cookie[o]), pad(names2d, (names2d >= 0).sum(1))))

        # checkout errors: checkout -> checkout_error (x1-3) -> maybe help_page
        mk = E["type"] == EP_CHECKOUT
        k = int(mk.sum())
        if k:
            nerr = E["n_err"][mk]
            nm = np.full((k, W), -1, dtype=np.int8)
            nm[:, 0] = E_PRICING
            for j in range(3):
                on = nerr > j
                nm[on, 1 + 2 * j] = E_CHECKOUT
                nm[on, 2 + 2 * j] = E_CHECKOUT_ERR
            hp = E["help"][mk]
            nm[np.arange(k)[hp], 1 + 2 * nerr[hp]] = E_HELP
            nm = _compact(nm)
            special(mk, E["t"][mk], nm, np.ones(k, bool))
        # failed payment -> payment_page visit
        mk = (E["type"] == EP_PAYMENT) & E["page"]
        k = int(mk.sum())
        if k:
            nm = np.tile(np.array([E_LOGIN, E_PAYMENT], np.int8), (k, 1))
            special(mk, E["t"][mk] + E["page_off"][mk], nm, np.ones(k, bool))
        # repeat contact episodes often start with a help page visit
        mk = (E["type"] == EP_REPEAT) & (rng.random(E["t"].size) < 0.7)
        k = int(mk.sum())
        if k:
            nm = np.tile(np.array([E_HELP, E_HELP], np.int8), (k, 1))
            nm[rng.random(k) < 0.5, 1] = -1
            special(mk, E["t"][mk] - rng.integers(5 * MINUTE, 2 * HOUR, k), nm, rng.random(k) < 0.6)

        # intent before the end date (churners, and imminent churners just after as_of)
        cand = np.flatnonzero((self.end_day <= C.as_of_day + 21) & (rng.random(m) < 0.85))
        k = cand.size
        if k:
            do_cancel = rng.random(k) < 0.75
            do_comp = rng.random(k) < 0.55
            do_cancel |= ~do_comp
            end_sec = self.end_day[cand] * DAY
            for which, mask in ((0, do_cancel), (1, do_comp)):
                cc = cand[mask]
                kk = cc.size
                if not kk:
                    continue
                es = end_sec[mask]
                st = es - rng.integers(1 * DAY, 21 * DAY, kk)
                early = st < self.signup_sec[cc] + HOUR
                st[early] = _uniform_between(rng, self.signup_sec[cc][early] + HOUR, es[early] - HOUR)
                if which == 0:
                    nm = np.tile(np.array([E_LOGIN, E_CANCEL, E_DOWNGRADE], np.int8), (kk, 1))
                    nm[rng.random(kk) < 0.7, 2] = -1
                    lg = np.ones(kk, bool)
                else:
                    nm = np.tile(np.array([E_COMPETITOR, E_PRICING], np.int8), (kk, 1))
                    nm[rng.random(kk) < 0.7, 1] = -1
                    lg = rng.random(kk) < 0.4
                blocks.append((cc, st, lg, rng.integers(0, n_cookie[cc]), pad(nm, (nm >= 0).sum(1))))
        # background intent noise (rare, anyone)
        n_noise = rng.poisson(0.06 * active)
        o, _ = _expand(n_noise)
        s = o.size
        if s:
            st = _uniform_between(rng, self.signup_sec[o], self.limit_sec[o])
            lg = rng.random(s) < 0.6
            nm = np.full((s, 2), -1, np.int8)
            nm[:, 0] = rng.choice([E_CANCEL, E_COMPETITOR, E_DOWNGRADE], s, p=[0.35, 0.35, 0.3])
            nm[lg, 1] = nm[lg, 0]
            nm[lg, 0] = E_LOGIN
            nm[~lg & (nm[:, 0] == E_CANCEL), 0] = E_COMPETITOR  # cancel page needs a login
            blocks.append((o, st, lg, rng.integers(0, n_cookie[o]), pad(nm, (nm >= 0).sum(1))))

        # anonymous visitors who never become customers
        n_anon = int(round(0.35 * m))
        an_sess = 1 + rng.binomial(2, 0.3, n_anon)
        ao, _ = _expand(an_sess)
        s = ao.size
        lo = (C.as_of_day - 1095) * DAY
        ast = lo + (rng.random(s) * (self.cutoff_sec - lo)).astype(np.int64)
        anm = pad(names_from(_VISITOR_EV, s, 4), 1 + rng.binomial(3, 0.4, s))

        cust = np.concatenate([bl[0] for bl in blocks] + [np.full(s, -1)])
        start = np.concatenate([bl[1] for bl in blocks] + [ast])
        logged = np.concatenate([bl[2] for bl in blocks] + [np.zeros(s, bool)])
        slot = np.concatenate([bl[3] for bl in blocks] + [np.zeros(s, np.int64)])
        names = np.concatenate([bl[4] for bl in blocks] + [anm])
        n_c_cookies = int(n_cookie.sum())
        cookie_local = np.where(cust >= 0, cookie_base[np.maximum(cust, 0)] + slot, 0)
        anon_pos = np.flatnonzero(cust < 0)
        cookie_local[anon_pos] = n_c_cookies + ao
        S = cust.size
        sess_global = self._next("session", S)

        r, c = np.nonzero(names >= 0)
        gaps = (rng.exponential(80.0, (S, W)) + 3).astype(np.int64)
        gaps[:, 0] = 0
        offs = np.cumsum(gaps, axis=1)
        t = start[r] + offs[r, c]
        ev = names[r, c]
        rc = cust[r]
        ok = np.where(rc >= 0, t < self.limit_sec[np.maximum(rc, 0)], t < self.cutoff_sec)
        r, t, ev, rc = r[ok], t[ok], ev[ok], rc[ok]
        order = np.argsort(t, kind="stable")  # rows come session by session, in time order
        r, t, ev, rc = r[order], t[order], ev[order], rc[order]

        # cookies: unique ids "<10 digits>.<first seen epoch>"
        n_cookies = n_c_cookies + n_anon
        cookie_g = self._next("cookie", n_cookies)
        birth = np.empty(n_cookies, dtype=np.int64)
        cown = np.repeat(np.arange(m), n_cookie)
        birth[:n_c_cookies] = self.signup_sec[cown] - C.cookie_birth_jitter[a:][cown]
        birth[n_c_cookies:] = lo - rng.integers(0, 400 * DAY, n_anon)
        cookie_str = _join(
            _num(1_000_000_000 + _bij(cookie_g, 9_000_000_000, 5_562_305_899, 12_345)), _num(birth), sep="."
        )
        device = rng.choice(3, n_cookies, p=DEVICE_P)
        ck = cookie_local[r]
        has_email = logged[r] & (rc >= 0)
        return pa.table(
            {
                "cookie_id": cookie_str.take(pa.array(ck)),
                "user_email": _take(C.email, a + np.maximum(rc, 0), has_email),
                "event_time": _ts(t),
                "event_name": _take(_sa(EVENT_NAMES), ev),
                "session_id": _join("s", _num(_bij(sess_global, 10**10, 6_180_339_887, 987_654), 10)).take(pa.array(r)),
                "device": _take(_sa(DEVICES), device[ck]),
            },
            schema=SCHEMAS["web"],
        )

    # ---- helpdesk ------------------------------------------------------------------
    def helpdesk(self) -> pa.Table:
        rng, C, a, m, E = self.rng, self.C, self.a, self.m, self.E
        active = (self.limit_sec - self.signup_sec) / YEAR_S
        parts = []  # (cust, opened, channel, topic, transfers, dur, friction)

        def add(cust, opened, channel, topic, transfers, dur, friction):
            k = cust.size
            parts.append(
                (
                    cust,
                    opened,
                    np.broadcast_to(channel, k),
                    np.broadcast_to(topic, k),
                    np.broadcast_to(transfers, k),
                    dur,
                    np.broadcast_to(friction, k),
                )
            )

        def quick(k):
            return np.minimum(rng.lognormal(np.log(3 * HOUR), 0.9, k), 2 * DAY).astype(np.int64) + 5 * MINUTE

        # ordinary tickets
        o, _ = _expand(rng.poisson(0.35 + 0.75 * active))
        k = o.size
        add(
            o,
            _uniform_between(rng, self.signup_sec[o], self.limit_sec[o]),
            rng.choice(4, k, p=[0.35, 0.3, 0.2, 0.15]),
            rng.choice(6, k, p=[0.2, 0.15, 0.1, 0.05, 0.35, 0.15]),
            0,
            quick(k),
            False,
        )
        # checkout error / failed payment follow-ups
        for typ, topic, off in ((EP_CHECKOUT, TP_CHECKOUT, "ticket_off"), (EP_PAYMENT, TP_BILLING, "ticket_off")):
            mk = (E["type"] == typ) & E["ticket"]
            k = int(mk.sum())
            add(E["owner"][mk], E["t"][mk] + E[off][mk], rng.choice([T_CHAT, T_EMAIL], k), topic, 0, quick(k), False)
        # transferred tickets
        mk = E["type"] == EP_TRANSFER
        k = int(mk.sum())
        add(
            E["owner"][mk],
            E["t"][mk],
            rng.choice(4, k, p=[0.35, 0.2, 0.4, 0.05]),
            E["topic"][mk],
            E["transfers"][mk],
            E["dur"][mk],
            True,
        )
        # slow tickets
        mk = E["type"] == EP_SLOW
        k = int(mk.sum())
        add(E["owner"][mk], E["t"][mk], rng.choice([T_EMAIL, T_WEB], k), E["topic"][mk], 0, E["slow_dur"][mk], True)
        # repeat contacts: 2-3 tickets on the same topic within 7 days, changing channel
        mk = np.flatnonzero(E["type"] == EP_REPEAT)
        if mk.size:
            first_ch = rng.choice([T_CHAT, T_EMAIL, T_WEB], mk.size)
            for j in range(3):
                sel = mk[E["n_rep"][mk] > j]
                selj = E["n_rep"][mk] > j
                k = sel.size
                ch = first_ch[selj] if j == 0 else np.where(rng.random(k) < 0.7, T_PHONE, T_CHAT)
                if j == 2:
                    ch = np.full(k, T_PHONE)
                tr = np.where(rng.random(k) < (0.0 if j == 0 else 0.3), 1, 0)
                add(E["owner"][sel], E["t"][sel] + E["rep_off"][sel, j], ch, E["topic"][sel], tr, quick(k), True)
        # some churners ask support to cancel
        cc = np.flatnonzero((self.end_day <= C.as_of_day + 10) & (rng.random(m) < 0.3))
        es = self.end_day[cc] * DAY
        add(
            cc,
            np.maximum(es - rng.integers(HOUR, 5 * DAY, cc.size), self.signup_sec[cc] + HOUR),
            rng.choice(4, cc.size, p=[0.3, 0.3, 0.3, 0.1]),
            TP_CANCEL,
            0,
            quick(cc.size),
            False,
        )

        cust = np.concatenate([p[0] for p in parts])
        opened = np.concatenate([p[1] for p in parts]).astype(np.int64)
        channel = np.concatenate([p[2] for p in parts]).astype(np.int64)
        topic = np.concatenate([p[3] for p in parts]).astype(np.int64)
        transfers = np.concatenate([p[4] for p in parts]).astype(np.int64)
        dur = np.concatenate([p[5] for p in parts]).astype(np.int64)
        friction = np.concatenate([p[6] for p in parts]).astype(bool)
        ok = (opened < self.limit_sec[cust]) & (opened >= self.signup_sec[cust])
        order = np.flatnonzero(ok)[np.argsort(opened[ok], kind="stable")]
        cust, opened, channel, topic, transfers, dur, friction = (
            x[order] for x in (cust, opened, channel, topic, transfers, dur, friction)
        )
        k = cust.size
        g = a + cust
        resolved = opened + dur
        closed = resolved < self.cutoff_sec
        # identifiers as the requester left them
        p_email = np.array([0.85, 1.0, 0.3, 0.97])[channel]
        p_phone = np.array([0.1, 0.15, 1.0, 0.2])[channel]
        has_email = rng.random(k) < p_email
        has_phone = (rng.random(k) < p_phone) & C.has_phone[g]
        has_email |= ~has_phone
        hub = rng.random(k) < 0.003
        has_phone = np.where(hub, (rng.random(k) < 0.6) & C.has_phone[g], has_phone)
        email = pc.if_else(pa.array(hub), HUB_EMAIL, _take(C.email, g, has_email | hub))
        fmt = rng.choice(4, k, p=[0.4, 0.3, 0.2, 0.1])
        phone = pc.choose(pa.array(fmt.astype(np.int8)), *[_take(f, g, has_phone) for f in C.phone_fmts])
        answered = closed & (rng.random(k) < 0.4)
        csat_good = rng.choice(5, k, p=[0.03, 0.04, 0.1, 0.33, 0.5]) + 1
        csat_bad = rng.choice(5, k, p=[0.25, 0.25, 0.25, 0.15, 0.1]) + 1
        csat = np.where(friction | (transfers > 0), csat_bad, csat_good)
        team = np.where((topic == TP_BUG) | (topic == TP_LOGIN), np.where(rng.random(k) < 0.6, 2, 0), TOPIC_TEAM[topic])
        return pa.table(
            {
                "Ticket #": pa.array(100_000 + self._next("ticket", k)),
                "Requester Email": email,
                "Requester Phone": phone,
                "Created": _ts(opened),
                "Resolved": _ts(resolved, closed),
                "Channel": _take(_sa(TICKET_CHANNELS), channel),
                "Topic": _take(_sa(TOPICS), topic),
                "Transfers": pa.array(transfers),
                "Status": _take(_sa(["open", "closed"]), closed.astype(np.int64)),
                "CSAT": pa.array(csat, mask=~answered),
                "Team": _take(_sa(TEAMS), team),
            },
            schema=SCHEMAS["helpdesk"],
        )

    # ---- billing -------------------------------------------------------------------
    def billing(self) -> pa.Table:
        rng, C, a, m, E = self.rng, self.C, self.a, self.m, self.E
        g_all = np.arange(a, self.b)
        mrr = C.mrr_cents[a : self.b]
        bill_sec = C.bill_sec[a : self.b]
        # monthly charges: k = 0 on the signup day, then on the (clamped) anniversary
        lim_day = (self.limit_sec - 1) // DAY
        k_ub = _month_index(lim_day) - _month_index(self.signup_day) + 1
        o, k = _expand(k_ub)
        day = np.where(k == 0, self.signup_day[o], _add_months(self.signup_day[o], k, self.dom[o]))
        t = day * DAY + bill_sec[o]
        keep = t < self.limit_sec[o]
        o, k, t = o[keep], k[keep], t[keep]
        n_ch = np.bincount(o, minlength=m)
        row_start = np.cumsum(n_ch) - n_ch
        status = np.zeros(o.size, dtype=np.int64)  # 0 paid 1 failed 2 refunded
        kind = np.zeros(o.size, dtype=np.int64)  # 0 subscription 1 retry 2 refund 3.. one-off
        amount = mrr[o].copy()
        # failed payments (the episodes), with a retry that usually succeeds
        mk = E["type"] == EP_PAYMENT
        eo, ek = E["owner"][mk], E["k"][mk]
        valid = ek < n_ch[eo]
        eo, ek = eo[valid], ek[valid]
        rec = E["recovered"][mk][valid]
        roff = E["retry_off"][mk][valid]
        rows = row_start[eo] + ek
        status[rows] = 1
        # the retry a few days later: paid when recovered, failed again otherwise
        retry_t = t[rows] + roff
        retry_status = np.where(rec, 0, 1)
        # refunds of some paid charges
        paid = np.flatnonzero(status == 0)
        rf = paid[rng.random(paid.size) < 0.012]
        # one-off purchases
        active = (self.limit_sec - self.signup_sec) / YEAR_S
        oo, _ = _expand(rng.poisson(0.35 * active))
        item = np.where(
            C.seg[a : self.b][oo] == 0,
            rng.choice(3, oo.size, p=[0.6, 0.3, 0.1]),
            rng.choice(4, oo.size, p=[0.2, 0.3, 0.3, 0.2]),
        )
        ot = _uniform_between(rng, self.signup_sec[oo] + HOUR, self.limit_sec[oo])
        ostatus = np.where(rng.random(oo.size) < 0.03, 1, 0)

        cust = np.concatenate([o, eo, o[rf], oo])
        tt = np.concatenate([t, retry_t, t[rf] + rng.integers(DAY, 10 * DAY, rf.size), ot])
        st = np.concatenate([status, retry_status, np.full(rf.size, 2), ostatus])
        kd = np.concatenate([kind, np.ones(eo.size, np.int64), np.full(rf.size, 2), 3 + item])
        amt = np.concatenate([amount, mrr[eo], -mrr[o[rf]], ONE_OFF_CENTS[item]])
        ok = tt < self.limit_sec[cust]
        order = np.flatnonzero(ok)[np.argsort(tt[ok], kind="stable")]
        cust, tt, st, kd, amt = (x[order] for x in (cust, tt, st, kd, amt))
        n = cust.size
        plan = C.plan[a : self.b][cust]
        desc = np.where(kd < 3, kd * 3 + plan, 9 + kd - 3)
        ref = self._next("txn", n)
        return pa.table(
            {
                "txn_ref": _join("TXN", _num(_bij(ref, 10**10, 7_071_067_811, 424_242), 10)),
                "account_no": _take(C.account, g_all[cust]),
                "txn_date": _ts(tt),
                "amount": _money(amt),
                "status": _take(_sa(["paid", "failed", "refunded"]), st),
                "description": _take(_BILL_DESC, desc),
                "currency": _take(_sa(["USD"]), np.zeros(n, np.int64)),
            },
            schema=SCHEMAS["billing"],
        )

    # ---- subscriptions ---------------------------------------------------------------
    def subscriptions(self) -> pa.Table:
        C, a, b = self.C, self.a, self.b
        g = np.arange(a, b)
        return pa.table(
            {
                "sub_id": _join("SUB-", _num(_bij(g, 10**8, 61_803_399, 31_337), 8)),
                "account_no": C.account.slice(a, b - a),
                "start_date": _date(self.signup_day),
                "end_date": _date(self.end_day, self.churned),
                "plan": _take(_sa(PLANS), C.plan[a:b]),
                "seats": pa.array(C.seats[a:b]),
                "mrr": _money(C.mrr_cents[a:b]),
                "status": _take(_sa(["active", "cancelled"]), self.churned.astype(np.int64)),
            },
            schema=SCHEMAS["subscriptions"],
        )

    # ---- marketing -----------------------------------------------------------------
    def marketing(self) -> pa.Table:
        rng, C, a, b, m = self.rng, self.C, self.a, self.b, self.m
        opted = C.consent[a:b]
        lo, hi = self.signup_sec, self.limit_sec
        # nurture emails: sent -> maybe opened -> maybe clicked
        o, _ = _expand(np.where(opted, rng.integers(2, 5, m), 0))
        k = o.size
        sent = _uniform_between(rng, lo[o] + HOUR, hi[o])
        camp = len(CAMPAIGNS) + rng.choice(len(NURTURE), k)
        opened = rng.random(k) < 0.45
        clicked = opened & (rng.random(k) < 0.35)
        t_open = sent + rng.integers(5 * MINUTE, 36 * HOUR, k)
        t_click = t_open + rng.integers(10, 15 * MINUTE, k)
        # acquisition ad click on the signup day (paid campaigns), retargeting ads
        acq = np.flatnonzero(opted & (C.campaign[a:b] >= 0))
        rt = np.flatnonzero(opted & (rng.random(m) < 0.2))
        cust = np.concatenate([o, o[opened], o[clicked], acq, rt])
        t = np.concatenate(
            [
                sent,
                t_open[opened],
                t_click[clicked],
                self.signup_sec[acq] + rng.integers(0, 10 * HOUR, acq.size),
                _uniform_between(rng, lo[rt], hi[rt]),
            ]
        )
        touch = np.concatenate(
            [
                np.zeros(k, np.int64),
                np.ones(opened.sum(), np.int64),
                np.full(clicked.sum(), 2),
                np.full(acq.size + rt.size, 3),
            ]
        )
        cp = np.concatenate([camp, camp[opened], camp[clicked], C.campaign[a:b][acq], np.full(rt.size, 3)])
        ok = t < hi[cust]
        order = np.flatnonzero(ok)[np.argsort(t[ok], kind="stable")]
        cust, t, touch, cp = (x[order] for x in (cust, t, touch, cp))
        g = a + cust
        email = _take(C.email, g)
        mixed = C.email_fmt[g] == 0  # marketing tool keeps the case the person typed
        mixed &= (C.email_num[g] % 20) == 0
        email = pc.if_else(pa.array(mixed), pc.utf8_capitalize(email), email)
        ch = np.where(touch == 3, np.where(C.channel[g] == 2, 1, 2), 0)
        return pa.table(
            {
                "Contact Email": email,
                "Sent At": _ts(t),
                "Campaign": _take(_sa(TOUCH_CAMPAIGNS), cp),
                "Touch": _take(_sa(TOUCHES), touch),
                "Channel": _take(_sa(["email", "social", "search"]), ch),
            },
            schema=SCHEMAS["marketing"],
        )

    # ---- sales opportunities ----------------------------------------------------------
    def sales(self) -> pa.Table:
        rng, C, a, b, m = self.rng, self.C, self.a, self.b, self.m
        biz = C.seg[a:b] > 0
        n_opp = np.where(biz, rng.integers(0, 4, m), 0)
        o, j = _expand(n_opp)
        k = o.size
        acv = C.mrr_cents[a:b][o] * 12
        created = np.empty(k, np.int64)
        closed = np.empty(k, np.int64)
        first = j == 0
        # the deal that won the customer
        created[first] = self.signup_day[o[first]] - rng.integers(10, 60, first.sum())
        closed[first] = self.signup_day[o[first]]
        # later upsell / expansion deals
        later = ~first
        lim_day = (self.limit_sec - 1) // DAY
        lo = self.signup_day[o[later]] + 30
        hi = lim_day[o[later]]
        created[later] = _uniform_between(rng, lo, hi)
        closed[later] = created[later] + rng.integers(14, 90, later.sum())
        ok = created <= lim_day[o]
        o, j, created, closed, acv, first = o[ok], j[ok], created[ok], closed[ok], acv[ok], first[ok]
        k = o.size
        end_cut = lim_day[o]
        still_open = (closed > end_cut) & ~self.churned[o]
        lost_by_churn = (closed > end_cut) & self.churned[o]
        closed = np.where(lost_by_churn, end_cut, closed)
        won = first | (~still_open & ~lost_by_churn & (rng.random(k) < 0.45))
        stage = np.where(still_open, 2, np.where(won, 0, 1))
        prod = np.where(first, C.plan[a:b][o], rng.integers(1, len(OPP_PRODUCTS), k))
        amount = np.where(first, acv, (acv * rng.uniform(0.1, 0.6, k)).astype(np.int64) // 100 * 100)
        ids = self._next("opp", k)
        return pa.table(
            {
                "Opp ID": _join("OPP-", _num(ids + 1, 7)),
                "CustomerID": _take(C.customer_id, a + o),
                "Created": _date(created),
                "Closed": _date(closed, ~still_open),
                "Stage": _take(_sa(["won", "lost", "open"]), stage),
                "Amount": _money(amount),
                "Owner": _take(_sa(OWNERS), rng.integers(0, len(OWNERS), k)),
                "Product": _take(_sa(OPP_PRODUCTS), prod),
            },
            schema=SCHEMAS["sales"],
        )

    # ---- crm -----------------------------------------------------------------------
    def crm(self) -> pa.Table:
        C, a, b = self.C, self.a, self.b
        n = b - a
        sl = slice(a, b)
        camp = C.campaign[sl]
        return pa.table(
            {
                "CustomerID": C.customer_id.slice(a, n),
                "Full Name": C.full_name.slice(a, n),
                "Email": C.email.slice(a, n),
                "Phone": C.phone_e164.slice(a, n),
                "Billing Account": C.account.slice(a, n),
                "Signup Date": _date(C.signup_day[sl]),
                "Segment": _take(_sa(SEGMENTS), C.seg[sl]),
                "Company": pc.if_else(pa.array(C.seg[sl] > 0), C.company.slice(a, n), None),
                "Region": _take(_sa(REGIONS), C.region[sl]),
                "Plan": _take(_sa(PLANS), C.plan[sl]),
                "Acquisition Channel": _take(_sa(CHANNELS), C.channel[sl]),
                "Campaign": _take(_sa(CAMPAIGNS), np.maximum(camp, 0), camp >= 0),
                "Marketing Opt-In": _take(_sa(["no", "yes"]), C.consent[sl].astype(np.int64)),
            },
            schema=SCHEMAS["crm"],
        )


def _month_start_day(day: np.ndarray) -> np.ndarray:
    return np.asarray(day).astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _compact(nm: np.ndarray) -> np.ndarray:
    """Shift valid (>=0) entries of each row to the left, keeping order."""
    valid = nm >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(nm, order, axis=1)


# ----------------------------------------------------------------------------- writing
class _Writers:
    """One CSVWriter per file, fed by a background thread so writing overlaps generation."""

    def __init__(self, out_dir: Path):
        self.paths = {k: out_dir / f for k, f in FILES.items()}
        opts = pacsv.WriteOptions(include_header=True, quoting_style="none")
        self.writers = {k: pacsv.CSVWriter(str(p), SCHEMAS[k], write_options=opts) for k, p in self.paths.items()}
        self.q: queue.Queue = queue.Queue(maxsize=6)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            key, table = item
            try:
                self.writers[key].write_table(table)
            except BaseException as e:  # pragma: no cover - surfaced in close()
                self.error = e

    def put(self, key: str, table: pa.Table):
        if self.error is not None:
            raise self.error
        self.q.put((key, table))

    def close(self):
        self.q.put(None)
        self.thread.join()
        for w in self.writers.values():
            w.close()
        if self.error is not None:
            raise self.error


def write_demo_extracts(
    out_dir: Path, n_customers: int, seed: int = 7, *, as_of: _dt.date = date(2026, 10, 31)
) -> list[DemoExtract]:
    """Write the seven departmental CSV extracts of a synthetic company into ``out_dir``.

    Deterministic: the same arguments give byte-identical files.
    """
    if not 1 <= n_customers <= MAX_CUSTOMERS:
        raise ValueError(f"n_customers must be between 1 and {MAX_CUSTOMERS:,}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    C = _Customers(rng, int(n_customers), as_of)
    starts = list(range(0, C.n, _CHUNK))
    chunk_rngs = rng.spawn(len(starts))
    counters = {"session": 0, "cookie": 0, "ticket": 0, "txn": 0, "opp": 0}
    W = _Writers(out_dir)
    try:
        for a, crng in zip(starts, chunk_rngs, strict=True):
            ch = _Chunk(crng, C, a, min(a + _CHUNK, C.n), counters)
            W.put("crm", ch.crm())
            W.put("subscriptions", ch.subscriptions())
            W.put("sales", ch.sales())
            W.put("marketing", ch.marketing())
            W.put("helpdesk", ch.helpdesk())
            W.put("billing", ch.billing())
            W.put("web", ch.web())
            del ch
    finally:
        W.close()
    out = []
    for key in FILES:
        kind, dept, cols = _META[key]
        out.append(
            DemoExtract(
                path=W.paths[key], source=key, kind=kind, department=dept, mapping={"kind": kind, "columns": dict(cols)}
            )
        )
    return out
