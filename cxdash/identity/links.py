"""Links between extracts: rows that reach their customer through another extract's key.

Departments export what their system knows. A product-usage log knows the subscription, not the
customer; order lines know the order; ticket comments know the ticket. Such a row carries a
*link key*: a column whose values are record ids of another, already loaded source (a
subscriptions extract's ``subscription_id``). The row's customer is the customer of the linked
row.

Declaring a link
    A mapping names its link columns (file column -> target source and field)::

        {"kind": "events", "columns": {...},
         "links": {"sub_ref": {"source": "subs", "field": "subscription_id"}}}

    or ``python -m cxdash ingest usage.csv --link sub_ref=subs.subscription_id``. The target
    field is one of the target kind's ``link_keys`` (``cxdash.store.kinds``: subscription_id,
    transaction_id, ticket_id, opportunity_id, an event's case_id). ``suggest_links`` proposes
    links from value overlap before anything is loaded, with the match rate of each.

Storing and stitching
    Each stored row keeps its first non-empty link value as ``link_key``
    (``<target source>.<field>:<value>``). After identities are stitched (``cxdash.identity.stitch``),
    ``resolve_links`` gives every row that has *no identifier of its own* the customer of the
    target rows holding that key. A link assigns a row to a customer; it is never an edge of the
    identity graph, so it cannot join two customers. A key whose target rows belong to more than
    one customer (a subscription id reused across accounts) resolves to nobody: the rows stay
    unmatched and the key is listed in ``link_conflicts``. A key no target row holds leaves the
    row unmatched too. Both are counted per load (``link_counts``) and in Data health's stitch
    coverage. Links may chain (comments -> tickets keyed by a link): up to ``MAX_LINK_DEPTH``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store.database import (
    KIND_TABLES,
    Store,
    bulk_insert,
    link_conflicts_table,
    source_links_table,
    sources_table,
)
from cxdash.store.kinds import KINDS, get_kind

__all__ = [
    "MAX_LINK_DEPTH",
    "LinkError",
    "LinkSuggestion",
    "check_link_targets",
    "has_link_value",
    "link_counts",
    "link_keys",
    "match_rates",
    "parse_link",
    "resolve_links",
    "save_source_links",
    "suggest_links",
]

log = logging.getLogger(__name__)

MAX_LINK_DEPTH = 3


class LinkError(ValueError):
    """A declared link cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class LinkSuggestion:
    """How a file column's values meet a loaded source's key.

    ``total``: rows of the sample with a value in ``column``; ``matched``: those whose value is
    a ``field`` of some row of ``source``; ``match_rate`` = matched / total; ``ambiguous``:
    matched rows whose key leads to more than one customer (they would stay unmatched);
    ``no_customer``: matched rows whose target rows have no customer yet.
    """

    column: str
    source: str
    field: str
    match_rate: float
    matched: int
    total: int
    ambiguous: int = 0
    no_customer: int = 0

    def as_link(self) -> dict[str, dict[str, str]]:
        """The mapping entry declaring this link."""
        return {self.column: {"source": self.source, "field": self.field}}


def parse_link(text: str) -> tuple[str, dict[str, str]]:
    """``"COLUMN=SOURCE.FIELD"`` -> ``(COLUMN, {"source": SOURCE, "field": FIELD})``.

    The field is the part after the last dot, so a source name may hold dots."""
    column, eq, target = text.partition("=")
    source, dot, field = target.rpartition(".")
    if not eq or not dot or not column.strip() or not source.strip() or not field.strip():
        raise LinkError(
            f"--link {text!r}: write COLUMN=SOURCE.FIELD, for example subscription_id=subs.subscription_id "
            "(COLUMN is the file's column, SOURCE a loaded source, FIELD its key field)."
        )
    return column.strip(), {"source": source.strip(), "field": field.strip()}


def _values(series: pd.Series) -> pd.Series:
    """Link values as stored: text, trimmed, empty as missing (like any text field)."""
    t = series.astype("string").str.strip()
    return t.mask(t == "")


def link_keys(raw: pd.DataFrame, links: dict[str, dict[str, str]]) -> pd.Series | None:
    """Each row's ``link_key``: ``<source>.<field>:<value>`` of its first declared link column
    with a value (declaration order), missing when none. In: the file's rows with its own column
    names. Out: a string Series on ``raw``'s index, or None without links."""
    if not links:
        return None
    key = pd.Series(pd.NA, index=raw.index, dtype="string")
    for column, target in reversed(list(links.items())):
        values = _values(raw[column])
        key = (f"{target['source']}.{target['field']}:" + values).where(values.notna(), key)
    return key


