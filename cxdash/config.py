"""Where cxdash finds its database and files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "DEFAULT_DB_PATH",
    "analytics_url",
    "database_url",
    "duckdb_memory_limit",
    "redacted_url",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CXDASH_DATA_DIR", REPO_ROOT / "data"))
DEFAULT_DB_PATH = DATA_DIR / "cxdash.duckdb"


def database_url(explicit: str | None = None) -> str:
    """The store's SQLAlchemy URL: ``--db``, else ``CXDASH_DB_URL``, else a DuckDB file.

    It holds the app state (users, audit, mappings, models) and, unless ``CXDASH_ANALYTICS_URL``
    says otherwise (``analytics_url``), the analytical tables too."""
    if explicit:
        return explicit
    env = os.environ.get("CXDASH_DB_URL")
    if env:
        return env
    return f"duckdb:///{DEFAULT_DB_PATH}"


def analytics_url(app_url: str) -> str:
    """Where the analytical tables (source rows, identity map, customer keys, loads, summaries)
    live: ``CXDASH_ANALYTICS_URL`` when set (e.g. ``sparkthrift://user@host:10000/default`` for a
    Spark Thrift server), else the same store as the app state (``app_url``)."""
    return os.environ.get("CXDASH_ANALYTICS_URL", "").strip() or app_url


def spark_staging_dir() -> str | None:
    """A folder this process writes and the Spark cluster reads (``CXDASH_SPARK_STAGING``): bulk
    inserts into a Spark store go through Parquet files there (scripts/with_spark.sh sets it)."""
    return os.environ.get("CXDASH_SPARK_STAGING", "").strip() or None


# DuckDB takes up to 80% of the machine's memory by default; on a laptop that leaves too little for
# the app and everything else, so cxdash caps it (it spills big sorts and joins to disk instead).
DEFAULT_DUCKDB_MEMORY_LIMIT = "4GB"


def duckdb_memory_limit() -> str | None:
    """DuckDB's memory cap: ``CXDASH_DUCKDB_MEMORY_LIMIT`` (e.g. ``8GB``; ``default`` leaves
    DuckDB's own 80% of RAM), else 4GB."""
    value = os.environ.get("CXDASH_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT).strip()
    if value.lower() in ("", "default", "none"):
        return None
    import re

    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, flags=re.IGNORECASE):
        raise ValueError(f"CXDASH_DUCKDB_MEMORY_LIMIT={value!r} is not a size; write it like 4GB or 8GiB")
    return value


def redacted_url(url: str) -> str:
    """The URL with any password hidden, for logs and the UI."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
