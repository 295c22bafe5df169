"""Helpdesk tickets: ordinary questions, friction follow-ups, transfers, slow and repeat contacts.

Requesters leave an email and/or a phone (in one of four local formats) depending on the
channel; a few tickets come from the shared helpdesk inbox.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import cxdash.demo.parameters as P
from cxdash.demo.arrays import expand, strings, take, timestamps, uniform_between
from cxdash.demo.episodes import Block
from cxdash.demo.extracts import SCHEMAS

_COLUMNS = ("cust", "opened", "channel", "topic", "transfers", "dur", "friction")


class _Tickets:
    """Tickets under construction, kind by kind."""

    def __init__(self, block: Block):
        self.block = block
        self.parts: list[tuple] = []

    def add(self, cust, opened, channel, topic, transfers, dur, friction) -> None:
        k = cust.size
        self.parts.append(
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

    def quick(self, k: int) -> np.ndarray:
        """Time to resolve an ordinary ticket: log-normal around 3 hours, at most 2 days."""
        rng = self.block.rng
        return (
            np.minimum(rng.lognormal(np.log(P.QUICK_MEDIAN_S), P.QUICK_SIGMA, k), P.QUICK_CAP_S).astype(np.int64)
            + P.QUICK_FLOOR_S
        )

    def columns(self) -> dict[str, np.ndarray]:
        dtypes = (np.int64, np.int64, np.int64, np.int64, np.int64, np.int64, bool)
        return {
            name: np.concatenate([p[i] for p in self.parts]).astype(dtype)
            for i, (name, dtype) in enumerate(zip(_COLUMNS, dtypes, strict=True))
        }


def helpdesk_tickets(block: Block) -> pa.Table:
    tickets = _Tickets(block)
    _ordinary(tickets)
    _friction_follow_ups(tickets)
    _transferred_and_slow(tickets)
    _repeat_contacts(tickets)
    _cancel_requests(tickets)
    return _table(block, tickets.columns())


def _ordinary(t: _Tickets) -> None:
    block, rng = t.block, t.block.rng
    owner, _ = expand(rng.poisson(P.TICKETS_BASE + P.TICKETS_PER_YEAR * block.active_years()))
    k = owner.size
    t.add(
        owner,
        uniform_between(rng, block.signup_sec[owner], block.limit_sec[owner]),
        rng.choice(len(P.TICKET_CHANNELS), k, p=P.ORDINARY_CHANNEL_P),
        rng.choice(len(P.TOPICS), k, p=P.ORDINARY_TOPIC_P),
        0,
        t.quick(k),
        False,
    )


def _friction_follow_ups(t: _Tickets) -> None:
    """A chat or email after some checkout errors and failed payments."""
    rng, e = t.block.rng, t.block.episodes
    for ep_type, topic in ((P.EP_CHECKOUT, P.TP_CHECKOUT), (P.EP_PAYMENT, P.TP_BILLING)):
        mask = (e["type"] == ep_type) & e["ticket"]
        k = int(mask.sum())
        opened = e["t"][mask] + e["ticket_off"][mask]
        t.add(e["owner"][mask], opened, rng.choice([P.T_CHAT, P.T_EMAIL], k), topic, 0, t.quick(k), False)


def _transferred_and_slow(t: _Tickets) -> None:
    rng, e = t.block.rng, t.block.episodes
    mask = e["type"] == P.EP_TRANSFER
    k = int(mask.sum())
    channel = rng.choice(len(P.TICKET_CHANNELS), k, p=P.TRANSFER_CHANNEL_P)
    t.add(e["owner"][mask], e["t"][mask], channel, e["topic"][mask], e["transfers"][mask], e["dur"][mask], True)
    mask = e["type"] == P.EP_SLOW
    k = int(mask.sum())
    channel = rng.choice([P.T_EMAIL, P.T_WEB], k)
    t.add(e["owner"][mask], e["t"][mask], channel, e["topic"][mask], 0, e["slow_dur"][mask], True)


def _repeat_contacts(t: _Tickets) -> None:
    """2-3 tickets on the same topic within 7 days, changing channel (the third by phone)."""
    rng, e = t.block.rng, t.block.episodes
    episodes = np.flatnonzero(e["type"] == P.EP_REPEAT)
    if not episodes.size:
        return
    first_channel = rng.choice([P.T_CHAT, P.T_EMAIL, P.T_WEB], episodes.size)
    for j in range(3):
        reached = e["n_rep"][episodes] > j
        sel = episodes[reached]
        k = sel.size
        phone_or_chat = np.where(rng.random(k) < P.P_REPEAT_PHONE, P.T_PHONE, P.T_CHAT) if j else None
        channel = first_channel[reached] if j == 0 else phone_or_chat
        if j == 2:
            channel = np.full(k, P.T_PHONE)  # the third contact is by phone (after the same draw)
        transfers = np.where(rng.random(k) < (0.0 if j == 0 else P.P_REPEAT_TRANSFER), 1, 0)
        opened = e["t"][sel] + e["rep_off"][sel, j]
        t.add(e["owner"][sel], opened, channel, e["topic"][sel], transfers, t.quick(k), True)


def _cancel_requests(t: _Tickets) -> None:
    """Some churners ask support to cancel, in their last days."""
    block, rng = t.block, t.block.rng
    window = block.end_day <= block.customers.as_of_day + P.CANCEL_TICKET_WINDOW_DAYS
    cc = np.flatnonzero(window & (rng.random(block.m) < P.P_CANCEL_TICKET))
    end_sec = block.end_day[cc] * P.DAY
    t.add(
        cc,
        np.maximum(end_sec - rng.integers(P.HOUR, 5 * P.DAY, cc.size), block.signup_sec[cc] + P.HOUR),
        rng.choice(len(P.TICKET_CHANNELS), cc.size, p=P.CANCEL_CHANNEL_P),
        P.TP_CANCEL,
        0,
        t.quick(cc.size),
        False,
    )


def _table(block: Block, col: dict[str, np.ndarray]) -> pa.Table:
    rng, c = block.rng, block.customers
    ok = (col["opened"] < block.limit_sec[col["cust"]]) & (col["opened"] >= block.signup_sec[col["cust"]])
    order = np.flatnonzero(ok)[np.argsort(col["opened"][ok], kind="stable")]
    col = {name: values[order] for name, values in col.items()}
    k = col["cust"].size
    g = block.a + col["cust"]
    channel, topic, transfers = col["channel"], col["topic"], col["transfers"]
    resolved = col["opened"] + col["dur"]
    closed = resolved < block.cutoff_sec
    # identifiers as the requester left them
    has_email = rng.random(k) < P.P_EMAIL_BY_CHANNEL[channel]
    has_phone = (rng.random(k) < P.P_PHONE_BY_CHANNEL[channel]) & c.has_phone[g]
    has_email |= ~has_phone
    hub = rng.random(k) < P.P_HUB
    has_phone = np.where(hub, (rng.random(k) < P.P_HUB_PHONE) & c.has_phone[g], has_phone)
    email = pc.if_else(pa.array(hub), P.HUB_EMAIL, take(c.email, g, has_email | hub))
    fmt = rng.choice(len(P.PHONE_FORMAT_P), k, p=P.PHONE_FORMAT_P)
    phone = pc.choose(pa.array(fmt.astype(np.int8)), *[take(f, g, has_phone) for f in c.phone_fmts])
    answered = closed & (rng.random(k) < P.P_CSAT_ANSWERED)
    csat_good = rng.choice(5, k, p=P.CSAT_GOOD_P) + 1
    csat_bad = rng.choice(5, k, p=P.CSAT_BAD_P) + 1
    csat = np.where(col["friction"] | (transfers > 0), csat_bad, csat_good)
    tech_or_support = np.where(rng.random(k) < P.P_TECH_TEAM_FOR_BUG_OR_LOGIN, P.TEAM_TECH, P.TEAM_SUPPORT)
    team = np.where((topic == P.TP_BUG) | (topic == P.TP_LOGIN), tech_or_support, P.TOPIC_TEAM[topic])
    return pa.table(
        {
            "Ticket #": pa.array(100_000 + block.next_ids("ticket", k)),
            "Requester Email": email,
            "Requester Phone": phone,
            "Created": timestamps(col["opened"]),
            "Resolved": timestamps(resolved, closed),
            "Channel": take(strings(P.TICKET_CHANNELS), channel),
            "Topic": take(strings(P.TOPICS), topic),
            "Transfers": pa.array(transfers),
            "Status": take(strings(["open", "closed"]), closed.astype(np.int64)),
            "CSAT": pa.array(csat, mask=~answered),
            "Team": take(strings(P.TEAMS), team),
        },
        schema=SCHEMAS["helpdesk"],
    )