def has_link_value(raw: pd.DataFrame, links: dict[str, dict[str, str]]) -> pd.Series:
    """True for rows carrying a value in at least one declared link column."""
    present = pd.Series(False, index=raw.index)
    for column in links:
        present |= _values(raw[column]).notna().to_numpy(dtype=bool)
    return present


def _source_kinds(conn: Connection) -> dict[str, str]:
    return {r.name: r.kind for r in conn.execute(sa.select(sources_table.c.name, sources_table.c.kind))}


def check_link_targets(conn: Connection, links: dict[str, dict[str, str]], *, source: str | None = None) -> None:
    """Raise ``LinkError`` unless every link names a loaded source and one of its kind's link keys."""
    kinds = _source_kinds(conn)
    for column, target in links.items():
        ts, tf = target.get("source"), target.get("field")
        if ts not in kinds:
            raise LinkError(
                f"link {column!r} -> {ts}.{tf}: no source named {ts!r} is loaded. Load that extract first, "
                f"or link to one of the loaded sources: {sorted(kinds) or 'none yet'}."
            )
        kind = get_kind(kinds[ts])
        if tf not in kind.link_keys:
            raise LinkError(
                f"link {column!r} -> {ts}.{tf}: {ts} holds {kind.name}, whose linkable key is "
                f"{' or '.join(kind.link_keys) or 'none (link to another source)'}, not {tf!r}."
            )
        if ts == source:
            raise LinkError(f"link {column!r}: a source cannot link to itself ({ts}).")


def save_source_links(conn: Connection, source: str, links: dict[str, dict[str, str]], *, replace: bool) -> None:
    """Remember ``source``'s link columns (all of them replaced with ``replace``, else added or
    updated one by one: rows of earlier loads keep their links)."""
    t = source_links_table
    if replace:
        conn.execute(t.delete().where(t.c.source == source))
    for column, target in links.items():
        conn.execute(t.delete().where(t.c.source == source, t.c.column_name == column))
        conn.execute(
            t.insert().values(
                source=source, column_name=column, target_source=target["source"], target_field=target["field"]
            )
        )


def _targets(conn: Connection) -> list[tuple[str, str, str]]:
    """Distinct ``(target source, its kind, field)`` of every declared link."""
    t, s = source_links_table, sources_table
    rows = conn.execute(
        sa.select(t.c.target_source, s.c.kind, t.c.target_field)
        .join(s, s.c.name == t.c.target_source)
        .distinct()
        .order_by(t.c.target_source, t.c.target_field)
    )
    return [(r[0], r[1], r[2]) for r in rows if r[2] in KINDS[r[1]].link_keys]


def _resolution(targets: list[tuple[str, str, str]]) -> sa.Subquery:
    """``link_key, customers, cx_key``: per key of every link target, how many customers its
    rows belong to and (for one) which."""
    parts = []
    for ts, kind, tf in targets:
        t = KIND_TABLES[kind]
        parts.append(
            sa.select((sa.literal(f"{ts}.{tf}:", sa.String) + t.c[tf]).label("link_key"), t.c.cx_key).where(
                t.c.source == ts, t.c[tf].is_not(None), t.c.cx_key.is_not(None)
            )
        )
    u = sa.union_all(*parts).subquery("link_targets")
    return (
        sa.select(
            u.c.link_key,
            sa.func.count(sa.distinct(u.c.cx_key)).label("customers"),
            sa.func.min(u.c.cx_key).label("cx_key"),
        )
        .group_by(u.c.link_key)
        .subquery("link_resolution")
    )


