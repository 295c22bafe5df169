"""The ``demo`` command: generate the demo company's extracts, load them and train its first churn model."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cxdash.cli.common import store_of
from cxdash.cli.model import newest_model, train_summary, train_with_progress
from cxdash.config import DATA_DIR
from cxdash.demo.build import build_demo
from cxdash.risk import NotEnoughChurnError
from cxdash.store.version import data_version

__all__ = ["cmd_demo"]


def cmd_demo(args) -> int:
    store = store_of(args)
    started = time.perf_counter()
    out_dir = Path(args.out) if args.out else DATA_DIR / "demo"
    built = True
    if args.if_empty:
        with store.connect() as conn:
            if data_version(conn):
                print(f"store {store.url} already holds data; demo not rebuilt (make clean-data to start over)")
                built = False
    if built:
        summary = build_demo(store, n_customers=args.customers, seed=args.seed, out_dir=out_dir)
        print(
            f"demo company: {args.customers:,} customers, {summary['rows']:,} rows in {len(summary['sources'])} "
            f"sources, generated in {summary['generate_seconds']:.1f} s, loaded in {summary['load_seconds']:.1f} s "
            f"(total {time.perf_counter() - started:.1f} s) into {store.url}"
        )
    # At-risk customers and the customer card need a model: the demo comes with its first one
    # (17-30 s at 10,000 customers on 2 cores), so every page works on the first visit.
    if args.no_train or not built:  # a store that held data already: `train --if-missing` decides
        return 0
    if newest_model(store) is not None:
        print("a churn model exists already; not retrained (python -m cxdash train retrains)")
        return 0

    print("training the first churn model on the demo (progress below; --no-train skips this)")
    try:
        model = train_with_progress(store)
    except NotEnoughChurnError as exc:
        # A small demo can hold too few leavers to measure a model: the demo itself is loaded.
        print(f"demo loaded, but no churn model was trained: {' '.join(str(exc).split())}", file=sys.stderr)
        return 0
    print(train_summary(model))
    return 0
