"""Upload and data-health support for the ops pages: uploaded files on disk, mapping state,
the checking and loading calls, and cached governance figures."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from cxdash.config import DATA_DIR, database_url
from cxdash.exporting import safe_csv
from cxdash.governance import department_name
from cxdash.governance.health import governance, mapping_versions, set_latency_target
from cxdash.governance.sources import known_departments, source_owners
from cxdash.identity.links import LinkError, match_rates, suggest_links
from cxdash.ingest.load import IngestError, IngestResult, ingest_file, saved_mapping
from cxdash.ingest.mapping import KindGuess, Mapping, MappingError, rank_kinds, suggest_source_name
from cxdash.ingest.readers import ExtractError, FileFormat, as_csv, iter_chunks, read_header, sniff_format
from cxdash.jobs import after_load, change_source_owner, check_file, followup_words, rescore_touched, summaries
from cxdash.store.database import identity_hubs_table, quarantine_table, sources_table
from cxdash.store.kinds import IDENTITY_FIELDS, KINDS, get_kind
from cxdash.ui import data, disclosure
from cxdash.ui.auth import current_user
from cxdash.ui.formatting import count, label, plain

UPLOAD_DIR = DATA_DIR / "uploads"
NOT_MAPPED = "— not in this file —"

# Session-state keys (page-prefixed).
K_FILE = "upload_file_token"
K_REPORT = "upload_report"
K_RESULT = "upload_result"  # (uploaded file id, IngestResult) of the file just loaded
K_UPLOADER = "upload_uploader_generation"  # a new uploader (empty) after "Upload another file"


@dataclass
class StagedFile:
    """An uploaded file saved to disk (never parsed into memory whole)."""

    path: Path
    display_name: str
    size: int
    fmt: FileFormat
    header: list[str]
    preview: pd.DataFrame
    sha256: str = ""
    # The kinds this file could be, best first, judged on its first block of rows (as the load does).
    guesses: list[KindGuess] | None = None
    # That first block itself (the rows link suggestions are measured on, as a check measures them).
    sample: pd.DataFrame | None = None


def _safe_name(name: str) -> str:
    """A file name with no directories and only harmless characters (uploads name the file)."""
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    if len(base) <= 120:
        return base
    stem, dot, ext = base.rpartition(".")
    # a long name keeps its extension: the reader is chosen by it
    return f"{stem[:110]}.{ext[:9]}" if dot and stem and len(ext) <= 9 else base[:120]


STALE_UPLOAD_S = 24 * 3600  # a staged file nobody loaded or discarded for a day was abandoned


def sweep_stale_uploads(now: float | None = None) -> int:
    """Remove staged uploads older than ``STALE_UPLOAD_S`` (a closed tab never discards its file;
    a refused one may have been left too): no copy of an extract stays on disk. Returns how many."""
    now = time.time() if now is None else now
    gone = 0
    for folder in UPLOAD_DIR.glob("*") if UPLOAD_DIR.is_dir() else ():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > STALE_UPLOAD_S:
                shutil.rmtree(folder, ignore_errors=True)
                gone += 1
        except FileNotFoundError:  # another session swept it first
            continue
    return gone


def stage_upload(uploaded) -> StagedFile:
    """Copy a Streamlit UploadedFile to a private folder under data/uploads and sniff it (and
    sweep the uploads abandoned there first)."""
    sweep_stale_uploads()
    folder = UPLOAD_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    name = _safe_name(uploaded.name)
    path = folder / name
    uploaded.seek(0)
    digest = hashlib.sha256()
    try:
        with open(path, "wb") as out:
            while block := uploaded.read(4 << 20):
                digest.update(block)
                out.write(block)
        # inside the staged folder, removed with it; each tick redraws a line, which is where
        # Streamlit stops a run whose session has ended (nobody waits for the workbook any more)
        note = st.empty()
        path = as_csv(path, out_dir=folder, tick=lambda n: note.caption(f"Reading the workbook: {n:,} rows so far"))
        note.empty()
        fmt = sniff_format(path)
        header = read_header(path, fmt)
        # The same first block the load judges the mapping on (iter_chunks reads whole blocks).
        sample = next(iter_chunks(path, fmt, chunk_rows=2000), pd.DataFrame(columns=header))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a file that cannot be read is not kept
        raise
    return StagedFile(
        path,
        uploaded.name,
        path.stat().st_size,
        fmt,
        header,
        sample.head(200),
        digest.hexdigest(),
        rank_kinds(header, sample) if len(sample) else [],
        sample,
    )


def discard(staged: StagedFile | None) -> None:
    if staged is not None:
        shutil.rmtree(staged.path.parent, ignore_errors=True)


def known_sources() -> pd.DataFrame:
    return data.sources()


def saved_for(staged: StagedFile, source: str) -> Mapping | None:
    """The mapping saved for ``source`` (the user's earlier choice) when every column it names is in the file."""
    saved = saved_mapping(data.store(), source) if source else None
    if saved is not None and all(c in staged.header for c in saved.columns.values()):
        return saved
    return None


def initial_mapping(staged: StagedFile, source: str, kind: str) -> tuple[Mapping, dict[str, str]]:
    """The mapping to start from for ``kind`` and how each field was found: the source's saved
    mapping when it is of this kind and fits the file, else the guess for ``kind``."""
    saved = saved_for(staged, source)
    if saved is not None and saved.kind == kind:
        return saved, dict.fromkeys(saved.columns, "saved for this source")
    guess = next((g for g in staged.guesses or [] if g.kind == kind), None)
    if guess is None:
        return Mapping(kind, {}), {}
    return Mapping(kind, dict(guess.mapping.columns)), dict(guess.found_by)


def field_label(field) -> str:
    """A kind's field as the page names it: in words (``formatting.label``: "customer id"), `` *`` when
    the field is required."""
    return label(field.name) + (" *" if field.required else "")


def field_help(field) -> str:
    """The help of a field's selectbox (markdown): its description, then the name the saved mapping
    (and the CLI's mapping JSON) stores it under, for ops."""
    stored = f"Stored in the mapping as `{field.name}`."
    return f"{field.description} {stored}" if field.description else stored


def link_target(s) -> str:
    """A link's target in words: ``subscription id of subscriptions`` (the source name as loaded)."""
    return f"{label(s.field)} of {s.source}"


def mapping_table(
    kind: str, chosen: dict[str, str], start: Mapping, found_by: dict[str, str], links: list | None = None
) -> pd.DataFrame:
    """The mapping the page will use, field by field: ``field`` (in words, `` *`` when required),
    ``column``, ``found by`` (how the suggestion was made, "chosen by you" where the user changed it,
    "not mapped") and ``stored as`` (the field's name in the saved mapping JSON), then one row per
    chosen link (``links``: ``LinkSuggestion``): ``link to subscription id of subscriptions``, stored as
    ``link -> subscriptions.subscription_id``."""
    rows = []
    for f in get_kind(kind).fields:
        col = chosen.get(f.name)
        if col is None:
            how = "not mapped"
        elif start.columns.get(f.name) == col:
            how = found_by.get(f.name, "suggested")
        else:
            how = "chosen by you"
        rows.append({"field": field_label(f), "column": col or "", "found by": how, "stored as": f.name})
    for s in links or []:
        rows.append(
            {
                "field": f"link to {link_target(s)}",
                "column": s.column,
                "found by": f"ticked: {s.matched:,} of {s.total:,} values match ({s.match_rate:.0%})",
                "stored as": f"link -> {s.source}.{s.field}",
            }
        )
    return pd.DataFrame(rows, columns=["field", "column", "found by", "stored as"])


# The kinds' snake_case field names, longest first, and the file's quoted column names ('user_id' or
# "o'brien_id", as repr quotes them), which are data and stay as written.
_SNAKE_FIELDS = re.compile(
    r"(?<!\w)("
    + "|".join(sorted({re.escape(f.name) for k in KINDS.values() for f in k.fields if "_" in f.name}, key=len)[::-1])
    + r")(?!\w)"
)
_QUOTED = re.compile(r"(?<!\w)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")  # not the one in "file's"


def field_words(text: str) -> str:
    """``text`` (evidence for a kind guess, which quotes the file's column names) with the kinds'
    field names in words: ``column 'user_id' identifies the customer (customer_id)`` -> ``... (customer
    id)``. Quoted column names are left as the file has them."""
    parts = _QUOTED.split(text)  # odd positions are the quoted column names
    return "".join(p if i % 2 else _SNAKE_FIELDS.sub(lambda m: label(m.group(1)), p) for i, p in enumerate(parts))


HOW_SURE = {"clear": "clearly this", "possible": "possible", "unlikely": "unlikely", "no fit": "does not fit"}


def guesses_table(guesses: list[KindGuess]) -> pd.DataFrame:
    """One row per kind, best first: ``rank``, ``kind``, ``how sure``, ``evidence``."""
    return pd.DataFrame(
        {
            "rank": range(1, len(guesses) + 1),
            "kind": [g.kind for g in guesses],
            "how sure": [HOW_SURE[g.confidence] for g in guesses],
            "evidence": ["; ".join(field_words(r) for r in g.reasons) for g in guesses],
        }
    )


def render_guesses(guesses: list[KindGuess]) -> None:
    """The likely kinds in full (each with its evidence, as plain text: it quotes the file's
    column names), the others in a table under an expander."""
    shown = [g for g in guesses if g.fits][:3] or guesses[:1]
    for i, g in enumerate(shown, 1):
        with st.container(border=True):
            st.markdown(f"**{i}. {g.kind}** · {HOW_SURE[g.confidence]}")
            st.text("\n".join(f"• {field_words(r)}" for r in g.reasons))
    rest = [g for g in guesses if g not in shown]
    if rest:
        with st.expander(f"The other {len(rest)} kinds"):
            st.dataframe(guesses_table(rest).drop(columns="rank"), hide_index=True, width="stretch")


def identifier_columns(staged: StagedFile) -> dict[str, str]:
    """Columns of the file that some kind reads as a customer identifier: ``{column: field}``."""
    return {g.mapping.columns[f]: f for g in staged.guesses or [] for f in IDENTITY_FIELDS if f in g.mapping.columns}


def report_key(staged: StagedFile, source: str, mapping: Mapping, mode: str) -> str:
    """A key over everything that decides a check's result: the file's bytes, the source, the
    kind, the mapping (with its link columns) and the mode. A report is only used to load under the same key."""
    payload = json.dumps(
        {
            "file": staged.sha256,
            "source": source,
            "kind": mapping.kind,
            "columns": mapping.columns,
            "links": mapping.links,
            "mode": mode,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def kind_names() -> list[str]:
    return list(KINDS)


def kind_fields(kind: str):
    return get_kind(kind).fields


def check(staged: StagedFile, source: str, mapping: Mapping, *, mode: str = "append") -> IngestResult:
    """Validate without storing anything (a dry run of the one ingest path): failures,
    duplicates on the declared key, refusal, and the load's impact."""
    note = st.empty()  # each redraw is also where Streamlit stops the check of a session that ended
    result = check_file(
        data.store(),
        staged.path,
        source=source,
        mapping=mapping,
        mode=mode,
        display_name=staged.display_name,
        progress=lambda rows, _total: note.caption(f"Checking: {rows:,} rows read"),
    )
    note.empty()
    return result


def load(
    staged: StagedFile,
    source: str,
    mapping: Mapping,
    *,
    mode: str,
    accept_invalid: bool,
    progress,
    department: str | None = None,
    owner: str | None = None,
) -> IngestResult:
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
        actor=current_user(),  # the upload audit entry commits with the data (cxdash.ingest.load.ingest_file)
    )
    if result.stored and result.load_id is not None:
        progress(0.98, "scoring again the customers in this file, for the at-risk list")
        rescore_touched(data.store(), (result.load_id,))
    if result.stored:
        progress(0.99, "updating the overview and data health summaries")
        # The Shared KPIs and Journeys default views take minutes on a large store: they are
        # prepared in the background (those pages compute live until they are stored).
        after_load(data.store(), summaries.LANDING, background=summaries.VIEWS)
    progress(1.0, "done")
    data.forget_version()
    return result


def link_suggestions(staged: StagedFile, source: str, min_rate: float = 0.5) -> list:
    """Columns of the staged file whose values are keys of a loaded source, with their match
    rates on the file's first block of rows (the rows a check measures them on,
    ``cxdash.identity.links.suggest_links``), best first."""
    rows = staged.sample if staged.sample is not None else staged.preview
    return suggest_links(data.store(), rows, exclude_source=source, min_rate=min_rate)


# Other names departments give a linkable key's column (order lines carry an order id that is
# the transactions extract's transaction_id).
_KEY_NAMES = {
    "transaction_id": ("transaction", "order", "invoice", "payment"),
    "ticket_id": ("ticket", "case", "incident", "complaint"),
    "subscription_id": ("subscription", "sub"),
    "opportunity_id": ("opportunity", "opp", "deal"),
    "case_id": ("case", "session"),
}


def link_names_agree(column: str, field: str) -> bool:
    """True when the file column's name says it holds the target key (``subscription_id``,
    ``SubscriptionID``, ``sub_ref``, ``order_id`` for a transaction id). Values alone can match
    by accident: small counts equal numeric ticket ids."""
    words = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", column).lower())
    stems = _KEY_NAMES.get(field, (field.removesuffix("_id"),))
    return any(w in stems for w in words) or re.sub(r"[^a-z]", "", column.lower()) == re.sub(r"[^a-z]", "", field)


def link_choices(staged: StagedFile, source: str, saved: dict[str, dict[str, str]] | None = None) -> list:
    """The links the page offers: every suggestion (``link_suggestions``) and every link of the
    source's saved mapping (measured too, even below the suggestion threshold), as
    ``cxdash.identity.links.LinkSuggestion``, best first, the saved ones that were not suggested last.
    Cached per file, source and data version: the page reruns on every click."""
    cache_key = ("upload_link_choices", staged.sha256, source, data.version(), json.dumps(saved or {}, sort_keys=True))
    cached = st.session_state.get("upload_link_choices")
    if cached is not None and cached[0] == cache_key:
        return cached[1]
    found = link_suggestions(staged, source)
    offered = {(s.column, s.source, s.field) for s in found}
    extra = {c: t for c, t in (saved or {}).items() if (c, t["source"], t["field"]) not in offered}
    if extra:
        rows = staged.sample if staged.sample is not None else staged.preview
        found = [*found, *match_rates(data.store(), rows, extra)]
    # a column whose name says what it holds first (stable: best match rate within each group)
    found = sorted(found, key=lambda x: not link_names_agree(x.column, x.field))
    st.session_state["upload_link_choices"] = (cache_key, found)
    return found


def link_label(s, rows: int | None = None) -> str:
    """A link choice in words: which file column, how many of its values are keys of the target,
    and (given ``rows``, the rows measured) how many rows carry no value and so cannot link."""
    out = (
        f"column {s.column!r}: {s.matched:,} of the {s.total:,} rows with a value hold a {link_target(s)} "
        f"({s.match_rate:.0%})"
    )
    if rows is not None and rows > s.total:
        missing = rows - s.total
        out += f"; {missing:,} row{' has' if missing == 1 else 's have'} no value (they stay without a customer)"
    return out + (
        f"; {s.ambiguous:,} of them a key shared by several customers (left unmatched)" if s.ambiguous else ""
    )


def sample_rows(staged: StagedFile) -> int:
    """How many rows link match rates are measured on (the file's first block)."""
    return len(staged.sample if staged.sample is not None else staged.preview)


def link_rate_lines(rates: list) -> list[str]:
    """A check's ``result.link_rates`` in sentences, one per declared link."""
    out = []
    for r in rates:
        line = (
            f"column {r.column!r} -> {r.source}: {r.matched:,} of the {r.total:,} rows with a value "
            f"(in the first block read) hold a {link_target(r)} ({r.match_rate:.0%})."
        )
        if r.ambiguous:
            line += f" {r.ambiguous:,} of them carry a key shared by several customers: they will stay unmatched."
        if r.no_customer:
            line += f" {r.no_customer:,} match rows of {r.source} that have no customer yet."
        out.append(line)
    return out


def link_outcome_lines(result: IngestResult) -> list[str]:
    """A load's ``result.links`` (rows keyed only by a link) in sentences; empty without links."""
    counts = result.links
    if not counts:
        return []
    targets = ", ".join(f"{t['source']} ({label(t['field'])})" for t in result.mapping.links.values())
    if not counts.get("linked"):
        return [
            f"No stored row relies on the link to {targets}: every row has an identifier of its own or no link value."
        ]
    return [
        f"{counts['linked']:,} rows have no customer identifier of their own and rely on the link to {targets}:",
        f"  {counts['matched']:,} reached a customer;",
        f"  {counts['unknown']:,} carry a key that {targets} does not hold (or whose row there has no customer): "
        "unmatched;",
        f"  {counts['ambiguous']:,} carry a key shared by several customers: unmatched, so that no two customers "
        "are merged.",
    ]


def source_department_owner(source: str, kind: str) -> tuple[str, str | None, bool]:
    """The department and owner to offer for ``source`` at upload: the stored ones when the
    source exists (owner None when none was ever set), else the kind's department and no owner
    (the load then names the department as the owner). Out: ``(department, owner, exists)``."""
    with data.store().connect() as conn:
        owners = source_owners(conn)
    row = owners[owners["name"] == source]
    if len(row):
        dept, owner = row.iloc[0]["department"], row.iloc[0]["owner"]
        return (
            str(dept) if pd.notna(dept) else get_kind(kind).department,
            str(owner) if pd.notna(owner) else None,
            True,
        )
    return get_kind(kind).department, None, False


def rejected_rows_csv(staged: StagedFile, result: IngestResult) -> bytes:
    """The rejected rows as the file had them, with the reasons, ready to fix and re-upload."""
    failures = result.failures
    if failures.empty:
        return safe_csv(pd.DataFrame())
    reasons = (
        failures.assign(reason=failures["column"].astype(str) + ": expected " + failures["expected"].astype(str))
        .groupby("record")["reason"]
        .agg("; ".join)
    )
    line_of = failures.groupby("record")["line"].first()
    wanted = set(int(x) - 1 for x in reasons.index)
    parts = []
    for chunk in iter_chunks(staged.path, staged.fmt):
        hit = chunk[chunk.index.isin(wanted)]
        if len(hit):
            parts.append(hit)
    rows = pd.concat(parts) if parts else pd.DataFrame(columns=staged.header)
    records = pd.Series(rows.index + 1, index=rows.index)
    rows.insert(0, "line", records.map(line_of))
    rows.insert(1, "record", records)
    rows.insert(2, "reasons", records.map(reasons))
    return safe_csv(rows)


def failures_csv(result: IngestResult) -> bytes:
    return safe_csv(result.failures)


# ---------------------------------------------------------------- data health (cached)
@st.cache_data(show_spinner=False, max_entries=4, ttl=300)
def _health(url: str, version: int, churn_name: str | None) -> dict:
    store = data.store()
    with store.connect() as conn:
        gov = governance(
            conn,
            stats=summaries.get(conn, "source_stats", version),
            latency=summaries.get(conn, "source_latency", version),
        )
        out = {
            "governance": gov,
            "nulls": summaries.get(conn, "null_rates", version),
            "stitch": summaries.get(conn, "stitch_coverage", version),
            "coverage": summaries.get(conn, "coverage", version, {"churn": churn_name} if churn_name else None),
            "hubs": pd.DataFrame(
                conn.execute(identity_hubs_table.select()).mappings().all(), columns=["id_key", "degree", "reason"]
            ),
            "quarantine": pd.DataFrame(
                conn.execute(quarantine_table.select().order_by(quarantine_table.c.load_id.desc()).limit(500))
                .mappings()
                .all(),
                columns=[c.name for c in quarantine_table.columns],
            ),
        }
    with store.app_begin() as app_conn:
        versions = mapping_versions(app_conn)
    out["governance"]["mapping_version"] = out["governance"]["name"].map(versions)
    return out


def health() -> dict:
    return _health(database_url(), data.version(), data.churn_name())


def save_latency_target(source: str, hours: float | None) -> None:
    with data.store().begin() as conn:
        set_latency_target(conn, source, hours)
    _health.clear()


@st.cache_data(show_spinner=False, max_entries=4, ttl=300)
def _departments(url: str, version: int) -> list[str]:
    with data.store().connect() as conn:
        return known_departments(conn)


def departments() -> list[str]:
    """The company's known departments, as codes (``cxdash.governance.sources.known_departments``)."""
    return _departments(database_url(), data.version())


def save_source_owner(source: str, department: str | None, owner: str | None) -> dict:
    """Change a source's department and owner (audited as the signed-in user). A new department
    moves the data version: the pages compute live with it at once, and the stored summaries are
    prepared again in the background (as after an upload). Out: ``jobs.change_source_owner``'s."""
    after = change_source_owner(
        data.store(), source, department=department, owner=owner, actor=current_user(), background=True
    )
    _health.clear()
    _departments.clear()  # a new department is known from now on
    if after["moved"]:
        data.forget_version()
    return after


def source_names() -> list[str]:
    with data.store().connect() as conn:
        return [r[0] for r in conn.execute(sources_table.select().with_only_columns(sources_table.c.name))]


__all__ = [
    "HOW_SURE",
    "IDENTITY_FIELDS",
    "K_FILE",
    "K_REPORT",
    "K_RESULT",
    "K_UPLOADER",
    "NOT_MAPPED",
    "ExtractError",
    "IngestError",
    "LinkError",
    "MappingError",
    "StagedFile",
    "check",
    "department_name",
    "departments",
    "discard",
    "failures_csv",
    "field_help",
    "field_label",
    "field_words",
    "guesses_table",
    "health",
    "identifier_columns",
    "initial_mapping",
    "kind_fields",
    "kind_names",
    "known_sources",
    "link_choices",
    "link_label",
    "link_names_agree",
    "link_outcome_lines",
    "link_rate_lines",
    "link_suggestions",
    "link_target",
    "load",
    "make_mapping",
    "mapping_table",
    "rejected_rows_csv",
    "render_guesses",
    "render_loaded",
    "report_key",
    "sample_rows",
    "save_latency_target",
    "saved_for",
    "source_department_owner",
    "source_names",
    "stage_upload",
    "uploader_key",
]


def default_source_name(file_name: str, known: list[str] | tuple[str, ...] = ()) -> str:
    """The source name offered for an uploaded file (editable): see ``suggest_source_name``."""
    return suggest_source_name(file_name, known)


def uploader_key() -> str:
    """The file uploader's key: a new one (so an empty uploader) after "Upload another file"."""
    generation = st.session_state.get(K_UPLOADER, 0)
    return "upload_files" if not generation else f"upload_files_{generation}"


def _upload_another() -> None:
    st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1
    st.session_state.pop(K_RESULT, None)


def render_loaded(done: IngestResult) -> None:
    """What a finished load stored, and the way on to the next file (in place of the Load buttons)."""
    st.success(f"{count(done.rows_loaded, 'row')} loaded into '{plain(done.source)}' ({done.kind}).")
    st.text(done.summary())
    if done.duplicate_lines():
        st.text("\n".join(done.duplicate_lines()))
    department, owner, _ = source_department_owner(done.source, done.kind)
    st.text(
        f"Department: {department_name(department)}; owner: {owner or department_name(department)} "
        "(change them on Data health)."
    )
    if done.links:
        st.markdown("**Rows reached through links**")
        st.text("\n".join(link_outcome_lines(done)))
    listed = followup_words(data.store(), done.load_id) if done.load_id is not None else None
    if listed:
        st.text(listed)
    st.caption("The mapping was saved for this source. Every page now shows the new data.")
    st.button(
        "Upload another file",
        type="primary",
        key="upload_another",
        on_click=_upload_another,
        icon=":material/upload_file:",
    )


def file_slug(file_name: str) -> str:
    """``file_name`` as a safe stem for a downloaded report's file name (``telco_churn``)."""
    stem = _safe_name(file_name).split(".")[0].lower()
    return re.sub(r"[^a-z0-9]+", "_", stem).strip("_") or "source"


def make_mapping(kind: str, columns: dict[str, str], links: dict[str, dict[str, str]] | None = None) -> Mapping:
    """``links``: link columns (cxdash.identity.links), e.g. a chosen ``link_suggestions`` entry's ``as_link()``."""
    return Mapping(kind, dict(columns), links=dict(links or {}))


def render_report(result: IngestResult, staged: StagedFile) -> None:
    """The validation report: the verdict first, then every failed rule with examples."""
    if result.refused:
        st.error("This file will not load as it is:")
        st.text(result.refused)  # names columns and values of the file: never markdown
    if result.rows_rejected == 0:
        st.success(f"All {result.rows_read:,} rows pass. Nothing is stored until you load.")
    else:
        st.warning(
            f"{result.rows_rejected:,} of {result.rows_read:,} rows break a rule "
            f"({result.rows_rejected / result.rows_read:.1%}); {result.rows_valid:,} are valid."
        )
    link_notes = len(result.link_rates)  # said under "Links" below, in full
    st.text("\n".join(f"Detected: {note}" for note in result.notes if not (link_notes and note.startswith("link "))))
    if result.link_rates:
        st.markdown("**Links** (rows that reach their customer through another source's key)")
        st.text("\n".join(link_rate_lines(result.link_rates)))
    st.markdown("**Duplicates**")
    duplicates = result.duplicate_lines() or [f"{result.kind} declare no key: no row is dropped as a duplicate."]
    st.text("\n".join(duplicates))
    if result.impact is not None:
        st.markdown("**What loading it would change**")
        lines = result.impact.lines()
        if result.impact.matches_nobody:  # numbers and our own words only: safe as a warning
            st.warning(lines.pop(0))
        st.text("\n".join(lines))
        if result.link_rates:
            # the impact counts rows by their own identifier: rows keyed only by a link are not in it
            st.caption(
                "These figures count rows that carry a customer identifier of their own. Rows keyed only by a "
                "link are not in them: they can only reach customers already loaded (never new ones); see Links "
                "above for how many match."
            )
    if result.rows_rejected:
        counts = result.failure_counts()
        st.markdown("**Failed rules** (rows per rule)")
        st.dataframe(counts, hide_index=True, width="stretch")
        st.markdown("**Every failure** (line numbers count the header as line 1)")
        st.dataframe(result.failures.head(2000), hide_index=True, width="stretch")
        c1, c2 = st.columns(2)
        disclosure.download(
            "Download the rejected rows with reasons (CSV)",
            lambda: rejected_rows_csv(staged, result),  # read from the file only when downloaded
            f"{file_slug(staged.display_name)}_rejected.csv",
            key="upload_dl_rejected",
            what="rejected rows of an upload, as in the file",
            rows=result.rows_rejected,
            where=c1,
        )
        disclosure.download(
            "Download the failure report (CSV)",
            failures_csv(result),
            f"{file_slug(staged.display_name)}_failures.csv",
            key="upload_dl_failures",
            what="failure report of an upload",
            rows=len(result.failures),
            where=c2,
        )
