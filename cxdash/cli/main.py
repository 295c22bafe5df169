"""``python -m cxdash [--db URL] COMMAND``: the same operations as the app, for scheduled jobs.

Every command exits 0 on success and non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

from cxdash.config import DATA_DIR

__all__ = ["main"]

log = logging.getLogger("cxdash")


def _store(args):
    from cxdash.store.database import open_store

    return open_store(args.db)


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value != value:  # NaN / NaT
        return None
    return value


def cmd_sources(args) -> int:
    if getattr(args, "action", None) == "set":
        return cmd_sources_set(args)
    from cxdash.governance.health import governance
    from cxdash.metrics.overview import source_summary

    store = _store(args)
    with store.connect() as conn:
        frame = source_summary(conn)
        gov = governance(conn)
    if len(frame):
        extra = [
            "owner",
            "quality",
            "freshness_hours",
            "latency_p50_hours",
            "latency_p95_hours",
            "latency_target_hours",
            "stitched_share",
            "duplicate_keys",
        ]
        frame = frame.merge(gov[["name", *extra]], on="name", how="left")
    records = [{k: _jsonable(v) for k, v in rec.items()} for rec in frame.astype(object).to_dict("records")]
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        print(frame.to_string(index=False) if len(frame) else "No sources loaded yet.")
    return 0


def cmd_sources_set(args) -> int:
    from cxdash.governance.sources import set_source_owner

    after = set_source_owner(
        _store(args), args.source, department=args.department, owner=args.owner, actor=_cli_actor()
    )
    print(f"source {args.source}: department {after['department']}, owner {after['owner']}")
    return 0


def cmd_demo(args) -> int:
    from cxdash.demo.build import build_demo

    store = _store(args)
    started = time.perf_counter()
    out_dir = Path(args.out) if args.out else DATA_DIR / "demo"
    built = True
    if args.if_empty:
        from cxdash.metrics.overview import data_version

        with store.connect() as conn:
            if data_version(conn):
                print(f"store {store.url} already holds data; demo not rebuilt (make clean-data to start over)")
                built = False
    if built:
        summary = build_demo(store, n_customers=args.customers, seed=args.seed, out_dir=out_dir)
        print(
            f"demo company: {args.customers:,} customers, {summary['rows']:,} rows in {len(summary['sources'])} "
            f"sources, generated in {summary['generate_seconds']:.1f} s, loaded in {summary['load_seconds']:.1f} s "
            f"(total {time.perf_counter() - started:.1f} s) into {store.url}"
        )
    # At-risk customers and the customer card need a model: the demo comes with its first one
    # (17-30 s at 10,000 customers on 2 cores), so every page works on the first visit.
    if args.no_train or not built:  # a store that held data already: `train --if-missing` decides
        return 0
    if _newest_model(store) is not None:
        print("a churn model exists already; not retrained (python -m cxdash train retrains)")
        return 0
    from cxdash.risk.model import NotEnoughChurnError

    print("training the first churn model on the demo (progress below; --no-train skips this)")
    try:
        model = _train_with_progress(store)
    except NotEnoughChurnError as exc:
        # A small demo can hold too few leavers to measure a model: the demo itself is loaded.
        print(f"demo loaded, but no churn model was trained: {' '.join(str(exc).split())}", file=sys.stderr)
        return 0
    print(_train_summary(model))
    return 0


def _newest_model(store) -> int | None:
    """The newest saved model's version, or None when no model has been trained."""
    import sqlalchemy as sa

    from cxdash.store.database import models_table

    with store.app_begin() as conn:
        return conn.execute(sa.select(sa.func.max(models_table.c.version))).scalar()


