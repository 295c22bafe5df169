"""Churn definitions: which customers have left, as the company chooses to define it.

Real extracts allow several readings of churn, and they can disagree by a lot (a SaaS export
whose accounts carry a churn flag of 22% while every account still has a running subscription
row). cxdash never picks one silently: every reading the loaded data supports is a *candidate*
with its own figures, one is suggested, and the company's choice is stored (app state,
``settings``) and shown beside every churn figure.

The bases, and a definition's name:

=================  =============================================================================
``label:SOURCE``   the churn flag of a customer source (CRM). Dated when a churn date column is
                   mapped (``churned_at``), else a snapshot with no date.
``subscriptions``  a customer churns when every subscription has ended; the date is the last end.
``events:SOURCE``  churn or cancellation records: a source of kind ``churn``, or an events source
                   whose activity names a churn (``CHURN_ACTIVITIES``); the date is the latest one.
``inactivity:N``   no purchase or activity for N days; the date is the last activity plus N days.
=================  =============================================================================

Everything here returns SQLAlchemy selectables keyed on the integer customer key (``cx_key``), so
the KPIs, journeys, the model and the card all read one definition inside the database.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.periods import as_of, moves_as_of
from cxdash.metrics.signals import CHURN_ACTIVITIES, matches
from cxdash.store import audit
from cxdash.store.database import KIND_TABLES, Store, customer_keys_table, settings_table
from cxdash.store.dialect import among
from cxdash.store.rollups import appended_keys, appended_kinds

__all__ = [
    "BASES",
    "CHURN_ACTIVITIES",
    "DISAGREEMENT_POINTS",
    "Candidate",
    "ChurnDefinitionError",
    "Definition",
    "Resolution",
    "candidates",
    "candidates_after",
    "choose",
    "chosen_name",
    "churned",
    "covered",
    "customer_universe",
    "in_force",
    "is_dated",
    "resolve",
    "suggest",
]

log = logging.getLogger(__name__)

BASES = ("label", "subscriptions", "events", "inactivity")
SETTING_KEY = "churn_definition"
# Two definitions whose rates differ by more than this (in points of the rate) are shown together.
DISAGREEMENT_POINTS = 5.0
# The inactivity window is rounded up to one of these (days), so the name reads like a policy.
_INACTIVITY_STEPS = (30, 60, 90, 120, 180, 270, 365, 540, 730)
_DEFAULT_INACTIVITY_DAYS = 90
_MIN_GAPS = 20  # fewer repeat-purchase gaps than this: the window comes from activity gaps, or the default
_FAR_FUTURE = datetime(9999, 1, 1)


class ChurnDefinitionError(ValueError):
    """A churn definition name that is malformed or that the loaded data cannot support."""


# ---------------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Definition:
    """One reading of churn. ``source`` names the customer / churn / events source where the basis
    needs one; ``days`` is the inactivity window."""

    basis: str
    source: str | None = None
    days: int | None = None

    @property
    def name(self) -> str:
        if self.basis == "inactivity":
            return f"inactivity:{self.days}"
        return f"{self.basis}:{self.source}" if self.source else self.basis

    @classmethod
    def parse(cls, name: str) -> Definition:
        text = (name or "").strip()
        basis, _, arg = text.partition(":")
        if basis not in BASES:
            raise ChurnDefinitionError(
                f"unknown churn definition {name!r}: a name is label:SOURCE, subscriptions, events:SOURCE or "
                "inactivity:DAYS (python -m cxdash churn lists the ones your data supports)"
            )
        if basis == "subscriptions":
            if arg:
                raise ChurnDefinitionError(
                    f"{name!r}: the subscriptions definition takes no source; use 'subscriptions'"
                )
            return cls("subscriptions")
        if basis == "inactivity":
            try:
                days = int(arg)
            except ValueError:
                raise ChurnDefinitionError(
                    f"{name!r}: give the inactivity window in days, e.g. inactivity:90"
                ) from None
            if not 1 <= days <= 3650:
                raise ChurnDefinitionError(f"{name!r}: the inactivity window must be 1 to 3650 days")
            return cls("inactivity", days=days)
        if not arg:
            raise ChurnDefinitionError(f"{name!r}: say which source, e.g. {basis}:crm")
        return cls(basis, source=arg)

    def describe(self) -> str:
        """The definition in one plain sentence (shown under churn figures)."""
        if self.basis == "label":
            return f"the churn flag of the customer source '{self.source}'"
        if self.basis == "subscriptions":
            return "every subscription has ended (the date of the last end)"
        if self.basis == "events":
            return f"a churn or cancellation record in '{self.source}' (its date)"
        return f"no purchase or activity for {self.days} days"


@dataclass
class Candidate:
    """A definition the loaded data supports, with its figures over everything stored.

    ``customers``: the customers it can judge (in the KPI universe); ``churned``: of those, how many
    have churned by the data's latest date; ``dated``: churn has a date (periods, cohorts, the
    model's time-based validation); ``extra``: basis-specific figures (subscription churn).
    """

    definition: Definition
    customers: int
    churned: int
    dated: bool
    note: str = ""
    extra: dict = field(default_factory=dict)
    origin: str = ""  # the kind it reads: churn, customers, subscriptions, events (activity names), activity

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def rate(self) -> float | None:
        return self.churned / self.customers if self.customers else None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "basis": self.definition.basis,
            "source": self.definition.source,
            "customers": self.customers,
            "churned": self.churned,
            "rate": None if self.rate is None else round(self.rate, 6),
            "dated": self.dated,
            "description": self.definition.describe(),
            "note": self.note,
            "origin": self.origin,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        """The inverse of ``to_dict`` (stored summaries keep candidates as JSON)."""
        known = {"name", "basis", "source", "customers", "churned", "rate", "dated", "description", "note", "origin"}
        return cls(
            Definition.parse(d["name"]),
            int(d["customers"]),
            int(d["churned"]),
            bool(d["dated"]),
            d.get("note", ""),
            {k: v for k, v in d.items() if k not in known},
            d.get("origin", ""),
        )

    def figure(self) -> str:
        if self.rate is None:
            return f"{self.name}: no customers to judge"
        return f"{self.name}: {self.rate:.1%} ({self.churned:,} of {self.customers:,} customers)"


# ---------------------------------------------------------------------------------- selectables


def _all_rows(table: sa.Table) -> tuple:
    return ()


def customer_universe(conn: Connection, by: str = "cx_key", rows: Callable[[sa.Table], tuple] = _all_rows) -> sa.Select:
    """The customers the KPIs are about: CRM customers when a customer source is loaded, else every
    identified customer; as integer keys (``cx_key``) or, with ``by="cx_id"``, text ids. ``rows``:
    conditions on the customer keys' table (``covered``'s)."""
    im = customer_keys_table
    crm = KIND_TABLES["customers"]
    has_crm = conn.execute(sa.select(sa.literal(1)).select_from(crm).limit(1)).first() is not None
    q = sa.select(im.c[by]).where(*rows(im)).distinct()
    if has_crm:
        q = q.where(im.c.known.is_(True))
    return q


def _activity_steps(rows: Callable[[sa.Table], tuple] = _all_rows, *, loads: bool = False) -> sa.Subquery:
    """``cx_key, ts`` of every step that shows a customer is still there: events, purchases and
    other transactions that went through, contacts, subscription starts and signups; of the rows
    ``rows(table)`` keeps (conditions on each table's rows). With ``loads``, each step's ``load_id`` too."""
    e, x, k, u, c = (KIND_TABLES[n] for n in ("events", "transactions", "tickets", "subscriptions", "customers"))
    paid = sa.not_(matches("failed_payment", x.c.status))

    def step(t: sa.Table, ts: sa.ColumnElement, *where) -> sa.Select:
        cols = [t.c.cx_key, ts.label("ts"), *((t.c.load_id,) if loads else ())]
        return sa.select(*cols).where(ts.is_not(None), *where, *rows(t))

    parts = [
        step(e, e.c.timestamp),
        step(x, x.c.timestamp, paid),
        step(k, k.c.opened_at),
        step(u, u.c.start),
        step(c, c.c.signup_date),
    ]
    return sa.union_all(*parts).subquery("steps")


def _keyed(per_key: sa.Select, by: str) -> sa.Select:
    """A ``cx_key``-keyed select re-keyed on ``by`` (``cx_id`` joins the identity table once)."""
    if by == "cx_key":
        return per_key
    sq = per_key.subquery("per_key")
    im = customer_keys_table
    others = [c for c in sq.c if c.name != "cx_key"]
    return sa.select(im.c[by].label(by), *others).select_from(sq.join(im, im.c.cx_key == sq.c.cx_key))


def _events_table(conn: Connection, source: str) -> tuple[sa.Table, sa.ColumnElement, sa.ColumnElement]:
    """The table, time column and row filter of an ``events:SOURCE`` definition."""
    ch = KIND_TABLES["churn"]
    if conn.execute(sa.select(sa.literal(1)).where(ch.c.source == source).limit(1)).first() is not None:
        return ch, ch.c.churned_at, ch.c.source == source
    e = KIND_TABLES["events"]
    return e, e.c.timestamp, sa.and_(e.c.source == source, matches("churn_event", e.c.activity))


def churned(
    conn: Connection,
    definition: Definition,
    *,
    now: datetime | None = None,
    by: str = "cx_key",
    rows: Callable[[sa.Table], tuple] = _all_rows,
) -> sa.Select:
    """The customers who have churned by ``now`` (default: the data's latest date) under
    ``definition``: one row per customer, ``by`` (``cx_key`` or ``cx_id``) and ``churn_at`` (when;
    NULL for an undated label). ``rows``: conditions keeping some rows of each table read
    (``covered``'s)."""
    now = now if now is not None else as_of(conn)
    if now is None:
        now = _FAR_FUTURE
    basis = definition.basis
    if basis == "label":
        crm = KIND_TABLES["customers"]
        q = (
            sa.select(crm.c.cx_key, sa.func.max(crm.c.churned_at).label("churn_at"))
            .where(
                crm.c.source == definition.source, crm.c.churn_label.is_(True), crm.c.cx_key.is_not(None), *rows(crm)
            )
            .group_by(crm.c.cx_key)
        )
        # a dated label counts from its date; an undated one is a snapshot, churned now
        q = q.having(sa.or_(sa.func.max(crm.c.churned_at).is_(None), sa.func.max(crm.c.churned_at) <= now))
    elif basis == "subscriptions":
        subs = KIND_TABLES["subscriptions"]
        last_end = sa.func.max(sa.func.coalesce(subs.c.end, sa.literal(_FAR_FUTURE, sa.DateTime)))
        q = (
            sa.select(subs.c.cx_key, last_end.label("churn_at"))
            .where(subs.c.cx_key.is_not(None), *rows(subs))
            .group_by(subs.c.cx_key)
            .having(last_end <= now)
        )
    elif basis == "events":
        t, ts, where = _events_table(conn, definition.source)
        q = (
            sa.select(t.c.cx_key, sa.func.max(ts).label("churn_at"))
            .where(where, t.c.cx_key.is_not(None), ts <= now, *rows(t))
            .group_by(t.c.cx_key)
        )
    elif basis == "inactivity":
        steps = _activity_steps(rows)
        last = sa.func.max(steps.c.ts)
        q = (
            sa.select(steps.c.cx_key, (last + timedelta(days=int(definition.days))).label("churn_at"))
            .where(steps.c.cx_key.is_not(None), steps.c.ts <= now)
            .group_by(steps.c.cx_key)
            .having(last + timedelta(days=int(definition.days)) <= now)
        )
    else:  # pragma: no cover - Definition.parse refuses other bases
        raise ChurnDefinitionError(f"unknown churn basis {basis!r}")
    return _keyed(q, by)


def is_dated(conn: Connection, definition: Definition | None) -> bool:
    """Whether churn under ``definition`` has dates: every basis but a label with no churn date."""
    if definition is None:
        return False
    if definition.basis != "label":
        return True
    crm = KIND_TABLES["customers"]
    return (
        conn.execute(
            sa.select(sa.literal(1)).where(crm.c.source == definition.source, crm.c.churned_at.is_not(None)).limit(1)
        ).first()
        is not None
    )


def in_force(conn: Connection, definition: Definition | None) -> Definition | None:
    """``definition``, or the suggestion from the data when the caller has none (the CLI and the
    tests; the pages pass the company's stored choice)."""
    if definition is not None:
        return definition
    best = suggest(candidates(conn))
    return best.definition if best else None


def covered(
    conn: Connection, definition: Definition, *, by: str = "cx_key", rows: Callable[[sa.Table], tuple] = _all_rows
) -> sa.Select:
    """The customers ``definition`` can judge (``by`` column): the labelled customers of a label,
    customers with a subscription, every customer for churn records, customers with any activity
    for inactivity. Not restricted to the KPI universe. ``rows(table)``: conditions keeping some
    rows of each table read (the customer keys' table included)."""
    basis = definition.basis
    if basis == "label":
        crm = KIND_TABLES["customers"]
        q = sa.select(crm.c.cx_key).where(crm.c.source == definition.source, crm.c.churn_label.is_not(None), *rows(crm))
    elif basis == "subscriptions":
        subs = KIND_TABLES["subscriptions"]
        q = sa.select(subs.c.cx_key).where(*rows(subs))
    elif basis == "inactivity":
        steps = _activity_steps(rows)
        q = sa.select(steps.c.cx_key)
    else:
        q = sa.select(customer_keys_table.c.cx_key).where(*rows(customer_keys_table))
    sq = q.subquery("covered_rows")
    return _keyed(sa.select(sq.c.cx_key).where(sq.c.cx_key.is_not(None)).distinct(), by)


# ---------------------------------------------------------------------------------- candidates


def _counts(
    conn: Connection, definition: Definition, now: datetime | None, rows: Callable[[sa.Table], tuple] = _all_rows
) -> tuple[int, int]:
    """The customers ``definition`` judges in the KPI universe, and how many of them churned by
    ``now``, from the rows ``rows(table)`` keeps of each table."""
    universe = customer_universe(conn, rows=rows).subquery("universe")
    cov = covered(conn, definition, rows=rows).subquery("cov")
    gone = churned(conn, definition, now=now, rows=rows).subquery("gone")
    judged = universe.join(cov, cov.c.cx_key == universe.c.cx_key)
    q = sa.select(sa.func.count(), sa.func.count(gone.c.cx_key)).select_from(
        judged.outerjoin(gone, gone.c.cx_key == universe.c.cx_key)
    )
    customers, churned_n = conn.execute(q).one()
    return int(customers or 0), int(churned_n or 0)


def _round_up(days: float) -> int:
    for step in _INACTIVITY_STEPS:
        if days <= step:
            return step
    return _INACTIVITY_STEPS[-1]


def default_inactivity_days(conn: Connection) -> tuple[int, str]:
    """A default inactivity window from the data: the 90th percentile of the gaps between a
    customer's consecutive purchase days (or, with too few repeat purchases, activity days),
    rounded up to a round number of days. Returns the days and a sentence saying where they came from."""
    days, why, _ = _inactivity_window(conn)
    return days, why


def _inactivity_window(conn: Connection) -> tuple[int, str, str]:
    """``default_inactivity_days`` and what the gaps were read from: ``purchase``, ``activity``, or
    ``default`` (too few gaps of either)."""
    x = KIND_TABLES["transactions"]
    paid = sa.not_(matches("failed_payment", x.c.status))
    purchases = sa.select(x.c.cx_key, sa.cast(x.c.timestamp, sa.Date).label("day")).where(
        x.c.cx_key.is_not(None), x.c.timestamp.is_not(None), paid
    )
    steps = _activity_steps()
    activity = sa.select(steps.c.cx_key, sa.cast(steps.c.ts, sa.Date).label("day")).where(steps.c.cx_key.is_not(None))
    for what, days in (("purchase", purchases), ("activity", activity)):
        d = days.distinct().subquery("days")
        prev = sa.func.lag(d.c.day).over(partition_by=d.c.cx_key, order_by=d.c.day)
        gaps_inner = sa.select(d.c.day.label("day"), prev.label("prev")).subquery("gaps_inner")
        gap = sa.cast(gaps_inner.c.day, sa.Date) - sa.cast(gaps_inner.c.prev, sa.Date)
        gaps = sa.select(sa.cast(gap, sa.Integer).label("gap")).where(gaps_inner.c.prev.is_not(None)).subquery("gaps")
        n, p90 = conn.execute(sa.select(sa.func.count(), sa.func.percentile_cont(0.9).within_group(gaps.c.gap))).one()
        if n and n >= _MIN_GAPS and p90 is not None and not math.isnan(float(p90)):
            window = _round_up(float(p90))
            why = (
                f"{window} days: 90% of the {int(n):,} gaps between a customer's {what} days are "
                f"{float(p90):.0f} days or shorter"
            )
            return window, why, what
    return (
        _DEFAULT_INACTIVITY_DAYS,
        f"{_DEFAULT_INACTIVITY_DAYS} days, a common default: too few repeat purchases or visits to measure the usual gap",
        "default",
    )


def _sources(conn: Connection, kind: str, *where) -> list[str]:
    t = KIND_TABLES[kind]
    return sorted(r for (r,) in conn.execute(sa.select(t.c.source).where(*where).distinct()))


def _has_rows(conn: Connection, kind: str) -> bool:
    t = KIND_TABLES[kind]
    return conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None


def candidates(conn: Connection) -> list[Candidate]:
    """Every churn definition the loaded data supports, with its figures over everything stored,
    in the order of ``suggest``'s preference (before its zero-churn rule)."""
    now = as_of(conn)
    out: list[Candidate] = []
    crm, e = KIND_TABLES["customers"], KIND_TABLES["events"]
    for source in _sources(conn, "churn"):
        d = Definition("events", source)
        out.append(
            Candidate(d, *_counts(conn, d, now), dated=True, note="churn records, one per churn", origin="churn")
        )
    labelled = _sources(conn, "customers", crm.c.churn_label.is_not(None))
    for source in labelled:
        d = Definition("label", source)
        dated = (
            conn.execute(
                sa.select(sa.literal(1)).where(crm.c.source == source, crm.c.churned_at.is_not(None)).limit(1)
            ).first()
            is not None
        )
        note = "dated by its churn date column" if dated else "a snapshot: the flag carries no date"
        out.append(Candidate(d, *_counts(conn, d, now), dated=dated, note=note, origin="customers"))
    if _has_rows(conn, "subscriptions"):
        d = Definition("subscriptions")
        subs = KIND_TABLES["subscriptions"]
        total, ended = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.case((subs.c.end <= (now or _FAR_FUTURE), 1))))
        ).one()
        extra = {
            "subscriptions": int(total or 0),
            "subscriptions_ended": int(ended or 0),
            "subscription_churn_rate": round(ended / total, 6) if total else None,
        }
        out.append(
            Candidate(
                d,
                *_counts(conn, d, now),
                dated=True,
                note="the last subscription's end",
                extra=extra,
                origin="subscriptions",
            )
        )
    for source in _sources(conn, "events", matches("churn_event", e.c.activity)):
        if source in {c.definition.source for c in out if c.definition.basis == "events"}:
            continue
        d = Definition("events", source)
        out.append(
            Candidate(
                d, *_counts(conn, d, now), dated=True, note="events whose activity records a churn", origin="events"
            )
        )
    if now is not None and (_has_rows(conn, "transactions") or _has_rows(conn, "events")):
        days, why, gaps = _inactivity_window(conn)
        d = Definition("inactivity", days=days)
        extra = {"window_gaps": gaps}  # what the window was read from (candidates_after keeps a purchase one)
        out.append(Candidate(d, *_counts(conn, d, now), dated=True, note=why, extra=extra, origin="activity"))
    return out


