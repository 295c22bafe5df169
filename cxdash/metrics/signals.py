"""Every customer signal, declared once.

A *signal* is something a customer did or went through that moves their risk of leaving: asking
to cancel, a failed payment, a second contact about the same issue. Each one is declared here
with the predicate that finds it in the source rows, its words, the department that owns it, the
next best action and the side on which risk rises. The KPIs, the friction hotspots, the model's
features and reasons, and the customer card all read these declarations, so a "repeat contact"
is the same thing on every page.

The predicates are SQLAlchemy expressions over the columns of one source row (an event's
activity, a ticket's topic, a transaction's status), or, for a repeat contact, a window over a
customer's tickets (``previous_same_topic`` + ``is_repeat``). Journey-shaped signals (a long
wait, a dead end, rework, a help page before a contact) are found by ``cxdash.journeys.friction`` from the
journey log; their words and owners live here too.

Choices every reader shares (so they are made here, once):

* **Event signals come from product events only.** An event whose department (the row's, else its
  source's) is ``marketing`` is a send, open or click of a campaign, not a step the customer took:
  a ``delivery_error`` there is no checkout error and a "cancel" campaign no cancel intent
  (``product_event``). Events with no department at all count as product events.
* **Repeat contacts** are counted per stitched customer (the rows' integer ``cx_key``, one per
  ``cx_id``) and topic (``topic_key``: trimmed, case-insensitive; tickets without a topic count as
  one topic, so on an export without topics any return within the window is a repeat). Tickets
  opened at the same moment keep their order in the files: load, then row number (``file_order``).
  Each ticket after the first of a topic that comes within the window of the previous one is one
  repeat contact; the department that *leaked* it is the previous ticket's, the one that
  *absorbed* it the repeat's own.
* **Whole-value matches** (payment statuses, churn activity names) ignore case and surrounding
  blanks; pattern matches ignore case.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from cxdash.store.database import KIND_TABLES, sources_table

__all__ = [
    "CHURN_ACTIVITIES",
    "COMPLAINT_MAX_SATISFACTION",
    "FAILED_PAYMENT_STATUSES",
    "INTENT",
    "REPEAT_WINDOW_DAYS",
    "SIGNALS",
    "Signal",
    "by_hotspot",
    "file_order",
    "is_repeat",
    "matches",
    "next_same_topic",
    "occurrences",
    "of_kind",
    "previous_same_topic",
    "product_event",
    "repeat_window",
    "signal",
    "topic_key",
]

# A second ticket on the same topic within this many days repeats the first (the default of every
# page; the KPI page lets the user change it).
REPEAT_WINDOW_DAYS = 7
# A closed contact rated this low (or lower) counts as a complaint.
COMPLAINT_MAX_SATISFACTION = 2.0
# Transaction statuses (lower case) of a payment that did not go through.
FAILED_PAYMENT_STATUSES = ("failed", "declined", "error", "payment_failed", "rejected")
# Activity names (lower case) that record a churn in an events extract. A visit to the cancel page
# is an intent signal, not a churn, so names are matched whole, not as substrings.
CHURN_ACTIVITIES = (
    "churn",
    "churned",
    "churn event",
    "cancelled",
    "canceled",
    "cancellation",
    "cancellation confirmed",
    "cancellation completed",
    "subscription cancelled",
    "subscription canceled",
    "subscription ended",
    "account closed",
    "account cancelled",
    "account canceled",
    "account deleted",
    "customer churned",
    "contract terminated",
    "terminated",
)

INTENT = "intent"  # says the customer may leave: the strongest kind, the card acts on it first
FRICTION = "friction"  # something went wrong for the customer
CHURN = "churn"  # the customer left


@dataclass(frozen=True)
class Signal:
    """One signal. ``kind`` is where it is read: a source kind (``events``, ``tickets``,
    ``transactions``, ``churn``) or ``journey`` (found from the journey log by ``cxdash.journeys.friction``).
    ``column`` is the text column ``patterns`` (lower-case SQL LIKE patterns) apply to.
    ``direction`` is the side on which risk rises (``higher``: more of it is riskier).
    ``hotspot`` is its name as a friction hotspot (None when it is not one)."""

    name: str
    label: str  # a reason's words: "Asked support to cancel"
    noun: str  # a list's words: "asked to cancel"
    kind: str
    department: str
    action: str
    strength: str
    description: str
    column: str | None = None
    patterns: tuple[str, ...] = ()
    direction: str = "higher"
    hotspot: str | None = None


_SIGNALS = (
    Signal(
        "cancel_page",
        "Visited the cancel page",
        "cancel page visit",
        "events",
        "web",
        "Retention call within 24 h with a save offer",
        INTENT,
        "a web or app step whose name contains 'cancel' (not a cancellation itself)",
        "activity",
        ("%cancel%",),
    ),
    Signal(
        "competitor_compare",
        "Compared us with a competitor",
        "competitor comparison",
        "events",
        "sales",
        "Account manager sends a side-by-side comparison and a loyalty offer",
        INTENT,
        "a web or app step whose name contains 'competitor' or 'compare'",
        "activity",
        ("%competitor%", "%compare%"),
    ),
    Signal(
        "downgrade_page",
        "Looked at downgrading",
        "downgrade page visit",
        "events",
        "sales",
        "Offer a right-sized plan before they cancel",
        INTENT,
        "a web or app step whose name contains 'downgrade'",
        "activity",
        ("%downgrade%",),
    ),
    Signal(
        "cancellation_ticket",
        "Asked support to cancel",
        "asked to cancel",
        "tickets",
        "support",
        "Route to the retention team today",
        INTENT,
        "a ticket whose topic contains 'cancel'",
        "topic",
        ("%cancel%",),
    ),
    Signal(
        "complaint",
        "Complained or rated a contact badly",
        "complaint",
        "tickets",
        "support",
        "Team lead calls back to close the complaint",
        INTENT,
        f"a ticket whose topic contains 'complain', or a closed contact rated {COMPLAINT_MAX_SATISFACTION:g} or lower",
        "topic",
        ("%complain%",),
    ),
    Signal(
        "churn_event",
        "Recorded a churn or cancellation",
        "churn or cancellation record",
        "churn",
        "success",
        "Win-back call: confirm the reason and make an offer",
        CHURN,
        "a churn record, or an event named like a cancellation ('cancelled', 'account closed')",
    ),
    Signal(
        "checkout_error",
        "Hit checkout errors",
        "checkout error",
        "events",
        "web",
        "Fix the checkout issue, apologise and credit the order",
        FRICTION,
        "a web or app step (not a marketing send) whose name contains 'error' (checkout_error, App Error)",
        "activity",
        ("%error%",),
        hotspot="checkout error",
    ),
    Signal(
        "failed_payment",
        "Failed payments",
        "failed payment",
        "transactions",
        "billing",
        "Help update the payment method; pause dunning",
        FRICTION,
        "a payment with status " + ", ".join(FAILED_PAYMENT_STATUSES),
        "status",
        hotspot="payment failed",
    ),
    Signal(
        "repeat_contact",
        f"Had to repeat a contact within {REPEAT_WINDOW_DAYS} days",
        "repeat contact",
        "tickets",
        "support",
        "One named owner closes the open issue; no new ticket",
        FRICTION,
        "a ticket within N days of the customer's previous ticket on the same topic (any channel; topics compared "
        "ignoring case and blanks)",
        hotspot="repeat contact",
    ),
    Signal(
        "transfer",
        "Was transferred between teams",
        "transferred contact",
        "tickets",
        "support",
        "Assign one owner; no more transfers",
        FRICTION,
        "a ticket passed on at least once (transfers > 0)",
        hotspot="transferred ticket",
    ),
    Signal(
        "low_satisfaction",
        "Low satisfaction with support",
        "low rating",
        "tickets",
        "support",
        "Service recovery call",
        FRICTION,
        f"a closed contact rated {COMPLAINT_MAX_SATISFACTION:g} or lower",
        direction="lower",
    ),
    Signal(
        "long_wait",
        "Waited long for support",
        "long wait",
        "journey",
        "support",
        "Apologise for the wait and close the issue in one contact",
        FRICTION,
        "a ticket open longer than the 90th percentile for its topic",
        hotspot="long wait",
    ),
    Signal(
        "help_then_contact",
        "Self-service did not solve it",
        "help page then contact",
        "journey",
        "web",
        "Fix the help article behind the contact",
        FRICTION,
        "a ticket within N days of a help-page visit: self-service did not solve it",
        hotspot="help page then contact",
    ),
    Signal(
        "rework",
        "Had to do the same step twice",
        "rework",
        "journey",
        "support",
        "Find why the step had to be redone and undo the duplicate",
        FRICTION,
        "the same non-browsing step again within N days (a -> a), e.g. paying twice",
        hotspot="rework",
    ),
    Signal(
        "dead_end",
        "Stopped after an error",
        "dead end",
        "journey",
        "web",
        "Reach out about the failed step and finish it for them",
        FRICTION,
        "an error after which the customer did nothing for N days",
        hotspot="dead end",
    ),
)
SIGNALS: dict[str, Signal] = {s.name: s for s in _SIGNALS}


def signal(name: str) -> Signal:
    """The signal called ``name`` (a ``KeyError`` naming the known ones otherwise)."""
    try:
        return SIGNALS[name]
    except KeyError:
        raise KeyError(f"no signal {name!r}; known: {', '.join(SIGNALS)}") from None


def of_kind(kind: str, *, strength: str | None = None) -> list[Signal]:
    """The signals read from one kind of source (optionally of one strength), in declaration order."""
    return [s for s in _SIGNALS if s.kind == kind and (strength is None or s.strength == strength)]


def by_hotspot(hotspot: str) -> Signal | None:
    """The signal behind a friction hotspot's name (None for a name no signal declares)."""
    return next((s for s in _SIGNALS if s.hotspot == hotspot), None)


