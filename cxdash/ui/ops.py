"""Upload and data-health support for the ops pages: uploaded files on disk, mapping state,
the checking and loading calls, and cached governance figures."""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from cxdash import audit, summaries
from cxdash.config import DATA_DIR, database_url
from cxdash.exporting import safe_csv
from cxdash.health import governance, mapping_versions, set_latency_target
from cxdash.ingest import IngestError, IngestResult, ingest_file, saved_mapping
from cxdash.kinds import KINDS, get_kind
from cxdash.mapping import Mapping, MappingError, detect_kind, suggest_mapping
from cxdash.readers import ExtractError, FileFormat, as_csv, iter_chunks, read_header, sniff_format
from cxdash.store import identity_hubs_table, quarantine_table, sources_table
from cxdash.ui import data, disclosure
from cxdash.ui.auth import current_user

UPLOAD_DIR = DATA_DIR / "uploads"
NOT_MAPPED = "— not in this file —"

# Session-state keys (page-prefixed).
K_FILE = "upload_file_token"
K_REPORT = "upload_report"
K_RESULT = "upload_result"


@dataclass
class StagedFile:
    """An uploaded file saved to disk (never parsed into memory whole)."""

    path: Path
    display_name: str
    size: int
    fmt: FileFormat
    header: list[str]
    preview: pd.DataFrame


def _safe_name(name: str) -> str:
    """A file name with no directories and only harmless characters (uploads name the file)."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    return base[:120]


def stage_upload(uploaded) -> StagedFile:
    """Copy a Streamlit UploadedFile to a private folder under data/uploads and sniff it."""
    folder = UPLOAD_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    name = _safe_name(uploaded.name)
    path = folder / name
    uploaded.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(uploaded, out, length=4 << 20)
    path = as_csv(path)
    fmt = sniff_format(path)
    header = read_header(path, fmt)
    preview = next(iter_chunks(path, fmt, chunk_rows=200), pd.DataFrame(columns=header)).head(200)
    return StagedFile(path, uploaded.name, path.stat().st_size, fmt, header, preview)


def discard(staged: StagedFile | None) -> None:
    if staged is not None:
        shutil.rmtree(staged.path.parent, ignore_errors=True)


def known_sources() -> pd.DataFrame:
    return data.sources()


def initial_mapping(staged: StagedFile, source: str, kind: str | None) -> Mapping:
    """The saved mapping of the source when it fits the file, else a suggestion."""
    saved = saved_mapping(data.store(), source) if source else None
    if saved is not None and (kind is None or saved.kind == kind) and all(c in staged.header for c in saved.columns.values()):
        return saved
    kind = kind or detect_kind(staged.header, staged.preview)
    return suggest_mapping(kind, staged.header, staged.preview)


def kind_names() -> list[str]:
    return list(KINDS)


def kind_fields(kind: str):
    return get_kind(kind).fields


def check(staged: StagedFile, source: str, mapping: Mapping) -> IngestResult:
    """Validate without storing anything (a dry run of the one ingest path)."""
    return ingest_file(
        data.store(), staged.path, source=source, mapping=mapping, dry_run=True, display_name=staged.display_name
    )


def load(staged: StagedFile, source: str, mapping: Mapping, *, mode: str, accept_invalid: bool, progress,
         department: str | None = None, owner: str | None = None) -> IngestResult:
    """Store the file in one transaction, reporting progress as a share of the file read.
    ``department`` / ``owner``: the source's (None keeps the stored ones, or the kind's for a new source)."""
    size = max(staged.size, 1)
    est_rows = None

    def on_progress(rows_read: int, _total: int) -> None:
        nonlocal est_rows
        if est_rows is None and rows_read:
            sample_bytes = max(len(staged.preview.to_csv(index=False).encode()), 1)
            est_rows = max(int(size / (sample_bytes / max(len(staged.preview), 1))), rows_read)
        share = min(rows_read / est_rows, 0.99) if est_rows else 0.0
        progress(share, f"{rows_read:,} rows read")

    result = ingest_file(
        data.store(),
        staged.path,
        source=source,
        mapping=mapping,
        mode=mode,
        reject_invalid=accept_invalid,
        progress=on_progress,
        display_name=staged.display_name,
        department=department,
        owner=owner,
    )
    if result.stored:
        progress(0.99, "updating the overview and data health summaries")
        summaries.refresh(data.store(), summaries.LANDING)
        # The Shared KPIs and Journeys default views take minutes on a large store: they are
        # prepared in the background (those pages compute live until they are stored).
        summaries.refresh_in_background(data.store(), summaries.VIEWS)
    progress(1.0, "done")
    data.forget_version()
    audit.record(data.store(), current_user(), "upload", {
        "source": source, "file": staged.display_name, "mode": mode, "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected, "rows_suppressed": result.rows_suppressed,
    })
    return result


def link_suggestions(staged: StagedFile, source: str, min_rate: float = 0.5) -> list:
    """Columns of the staged file whose values are keys of a loaded source, with their match
    rates on the preview rows (``cxdash.links.suggest_links``), best first."""
    from cxdash.links import suggest_links

    return suggest_links(data.store(), staged.preview, exclude_source=source, min_rate=min_rate)


def rejected_rows_csv(staged: StagedFile, result: IngestResult) -> bytes:
    """The rejected rows as the file had them, with the reasons, ready to fix and re-upload."""
    failures = result.failures
    if failures.empty:
        return safe_csv(pd.DataFrame())
    reasons = (
        failures.assign(reason=failures["column"].astype(str) + ": expected " + failures["expected"].astype(str))
        .groupby("line")["reason"]
        .agg("; ".join)
    )
    wanted = set(int(x) - 2 for x in reasons.index)
    parts = []
    for chunk in iter_chunks(staged.path, staged.fmt):
        hit = chunk[chunk.index.isin(wanted)]
        if len(hit):
            parts.append(hit)
    rows = pd.concat(parts) if parts else pd.DataFrame(columns=staged.header)
    rows.insert(0, "line", rows.index + 2)
    rows.insert(1, "reasons", rows["line"].map(reasons))
    return safe_csv(rows)


def failures_csv(result: IngestResult) -> bytes:
    return safe_csv(result.failures)


# ---------------------------------------------------------------- data health (cached)
@st.cache_data(show_spinner=False, max_entries=4, ttl=300)
def _health(url: str, version: int) -> dict:
    store = data.store()
    with store.connect() as conn:
        gov = governance(conn, stats=summaries.get(conn, "source_stats", version),
                         latency=summaries.get(conn, "source_latency", version))
        out = {
            "governance": gov,
            "nulls": summaries.get(conn, "null_rates", version),
            "stitch": summaries.get(conn, "stitch_coverage", version),
            "coverage": summaries.get(conn, "coverage", version),
            "hubs": pd.DataFrame(conn.execute(identity_hubs_table.select()).mappings().all(),
                                 columns=["id_key", "degree", "reason"]),
            "quarantine": pd.DataFrame(
                conn.execute(
                    quarantine_table.select().order_by(quarantine_table.c.load_id.desc()).limit(500)
                ).mappings().all(),
                columns=[c.name for c in quarantine_table.columns],
            ),
        }
    with store.app_begin() as app_conn:
        versions = mapping_versions(app_conn)
    out["governance"]["mapping_version"] = out["governance"]["name"].map(versions)
    return out


def health() -> dict:
    return _health(database_url(), data.version())


def save_latency_target(source: str, hours: float | None) -> None:
    with data.store().begin() as conn:
        set_latency_target(conn, source, hours)
    _health.clear()


def save_source_owner(source: str, department: str | None, owner: str | None) -> dict:
    """Change a source's department and owner (audited as the signed-in user)."""
    from cxdash.sources import set_source_owner

    after = set_source_owner(data.store(), source, department=department, owner=owner, actor=current_user())
    _health.clear()
    return after