# The kinds an append may hold for candidates_after: neither purchases (the inactivity window's
# gaps) nor churn records, labels or subscriptions (the other definitions' rows).
_NEITHER_PURCHASES_NOR_CHURN = frozenset({"events", "tickets"})

# The kinds of rows a definition's standing reads, where it is one kind (its customers are the CRM
# customers, or everyone on the timeline, among those it covers: an append of other kinds moves
# neither its customers nor who churned).
_READS_ONE_KIND = {"label": "customers", "subscriptions": "subscriptions"}


def candidates_after(conn: Connection, before: list[Candidate], loads: list[int]) -> list[Candidate] | None:
    """``candidates`` after appends that only added rows (``cxdash.store.rollups.appends_since``: no
    earlier row, customer key or CRM flag changed), from ``before``: each definition's counts gain
    what the appended customers (at most ``rollups.INCREMENT_MAX_KEYS``) count now and lose what they
    counted without those loads' rows. A customer's standing under a definition depends on their own
    rows and the data's date alone, so nobody else's changes.

    None (compute them whole) when the appends hold purchases (the inactivity window is read from the
    gaps between purchase days), churn records, CRM records or subscriptions, an event whose name
    records a churn (a definition may appear), when they move the data's date (every "churned by
    now" moves with it), when the window was read from activity gaps, which any event moves, or when
    the inactivity definition would appear."""
    kinds = appended_kinds(conn, loads)
    if not kinds <= _NEITHER_PURCHASES_NOR_CHURN:
        return None
    cases = appended_keys(conn, loads)
    if cases is None or moves_as_of(conn, loads):
        return None
    e = KIND_TABLES["events"]
    churn_events = sa.select(sa.literal(1)).where(e.c.load_id.in_(loads), matches("churn_event", e.c.activity))
    if conn.execute(churn_events.limit(1)).first() is not None:
        return None
    inactivity = [c for c in before if c.definition.basis == "inactivity"]
    if not inactivity or any(c.extra.get("window_gaps") != "purchase" for c in inactivity):
        return None  # the window moves with the activity, or appears with the first dated row
    now = as_of(conn)
    earlier: list[int] | None = None  # read when a definition other than inactivity needs them

    def touched(t: sa.Table) -> tuple:
        return (among(t.c.cx_key, cases),)

    def without_loads(t: sa.Table) -> tuple:
        # a key the loads made has no earlier standing: it counted nowhere
        return (among(t.c.cx_key, earlier), *((t.c.load_id.not_in(loads),) if "load_id" in t.c else ()))

    out = []
    for c in before:
        reads = _READS_ONE_KIND.get(c.definition.basis)
        if reads is not None and reads not in kinds:
            out.append(c)  # it reads none of the appended rows
            continue
        if c.definition.basis == "inactivity":
            gained, churned_now, had, churned_before = _inactivity_moves(conn, c.definition, now, cases, loads)
        else:
            if earlier is None:
                earlier = _earlier_keys(conn, cases, loads)
            gained, churned_now = _counts(conn, c.definition, now, touched)
            had, churned_before = _counts(conn, c.definition, now, without_loads) if earlier else (0, 0)
        out.append(replace(c, customers=c.customers + gained - had, churned=c.churned + churned_now - churned_before))
    return out


