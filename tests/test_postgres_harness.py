"""Proves the throwaway-PostgreSQL harness (scripts/with_postgres.sh) works.

Skipped when CXDASH_TEST_PG_URL is unset (e.g. no PostgreSQL on this machine).
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy
from sqlalchemy import text

PG_URL = os.environ.get("CXDASH_TEST_PG_URL")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not PG_URL,
        reason="CXDASH_TEST_PG_URL not set: run via scripts/with_postgres.sh (needs PostgreSQL server binaries)",
    ),
]


def test_postgres_round_trip() -> None:
    engine = sqlalchemy.create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            assert conn.dialect.name == "postgresql"
            conn.execute(text("CREATE TEMP TABLE harness_probe (id int PRIMARY KEY, label text NOT NULL)"))
            conn.execute(
                text("INSERT INTO harness_probe (id, label) VALUES (:id, :label)"),
                [{"id": 1, "label": "héllo"}, {"id": 2, "label": "world"}],
            )
            rows = conn.execute(text("SELECT id, label FROM harness_probe ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, "héllo"), (2, "world")]
            assert conn.execute(text("SELECT current_database()")).scalar_one() == "cxdash"
            assert conn.execute(text("SHOW server_encoding")).scalar_one() == "UTF8"
    finally:
        engine.dispose()
