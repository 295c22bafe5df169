"""The one ingest path: file -> mapping -> validation -> one transaction in the store.

The upload page, the CLI and the demo loader all call ``ingest_file``. A load is a single
transaction: rows are written chunk by chunk into the source's table under a new load id, then
de-duplicated against the source's earlier rows; the quarantine, the load log, the data version
(cxdash.store.version) and the identity map are updated and everything is committed together.
What runs after a load (the summaries refresh) and a check's impact on the headline belong to
cxdash.jobs: this package imports only the store and identity.
Any failure before the commit (a bad row when invalid rows are not accepted, a full disk, a
killed process) leaves the store exactly as it was.
While one chunk is written, a worker thread reads, validates and keys the next one (no database
access there); its failures are raised in the caller's thread, inside the transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.identity.links import (
    check_link_targets,
    link_counts,
    match_rates,
    save_source_links,
)
from cxdash.identity.stitch import rebuild_identity_map, update_identity_map
from cxdash.ingest.chunks import Prepared, canonical, failures_in_file_terms, prepared_chunks, read_ahead, regrouped
from cxdash.ingest.duplicates import DUPLICATE_REFUSAL_SHARE, deduplicate, duplicate_report, repeats_in_load
from cxdash.ingest.formats import Formats, check_formats, detect_formats, refine_dates
from cxdash.ingest.identifiers import identity_notes
from cxdash.ingest.impact import load_impact
from cxdash.ingest.mapping import Mapping
from cxdash.ingest.plan import choose_mapping, offer_links, save_mapping, saved_mapping
from cxdash.ingest.readers import (
    ExtractError,
    FileFormat,
    LineMap,
    as_csv,
    iter_chunks,
    read_columns,
    read_header,
    sniff_format,
)
from cxdash.ingest.result import IngestError, IngestResult, KindUnclearError
from cxdash.ingest.validation import FAILURE_COLUMNS
from cxdash.store import audit, rollups
from cxdash.store.database import (
    IDENTITY_UNSTITCHED,
    KIND_TABLES,
    ROW_GROUP_ROWS,
    Store,
    bulk_insert,
    discard_load,
    discard_unrecorded_loads,
    loads_table,
    quarantine_table,
    request_work,
    source_links_table,
    sources_table,
)
from cxdash.store.kinds import SourceKind, get_kind
from cxdash.store.suppression import secret_salt, suppressed_hashes
from cxdash.store.version import record_change

__all__ = [
    "DUPLICATE_REFUSAL_SHARE",
    "MODES",
    "IngestError",
    "IngestResult",
    "KindUnclearError",
    "choose_mapping",
    "ingest_file",
    "saved_mapping",
]

log = logging.getLogger(__name__)

MODES = ("append", "replace")
MAX_REPORTED_FAILURES = 100_000
# Rows validated and handed to the writer at a time (at least; the reader yields whole blocks of
# about 8 MB, so most files go one block per chunk). The next chunk is prepared in a thread while
# this one is written: small chunks start the writing sooner and leave less to write after the
# last read. 1M-row events extract, read, validate and write: 2.07 s at 250,000 rows, 1.83 s at
# 50,000 (five runs each, alternated).
CHUNK_ROWS = 50_000


def mode_change(mode: str) -> str:
    """The kind of data change (cxdash.store.version) a committed load of ``mode`` is."""
    return "replace" if mode == "replace" else "load"


def _next_load_id(conn: sa.Connection) -> int:
    current = conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()
    return int(current or 0) + 1


def _upload_detail(source: str, file_name: str, mode: str, status: str, result: IngestResult | None = None) -> dict:
    detail = {"source": source, "file": file_name, "mode": mode, "status": status}
    if result is not None:
        detail |= {
            "load_id": result.load_id,
            "rows_loaded": result.rows_loaded,
            "rows_rejected": result.rows_rejected,
            "rows_suppressed": result.rows_suppressed,
        }
    return detail


def ingest_file(store: Store, path: str | Path, *, actor: str | None = None, **options) -> IngestResult:
    """Validate ``path`` and load it as ``source`` in one transaction (see ``_ingest_file`` for the
    options). An Excel workbook is read through a CSV copy of its first sheet in a private
    temporary folder, removed afterwards whatever happens: no copy of the data stays on disk.

    ``actor`` (who loads, for the audit log; None: not audited, as the demo builder) makes a load
    (not a dry run) leave an ``upload`` entry that cannot be missing once the data is committed:
    the entry is written *before* the load with ``status: started``, and its detail is set to
    ``stored`` (with the load id and row counts) *inside the load's transaction* when the analytics
    and app-state tables share a database, so the data and the entry commit together, whatever
    kills the process afterwards (the summaries refresh, a kill -9). Amending a row committed
    before the load, rather than inserting one inside it, keeps the load from choosing an audit
    id in a transaction that may run for minutes: on DuckDB its snapshot would not see entries
    written meanwhile (sign-ins) and the insert would clash with them at the end. When app state
    lives in another database the two cannot commit together, so the entry is completed right
    after the load's commit, before anything else runs; an entry still ``started`` then means the
    process died around that commit, and the loads table says whether it happened. A load that
    fails is marked ``failed`` with the error's type (never its message, which may quote data).
    """
    mode = options.get("mode", "append")
    options["display_name"] = options.get("display_name") or Path(path).name
    entry = None
    if actor is not None and not options.get("dry_run"):
        entry = audit.record(
            store, actor, "upload", _upload_detail(options.get("source", ""), options["display_name"], mode, "started")
        )
        options["audit_entry"] = entry
    try:
        csv_path = as_csv(path)
        try:
            result = _ingest_file(store, csv_path, **options)
        finally:
            if csv_path != Path(path):
                shutil.rmtree(csv_path.parent, ignore_errors=True)
    except Exception as exc:
        if entry is not None:
            failed = _upload_detail(options.get("source", ""), options["display_name"], mode, "failed")
            try:
                with store.app_begin() as conn:
                    audit.amend(conn, entry, failed | {"error": type(exc).__name__})
            except Exception:  # the load's own error is the one to report
                log.exception("could not mark upload audit entry %s as failed", entry)
        raise
    if entry is not None and store.app_engine is not store.engine:
        with store.app_begin() as conn:
            audit.amend(conn, entry, _upload_detail(result.source, result.file_name, mode, "stored", result))
    return result


def _ingest_file(
    store: Store,
    path: str | Path,
    *,
    source: str,
    kind: str | None = None,
    mapping: Mapping | None = None,
    mode: str = "append",
    reject_invalid: bool = False,
    department: str | None = None,
    owner: str | None = None,
    links: dict[str, dict[str, str]] | None = None,
    dry_run: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int, int], None] | None = None,
    rebuild_identities: bool = True,
    display_name: str | None = None,
    audit_entry: int | None = None,
    count_customers: Callable[[Connection], int] | None = None,
    max_failures: int = MAX_REPORTED_FAILURES,
    write_rows: int | None = None,
) -> IngestResult:
    """Validate ``path`` and load it as ``source`` in one transaction.

    ``mapping`` defaults to the mapping saved for ``source``, else the suggestion for ``kind``, else
    (no kind) the clearly right reading of the file; when no reading is clearly right nothing is
    read further and ``KindUnclearError`` names the candidates (see ``choose_mapping``). Rows are
    dropped as duplicates only on the kind's declared key; a file where most rows repeat it is
    refused (``IngestError``; a dry run reports it in ``result.refused``). A dry run given
    ``count_customers`` (the headline's customer count on a connection, which the read paths
    define: ``cxdash.jobs.check_file`` passes it) also computes ``result.impact``
    (``cxdash.ingest.impact.load_impact``).
    With ``reject_invalid`` the valid rows load and invalid ones go to quarantine; without
    it any invalid row loads nothing and raises ``IngestError`` carrying the report.
    ``dry_run`` validates and reports without storing anything.
    ``department`` and ``owner`` (a team or person) are the source's; a new source takes its
    kind's department for both, a re-load without them keeps the stored ones.
    ``links`` adds link columns to the mapping (``{COLUMN: {"source", "field"}}``, cxdash.identity.links).
    ``audit_entry``: the ``upload`` audit entry ``ingest_file`` started, completed in this transaction.
    ``max_failures`` bounds the failures kept in ``result.failures`` (in file order);
    ``result.failures_total`` counts them all and a note says when the list was cut.
    ``chunk_rows``: rows read and validated at a time (``CHUNK_ROWS``; progress is reported per chunk).
    ``write_rows``: rows are written in whole groups of this many (default ``ROW_GROUP_ROWS``,
    DuckDB's row group; tests lower it to write a small file in several groups).
    Raises ``ExtractError`` / ``MappingError`` when the file or mapping cannot be used at all.
    """
    if mode not in MODES:
        raise IngestError(f"mode must be one of {MODES}, not {mode!r}")
    if not source or not source.strip():
        raise IngestError("a source name is required (for example 'crm' or 'helpdesk')")
    plan = _plan(store, Path(path), source, kind, mapping, links, display_name or Path(path).name)
    result = plan.result
    # Identifiers of erased customers (salted hashes): their rows never load again.
    suppressed = suppressed_hashes(store)
    started = datetime.now(UTC).replace(tzinfo=None)
    clock = time.perf_counter()
    with store.begin() as conn, _undone_on_failure(store, conn, sweep=not dry_run) as undo:
        load_id = undo.load_id = _next_load_id(conn)
        chunks = prepared_chunks(
            regrouped(itertools.chain([plan.sample], plan.pieces), chunk_rows),
            kind_def=plan.kind_def,
            mapping=plan.mapping,
            formats=plan.formats,
            unmapped=plan.unmapped,
            suppressed=suppressed,
            salt=secret_salt() if suppressed else None,
            source=source,
            load_id=load_id,
            store_rows=not dry_run,
            reject_invalid=reject_invalid,
            lines=plan.lines,
            collect_ids=dry_run,
        )
        parts = _read_and_write(
            conn, plan, chunks, max_failures, progress, ROW_GROUP_ROWS if write_rows is None else write_rows
        )
        result.timings["read, validate and write"] = round(time.perf_counter() - clock, 3)
        _report(plan, parts)
        if dry_run:
            _check_outcome(conn, plan, parts, count_customers)
            return result
        _refuse_invalid(plan, reject_invalid)
        clock = time.perf_counter()
        _write_bookkeeping(conn, plan, load_id, mode, started, department, owner)
        result.timings["duplicates and bookkeeping"] = round(time.perf_counter() - clock, 3)
        if rebuild_identities:
            undo.stitching = True
            _stitch(conn, plan, load_id, mode)
            undo.stitching = False
        else:  # the next stitch must see these rows: a full rebuild (cxdash.jobs.stitch_identities)
            request_work(conn, IDENTITY_UNSTITCHED)
        result.load_id = load_id
        result.stored = True
        if audit_entry is not None and store.app_engine is store.engine:  # commits with the data (ingest_file)
            audit.amend(conn, audit_entry, _upload_detail(source, plan.name, mode, "stored", result))
        clock = time.perf_counter()
    result.timings["commit"] = round(time.perf_counter() - clock, 3)
    save_mapping(store, source, plan.mapping)
    log.info(result.summary())
    return result


@dataclass
class _Undo:
    load_id: int | None = None
    stitching: bool = False


@contextlib.contextmanager
def _undone_on_failure(store: Store, conn: Connection, *, sweep: bool = True) -> Iterator[_Undo]:
    """On an analytical store without rollback (Spark SQL: each statement commits on its own), undo
    by hand what a failing load wrote: its rows, quarantine, log entry and version row; and, if it
    failed while stitching, rebuild the identity map from the rows that remain. Before the load,
    remove the rows of a load whose process was killed before it was recorded (the next load would
    take its load id). Not covered: a process killed while stitching (after the load was recorded)
    leaves the identity map partly updated until the next full rebuild (a replace load or an
    erasure). Elsewhere the transaction's rollback does all this.
    A dry run (``sweep`` false) stores no rows, so it leaves the removal to the next load."""
    undo = _Undo()
    if store.transactional:
        yield undo
        return
    if sweep and discard_unrecorded_loads(conn):
        log.warning("removed the rows of a load that was stopped before it was recorded")
        request_work(conn, IDENTITY_UNSTITCHED)
    try:
        yield undo
    except BaseException:
        if undo.load_id is not None:
            log.warning("load %s failed on a store without rollback: removing what it wrote", undo.load_id)
            discard_load(conn, undo.load_id)
            if undo.stitching:
                rebuild_identity_map(conn)
        raise


@dataclass
class _Plan:
    """What a load knows before it reads the whole file: the file, its first block, the mapping,
    the formats, and the result being filled in."""

    path: Path
    name: str
    fmt: FileFormat
    header: list[str]
    sample: pd.DataFrame
    pieces: Iterator[pd.DataFrame]
    lines: LineMap
    mapping: Mapping
    kind_def: SourceKind
    formats: Formats
    unmapped: list[str]
    natural: bool
    result: IngestResult


@dataclass
class _Parts:
    """What the write loop collected besides the counts in the result."""

    failures: list[pd.DataFrame] = field(default_factory=list)
    flags: list[pd.DataFrame] = field(default_factory=list)
    flag_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    keys: list[pd.DataFrame] = field(default_factory=list)
    ids: list[pd.DataFrame] = field(default_factory=list)


def _plan(
    store: Store,
    path: Path,
    source: str,
    kind: str | None,
    given: Mapping | None,
    links: dict[str, dict[str, str]] | None,
    name: str,
) -> _Plan:
    """Read the header and the first block, choose the mapping, check it and the source's kind,
    measure declared links, and settle the formats; nothing is stored."""
    fmt: FileFormat = sniff_format(path)
    header = read_header(path, fmt)
    # One pass over the file: its first block (about 8 MB) is the sample that the mapping and
    # the formats are judged on, and then the first rows validated and loaded.
    lines = LineMap()
    pieces = iter_chunks(path, fmt, chunk_rows=2000, lines=lines)
    sample = next(pieces, None)
    if sample is None or sample.empty:
        raise ExtractError(f"{name}: the file has a header but no data rows.")
    mapping, origin, field_sources, guesses = choose_mapping(
        store, source, header, sample, kind=kind, mapping=given, file_name=name
    )
    if links:
        mapping.links = {**mapping.links, **links}  # a copy already: the caller's mapping is not changed
    offer_links(store, mapping, sample, source, name)
    mapping.check(header, file_name=name)
    kind_def = get_kind(mapping.kind)
    # A source holds one kind: say so before reading the whole file.
    with store.connect() as conn:
        existing_kind = conn.execute(sa.select(sources_table.c.kind).where(sources_table.c.name == source)).scalar()
    if existing_kind is not None and existing_kind != mapping.kind:
        raise IngestError(
            f"source {source!r} already holds {existing_kind} data; load {mapping.kind} under another source name"
        )
    link_rates = []
    if mapping.links:
        with store.connect() as conn:
            check_link_targets(conn, mapping.links, source=source)
            link_rates = match_rates(conn, sample, mapping.links)  # before anything is stored
    mapped_columns = set(mapping.columns.values())
    unmapped = [c for c in header if c not in mapped_columns and c in sample.columns]
    formats = _formats(path, fmt, mapping, kind_def, sample, name)
    result = IngestResult(source, mapping.kind, name, fmt.describe(), mapping)
    result.notes = [f"read as {fmt.describe()}", *formats.notes]
    result.mapping_origin, result.field_sources, result.guesses = origin, field_sources, guesses
    natural = bool(kind_def.natural_key) and all(k in mapping.columns for k in kind_def.natural_key)
    if natural:
        result.duplicate_key = " + ".join(f"{k} ({mapping.columns[k]!r})" for k in kind_def.natural_key)
    result.link_rates = link_rates
    result.notes += [
        f"link {r.column} -> {r.source}.{r.field}: {r.matched:,} of the first {r.total:,} rows with a value match "
        f"({r.match_rate:.0%})"
        for r in link_rates
    ]
    return _Plan(path, name, fmt, header, sample, pieces, lines, mapping, kind_def, formats, unmapped, natural, result)


def _formats(
    path: Path, fmt: FileFormat, mapping: Mapping, kind_def: SourceKind, sample: pd.DataFrame, name: str
) -> Formats:
    """The mapping's formats (checked), else those detected on the sample; day-first against
    month-first is settled on every value of the column. Stored back into ``mapping.formats``."""
    if mapping.formats:
        check_formats(kind_def, mapping.formats, name)
        formats = Formats.from_dict(mapping.formats)
    else:
        formats = detect_formats(kind_def, canonical(sample, mapping))
        if formats.ambiguous:
            whole = read_columns(path, fmt, sorted({mapping.columns[f] for f in formats.ambiguous}))
            refine_dates(formats, {f: whole[mapping.columns[f]] for f in formats.ambiguous})
    mapping.formats = formats.to_dict()
    return formats


def _read_and_write(
    conn: Connection,
    plan: _Plan,
    chunks: Iterator[Prepared],
    max_failures: int,
    progress: Callable[[int, int], None] | None,
    write_rows: int,
) -> _Parts:
    """Write each prepared chunk's rows into the kind's table (in ``conn``'s transaction) and add
    up its counts; the next chunk is read, validated and keyed in a worker thread meanwhile (the
    database releases the GIL), and every write stays here. Rows are written in whole groups of
    ``write_rows`` (the rest of a chunk waits for the next one; the last group when the file ends)."""
    result, parts = plan.result, _Parts()
    target = KIND_TABLES[plan.mapping.kind]
    writer = _GroupedWriter(conn, target, write_rows)
    total_size = plan.path.stat().st_size
    failures_kept = 0
    with contextlib.closing(read_ahead(chunks)) as prepared:
        for part in prepared:
            result.rows_read += part.rows_read
            result.rows_rejected += part.rejected
            result.rows_suppressed += part.suppressed
            result.rows_valid += part.valid
            room = max_failures - failures_kept
            if not part.failures.empty and room > 0:  # cut in line order, so "the rest are after line N" holds
                kept = part.failures if room >= len(part.failures) else _first_failures(part.failures, room)
                parts.failures.append(kept)
                failures_kept += len(kept)
            result.failures_total += len(part.failures)
            if part.flags is not None:
                parts.flags.append(part.flags)
            for k, n in part.flag_counts.items():
                parts.flag_counts[k] = parts.flag_counts.get(k, 0) + n
            if part.rows is not None:
                writer.add(part.rows)
            if part.keys is not None:
                parts.keys.append(part.keys)
            if part.ids is not None and len(part.ids):
                parts.ids.append(part.ids)
            if progress:
                progress(result.rows_read, total_size)
    writer.flush()
    return parts


class _GroupedWriter:
    """Appends frames to ``table`` in whole groups of ``group_rows`` rows, in order; ``flush``
    writes what is left. Holds fewer than ``group_rows`` rows between calls."""

    def __init__(self, conn: Connection, table: sa.Table, group_rows: int) -> None:
        if group_rows < 1:
            raise ValueError(f"rows are written in groups of at least 1 row, not {group_rows}")
        self.conn, self.table, self.group_rows = conn, table, group_rows
        self.pending: list[pd.DataFrame] = []
        self.count = 0

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        self.pending.append(rows)
        self.count += len(rows)
        if self.count < self.group_rows:
            return
        joined = self.pending[0] if len(self.pending) == 1 else pd.concat(self.pending)
        whole = self.count - self.count % self.group_rows
        bulk_insert(self.conn, self.table, joined.iloc[:whole])
        rest = joined.iloc[whole:]
        self.pending, self.count = ([rest] if len(rest) else []), len(rest)

    def flush(self) -> None:
        if self.pending:
            bulk_insert(self.conn, self.table, pd.concat(self.pending) if len(self.pending) > 1 else self.pending[0])
        self.pending, self.count = [], 0


def _first_failures(failures: pd.DataFrame, n: int) -> pd.DataFrame:
    return failures.sort_values("row", kind="stable").head(n)


def _report(plan: _Plan, parts: _Parts) -> None:
    """The failures in the file's terms and the notes of a load or a check."""
    result, lines, path, fmt = plan.result, plan.lines, plan.path, plan.fmt
    result.failures = failures_in_file_terms(
        pd.concat(parts.failures, ignore_index=True) if parts.failures else pd.DataFrame(columns=FAILURE_COLUMNS),
        plan.mapping,
        lines,
        (path, fmt, result.rows_read),
    )
    if result.rows_read == 0:
        raise ExtractError(f"{plan.name}: the file has a header but no data rows.")
    if result.failures_total > len(result.failures):
        last = int(result.failures["line"].max())
        result.notes.append(
            f"failures: only the first {len(result.failures):,} of {result.failures_total:,} are listed "
            f"(through line {last:,}); the counts below cover those. The rest are on line {last:,} or later: "
            "fix these and check again."
        )
    if parts.flags:
        flags = pd.concat(parts.flags, ignore_index=True)
        rows = flags["row"].astype("int64").to_numpy()
        flags["row"] = lines.exact(path, fmt, result.rows_read, rows)
        result.notes += identity_notes(flags, parts.flag_counts, plan.mapping.columns)
    if result.rows_suppressed:
        result.notes.append(f"{result.rows_suppressed:,} rows belong to erased customers and are left out")


def _check_outcome(
    conn: Connection, plan: _Plan, parts: _Parts, count_customers: Callable[[Connection], int] | None
) -> None:
    """A check's duplicate report and (given ``count_customers``) the load's impact."""
    result = plan.result
    if plan.natural:
        duplicate_report(result, parts.keys, sum(len(k) for k in parts.keys), plan.header, plan.sample)
    else:
        result.rows_identical_kept = int(pd.concat(parts.keys)["content"].duplicated().sum()) if parts.keys else 0
    if count_customers is not None:
        ids = (
            pd.concat(parts.ids, ignore_index=True)
            if parts.ids
            else pd.DataFrame(columns=["line", "primary_key", "id_key"])
        )
        result.impact = load_impact(conn, plan.mapping.kind, ids, count_customers(conn))


def _refuse_invalid(plan: _Plan, reject_invalid: bool) -> None:
    """A load with no valid row, or with invalid rows not accepted, stores nothing."""
    result, name = plan.result, plan.name
    counts = result.failure_counts().head(3)
    top = "; ".join(f"{r.column}: {r.rows:,} row(s) not {r.expected}" for r in counts.itertuples())
    if result.rows_valid == 0 and not result.rows_suppressed:
        raise IngestError(
            f"{name}: none of the {result.rows_read:,} rows is valid; nothing was stored ({top}).", result
        )
    if result.rows_rejected and not reject_invalid:
        raise IngestError(
            f"{name}: {result.rows_rejected:,} of {result.rows_read:,} rows are invalid, nothing was loaded "
            f"({top}). Fix the file, or accept the valid rows and quarantine the rest "
            "(--reject-invalid / 'Load valid rows').",
            result,
        )


def _write_bookkeeping(
    conn: Connection,
    plan: _Plan,
    load_id: int,
    mode: str,
    started: datetime,
    department: str | None,
    owner: str | None,
) -> None:
    """After the rows are written: duplicates, the quarantine, the load log, the data version,
    the source and its links, all in ``conn``'s transaction."""
    result, mapping, source = plan.result, plan.mapping, plan.result.source
    target = KIND_TABLES[mapping.kind]
    conflicts, repeats = repeats_in_load(
        conn, result, plan.kind_def, target, load_id, plan.natural, plan.header, plan.sample
    )
    if result.refused:
        raise IngestError(result.refused, result)
    if mode == "replace":
        conn.execute(target.delete().where(target.c.source == source, target.c.load_id != load_id))
    result.rows_loaded = deduplicate(
        conn,
        plan.kind_def,
        target,
        natural=plan.natural,
        source=source,
        load_id=load_id,
        against_earlier=mode == "append",
        repeats=repeats,
    )
    result.rows_duplicate = result.rows_valid - result.rows_loaded
    repeats = result.rows_repeated_exact + result.rows_repeated_conflicting
    result.rows_already_loaded = max(result.rows_duplicate - repeats, 0)
    if not result.failures.empty:
        q = result.failures.rename(columns={"line": "row_number", "column": "column_name"})
        q = q.assign(load_id=load_id, source=source, reason=q["expected"].map(lambda e: f"expected {e}"))
        q["value"] = q["value"].map(lambda v: None if v is None else str(v))
        bulk_insert(conn, quarantine_table, q)
    if conflicts is not None and len(conflicts):
        # Not loaded (the first line of the key is), but never silently: kept for review.
        bulk_insert(conn, quarantine_table, conflicts.assign(load_id=load_id, source=source))
    finished = datetime.now(UTC).replace(tzinfo=None)
    conn.execute(
        loads_table.insert().values(
            load_id=load_id,
            source=source,
            kind=mapping.kind,
            mode=mode,
            file_name=plan.name,
            started_at=started,
            finished_at=finished,
            rows_read=result.rows_read,
            rows_loaded=result.rows_loaded,
            rows_rejected=result.rows_rejected,
            rows_duplicate=result.rows_duplicate,
            mapping_json=mapping.to_json(),
        )
    )
    record_change(conn, mode_change(mode), load_id=load_id)  # the data version moves with the commit
    _write_source(conn, plan, department, owner, finished)
    if mapping.links or mode == "replace":
        save_source_links(conn, source, mapping.links, replace=mode == "replace")


def _write_source(conn: Connection, plan: _Plan, department: str | None, owner: str | None, now: datetime) -> None:
    """Register a new source, or update a known one's department and owner when given.
    (The kind was checked before reading too; checked again here, inside the transaction, for a
    concurrent load.)"""
    mapping, source, kind_def = plan.mapping, plan.result.source, plan.kind_def
    existing = conn.execute(
        sa.select(sources_table.c.kind, sources_table.c.department).where(sources_table.c.name == source)
    ).first()
    if existing is None:
        conn.execute(
            sources_table.insert().values(
                name=source,
                kind=mapping.kind,
                department=department or kind_def.department,
                owner=owner or department or kind_def.department,
                created_at=now,
            )
        )
    elif existing.kind != mapping.kind:
        raise IngestError(
            f"source {source!r} already holds {existing.kind} data; load {mapping.kind} under another source name"
        )
    elif department or owner:  # a re-load without them keeps what was set
        given = {k: v for k, v in (("department", department), ("owner", owner)) if v}
        conn.execute(sources_table.update().where(sources_table.c.name == source).values(**given))
        if department and department != existing.department:
            # the source's earlier rows now count under another department: a change of its own
            # (views kept from before, cxdash.jobs.summaries, are not carried over it)
            record_change(conn, "department")


def _is_link_target(conn: Connection, source: str) -> bool:
    t = source_links_table
    return conn.execute(sa.select(t.c.source).where(t.c.target_source == source).limit(1)).first() is not None


def _stitch(conn: Connection, plan: _Plan, load_id: int, mode: str) -> None:
    """Stitch this load's rows into the identity map (an append restitches only the parts of the
    identity graph its identifiers touch; a replace, which removes rows, rebuilds it); count how
    its linked rows were matched."""
    result, mapping = plan.result, plan.mapping
    clock = time.perf_counter()
    if mode == "append":
        kept = update_identity_map(conn, load_id).get("earlier_rows_kept", False)
        if kept and not mapping.links and not _is_link_target(conn, result.source):
            # no earlier row changed, its customer key included: the daily rollups take these rows as
            # they are (a source others link to, or new links, can move earlier rows' keys)
            rollups.note_append(conn, load_id)
    else:
        rebuild_identity_map(conn)
    result.timings["identity stitching"] = round(time.perf_counter() - clock, 3)
    if mapping.links:
        result.links = link_counts(conn, mapping.kind, result.source, load_id)
        if result.links["linked"]:
            result.notes.append(
                f"{result.links['matched']:,} of {result.links['linked']:,} rows keyed only by a link reached "
                f"a customer; {result.links['unknown']:,} have a key the linked source does not hold (or "
                f"holds on rows of no customer) and {result.links['ambiguous']:,} a key shared by several "
                "customers (both left unmatched)"
            )