def _inactivity_moves(
    conn: Connection, definition: Definition, now: datetime, cases: list[int], loads: list[int]
) -> tuple[int, int, int, int]:
    """``_counts`` of an inactivity definition among the customers ``cases``, with and without the
    loads' ``loads`` rows: ``(judged, churned, judged before, churned before)``, from one pass over
    their steps (counted apart, each reads every activity table twice: at 200k customers 0.15 s for
    each of the two counts). A customer is judged when a step of theirs is in the universe's rows,
    and churned when their last step up to ``now`` is ``days`` or more before it; before the loads,
    from their other steps alone (a customer with none had no standing: nobody counted them)."""
    steps = _activity_steps(lambda t: (among(t.c.cx_key, cases),), loads=True)
    window = timedelta(days=int(definition.days))
    outside = steps.c.load_id.not_in(loads)
    dated = steps.c.ts <= now
    per_key = (
        sa.select(
            steps.c.cx_key,
            sa.func.count(sa.case((outside, 1))).label("before"),
            sa.func.max(sa.case((dated, steps.c.ts))).label("last"),
            sa.func.max(sa.case((sa.and_(dated, outside), steps.c.ts))).label("last_before"),
        )
        .group_by(steps.c.cx_key)
        .subquery("per_key")
    )
    universe = customer_universe(conn, rows=lambda t: (among(t.c.cx_key, cases),)).subquery("universe")
    q = sa.select(
        sa.func.count(),
        sa.func.count(sa.case((per_key.c["last"] + window <= now, 1))),
        sa.func.count(sa.case((per_key.c.before > 0, 1))),
        sa.func.count(sa.case((per_key.c.last_before + window <= now, 1))),
    ).select_from(universe.join(per_key, per_key.c.cx_key == universe.c.cx_key))
    judged, churned_n, judged_before, churned_before = conn.execute(q).one()
    return int(judged or 0), int(churned_n or 0), int(judged_before or 0), int(churned_before or 0)


