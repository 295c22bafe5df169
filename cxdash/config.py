"""Where cxdash finds its database and files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR", "DEFAULT_DB_PATH", "database_url", "redacted_url"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CXDASH_DATA_DIR", REPO_ROOT / "data"))
DEFAULT_DB_PATH = DATA_DIR / "cxdash.duckdb"


def database_url(explicit: str | None = None) -> str:
    """The analytical store's SQLAlchemy URL: ``--db``, else ``CXDASH_DB_URL``, else a DuckDB file."""
    if explicit:
        return explicit
    env = os.environ.get("CXDASH_DB_URL")
    if env:
        return env
    return f"duckdb:///{DEFAULT_DB_PATH}"


def redacted_url(url: str) -> str:
    """The URL with any password hidden, for logs and the UI."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
