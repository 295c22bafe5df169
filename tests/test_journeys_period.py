"""Journeys under the period shared with Shared KPIs (issue 16): every figure is computed on the
steps inside the period and equals a plain-pandas computation on the same rows; the paths view
draws whole paths that all reach the chosen step; handoffs read as a department-by-department
table; the drill-down lists every customer it counts and its export says who is left out."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from cxdash import journeys as jr
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import views
from cxdash.store.database import open_store
from cxdash.store.version import data_version

CRM = "id,mail,joined,consent\nC1,a@x.org,2023-06-01,true\nC2,b@x.org,2023-06-02,false\nC3,c@x.org,2023-06-03,true\nC4,d@x.org,2023-06-04,true\n"
CRM_MAP = Mapping.from_dict(
    {
        "kind": "customers",
        "columns": {"customer_id": "id", "email": "mail", "signup_date": "joined", "consent_marketing": "consent"},
    }
)
# C1..C4 have a CRM record; V8 and V9 are visitors known only by the id on their events.
EVENTS = """customer_id,timestamp,activity,department
C1,2024-01-20 09:00,home,web
C1,2024-02-01 09:00,home,web
C1,2024-02-02 09:00,pricing,web
C1,2024-02-03 09:00,contact,support
C1,2024-02-10 09:00,invoice,billing
C1,2024-03-05 09:00,cancel,web
C2,2024-02-05 10:00,home,web
C2,2024-02-05 10:05,contact,support
C2,2024-02-08 10:00,pricing,web
C2,2024-02-20 10:00,invoice,billing
C3,2024-01-10 08:00,home,web
C3,2024-03-03 08:00,home,web
C4,2024-02-14 12:00,pricing,web
C4,2024-02-15 12:00,cancel,web
V9,2024-02-02 11:00,home,web
V9,2024-02-02 11:10,pricing,web
V8,2024-01-05 07:00,home,web
"""
EVENTS_MAP = Mapping.from_dict(
    {
        "kind": "events",
        "columns": {
            "customer_id": "customer_id",
            "timestamp": "timestamp",
            "activity": "activity",
            "department": "department",
        },
    }
)
FIRST, LAST = date(2024, 2, 1), date(2024, 2, 29)
PERIOD = views.period_params(FIRST, LAST)
PLAIN = jr.MapFilters(min_share=0.0, top_n=None, collapse=False, by_department=False, rename=())


@pytest.fixture
def loaded(store, tmp_path):
    for name, text, source, mapping in (("crm.csv", CRM, "crm", CRM_MAP), ("web.csv", EVENTS, "web", EVENTS_MAP)):
        (tmp_path / name).write_text(text)
        ingest_file(store, tmp_path / name, source=source, mapping=mapping)
    return store


def _in_period() -> pd.DataFrame:
    """The fixture's event rows inside [FIRST, LAST], in journey order (time, then file order)."""
    frame = pd.read_csv(pd.io.common.StringIO(EVENTS), parse_dates=["timestamp"])
    frame["line"] = range(len(frame))
    start, end = datetime(2024, 2, 1), datetime(2024, 3, 1)
    inside = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
    return inside.sort_values(["customer_id", "timestamp", "line"]).reset_index(drop=True)


def _pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Each step with the customer's next step (pandas shift), the last step of each dropped."""
    nxt = frame.groupby("customer_id").shift(-1)
    out = frame.assign(target=nxt["activity"], target_department=nxt["department"], next_ts=nxt["timestamp"]).dropna(
        subset=["target"]
    )
    out["seconds"] = (out["next_ts"] - out["timestamp"]).dt.total_seconds()
    return out


