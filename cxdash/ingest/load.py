"""The one ingest path: file -> mapping -> validation -> one transaction in the store.

The upload page, the CLI and the demo loader all call ``ingest_file``. A load is a single
transaction: rows are written chunk by chunk into the source's table under a new load id, then
de-duplicated against the source's earlier rows; the quarantine, the load log and the identity map
are updated and everything is committed together.
Any failure before the commit (a bad row when invalid rows are not accepted, a full disk, a
killed process) leaves the store exactly as it was.
While one chunk is written, a worker thread reads, validates and keys the next one (no database
access there); its failures are raised in the caller's thread, inside the transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cxdash.governance.erasure import suppressed_hashes, suppressed_rows
from cxdash.governance.privacy import secret_salt
from cxdash.identity.links import (
    check_link_targets,
    has_link_value,
    link_counts,
    link_keys,
    match_rates,
    save_source_links,
    suggest_links,
)
from cxdash.identity.stitch import rebuild_identity_map
from cxdash.ingest.impact import LoadImpact, load_impact
from cxdash.ingest.mapping import KindGuess, Mapping, MappingError, clear_guess, rank_kinds
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
from cxdash.ingest.validation import (
    FAILURE_COLUMNS,
    Formats,
    check,
    check_formats,
    detect_formats,
    identity_examples,
    identity_flags,
    identity_notes,
    refine_dates,
    typed_frame,
)
from cxdash.store import audit
from cxdash.store.database import (
    KIND_TABLES,
    Store,
    bulk_insert,
    kind_columns,
    loads_table,
    mappings_table,
    quarantine_table,
    read_frame,
    sources_table,
)
from cxdash.store.kinds import IDENTITY_FIELDS, get_kind

__all__ = [
    "DUPLICATE_REFUSAL_SHARE",
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
# A file whose rows repeat the kind's key more often than this is refused: it is another kind.
DUPLICATE_REFUSAL_SHARE = 0.5
MAX_LISTED_KEYS = 20


class IngestError(ValueError):
    """The file was not loaded; ``result`` (when set) carries the validation report."""

    def __init__(self, message: str, result: IngestResult | None = None):
        super().__init__(message)
        self.result = result


class KindUnclearError(IngestError):
    """No kind was given, none is saved for the source, and no reading of the file is clearly
    right: ``guesses`` (best first, with reasons) name the candidates; nothing was stored."""

    def __init__(self, message: str, guesses: list[KindGuess]):
        super().__init__(message)
        self.guesses = guesses


@dataclass
class IngestResult:
    source: str
    kind: str
    file_name: str
    file_format: str
    mapping: Mapping
    rows_read: int = 0
    rows_valid: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_suppressed: int = 0  # rows of erased customers, dropped (see cxdash.governance.erasure)
    load_id: int | None = None
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    # every failure found; ``failures`` keeps the first ``max_failures`` of them (a note says so)
    failures_total: int = 0
    notes: list[str] = field(default_factory=list)
    stored: bool = False
    # Where the mapping came from: "given" (--mapping, the page), "saved" (the source's earlier
    # choice) or "guessed" (clearly one kind); per field, how its column was found.
    mapping_origin: str = "given"
    field_sources: dict[str, str] = field(default_factory=dict)
    guesses: list[KindGuess] = field(default_factory=list)
    # Duplicates: only on the kind's declared key (``duplicate_key``, e.g. "ticket_id ('Ticket ID')").
    duplicate_key: str | None = None
    rows_repeated_exact: int = 0  # same key, same values as an earlier line of the file
    rows_repeated_conflicting: int = 0  # same key, different values: the first line is kept
    conflicting_keys: list[str] = field(default_factory=list)
    rows_identical_kept: int = 0  # identical lines of a keyless kind, all kept (numbered #2, #3...)
    rows_already_loaded: int = 0  # rows the source already held from earlier loads
    refused: str | None = None  # why the file would not load (a check reports it, a load raises it)
    impact: LoadImpact | None = None  # computed by a check (dry run)
    # Rows of this load whose customer comes through a link (cxdash.identity.links.link_counts):
    # {"linked", "matched", "ambiguous", "unknown"}; empty without links.
    links: dict[str, int] = field(default_factory=dict)
    # Match rate of each declared link on the file's first rows, computed before loading
    # (cxdash.identity.links.LinkSuggestion); empty without links.
    link_rates: list = field(default_factory=list)
    # Seconds per stage of a load ("read, validate and write", "duplicates and bookkeeping",
    # "identity stitching", "commit"), for the log and the benchmark.
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "loaded" if self.stored else "NOT loaded"
        return (
            f"{self.file_name} -> {self.source} ({self.kind}): {verb}; read {self.rows_read:,}, "
            f"loaded {self.rows_loaded:,}, rejected {self.rows_rejected:,}, duplicates {self.rows_duplicate:,}"
            + (f", erased customers' rows dropped {self.rows_suppressed:,}" if self.rows_suppressed else "")
        )

    def mapping_table(self) -> pd.DataFrame:
        """The mapping used, column by column: ``field``, ``column``, ``found by``; fields the
        kind has but the file does not fill are listed with an empty column."""
        kind = get_kind(self.kind)
        return pd.DataFrame(
            [
                {
                    "field": f.name + (" *" if f.required else ""),
                    "column": self.mapping.columns.get(f.name, ""),
                    "found by": self.field_sources.get(f.name, "") if f.name in self.mapping.columns else "not mapped",
                }
                for f in kind.fields
            ]
        )

    def duplicate_lines(self) -> list[str]:
        """What happened to repeated rows, in sentences (empty when nothing repeated)."""
        out = []
        if self.duplicate_key:
            repeats = self.rows_repeated_exact + self.rows_repeated_conflicting
            if repeats:
                what = (
                    "the file is refused"
                    if self.refused
                    else "the first line of each key is kept; identical repeats are dropped, conflicting ones go to "
                    "the quarantine"
                )
                out.append(
                    f"{repeats:,} rows repeat a {self.duplicate_key} of an earlier line: "
                    f"{self.rows_repeated_exact:,} identical, {self.rows_repeated_conflicting:,} with different "
                    f"values ({what})."
                )
            else:
                out.append(f"No row repeats a {self.duplicate_key}.")
            if self.conflicting_keys:
                out.append(
                    "Keys with conflicting rows: "
                    + ", ".join(self.conflicting_keys)
                    + (" ..." if self.rows_repeated_conflicting > len(self.conflicting_keys) else "")
                )
        elif self.rows_identical_kept:
            out.append(
                f"{self.rows_identical_kept:,} lines repeat an earlier line exactly; {self.kind} declare no key, "
                "so all are kept."
            )
        if self.rows_already_loaded:
            out.append(f"{self.rows_already_loaded:,} rows were already loaded into {self.source} earlier (skipped).")
        return out

    def failure_counts(self) -> pd.DataFrame:
        """Failures per (column, rule): what an ops user reads first."""
        if self.failures.empty:
            return pd.DataFrame(columns=["column", "rule", "expected", "rows"])
        return (
            self.failures.groupby(["column", "rule", "expected"], dropna=False)["line"]
            .nunique()
            .rename("rows")
            .reset_index()
            .sort_values("rows", ascending=False, ignore_index=True)
        )


def saved_mapping(store: Store, source: str) -> Mapping | None:
    with store.app_begin() as conn:
        row = conn.execute(sa.select(mappings_table.c.mapping_json).where(mappings_table.c.source == source)).first()
    return Mapping.from_dict(json.loads(row[0])) if row else None


def _save_mapping(store: Store, source: str, mapping: Mapping) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.app_begin() as conn:
        row = conn.execute(
            sa.select(mappings_table.c.version, mappings_table.c.mapping_json).where(mappings_table.c.source == source)
        ).first()
        if row is None:
            conn.execute(
                mappings_table.insert().values(
                    source=source, kind=mapping.kind, version=1, mapping_json=mapping.to_json(), updated_at=now
                )
            )
        elif row.mapping_json != mapping.to_json():
            conn.execute(
                mappings_table.update()
                .where(mappings_table.c.source == source)
                .values(kind=mapping.kind, version=row.version + 1, mapping_json=mapping.to_json(), updated_at=now)
            )


def _row_keys(kind_name: str, typed: pd.DataFrame, attrs: pd.Series | None) -> pd.Series:
    kind = get_kind(kind_name)
    if kind.natural_key and all(k in typed.columns for k in kind.natural_key):
        parts = [typed[k].astype("string") for k in kind.natural_key]
        key = parts[0]
        for p in parts[1:]:
            key = key + "|" + p
        return key
    # No natural key: the row's content. Identical rows in one file get an occurrence
    # number in SQL, so the same file loaded twice yields the same keys.
    h = _content_hash(typed, attrs)
    # "<hash as decimal>#1", formatted by Arrow (numpy's str conversion is ~10x slower).
    suffix = pa.scalar("#1", pa.large_string())
    keys = pc.binary_join_element_wise(pa.array(h).cast(pa.large_string()), suffix, pa.scalar("", pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(keys), index=typed.index)


def _id_keys(typed: pd.DataFrame) -> pd.Series:
    key = pd.Series(pd.NA, index=typed.index, dtype="string")
    for f in reversed(IDENTITY_FIELDS):  # first present field wins
        if f in typed.columns:
            key = ((f + ":") + typed[f].astype("string")).where(typed[f].notna(), key)
    return key


def _constant(value, n: int, index: pd.Index) -> pd.Series:
    """One value repeated ``n`` times, built in Arrow (a scalar broadcast goes through Python objects)."""
    if isinstance(value, str):
        return pd.Series(pd.arrays.ArrowStringArray(pa.nulls(n, pa.large_string()).fill_null(value)), index=index)
    return pd.Series(np.full(n, value, dtype="int64"), index=index)


def _attrs_json(raw: pd.DataFrame, unmapped: list[str]) -> pd.Series | None:
    if not unmapped:
        return None
    lines = raw[unmapped].to_json(orient="records", lines=True, force_ascii=False)
    values = lines.rstrip("\n").split("\n") if lines else []
    return pd.Series(values, index=raw.index, dtype="string")


def _failures_in_file_terms(
    failures: pd.DataFrame,
    mapping: Mapping,
    lines: LineMap | None = None,
    file: tuple[Path, FileFormat, int] | None = None,
) -> pd.DataFrame:
    """Report failures with the file's own column names, the physical ``line`` the record starts
    on (header is line 1; a quoted value may span lines) and the 1-based data ``record`` number.
    ``file`` (path, format, records read) lets the lines be checked against the file itself."""
    if failures.empty:
        return pd.DataFrame(columns=["line", "record", "column", "field", "rule", "value", "expected"])
    out = failures.copy()
    rows = out["row"].astype("int64").to_numpy()
    if lines is None:
        out["line"] = rows + 2
    elif file is None:
        out["line"] = lines.lines(rows)
    else:
        distinct = np.unique(rows)
        at = dict(zip(distinct.tolist(), lines.exact(*file, distinct).tolist(), strict=True))
        out["line"] = np.array([at[r] for r in rows.tolist()], dtype="int64")
    out["record"] = rows + 1
    out["column"] = out["field"].map(lambda f: mapping.columns.get(f, f))
    out["value"] = out["value"].astype(object).where(out["value"].notna(), None)
    return out[["line", "record", "column", "field", "rule", "value", "expected"]]


def _canonical(frame: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    """The file's columns renamed to the kind's fields (one column may feed two fields)."""
    return pd.DataFrame({f: frame[c] for f, c in mapping.columns.items()}, index=frame.index)


def _regrouped(pieces: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive pieces of a file joined into chunks of at least ``rows`` rows (the last may
    have fewer); the index stays the data-row number."""
    pending: list[pd.DataFrame] = []
    count = 0
    for piece in pieces:
        pending.append(piece)
        count += len(piece)
        if count >= rows:
            yield pending[0] if len(pending) == 1 else pd.concat(pending)
            pending, count = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pd.concat(pending)


