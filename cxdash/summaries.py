"""Summaries computed once per load, so the landing pages open at once on a large store.

The Overview and Data health pages show aggregates over every stored row (customers per source,
activity per month, stitch and KPI coverage). On a million customers each takes tens of seconds
on a laptop, and none depends on anything but the stored data, so ``refresh`` computes them after
each successful load (CLI ingest, the upload page, the demo, an erasure) and stores them in the
``summaries`` table keyed by the data version. ``get`` returns the stored result when it belongs
to the current version and otherwise computes it live (never a stale answer).

Results are stored as Parquet (frames) or JSON (the headline), never pickled.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store import Store, summaries_table

__all__ = ["SUMMARIES", "clear", "get", "refresh", "summaries_table"]

log = logging.getLogger(__name__)



def _headline(conn: Connection):
    from cxdash.kpis import headline

    return headline(conn)


def _computations() -> dict[str, Callable[[Connection], object]]:
    from cxdash import health, overview

    return {
        "source_summary": overview.source_summary,
        "activity_by_month": overview.activity_by_month,
        "headline": _headline,
        "null_rates": health.null_rates,
        "stitch_coverage": health.stitch_coverage,
        "coverage": health.coverage,
        "source_stats": health.source_stats,
        "source_latency": health.source_latency,
    }


SUMMARIES = ("source_summary", "activity_by_month", "headline", "null_rates", "stitch_coverage", "coverage",
             "source_stats", "source_latency")


def _encode(value) -> bytes:
    if isinstance(value, pd.DataFrame):
        buf = io.BytesIO()
        value.to_parquet(buf, index=False)
        return b"P" + buf.getvalue()
    return b"J" + json.dumps(value.to_dict()).encode()


def _decode(name: str, payload: bytes):
    tag, body = payload[:1], payload[1:]
    if tag == b"P":
        return pd.read_parquet(io.BytesIO(body))
    data = json.loads(body)
    if name == "headline":
        from cxdash.kpis import Headline

        return Headline(
            as_of=datetime.fromisoformat(data["as_of"]) if data.get("as_of") else None,
            customers=data["customers"], active_customers=data["active_customers"],
            churned_customers=data["churned_customers"], churn_basis=data["churn_basis"], revenue=data["revenue"],
        )
    raise ValueError(f"unknown summary payload for {name!r}")


def get(conn: Connection, name: str, version: int | None = None):
    """The summary ``name`` for the current data version: stored if fresh, else computed now."""
    from cxdash.overview import data_version

    compute = _computations()[name]
    version = data_version(conn) if version is None else version
    row = conn.execute(
        sa.select(summaries_table.c.payload).where(
            summaries_table.c.name == name, summaries_table.c.data_version == version
        )
    ).first()
    if row is not None:
        try:
            return _decode(name, bytes(row.payload))
        except Exception:  # a damaged row is a cache miss, not an error
            log.warning("summary %s could not be read; computing it", name, exc_info=True)
    return compute(conn)


def refresh(store: Store, names: tuple[str, ...] = SUMMARIES) -> dict[str, float]:
    """Compute and store every summary for the current data version. Returns seconds per summary."""
    from cxdash.overview import data_version

    took: dict[str, float] = {}
    computations = _computations()
    with store.connect() as conn:
        version = data_version(conn)
        results = {}
        for name in names:
            t0 = time.perf_counter()
            results[name] = _encode(computations[name](conn))
            took[name] = round(time.perf_counter() - t0, 3)
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.begin() as conn:
        conn.execute(summaries_table.delete().where(summaries_table.c.name.in_(list(names))))
        for name, payload in results.items():
            conn.execute(summaries_table.insert().values(
                name=name, data_version=version, computed_at=now, seconds=took[name], payload=payload
            ))
    log.info("summaries refreshed for data version %s: %s", version, took)
    return took


def clear(conn: Connection) -> None:
    """Forget every stored summary (an erasure changes the data without a new load)."""
    conn.execute(summaries_table.delete())
