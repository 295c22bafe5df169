"""Governance figures per source: quality, freshness, activation latency, stitch coverage.

Every figure is computed in the database. Definitions (shown on the data-health page):

* **quality**: share of the rows read in the source's last load that passed validation.
* **null rates**: share of stored rows with no value, for the kind's required and identity fields.
* **duplicate keys**: stored rows minus distinct natural keys (tickets, subscriptions...).
* **freshness**: hours from the newest record's own time to now (and from the last load to now).
* **activation latency**: hours from an event to the moment it became usable here (on the
  customer's card: its load finished). Two readings per source:

  - p50 and p95 over the rows that were new in their load: they happened after the source's
    previous load finished (so a full re-export does not count last week's rows again) and in the
    ``LATENCY_WINDOW_DAYS`` days before their load (so a history backfill does not count as
    slowness). Unknown while no row qualifies (one backfill of old records so far);
  - the newest record's: for the newest load that brought rows, from its newest record to the
    load's end. Known for every source with a dated row, so a snapshot loaded weeks after its last
    record (the demo) says so, where the p50 and p95 cannot.
* **stitched share**: share of the source's rows linked to a CRM customer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import churn as churn_defs
from cxdash.metrics.overview import TIME_FIELDS
from cxdash.store.database import (
    KIND_TABLES,
    customer_keys_table,
    identity_hubs_table,
    link_conflicts_table,
    loads_table,
    mappings_table,
    sources_table,
)
from cxdash.store.dialect import among
from cxdash.store.kinds import IDENTITY_FIELDS, KINDS, get_kind
from cxdash.store.rollups import appended_keys, appended_kinds, kinds_holding

__all__ = [
    "LATENCY_WINDOW_DAYS",
    "coverage",
    "coverage_after",
    "governance",
    "mapping_versions",
    "null_rates",
    "null_rates_after",
    "set_latency_target",
    "source_latency",
    "source_latency_after",
    "source_stats",
    "source_stats_after",
    "stitch_coverage",
    "stitch_coverage_after",
]

LATENCY_WINDOW_DAYS = 30


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _hours(expr) -> sa.ColumnElement:
    return sa.extract("epoch", expr) / 3600.0


def governance(
    conn: Connection,
    now: datetime | None = None,
    *,
    stats: pd.DataFrame | None = None,
    latency: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per source.

    Out: ``name, kind, department, owner, rows, last_load_at, loads, quality,
    quality_all_loads, freshness_hours, loaded_hours, latency_p50_hours, latency_p95_hours,
    latency_newest_hours, latency_target_hours, latency_ok, stitched_share, duplicate_keys``
    (hours as floats, None where unknown).

    ``stats`` (``source_stats``) and ``latency`` (``source_latency``) are the scans over every
    row; pass stored ones (cxdash/jobs/summaries.py) to skip them. Freshness is always relative to ``now``.
    """
    now = now or _now()
    src = pd.DataFrame(conn.execute(sa.select(sources_table)).mappings().all())
    if src.empty:
        return pd.DataFrame(
            columns=[
                "name",
                "kind",
                "department",
                "owner",
                "rows",
                "last_load_at",
                "loads",
                "quality",
                "quality_all_loads",
                "freshness_hours",
                "loaded_hours",
                "latency_p50_hours",
                "latency_p95_hours",
                "latency_newest_hours",
                "latency_target_hours",
                "latency_ok",
                "stitched_share",
                "duplicate_keys",
            ]
        )
    lt = loads_table
    last = sa.select(lt.c.source, sa.func.max(lt.c.load_id).label("load_id")).group_by(lt.c.source).subquery()
    last_loads = pd.DataFrame(
        conn.execute(
            sa.select(lt.c.source, lt.c.finished_at, lt.c.rows_read, lt.c.rows_rejected).join(
                last, sa.and_(last.c.source == lt.c.source, last.c.load_id == lt.c.load_id)
            )
        )
        .mappings()
        .all()
    ).set_index("source")
    totals = pd.DataFrame(
        conn.execute(
            sa.select(
                lt.c.source,
                sa.func.sum(lt.c.rows_read).label("read"),
                sa.func.sum(lt.c.rows_rejected).label("rejected"),
                sa.func.count().label("loads"),
            ).group_by(lt.c.source)
        )
        .mappings()
        .all()
    ).set_index("source")

    stats = source_stats(conn) if stats is None else stats
    stats = stats.set_index("name") if len(stats) else pd.DataFrame()
    latency_frame = source_latency(conn) if latency is None else latency
    if "newest" not in latency_frame:  # a summary stored before the newest record's delay was kept
        newest = _newest_delay(conn)
        latency_frame = latency_frame.assign(newest=latency_frame["source"].map(newest))
        missing = sorted(set(newest) - set(latency_frame["source"]))
        extra = pd.DataFrame({"source": missing, "p50": None, "p95": None, "newest": [newest[m] for m in missing]})
        latency_frame = pd.concat([latency_frame, extra], ignore_index=True) if missing else latency_frame
    latency = {r.source: (_known(r.p50), _known(r.p95), _known(r.newest)) for r in latency_frame.itertuples()}
    rows = []
    for s in src.itertuples():
        st = stats.loc[s.name] if s.name in stats.index else None
        ll = last_loads.loc[s.name] if s.name in last_loads.index else None
        tot = totals.loc[s.name] if s.name in totals.index else None
        n_rows = int(st["rows"]) if st is not None and pd.notna(st["rows"]) else 0
        newest = st["newest"] if st is not None else None
        p50, p95, newest_delay = latency.get(s.name, (None, None, None))
        loaded_at = ll["finished_at"] if ll is not None else None
        target = s.latency_target_hours
        rows.append(
            {
                "name": s.name,
                "kind": s.kind,
                "department": s.department,
                "owner": getattr(s, "owner", None),
                "rows": n_rows,
                "last_load_at": ll["finished_at"] if ll is not None else None,
                "loads": int(tot["loads"]) if tot is not None else 0,
                "quality": (1 - ll["rows_rejected"] / ll["rows_read"]) if ll is not None and ll["rows_read"] else None,
                "quality_all_loads": (1 - tot["rejected"] / tot["read"]) if tot is not None and tot["read"] else None,
                "freshness_hours": (now - pd.Timestamp(newest).to_pydatetime()).total_seconds() / 3600
                if newest is not None and pd.notna(newest)
                else None,
                "loaded_hours": (now - pd.Timestamp(loaded_at).to_pydatetime()).total_seconds() / 3600
                if loaded_at is not None and pd.notna(loaded_at)
                else None,
                "latency_p50_hours": p50,
                "latency_p95_hours": p95,
                "latency_newest_hours": newest_delay,
                "latency_target_hours": target,
                "latency_ok": (p95 <= target) if p95 is not None and target is not None and pd.notna(target) else None,
                "stitched_share": (float(st["stitched"]) / n_rows) if n_rows and st is not None else None,
                "duplicate_keys": int(st["duplicate_keys"])
                if st is not None and "duplicate_keys" in st and pd.notna(st["duplicate_keys"])
                else 0,
            }
        )
    return pd.DataFrame(rows)