def _lower(col) -> sa.ColumnElement:
    return sa.func.lower(sa.func.coalesce(col, ""))


def _whole(col) -> sa.ColumnElement:
    """A text value as whole-value matches compare it: trimmed, lower case, '' when missing."""
    return sa.func.lower(sa.func.trim(sa.func.coalesce(col, "")))


def product_event(department) -> sa.ColumnElement[bool]:
    """Is an event with this ``department`` (the row's, else its source's) a step the customer took,
    rather than a marketing send, open or click? Event signals are read from these only."""
    return _lower(department) != "marketing"


def matches(sig: Signal | str, col, *, satisfaction=None, closed=None) -> sa.ColumnElement[bool]:
    """Does a source row show ``sig``? ``col`` is the row's column named by ``sig.column``
    (activity, topic or status); a complaint also needs the row's ``satisfaction`` and whether it
    is ``closed`` (a rating counts once the contact is closed), a low rating only those two.
    Signals found in the journey log or over several rows (repeat contacts) have no row predicate."""
    s = signal(sig) if isinstance(sig, str) else sig
    if s.name == "failed_payment":
        return _whole(col).in_(FAILED_PAYMENT_STATUSES)
    if s.name == "transfer":
        return sa.func.coalesce(col, 0) > 0
    if s.name == "low_satisfaction":
        return _rated_low(satisfaction, closed)
    if s.name == "churn_event":
        return _whole(col).in_(CHURN_ACTIVITIES)
    if not s.patterns:
        raise ValueError(f"signal {s.name!r} is not a predicate on one row ({s.description})")
    hit = sa.or_(*[_lower(col).like(p) for p in s.patterns])
    if s.name == "cancel_page":  # a cancellation itself is a churn record, not an intent
        hit = sa.and_(hit, _whole(col).not_in(CHURN_ACTIVITIES))
    if s.name == "complaint" and satisfaction is not None:
        hit = sa.or_(hit, _rated_low(satisfaction, closed))
    return hit