def test_the_journey_map_under_a_period_counts_only_the_steps_inside_it_as_pandas_does(loaded):
    with loaded.connect() as conn:
        dfg = views.COMPUTATIONS["journeys.dfg"](conn, **views.map_params(PLAIN, PERIOD))
    pairs = _pairs(_in_period())
    expected = (
        pairs.groupby(["activity", "target"])
        .agg(count=("customer_id", "size"), customers=("customer_id", "nunique"))
        .reset_index()
        .rename(columns={"activity": "source"})
        .sort_values(["source", "target"])
        .reset_index(drop=True)
    )
    got = dfg[["source", "target", "count", "customers"]].sort_values(["source", "target"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # C1's January home and March cancel are outside: home -> home and invoice -> cancel are not drawn
    assert not ((got["source"] == "home") & (got["target"] == "home")).any()
    assert "invoice" not in set(got["source"])
    assert "cancel" in set(got["target"])  # C4's cancel is in February


def test_identified_customers_and_anonymous_visitors_in_the_period_are_counted_apart(loaded):
    with loaded.connect() as conn:
        people = views.COMPUTATIONS["journeys.people"](conn, **views.people_params(PERIOD))
        everyone = views.COMPUTATIONS["journeys.people"](conn)
    inside = _in_period()
    crm = {"C1", "C2", "C3", "C4"}
    ids = set(inside["customer_id"])
    assert people == {"identified": len(ids & crm), "anonymous": len(ids - crm)} == {"identified": 3, "anonymous": 1}
    assert everyone == {"identified": 4, "anonymous": 2}  # C3 and V8 have steps only outside February


def test_the_handoff_matrix_under_a_period_equals_a_pandas_pivot_of_department_changes(loaded):
    with loaded.connect() as conn:
        hand = views.COMPUTATIONS["journeys.handoffs"](conn, **views.handoffs_params(PERIOD))
    pairs = _pairs(_in_period())
    moves = pairs[pairs["department"] != pairs["target_department"]]
    departments = sorted(set(moves["department"]) | set(moves["target_department"]))
    customers = moves.pivot_table(
        index="department", columns="target_department", values="customer_id", aggfunc="nunique"
    ).reindex(index=departments, columns=departments)
    median = moves.pivot_table(
        index="department", columns="target_department", values="seconds", aggfunc="median"
    ).reindex(index=departments, columns=departments)
    got_customers = jr.handoff_matrix(hand, "customers")
    got_median = jr.handoff_matrix(hand, "median_seconds")
    assert list(got_customers.index) == list(got_customers.columns) == departments
    for got, want in ((got_customers, customers), (got_median, median)):
        pd.testing.assert_frame_equal(got.astype("float"), want.astype("float"), check_names=False, rtol=1e-9)
    # web -> support happened twice in February: C1 after a day, C2 after five minutes
    assert got_customers.loc["web", "support"] == 2
    assert got_median.loc["web", "support"] == pytest.approx((86400 + 300) / 2)


def _expected_paths(anchor: str, direction: str, steps: int) -> pd.Series:
    """customers per whole path around each customer's first ``anchor`` in the period (pandas)."""
    out = {}
    for customer, g in _in_period().groupby("customer_id"):
        acts = g["activity"].tolist()
        if anchor not in acts:
            continue
        i = acts.index(anchor)
        path = acts[max(0, i - steps) : i + 1] if direction == "before" else acts[i : i + steps + 1]
        out[customer] = tuple(path)
    return pd.Series(out).value_counts()


@pytest.mark.parametrize("direction", ["before", "after"])
def test_whole_paths_around_a_step_in_the_period_equal_pandas_and_every_ribbon_reaches_the_step(loaded, direction):
    anchor = "pricing" if direction == "before" else "home"
    with loaded.connect() as conn:
        every = views.COMPUTATIONS["journeys.paths"](conn, **views.paths_params(PLAIN, anchor, direction, 5, PERIOD))
        top_one = jr.anchor_paths(
            conn,
            jr.journey_log(since=datetime(2024, 2, 1), until=datetime(2024, 3, 1)),
            anchor,
            direction=direction,
            steps=5,
            top=1,
        )
    expected = _expected_paths(anchor, direction, 5)
    got = pd.Series(every["customers"].to_numpy(), index=[tuple(jr.path_steps(p)) for p in every["path"]])
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()
    # top 1: the busiest path, and one (other paths) row pooling the rest exactly
    assert len(top_one) == 2 and top_one["path"].iloc[1] == jr.OTHER_PATHS
    assert int(top_one["customers"].iloc[0]) == int(expected.max())
    assert int(top_one["customers"].iloc[1]) == int(expected.sum() - expected.max())
    assert int(top_one["paths"].iloc[1]) == len(expected) - 1

    for paths in (every, top_one):
        links = jr.path_links(paths, anchor, direction)
        assert len(links)
        node = (0, anchor)
        if direction == "before":
            sources = set(zip(links["source_offset"], links["source"], strict=True))
            # every link ends at the step or at a node that itself leads on: no ribbon ends nowhere
            for offset, target in zip(links["target_offset"], links["target"], strict=True):
                assert (offset, target) == node or (offset, target) in sources
            assert (links["target_offset"] <= 0).all()
        else:
            targets = set(zip(links["target_offset"], links["target"], strict=True))
            for offset, source in zip(links["source_offset"], links["source"], strict=True):
                assert (offset, source) == node or (offset, source) in targets
            assert (links["source_offset"] >= 0).all()
        into = (
            links[(links["target_offset"] == 0) & (links["target"] == anchor)]
            if direction == "before"
            else (links[(links["source_offset"] == 0) & (links["source"] == anchor)])
        )
        alone = int(paths.loc[paths["steps"] == 1, "customers"].sum())
        assert int(into["customers"].sum()) + alone == int(expected.sum())  # every customer reaches the step


def test_friction_moments_of_a_period_are_the_whole_historys_moments_at_a_time_inside_it(demo_store):
    """Independently: all moments fetched without a period, filtered by time in pandas."""
    from cxdash.store.database import open_store

    store = open_store(demo_store["url"], create=False)
    since, until = datetime(2026, 1, 1), datetime(2026, 4, 1)
    try:
        with store.connect() as conn:
            import sqlalchemy as sa

            every = jr.friction_moments()
            frame = pd.DataFrame(conn.execute(sa.select(every.c.cx_key, every.c.ts, every.c.hotspot)).all())
            inside = jr.friction_moments(since=since, until=until)
            got = pd.DataFrame(conn.execute(sa.select(inside.c.cx_key, inside.c.ts, inside.c.hotspot)).all())
    finally:
        store.dispose()
    frame.columns = got.columns = ["cx_key", "ts", "hotspot"]
    expected = frame[(frame["ts"] >= since) & (frame["ts"] < until)]
    assert 0 < len(expected) < len(frame)
    key = ["cx_key", "ts", "hotspot"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
    )


def test_the_drill_down_lists_every_customer_its_hotspot_counts_and_the_export_adds_up(demo_store):
    """For every hotspot of the default period: the cohort has as many rows as the hotspot's
    customer count (no row cap), and the exported rows plus those left out for consent are the
    cohort; the file's data rows are the exported count."""
    import io

    from cxdash.governance import privacy
    from cxdash.store.database import open_store

    store = open_store(demo_store["url"], create=False)
    try:
        with store.connect() as conn:
            computed: dict = {}
            spots_params = views.default_params(conn, "journeys.hotspots", computed)
            spots = views.COMPUTATIONS["journeys.hotspots"](conn, **spots_params)
            allowed = privacy.consented_customers(conn)
            assert "period" in spots_params  # the default view is the shared default period
            for hotspot, customers in zip(spots["hotspot"], spots["customers"], strict=True):
                params = {k: v for k, v in spots_params.items() if k not in ("shape",)}
                cohort = views.COMPUTATIONS["journeys.hotspot_customers"](conn, hotspot=hotspot, **params)
                assert len(cohort) == int(customers), hotspot
                assert cohort["cx_id"].is_unique
                outreach, left_out = privacy.keep_consented(cohort, allowed)
                assert len(outreach) + left_out == len(cohort)
                assert left_out == int((~cohort["cx_id"].isin(allowed)).sum())  # exactly the non-consenting
                rows = pd.read_csv(io.BytesIO(jr.cohort_csv(outreach)))
                assert len(rows) == len(outreach)
    finally:
        store.dispose()
    assert len(spots) >= 3


def test_who_to_call_names_the_sources_owner_and_spells_out_a_department_with_no_owner():
    from cxdash.governance.sources import department_name, responsible

    owners = pd.DataFrame(
        {
            "name": ["billing", "subscriptions", "helpdesk", "web"],
            "kind": ["transactions", "subscriptions", "tickets", "events"],
            "department": ["billing", "billing", "support", "web"],
            "owner": ["Billing ops (Lee)", "Billing ops (Lee)", "support", None],
        }
    )
    assert responsible("billing", owners) == ("Billing ops (Lee), owner of the billing and subscriptions sources", True)
    assert responsible("support", owners) == ("Customer support team (support), owner of the helpdesk source", True)
    assert responsible("tech", owners) == ("Technology (tech): owner not recorded", False)
    assert responsible("web", owners) == ("Web / digital (web): owner not recorded", False)  # no owner on it
    assert department_name("ops") == "ops"  # an unknown code is shown as written, never guessed


def test_a_shared_period_label_counts_both_days():
    from cxdash.ui.period import label

    assert label(date(2024, 2, 1), date(2024, 2, 29)) == "1 Feb 2024 – 29 Feb 2024 (29 days)"
    assert label(date(2024, 2, 1), date(2024, 2, 1)) == "1 Feb 2024 – 1 Feb 2024 (1 day)"


def test_the_kept_journey_map_is_never_served_for_another_stores_data(tmp_path):
    """The page's graph and nodes come from one query and the pair is kept for the second view
    (``views._journey_map``). A store emptied and filled again at the same URL reaches the same
    data version with other rows: its graph and nodes are its own, not the kept ones."""
    url = f"duckdb:///{tmp_path / 'same.duckdb'}"
    params = views.map_params(PLAIN, PERIOD)
    got = []
    for events in (EVENTS, EVENTS.replace(",pricing,", ",plans,")):
        (tmp_path / "same.duckdb").unlink(missing_ok=True)
        store = open_store(url)
        (tmp_path / "web.csv").write_text(events)
        ingest_file(store, tmp_path / "web.csv", source="web", mapping=EVENTS_MAP)
        with store.connect() as conn:
            got.append((views.COMPUTATIONS["journeys.dfg"](conn, **params), data_version(conn)))
            nodes = views.COMPUTATIONS["journeys.nodes"](conn, **params)
        store.dispose()
        assert set(nodes["activity"]) == set(got[-1][0]["source"]) | set(got[-1][0]["target"])
    (first, v1), (second, v2) = got
    assert v1 == v2  # the same version: only the stamp tells the two apart
    assert "pricing" in set(first["source"]) and "pricing" not in set(second["source"])
    assert "plans" in set(second["source"]) and "plans" in set(nodes["activity"])