def _earlier_keys(conn: Connection, cases: list[int], loads: list[int]) -> list[int]:
    """The keys of ``cases`` that some row outside the loads ``loads`` carries: the customers there
    were before those loads."""
    parts = [
        sa.select(t.c.cx_key).where(among(t.c.cx_key, cases), t.c.load_id.not_in(loads))
        for t in KIND_TABLES.values()
        if "load_id" in t.c
    ]
    return sorted(int(k) for k in conn.execute(sa.union(*parts)).scalars())


def _preference(c: Candidate) -> int:
    """Lower is preferred: the company's own churn records, then a dated label, then subscriptions,
    an undated label, churn read from event names, and inactivity, a proxy, last."""
    if c.origin == "customers":
        return 1 if c.dated else 3
    return {"churn": 0, "subscriptions": 2, "events": 4}.get(c.origin, 5)


def suggest(cands: list[Candidate]) -> Candidate | None:
    """The suggested definition: the most direct evidence of churn among those that find any.

    A definition that finds nobody churned while another finds some is not suggested: a running
    subscription row for every account more likely means the export keeps ended accounts' rows
    open than that nobody left. Ties go to the one that judges the most customers.
    """
    usable = [c for c in cands if c.customers > 0]
    if not usable:
        return None
    finding = [c for c in usable if c.churned > 0]
    pool = finding or usable
    return min(pool, key=lambda c: (_preference(c), -c.customers, c.name))


