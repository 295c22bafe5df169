"""A small demo company loaded into a test store, and appends shaped like its own extracts: the
setup of the tests that change a loaded store the ways a store changes (rollups, summaries)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager

from cxdash.demo.build import load_demo_extracts
from cxdash.demo.world import write_demo_extracts
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from tests.conftest import make_store


@contextmanager
def loaded(backend: str, tmp_path, customers: int, seed: int) -> Iterator[tuple]:
    """A store on ``backend`` holding a demo company of ``customers``: (store, extracts by source)."""
    store = make_store(backend, tmp_path)
    extracts = {ex.source: ex for ex in write_demo_extracts(tmp_path / "extracts", customers, seed=seed)}
    load_demo_extracts(store, list(extracts.values()))
    try:
        yield store, extracts
    finally:
        store.dispose()


def append_rows(store, tmp_path, extract, rows: list[dict], name: str, **options):
    """Append ``rows`` (by the extract's column names; missing ones blank) to the extract's source
    with its own mapping, and check every row was loaded."""
    with open(extract.path, newline="") as f:
        header = next(csv.reader(f))
    path = tmp_path / f"{name}.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for row in rows:
            w.writerow({h: row.get(h, "") for h in header})
    result = ingest_file(
        store, path, source=extract.source, mapping=Mapping.from_dict(extract.mapping), mode="append", **options
    )
    assert result.rows_loaded == len(rows), result.summary()
    return result