def _rated_low(satisfaction, closed) -> sa.ColumnElement[bool]:
    if satisfaction is None:
        raise ValueError("a low rating needs the ticket's satisfaction column")
    low = satisfaction <= COMPLAINT_MAX_SATISFACTION
    return low if closed is None else sa.and_(closed, low)


def topic_key(topic) -> sa.ColumnElement:
    """A ticket's topic as repeat contacts compare it: trimmed, lower case, '' when missing."""
    return sa.func.lower(sa.func.trim(sa.func.coalesce(topic, "")))


def file_order(table) -> tuple:
    """The order of a source table's rows in their files: load, then row number. The tie-break of
    rows with the same timestamp (``previous_same_topic(..., *file_order(tickets))``)."""
    return (table.c.load_id, table.c.row_number)


def repeat_window(opened_at, customer, topic, *tie_break) -> dict:
    """The window over one customer's tickets on one topic, oldest first (``**`` it into ``.over()``
    to read the previous ticket's department, say). ``customer`` is the rows' ``cx_key``."""
    return {"partition_by": [customer, topic_key(topic)], "order_by": [opened_at, *tie_break]}


def previous_same_topic(opened_at, customer, topic, *tie_break) -> sa.ColumnElement:
    """The opening time of the customer's previous ticket on the same topic (a window expression).
    Tickets opened at the same time keep their order in the file: pass the row's load and row
    number (``*file_order(tickets)``) as ``tie_break``."""
    return sa.func.lag(opened_at).over(**repeat_window(opened_at, customer, topic, *tie_break))


