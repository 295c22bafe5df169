"""One chunk of a file from text to the rows its table stores, with no database access.

Each chunk is validated (cxdash.ingest.validation), rows of erased customers are dropped, and
the valid rows get their keys and metadata; ``read_ahead`` does that for the next chunk in a
worker thread while the load writes the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cxdash.identity.links import (
    has_link_value,
    link_keys,
)
from cxdash.ingest.formats import Formats
from cxdash.ingest.identifiers import identity_examples, identity_flags, suppressed_rows
from cxdash.ingest.mapping import Mapping
from cxdash.ingest.readers import (
    FileFormat,
    LineMap,
)
from cxdash.ingest.validation import check, typed_frame
from cxdash.store.kinds import IDENTITY_FIELDS, get_kind

__all__ = [
    "Prepared",
    "canonical",
    "failures_in_file_terms",
    "prepared_chunks",
    "read_ahead",
    "regrouped",
]


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
    # "<hash as decimal>#1", formatted by Arrow (numpy's str conversion is ~10x slower). The
    # suffix goes in as a slice past the end (a 64-bit number has at most 20 digits): a byte copy,
    # cheaper than joining each value with a separator (0.045 -> under 0.01 s per million rows).
    keys = pc.binary_replace_slice(pa.array(h).cast(pa.large_string()), start=20, stop=20, replacement="#1")
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


def failures_in_file_terms(
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


def canonical(frame: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    """The file's columns renamed to the kind's fields (one column may feed two fields)."""
    return pd.DataFrame({f: frame[c] for f, c in mapping.columns.items()}, index=frame.index)


def regrouped(pieces: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
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
class Prepared:
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


def prepared_chunks(
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
) -> Iterator[Prepared]:
    """Validate each chunk of the file and build the rows it stores (no database access).

    Rows are stored while no row of the file so far was invalid, or always with
    ``reject_invalid``; past the first invalid row of a strict load only the report grows.
    """
    rejected_so_far = 0
    for chunk in chunks:
        canon = canonical(chunk, mapping)
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
        yield Prepared(
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


def read_ahead(items: Iterator, depth: int = 1) -> Iterator:
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
        except BaseException as exc:  # noqa: BLE001 - not swallowed: handed to the caller's thread and raised there
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
