"""Steps at the same time keep the order of the files (load, then line), as pm4py's stable sort
does: directly-follows edges, start and end activities and variants of a tie-heavy log loaded
through the real ingest path equal pm4py's on the same CSV read with pandas."""

from __future__ import annotations

import warnings
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import open_store
from tests.test_journeys import named_log

T0 = datetime(2024, 3, 1, 8, 0)
HELPDESK_STEPS = [
    "ticket opened",
    "assigned",
    "agent reply",
    "customer reply",
    "escalated",
    "reopened",
    "resolved",
    "closed",
    "survey sent",
]
EVENTS_MAP = Mapping("events", {"customer_id": "customer_id", "timestamp": "timestamp", "activity": "activity"})


def _pm4py():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("pm4py")


def _helpdesk_log(seed: int = 14, cases: int = 120) -> pd.DataFrame:
    """A helpdesk-like log where about a third of the events share their timestamp with the step
    before them (agents' tools stamp several actions in the same second), rows shuffled so the
    file's order at a tie is unrelated to the activity names."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(cases):
        t = T0 + timedelta(hours=int(rng.integers(0, 24 * 60)))
        for i in range(int(rng.integers(3, 12))):
            if i and rng.random() >= 0.4:  # else: the same second as the step before
                t += timedelta(seconds=int(rng.integers(1, 20_000)))
            rows.append((f"C{case:03d}", t.strftime("%Y-%m-%d %H:%M:%S"), str(rng.choice(HELPDESK_STEPS))))
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "activity"]).drop_duplicates()
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def _pm4py_view(frame: pd.DataFrame, case: str, activity: str, ts: str):
    """pm4py's DFG, start/end activities and variants of ``frame`` in its file order."""
    pm4py = _pm4py()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = pm4py.format_dataframe(frame.copy(), case_id=case, activity_key=activity, timestamp_key=ts)
        dfg, starts, ends = pm4py.discover_dfg(log)
        variants = pm4py.get_variants(log)
    return (
        {k: int(v) for k, v in dfg.items()},
        {k: int(v) for k, v in starts.items()},
        {k: int(v) for k, v in ends.items()},
        Counter({tuple(k): int(v if not isinstance(v, list) else len(v)) for k, v in variants.items()}),
    )


def _ours(conn, events: sa.FromClause, spec: jr.LogSpec | None = None, **keys):
    dfg = jr.dfg_counts(conn, events, spec, **keys)
    variants = jr.discover_variants(conn, events, spec, limit=None, **keys)
    return (
        {(s, t): int(n) for s, t, n in zip(dfg["source"], dfg["target"], dfg["count"], strict=True)},
        jr.start_activities(conn, events, spec, **keys),
        jr.end_activities(conn, events, spec, **keys),
        Counter(
            {
                tuple(v.split(jr.VARIANT_SEPARATOR)): int(n)
                for v, n in zip(variants["variant"], variants["customers"], strict=True)
            }
        ),
    )


def _load(store, tmp_path, frame: pd.DataFrame, parts: int = 1) -> None:
    """Write ``frame`` as ``parts`` CSV files (consecutive slices) and load them one after the
    other into one source, the way a helpdesk export arrives in daily files."""
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = tmp_path / f"helpdesk_{i}.csv"
        frame.iloc[chunk].to_csv(path, index=False)
        ingest_file(
            store, path, source="helpdesk", kind="events", department="support", mapping=EVENTS_MAP, mode="append"
        )


def test_the_helpdesk_log_is_tie_heavy_and_ties_decide_edges():
    """The fixture tests something: a third of the events share a timestamp within their case,
    and ordering those by activity name (the old rule) gives other edges than pm4py."""
    frame = _helpdesk_log()
    tied = frame.duplicated(["customer_id", "timestamp"], keep=False)
    assert 0.30 <= tied.mean() <= 0.75
    by_name = frame.sort_values(["customer_id", "timestamp", "activity"], kind="stable")
    nxt = by_name.groupby("customer_id")["activity"].shift(-1)
    old = Counter(zip(by_name["activity"][nxt.notna()], nxt[nxt.notna()], strict=True))
    dfg, *_ = _pm4py_view(frame, "customer_id", "activity", "timestamp")
    assert dict(old) != dfg


def test_journeys_of_a_tie_heavy_log_loaded_in_two_files_equal_pm4py(tmp_path):
    frame = _helpdesk_log()
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    try:
        _load(store, tmp_path, frame, parts=2)
        expected = _pm4py_view(frame, "customer_id", "activity", "timestamp")
        with store.connect() as conn:
            by_key = _ours(conn, jr.journey_log())  # the page's log: cases are customer keys
            by_id = _ours(conn, named_log(jr.journey_log()), case_key="cx_id")  # cases named by text ids
    finally:
        store.dispose()
    dfg, starts, ends, variants = expected
    assert sum(dfg.values()) == len(frame) - frame["customer_id"].nunique()
    for ours in (by_key, by_id):
        assert ours[0] == dfg
        assert ours[1] == starts
        assert ours[2] == ends
        assert ours[3] == variants


