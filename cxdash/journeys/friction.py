"""Friction: the moments a journey goes wrong, and the hotspots they add up to.

A friction *moment* is one row (customer, time, hotspot, leaked_department,
absorbed_department). The department that *leaked* the customer is the one whose step went
wrong (the error, the first contact that did not solve it, the ticket that was transferred or
waited); the one that *absorbed* it is the department of the customer's next contact within
``repeat_days`` (for a repeat contact: the department that took the repeat), "(none)" when the
customer did not get back in touch. ``hotspots`` counts the moments per hotspot and compares the
churn of the customers who hit each with the churn of those who did not
(``cxdash.journeys.hotspot_stats``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys.cohorts import customer_outcomes
from cxdash.journeys.hotspot_stats import HOTSPOT_COLUMNS, hotspot_statistics
from cxdash.journeys.log import _epoch, _frame, _numeric, _p90, in_period, journey_log, name_codes
from cxdash.metrics import churn as churn_defs
from cxdash.metrics.signals import (
    SIGNALS,
    file_order,
    is_repeat,
    matches,
    previous_same_topic,
    product_event,
    repeat_window,
)
from cxdash.metrics.timeline import FAILED_PAYMENT_STEP, STEP_ORDER, step_order
from cxdash.store.database import KIND_TABLES, sources_table
from cxdash.store.dialect import among

__all__ = [
    "CONTACT_PREFIX",
    "HOTSPOT_DESCRIPTIONS",
    "MOMENT_PARTS",
    "NONE",
    "friction_moments",
    "hotspots",
    "parts_moved_by",
]

CONTACT_PREFIX = "contact: "


NONE = "(none)"

# The parts ``friction_moments`` unites, by name (its ``only``).
MOMENT_PARTS = ("errors", "repeats", "help", "transferred", "waits", "rework", "dead ends")


# What each hotspot means, in the words the registry declares for its signal.
HOTSPOT_DESCRIPTIONS = {s.hotspot: s.description for s in SIGNALS.values() if s.hotspot}


def _error_step(steps) -> sa.ColumnElement[bool]:
    """Is a journey step (a row with ``kind, activity, department``) an error: a checkout error
    (``cxdash.metrics.signals``: a product event named like an error) or a failed payment (a transaction
    with a failed status, which the timeline names ``FAILED_PAYMENT_STEP``)?"""
    return sa.or_(
        _checkout_error_step(steps), sa.and_(steps.kind == "transactions", steps.activity == FAILED_PAYMENT_STEP)
    )


def _checkout_error_step(steps) -> sa.ColumnElement[bool]:
    return sa.and_(steps.kind == "events", product_event(steps.department), matches("checkout_error", steps.activity))


def _seconds_between(later, earlier):
    return _epoch(later) - _epoch(earlier)


def _contacts(jl: sa.FromClause, *where) -> sa.Subquery:
    return (
        sa.select(jl.c.cx_key, jl.c.ts, jl.c.department, jl.c.activity, jl.c.channel)
        .where(jl.c.activity.like(CONTACT_PREFIX + "%"), *where)
        .subquery("contacts")
    )


def _with_absorber(raw: sa.Subquery, contacts: sa.Subquery, days: float) -> sa.Select:
    """Add ``absorbed_department``: the department of the first contact after the moment. Every
    row of ``raw`` stays a moment of its own (two errors in the same second are two errors, as the
    model's features count them); the absorber is looked up once per customer, time and hotspot."""
    at = sa.select(raw.c.cx_key, raw.c.ts, raw.c.hotspot).distinct().subquery(raw.name + "_at")
    after = contacts.c.ts > at.c.ts
    near = _seconds_between(contacts.c.ts, at.c.ts) <= days * 86400.0
    ranked = (
        sa.select(
            at,
            contacts.c.department.label("next_department"),
            sa.func.row_number()
            .over(partition_by=(at.c.cx_key, at.c.ts, at.c.hotspot), order_by=(contacts.c.ts, contacts.c.department))
            .label("rk"),
        )
        .select_from(at.outerjoin(contacts, sa.and_(contacts.c.cx_key == at.c.cx_key, after, near)))
        .subquery(raw.name + "_absorbed")
    )
    first = (
        sa.select(ranked.c.cx_key, ranked.c.ts, ranked.c.hotspot, ranked.c.next_department)
        .where(ranked.c.rk == 1)
        .subquery(raw.name + "_first")
    )
    return sa.select(
        raw.c.cx_key,
        raw.c.ts,
        raw.c.hotspot,
        raw.c.leaked_department,
        sa.func.coalesce(first.c.next_department, NONE).label("absorbed_department"),
    ).select_from(
        raw.join(
            first, sa.and_(first.c.cx_key == raw.c.cx_key, first.c.ts == raw.c.ts, first.c.hotspot == raw.c.hotspot)
        )
    )


def friction_moments(
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    since: datetime | None = None,
    until: datetime | None = None,
    cases: list[int] | None = None,
    steps_without: list[int] | None = None,
    data_end: datetime | None = None,
    only: frozenset[str] | None = None,
    steps: sa.FromClause | None = None,
) -> sa.CTE:
    """Every friction moment in the store (see ``HOTSPOT_DESCRIPTIONS``), or those at a time in
    ``[since, until)``. The moments are found on the whole history and then kept by their time, so
    a repeat contact in the period whose first contact came just before it still counts.

    ``cases``: those customers' moments alone (a customer's moments depend on their own steps and
    tickets, the tickets' wait percentiles and the data's last time). ``steps_without``: the
    journey steps but those of these loads, the moments as they were before loads of events (the
    tickets, their percentiles and the data's last time are read as they are now). ``data_end``:
    the whole journey log's last time, when the caller has read it (dead ends are measured to it;
    else it is read here, a pass over every step). ``only``: the moments of these parts
    (``MOMENT_PARTS``) alone (what appended steps can move: ``parts_moved_by``). ``steps``: the
    journey steps to read instead of the whole log (``journey_log``'s columns), with ``cases``
    and ``data_end``: every step of those customers, read once by a caller that asks again.

    Out (a CTE, usable like a subquery): ``cx_key, ts, hotspot, leaked_department,
    absorbed_department``; ``cx_key`` is the customer's integer key, as the journey log's cases
    (``case_names()`` names them).
    """
    # The timeline as a subquery, not a CTE: each part reads only the steps and columns it needs
    # (the filters reach the source tables' scans). A CTE read by several parts is materialised
    # whole, every step with every column: most of the hotspots' peak memory (issue 17, 1.4 GB of
    # DuckDB's at 200k customers), and no faster than the scans.
    if steps is not None and (cases is None or data_end is None):
        raise ValueError("steps are some customers' own: give their cases and the whole log's data_end")
    jl = journey_log().element.subquery("journey_steps") if steps is None else steps
    # the whole log's, whoever is looked at
    end = (
        sa.select(sa.func.max(jl.c.ts)).scalar_subquery()
        if data_end is None
        else sa.cast(sa.literal(data_end, sa.DateTime), sa.DateTime)
    )
    if cases is not None or steps_without:
        jl = (
            sa.select(jl)
            .where(
                *([among(jl.c.cx_key, cases)] if cases is not None else []),
                *([jl.c.load_id.not_in(steps_without)] if steps_without else []),
            )
            .subquery("their_steps")
        )
    window = repeat_days * 86400.0
    # A period needs only the rows near it, and each part reads those alone: a moment keeps its own
    # time, so the parts' rows are kept by the period before their absorber is looked up, and the
    # absorbers are contacts after a moment and at most ``repeat_days`` later. The bounds are a
    # day looser than the comparisons they serve (those compare epoch seconds as doubles), so
    # they only leave out rows that cannot count.
    slack = timedelta(days=1)
    # a repeat's earlier ticket, and a help visit before a contact, are at most the window earlier
    window_before = since - timedelta(seconds=window) - slack if since is not None else None
    absorbed_by = until + timedelta(days=repeat_days) + slack if until is not None else None

    def moment_at(ts) -> tuple:
        return in_period(ts, since, until)

    contacts = _contacts(jl, *in_period(jl.c.ts, since, absorbed_by))
    parts: dict[str, sa.Select] = {}  # by MOMENT_PARTS' names

    def moments(q: sa.Select, name: str) -> sa.Subquery:
        return q.subquery(name.replace(" ", "_"))

    # errors: checkout errors and failed payments, as the registry defines them
    errors = sa.select(
        jl.c.cx_key,
        jl.c.ts,
        sa.case(
            (_checkout_error_step(jl.c), SIGNALS["checkout_error"].hotspot), else_=SIGNALS["failed_payment"].hotspot
        ).label("hotspot"),
        jl.c.department.label("leaked_department"),
    ).where(_error_step(jl.c), *moment_at(jl.c.ts))
    parts["errors"] = _with_absorber(moments(errors, "errors"), contacts, repeat_days)

    # tickets: repeat contacts, transfers and long waits, read from the tickets table
    k, src = KIND_TABLES["tickets"], sources_table
    dept = sa.func.coalesce(k.c.department, src.c.department, "unknown")
    tickets_from, ticket_customer = k.join(src, src.c.name == k.c.source), k.c.cx_key

    # repeat contacts: the registry's (the same tickets the repeat-contact KPI counts). The earlier
    # ticket's department leaked the customer, the repeat's own absorbed them.
    by_topic = (k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k))
    same_topic = (
        sa.select(
            ticket_customer.label("cx_key"),
            k.c.opened_at.label("ts"),
            dept.label("absorbed_department"),
            previous_same_topic(*by_topic).label("prev_at"),
            sa.func.lag(dept).over(**repeat_window(*by_topic)).label("leaked_department"),
        )
        .select_from(tickets_from)
        .where(k.c.cx_key.is_not(None), k.c.opened_at.is_not(None), *in_period(k.c.opened_at, window_before, until))
        .subquery("same_topic")
    )
    parts["repeats"] = sa.select(
        same_topic.c.cx_key,
        same_topic.c.ts,
        sa.literal(SIGNALS["repeat_contact"].hotspot, sa.String).label("hotspot"),
        same_topic.c.leaked_department,
        same_topic.c.absorbed_department,
    ).where(is_repeat(same_topic.c.ts, same_topic.c.prev_at, repeat_days), *moment_at(same_topic.c.ts))

    # help page, then a contact within N days
    help_visits = (
        sa.select(jl.c.cx_key, jl.c.ts, jl.c.department)
        .where(jl.c.activity == "help_page", *in_period(jl.c.ts, window_before, until))
        .subquery("hv")
    )
    hp = (
        sa.select(
            contacts.c.cx_key,
            contacts.c.ts,
            help_visits.c.department.label("leaked_department"),
            contacts.c.department.label("absorbed_department"),
            sa.func.row_number()
            .over(
                partition_by=(contacts.c.cx_key, contacts.c.ts, contacts.c.activity), order_by=help_visits.c.ts.desc()
            )
            .label("rk"),
        )
        .select_from(
            contacts.join(
                help_visits,
                sa.and_(
                    help_visits.c.cx_key == contacts.c.cx_key,
                    help_visits.c.ts <= contacts.c.ts,
                    _seconds_between(contacts.c.ts, help_visits.c.ts) <= window,
                ),
            )
        )
        .where(*moment_at(contacts.c.ts))
        .subquery("help_then_contact")
    )
    parts["help"] = sa.select(
        hp.c.cx_key,
        hp.c.ts,
        sa.literal("help page then contact", sa.String).label("hotspot"),
        hp.c.leaked_department,
        hp.c.absorbed_department,
    ).where(hp.c.rk == 1)

    transferred = (
        sa.select(
            ticket_customer.label("cx_key"),
            k.c.opened_at.label("ts"),
            sa.literal("transferred ticket", sa.String).label("hotspot"),
            dept.label("leaked_department"),
        )
        .select_from(tickets_from)
        .where(
            matches("transfer", k.c.transfers),
            k.c.opened_at.is_not(None),
            ticket_customer.is_not(None),
            *moment_at(k.c.opened_at),
        )
    )
    parts["transferred"] = _with_absorber(moments(transferred, "transferred"), contacts, repeat_days)
    topic = sa.func.coalesce(k.c.topic, "other")
    durations = (
        sa.select(
            ticket_customer.label("cx_key"),
            k.c.opened_at.label("ts"),
            dept.label("department"),
            topic.label("topic"),
            _seconds_between(k.c.closed_at, k.c.opened_at).label("seconds"),
        )
        .select_from(tickets_from)
        .where(k.c.closed_at.is_not(None), k.c.opened_at.is_not(None), ticket_customer.is_not(None))
        .subquery("durations")
    )
    p90 = (
        sa.select(durations.c.topic, _p90(durations.c.seconds).label("p90"))
        .group_by(durations.c.topic)
        .having(sa.func.count() >= 20)
        .subquery("topic_p90")
    )
    waits = (
        sa.select(
            durations.c.cx_key,
            durations.c.ts,
            sa.literal("long wait", sa.String).label("hotspot"),
            durations.c.department.label("leaked_department"),
        )
        .select_from(durations.join(p90, p90.c.topic == durations.c.topic))
        .where(durations.c.seconds > p90.c.p90, *moment_at(durations.c.ts))
    )
    parts["waits"] = _with_absorber(moments(waits, "waits"), contacts, repeat_days)

    # rework and dead ends, from each step's neighbours
    # A period needs only the steps near it: a rework counts a previous step at most `window`
    # earlier, so steps before since - window cannot change a moment inside [since, until), and
    # the window (the costliest sort of the hotspots) runs on the period's steps instead of the
    # whole history. A dead end looks `dead_end_days` ahead: the step after a step in the period is
    # either in the period too (the window finds it) or each customer's first one from `until` on,
    # which a grouping finds without sorting the month after the period (``ahead``).
    near = in_period(jl.c.ts, since - timedelta(seconds=window) if since is not None else None, until)
    a_step = jl.c.activity != "subscription ended"  # the end of a subscription is no step a customer takes
    near_steps = (
        sa.select(
            jl.c.cx_key,
            jl.c.ts,
            *(jl.c[name] for name in STEP_ORDER),
            jl.c.activity,
            jl.c.department,
            # the error test before the window: a flag travels through its sort, not the kind's text
            _error_step(jl.c).label("is_error"),
        )
        .where(a_step, *near)
        .subquery("near_steps")
    )
    # the activities as codes: the window compares and carries integers (they sort like the names)
    codes = name_codes(near_steps, "activity", "near_activities").subquery("near_codes")
    coded = (
        sa.select(near_steps, codes.c.code)
        .select_from(near_steps.join(codes, codes.c.activity == near_steps.c.activity))
        .subquery("near_coded")
    )
    w = dict(partition_by=coded.c.cx_key, order_by=(*step_order(coded), coded.c.code))
    seq = (
        sa.select(
            coded.c.cx_key,
            coded.c.ts,
            coded.c.code,
            coded.c.department,
            coded.c.is_error,
            sa.func.lag(coded.c.code).over(**w).label("prev_code"),
            sa.func.lag(coded.c.ts).over(**w).label("prev_ts"),
            sa.func.lead(coded.c.ts).over(**w).label("next_ts"),
        ).cte("seq")  # read by rework and dead ends: one window pass, not two
    )
    rework = sa.select(
        seq.c.cx_key,
        seq.c.ts,
        sa.literal("rework", sa.String).label("hotspot"),
        seq.c.department.label("leaked_department"),
    ).where(
        seq.c.code == seq.c.prev_code,
        seq.c.department.not_in(("web", "marketing")),
        _seconds_between(seq.c.ts, seq.c.prev_ts) <= window,
    )
    parts["rework"] = _with_absorber(moments(rework, "rework"), contacts, repeat_days)
    after, next_ts = seq, seq.c.next_ts
    if until is not None:
        # up to the dead-end horizon, a day loose: none that close leaves the last step a dead end
        ahead = (
            sa.select(jl.c.cx_key, sa.func.min(jl.c.ts).label("first_ts"))
            .where(a_step, *in_period(jl.c.ts, until, until + timedelta(days=dead_end_days) + slack))
            .group_by(jl.c.cx_key)
            .subquery("ahead")
        )
        after = seq.outerjoin(ahead, ahead.c.cx_key == seq.c.cx_key)
        next_ts = sa.func.coalesce(seq.c.next_ts, ahead.c.first_ts)
    dead = (
        sa.select(
            seq.c.cx_key,
            seq.c.ts,
            sa.literal("dead end", sa.String).label("hotspot"),
            seq.c.department.label("leaked_department"),
            sa.literal(NONE, sa.String).label("absorbed_department"),
        )
        .select_from(after)
        .where(
            seq.c.is_error,
            _seconds_between(end, seq.c.ts) > dead_end_days * 86400.0,
            sa.or_(next_ts.is_(None), _seconds_between(next_ts, seq.c.ts) > dead_end_days * 86400.0),
        )
    )
    parts["dead ends"] = dead
    kept = [q for name, q in parts.items() if only is None or name in only]
    if since is None and until is None and cases is None:
        return sa.union_all(*kept).cte("friction_moments")
    every = sa.union_all(*kept).subquery("every_moment")
    mine = [among(every.c.cx_key, cases)] if cases is not None else []
    return sa.select(every).where(*in_period(every.c.ts, since, until), *mine).cte("friction_moments")


