"""What the hostile-file tests share: a small good events extract, its mapping, a count of every
analytical table (so "nothing stored changed" can be asserted) and a file writer."""

from __future__ import annotations

import sqlalchemy as sa

from cxdash.ingest.mapping import Mapping
from cxdash.store.database import ANALYTICS

EVENTS = Mapping("events", {"customer_id": "cust", "timestamp": "when", "activity": "what"})
GOOD = "cust,when,what\nC1,2024-01-01 10:00,login\nC2,2024-01-02 11:00,checkout\n"


def snapshot(store) -> dict[str, int]:
    with store.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in ANALYTICS.sorted_tables
        }


def write(tmp_path, name: str, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p