@dataclass
class _Prepared:
    """One chunk of the file after validation: its counts, its failures, and the rows to store
    (None when nothing of it is to be stored)."""

    rows_read: int
    rejected: int
    suppressed: int
    valid: int
    failures: pd.DataFrame
    rows: pd.DataFrame | None
    # ``line, key, content`` of the valid rows (kinds with a declared key mapped; else content only)
    keys: pd.DataFrame | None = None
    # ``line, primary_key, id_key`` of the valid rows, for the impact (checks only)
    ids: pd.DataFrame | None = None
    # identifier values worth a note (validation.identity_examples) and how many per (field, flag)
    flags: pd.DataFrame | None = None
    flag_counts: dict[tuple[str, str], int] = field(default_factory=dict)


def _content_hash(typed: pd.DataFrame, attrs: pd.Series | None) -> np.ndarray:
    """A 64-bit hash of every value on each row, mapped (typed) or not (``attrs``)."""
    content = typed if attrs is None else typed.assign(attrs=attrs)
    return pd.util.hash_pandas_object(content, index=False).to_numpy()


def _key_frame(kind_def, typed: pd.DataFrame, content: np.ndarray, natural: bool) -> pd.DataFrame:
    """``line`` (file line), ``key`` (the declared key as text, when ``natural``) and ``content``
    (a hash of every value on the row, mapped or not) of typed rows: what the duplicate report is
    made of."""
    out = pd.DataFrame({"line": (typed.index.to_numpy() + 2).astype("int64"), "content": content})
    if natural:
        parts = [typed[k].astype("string") for k in kind_def.natural_key]
        key = parts[0]
        for part in parts[1:]:
            key = key + "|" + part
        out["key"] = key.to_numpy()
    return out


