"""Which mapping a load uses: the one given, the source's saved one, or a clear guess; and links offered
when a file names no customer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from cxdash.identity.links import (
    suggest_links,
)
from cxdash.ingest.mapping import KindGuess, Mapping, MappingError, clear_guess, rank_kinds
from cxdash.ingest.result import KindUnclearError
from cxdash.store.database import (
    Store,
    mappings_table,
)
from cxdash.store.kinds import get_kind

__all__ = [
    "choose_mapping",
    "offer_links",
    "save_mapping",
    "saved_mapping",
]


def saved_mapping(store: Store, source: str) -> Mapping | None:
    with store.app_begin() as conn:
        row = conn.execute(sa.select(mappings_table.c.mapping_json).where(mappings_table.c.source == source)).first()
    return Mapping.from_dict(json.loads(row[0])) if row else None


def save_mapping(store: Store, source: str, mapping: Mapping) -> None:
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


def offer_links(store: Store, mapping: Mapping, sample: pd.DataFrame, source: str, name: str) -> None:
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