def _train_with_progress(store, **kwargs):
    """``cxdash.risk.model.train`` with each step and the time so far on stderr (stdout stays for the
    result, which may be JSON)."""
    from cxdash.risk.model import train

    started = time.perf_counter()

    def progress(share: float, text: str) -> None:
        print(f"  {100 * share:3.0f}%  {time.perf_counter() - started:5.1f} s  {text}", file=sys.stderr, flush=True)

    model = train(store, progress=progress, **kwargs)
    print(f"  trained in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return model


def _print_guesses(guesses, limit: int = 4) -> None:
    print("kind guesses (best first):")
    for g in guesses[:limit]:
        print(f"  {g.kind:14} {g.confidence:9} score {g.score:5.1f}")
        for reason in g.reasons:
            print(f"      - {reason}")


def _print_mapping(result) -> None:
    origin = {
        "given": "given with --mapping",
        "saved": f"saved for source {result.source!r} (its earlier choice)",
        "guessed": f"guessed: the file is clearly {result.kind}",
        "kind": f"suggested for --kind {result.kind}",
    }.get(result.mapping_origin, result.mapping_origin)
    print(f"mapping ({origin}), field <- column (found by):")
    for r in result.mapping_table().itertuples():
        column = repr(r.column) if r.column else "-"
        print(f"  {r.field:22} <- {column:32} ({r._3})")


def _print_report(result) -> None:
    for note in result.notes:
        print(f"note: {note}")
    counts = result.failure_counts()
    for r in counts.itertuples():
        print(f"failure: {r.column}: {r.rows:,} row(s) not {r.expected} ({r.rule})")
    for line in result.duplicate_lines():
        print(f"duplicates: {line}")
    if result.refused:
        print(f"refused: {result.refused}")
    if result.impact is not None:
        for line in result.impact.lines():
            print(f"impact: {line}")


# ``--report`` keeps this many failures in memory (the app's own list keeps fewer); past it the
# report says it was cut and where the rest are.
REPORT_MAX_FAILURES = 2_000_000


def _write_report(result, path: str) -> None:
    """Write every kept failure to ``path`` through the formula-neutralising CSV writer (a value
    like ``=HYPERLINK(...)`` from the file must not run when the report is opened), and say how
    many were written and, when the list was cut, where the rest are."""
    from cxdash.exporting import safe_csv

    Path(path).write_bytes(safe_csv(result.failures))
    written, total = len(result.failures), result.failures_total
    if total > written:
        last = int(result.failures["line"].max())
        print(
            f"report: {path} holds the first {written:,} of {total:,} failures (through line {last:,}); "
            f"the other {total - written:,} are on line {last:,} or later of the file: fix these and run again"
        )
    else:
        print(f"report: {path} holds all {written:,} failures")


def cmd_ingest(args) -> int:
    from cxdash.ingest.load import IngestError, KindUnclearError, ingest_file
    from cxdash.ingest.mapping import load_mapping

    store = _store(args)
    mapping = load_mapping(args.mapping) if args.mapping else None
    try:
        result = ingest_file(
            store,
            args.file,
            source=args.source,
            kind=args.kind,
            mapping=mapping,
            mode=args.mode,
            reject_invalid=args.reject_invalid,
            dry_run=args.check,
            department=args.department,
            owner=args.owner,
            links=_links(args.link),
            actor=_cli_actor(),  # the upload audit entry commits with the data (cxdash.ingest.load.ingest_file)
            **({"max_failures": REPORT_MAX_FAILURES} if args.report else {}),
        )
    except KindUnclearError as exc:
        _print_guesses(exc.guesses)
        raise
    except IngestError as exc:
        if exc.result is not None:
            _print_mapping(exc.result)
            _print_report(exc.result)
            if args.report:
                _write_report(exc.result, args.report)
        raise
    if args.report and not result.failures.empty:
        _write_report(result, args.report)
    if result.guesses and result.mapping_origin in ("guessed", "kind"):
        _print_guesses(result.guesses, limit=3)
    _print_mapping(result)
    if args.check:
        _print_report(result)
        would_load = (
            result.refused is None and result.rows_valid > 0 and (args.reject_invalid or result.rows_rejected == 0)
        )
        print(
            f"check of {result.file_name} as {result.kind} for {result.source}: nothing stored; read "
            f"{result.rows_read:,}, valid {result.rows_valid:,}, rejected {result.rows_rejected:,}; "
            + ("it would load." if would_load else "it would NOT load as it is.")
        )
        return 0 if would_load else 1
    for line in result.duplicate_lines():
        print(f"duplicates: {line}")
    print(result.summary())
    for note in result.notes:
        if note.startswith("link ") or "keyed only by a link" in note:
            print(f"  {note}")
    from cxdash.jobs import summaries

    if result.stored and (result.rows_loaded or args.mode == "replace"):
        summaries.refresh(store)
    return 0 if result.rows_loaded or result.rows_duplicate else 1


def _links(texts: list[str] | None) -> dict | None:
    from cxdash.identity.links import parse_link

    return dict(parse_link(t) for t in texts) if texts else None


def _view_period(conn, args, *, default_all: bool):
    """The period ``--from``/``--to`` choose, as the pages read it (both days included): only ``--to``
    means the 90 days ending then, only ``--from`` runs to the data's latest day. Without either,
    the 90 days to the latest data (``kpis``) or all history (``default_all``: ``journeys``,
    ``hotspots``, which have always covered all of it). Out: a ``metrics.Period`` or None (all history)."""
    from datetime import date, timedelta

    from cxdash.metrics import DEFAULT_PERIOD_DAYS, Period, as_of, default_period

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
    from cxdash.journeys.discovery import MapFilters

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
    from cxdash.jobs import views

    _refuse_filters(args, "journeys", "Journeys", _JOURNEY_OFFERS)
    filters = journey_map_filters(args)
    store = _store(args)
    with store.connect() as conn:
        period = _view_period(conn, args, default_all=True)
        p = views.period_params(period.start.date(), (period.end - timedelta(days=1)).date()) if period else {}
        params = views.map_params(filters, p)
        # the page's own computation (cxdash.jobs.views), so the CLI prints the graph the page draws
        frame = views.COMPUTATIONS["journeys.dfg"](conn, **params)
    cols = ["source", "target", "count", "customers", "median_seconds", "p90_seconds"]
    records = [{k: _jsonable(v) for k, v in rec.items()} for rec in frame[cols].astype(object).to_dict("records")]
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        if period is not None:
            print(f"period: {period.label()}")
        print(frame[cols].to_string(index=False) if len(frame) else "No journeys: load some extracts first.")
    return 0


HOTSPOT_FIELDS = (
    "hotspot",
    "customers",
    "customers_judged",
    "churned",
    "churned_before",
    "churn_rate",
    "baseline_customers",
    "baseline_churned",
    "baseline_churn_rate",
    "lift",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "significant",
    "why",
    "leaked_department",
    "absorbed_department",
)


def _plain(value):
    """A frame cell as a JSON value: numpy scalars as Python ones, NaN / NA as null."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def cmd_hotspots(args) -> int:
    from cxdash.journeys.discovery import friction_moments, hotspots
    from cxdash.journeys.hotspot_stats import ALPHA, ranking_note, significance_counts

    _refuse_filters(args, "hotspots", "Journeys", "--from/--to and --repeat-days")
    store = _store(args)
    definition = _churn_in_force(store).definition
    with store.connect() as conn:
        period = _view_period(conn, args, default_all=True)
        bounds = {"since": period.start, "until": period.end} if period else {}
        moments = friction_moments(repeat_days=args.repeat_days, keyed=True, **bounds)
        frame = hotspots(conn, repeat_days=args.repeat_days, keyed=True, churn=definition, moments=moments)
    significant, tested = significance_counts(frame)
    note = ranking_note(frame)
    records = [{k: _plain(v) for k, v in rec.items()} for rec in frame[list(HOTSPOT_FIELDS)].to_dict("records")]
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


def _churn_in_force(store):
    """The company's churn definition (or the suggestion when none is chosen)."""
    from cxdash.metrics import churn

    with store.connect() as conn:
        return churn.resolve(conn, churn.chosen_name(store))


def cmd_churn(args) -> int:
    from cxdash.jobs import summaries
    from cxdash.metrics import churn

    store = _store(args)
    if args.use:
        res = churn.choose(store, args.use, actor=_cli_actor())
        # the pages' stored figures follow the new definition before this returns
        summaries.refresh(store, summaries.CHURN_REFRESH)
    else:
        res = _churn_in_force(store)
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
    from cxdash.metrics import Filters, attach_activation, kpi_report

    store = _store(args)
    definition = _churn_in_force(store).definition
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


# The filters a Shared KPIs or Journeys view takes (cxdash.metrics.Filters), as the command line spells them.
VIEW_FILTERS = ("segment", "region", "plan", "channel", "campaign", "department")


def _period_arguments(parser, default: str) -> None:
    """``--from``/``--to``: the pages' shared period (both days included)."""
    parser.add_argument("--from", dest="date_from", help=f"first day, YYYY-MM-DD (default: {default})")
    parser.add_argument("--to", dest="date_to", help="last day (included), YYYY-MM-DD")


def _view_filter_arguments(parser) -> None:
    """``--segment X`` etc. (repeatable: any of the values), so any view a page shows can be scripted."""
    for name in VIEW_FILTERS:
        what = "the team whose activity and contacts count" if name == "department" else f"customers whose {name} is"
        parser.add_argument(f"--{name}", action="append", metavar="VALUE", help=f"only {what} VALUE (repeatable)")


# ``train --json``: the held-out report (cxdash.risk.model.model_metrics) and how it was obtained.
TRAIN_JSON_KEYS = (
    "validation",
    "evaluated_on",
    "n_valid",
    "n_positive_valid",
    "base_rate",
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "roc_auc_ci_level",
    "roc_auc_ci_method",
    "pr_auc",
    "brier",
    "top_decile_n",
    "top_decile_positive",
    "top_decile_rate",
    "top_decile_lift",
    "top_decile_capture",
    "valid_cutoffs",
    "valid_customers",
    "selection",
    "select_cutoffs",
    "n_select",
    "n_positive_select",
    "n_train",
    "train_cutoffs",
    "candidates",
    "chosen",
    "fitted_with",
)


def cmd_train(args) -> int:
    from datetime import datetime

    store = _store(args)
    if args.if_missing:
        newest = _newest_model(store)
        if newest is not None:
            print(f"churn model version {newest} exists; not retrained (drop --if-missing to retrain)")
            return 0
    cutoff = datetime.fromisoformat(args.cutoff) if args.cutoff else None
    model = _train_with_progress(
        store,
        label_column=args.label_column,
        source=args.source,
        cutoff=cutoff,
        horizon_days=args.horizon_days,
    )
    m = model.metrics
    out = {k: m.get(k) for k in TRAIN_JSON_KEYS}
    out.update(
        model_version=model.version,
        kind=model.kind,
        label_column=model.label_column,
        cutoff=model.cutoff,
        horizon_days=model.horizon_days,
        top_drivers=[d["label"] for d in m.get("importance", [])[:8]],
    )
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(_train_summary(model))
    return 0


def _train_summary(model) -> str:
    m = model.metrics
    return (
        f"model version {model.version} ({model.name}, {m['validation'].replace('_', ' ')}), measured on "
        f"{m['evaluated_on']}: {m['n_positive_valid']:,} of {m['n_valid']:,} churned "
        f"(base rate {m['base_rate']:.1%}); ROC AUC {m['roc_auc']:.3f} "
        f"(95% CI {m['roc_auc_ci_low']:.3f}-{m['roc_auc_ci_high']:.3f}, bootstrap), "
        f"PR AUC {m['pr_auc']:.3f} against a base rate of {m['base_rate']:.3f}, top-decile lift "
        f"{m['top_decile_lift']:.2f} ({m['top_decile_positive']:,} churned in the riskiest {m['top_decile_n']:,}); "
        f"{m['n_train']:,} training rows, {m['n_select']:,} rows to choose and calibrate"
    )


def _reason_record(reason: dict) -> dict:
    from cxdash.risk.card import REASON_KEYS

    return {k: reason.get(k) for k in REASON_KEYS}


def cmd_score(args) -> int:
    from cxdash.risk.activation import at_risk, store_scores
    from cxdash.risk.model import latest_model

    store = _store(args)
    model = latest_model(store)
    if args.rescore:
        store_scores(store, model)
    frame = at_risk(store, only_top_decile=False, limit=args.top)
    if frame.empty:  # trained before scores were kept, or scores cleared: score now
        store_scores(store, model)
        frame = at_risk(store, only_top_decile=False, limit=args.top)
    records = [
        # value is unknown (None) when neither transactions nor subscription MRR are loaded
        {
            "cx_id": r.cx_id,
            "customer_id": r.customer_id,
            "risk": float(r.risk),
            "value": None if r.value is None or r.value != r.value else float(r.value),
            "priority": float(r.priority),
            "department": r.department,
            "action": r.action,
            "reasons": [_reason_record(x) for x in r.reasons],
        }
        for r in frame.itertuples()
    ]
    if args.json:
        print(json.dumps({"model_version": model.version, "customers": records}, indent=2, default=str))
    else:
        for r in records:
            reasons = "; ".join(x["label"] for x in r["reasons"])
            print(f"{r['customer_id']:20} risk {r['risk']:.3f}  {reasons}  -> {r['action']}")
    return 0


def cmd_card(args) -> int:
    from cxdash.risk.card import customer_summary, find_customers
    from cxdash.risk.next_action import age_words

    store = _store(args)
    with store.connect() as conn:
        matches = find_customers(conn, args.identifier)
    if matches.empty:
        print(
            f"cxdash card: no customer matches {args.identifier!r}; give a full customer id, email or phone "
            "(a customer id prefix also works)",
            file=sys.stderr,
        )
        return 1
    exact = matches[matches["matched"] != "customer_id prefix"]
    pick = exact if len(exact) == 1 else matches
    if len(pick) > 1:
        listed = ", ".join(f"{r.customer_id} ({r.matched})" for r in pick.itertuples())
        print(
            f"cxdash card: {len(pick)} customers match {args.identifier!r}: {listed}; give one of them in full",
            file=sys.stderr,
        )
        return 2
    definition = _churn_in_force(store).definition
    out = customer_summary(store, str(pick["cx_id"].iloc[0]), mask=not args.unmasked, definition=definition)
    if args.json:
        print(json.dumps(out, indent=2, default=_jsonable))
        return 0
    print(f"{out['customer_id'] or out['cx_id']}  {out['name'] or ''}  (cx_id {out['cx_id']})")
    print("identifiers: " + ", ".join(f"{i['field']}={i['value']}" for i in out["identifiers"]))
    print(f"risk: {out['risk']:.0%}" if out["risk"] is not None else f"risk: n/a. {out['risk_note']}")
    print(f"next action: {out['next_action']['action']} (owner: {out['next_action']['department'] or 'n/a'})")
    for r in out["reasons"]:
        print(f"  why: {r['label']} — {r['detail']}")
    if not out["signals"]:
        print("signals: none on record")
    for sig in out["signals"]:
        detail = f" ({sig['detail']})" if sig["detail"] else ""
        print(f"  signal: {sig['label']} {age_words(sig['age_days'])}{detail}")
    return 0


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


def _read_password(args) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    return sys.stdin.readline().rstrip("\r\n")


DEMO_USERS = {"exec": "executive", "journeys": "journey_owner", "ops": "ops", "agent": "agent"}


def cmd_users(args) -> int:
    """Users and roles (issue 7). Generated passwords are printed once and stored only hashed."""
    from cxdash.governance import auth

    store, actor = _store(args), _cli_actor()
    if args.action == "add":
        generated = auth.add_user(store, args.name, args.role, _read_password(args), actor=actor, sso=args.sso)
        print(f"user {args.name.lower()} added as {args.role}")
        if generated:
            print(f"password (shown once, store it now): {generated}")
    elif args.action == "set-role":
        auth.set_role(store, args.name, args.role, actor=actor)
        print(f"user {args.name.lower()} is now {args.role}")
    elif args.action in ("disable", "enable"):
        auth.set_disabled(store, args.name, args.action == "disable", actor=actor)
        print(f"user {args.name.lower()} {args.action}d")
    elif args.action == "unlock":
        auth.unlock(store, args.name, actor=actor)
        print(f"user {args.name.lower()} unlocked")
    elif args.action == "reset-password":
        generated = auth.reset_password(store, args.name, _read_password(args), actor=actor)
        print(
            f"password of {args.name.lower()} reset"
            + (f"; new password (shown once): {generated}" if generated else "")
        )
    elif args.action == "bootstrap":
        created = {}
        fresh = auth.list_users(store).empty
        if not auth.has_admin(store):
            created["admin"] = ("admin", auth.add_user(store, "admin", "admin", actor=actor))
        if args.demo_users and fresh:  # a fresh install only: never adds accounts to a live one
            for name, role in DEMO_USERS.items():
                if auth.get_user(store, name) is None:
                    created[name] = (role, auth.add_user(store, name, role, actor=actor))
        for name, (role, password) in created.items():
            print(f"created {role:13} user {name!r} with password {password}  (shown once)")
        if not created:
            print("users already set up; `python -m cxdash users list` shows them")
    else:  # list
        frame = auth.list_users(store)
        if args.json:
            records = [{k: _jsonable(v) for k, v in r.items()} for r in frame.astype(object).to_dict("records")]
            print(json.dumps(records, indent=2, default=str))
        else:
            print(frame.to_string(index=False) if len(frame) else "No users yet: `python -m cxdash users bootstrap`.")
    return 0


def cmd_erase(args) -> int:
    """Right to erasure (issue 7): forget one customer everywhere and keep them forgotten."""
    from cxdash.governance.erasure import erase_customer
    from cxdash.store.database import compact_duckdb_file

    store = _store(args)
    result = erase_customer(store, args.customer, actor=args.actor or _cli_actor())
    print(result.summary())
    if args.compact:
        store.dispose()
        engines = [store.engine] + ([store.app_engine] if store.app_engine is not store.engine else [])
        for path in filter(None, map(compact_duckdb_file, engines)):
            print(f"{path.name} rewritten from its live rows: no freed space or old statistics keep the ids")
    return 0


def cmd_compact(args) -> int:
    """Rewrite an embedded DuckDB store from its live rows (after erasures; the app should be stopped)."""
    from cxdash.store.database import compact_duckdb_file

    store = _store(args)
    store.dispose()
    engines = [store.engine] + ([store.app_engine] if store.app_engine is not store.engine else [])
    done = [p for p in map(compact_duckdb_file, engines) if p]
    if not done:
        print("nothing to compact: the store is not an embedded DuckDB file")
    for path in done:
        print(f"{path.name} rewritten from its live rows ({path.stat().st_size:,} bytes)")
    return 0


def cmd_migrate(args) -> int:
    from cxdash.store.database import open_store

    store = open_store(args.db, create=False)
    changes = store.create_schema()
    for change in changes:
        print(change)
    print(f"schema up to date at {store.url}" + (f" ({len(changes)} change(s))" if changes else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxdash", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="SQLAlchemy database URL (default: $CXDASH_DB_URL or a DuckDB file under data/)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sources", help="list loaded sources")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_sources)
    ssub = s.add_subparsers(dest="action", required=False)
    ss = ssub.add_parser("set", help="change a source's department and/or owner (audited)")
    ss.add_argument("source")
    ss.add_argument("--department", help="the department its steps belong to on journeys and hotspots")
    ss.add_argument("--owner", help="the team or person to call about it")

    d = sub.add_parser("demo", help="generate the demo company's extracts and load them")
    d.add_argument("--customers", type=int, default=10_000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--out", help="folder for the CSV extracts (default data/demo)")
    d.add_argument("--if-empty", action="store_true", help="only when the store holds no data yet")
    d.add_argument(
        "--no-train",
        action="store_true",
        help="do not train the first churn model (default: train one unless it exists)",
    )
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("ingest", help="validate and load one CSV extract")
    i.add_argument("file")
    i.add_argument("--source", required=True, help="source name, e.g. crm or helpdesk")
    i.add_argument(
        "--kind",
        help="source kind; when omitted it is guessed, and the load stops unless one kind is "
        "clearly right (the source's saved mapping is used when there is one)",
    )
    i.add_argument("--mapping", help='mapping JSON: {"kind": KIND, "columns": {FIELD: COLUMN}}')
    i.add_argument("--mode", choices=["append", "replace"], default="append")
    i.add_argument("--reject-invalid", action="store_true", help="load valid rows, quarantine invalid ones")
    i.add_argument("--report", help="write the rejected rows with reasons to this CSV")
    i.add_argument(
        "--check",
        action="store_true",
        help="validate and report (kind guesses, mapping, failures, duplicates, impact) without loading",
    )
    i.add_argument(
        "--link",
        action="append",
        metavar="COLUMN=SOURCE.FIELD",
        help="the column holds keys of a loaded source (e.g. subscription_id=subs.subscription_id): "
        "rows with no customer identifier reach theirs through it (repeatable)",
    )
    i.add_argument("--department", help="the source's department (default: the kind's; a re-load keeps it)")
    i.add_argument("--owner", help="the team or person who owns the source (default: its department)")
    i.set_defaults(func=cmd_ingest)

    j = sub.add_parser("journeys", help="print the directly-follows graph of customer journeys")
    j.add_argument("--json", action="store_true", help="print JSON: source, target, count, customers, median_seconds")
    j.add_argument("--min-share", type=float, default=0.0, help="pool edges below this share of transitions")
    j.add_argument("--top-n", type=int, default=None, help="keep the N most frequent activities, the rest as (other)")
    j.add_argument("--collapse", action="store_true", help="collapse repeated steps (a a b becomes a b)")
    j.add_argument("--by-department", action="store_true", help="group activities by department")
    j.add_argument("--rename", action="append", metavar="'OLD => NEW'", help="rename an activity (repeatable)")
    _period_arguments(j, "all of the loaded data")
    _view_filter_arguments(j)
    j.set_defaults(func=cmd_journeys)

    h = sub.add_parser(
        "hotspots",
        help="friction hotspots with the churn they come with (counts, lift, "
        "Benjamini-Hochberg-adjusted p), under the churn definition in force",
    )
    h.add_argument("--json", action="store_true", help="print JSON (NaN as null)")
    h.add_argument("--repeat-days", type=int, default=7, help="a repeat contact comes within N days (default 7)")
    _period_arguments(h, "all of the loaded data")
    _view_filter_arguments(h)
    h.set_defaults(func=cmd_hotspots)

    k = sub.add_parser("kpis", help="the shared KPIs for a period (default: the 90 days to the latest data)")
    k.add_argument("--json", action="store_true", help="print JSON")
    _period_arguments(k, "the 90 days to the latest data")
    k.add_argument("--repeat-days", type=int, default=7, help="a repeat contact comes within N days (default 7)")
    k.add_argument("--horizon", type=int, default=12, help="predicted CLV horizon in months (default 12)")
    _view_filter_arguments(k)
    k.set_defaults(func=cmd_kpis)

    t = sub.add_parser("train", help="train the churn model, save it as a new version and score customers")
    t.add_argument("--label-column", help="use this column of the customer table as the label (e.g. Churn)")
    t.add_argument("--source", help="the customer source to train on (default: every customer source)")
    t.add_argument("--cutoff", help="validation cutoff YYYY-MM-DD (default: the data's end minus the horizon)")
    t.add_argument("--horizon-days", type=float, default=30, help="churn within N days after a cutoff (default 30)")
    t.add_argument("--json", action="store_true", help="print the metrics as JSON")
    t.add_argument("--if-missing", action="store_true", help="only when no churn model has been trained yet")
    t.set_defaults(func=cmd_train)

    sc = sub.add_parser("score", help="the customers most at risk, from the newest model")
    sc.add_argument("--top", type=int, default=20, help="how many customers (default 20)")
    sc.add_argument("--rescore", action="store_true", help="score today's data again without retraining")
    sc.add_argument("--json", action="store_true", help="print JSON")
    sc.set_defaults(func=cmd_score)

    cd = sub.add_parser("card", help="one customer's card: identifiers, signals, risk, reasons and next action")
    cd.add_argument("identifier", help="customer id, email or phone (any format), or a customer id prefix")
    cd.add_argument("--unmasked", action="store_true", help="show emails and phones in full (default: masked)")
    cd.add_argument("--json", action="store_true", help="print JSON")
    cd.set_defaults(func=cmd_card)

    u = sub.add_parser("users", help="manage who may sign in, and their roles")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="add a user (a password is generated and printed once unless given)")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=["executive", "journey_owner", "ops", "agent", "admin"])
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ua.add_argument("--sso", action="store_true", help="signs in only through single sign-on (name = email)")
    ur = usub.add_parser("set-role", help="change a user's role")
    ur.add_argument("name")
    ur.add_argument("role", choices=["executive", "journey_owner", "ops", "agent", "admin"])
    for action, text in (
        ("disable", "stop a user signing in"),
        ("enable", "let a disabled user sign in again"),
        ("unlock", "clear a lock after failed sign-ins"),
    ):
        usub.add_parser(action, help=text).add_argument("name")
    up = usub.add_parser("reset-password", help="set a new password (generated and printed once unless given)")
    up.add_argument("name")
    up.add_argument("--password-stdin", action="store_true")
    ub = usub.add_parser("bootstrap", help="create the first admin (password printed once) when there is none")
    ub.add_argument(
        "--demo-users",
        action="store_true",
        help="on a fresh install, also create one demo user per role (exec, journeys, ops, agent)",
    )
    ul = usub.add_parser("list", help="list users and roles")
    ul.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_users)

    e = sub.add_parser("erase", help="erase one customer everywhere (right to erasure) and suppress re-loads")
    e.add_argument("--customer", required=True, help="any identifier: customer id, email, phone, account, visitor")
    e.add_argument("--actor", help="who asked, for the audit log (default: cli:<login name>)")
    e.add_argument(
        "--no-compact",
        dest="compact",
        action="store_false",
        help="do not rewrite an embedded DuckDB file afterwards (its old statistics may then keep the ids)",
    )
    e.set_defaults(func=cmd_erase)
    cp = sub.add_parser("compact", help="rewrite an embedded DuckDB store from its live rows (stop the app first)")
    cp.set_defaults(func=cmd_compact)

    c = sub.add_parser("churn", help="the churn definitions the data supports, with their figures; choose one")
    c.add_argument(
        "--json",
        action="store_true",
        help='print {"definition": NAME, "candidates": [{"name", "basis", "source", "customers", ...}]}',
    )
    c.add_argument(
        "--use",
        metavar="NAME",
        help="make NAME the company's churn definition (audited), e.g. "
        "label:crm, subscriptions, events:churn, inactivity:90",
    )
    c.set_defaults(func=cmd_churn)

    m = sub.add_parser("migrate", help="create or upgrade the schema")
    m.set_defaults(func=cmd_migrate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cxdash: interrupted; nothing was committed by the interrupted step", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback, for scheduled jobs
        if args.verbose:
            log.exception("failed")
        message = " ".join(str(exc).split())
        print(f"cxdash {args.command}: {message}", file=sys.stderr)
        return 1