def source_stats(conn: Connection, sources: list[str] | None = None) -> pd.DataFrame:
    """Per source: ``name, rows, newest`` (latest event time), ``stitched`` (rows of CRM
    customers), ``duplicate_keys`` (repeated natural keys). A scan of every row (of ``sources``
    only, when given)."""
    per_kind = []
    for kind_name in KINDS:
        if sources is not None and not _holds(conn, kind_name, sources):
            continue
        t = KIND_TABLES[kind_name]
        ts = t.c[TIME_FIELDS[kind_name]]
        im = customer_keys_table
        base = (
            sa.select(
                t.c.source.label("name"),
                sa.func.count().label("rows"),
                sa.func.max(ts).label("newest"),
                sa.func.sum(sa.case((im.c.known.is_(True), 1), else_=0)).label("stitched"),
            )
            .select_from(t.outerjoin(im, im.c.cx_key == t.c.cx_key))
            .group_by(t.c.source)
        )
        mine = [] if sources is None else [t.c.source.in_(sources)]
        per_kind.append(pd.DataFrame(conn.execute(base.where(*mine)).mappings().all()))
        kind = get_kind(kind_name)
        if kind.natural_key:
            key = t.c[kind.natural_key[0]]
            dup = sa.select(
                t.c.source.label("name"), (sa.func.count(key) - sa.func.count(sa.distinct(key))).label("duplicate_keys")
            ).group_by(t.c.source)
            per_kind.append(pd.DataFrame(conn.execute(dup.where(*mine)).mappings().all()))
    found = [p for p in per_kind if not p.empty]
    if not found:  # an empty store: no source has a row yet
        return pd.DataFrame(columns=["name", "rows", "newest", "stitched", "duplicate_keys"])
    return pd.concat(found, ignore_index=True).groupby("name", as_index=False).first()


