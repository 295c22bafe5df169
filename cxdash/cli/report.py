"""Reporting commands, each printing what its page shows: ``kpis``, ``journeys``, ``hotspots``, ``churn``."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd

from cxdash.cli.arguments import VIEW_FILTERS
from cxdash.cli.common import churn_in_force, cli_actor, jsonable, store_of
from cxdash.jobs import summaries, views
from cxdash.journeys import (
    ALPHA,
    REPORT_COLUMNS,
    MapFilters,
    friction_moments,
    hotspots,
    ranking_note,
    significance_counts,
)
from cxdash.metrics import (
    DEFAULT_PERIOD_DAYS,
    Filters,
    Period,
    as_of,
    attach_activation,
    churn,
    default_period,
    kpi_report,
)

__all__ = ["cmd_churn", "cmd_hotspots", "cmd_journeys", "cmd_kpis", "journey_map_filters"]


def _view_period(conn, args, *, default_all: bool):
    """The period ``--from``/``--to`` choose, as the pages read it (both days included): only ``--to``
    means the 90 days ending then, only ``--from`` runs to the data's latest day. Without either,
    the 90 days to the latest data (``kpis``) or all history (``default_all``: ``journeys``,
    ``hotspots``, which have always covered all of it). Out: a ``metrics.Period`` or None (all history)."""

    period = default_period(as_of(conn))
    if not (args.date_from or args.date_to):
        return None if default_all else period
    if period is None and not (args.date_from and args.date_to):
        raise ValueError("the store holds no dated rows: give both --from and --to")
    try:
        last = date.fromisoformat(args.date_to) if args.date_to else (period.end - timedelta(days=1)).date()
        first = date.fromisoformat(args.date_from) if args.date_from else last - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    except ValueError as exc:
        raise ValueError(f"--from/--to take a day as YYYY-MM-DD ({exc})") from None
    if last < first:
        raise ValueError(f"--to ({last}) is before --from ({first}): give the first day first")
    return Period.from_dates(first, last)


def _refuse_filters(args, command: str, page: str, offers: str) -> None:
    """A Shared KPIs filter given to a view that has no such filter: refused, never ignored."""
    given = [f"--{name}" for name in VIEW_FILTERS if getattr(args, name, None)]
    if given:
        raise ValueError(
            f"{', '.join(given)} {'is not a filter' if len(given) == 1 else 'are not filters'} of the {page} "
            f"page, so `{command}` cannot apply {'it' if len(given) == 1 else 'them'}: it offers {offers}. "
            "Leave them out, or use `kpis` with them for the Shared KPIs view"
        )


_JOURNEY_OFFERS = "--from/--to, --min-share, --top-n, --collapse, --by-department and --rename"


def journey_map_filters(args):
    """The Journeys page's sidebar choices from the command line (``journeys.MapFilters``)."""
    rename = []
    for rule in args.rename or ():
        old, sep, new = (part.strip() for part in rule.partition("=>"))
        if not (sep and old and new):
            raise ValueError(f"--rename {rule!r}: write a rule as 'old => new', e.g. 'contact: billing => contact'")
        rename.append((old, new))
    if args.top_n is not None and args.top_n < 0:
        raise ValueError(f"--top-n {args.top_n}: give a number of activities, 0 or more (0 = all)")
    return MapFilters(
        min_share=float(args.min_share),
        top_n=args.top_n or None,
        collapse=bool(args.collapse),
        by_department=bool(args.by_department),
        rename=tuple(rename),
    )


def cmd_journeys(args) -> int:
    _refuse_filters(args, "journeys", "Journeys", _JOURNEY_OFFERS)
    filters = journey_map_filters(args)
    store = store_of(args)
    with store.connect() as conn:
        period = _view_period(conn, args, default_all=True)
        p = views.period_params(period.start.date(), (period.end - timedelta(days=1)).date()) if period else {}
        params = views.map_params(filters, p)
        # the page's own computation (cxdash.jobs.views), so the CLI prints the graph the page draws
        frame = views.COMPUTATIONS["journeys.dfg"](conn, **params)
    cols = ["source", "target", "count", "customers", "median_seconds", "p90_seconds"]
    records = [{k: jsonable(v) for k, v in rec.items()} for rec in frame[cols].astype(object).to_dict("records")]
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        if period is not None:
            print(f"period: {period.label()}")
        print(frame[cols].to_string(index=False) if len(frame) else "No journeys: load some extracts first.")
    return 0


