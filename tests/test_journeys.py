"""Journeys and friction: the directly-follows graph against pm4py and hand-worked logs, noise
controls, variants, funnels, handoffs, friction detection on both backends, the demo's planted
friction, and the CLI."""

from __future__ import annotations

import io
import json
import math
import warnings
from contextlib import redirect_stdout
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import KIND_TABLES, identity_map_table, open_store

T0 = datetime(2024, 1, 1)
PM4PY_KEYS = dict(case_key="case:concept:name", activity_key="concept:name", timestamp_key="time:timestamp")


def _pm4py():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("pm4py")


def _duck():
    return sa.create_engine("duckdb:///:memory:")


def _pm4py_expected(frame: pd.DataFrame):
    pm4py = _pm4py()
    frame = frame.copy()
    frame["case:concept:name"] = frame["case:concept:name"].astype(str)
    # pm4py reads start/end activities off the frame's row order: give it a time-sorted log
    # (our functions get the rows in any order)
    frame = frame.sort_values(["case:concept:name", "time:timestamp"], kind="stable")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keys = dict(
            case_id_key=PM4PY_KEYS["case_key"],
            activity_key=PM4PY_KEYS["activity_key"],
            timestamp_key=PM4PY_KEYS["timestamp_key"],
        )
        dfg, starts, ends = pm4py.discover_dfg(frame, **keys)
        perf, _, _ = pm4py.discover_performance_dfg(
            frame,
            case_id_key=PM4PY_KEYS["case_key"],
            activity_key=PM4PY_KEYS["activity_key"],
            timestamp_key=PM4PY_KEYS["timestamp_key"],
            perf_aggregation_key="all",
        )
    return dfg, starts, ends, perf


def _assert_same_as_pm4py(frame: pd.DataFrame):
    dfg, starts, ends, perf = _pm4py_expected(frame)
    engine = _duck()
    with engine.begin() as conn:
        table = jr.event_log_table(conn, frame, "log")
        ours = jr.discover_dfg(conn, table, **PM4PY_KEYS)
        our_starts = jr.start_activities(conn, table, **PM4PY_KEYS)
        our_ends = jr.end_activities(conn, table, **PM4PY_KEYS)
    got = {(s, t): int(n) for s, t, n in zip(ours["source"], ours["target"], ours["count"], strict=True)}
    assert got == {k: int(v) for k, v in dfg.items()}
    assert our_starts == {k: int(v) for k, v in starts.items()}
    assert our_ends == {k: int(v) for k, v in ends.items()}
    by_edge = ours.set_index(["source", "target"])
    for edge, stats in perf.items():
        assert by_edge.loc[edge, "median_seconds"] == pytest.approx(float(stats["median"]), abs=1e-6)
        assert by_edge.loc[edge, "mean_seconds"] == pytest.approx(float(stats["mean"]), abs=1e-6)
    # pm4py does not report distinct cases or p90 per edge: check those against plain pandas
    f = frame.sort_values(["case:concept:name", "time:timestamp"], kind="stable")
    g = f.groupby("case:concept:name")
    f = f.assign(
        next=g["concept:name"].shift(-1), secs=(g["time:timestamp"].shift(-1) - f["time:timestamp"]).dt.total_seconds()
    ).dropna(subset=["next"])
    exp = f.groupby(["concept:name", "next"]).agg(
        customers=("case:concept:name", "nunique"), p90=("secs", lambda s: s.quantile(0.9))
    )
    for edge, row in exp.iterrows():
        assert by_edge.loc[edge, "customers"] == row["customers"]
        assert by_edge.loc[edge, "p90_seconds"] == pytest.approx(row["p90"], abs=1e-6)
    return ours


def _running_example(public_data) -> pd.DataFrame:
    frame = pd.read_csv(public_data / "pm4py_running_example" / "running-example.csv")
    frame = frame.drop(columns=frame.columns[0])
    frame["time:timestamp"] = pd.to_datetime(frame["time:timestamp"], utc=True)
    return frame


# ----------------------------------------------------------------------------- pm4py anchor


def test_dfg_counts_and_times_equal_pm4py_on_the_running_example_csv(public_data):
    ours = _assert_same_as_pm4py(_running_example(public_data))
    assert ours["count"].sum() == 36  # 42 events in 6 cases


def test_dfg_equals_pm4py_on_the_running_example_xes(public_data):
    pm4py = _pm4py()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = pm4py.read_xes(
            str(public_data / "pm4py_running_example" / "running-example.xes"), show_progress_bar=False
        )
    _assert_same_as_pm4py(log[["case:concept:name", "concept:name", "time:timestamp"]])


