"""A load writes its file in chunks inside one transaction (issue 17: the 1M demo load peaked at
10.8 GB). Each chunk must be released once written, not held until the commit, and what is
stored must be exactly the chunks' rows."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from cxdash.store.database import KIND_TABLES, bulk_insert

EVENTS = KIND_TABLES["events"]


def _chunk(start: int, n: int) -> pd.DataFrame:
    """``n`` event rows numbered from ``start``, as a load's chunk (text as Python objects, so
    each insert converts them into fresh Arrow memory)."""
    numbers = range(start, start + n)
    return pd.DataFrame(
        {
            "source": ["web"] * n,
            "load_id": [1] * n,
            "row_number": list(numbers),
            "row_key": [f"key-{i:09d}-" + "x" * 20 for i in numbers],
            "customer_id": [f"U{i % 997}" for i in numbers],
            "timestamp": [datetime(2025, 1, 1) + timedelta(minutes=i) for i in numbers],
            "activity": [("login", "pricing", "cancel_page")[i % 3] for i in numbers],
        }
    )


def test_a_chunk_written_inside_a_transaction_is_released_before_the_commit(duck):
    n, chunks = 50_000, 6
    one_chunk = pa.Table.from_pandas(_chunk(0, n), preserve_index=False).nbytes
    with duck.begin() as conn:
        gc.collect()
        before = pa.total_allocated_bytes()
        for i in range(chunks):
            bulk_insert(conn, EVENTS, _chunk(i * n, n))
        gc.collect()
        held = pa.total_allocated_bytes() - before
        # Before the fix every chunk stayed alive until the commit: ``chunks * one_chunk``.
        assert held < one_chunk, f"{held:,} bytes of Arrow memory still held after {chunks} chunks"
    with duck.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar() == n * chunks


def test_rows_written_in_chunks_are_exactly_the_chunks_rows(store):
    pieces = [_chunk(0, 7), _chunk(7, 5), _chunk(12, 1)]
    with store.begin() as conn:
        for piece in pieces:
            bulk_insert(conn, EVENTS, piece)
    cols = ["source", "load_id", "row_number", "row_key", "customer_id", "timestamp", "activity"]
    with store.connect() as conn:
        got = conn.execute(sa.select(*[EVENTS.c[c] for c in cols]).order_by(EVENTS.c.row_number)).all()
    expected = [
        ("web", 1, i, f"key-{i:09d}-" + "x" * 20, f"U{i % 997}", datetime(2025, 1, 1) + timedelta(minutes=i), act)
        for i, act in zip(range(13), ["login", "pricing", "cancel_page"] * 5, strict=False)
    ]
    assert [tuple(r) for r in got] == expected