def _plain(value):
    """A frame cell as a JSON value: numpy scalars as Python ones, NaN / NA as null."""
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def cmd_hotspots(args) -> int:
    _refuse_filters(args, "hotspots", "Journeys", "--from/--to and --repeat-days")
    store = store_of(args)
    definition = churn_in_force(store).definition
    with store.connect() as conn:
        period = _view_period(conn, args, default_all=True)
        bounds = {"since": period.start, "until": period.end} if period else {}
        moments = friction_moments(repeat_days=args.repeat_days, **bounds)
        frame = hotspots(conn, repeat_days=args.repeat_days, churn=definition, moments=moments)
    significant, tested = significance_counts(frame)
    note = ranking_note(frame)
    records = [{k: _plain(v) for k, v in rec.items()} for rec in frame[REPORT_COLUMNS].to_dict("records")]
    if args.json:
        print(
            json.dumps(
                {
                    "churn_definition": definition.name if definition is not None else None,
                    "period_start": period.start.date().isoformat() if period else None,
                    "period_end": (period.end - timedelta(days=1)).date().isoformat() if period else None,
                    "repeat_days": args.repeat_days,
                    "test": "Fisher's exact, two-sided",
                    "adjustment": "Benjamini-Hochberg",
                    "alpha": ALPHA,
                    "tested": tested,
                    "significant": significant,
                    "note": note,
                    "hotspots": records,
                },
                indent=2,
            )
        )
        return 0
    if frame.empty:
        print("No friction moments found (no tickets, errors or failed payments in the loaded data).")
        return 0
    print(f"churn definition: {definition.name if definition is not None else 'none'}")
    print(f"period: {period.label() if period else 'all of the loaded data'}")
    print(
        f"{'hotspot':24} {'customers':>9} {'hit: churned':>22} {'never hit: churned':>24} {'lift':>6} "
        f"{'95% CI':>13} {'p (BH)':>9}  significant"
    )

    def share(part: int, whole: int, rate) -> str:
        if not whole:  # an empty group: no rate, and "0 of 0" would read as one
            return "-"
        return f"{part:,} of {whole:,}" + ("" if rate is None else f" ({rate:.1%})")

    for r in records:
        hit = share(r["churned"], r["customers_judged"], r["churn_rate"])
        base = share(r["baseline_churned"], r["baseline_customers"], r["baseline_churn_rate"])
        if r["lift"] is None:
            lift, ci = "-", "-"
        else:
            lift = f"{r['lift']:.2f}"
            ci = "-" if r["ci_low"] is None else f"{r['ci_low']:.2f}-{r['ci_high']:.2f}"
        p = "-" if r["p_adjusted"] is None else f"{r['p_adjusted']:.3g}"
        print(
            f"{r['hotspot']:24} {r['customers']:>9,} {hit:>22} {base:>24} {lift:>6} {ci:>13} {p:>9}  "
            f"{'yes' if r['significant'] else ('no' if r['p_adjusted'] is not None else 'not tested')}"
            + (f"  ({r['why']})" if r["why"] else "")
        )
    print(
        note
        or f"{significant} of {tested} hotspots tested are significant: more churn among customers who hit "
        f"them, Fisher's exact test, p-values adjusted by Benjamini-Hochberg across the {tested} tested, "
        f"adjusted p < {ALPHA}."
    )
    return 0


def cmd_churn(args) -> int:
    store = store_of(args)
    if args.use:
        res = churn.choose(store, args.use, actor=cli_actor())
        # the pages' stored figures follow the new definition before this returns
        summaries.refresh(store, summaries.CHURN_REFRESH)
    else:
        res = churn_in_force(store)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=str))
        return 0
    if args.use:
        print(f"churn definition set to {res.name}: {res.definition.describe()}")
    for c in res.candidates:
        mark = "*" if c.name == res.name else " "
        rate = "n/a" if c.rate is None else f"{c.rate:7.2%}"
        print(
            f"{mark} {c.name:32} {rate}  {c.churned:>9,} of {c.customers:>9,}  "
            f"{'dated' if c.dated else 'snapshot'}  {c.note}"
        )
    print(res.caption())
    return 0


def cmd_kpis(args) -> int:
    store = store_of(args)
    definition = churn_in_force(store).definition
    with store.connect() as conn:
        period = _view_period(conn, args, default_all=False)
        filters = Filters(**{name: getattr(args, name) or () for name in VIEW_FILTERS})
        report = kpi_report(
            conn, period, filters, repeat_days=args.repeat_days, horizon_months=args.horizon, churn=definition
        )
    out = attach_activation(report, store).to_dict()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for key in ("as_of", "period_start", "period_end", "churn_definition", *[k for k in report.current]):
            print(f"{key:32} {out.get(key)}")
    return 0
