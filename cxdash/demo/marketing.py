"""Marketing touches: nurture emails (sent, opened, clicked), acquisition and retargeting ad clicks.

Only customers who opted in are touched; the marketing tool keeps the case some people typed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import cxdash.demo.parameters as P
from cxdash.demo.arrays import expand, strings, take, timestamps, uniform_between
from cxdash.demo.customers import Customers
from cxdash.demo.episodes import Block
from cxdash.demo.extracts import SCHEMAS


def _contact_email(c: Customers, g: np.ndarray) -> pa.Array:
    """The customer's email as the marketing tool holds it: it keeps the case some people typed."""
    email = take(c.email, g)
    mixed = c.email_fmt[g] == 0
    mixed &= (c.email_num[g] % P.MIXED_CASE_EVERY) == 0
    return pc.if_else(pa.array(mixed), pc.utf8_capitalize(email), email)


def marketing_touches(block: Block) -> pa.Table:
    rng, c, a, b, m = block.rng, block.customers, block.a, block.b, block.m
    opted = c.consent[a:b]
    lo, hi = block.signup_sec, block.limit_sec
    # nurture emails: sent -> maybe opened -> maybe clicked
    owner, _ = expand(np.where(opted, rng.integers(*P.NURTURE_EMAILS, m), 0))
    k = owner.size
    sent = uniform_between(rng, lo[owner] + P.HOUR, hi[owner])
    campaign = len(P.CAMPAIGNS) + rng.choice(len(P.NURTURE), k)
    opened = rng.random(k) < P.P_OPEN
    clicked = opened & (rng.random(k) < P.P_CLICK_AFTER_OPEN)
    t_open = sent + rng.integers(5 * P.MINUTE, 36 * P.HOUR, k)
    t_click = t_open + rng.integers(10, 15 * P.MINUTE, k)
    # the acquisition ad click on the signup day (paid campaigns), and retargeting ads
    acquired = np.flatnonzero(opted & (c.campaign[a:b] >= 0))
    retargeted = np.flatnonzero(opted & (rng.random(m) < P.P_RETARGETED))
    cust = np.concatenate([owner, owner[opened], owner[clicked], acquired, retargeted])
    t = np.concatenate(
        [
            sent,
            t_open[opened],
            t_click[clicked],
            block.signup_sec[acquired] + rng.integers(0, 10 * P.HOUR, acquired.size),
            uniform_between(rng, lo[retargeted], hi[retargeted]),
        ]
    )
    touch = np.concatenate(
        [
            np.full(k, P.TOUCH_SENT, np.int64),
            np.full(opened.sum(), P.TOUCH_OPEN, np.int64),
            np.full(clicked.sum(), P.TOUCH_CLICK),
            np.full(acquired.size + retargeted.size, P.TOUCH_AD),
        ]
    )
    campaigns = [campaign, campaign[opened], campaign[clicked], c.campaign[a:b][acquired]]
    campaign = np.concatenate([*campaigns, np.full(retargeted.size, P.RETARGETING)])
    ok = t < hi[cust]
    order = np.flatnonzero(ok)[np.argsort(t[ok], kind="stable")]
    cust, t, touch, campaign = (x[order] for x in (cust, t, touch, campaign))
    g = a + cust
    email = _contact_email(c, g)
    # ads: social for social signups, search for the rest; everything else is email
    channel = np.where(touch == P.TOUCH_AD, np.where(c.channel[g] == P.CH_SOCIAL, 1, 2), 0)
    return pa.table(
        {
            "Contact Email": email,
            "Sent At": timestamps(t),
            "Campaign": take(strings(P.TOUCH_CAMPAIGNS), campaign),
            "Touch": take(strings(P.TOUCHES), touch),
            "Channel": take(strings(P.TOUCH_CHANNELS), channel),
        },
        schema=SCHEMAS["marketing"],
    )
