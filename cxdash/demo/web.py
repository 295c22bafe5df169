"""Web analytics: sessions of page events under cookies, logged in (with an email) or anonymous.

Routine use, browsing before signup and the first login; the web side of friction episodes
(checkout errors, the payment page after a failed charge, help pages before repeat contacts);
cancel/competitor intent before churn; rare intent noise; visitors who never sign up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import cxdash.demo.parameters as P
from cxdash.demo.arrays import (
    compact_left,
    concat,
    digits,
    expand,
    scramble,
    strings,
    take,
    timestamps,
    uniform_between,
)
from cxdash.demo.episodes import Block
from cxdash.demo.extracts import SCHEMAS

W = P.SESSION_SLOTS


@dataclass
class _Sessions:
    """Sessions under construction: one row per session, event codes in ``names`` (-1 = none)."""

    block: Block
    n_cookie: np.ndarray  # cookies per customer of the block
    parts: list  # (customer, start, logged_in, cookie slot, names (s, W))

    def add(self, cust, start, logged_in, slot, names) -> None:
        self.parts.append((cust, start, logged_in, slot, names))

    def add_own(self, cust, start, logged_in, names) -> None:
        """Sessions under one of the customer's own cookies, chosen at random."""
        slot = self.block.rng.integers(0, self.n_cookie[cust])
        self.add(cust, start, logged_in, slot, pad(names, (names >= 0).sum(1)))

    def names_from(self, mix, rows: int, cols: int) -> np.ndarray:
        items, probs = mix
        return np.asarray(items, dtype=np.int8)[self.block.rng.choice(len(items), (rows, cols), p=probs)]