def test_dfg_equals_pm4py_on_a_generated_log_with_hundreds_of_cases():
    rng = np.random.default_rng(5)
    rows = []
    for case in range(300):
        n = int(rng.integers(1, 16))
        gaps = rng.integers(1, 10_000, n)
        times = np.cumsum(gaps) + case * 1_000_000
        acts = rng.choice([f"step {i}" for i in range(9)], n, p=[0.2, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
        rows += [(f"c{case}", a, T0 + timedelta(seconds=int(t))) for a, t in zip(acts, times, strict=True)]
    frame = pd.DataFrame(rows, columns=["case:concept:name", "concept:name", "time:timestamp"])
    frame = frame.sample(frac=1, random_state=1).reset_index(drop=True)  # order must not matter
    _assert_same_as_pm4py(frame)


# ----------------------------------------------------------------------------- hand-made logs
#   c1: a(0)  b(60)  c(180)              departments: a, b web; c support
#   c2: a(0)  c(30)
#   c3: a(0)  b(120) b(150) c(200)

TINY = [
    ("c1", "a", 0),
    ("c1", "b", 60),
    ("c1", "c", 180),
    ("c2", "a", 0),
    ("c2", "c", 30),
    ("c3", "a", 0),
    ("c3", "b", 120),
    ("c3", "b", 150),
    ("c3", "c", 200),
]


@pytest.fixture
def tiny():
    frame = pd.DataFrame(
        [(c, a, T0 + timedelta(seconds=s), "support" if a == "c" else "web") for c, a, s in TINY],
        columns=["case", "act", "time", "dept"],
    )
    engine = _duck()
    with engine.begin() as conn:
        table = jr.event_log_table(conn, frame, "tiny")
        yield conn, table
    engine.dispose()


KEYS = dict(case_key="case", activity_key="act", timestamp_key="time")


def _edges(frame):
    return {
        (s, t): (int(n), int(c))
        for s, t, n, c in zip(frame["source"], frame["target"], frame["count"], frame["customers"], strict=True)
    }


def test_tiny_dfg_counts_customers_and_times_by_hand(tiny):
    conn, t = tiny
    dfg = jr.discover_dfg(conn, t, **KEYS)
    assert _edges(dfg) == {("a", "b"): (2, 2), ("b", "c"): (2, 2), ("a", "c"): (1, 1), ("b", "b"): (1, 1)}
    row = dfg.set_index(["source", "target"])
    assert row.loc[("a", "b"), "median_seconds"] == 90.0
    assert row.loc[("a", "b"), "p90_seconds"] == pytest.approx(114.0)  # 60 + 0.9 * (120 - 60)
    assert row.loc[("b", "c"), "median_seconds"] == 85.0  # (120 + 50) / 2
    assert row.loc[("a", "b"), "customer_share"] == pytest.approx(2 / 3)
    assert dfg["share"].sum() == pytest.approx(1.0)


def test_collapsing_repeated_steps_removes_self_loops_and_joins_their_time(tiny):
    conn, t = tiny
    dfg = jr.discover_dfg(conn, t, collapse_repeats=True, **KEYS)
    assert _edges(dfg) == {("a", "b"): (2, 2), ("b", "c"): (2, 2), ("a", "c"): (1, 1)}
    assert dfg.set_index(["source", "target"]).loc[("b", "c"), "median_seconds"] == 100.0  # (120 + 80) / 2


def test_rare_edges_pool_into_other_so_shares_add_to_one(tiny):
    conn, t = tiny
    dfg = jr.discover_dfg(conn, t, min_share=0.2, **KEYS)
    assert _edges(dfg) == {("a", "b"): (2, 2), ("b", "c"): (2, 2), (jr.OTHER, jr.OTHER): (2, 2)}
    assert dfg["share"].sum() == pytest.approx(1.0)


def test_rename_rules_top_n_and_department_grouping(tiny):
    conn, t = tiny
    renamed = jr.discover_dfg(conn, t, jr.LogSpec(rename={"b": "x"}), **KEYS)
    assert set(_edges(renamed)) == {("a", "x"), ("x", "c"), ("a", "c"), ("x", "x")}
    top2 = jr.discover_dfg(conn, t, jr.LogSpec(top_n=2), **KEYS)  # a, b, c all 3x: ties by name keep a, b
    assert set(_edges(top2)) == {("a", "b"), ("b", jr.OTHER), ("a", jr.OTHER), ("b", "b")}
    depts = jr.discover_dfg(conn, t, jr.LogSpec(by_department=True), department_key="dept", **KEYS)
    assert _edges(depts) == {("web", "web"): (3, 2), ("web", "support"): (3, 3)}


def test_start_and_end_activities(tiny):
    conn, t = tiny
    assert jr.start_activities(conn, t, **KEYS) == {"a": 3}
    assert jr.end_activities(conn, t, **KEYS) == {"c": 3}


def test_variants_with_share_churn_and_duration(tiny):
    conn, t = tiny
    outcomes = (
        sa.select(sa.literal_column("'c2'").label("case_id"), sa.true().label("churned"))
        .union_all(sa.select(sa.literal_column("'c1'"), sa.false()))
        .subquery("outcomes")
    )
    v = jr.discover_variants(conn, t, outcomes=outcomes, **KEYS).set_index("variant")
    assert set(v.index) == {"a > b > c", "a > c", "a > b > b > c"}
    assert (v["customers"] == 1).all() and v["share"].sum() == pytest.approx(1.0)
    assert v.loc["a > c", "churn_rate"] == 1.0 and v.loc["a > b > c", "churn_rate"] == 0.0
    assert math.isnan(v.loc["a > b > b > c", "churn_rate"])  # no outcome known
    assert v.loc["a > b > b > c", "median_seconds"] == 200.0
    assert v.loc["a > b > b > c", "steps"] == 4
    first2 = jr.discover_variants(conn, t, max_steps=2, **KEYS).set_index("variant")
    assert first2.loc["a > b", "customers"] == 2
    rare = jr.discover_variants(conn, t, max_steps=2, rarest=True, contains="c", **KEYS)
    assert rare["variant"].tolist() == ["a > c"]


def test_funnel_conversion_drop_off_and_time_with_a_window(tiny):
    conn, t = tiny
    f = jr.funnel(conn, t, ["a", "b", "c"], window_days=1, **KEYS)
    assert f["customers"].tolist() == [3, 2, 2]
    assert f["dropped"].tolist() == [0, 1, 0]
    assert f["conversion"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert f["step_conversion"].tolist() == pytest.approx([1.0, 2 / 3, 1.0])
    assert f["median_seconds_to_convert"].tolist() == pytest.approx([0.0, 90.0, 190.0])
    short = jr.funnel(conn, t, ["a", "b", "c"], window_days=150 / 86400, **KEYS)
    assert short["customers"].tolist() == [3, 2, 0]  # c comes after 180 s and 200 s
    backwards = jr.funnel(conn, t, ["c", "a"], window_days=1, **KEYS)
    assert backwards["customers"].tolist() == [3, 0]  # order matters


def test_funnel_breaks_down_by_segment(tiny):
    conn, t = tiny
    seg = (
        sa.select(sa.literal_column("'c1'").label("case_id"), sa.literal_column("'smb'").label("segment"))
        .union_all(
            sa.select(sa.literal_column("'c2'"), sa.literal_column("'smb'")),
            sa.select(sa.literal_column("'c3'"), sa.literal_column("'enterprise'")),
        )
        .subquery("seg")
    )
    f = jr.funnel(conn, t, ["a", "b"], segments=seg, **KEYS)
    got = {(s, k): n for s, k, n in zip(f["segment"], f["step"], f["customers"], strict=True)}
    assert got == {("enterprise", 1): 1, ("enterprise", 2): 1, ("smb", 1): 2, ("smb", 2): 1}


def test_paths_to_and_from_an_anchor(tiny):
    conn, t = tiny
    to_c = jr.paths_to(conn, t, "c", steps=1, **KEYS)
    assert {(r.source_offset, r.source, r.target, r.customers) for r in to_c.itertuples()} == {
        (-1, "b", "c", 2),
        (-1, "a", "c", 1),
    }
    from_a = jr.paths_from(conn, t, "a", steps=2, **KEYS)
    assert {(r.source_offset, r.source, r.target_offset, r.target, r.customers) for r in from_a.itertuples()} == {
        (0, "a", 1, "b", 2),
        (0, "a", 1, "c", 1),
        (1, "b", 2, "c", 1),
        (1, "b", 2, "b", 1),
    }


def test_handoffs_count_department_changes_and_their_waits(tiny):
    conn, t = tiny
    h = jr.discover_handoffs(conn, t, department_key="dept", **KEYS)
    assert h[["source_department", "target_department", "count", "customers"]].values.tolist() == [
        ["web", "support", 3, 3]
    ]
    assert h["median_seconds"].iloc[0] == 50.0  # waits 120, 30, 50


def test_edge_customers_lists_the_cases_on_an_edge(tiny):
    conn, t = tiny
    e = jr.edge_customers(conn, t, "a", "b", **KEYS)
    assert e["case_id"].tolist() == ["c1", "c3"]


def test_activity_nodes_count_reach_departments_starts_and_ends_by_hand():
    # TINY plus c4: d(0) d(10), a case that is one repeated step
    frame = pd.DataFrame(
        [
            (c, a, T0 + timedelta(seconds=s), "support" if a in ("c", "d") else "web")
            for c, a, s in [*TINY, ("c4", "d", 0), ("c4", "d", 10)]
        ],
        columns=["case", "act", "time", "dept"],
    )
    engine = _duck()
    with engine.begin() as conn:
        t = jr.event_log_table(conn, frame, "nodes")
        plain = jr.activity_nodes(conn, t, department_key="dept", **KEYS).set_index("activity")
        collapsed = jr.activity_nodes(conn, t, collapse_repeats=True, department_key="dept", **KEYS).set_index(
            "activity"
        )
        counts = jr.activity_counts(conn, t, collapse_repeats=True, **KEYS)
    cols = ["count", "customers", "department", "starts", "ends"]
    assert plain.loc[["a", "b", "c", "d"], cols].values.tolist() == [
        [3, 3, "web", 3, 0],
        [3, 2, "web", 0, 0],
        [3, 3, "support", 0, 3],
        [2, 1, "support", 1, 1],
    ]
    # collapsing drops c3's second b and c4's second d; reach, starts and ends stay
    assert collapsed.loc[["a", "b", "c", "d"], cols].values.tolist() == [
        [3, 3, "web", 3, 0],
        [2, 2, "web", 0, 0],
        [3, 3, "support", 0, 3],
        [1, 1, "support", 1, 1],
    ]
    assert collapsed.index.tolist() == ["a", "c", "b", "d"]  # most frequent first, ties by name
    # the picker's list: every activity, counted before collapsing, most frequent first
    assert counts.values.tolist() == [["a", 3], ["b", 3], ["c", 3], ["d", 2]]


def _noisy_log(seed: int, n: int, cases: int, zipf: float, activities: int, minutes: int) -> pd.DataFrame:
    """A generated pm4py-style log: ``n`` steps of ``cases`` cases, Zipf-distributed activity names,
    whole minutes (plenty of equal times, so the tie-break by name matters)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "case:concept:name": [f"k{i}" for i in rng.integers(0, cases, n)],
            "concept:name": [f"s{i}" for i in rng.zipf(zipf, n) % activities],
            "time:timestamp": T0 + pd.to_timedelta(rng.integers(0, minutes, n), unit="min"),
        }
    )


def _pandas_steps(frame: pd.DataFrame, *, rename: dict, top_n: int, collapse: bool) -> pd.DataFrame:
    """The log's steps with the noise controls, step by step in pandas: ``case, act, ts`` renamed,
    the top N kept (the rest ``(other)``), in case and time order (ties by name), repeats collapsed."""
    f = frame.rename(columns={"case:concept:name": "case", "concept:name": "act", "time:timestamp": "ts"})
    f["act"] = f["act"].map(lambda a: rename.get(a, a))
    n = f.groupby("act").size().reset_index(name="n").sort_values(["n", "act"], ascending=[False, True])
    f["act"] = f["act"].where(f["act"].isin(set(n["act"].head(top_n))), jr.OTHER)
    f = f.sort_values(["case", "ts", "act"], kind="stable")
    return f[f["act"] != f.groupby("case")["act"].shift(1)] if collapse else f


def _pandas_dfg(frame: pd.DataFrame, *, rename: dict, top_n: int, collapse: bool, min_share: float) -> pd.DataFrame:
    """The directly-follows graph with the noise controls, computed step by step in pandas."""
    f = _pandas_steps(frame, rename=rename, top_n=top_n, collapse=collapse)
    g = f.groupby("case")
    f = f.assign(target=g["act"].shift(-1), secs=(g["ts"].shift(-1) - f["ts"]).dt.total_seconds())
    n_cases = f["case"].nunique()
    pairs = f.dropna(subset=["target"]).rename(columns={"act": "source"})
    share = pairs.groupby(["source", "target"])["case"].transform("size") / len(pairs)
    small = share < min_share
    pairs.loc[small, ["source", "target"]] = jr.OTHER
    out = pairs.groupby(["source", "target"]).agg(
        count=("case", "size"),
        customers=("case", "nunique"),
        median_seconds=("secs", "median"),
        p90_seconds=("secs", lambda s: s.quantile(0.9)),
        mean_seconds=("secs", "mean"),
    )
    out["share"] = out["count"] / len(pairs)
    out["customer_share"] = out["customers"] / n_cases
    return out


def test_dfg_with_every_noise_control_equals_a_pandas_computation():
    frame = _noisy_log(12, 6000, cases=300, zipf=1.5, activities=14, minutes=5000)
    controls = dict(rename={"s7": "s1", "s9": "s1", "s3": "three"}, top_n=6, collapse=True, min_share=0.02)
    exp = _pandas_dfg(frame, **controls)
    spec = jr.LogSpec(rename=controls["rename"], top_n=controls["top_n"], collapse_repeats=True)
    engine = _duck()
    with engine.begin() as conn:
        t = jr.event_log_table(conn, frame, "noisy")
        got = jr.discover_dfg(conn, t, spec, min_share=controls["min_share"], **PM4PY_KEYS)
        edge = exp.drop(index=(jr.OTHER, jr.OTHER), errors="ignore")["count"].idxmax()
        cohort = jr.edge_customers(conn, t, *edge, spec, **PM4PY_KEYS)
    got = got.set_index(["source", "target"])
    # both kinds of "(other)": the pooled rare edges, and the activities beyond the top N
    assert (jr.OTHER, jr.OTHER) in got.index
    assert any(jr.OTHER in edge and edge != (jr.OTHER, jr.OTHER) for edge in got.index)
    assert sorted(got.index) == sorted(exp.index)
    for col in ("count", "customers"):
        assert got.loc[exp.index, col].tolist() == exp[col].tolist(), col
    for col in ("median_seconds", "p90_seconds", "mean_seconds", "share", "customer_share"):
        assert np.allclose(got.loc[exp.index, col].to_numpy(float), exp[col].to_numpy(float)), col
    # the edge's cohort is the same set of steps: its cases and times add up to the edge
    assert cohort["times"].sum() == exp.loc[edge, "count"] and len(cohort) == exp.loc[edge, "customers"]


def _pandas_anchor_paths(frame: pd.DataFrame, anchor: str, *, rename: dict, top_n: int, before: bool, steps: int):
    """Each case's whole path into (out of) its first ``anchor``, counted per path, computed step by
    step in pandas with the same noise controls: renamed, top N, repeats collapsed."""
    f = _pandas_steps(frame, rename=rename, top_n=top_n, collapse=True)
    paths: dict[str, int] = {}
    for _, acts in f.groupby("case")["act"]:
        acts = acts.tolist()
        if anchor not in acts:
            continue
        at = acts.index(anchor)
        path = acts[max(at - steps, 0) : at + 1] if before else acts[at : at + steps + 1]
        key = "\x1f".join(path)
        paths[key] = paths.get(key, 0) + 1
    return paths


@pytest.mark.parametrize("anchor", ["s1", jr.OTHER])
@pytest.mark.parametrize("direction", ["before", "after"])
def test_anchor_paths_with_noise_controls_equal_a_pandas_computation(anchor, direction):
    """The paths read only the cases that reach the anchor; which cases those are is decided on the
    activities as renamed and after top N. Here ``s1`` is also what ``s7`` and ``s9`` are renamed to,
    and ``(other)`` exists only after top N: a case reaching either through the controls alone counts."""
    frame = _noisy_log(5, 5000, cases=400, zipf=1.4, activities=15, minutes=4000)
    rename = {"s7": "s1", "s9": "s1"}
    exp = _pandas_anchor_paths(frame, anchor, rename=rename, top_n=5, before=direction == "before", steps=3)
    by_rename_alone = frame.groupby("case:concept:name")["concept:name"].apply(
        lambda a: not a.eq("s1").any() and a.isin(["s7", "s9"]).any()
    )
    assert by_rename_alone.any(), "some case must reach s1 only through the rename"
    spec = jr.LogSpec(rename=rename, top_n=5, collapse_repeats=True)
    engine = _duck()
    with engine.begin() as conn:
        t = jr.event_log_table(conn, frame, "anchored")
        got = jr.anchor_paths(conn, t, anchor, direction=direction, steps=3, top=10_000, spec=spec, **PM4PY_KEYS)
    assert len(exp) > 10
    assert dict(zip(got["path"], got["customers"], strict=True)) == exp
    assert got["customers"].sum() == sum(exp.values())  # every case that reaches the anchor, once


# ----------------------------------------------------------------------------- friction, both backends

CRM = (
    "customer_id,email,phone,signup_date\nC1,one@x.com,5550001111,2023-01-01\nC2,two@x.com,,2023-01-01\n"
    "C3,three@x.com,,2023-01-01\nC4,four@x.com,,2023-01-01\n"
)
TICKETS = (
    "ticket_id,customer_id,opened_at,closed_at,channel,topic,transfers,department\n"
    "T1,C1,2024-01-01 09:00,2024-01-01 10:00,chat,billing,0,billing\n"
    "T2,C1,2024-01-03 09:00,2024-01-03 10:00,phone,billing,0,support\n"  # repeat of T1 (2 days)
    "T3,C1,2024-01-20 09:00,2024-01-20 10:00,email,billing,0,billing\n"  # 17 days later: not a repeat
    "T4,C2,2024-01-01 09:00,2024-01-02 09:00,chat,login,2,support\n"  # transferred
    "T5,C2,2024-01-04 09:00,2024-01-04 10:00,chat,billing,0,billing\n"  # other topic: not a repeat
    "T6,C3,2024-02-01 09:00,2024-02-01 10:00,web_form,how_to,0,support\n"
    "T7,C3,2024-02-09 09:00,2024-02-09 10:00,phone,how_to,0,support\n"  # 8 days: repeat only with a 10-day window
    "T8,C4,2024-03-01 12:00,2024-03-01 13:00,chat,checkout,0,tech\n"
)
WEB = (
    "customer_id,timestamp,activity\n"
    "C1,2024-01-02 20:00,help_page\n"
    "C4,2024-03-01 10:00,checkout\nC4,2024-03-01 10:01,checkout_error\nC4,2024-03-01 10:05,help_page\n"
)


def _load_tiny_company(store, tmp_path):
    files = {"crm.csv": CRM, "tickets.csv": TICKETS, "web.csv": WEB}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    ingest_file(
        store,
        tmp_path / "crm.csv",
        source="crm",
        kind="customers",
        department="sales",
        mapping=Mapping(
            "customers",
            {"customer_id": "customer_id", "email": "email", "phone": "phone", "signup_date": "signup_date"},
        ),
    )
    ingest_file(
        store,
        tmp_path / "tickets.csv",
        source="helpdesk",
        kind="tickets",
        department="support",
        mapping=Mapping(
            "tickets",
            {
                c: c
                for c in (
                    "ticket_id",
                    "customer_id",
                    "opened_at",
                    "closed_at",
                    "channel",
                    "topic",
                    "transfers",
                    "department",
                )
            },
        ),
    )
    ingest_file(
        store,
        tmp_path / "web.csv",
        source="web",
        kind="events",
        department="web",
        mapping=Mapping("events", {"customer_id": "customer_id", "timestamp": "timestamp", "activity": "activity"}),
    )


def _moments(conn, **kw):
    m, names = jr.friction_moments(**kw), jr.case_names()
    rows = conn.execute(
        sa.select(m.c.hotspot, names.c.name, m.c.ts, m.c.leaked_department, m.c.absorbed_department)
        .join_from(m, names, names.c.case_id == m.c.cx_key)
        .order_by(m.c.hotspot, names.c.name, m.c.ts)
    ).all()
    return [(h, c, pd.Timestamp(t).strftime("%m-%d %H:%M"), lk, ab) for h, c, t, lk, ab in rows]


def test_friction_moments_by_hand_on_both_backends(store, tmp_path):
    _load_tiny_company(store, tmp_path)
    with store.connect() as conn:
        got = _moments(conn)
        assert got == [
            ("checkout error", "C4", "03-01 10:01", "web", "tech"),
            ("help page then contact", "C1", "01-03 09:00", "web", "support"),
            ("help page then contact", "C4", "03-01 12:00", "web", "tech"),
            ("repeat contact", "C1", "01-03 09:00", "billing", "support"),
            ("transferred ticket", "C2", "01-01 09:00", "support", "billing"),
        ]
        wider = [m for m in _moments(conn, repeat_days=10) if m[0] == "repeat contact"]
        assert [m[1] for m in wider] == ["C1", "C3"]
        dfg = jr.discover_dfg(conn, jr.journey_log())
        edges = _edges(dfg)
        # C1: signup, contact billing, resolved billing, help_page, contact billing, ... (hand-listed)
        assert edges[("contact: billing", "resolved: billing")] == (4, 2)
        assert edges[("checkout", "checkout_error")] == (1, 1)
        assert dfg["count"].sum() == 24 - 4  # 24 steps (4 signups, 16 ticket steps, 4 web) of 4 customers
        spots = jr.hotspots(conn)
        assert set(spots["hotspot"]) == {
            "checkout error",
            "help page then contact",
            "repeat contact",
            "transferred ticket",
        }
        assert spots.set_index("hotspot").loc["help page then contact", "customers"] == 2


# Checkout errors near the end of March 2024 and what each customer did next (hand-listed). A dead
# end is an error with no next step within 30 days: the next step of an error late in a period is
# often after it. D9 pushes the data's end well past every error.
DEAD_END_WEB = (
    "customer_id,timestamp,activity\n"
    "D1,2024-03-30 10:00,checkout_error\nD1,2024-04-10 10:00,pricing\n"  # 11 days on: not a dead end
    "D2,2024-03-30 10:00,checkout_error\nD2,2024-05-15 10:00,pricing\n"  # 46 days on: a dead end
    "D3,2024-03-20 10:00,checkout_error\nD3,2024-03-25 10:00,pricing\n"  # 5 days, inside March
    "D4,2024-03-31 23:00,checkout_error\nD4,2024-05-01 00:30,pricing\n"  # 30 days 1.5 hours: a dead end
    "D5,2024-03-31 20:00,checkout_error\nD5,2024-04-30 19:00,pricing\n"  # 29 days 23 hours: not
    "D6,2024-03-15 10:00,checkout_error\n"  # nothing after it: a dead end
    "D9,2024-08-01 10:00,pricing\n"
)


def test_dead_ends_of_a_period_look_past_its_end_on_both_backends(store, tmp_path):
    """A period's dead ends are the whole history's dead ends at a time inside it: an error on the
    period's last days whose next step comes after the period is one only when that step is more
    than 30 days later."""
    path = tmp_path / "web.csv"
    path.write_text(DEAD_END_WEB)
    mapping = Mapping("events", {"customer_id": "customer_id", "timestamp": "timestamp", "activity": "activity"})
    ingest_file(store, path, source="web", kind="events", department="web", mapping=mapping)
    march = dict(since=datetime(2024, 3, 1), until=datetime(2024, 4, 1))
    with store.connect() as conn:
        inside = [m[:3] for m in _moments(conn, **march) if m[0] == "dead end"]
        every = [m[:3] for m in _moments(conn) if m[0] == "dead end"]
    assert inside == [
        ("dead end", "D2", "03-30 10:00"),
        ("dead end", "D4", "03-31 23:00"),
        ("dead end", "D6", "03-15 10:00"),
    ]
    assert inside == [m for m in every if m[2].startswith("03-")]  # the whole history's, in March


def test_risk_ratio_and_its_log_confidence_interval_by_hand():
    rr, lo, hi = jr.risk_ratio(20, 100, 10, 100)
    se = math.sqrt(1 / 20 - 1 / 100 + 1 / 10 - 1 / 100)
    assert rr == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 * math.exp(-1.959963984540054 * se))
    assert hi == pytest.approx(2.0 * math.exp(1.959963984540054 * se))
    # a zero cell gives no ratio at all: no +0.5 correction inventing one
    assert all(math.isnan(v) for v in jr.risk_ratio(0, 10, 5, 10))
    assert all(math.isnan(v) for v in jr.risk_ratio(5, 10, 0, 10))


def test_masking_is_the_privacy_rule_and_csv_neutralising():
    # one masker for the whole app (cxdash.governance.privacy): the cohort file hides what every page hides
    assert jr.mask_email("Jane.Doe@example.com") == "J***@example.com"
    assert jr.mask_phone("+1 (555) 010-2233") == "***33"
    assert jr.mask_email(None) is None and pd.isna(jr.mask_phone(float("nan")))
    frame = pd.DataFrame({"cx_id": ["=HYPERLINK(1)", "+1", "-2", "@x", "\tt", "\rr", "ok"], "n": range(7)})
    text = jr.cohort_csv(frame).decode()
    lines = text.splitlines()
    assert lines[1].startswith("'=HYPERLINK") and lines[2].startswith("'+1") and lines[3].startswith("'-2")
    assert lines[4].startswith("'@x") and "'\tt" in text and "'\rr" in text and "\nok,6" in text


# ----------------------------------------------------------------------------- the demo company


@pytest.fixture(scope="module")
def demo(demo_store):
    s = open_store(demo_store["url"], create=False)
    yield s
    s.dispose()


def test_demo_dfg_equals_an_independent_pandas_computation(demo):
    with demo.connect() as conn:
        jl = jr.journey_log()
        order = ["load_id", "row_number", "row_step"]
        raw = pd.DataFrame(
            conn.execute(sa.select(jl.c.cx_key, jl.c.activity, jl.c.ts, *(jl.c[o] for o in order))).all(),
            columns=["cx_key", "activity", "ts", *order],
        )
        ours = jr.discover_dfg(conn, jl)
    # steps at the same time keep the files' order (load, line, step of the line)
    raw = raw.sort_values(["cx_key", "ts", *order], kind="stable")
    g = raw.groupby("cx_key")
    raw["target"] = g["activity"].shift(-1)
    raw["secs"] = (g["ts"].shift(-1) - raw["ts"]).dt.total_seconds()
    pairs = raw.dropna(subset=["target"])
    exp = pairs.groupby(["activity", "target"]).agg(
        count=("cx_key", "size"), customers=("cx_key", "nunique"), median=("secs", "median")
    )
    got = ours.set_index(["source", "target"])
    assert len(got) == len(exp) > 100
    assert exp["count"].tolist() == got.loc[exp.index, "count"].tolist()
    assert exp["customers"].tolist() == got.loc[exp.index, "customers"].tolist()
    assert np.allclose(exp["median"].to_numpy(), got.loc[exp.index, "median_seconds"].to_numpy())


def test_demo_handoffs_equal_an_independent_pandas_computation(demo):
    """The coded one-window handoffs against the steps in pandas: same order (case, time, then the
    files' order), department changes counted with their waits."""
    with demo.connect() as conn:
        jl = jr.journey_log()
        order = ["load_id", "row_number", "row_step"]
        raw = pd.DataFrame(
            conn.execute(
                sa.select(jl.c.cx_key, jl.c.activity, jl.c.ts, jl.c.department, *(jl.c[o] for o in order))
            ).all(),
            columns=["cx_key", "activity", "ts", "department", *order],
        )
        ours = jr.discover_handoffs(conn, jl, department_key="department")
    raw = raw.sort_values(["cx_key", "ts", *order], kind="stable")
    g = raw.groupby("cx_key")
    raw["to"] = g["department"].shift(-1)
    raw["secs"] = (g["ts"].shift(-1) - raw["ts"]).dt.total_seconds()
    moves = raw[raw["to"].notna() & (raw["to"] != raw["department"])]
    exp = moves.groupby(["department", "to"]).agg(
        count=("cx_key", "size"),
        customers=("cx_key", "nunique"),
        median=("secs", "median"),
        p90=("secs", lambda v: v.quantile(0.9)),
    )
    got = ours.set_index(["source_department", "target_department"])
    assert len(got) == len(exp) >= 6
    assert exp["count"].tolist() == got.loc[exp.index, "count"].tolist()
    assert exp["customers"].tolist() == got.loc[exp.index, "customers"].tolist()
    assert np.allclose(exp["median"].to_numpy(), got.loc[exp.index, "median_seconds"].to_numpy())
    assert np.allclose(exp["p90"].to_numpy(), got.loc[exp.index, "p90_seconds"].to_numpy())
    assert ours["count"].is_monotonic_decreasing


def named_log(jl: sa.FromClause) -> sa.Subquery:
    """The journey log with each case named by its customer id (text ``cx_id``) instead of its
    integer key: the same journeys in the other shape an event log can have."""
    names = jr.case_names()
    return (
        sa.select(names.c.name.label("cx_id"), *[c for c in jl.c if c.key != "cx_key"])
        .join_from(jl, names, names.c.case_id == jl.c.cx_key)
        .subquery("named_log")
    )


def _named(per_key: sa.FromClause) -> sa.Subquery:
    """A per-customer selectable keyed on ``case_id`` = cx_key, re-keyed on the customer id."""
    names = jr.case_names()
    rest = [c for c in per_key.c if c.key != "case_id"]
    return (
        sa.select(names.c.name.label("case_id"), *rest)
        .join_from(per_key, names, names.c.case_id == per_key.c.case_id)
        .subquery()
    )


def test_the_pages_journeys_equal_the_same_journeys_cased_by_customer_id(demo):
    """The page reads the journey log, whose cases are integer customer keys; every result equals
    the library's on the same log with each case named by its text customer id instead (the shape
    of an uploaded event log), customers named by cx_id where the result lists them."""
    from dataclasses import replace

    from cxdash.jobs import views

    run = views.COMPUTATIONS
    f = views.DEFAULT_MAP_FILTERS
    spec, jl = replace(f.spec(), case_key="cx_id"), named_log(jr.journey_log())
    params = views.map_params(f)
    wide = views.map_params(views.path_filters(f))
    with demo.connect() as conn:
        edge = jr.dfg_counts(conn, jl, spec).iloc[0]
        steps = ["pricing", "checkout", "purchase"]
        pairs = {
            "dfg": (run["journeys.dfg"](conn, **params), jr.discover_dfg(conn, jl, spec, min_share=f.min_share)),
            "nodes": (run["journeys.nodes"](conn, **params), jr.activity_nodes(conn, jl, spec)),
            "paths": (
                run["journeys.paths"](conn, **wide, anchor="cancel_page", direction="before", steps=5),
                jr.anchor_paths(conn, jl, "cancel_page", direction="before", steps=5, spec=replace(spec, top_n=None)),
            ),
            "paths after": (
                run["journeys.paths"](conn, **wide, anchor="pricing", direction="after", steps=3),
                jr.anchor_paths(conn, jl, "pricing", direction="after", steps=3, spec=replace(spec, top_n=None)),
            ),
            "variants": (
                run["journeys.variants"](conn, **params, max_steps=5, rarest=False, contains=""),
                jr.discover_variants(
                    conn, jl, spec, outcomes=_named(jr.customer_outcomes(conn)), max_steps=5, limit=30
                ),
            ),
            "funnel": (
                run["journeys.funnel"](conn, steps=steps, days=30, by_segment=True),
                jr.funnel(conn, jl, steps, window_days=30, segments=_named(jr.customer_segments()), case_key="cx_id"),
            ),
            "handoffs": (
                run["journeys.handoffs"](conn),
                jr.discover_handoffs(conn, jl, department_key="department", case_key="cx_id"),
            ),
            "edge cohort": (
                run["journeys.edge_customers"](conn, **params, source=edge["source"], target=edge["target"]),
                jr.edge_customers(conn, jl, edge["source"], edge["target"], spec),
            ),
        }
        activities = run["journeys.activities"](conn, **views.map_params(views.activity_filters(f)))
        by_id = jr.activity_counts(conn, jl, replace(views.activity_filters(f).spec(), case_key="cx_id"))
        assert activities == by_id["activity"].tolist()
    for name, (by_key, by_id) in pairs.items():
        assert len(by_id), f"{name}: an empty comparison proves nothing"
        pd.testing.assert_frame_equal(by_key, by_id, check_dtype=False, obj=name)
    assert pairs["edge cohort"][0]["case_id"].str.startswith("CUS-").all()  # named, not numbered


def test_the_pages_hotspots_and_cohorts_equal_the_librarys(demo):
    """The page's hotspots and every hotspot's cohort (all of its customers, named) are the
    library's on the whole history."""
    from cxdash.jobs import views

    run = views.COMPUTATIONS
    with demo.connect() as conn:
        spots = jr.hotspots(conn, repeat_days=7)
        pairs = {"hotspots": (run["journeys.hotspots"](conn, repeat_days=7), spots)}
        for spot in spots["hotspot"]:
            pairs[f"hotspot cohort {spot}"] = (
                run["journeys.hotspot_customers"](conn, hotspot=spot, repeat_days=7),
                jr.hotspot_customers(conn, spot, repeat_days=7, limit=None),  # the page lists every one
            )
    assert len(pairs) >= 5
    for name, (page, library) in pairs.items():
        assert len(library), f"{name}: an empty comparison proves nothing"
        pd.testing.assert_frame_equal(page, library, check_dtype=False, obj=name)
        if name != "hotspots":
            assert library["cx_id"].str.startswith("CUS-").all() and library["cx_id"].is_unique


def test_demo_repeat_contacts_equal_a_pandas_count(demo):
    k, im = KIND_TABLES["tickets"], identity_map_table
    with demo.connect() as conn:
        t = pd.DataFrame(
            conn.execute(
                sa.select(im.c.cx_id, k.c.opened_at, k.c.topic).select_from(k.join(im, im.c.id_key == k.c.id_key))
            ).all(),
            columns=["cx_id", "opened", "topic"],
        )
        m = jr.friction_moments()
        n_sql = conn.execute(sa.select(sa.func.count()).select_from(m).where(m.c.hotspot == "repeat contact")).scalar()
    t["topic"] = t["topic"].fillna("other")
    pairs = t.merge(t, on=["cx_id", "topic"], suffixes=("", "_prev"))
    gap = (pairs["opened"] - pairs["opened_prev"]).dt.total_seconds()
    repeats = pairs[(gap > 0) & (gap <= 7 * 86400)].drop_duplicates(["cx_id", "opened", "topic"])
    assert n_sql == len(repeats) > 50


def test_the_demos_planted_friction_tops_the_hotspot_ranking_with_lift_above_one(demo):
    with demo.connect() as conn:
        spots = jr.hotspots(conn)
    top = spots.head(4).set_index("hotspot")
    for planted in ("checkout error", "transferred ticket", "repeat contact"):
        assert planted in top.index, spots[["hotspot", "lift", "excess_churned"]]
        assert top.loc[planted, "lift"] > 1 and top.loc[planted, "ci_low"] > 1 and top.loc[planted, "significant"]
        assert top.loc[planted, "revenue_at_stake"] > 0
    assert (spots["excess_churned"].diff().dropna() <= 1e-9).all()  # ranked
    with demo.connect() as conn:
        cohort = jr.hotspot_customers(conn, "checkout error", limit=None)
        assert len(cohort) == spots.set_index("hotspot").loc["checkout error", "customers"]
        assert cohort["email"].str.contains(r"\*\*\*@").all()
        assert not cohort["email"].str.contains(r"^[a-z]{2,}@", regex=True).any()
        journey = jr.customer_journey(conn, cohort["cx_id"].iloc[0])
        assert "checkout_error" in set(journey["activity"])


def test_cli_prints_the_edges_as_json(demo_store):
    from cxdash.cli.main import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["--db", demo_store["url"], "journeys", "--json"]) == 0
    edges = json.loads(buf.getvalue())
    assert {"source", "target", "count", "customers", "median_seconds"} <= set(edges[0])
    s = open_store(demo_store["url"], create=False)
    with s.connect() as conn:
        jl = jr.journey_log()
        steps, customers = conn.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(jl.c.cx_key)))).one()
    s.dispose()
    assert sum(e["count"] for e in edges) == steps - customers  # every step but each customer's last


def test_a_carriage_return_in_a_cohort_cell_cannot_start_a_row_of_its_own():
    import csv
    import io

    frame = pd.DataFrame({"cx_id": ["C1", "C2"], "note": ["fine", 'line\r=HYPERLINK("x")']})
    rows = list(csv.reader(io.StringIO(jr.cohort_csv(frame).decode("utf-8-sig"), newline="")))
    assert rows == [["cx_id", "note"], ["C1", "fine"], ["C2", 'line\r=HYPERLINK("x")']]