def source_stats_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame | None:
    """``source_stats`` after appends that only added rows (``cxdash.store.rollups.appends_since``:
    no earlier row, customer key or CRM flag changed), from ``before``: each source's rows and
    stitched rows gain the appended ones', its newest time is the later of the two, and its repeated
    natural keys gain the appended keys but those new to the source (one look-up of the appended keys
    among its other rows). None (compute it whole) for a source ``before`` does not hold."""
    after = before.set_index("name")
    for kind_name in kinds_holding(conn, loads):
        t = KIND_TABLES[kind_name]
        ts, im = t.c[TIME_FIELDS[kind_name]], customer_keys_table
        added = sa.select(
            t.c.source.label("name"),
            sa.func.count().label("rows"),
            sa.func.max(ts).label("newest"),
            sa.func.sum(sa.case((im.c.known.is_(True), 1), else_=0)).label("stitched"),
        ).select_from(t.outerjoin(im, im.c.cx_key == t.c.cx_key))
        for row in conn.execute(added.where(t.c.load_id.in_(loads)).group_by(t.c.source)).mappings():
            if row["name"] not in after.index:
                return None
            at = after.loc[row["name"]]
            newest = row["newest"] if pd.isna(at["newest"]) else max(at["newest"], row["newest"] or at["newest"])
            after.loc[row["name"], ["rows", "newest", "stitched"]] = [
                at["rows"] + row["rows"],
                newest,
                at["stitched"] + (row["stitched"] or 0),
            ]
        kind = get_kind(kind_name)
        if not kind.natural_key:
            continue
        key = t.c[kind.natural_key[0]]
        mine = t.c.load_id.in_(loads)
        counted = sa.select(t.c.source, sa.func.count(key)).where(mine).group_by(t.c.source)
        appended = sa.select(t.c.source, key.label("key")).where(mine, key.is_not(None)).distinct().subquery("added")
        other = t.alias("earlier_rows")
        held = sa.exists().where(
            other.c.source == appended.c.source, other.c[key.name] == appended.c.key, other.c.load_id.not_in(loads)
        )
        new = dict(
            conn.execute(sa.select(appended.c.source, sa.func.count()).where(~held).group_by(appended.c.source)).all()
        )
        for source, keys in conn.execute(counted).all():
            # count(key) - count(distinct key) gains the appended keys less those new to the source
            after.loc[source, "duplicate_keys"] += keys - new.get(source, 0)
    return after.reset_index()


def _holds(conn: Connection, kind: str, sources: list[str]) -> bool:
    """Whether any of ``sources`` is registered as of ``kind``."""
    s = sources_table
    return conn.execute(sa.select(s.c.name).where(s.c.kind == kind, s.c.name.in_(sources)).limit(1)).first() is not None