def resolve_links(conn: Connection) -> dict:
    """Give rows whose only identifier is a link key the customer of the linked rows.

    Runs inside the caller's transaction after every row's own ``cx_key`` is written
    (``cxdash.identity.stitch.rebuild_identity_map``). Rewrites ``link_conflicts``; touches only rows
    whose customer changes. Out: ``{"link_keys": resolved keys, "conflicts": keys leading to
    several customers}``.
    """
    conn.execute(link_conflicts_table.delete())
    targets = _targets(conn)
    linked = list(KIND_TABLES.values())
    resolved_keys = conflicts = 0
    if targets:
        stage = sa.Table(
            "link_resolved",
            sa.MetaData(),
            sa.Column("link_key", sa.String),
            sa.Column("customers", sa.BigInteger),
            sa.Column("cx_key", sa.BigInteger),
            prefixes=["TEMPORARY"],
        )
        for _depth in range(MAX_LINK_DEPTH):  # a target row may itself have its customer through a link
            res = _resolution(targets)
            stage.create(conn)
            conn.execute(stage.insert().from_select(["link_key", "customers", "cx_key"], sa.select(res)))
            changed = 0
            for t in linked:
                one = sa.and_(stage.c.link_key == t.c.link_key, stage.c.customers == 1)
                changed += int(
                    conn.execute(
                        t.update()
                        .where(one, t.c.id_key.is_(None), t.c.cx_key.is_distinct_from(stage.c.cx_key))
                        .values(cx_key=stage.c.cx_key)
                    ).rowcount
                    or 0
                )
                unresolved = ~sa.exists(
                    sa.select(sa.literal(1)).where(stage.c.link_key == t.c.link_key, stage.c.customers == 1)
                )
                changed += int(
                    conn.execute(
                        t.update()
                        .where(t.c.id_key.is_(None), t.c.link_key.is_not(None), t.c.cx_key.is_not(None), unresolved)
                        .values(cx_key=None)
                    ).rowcount
                    or 0
                )
            resolved_keys, conflicts = conn.execute(
                sa.select(
                    sa.func.sum(sa.case((stage.c.customers == 1, 1), else_=0)),
                    sa.func.sum(sa.case((stage.c.customers > 1, 1), else_=0)),
                )
            ).one()
            last = _depth == MAX_LINK_DEPTH - 1 or not changed
            if last:
                conn.execute(
                    link_conflicts_table.insert().from_select(
                        ["link_key", "customers"],
                        sa.select(stage.c.link_key, stage.c.customers).where(stage.c.customers > 1),
                    )
                )
            stage.drop(conn)
            if last:
                break
    else:  # no link declared (any more): rows that had a customer through one lose it
        for t in linked:
            conn.execute(
                t.update()
                .where(t.c.id_key.is_(None), t.c.link_key.is_not(None), t.c.cx_key.is_not(None))
                .values(cx_key=None)
            )
    summary = {"link_keys": int(resolved_keys or 0), "conflicts": int(conflicts or 0)}
    if targets:
        log.info("links resolved: %s", summary)
    return summary


def link_counts(conn: Connection, kind: str, source: str, load_id: int | None = None) -> dict[str, int]:
    """Rows of ``source`` (or of one load of it) that rely on a link: ``linked`` (all of them),
    ``matched`` (they reached a customer), ``ambiguous`` (their key leads to several customers)
    and ``unknown`` (no row of the target holds their key, or it has no customer)."""
    t, lc = KIND_TABLES[kind], link_conflicts_table
    where = [t.c.source == source, t.c.id_key.is_(None), t.c.link_key.is_not(None)]
    if load_id is not None:
        where.append(t.c.load_id == load_id)
    conflict = sa.exists(sa.select(sa.literal(1)).where(lc.c.link_key == t.c.link_key))
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((t.c.cx_key.is_not(None), 1), else_=0)),
            sa.func.sum(sa.case((sa.and_(t.c.cx_key.is_(None), conflict), 1), else_=0)),
        ).where(*where)
    ).one()
    linked, matched, ambiguous = (int(x or 0) for x in row)
    return {"linked": linked, "matched": matched, "ambiguous": ambiguous, "unknown": linked - matched - ambiguous}


def _connection(store_or_conn: Store | Connection):
    if isinstance(store_or_conn, Store):
        return store_or_conn.connect()
    from contextlib import nullcontext

    return nullcontext(store_or_conn)