def disagreements(cands: list[Candidate], effective: Candidate, points: float = DISAGREEMENT_POINTS) -> list[Candidate]:
    """The other candidates whose rate differs from ``effective``'s by more than ``points``."""
    if effective.rate is None:
        return []
    return [
        c
        for c in cands
        if c.name != effective.name and c.rate is not None and abs(c.rate - effective.rate) * 100 > points
    ]


# ---------------------------------------------------------------------------------- the company's choice


@dataclass
class Resolution:
    """The definition in force and how it came to be: chosen by someone, or suggested."""

    definition: Definition | None
    candidate: Candidate | None
    candidates: list[Candidate]
    chosen: bool
    note: str = ""

    @property
    def name(self) -> str | None:
        return self.definition.name if self.definition else None

    @property
    def dated(self) -> bool:
        return bool(self.candidate and self.candidate.dated)

    def others_disagreeing(self) -> list[Candidate]:
        return disagreements(self.candidates, self.candidate) if self.candidate else []

    def caption(self) -> str:
        """One sentence for under a churn figure: the definition, chosen or suggested, and any
        other reading that differs by more than the threshold, with both figures."""
        if self.definition is None:
            return (
                "Churn is unknown: no churn label, subscriptions, churn records or dated activity are loaded. "
                "Load one of them to measure churn."
            )
        how = (
            "chosen by the company"
            if self.chosen
            else "suggested from the data (not chosen yet: ops can choose on Data health)"
        )
        text = f"Churn = {self.definition.describe()} [{self.name}], {how}."
        if self.candidate and not self.candidate.dated:
            text += " It has no dates: a snapshot, the same for every period."
        if self.note:
            text += " " + self.note
        others = self.others_disagreeing()
        if others and self.candidate:
            text += (
                f" Other readings disagree by more than {DISAGREEMENT_POINTS:.0f} points: "
                f"{self.candidate.figure()} against " + "; ".join(c.figure() for c in others) + "."
            )
        return text

    def to_dict(self) -> dict:
        return {
            "definition": self.name,
            "chosen": self.chosen,
            "note": self.note,
            "candidates": [c.to_dict() for c in self.candidates],
            "disagreeing": [c.name for c in self.others_disagreeing()],
        }


