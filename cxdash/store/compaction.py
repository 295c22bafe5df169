"""Rewriting an embedded DuckDB file from its live rows, so nothing erased can be read from its bytes
(``python -m cxdash erase`` and ``compact``)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine

__all__ = ["compact_duckdb_file"]


def compact_duckdb_file(engine: Engine) -> Path | None:
    """Rewrite an embedded DuckDB file from its live rows only (None for any other engine).

    DuckDB frees deleted rows' blocks without erasing them, and old column statistics stay in its
    metadata: an erased customer's id can still be read from the file's bytes. The live database
    is copied into a new file (``COPY FROM DATABASE``) while this process holds the old file's
    write lock, and the new file then takes its name. Other processes wait on the lock and open
    the new file afterwards; a connection in *this* process that is open meanwhile would keep
    writing to the old one, so call this from a command line (``erase``, ``compact``), not from a
    page of the running app.
    """
    if engine.dialect.name != "duckdb" or not engine.url.database or engine.url.database == ":memory:":
        return None
    import duckdb

    path = Path(engine.url.database).resolve()
    fresh = path.with_name(path.name + ".compact")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect(str(path))  # the write lock on the old file, held until the swap is done
    try:
        con.execute("CHECKPOINT")  # the write-ahead log is in the file: none belongs to the new one
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute("ATTACH ? AS cxdash_compact", [str(fresh)])
        con.execute(f'COPY FROM DATABASE "{name}" TO cxdash_compact')
        con.execute("DETACH cxdash_compact")
        os.replace(fresh, path)
    finally:
        con.close()
        fresh.unlink(missing_ok=True)
    return path