def _overlaps(conn: Connection, frame: pd.DataFrame, pairs: list[tuple[str, str, str, str]]) -> list[LinkSuggestion]:
    """Match figures of each ``(column, source, kind, field)`` of ``pairs`` on ``frame``.

    The distinct values of the columns go once into a temporary table; each target is then one
    join in the database (a key table of millions of rows is never read into memory, and no IN
    list grows with the file). The table is dropped before returning.
    """
    columns = sorted({p[0] for p in pairs})
    values = {c: _values(frame[c]).dropna() for c in columns}
    probe_rows = pd.DataFrame(
        [(c, v) for c in columns for v in values[c].unique().tolist()], columns=["column_name", "value"]
    )
    found: dict[tuple[str, str, str], dict[str, int]] = {}
    if len(probe_rows):
        probe = sa.Table(
            "link_probe",
            sa.MetaData(),
            sa.Column("column_name", sa.String),
            sa.Column("value", sa.String),
            prefixes=["TEMPORARY"],
        )
        probe.create(conn)
        try:
            bulk_insert(conn, probe, probe_rows)
            for ts, kind, tf in sorted({(p[1], p[2], p[3]) for p in pairs}):
                t = KIND_TABLES[kind]
                wanted = [p[0] for p in pairs if (p[1], p[3]) == (ts, tf)]
                q = (
                    sa.select(probe.c.column_name, probe.c.value, sa.func.count(sa.distinct(t.c.cx_key)))
                    .select_from(probe.join(t, sa.and_(t.c[tf] == probe.c.value, t.c.source == ts)))
                    .where(probe.c.column_name.in_(wanted))
                    .group_by(probe.c.column_name, probe.c.value)
                )
                for column, value, customers in conn.execute(q):
                    found.setdefault((column, ts, tf), {})[value] = int(customers)
        finally:
            probe.drop(conn)
    out = []
    for column, ts, _kind, tf in pairs:
        v = values[column]
        customers = pd.to_numeric(v.map(found.get((column, ts, tf), {})), errors="coerce")
        matched, total = int(customers.notna().sum()), len(v)
        out.append(
            LinkSuggestion(
                column,
                ts,
                tf,
                matched / total if total else 0.0,
                matched,
                total,
                ambiguous=int((customers > 1).sum()),
                no_customer=int((customers == 0).sum()),
            )
        )
    return out


def match_rates(
    store_or_conn: Store | Connection, frame: pd.DataFrame, links: dict[str, dict[str, str]]
) -> list[LinkSuggestion]:
    """The match rate of each declared link on ``frame`` (the file's rows, its own column
    names), computed against the loaded target before anything is stored. A link to a source
    that is not loaded, or a column the frame lacks, matches nothing."""
    with _connection(store_or_conn) as conn:
        kinds = _source_kinds(conn)
        usable = [
            (c, t["source"], kinds[t["source"]], t["field"])
            for c, t in links.items()
            if t["source"] in kinds and c in frame.columns and t["field"] in KINDS[kinds[t["source"]]].link_keys
        ]
        rates = {(r.column, r.source, r.field): r for r in _overlaps(conn, frame, usable)} if usable else {}
    out = []
    for column, target in links.items():
        key = (column, target["source"], target["field"])
        total = int(_values(frame[column]).notna().sum()) if column in frame.columns else 0
        out.append(rates.get(key) or LinkSuggestion(column, target["source"], target["field"], 0.0, 0, total))
    return out


def suggest_links(
    store_or_conn: Store | Connection,
    sample: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    exclude_source: str | None = None,
    min_rate: float = 0.5,
    max_rows: int = 20_000,
) -> list[LinkSuggestion]:
    """Candidate links for a file not loaded yet: each column of ``sample`` (or ``columns``)
    whose values are keys of a loaded source (its kind's ``link_keys``), with the share of the
    sample's rows that match (on its first ``max_rows`` rows).

    Out: suggestions with ``match_rate >= min_rate`` (and at least one match), best first
    (rate, then matched rows, then names). ``exclude_source`` leaves out the file's own source.
    """
    sample = sample.head(max_rows)
    columns = list(sample.columns if columns is None else columns)
    with _connection(store_or_conn) as conn:
        targets = [
            (name, kind, f)
            for name, kind in sorted(_source_kinds(conn).items())
            for f in KINDS[kind].link_keys
            if name != exclude_source
        ]
        pairs = [(c, ts, kind, tf) for c in columns for ts, kind, tf in targets]
        found = _overlaps(conn, sample, pairs) if pairs else []
    out = [s for s in found if s.matched and s.match_rate >= min_rate]
    return sorted(out, key=lambda s: (-s.match_rate, -s.matched, s.column, s.source, s.field))