def pad(names: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Keep the first ``lengths[i]`` events of each row and widen to ``W`` columns."""
    names = names.copy()
    names[np.arange(names.shape[1])[None, :] >= lengths[:, None]] = -1
    out = np.full((names.shape[0], W), -1, dtype=np.int8)
    out[:, : names.shape[1]] = names
    return out


def web_events(block: Block) -> pa.Table:
    rng, m = block.rng, block.m
    n_cookie = 1 + rng.binomial(*P.COOKIES_EXTRA, m)
    sessions = _Sessions(block, n_cookie, [])
    _routine(sessions)
    _before_signup_and_first_login(sessions)
    _checkout_errors(sessions)
    _payment_page(sessions)
    _help_before_repeat_contact(sessions)
    _intent_before_churn(sessions)
    _intent_noise(sessions)
    return _table(sessions)


def _routine(s: _Sessions) -> None:
    block, rng = s.block, s.block.rng
    n_sess = 2 + rng.poisson(P.SESSIONS_BASE + P.SESSIONS_PER_SQRT_YEAR * np.sqrt(block.active_years()))
    owner, _ = expand(n_sess)
    k = owner.size
    start = uniform_between(rng, block.signup_sec[owner], block.limit_sec[owner])
    logged = rng.random(k) < P.P_SESSION_LOGGED_IN
    length = np.minimum(1 + rng.poisson(P.EVENTS_PER_SESSION, k), W)
    names = np.where(logged[:, None], s.names_from(P.LOGGED_IN_MIX, k, W), s.names_from(P.ANONYMOUS_MIX, k, W))
    names[:, 0] = np.where(logged & (rng.random(k) < P.P_SESSION_STARTS_WITH_LOGIN), P.E_LOGIN, names[:, 0])
    s.add(owner, start, logged, rng.integers(0, s.n_cookie[owner]), pad(names, length))


def _before_signup_and_first_login(s: _Sessions) -> None:
    """Anonymous browsing under the first cookie before signup, then the first login."""
    block, rng, m = s.block, s.block.rng, s.block.m
    owner, _ = expand(1 + rng.binomial(*P.PRE_SIGNUP_SESSIONS, m))
    k = owner.size
    start = block.signup_sec[owner] - rng.integers(P.HOUR, 30 * P.DAY, k)
    names = pad(s.names_from(P.ANONYMOUS_MIX, k, 4), np.minimum(1 + rng.poisson(P.PRE_SIGNUP_EVENTS, k), 4))
    s.add(owner, start, np.zeros(k, bool), np.zeros(k, np.int64), names)
    start = block.signup_sec + rng.integers(10 * P.HOUR, 20 * P.HOUR, m)
    names = np.stack([np.full(m, P.E_LOGIN), np.full(m, P.E_FEATURE), np.full(m, P.E_HELP)], 1).astype(np.int8)
    length = 2 + rng.binomial(1, P.P_FIRST_LOGIN_HELP, m)
    s.add(np.arange(m), start, np.ones(m, bool), np.zeros(m, np.int64), pad(names, length))


def _checkout_errors(s: _Sessions) -> None:
    """pricing -> (checkout -> checkout_error) x1-3 -> maybe help_page."""
    e = s.block.episodes
    mask = e["type"] == P.EP_CHECKOUT
    k = int(mask.sum())
    if not k:
        return
    n_err = e["n_err"][mask]
    names = np.full((k, W), -1, dtype=np.int8)
    names[:, 0] = P.E_PRICING
    for j in range(3):
        on = n_err > j
        names[on, 1 + 2 * j] = P.E_CHECKOUT
        names[on, 2 + 2 * j] = P.E_CHECKOUT_ERR
    helped = e["help"][mask]
    names[np.arange(k)[helped], 1 + 2 * n_err[helped]] = P.E_HELP
    s.add_own(e["owner"][mask], e["t"][mask], np.ones(k, bool), compact_left(names))


def _payment_page(s: _Sessions) -> None:
    """A failed payment sends some customers to the payment page."""
    e = s.block.episodes
    mask = (e["type"] == P.EP_PAYMENT) & e["page"]
    k = int(mask.sum())
    if k:
        names = np.tile(np.array([P.E_LOGIN, P.E_PAYMENT], np.int8), (k, 1))
        s.add_own(e["owner"][mask], e["t"][mask] + e["page_off"][mask], np.ones(k, bool), names)


def _help_before_repeat_contact(s: _Sessions) -> None:
    rng, e = s.block.rng, s.block.episodes
    mask = (e["type"] == P.EP_REPEAT) & (rng.random(e["t"].size) < P.P_REPEAT_HELP_VISIT)
    k = int(mask.sum())
    if k:
        names = np.tile(np.array([P.E_HELP, P.E_HELP], np.int8), (k, 1))
        names[rng.random(k) < P.P_REPEAT_HELP_TWICE, 1] = -1
        start = e["t"][mask] - rng.integers(5 * P.MINUTE, 2 * P.HOUR, k)
        s.add_own(e["owner"][mask], start, rng.random(k) < P.P_REPEAT_HELP_LOGGED_IN, names)


def _intent_before_churn(s: _Sessions) -> None:
    """Cancel page and/or competitor comparison 1-21 days before the end (also just after as_of)."""
    block, rng = s.block, s.block.rng
    window = block.end_day <= block.customers.as_of_day + P.INTENT_WINDOW_DAYS
    cand = np.flatnonzero(window & (rng.random(block.m) < P.P_CHURNER_SHOWS_INTENT))
    k = cand.size
    if not k:
        return
    do_cancel = rng.random(k) < P.P_INTENT_CANCEL_PAGE
    do_compare = rng.random(k) < P.P_INTENT_COMPETITOR
    do_cancel |= ~do_compare
    end_sec = block.end_day[cand] * P.DAY
    for is_compare, mask in ((False, do_cancel), (True, do_compare)):
        who = cand[mask]
        kk = who.size
        if not kk:
            continue
        end = end_sec[mask]
        start = end - rng.integers(1 * P.DAY, P.INTENT_WINDOW_DAYS * P.DAY, kk)
        early = start < block.signup_sec[who] + P.HOUR
        start[early] = uniform_between(rng, block.signup_sec[who][early] + P.HOUR, end[early] - P.HOUR)
        if not is_compare:
            names = np.tile(np.array([P.E_LOGIN, P.E_CANCEL, P.E_DOWNGRADE], np.int8), (kk, 1))
            names[rng.random(kk) < P.P_NO_DOWNGRADE_PAGE, 2] = -1
            logged = np.ones(kk, bool)
        else:
            names = np.tile(np.array([P.E_COMPETITOR, P.E_PRICING], np.int8), (kk, 1))
            names[rng.random(kk) < P.P_NO_PRICING_AFTER_COMPARE, 1] = -1
            logged = rng.random(kk) < P.P_COMPARE_LOGGED_IN
        s.add_own(who, start, logged, names)


def _intent_noise(s: _Sessions) -> None:
    """Rarely, anyone looks at the cancel page, a competitor or the downgrade page."""
    block, rng = s.block, s.block.rng
    owner, _ = expand(rng.poisson(P.INTENT_NOISE_PER_YEAR * block.active_years()))
    k = owner.size
    if not k:
        return
    start = uniform_between(rng, block.signup_sec[owner], block.limit_sec[owner])
    logged = rng.random(k) < P.P_NOISE_LOGGED_IN
    names = np.full((k, 2), -1, np.int8)
    items, probs = P.INTENT_NOISE_MIX
    names[:, 0] = rng.choice(items, k, p=probs)
    names[logged, 1] = names[logged, 0]
    names[logged, 0] = P.E_LOGIN
    names[~logged & (names[:, 0] == P.E_CANCEL), 0] = P.E_COMPETITOR  # the cancel page needs a login
    s.add_own(owner, start, logged, names)


def _visitors(s: _Sessions):
    """Anonymous visitors who never sign up: (visitor of each session, start, names, visitors)."""
    block, rng = s.block, s.block.rng
    n_visitors = round(P.VISITORS_PER_CUSTOMER * block.m)
    visitor, _ = expand(1 + rng.binomial(*P.VISITOR_SESSIONS, n_visitors))
    k = visitor.size
    history_start = _history_start(block)
    start = history_start + (rng.random(k) * (block.cutoff_sec - history_start)).astype(np.int64)
    names = pad(s.names_from(P.VISITOR_MIX, k, 4), 1 + rng.binomial(*P.VISITOR_EVENTS, k))
    return visitor, start, names, n_visitors


def _history_start(block: Block) -> int:
    return (block.customers.as_of_day - P.HISTORY_DAYS) * P.DAY


def _cookies(s: _Sessions, n_visitors: int) -> tuple[pa.Array, np.ndarray]:
    """Cookie ids "<10 digits>.<first seen epoch>" (customers' cookies first), and each one's device."""
    block, rng, m = s.block, s.block.rng, s.block.m
    n_customer_cookies = int(s.n_cookie.sum())
    n_cookies = n_customer_cookies + n_visitors
    serial = block.next_ids("cookie", n_cookies)
    birth = np.empty(n_cookies, dtype=np.int64)
    owner = np.repeat(np.arange(m), s.n_cookie)
    birth[:n_customer_cookies] = block.signup_sec[owner] - block.customers.cookie_birth_jitter[block.a :][owner]
    age = rng.integers(0, P.VISITOR_COOKIE_AGE_DAYS * P.DAY, n_visitors)
    birth[n_customer_cookies:] = _history_start(block) - age
    cookie_id = concat(
        digits(1_000_000_000 + scramble(serial, 9_000_000_000, 5_562_305_899, 12_345)), digits(birth), sep="."
    )
    return cookie_id, rng.choice(len(P.DEVICES), n_cookies, p=P.DEVICE_P)


def _table(s: _Sessions) -> pa.Table:
    """Add the anonymous visitors, lay sessions out as timed events, and give cookies their ids."""
    block, rng, c = s.block, s.block.rng, s.block.customers
    visitor, visitor_start, visitor_names, n_visitors = _visitors(s)
    k = visitor.size
    parts = s.parts
    cust = np.concatenate([p[0] for p in parts] + [np.full(k, -1)])
    start = np.concatenate([p[1] for p in parts] + [visitor_start])
    logged = np.concatenate([p[2] for p in parts] + [np.zeros(k, bool)])
    slot = np.concatenate([p[3] for p in parts] + [np.zeros(k, np.int64)])
    names = np.concatenate([p[4] for p in parts] + [visitor_names])
    n_customer_cookies = int(s.n_cookie.sum())
    cookie_base = np.cumsum(s.n_cookie) - s.n_cookie
    cookie = np.where(cust >= 0, cookie_base[np.maximum(cust, 0)] + slot, 0)
    cookie[np.flatnonzero(cust < 0)] = n_customer_cookies + visitor
    n_sessions = cust.size
    session_ids = block.next_ids("session", n_sessions)

    row, col = np.nonzero(names >= 0)
    gaps = (rng.exponential(P.EVENT_GAP_MEAN_S, (n_sessions, W)) + P.EVENT_GAP_MIN_S).astype(np.int64)
    gaps[:, 0] = 0
    t = start[row] + np.cumsum(gaps, axis=1)[row, col]
    event = names[row, col]
    who = cust[row]
    ok = np.where(who >= 0, t < block.limit_sec[np.maximum(who, 0)], t < block.cutoff_sec)
    row, t, event, who = row[ok], t[ok], event[ok], who[ok]
    order = np.argsort(t, kind="stable")  # rows come session by session, in time order
    row, t, event, who = row[order], t[order], event[order], who[order]

    cookie_id, device = _cookies(s, n_visitors)
    row_cookie = cookie[row]
    has_email = logged[row] & (who >= 0)
    session_id = concat("s", digits(scramble(session_ids, 10**10, 6_180_339_887, 987_654), 10))
    return pa.table(
        {
            "cookie_id": cookie_id.take(pa.array(row_cookie)),
            "user_email": take(c.email, block.a + np.maximum(who, 0), has_email),
            "event_time": timestamps(t),
            "event_name": take(strings(P.EVENT_NAMES), event),
            "session_id": session_id.take(pa.array(row)),
            "device": take(strings(P.DEVICES), device[row_cookie]),
        },
        schema=SCHEMAS["web"],
    )