def _id_frame(kind_def, typed: pd.DataFrame) -> pd.DataFrame:
    """One row per identifier on each typed row: ``line``, ``primary_key``, ``id_key``."""
    primary = _id_keys(typed)
    parts = []
    for f in kind_def.identity_fields:
        if f in typed.columns:
            present = typed[f].notna().to_numpy()
            parts.append(
                pd.DataFrame(
                    {
                        "line": (typed.index.to_numpy()[present] + 2).astype("int64"),
                        "primary_key": primary.to_numpy()[present],
                        "id_key": (f + ":" + typed[f].astype("string")).to_numpy()[present],
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=["line", "primary_key", "id_key"])
    return pd.concat(parts, ignore_index=True)


def _prepared_chunks(
    chunks: Iterator[pd.DataFrame],
    *,
    kind_def,
    mapping: Mapping,
    formats: Formats,
    unmapped: list[str],
    suppressed: set[str],
    salt: bytes | None,
    source: str,
    load_id: int,
    store_rows: bool,
    reject_invalid: bool,
    lines: LineMap | None = None,
    collect_ids: bool = False,
) -> Iterator[_Prepared]:
    """Validate each chunk of the file and build the rows it stores (no database access).

    Rows are stored while no row of the file so far was invalid, or always with
    ``reject_invalid``; past the first invalid row of a strict load only the report grows.
    """
    rejected_so_far = 0
    for chunk in chunks:
        canon = _canonical(chunk, mapping)
        # Every row through the pandera contract; each field is parsed once, and the typed
        # values of the valid rows come from that same parse.
        fails, parsed = check(kind_def, canon, formats)
        if mapping.links and not fails.empty:
            # a row carrying a declared link key has its customer through the link
            linked = chunk.index[has_link_value(chunk, mapping.links).to_numpy()]
            fails = fails[~((fails["rule"] == "customer_identifier") & fails["row"].isin(linked))]
        bad_rows = pd.Index(fails["row"].unique()) if not fails.empty else pd.Index([])
        rejected_so_far += len(bad_rows)
        good = canon.drop(index=bad_rows) if len(bad_rows) else canon
        erased_count = 0
        if suppressed and len(good):
            erased = suppressed_rows(good, suppressed, salt)
            erased_count = int(erased.sum())
            good = good.loc[~erased.to_numpy()]
        rows = keys = ids = None
        if len(good):
            typed = typed_frame(kind_def, parsed, good.index)
            if (
                mapping.kind == "transactions"
                and "amount" not in typed.columns
                and {"quantity", "unit_price"} <= set(typed.columns)
            ):  # before the keys: the amount is part of the row's content
                typed["amount"] = typed["quantity"] * typed["unit_price"]
            raw = chunk if len(good) == len(chunk) else chunk.loc[good.index]
            if store_rows and (reject_invalid or rejected_so_far == 0):
                rows = _stored_rows(kind_def, mapping, typed, _attrs_json(raw, unmapped), source, load_id, lines, raw)
            if collect_ids:
                # A check stores nothing, so its duplicate report is made here: the unmapped
                # columns need not become JSON, rows of this run are only compared with each other.
                # (A load reads its few repeated keys back from the table instead: no cost per row.)
                natural = bool(kind_def.natural_key) and all(k in typed.columns for k in kind_def.natural_key)
                other = raw[unmapped].set_axis([f"attr:{c}" for c in unmapped], axis=1) if unmapped else None
                content = pd.util.hash_pandas_object(
                    typed if other is None else pd.concat([typed, other], axis=1), index=False
                ).to_numpy()
                keys = _key_frame(kind_def, typed, content, natural)
                ids = _id_frame(kind_def, typed)
        flags = identity_flags(canon)
        flag_counts = {k: int(v) for k, v in flags.groupby(["field", "flag"]).size().items()} if len(flags) else {}
        yield _Prepared(
            len(chunk),
            len(bad_rows),
            erased_count,
            len(good),
            fails,
            rows,
            keys,
            ids,
            flags=identity_examples(flags) if len(flags) else None,
            flag_counts=flag_counts,
        )


def _stored_rows(
    kind_def,
    mapping: Mapping,
    typed: pd.DataFrame,
    attrs: pd.Series | None,
    source: str,
    load_id: int,
    lines: LineMap | None = None,
    raw: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The valid rows of a chunk (``typed``, indexed by data-row number, and their unmapped
    columns as JSON) as the kind's table stores them: typed fields and metadata."""
    rows = typed.index
    n, index = len(typed), typed.index
    stored = {
        **{c: typed[c] for c in typed.columns},
        "row_key": _row_keys(mapping.kind, typed, attrs),
        "id_key": _id_keys(typed),
        "source": _constant(source, n, index),
        "load_id": _constant(load_id, n, index),
        # the physical line the record starts on, as the failure report cites it
        "row_number": pd.Series(
            (lines.lines(rows.to_numpy()) if lines is not None else rows.to_numpy() + 2).astype("int64"), index=index
        ),
    }
    if attrs is not None:  # else the column stays NULL
        stored["attrs"] = attrs
    if mapping.links:
        stored["link_key"] = link_keys(raw, mapping.links)  # the valid rows as read: their link columns
    return pd.DataFrame(stored)


def _read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """Yield ``items``, each computed in a worker thread while the caller uses the one before.

    An exception in the worker is raised here, in the caller's thread. Closing this generator
    (``contextlib.closing``) stops the worker after the item it is computing and waits for it,
    so no thread outlives an ingest.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the caller's thread and raised there
            put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    worker = threading.Thread(target=work, name="cxdash-ingest-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = handoff.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def _offer_links(store: Store, mapping: Mapping, sample: pd.DataFrame, source: str, name: str) -> None:
    """A file with no customer identifier and no declared link cannot load; when some column's
    values are keys of a loaded source, say so and how to declare it (nothing is chosen silently)."""
    kind_def = get_kind(mapping.kind)
    if mapping.links or not kind_def.identity_fields or any(f in mapping.columns for f in kind_def.identity_fields):
        return
    found = suggest_links(store, sample, exclude_source=source)
    if found:
        offers = "; ".join(
            f"--link {s.column}={s.source}.{s.field} ({s.matched:,} of {s.total:,} rows match, {s.match_rate:.0%})"
            for s in found[:3]
        )
        raise MappingError(
            f"{name}: no column identifies the customer, but some columns hold keys of loaded sources. "
            f"Declare the right one as a link: {offers}. Or map a customer identifier "
            f"({', '.join(kind_def.identity_fields)})."
        )


def _next_load_id(conn: sa.Connection) -> int:
    current = conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()
    return int(current or 0) + 1


def choose_mapping(
    store: Store,
    source: str,
    header: list[str],
    sample: pd.DataFrame,
    *,
    kind: str | None = None,
    mapping: Mapping | None = None,
    file_name: str = "the file",
) -> tuple[Mapping, str, dict[str, str], list[KindGuess]]:
    """The mapping a load uses, where it came from, how each field was found, and the kind guesses.

    In order: the ``mapping`` given (a copy: the caller's object is never changed); the source's
    saved mapping (the user's earlier choice) when its kind agrees with ``kind``; the suggestion
    for ``kind``; and with no kind at all, the best reading of the file only when
    ``rank_kinds`` calls it clear. Otherwise raises ``KindUnclearError`` naming the candidates.
    Returns ``(mapping, origin, field_sources, guesses)`` with origin ``given | saved | guessed | kind``.
    """
    if mapping is not None:
        if kind and kind != mapping.kind:
            raise MappingError(f"--kind {kind} disagrees with the mapping's kind {mapping.kind}")
        copy = Mapping(
            mapping.kind, dict(mapping.columns), dict(mapping.formats), {c: dict(t) for c, t in mapping.links.items()}
        )
        return copy, "given", dict.fromkeys(copy.columns, "given"), []
    saved = saved_mapping(store, source)
    if saved is not None and (kind is None or saved.kind == kind):
        return saved, "saved", dict.fromkeys(saved.columns, f"saved for source {source!r}"), []
    guesses = rank_kinds(header, sample)
    if kind:
        get_kind(kind)
        chosen = next(g for g in guesses if g.kind == kind)
        return chosen.mapping, "kind", dict(chosen.found_by), guesses
    chosen = clear_guess(guesses)
    if chosen is None:
        raise KindUnclearError(_unclear_message(file_name, guesses), guesses)
    return chosen.mapping, "guessed", dict(chosen.found_by), guesses


def _unclear_message(file_name: str, guesses: list[KindGuess]) -> str:
    fitting = [g for g in guesses if g.fits][:3] or guesses[:1]
    listed = " | ".join(f"{g.kind} ({g.confidence}, score {g.score:.1f}): " + "; ".join(g.reasons[:3]) for g in fitting)
    return (
        f"{file_name}: cannot tell which kind of extract this is, so nothing was stored. Candidates: {listed}. "
        f"Say which with --kind {fitting[0].kind} (or another of: {', '.join(g.kind for g in fitting)}), "
        "or give a mapping with --mapping."
    )


def _duplicate_report(
    result: IngestResult, key_parts: list[pd.DataFrame], total: int, header: list[str], sample: pd.DataFrame
) -> pd.DataFrame:
    """Fill the duplicate counts of ``result`` from ``key_parts`` (frames of ``line, key, content``:
    every row with a repeated declared key, or every row) among ``total`` rows; set
    ``result.refused`` when most rows repeat the key. Returns the conflicting rows as quarantine
    records (``row_number, column_name, rule, value, reason``)."""
    empty = pd.DataFrame(columns=["row_number", "column_name", "rule", "value", "reason"])
    if not key_parts or not total:
        return empty
    keys = pd.concat(key_parts, ignore_index=True).sort_values("line", kind="stable")
    repeated = keys["key"].duplicated()
    exact = keys.duplicated(["key", "content"])
    conflicting = repeated & ~exact
    result.rows_repeated_exact = int(exact.sum())
    result.rows_repeated_conflicting = int(conflicting.sum())
    result.conflicting_keys = [str(k) for k in keys.loc[conflicting, "key"].unique()[:MAX_LISTED_KEYS]]
    n_repeated = int(repeated.sum())
    kind_def = get_kind(result.kind)
    if n_repeated / total > DUPLICATE_REFUSAL_SHARE:
        others = [g for g in rank_kinds(header, sample) if g.kind != result.kind and g.fits]
        likely = (
            f" It reads best as {others[0].kind} ({'; '.join(others[0].reasons[:2])}): load it with --kind "
            f"{others[0].kind}, or choose that kind on the upload page."
            if others
            else " Check which kind of extract it is."
        )
        result.refused = (
            f"{result.file_name}: {n_repeated:,} of {total:,} rows repeat a {result.duplicate_key} of an earlier "
            f"line, so this is probably not a {kind_def.name} extract (one row per {kind_def.name.rstrip('s')}); "
            f"nothing was stored.{likely}"
        )
    if not conflicting.any():
        return empty
    first_line = keys.loc[~repeated].set_index("key")["line"]
    rows = keys.loc[conflicting]
    column = ", ".join(result.mapping.columns[k] for k in kind_def.natural_key)
    return pd.DataFrame(
        {
            "row_number": rows["line"].to_numpy(),
            "column_name": column,
            "rule": "conflicting_duplicate",
            "value": rows["key"].astype(str).to_numpy(),
            "reason": [
                f"same key as line {first_line.get(k)} with different values; line {first_line.get(k)} was loaded"
                for k in rows["key"]
            ],
        }
    )


def _repeats_in_load(
    conn: sa.Connection,
    result: IngestResult,
    kind_def,
    target: sa.Table,
    load_id: int,
    natural: bool,
    header: list[str],
    sample: pd.DataFrame,
) -> pd.DataFrame | None:
    """The duplicate report of a load whose rows are in ``target`` (not yet de-duplicated).

    Keys repeat rarely, so one ``count(distinct)`` settles the common case; otherwise only the
    rows of repeated keys are read back and compared. Returns the conflicting rows as quarantine
    records, or None.
    """
    this_load = sa.and_(target.c.source == result.source, target.c.load_id == load_id)
    total, distinct = conn.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(target.c.row_key))).where(this_load)
    ).one()
    if total == distinct:
        return None
    if not natural:
        result.rows_identical_kept = int(total - distinct)
        return None
    repeated = sa.select(target.c.row_key).where(this_load).group_by(target.c.row_key).having(sa.func.count() > 1)
    values = [target.c[f] for f in kind_def.field_names] + [target.c.attrs]
    frame = read_frame(
        conn,
        sa.select(target.c.row_number.label("line"), target.c.row_key.label("key"), *values).where(
            this_load, target.c.row_key.in_(repeated)
        ),
    )
    keys = pd.DataFrame(
        {
            "line": frame["line"].astype("int64"),
            "key": frame["key"],
            "content": pd.util.hash_pandas_object(frame.drop(columns=["line", "key"]), index=False).to_numpy(),
        }
    )
    return _duplicate_report(result, [keys], int(total), header, sample)


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
    chunk_rows: int = 250_000,
    progress: Callable[[int, int], None] | None = None,
    rebuild_identities: bool = True,
    display_name: str | None = None,
    audit_entry: int | None = None,
    max_failures: int = MAX_REPORTED_FAILURES,
) -> IngestResult:
    """Validate ``path`` and load it as ``source`` in one transaction.

    ``mapping`` defaults to the mapping saved for ``source``, else the suggestion for ``kind``, else
    (no kind) the clearly right reading of the file; when no reading is clearly right nothing is
    read further and ``KindUnclearError`` names the candidates (see ``choose_mapping``). Rows are
    dropped as duplicates only on the kind's declared key; a file where most rows repeat it is
    refused (``IngestError``; a dry run reports it in ``result.refused``). A dry run also
    computes ``result.impact`` (``cxdash.ingest.impact.load_impact``).
    With ``reject_invalid`` the valid rows load and invalid ones go to quarantine; without
    it any invalid row loads nothing and raises ``IngestError`` carrying the report.
    ``dry_run`` validates and reports without storing anything.
    ``department`` and ``owner`` (a team or person) are the source's; a new source takes its
    kind's department for both, a re-load without them keeps the stored ones.
    ``links`` adds link columns to the mapping (``{COLUMN: {"source", "field"}}``, cxdash.identity.links).
    ``audit_entry``: the ``upload`` audit entry ``ingest_file`` started, completed in this transaction.
    ``max_failures`` bounds the failures kept in ``result.failures`` (in file order);
    ``result.failures_total`` counts them all and a note says when the list was cut.
    Raises ``ExtractError`` / ``MappingError`` when the file or mapping cannot be used at all.
    """
    if mode not in MODES:
        raise IngestError(f"mode must be one of {MODES}, not {mode!r}")
    name = display_name or Path(path).name
    if not source or not source.strip():
        raise IngestError("a source name is required (for example 'crm' or 'helpdesk')")
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
        store, source, header, sample, kind=kind, mapping=mapping, file_name=name
    )
    if links:
        mapping.links = {**mapping.links, **links}  # a copy already: the caller's mapping is not changed
    _offer_links(store, mapping, sample, source, name)
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

    canonical_sample = _canonical(sample, mapping)
    if mapping.formats:
        check_formats(kind_def, mapping.formats, name)
        formats = Formats.from_dict(mapping.formats)
    else:
        formats = detect_formats(kind_def, canonical_sample)
        if formats.ambiguous:  # day-first vs month-first: settled on every value of the column
            whole = read_columns(path, fmt, sorted({mapping.columns[f] for f in formats.ambiguous}))
            refine_dates(formats, {f: whole[mapping.columns[f]] for f in formats.ambiguous})
    mapping.formats = formats.to_dict()
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

    target = KIND_TABLES[mapping.kind]
    started = datetime.now(UTC).replace(tzinfo=None)
    failure_parts: list[pd.DataFrame] = []
    failures_kept = 0
    flag_parts: list[pd.DataFrame] = []
    flag_counts: dict[tuple[str, str], int] = {}
    key_parts: list[pd.DataFrame] = []
    id_parts: list[pd.DataFrame] = []
    total_size = path.stat().st_size
    # Identifiers of erased customers (salted hashes): their rows never load again.
    suppressed = suppressed_hashes(store)
    salt = secret_salt() if suppressed else None

    clock = time.perf_counter()
    with store.begin() as conn:
        load_id = _next_load_id(conn)
        chunks = _prepared_chunks(
            _regrouped(itertools.chain([sample], pieces), chunk_rows),
            kind_def=kind_def,
            mapping=mapping,
            formats=formats,
            unmapped=unmapped,
            suppressed=suppressed,
            salt=salt,
            source=source,
            load_id=load_id,
            store_rows=not dry_run,
            reject_invalid=reject_invalid,
            lines=lines,
            collect_ids=dry_run,
        )
        # The next chunk is read, validated and keyed in a worker thread while this one is
        # written (the database releases the GIL); every write stays here, in this transaction.
        with contextlib.closing(_read_ahead(chunks)) as prepared:
            for part in prepared:
                result.rows_read += part.rows_read
                result.rows_rejected += part.rejected
                result.rows_suppressed += part.suppressed
                result.rows_valid += part.valid
                if not part.failures.empty:
                    room = max_failures - failures_kept
                    if room > 0:  # cut in line order, so "the rest are after line N" holds
                        kept = (
                            part.failures
                            if room >= len(part.failures)
                            else (part.failures.sort_values("row", kind="stable").head(room))
                        )
                        failure_parts.append(kept)
                        failures_kept += min(room, len(part.failures))
                    result.failures_total += len(part.failures)
                if part.flags is not None:
                    flag_parts.append(part.flags)
                for k, n in part.flag_counts.items():
                    flag_counts[k] = flag_counts.get(k, 0) + n
                if part.rows is not None:
                    bulk_insert(conn, target, part.rows)
                if part.keys is not None:
                    key_parts.append(part.keys)
                if part.ids is not None and len(part.ids):
                    id_parts.append(part.ids)
                if progress:
                    progress(result.rows_read, total_size)
        result.timings["read, validate and write"] = round(time.perf_counter() - clock, 3)

        result.failures = _failures_in_file_terms(
            pd.concat(failure_parts, ignore_index=True) if failure_parts else pd.DataFrame(columns=FAILURE_COLUMNS),
            mapping,
            lines,
            (path, fmt, result.rows_read),
        )
        if result.rows_read == 0:
            raise ExtractError(f"{name}: the file has a header but no data rows.")
        if result.failures_total > len(result.failures):
            last = int(result.failures["line"].max())
            result.notes.append(
                f"failures: only the first {len(result.failures):,} of {result.failures_total:,} are listed "
                f"(through line {last:,}); the counts below cover those. The rest are on line {last:,} or later: "
                "fix these and check again."
            )
        if flag_parts:
            flags = pd.concat(flag_parts, ignore_index=True)
            rows = flags["row"].astype("int64").to_numpy()
            flags["row"] = lines.exact(path, fmt, result.rows_read, rows)
            result.notes += identity_notes(flags, flag_counts, mapping.columns)
        if result.rows_suppressed:
            result.notes.append(f"{result.rows_suppressed:,} rows belong to erased customers and are left out")
        conflicts = None
        if dry_run:
            if natural:
                _duplicate_report(result, key_parts, sum(len(k) for k in key_parts), header, sample)
            else:
                result.rows_identical_kept = int(pd.concat(key_parts)["content"].duplicated().sum()) if key_parts else 0
            ids = (
                pd.concat(id_parts, ignore_index=True)
                if id_parts
                else pd.DataFrame(columns=["line", "primary_key", "id_key"])
            )
            result.impact = load_impact(conn, mapping.kind, ids)
            return result
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

        clock = time.perf_counter()
        conflicts = _repeats_in_load(conn, result, kind_def, target, load_id, natural, header, sample)
        if result.refused:
            raise IngestError(result.refused, result)
        if mode == "replace":
            conn.execute(target.delete().where(target.c.source == source, target.c.load_id != load_id))
        result.rows_loaded = _deduplicate(
            conn, kind_def, target, natural=natural, source=source, load_id=load_id, against_earlier=mode == "append"
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
                file_name=name,
                started_at=started,
                finished_at=finished,
                rows_read=result.rows_read,
                rows_loaded=result.rows_loaded,
                rows_rejected=result.rows_rejected,
                rows_duplicate=result.rows_duplicate,
                mapping_json=mapping.to_json(),
            )
        )
        existing = conn.execute(sa.select(sources_table.c.kind).where(sources_table.c.name == source)).first()
        # (checked before reading too; checked again here, inside the transaction, for a concurrent load)
        if existing is None:
            conn.execute(
                sources_table.insert().values(
                    name=source,
                    kind=mapping.kind,
                    department=department or kind_def.department,
                    owner=owner or department or kind_def.department,
                    created_at=finished,
                )
            )
        elif existing.kind != mapping.kind:
            raise IngestError(
                f"source {source!r} already holds {existing.kind} data; load {mapping.kind} under another source name"
            )
        elif department or owner:  # a re-load without them keeps what was set
            given = {k: v for k, v in (("department", department), ("owner", owner)) if v}
            conn.execute(sources_table.update().where(sources_table.c.name == source).values(**given))
        if mapping.links or mode == "replace":
            save_source_links(conn, source, mapping.links, replace=mode == "replace")
        result.timings["duplicates and bookkeeping"] = round(time.perf_counter() - clock, 3)
        if rebuild_identities:
            clock = time.perf_counter()
            rebuild_identity_map(conn)
            result.timings["identity stitching"] = round(time.perf_counter() - clock, 3)
            if mapping.links:
                result.links = link_counts(conn, mapping.kind, source, load_id)
                if result.links["linked"]:
                    result.notes.append(
                        f"{result.links['matched']:,} of {result.links['linked']:,} rows keyed only by a link reached "
                        f"a customer; {result.links['unknown']:,} have a key the linked source does not hold (or "
                        f"holds on rows of no customer) and {result.links['ambiguous']:,} a key shared by several "
                        "customers (both left unmatched)"
                    )
        result.load_id = load_id
        result.stored = True
        if audit_entry is not None and store.app_engine is store.engine:  # commits with the data (ingest_file)
            audit.amend(conn, audit_entry, _upload_detail(source, name, mode, "stored", result))
        clock = time.perf_counter()
    result.timings["commit"] = round(time.perf_counter() - clock, 3)
    _save_mapping(store, source, mapping)
    log.info(result.summary())
    return result


def _deduplicate(
    conn: sa.Connection,
    kind_def,
    target: sa.Table,
    *,
    natural: bool,
    source: str,
    load_id: int,
    against_earlier: bool,
) -> int:
    """Make this load's rows unique by key, and (for appends) drop rows the source already holds.

    Keys repeat within a file only rarely (a ticket exported twice, identical invoice lines),
    so the common case costs one ``count(distinct)``. Repeats of a natural key keep their first
    line; identical content lines are all kept, numbered ``#2, #3...`` after the first, so the
    same file loaded again yields the same keys. Returns the rows this load added.
    """
    this_load = sa.and_(target.c.source == source, target.c.load_id == load_id)
    repeats = conn.execute(
        sa.select(sa.func.count() - sa.func.count(sa.distinct(target.c.row_key))).where(this_load)
    ).scalar()
    if repeats:
        stage = sa.Table(f"dedup_{kind_def.name}", sa.MetaData(), *kind_columns(kind_def), prefixes=["TEMPORARY"])
        stage.create(conn)
        cols = [c.name for c in stage.c]
        conn.execute(stage.insert().from_select(cols, sa.select(*[target.c[c] for c in cols]).where(this_load)))
        conn.execute(target.delete().where(this_load))
        occ = sa.func.row_number().over(partition_by=stage.c.row_key, order_by=stage.c.row_number).label("occ")
        ranked = sa.select(*stage.c, occ).subquery("ranked")
        if natural:
            rows = sa.select(*[ranked.c[c] for c in cols]).where(ranked.c.occ == 1)
        else:
            key = sa.case(
                (ranked.c.occ == 1, ranked.c.row_key),
                else_=ranked.c.row_key + "#" + sa.cast(ranked.c.occ, sa.String),
            )
            rows = sa.select(*[key.label("row_key") if c == "row_key" else ranked.c[c] for c in cols])
        conn.execute(target.insert().from_select(cols, rows))
        stage.drop(conn)
    if against_earlier:
        earlier = target.alias("earlier")
        conn.execute(
            target.delete().where(
                this_load,
                sa.exists(
                    sa.select(sa.literal(1)).where(
                        earlier.c.source == source,
                        earlier.c.load_id != load_id,
                        earlier.c.row_key == target.c.row_key,
                    )
                ),
            )
        )
    return int(conn.execute(sa.select(sa.func.count()).select_from(target).where(this_load)).scalar())