def resolve(conn: Connection, chosen: str | None, cands: list[Candidate] | None = None) -> Resolution:
    """The definition in force: ``chosen`` (the stored choice) when the data still supports it,
    else the suggestion, saying why."""
    cands = candidates(conn) if cands is None else cands
    by_name = {c.name: c for c in cands}
    note = ""
    if chosen:
        try:
            d = Definition.parse(chosen)
        except ChurnDefinitionError:
            d = None
        if d is not None and d.name in by_name:
            return Resolution(d, by_name[d.name], cands, chosen=True)
        if d is not None and d.basis == "inactivity" and any(c.definition.basis == "inactivity" for c in cands):
            # another window than the suggested one: figures for it on demand
            cand = Candidate(
                d, *_counts(conn, d, as_of(conn)), dated=True, note=f"{d.days} days, chosen", origin="activity"
            )
            return Resolution(d, cand, [*cands, cand], chosen=True)
        note = f"The chosen definition {chosen!r} no longer fits the loaded data, so the suggestion is used."
    best = suggest(cands)
    return Resolution(best.definition if best else None, best, cands, chosen=False, note=note)


def chosen_name(store: Store) -> str | None:
    """The company's stored churn definition, or None when nobody has chosen one."""
    with store.app_begin() as conn:
        row = conn.execute(sa.select(settings_table.c.value).where(settings_table.c.key == SETTING_KEY)).first()
    return row.value if row else None


def choose(store: Store, name: str, *, actor: str) -> Resolution:
    """Store ``name`` as the company's churn definition (audited) and return the resolution.

    Raises ``ChurnDefinitionError`` when the name is malformed or the loaded data does not
    support it (the message lists the candidates)."""
    definition = Definition.parse(name)
    with store.connect() as conn:
        cands = candidates(conn)
        names = [c.name for c in cands]
        if definition.name not in names and not (
            definition.basis == "inactivity" and any(c.definition.basis == "inactivity" for c in cands)
        ):
            offered = ", ".join(names) or "none (load a churn label, subscriptions, churn records or dated activity)"
            raise ChurnDefinitionError(
                f"the loaded data does not support churn definition {name!r}; candidates: {offered}"
            )
    previous = chosen_name(store)
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.app_begin() as conn:
        conn.execute(settings_table.delete().where(settings_table.c.key == SETTING_KEY))
        conn.execute(
            settings_table.insert().values(key=SETTING_KEY, value=definition.name, updated_at=now, updated_by=actor)
        )
    audit.record(store, actor, "churn_definition", {"from": previous, "to": definition.name})
    with store.connect() as conn:
        return resolve(conn, definition.name, cands)