def next_same_topic(opened_at, customer, topic, *tie_break) -> sa.ColumnElement:
    """The opening time of the customer's next ticket on the same topic (the same window as
    ``previous_same_topic``): ``is_repeat(next, opened_at)`` says the ticket was followed by a
    repeat, which holds for exactly the tickets the repeats came after."""
    return sa.func.lead(opened_at).over(**repeat_window(opened_at, customer, topic, *tie_break))


def is_repeat(opened_at, previous_at, days: float = REPEAT_WINDOW_DAYS) -> sa.ColumnElement[bool]:
    """Does a ticket opened at ``opened_at`` repeat one opened at ``previous_at`` (within ``days``)?
    False, never NULL, when either time is missing."""
    gap = sa.cast(sa.extract("epoch", opened_at), sa.Double) - sa.cast(sa.extract("epoch", previous_at), sa.Double)
    return sa.and_(previous_at.is_not(None), opened_at.is_not(None), gap <= days * 86400.0)


def occurrences(sig: Signal | str) -> sa.Select:
    """Every source row showing a one-row signal: ``cx_key, ts`` (rows without a customer or a time
    left out). Events are product events only; a complaint's or a low rating's contact counts once
    it is closed. For one customer's list (the card); aggregates over many signals at once read
    ``matches`` in a single scan instead."""
    s = signal(sig) if isinstance(sig, str) else sig
    if s.kind == "events":
        e, src = KIND_TABLES["events"], sources_table
        return (
            sa.select(e.c.cx_key, e.c.timestamp.label("ts"))
            .select_from(e.join(src, src.c.name == e.c.source))
            .where(
                product_event(sa.func.coalesce(e.c.department, src.c.department)),
                matches(s, e.c[s.column]),
                e.c.cx_key.is_not(None),
                e.c.timestamp.is_not(None),
            )
        )
    if s.kind == "tickets":
        k = KIND_TABLES["tickets"]
        col = k.c.transfers if s.name == "transfer" else (k.c[s.column] if s.column else None)
        hit = matches(s, col, satisfaction=k.c.satisfaction, closed=k.c.closed_at.is_not(None))
        return sa.select(k.c.cx_key, k.c.opened_at.label("ts")).where(
            hit, k.c.cx_key.is_not(None), k.c.opened_at.is_not(None)
        )
    if s.kind == "transactions":
        x = KIND_TABLES["transactions"]
        return sa.select(x.c.cx_key, x.c.timestamp.label("ts")).where(
            matches(s, x.c[s.column]), x.c.cx_key.is_not(None), x.c.timestamp.is_not(None)
        )
    raise ValueError(f"signal {s.name!r} is not read from one source row ({s.description})")
