"""The ``ingest`` command: one extract, with its checks and report.

It imports no scikit-learn (about 0.5 s of start-up): the ``demo`` command, which trains the first
churn model, is in cxdash.cli.demo. The rescore after a load loads it with the model, and only when
the load touched known customers to score again.
"""

from __future__ import annotations

from pathlib import Path

from cxdash.cli.common import cli_actor, store_of
from cxdash.exporting import safe_csv
from cxdash.identity.links import parse_link
from cxdash.ingest.load import IngestError, KindUnclearError, ingest_file
from cxdash.ingest.mapping import load_mapping
from cxdash.jobs import after_load, check_file, rescore_touched

__all__ = ["REPORT_MAX_FAILURES", "cmd_ingest"]


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
    store = store_of(args)
    mapping = load_mapping(args.mapping) if args.mapping else None
    try:
        result = (check_file if args.check else ingest_file)(
            store,
            args.file,
            source=args.source,
            kind=args.kind,
            mapping=mapping,
            mode=args.mode,
            reject_invalid=args.reject_invalid,
            department=args.department,
            owner=args.owner,
            links=_links(args.link),
            actor=cli_actor(),  # the upload audit entry commits with the data (cxdash.ingest.load.ingest_file)
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

    if result.stored and (result.rows_loaded or args.mode == "replace"):
        # the new signals into the at-risk list first (seconds), then the stored views (longer)
        print(_rescore_words(rescore_touched(store, (result.load_id,))))
        after_load(store)
    return 0 if result.rows_loaded or result.rows_duplicate else 1


def _rescore_words(report: dict) -> str:
    """What ``rescore_touched`` did to the at-risk list, in one line."""
    if not report["rescored"]:
        return f"at-risk list not updated: {report['why']}"
    if not report["customers"]:
        return "at-risk list: the load touched no known customer"
    left = f"; {report['removed']:,} left the list (no longer live)" if report["removed"] else ""
    return (
        f"at-risk list: {report['customers']:,} customer(s) this load touched scored again with model "
        f"v{report['model_version']} in {report['seconds']:.1f} s{left}"
    )


def _links(texts: list[str] | None) -> dict | None:
    return dict(parse_link(t) for t in texts) if texts else None