def test_handoffs_paths_and_funnels_follow_the_file_order_at_a_tie(tmp_path):
    """Hand-made: C1's cart and purchase share a second, cart on the earlier line; C2's share a
    second with purchase first. The funnel converts C1 only, the handoff web -> billing is C1's,
    the path before purchase and the customer's timeline list the steps in the file's order."""
    csv = (
        "customer_id,timestamp,activity,department\n"
        "C1,2024-01-01 10:00:00,view,web\n"
        "C2,2024-01-01 10:00:00,view,web\n"
        "C1,2024-01-01 10:05:00,cart,web\n"
        "C2,2024-01-01 10:05:00,purchase,billing\n"
        "C1,2024-01-01 10:05:00,purchase,billing\n"
        "C2,2024-01-01 10:05:00,cart,web\n"
    )
    (tmp_path / "shop.csv").write_text(csv)
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    try:
        ingest_file(
            store,
            tmp_path / "shop.csv",
            source="shop",
            kind="events",
            department="web",
            mapping=Mapping(
                "events",
                {
                    "customer_id": "customer_id",
                    "timestamp": "timestamp",
                    "activity": "activity",
                    "department": "department",
                },
            ),
        )
        with store.connect() as conn:
            jl = jr.journey_log()
            f = jr.funnel(conn, jl, ["view", "cart", "purchase"])
            hand = jr.discover_handoffs(conn, jl, department_key="department")
            before = jr.paths_to(conn, jl, "purchase", steps=2)
            customers = conn.execute(sa.select(jr.case_names().c.name)).scalars().all()
            timelines = sorted(jr.customer_journey(conn, cx)["activity"].tolist() for cx in customers)
    finally:
        store.dispose()
    assert f["customers"].tolist() == [2, 2, 1]
    assert {(r.source_department, r.target_department): r.count for r in hand.itertuples()} == {
        ("web", "billing"): 2,
        ("billing", "web"): 1,
    }
    assert timelines == [["view", "cart", "purchase"], ["view", "purchase", "cart"]]
    links = {(r.source, r.target): r.customers for r in before.itertuples()}
    assert links == {("view", "cart"): 1, ("cart", "purchase"): 1, ("view", "purchase"): 1}


@pytest.mark.slow
def test_journeys_of_online_retail_invoices_equal_pm4py(public_data, tmp_path):
    """Public data with ties everywhere: every line of an invoice carries the invoice's minute.
    Case = CustomerID, activity = StockCode, time = InvoiceDate, in the file's order."""
    path = public_data / "online_retail" / "online_retail_sample.csv"
    frame = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    assert frame.duplicated(["CustomerID", "InvoiceDate"], keep=False).mean() > 0.9
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    try:
        ingest_file(
            store,
            path,
            source="retail",
            kind="events",
            department="sales",
            mapping=Mapping(
                "events", {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "activity": "StockCode"}
            ),
        )
        with store.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(jr.journey_log())).scalar()
            dfg, starts, ends, _ = _ours(conn, jr.journey_log())
    finally:
        store.dispose()
    assert stored == len(frame)  # every line loaded: the comparison is on the same events
    exp_dfg, exp_starts, exp_ends, _ = _pm4py_view(frame, "CustomerID", "StockCode", "InvoiceDate")
    assert dfg == exp_dfg
    assert starts == exp_starts
    assert ends == exp_ends


def test_cohorts_break_ties_by_customer_id_not_by_the_key_the_journeys_run_on(tmp_path):
    """Every customer takes the same edge once, with both steps at the same second, and has one
    rework moment: the cohorts tie on every count. The cohorts that name customers (an edge's, a
    hotspot's) then list them by customer id, as when the journeys ran on customer ids; the
    journeys run on integer keys, and two loads give keys out of id order (a load's new customers
    take the next keys), so an order by key would show."""
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    try:
        for i, ids in enumerate((["Z1", "Y2", "X3", "W4"], ["A1", "B2", "C3", "D4"])):
            rows = [f"{c},2024-03-01 09:00:00,password reset" for c in ids for _ in range(2)]
            path = tmp_path / f"resets_{i}.csv"
            path.write_text("customer_id,timestamp,activity\n" + "\n".join(rows) + "\n")
            ingest_file(
                store, path, source="resets", kind="events", department="support", mapping=EVENTS_MAP, mode="append"
            )
        with store.connect() as conn:
            names = jr.case_names()
            by_key = conn.execute(sa.select(names.c.name).order_by(names.c.case_id)).scalars().all()
            jl = jr.journey_log()
            edge = jr.edge_customers(conn, jl, "password reset", "password reset", case_names=jr.case_names())
            unnamed = jr.edge_customers(conn, jl, "password reset", "password reset")
            rework = jr.hotspot_customers(conn, "rework", limit=None)
    finally:
        store.dispose()
    assert len(by_key) == 8 and by_key != sorted(by_key)  # keys out of id order: the test can fail
    assert edge["times"].tolist() == [1] * 8 and edge["case_id"].tolist() == sorted(by_key)
    assert unnamed["case_id"].tolist() == sorted(unnamed["case_id"].tolist())  # without names: the keys
    assert rework["moments"].tolist() == [1] * 8 and rework["cx_id"].tolist() == sorted(by_key)
