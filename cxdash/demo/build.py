"""Build the demo company: write its departmental CSV extracts, then load them like any upload."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from cxdash.demo.world import write_demo_extracts
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import after_load, stitch_identities
from cxdash.store.database import Store

__all__ = ["build_demo", "load_demo_extracts"]

log = logging.getLogger(__name__)


def load_demo_extracts(
    store: Store,
    extracts: list,
    *,
    chunk_rows: int = 500_000,
    phase: Callable[[str], None] | None = None,
) -> int:
    """Load the extracts ``write_demo_extracts`` wrote, each through ``ingest_file`` (replace mode),
    then stitch identities once. No summaries are refreshed (``after_load`` does that). Returns the
    rows loaded."""
    phase = phase or (lambda _name: None)
    rows = 0
    for ex in extracts:
        phase(f"load {ex.source}")
        result = ingest_file(
            store,
            ex.path,
            source=ex.source,
            mapping=Mapping.from_dict(ex.mapping),
            mode="replace",
            department=ex.department,
            chunk_rows=chunk_rows,
            rebuild_identities=False,
        )
        rows += result.rows_loaded
    phase("identity")
    stitch_identities(store)
    return rows


def build_demo(
    store: Store,
    *,
    n_customers: int,
    seed: int,
    out_dir: Path,
    chunk_rows: int = 500_000,
    phase: Callable[[str], None] | None = None,
) -> dict:
    """Write the extracts under ``out_dir`` and load each through ``ingest_file`` (replace mode).

    ``phase(name)`` is called as each step starts (``generate``, ``load SOURCE``, ``identity``,
    ``summary NAME``), so a profiler can tell them apart.
    Returns a summary: ``sources``, ``rows``, ``generate_seconds``, ``load_seconds``.
    """
    phase = phase or (lambda _name: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phase("generate")
    extracts = write_demo_extracts(out_dir, n_customers, seed)
    t1 = time.perf_counter()
    rows = load_demo_extracts(store, extracts, chunk_rows=chunk_rows, phase=phase)
    t2 = time.perf_counter()
    took = after_load(store, progress=lambda name: phase(f"summary {name}"))
    t3 = time.perf_counter()
    return {
        "sources": [ex.source for ex in extracts],
        "rows": rows,
        "generate_seconds": t1 - t0,
        "load_seconds": t2 - t1,
        "summary_seconds": t3 - t2,
        "summaries": took,
    }