def parts_moved_by(conn: Connection, loads: list[int]) -> frozenset[str] | None:
    """The parts of ``friction_moments`` (``MOMENT_PARTS``) the journey steps the loads ``loads``
    stored can move, or None for all of them (a contact among them: every moment's absorber reads
    the contacts). Rework and dead ends read the steps' order, so any step can move them; errors
    and help pages add their own parts. (The caller knows the loads hold events alone: the tickets'
    moments read their table.)"""
    log = journey_log()
    steps = sa.select(
        sa.func.max(sa.case((log.c.activity.like(CONTACT_PREFIX + "%"), 1), else_=0)),
        sa.func.max(sa.case((_error_step(log.c), 1), else_=0)),
        sa.func.max(sa.case((log.c.activity == "help_page", 1), else_=0)),
    ).where(log.c.load_id.in_(loads))
    contact, error, help_page = conn.execute(steps).one()
    if contact:
        return None
    return frozenset({"rework", "dead ends"} | ({"errors"} if error else set()) | ({"help"} if help_page else set()))


def hotspots(
    conn: Connection,
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    moments: sa.FromClause | None = None,
    churn: churn_defs.Definition | None = None,
) -> pd.DataFrame:
    """Friction hotspots with the churn they come with (under ``churn``, a
    ``cxdash.metrics.churn.Definition``; default the suggested definition), ranked by excess churned
    customers, or by customers touched when churn cannot be compared.

    Out: one row per hotspot, ``HOTSPOT_COLUMNS``: ``customers`` touched (of the KPI universe),
    ``moments`` and ``customer_share``; the 2x2 table of the comparison: ``customers_judged`` (touched,
    churn known, not churned before the first moment; ``churned_before`` counts those left out for
    that), ``churned`` (of them, churned after it), ``baseline_customers`` (never hit it, churn
    known) and ``baseline_churned``; then the rates, ``lift`` (risk ratio, NaN with a ``why`` when
    a zero cell or unknown churn leaves none), ``ci_low``/``ci_high`` (95%), ``p_value`` (Fisher,
    two-sided), ``p_adjusted`` (Benjamini-Hochberg across the hotspots ``tested``), ``significant``
    and ``churn_definition`` (its name, NA when none): see ``cxdash.journeys.hotspot_stats``.
    ``excess_churned`` = customers_judged x (churn_rate - baseline_churn_rate) is the ranking key;
    ``revenue_at_stake`` = last-12-months revenue of touched customers who have not churned (yet);
    ``leaked_department -> absorbed_department`` = the most common route and ``route_share`` its
    share of the moments. ``moments`` (default: ``friction_moments`` of the whole history) are the
    moments counted.
    """
    m = moments if moments is not None else friction_moments(repeat_days=repeat_days, dead_end_days=dead_end_days)
    definition = churn_defs.in_force(conn, churn)
    out = customer_outcomes(conn, churn=definition)
    per_cx = (
        sa.select(m.c.hotspot, m.c.cx_key, sa.func.min(m.c.ts).label("first_ts"), sa.func.count().label("n"))
        .group_by(m.c.hotspot, m.c.cx_key)
        .subquery("per_cx")
    )
    known = out.c.churn_known.is_(True)
    is_churned = out.c.churned.is_(True)
    # an undated churn (a snapshot label) cannot be placed before the moment: it counts as after
    after = sa.and_(known, is_churned, sa.or_(out.c.churned_at.is_(None), out.c.churned_at >= per_cx.c.first_ts))
    before = sa.and_(known, is_churned, out.c.churned_at < per_cx.c.first_ts)

    def count_if(condition) -> sa.ColumnElement:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    stats_q = (
        sa.select(
            per_cx.c.hotspot,
            sa.func.count().label("customers"),
            sa.func.sum(per_cx.c.n).label("moments"),
            count_if(known).label("known"),
            count_if(after).label("churned"),
            count_if(before).label("churned_before"),
            count_if(sa.and_(known, is_churned)).label("churned_any"),
            sa.func.sum(sa.case((is_churned, 0.0), else_=out.c.revenue_12m)).label("revenue_at_stake"),
        )
        .select_from(per_cx.join(out, out.c.case_id == per_cx.c.cx_key))
        .group_by(per_cx.c.hotspot)
        .subquery("hotspot_stats")
    )
    routes = (
        sa.select(m.c.hotspot, m.c.leaked_department, m.c.absorbed_department, sa.func.count().label("n"))
        .group_by(m.c.hotspot, m.c.leaked_department, m.c.absorbed_department)
        .subquery("routes")
    )
    ranked = sa.select(
        routes,
        sa.func.row_number()
        .over(
            partition_by=routes.c.hotspot,
            order_by=(routes.c.n.desc(), routes.c.leaked_department, routes.c.absorbed_department),
        )
        .label("rk"),
        (sa.cast(routes.c.n, sa.Double) / sa.func.sum(routes.c.n).over(partition_by=routes.c.hotspot)).label("share"),
    ).subquery("ranked_routes")
    q = (
        sa.select(stats_q, ranked.c.leaked_department, ranked.c.absorbed_department, ranked.c.share)
        .join(ranked, sa.and_(ranked.c.hotspot == stats_q.c.hotspot, ranked.c.rk == 1))
        .order_by(stats_q.c.hotspot)
    )
    stats = _frame(
        conn,
        q,
        [
            "hotspot",
            "customers",
            "moments",
            "known",
            "churned",
            "churned_before",
            "churned_any",
            "revenue_at_stake",
            "leaked_department",
            "absorbed_department",
            "route_share",
        ],
    )
    # the baseline counts churn alone: the customers' outcomes without their revenue
    bare = customer_outcomes(conn, churn=definition, revenue=False)
    bare_known, bare_churned = bare.c.churn_known.is_(True), bare.c.churned.is_(True)
    total, total_known, total_churned = conn.execute(
        sa.select(sa.func.count(), count_if(bare_known), count_if(sa.and_(bare_known, bare_churned)))
    ).one()
    total, total_known, total_churned = int(total or 0), int(total_known or 0), int(total_churned or 0)
    if stats.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in HOTSPOT_COLUMNS})
    stats = _numeric(
        stats,
        ints=("customers", "moments", "known", "churned", "churned_before", "churned_any"),
        floats=("revenue_at_stake", "route_share"),
    )
    stats["customer_share"] = stats["customers"] / total if total else float("nan")
    stats["customers_judged"] = stats["known"] - stats["churned_before"]
    stats["baseline_customers"] = total_known - stats["known"]
    stats["baseline_churned"] = total_churned - stats["churned_any"]
    frame = hotspot_statistics(stats, churn_definition=definition.name if definition is not None else None)
    frame["description"] = frame["hotspot"].map(HOTSPOT_DESCRIPTIONS).fillna("")
    # the name breaks ties: the same order every run; no comparable churn (NaN) ranks by reach
    frame = frame.sort_values(
        ["excess_churned", "customers", "hotspot"],
        ascending=[False, False, True],
        na_position="last",
        ignore_index=True,
        kind="stable",
    )
    for col in ("hotspot", "leaked_department", "absorbed_department", "description"):
        frame[col] = frame[col].astype("string")
    return frame[HOTSPOT_COLUMNS]