def _known(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def source_latency(conn: Connection, sources: list[str] | None = None) -> pd.DataFrame:
    """Per source (of ``sources`` only, when given): ``source, p50, p95`` hours from event to load
    over the rows new in their load, and ``newest`` (the newest record's hours from event to load);
    see the module's definitions. A source without a qualifying row has None there."""
    spread = _latency(conn, sources)
    newest = _newest_delay(conn, sources)
    rows = [(k, *spread.get(k, (None, None)), newest.get(k)) for k in sorted(set(spread) | set(newest))]
    return pd.DataFrame(rows, columns=["source", "p50", "p95", "newest"])


def source_latency_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame:
    """``source_latency`` after appends that only added rows (``cxdash.store.rollups.appends_since``),
    from ``before``: for each source the loads ``loads`` stored into, the spread again (rows new and
    recent when loaded: a few days of rows, found by their dates), and the newest record's delay of
    the newest of those loads holding a dated row, else the one kept (those loads are newer than
    every load before them); every other source as it was. Saves a pass over every stored row by
    load (at 1M customers 0.3-0.5 s, the web source's 36M events)."""
    touched = sorted(
        conn.execute(sa.select(loads_table.c.source).where(loads_table.c.load_id.in_(loads)).distinct()).scalars()
    )
    spread = _latency(conn, touched)
    newest = _newest_delay(conn, touched, loads)
    rows = {r.source: (_known(r.p50), _known(r.p95), _known(r.newest)) for r in before.itertuples(index=False)}
    for source in touched:
        kept = rows.pop(source, (None, None, None))[2]
        if source in spread or source in newest or kept is not None:
            rows[source] = (*spread.get(source, (None, None)), newest.get(source, kept))
    return pd.DataFrame([(k, *rows[k]) for k in sorted(rows)], columns=["source", "p50", "p95", "newest"])


def _loads_with_previous() -> sa.Subquery:
    """Each load with the end of the same source's previous load (None for its first)."""
    lt = loads_table
    return sa.select(
        lt.c.load_id,
        lt.c.finished_at,
        sa.func.lag(lt.c.finished_at).over(partition_by=lt.c.source, order_by=lt.c.load_id).label("previous"),
    ).subquery()


def _latency(conn: Connection, sources: list[str] | None = None) -> dict[str, tuple[float | None, float | None]]:
    """p50/p95 hours from event to load, over rows that were new and recent when loaded."""
    lp = _loads_with_previous()
    parts = []
    for kind_name in KINDS:
        t = KIND_TABLES[kind_name]
        ts = t.c[TIME_FIELDS[kind_name]]
        lag = _hours(lp.c.finished_at - ts)
        parts.append(
            sa.select(t.c.source.label("source"), lag.label("lag_hours"))
            .select_from(t.join(lp, lp.c.load_id == t.c.load_id))
            .where(
                ts.is_not(None),
                ts <= lp.c.finished_at,
                ts > lp.c.finished_at - timedelta(days=LATENCY_WINDOW_DAYS),
                sa.or_(lp.c.previous.is_(None), ts > lp.c.previous),
                *([] if sources is None else [t.c.source.in_(sources)]),
            )
        )
    u = sa.union_all(*parts).subquery()
    q = sa.select(
        u.c.source,
        sa.func.percentile_cont(0.5).within_group(u.c.lag_hours).label("p50"),
        sa.func.percentile_cont(0.95).within_group(u.c.lag_hours).label("p95"),
    ).group_by(u.c.source)
    return {r.source: (float(r.p50), float(r.p95)) for r in conn.execute(q)}


def _newest_delay(
    conn: Connection, sources: list[str] | None = None, loads: list[int] | None = None
) -> dict[str, float]:
    """Per source, hours from the newest record of its newest load that holds rows to that load's
    end (records dated after the load, planned renewals say, are not news that arrived). ``loads``:
    of those loads' rows alone."""
    lt = loads_table
    parts = []
    for kind_name in kinds_holding(conn, loads):
        t = KIND_TABLES[kind_name]
        ts = t.c[TIME_FIELDS[kind_name]]
        parts.append(
            sa.select(t.c.source.label("source"), t.c.load_id.label("load_id"), sa.func.max(ts).label("newest"))
            .select_from(t.join(lt, lt.c.load_id == t.c.load_id))
            .where(
                ts.is_not(None),
                ts <= lt.c.finished_at,
                *([] if sources is None else [t.c.source.in_(sources)]),
                *([] if loads is None else [t.c.load_id.in_(loads)]),
            )
            .group_by(t.c.source, t.c.load_id)
        )
    if not parts:  # no loads, or none of a registered source
        return {}
    per_load = sa.union_all(*parts).subquery()
    last = (
        sa.select(per_load.c.source, sa.func.max(per_load.c.load_id).label("load_id"))
        .group_by(per_load.c.source)
        .subquery()
    )
    q = sa.select(per_load.c.source, _hours(lt.c.finished_at - per_load.c.newest).label("hours")).select_from(
        per_load.join(last, sa.and_(last.c.source == per_load.c.source, last.c.load_id == per_load.c.load_id)).join(
            lt, lt.c.load_id == per_load.c.load_id
        )
    )
    return {r.source: float(r.hours) for r in conn.execute(q)}


def null_rates(conn: Connection, sources: list[str] | None = None) -> pd.DataFrame:
    """Share of stored rows without a value, per source and key field (of ``sources`` only, when given).

    Out: ``source, field, null_share`` for each kind's required and identity fields, by source and
    the kind's order of fields; the counts they are read from in ``attrs["counts"]``
    (``[kind, source, rows, {field: rows with a value}]``), which ``null_rates_after`` adds to.
    """
    return _null_frame(_null_counts(conn, sources))


def null_rates_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame | None:
    """``null_rates`` after appends that only added rows, from the counts ``before`` keeps: the
    appended rows' counts (read by their loads) are added. None without kept counts."""
    kept = before.attrs.get("counts")
    if kept is None:
        return None
    counts = {(kind, source): [kind, source, n, dict(fields)] for kind, source, n, fields in kept}
    for kind, source, n, fields in _null_counts(conn, loads=loads):
        entry = counts.setdefault((kind, source), [kind, source, 0, dict.fromkeys(fields, 0)])
        entry[2] += n
        entry[3] = {f: entry[3].get(f, 0) + c for f, c in fields.items()}
    return _null_frame(list(counts.values()))


def _null_counts(conn: Connection, sources: list[str] | None = None, loads: list[int] | None = None) -> list[list]:
    """``[kind, source, rows, {field: rows with a value}]`` per kind and source (of ``sources``, of
    the loads ``loads``, when given), for each kind's required and identity fields."""
    out = []
    for kind_name in kinds_holding(conn, loads):
        kind, t = KINDS[kind_name], KIND_TABLES[kind_name]
        fields = list(dict.fromkeys([*kind.required_fields, *kind.identity_fields]))
        q = sa.select(
            t.c.source, sa.func.count().label("n"), *[sa.func.count(t.c[f]).label(f) for f in fields]
        ).group_by(t.c.source)
        if sources is not None:
            q = q.where(t.c.source.in_(sources))
        if loads is not None:
            q = q.where(t.c.load_id.in_(loads))
        for r in conn.execute(q).mappings():
            out.append([kind_name, r["source"], int(r["n"]), {f: int(r[f]) for f in fields}])
    return out


def _null_frame(counts: list[list]) -> pd.DataFrame:
    """``null_rates``' frame from ``_null_counts``' counts (by kind, then source)."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    counts = sorted(counts, key=lambda c: (order[c[0]], c[1]))
    out = []
    for kind_name, source, n, fields in counts:
        required = KINDS[kind_name].required_fields
        for f, with_value in fields.items():
            if f not in required and not with_value:
                continue  # an identifier this source does not carry at all: not a quality gap
            out.append({"source": source, "field": f, "null_share": 1 - with_value / n if n else None})
    frame = pd.DataFrame(out, columns=["source", "field", "null_share"])
    frame = frame.sort_values("source", kind="stable", ignore_index=True)
    frame.attrs["counts"] = counts
    return frame


def stitch_coverage(conn: Connection, loads: list[int] | None = None) -> pd.DataFrame:
    """How each source's rows were linked to customers.

    Out: ``source, matched_via, status, rows`` where ``status`` is ``crm customer``
    (linked to a CRM record), ``unmatched`` (identified, but no CRM record), ``hub`` (its only
    identifier is a shared one), ``anonymous`` (no identifier), and for rows whose only key is a
    link to another extract (cxdash/identity/links.py) ``unmatched link`` (no linked row with a customer
    holds the key) or ``ambiguous link`` (the key leads to several customers);
    ``matched_via`` is the identifier field the row is keyed on (email, phone, account_id...),
    ``link`` for those. ``loads``: the rows those loads stored only.
    """
    im, hubs, conflicts = customer_keys_table, identity_hubs_table, link_conflicts_table
    parts = []
    for kind_name in kinds_holding(conn, loads):
        t = KIND_TABLES[kind_name]
        by_link = sa.and_(t.c.id_key.is_(None), t.c.link_key.is_not(None))
        via = sa.case(
            *[(t.c.id_key.like(f"{f}:%"), f) for f in IDENTITY_FIELDS],
            (by_link, "link"),
            else_="none",
        )
        status = sa.case(
            (sa.and_(t.c.id_key.is_(None), t.c.link_key.is_(None)), "anonymous"),
            (sa.and_(by_link, conflicts.c.link_key.is_not(None)), "ambiguous link"),
            (sa.and_(by_link, t.c.cx_key.is_(None)), "unmatched link"),
            (hubs.c.id_key.is_not(None), "hub"),
            (im.c.known.is_(True), "crm customer"),
            else_="unmatched",
        )
        part = sa.select(t.c.source.label("source"), via.label("matched_via"), status.label("status")).select_from(
            t.outerjoin(im, im.c.cx_key == t.c.cx_key)
            .outerjoin(hubs, hubs.c.id_key == t.c.id_key)
            .outerjoin(conflicts, conflicts.c.link_key == t.c.link_key)
        )
        parts.append(part if loads is None else part.where(t.c.load_id.in_(loads)))
    if not parts:  # no loads, or none of a registered source
        return _coverage_order(pd.DataFrame(columns=["source", "matched_via", "status", "rows"]))
    u = sa.union_all(*parts).subquery()
    q = sa.select(u.c.source, u.c.matched_via, u.c.status, sa.func.count().label("rows")).group_by(
        u.c.source, u.c.matched_via, u.c.status
    )
    return _coverage_order(
        pd.DataFrame(conn.execute(q).fetchall(), columns=["source", "matched_via", "status", "rows"])
    )


def stitch_coverage_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame | None:
    """``stitch_coverage`` after appends that changed no earlier row nor the identity map
    (``cxdash.store.rollups.appends_since``), from ``before``: their rows' counts are added."""
    if list(before.columns) != ["source", "matched_via", "status", "rows"]:
        return None
    both = pd.concat([before, stitch_coverage(conn, loads)], ignore_index=True)
    return _coverage_order(both.groupby(["source", "matched_via", "status"], as_index=False)["rows"].sum())


def _coverage_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``stitch_coverage``'s order: by source, most rows first."""
    frame["rows"] = frame["rows"].astype("int64")
    order = frame.sort_values(["matched_via", "status"]).sort_values(
        ["source", "rows"], ascending=[True, False], kind="stable"
    )
    return order.reset_index(drop=True)


def coverage(conn: Connection, churn: str | None = None) -> pd.DataFrame:
    """Share of CRM customers that have the data each headline KPI and the churn model need; for
    churn, the customers the churn definition ``churn`` (its name; default the suggested one) can judge.

    Out: ``measure, needs, customers_covered, share``.
    """
    definition = churn_defs.in_force(conn, churn_defs.Definition.parse(churn) if churn else None)
    return _coverage_frame(conn, definition, _coverage_counts(conn, definition))


def coverage_after(conn: Connection, before: pd.DataFrame, loads: list[int], churn: str | None = None):
    """``coverage`` after appends that only added rows (``cxdash.store.rollups.appends_since``) and
    hold no CRM record, so the CRM customers are the same: each measure gains the appended customers
    (at most ``rollups.INCREMENT_MAX_KEYS``) who have its data now and had none outside those loads.
    None (compute it whole) for a CRM record, more customers, or another churn definition in force."""
    cases = None if "customers" in appended_kinds(conn, loads) else appended_keys(conn, loads)
    if cases is None:
        return None
    definition = churn_defs.in_force(conn, churn_defs.Definition.parse(churn) if churn else None)

    def now(t: sa.Table) -> tuple:
        return (among(t.c.cx_key, cases),)

    def earlier(t: sa.Table) -> tuple:
        return (*now(t), *((t.c.load_id.not_in(loads),) if "load_id" in t.c else ()))

    # which of them have rows of each kind now, and outside the loads: one read of each table
    im = customer_keys_table
    known = set(conn.execute(sa.select(im.c.cx_key).where(im.c.known.is_(True), among(im.c.cx_key, cases))).scalars())
    with_rows: dict[str, tuple[set, set]] = {}
    for kind in {k for kinds in _MEASURE_KINDS.values() for k in kinds}:
        t = KIND_TABLES[kind]
        outside = sa.func.max(sa.case((t.c.load_id.in_(loads), 0), else_=1))
        found = conn.execute(sa.select(t.c.cx_key, outside).where(*now(t)).group_by(t.c.cx_key)).all()
        with_rows[kind] = ({k for k, _ in found} & known, {k for k, o in found if o} & known)
    gained = {m: len(set().union(*(with_rows[k][0] for k in kinds))) for m, kinds in _MEASURE_KINDS.items()}
    had = {m: len(set().union(*(with_rows[k][1] for k in kinds))) for m, kinds in _MEASURE_KINDS.items()}
    gained[_CHURN], had[_CHURN] = _judged(conn, definition, now), _judged(conn, definition, earlier)
    kept = dict(zip(before["measure"], before["customers_covered"], strict=True))
    if not set(gained) <= set(kept):  # a frame of another shape (an older version's)
        return None
    after = _coverage_frame(conn, definition, {m: int(kept[m]) + gained[m] - had[m] for m in gained})
    return after if after["needs"].tolist() == before["needs"].tolist() else None


# what each measure needs, by the kinds of rows that give it (the churn measure: its definition)
_REVENUE, _CHURN, _ACTIVE, _MODEL = "revenue & lifetime value", "churn & retention", "active customers", "churn model"
_SILENCE = "silence metric & contacts"


# The kinds of rows that give each measure but churn's (its definition says what it reads).
_MEASURE_KINDS = {
    _REVENUE: ("transactions",),
    _ACTIVE: ("events", "tickets", "transactions"),
    _MODEL: ("events", "tickets", "transactions", "subscriptions"),
}


def _coverage_counts(conn: Connection, definition) -> dict[str, int]:
    """Per measure (but the silence metric's, every CRM customer once tickets are loaded), the CRM
    customers with the data it needs."""
    im = customer_keys_table

    def having(*kinds: str) -> int:
        parts = []
        for k in kinds:
            t = KIND_TABLES[k]
            parts.append(
                sa.select(t.c.cx_key)
                .select_from(t.join(im, im.c.cx_key == t.c.cx_key))
                .where(im.c.known.is_(True))
                .distinct()
            )
        u = sa.union(*parts).subquery()
        return conn.execute(sa.select(sa.func.count()).select_from(u)).scalar() or 0

    return {**{m: having(*kinds) for m, kinds in _MEASURE_KINDS.items()}, _CHURN: _judged(conn, definition)}


def _judged(conn: Connection, definition, rows: Callable[[sa.Table], tuple] = lambda t: ()) -> int:
    """The CRM customers the churn definition can judge, from the rows ``rows(table)`` keeps."""
    if definition is None:
        return 0
    im = customer_keys_table
    known = sa.select(im.c.cx_key).where(im.c.known.is_(True)).subquery()
    cov = churn_defs.covered(conn, definition, rows=rows).subquery()
    q = sa.select(sa.func.count()).select_from(cov.join(known, known.c.cx_key == cov.c.cx_key))
    return conn.execute(q).scalar() or 0


def _coverage_frame(conn: Connection, definition, counts: dict[str, int]) -> pd.DataFrame:
    """``coverage``'s frame from ``_coverage_counts``: the shares of every CRM customer."""
    im = customer_keys_table
    total = conn.execute(sa.select(sa.func.count()).select_from(im).where(im.c.known.is_(True))).scalar() or 0
    tickets = bool(conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["tickets"])).scalar())
    rows = [
        (_REVENUE, "a transaction", counts[_REVENUE]),
        (
            _CHURN,
            f"what the churn definition needs ({definition.name})"
            if definition
            else "a churn label, subscriptions, churn records or dated activity",
            counts[_CHURN],
        ),
        (_ACTIVE, "an event, contact or purchase", counts[_ACTIVE]),
        (_SILENCE, "the support source loaded (no ticket is a real zero)", total if tickets else 0),
        (_MODEL, "a CRM record and behaviour from another department", counts[_MODEL]),
    ]
    return pd.DataFrame(
        [
            {"measure": m, "needs": n, "customers_covered": int(c), "share": (c / total) if total else None}
            for m, n, c in rows
        ]
    )


def set_latency_target(conn: Connection, source: str, hours: float | None) -> None:
    """The owner's target for activation latency (p95, hours)."""
    res = conn.execute(sources_table.update().where(sources_table.c.name == source).values(latency_target_hours=hours))
    if res.rowcount == 0:
        raise KeyError(f"no source named {source!r}")


def mapping_versions(app_conn: Connection) -> dict[str, int]:
    """Current mapping version per source (from the app-state store)."""
    return {
        r.source: int(r.version) for r in app_conn.execute(sa.select(mappings_table.c.source, mappings_table.c.version))
    }