def source_names() -> list[str]:
    with data.store().connect() as conn:
        return [r[0] for r in conn.execute(sources_table.select().with_only_columns(sources_table.c.name))]


__all__ = [
    "K_FILE", "K_REPORT", "K_RESULT", "NOT_MAPPED", "ExtractError", "IngestError", "MappingError", "StagedFile",
    "check", "discard", "failures_csv", "health", "initial_mapping", "kind_fields", "kind_names", "known_sources",
    "load", "rejected_rows_csv", "save_latency_target", "source_names", "stage_upload",
]


def default_source_name(file_name: str) -> str:
    stem = _safe_name(file_name).split(".")[0].lower()
    return re.sub(r"[^a-z0-9]+", "_", stem).strip("_") or "source"


def make_mapping(kind: str, columns: dict[str, str], links: dict[str, dict[str, str]] | None = None) -> Mapping:
    """``links``: link columns (cxdash.links), e.g. a chosen ``link_suggestions`` entry's ``as_link()``."""
    return Mapping(kind, dict(columns), links=dict(links or {}))


def render_report(result: IngestResult, staged: StagedFile) -> None:
    """The validation report: the verdict first, then every failed rule with examples."""
    if result.rows_rejected == 0:
        st.success(f"All {result.rows_read:,} rows pass. Nothing is stored until you load.")
    else:
        st.warning(
            f"{result.rows_rejected:,} of {result.rows_read:,} rows break a rule "
            f"({result.rows_rejected / result.rows_read:.1%}); {result.rows_valid:,} are valid."
        )
    for note in result.notes:
        st.caption(f"Detected: {note}")
    if result.rows_rejected:
        counts = result.failure_counts()
        st.markdown("**Failed rules** (rows per rule)")
        st.dataframe(counts, hide_index=True, width="stretch")
        st.markdown("**Every failure** (line numbers count the header as line 1)")
        st.dataframe(result.failures.head(2000), hide_index=True, width="stretch")
        c1, c2 = st.columns(2)
        disclosure.download(
            "Download the rejected rows with reasons (CSV)",
            rejected_rows_csv(staged, result),
            f"{default_source_name(staged.display_name)}_rejected.csv",
            key="upload_dl_rejected",
            what="rejected rows of an upload, as in the file",
            rows=result.rows_rejected,
            where=c1,
        )
        disclosure.download(
            "Download the failure report (CSV)",
            failures_csv(result),
            f"{default_source_name(staged.display_name)}_failures.csv",
            key="upload_dl_failures",
            what="failure report of an upload",
            rows=len(result.failures),
            where=c2,
        )
