"""DuckDB and PostgreSQL give the same numbers: the KPI, journey and model-feature queries run on
both engines over the same 300-customer demo company, and every result is compared.

Runs only when a PostgreSQL server is given (``CXDASH_TEST_PG_URL``; ``make test`` starts one).
Rows are compared after sorting; floats with a relative tolerance (the engines sum and take
percentiles in different orders).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.demo.build import build_demo
from tests.conftest import make_store

pytestmark = pytest.mark.postgres

N_CUSTOMERS, SEED = 300, 5
RTOL = 1e-6


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(duckdb store, postgresql store), each holding the same demo company."""
    root = tmp_path_factory.mktemp("parity")
    pg = make_store("postgresql", root)  # skips without a server
    duck = make_store("duckdb", root)
    for store, name in ((duck, "duck"), (pg, "pg")):
        build_demo(store, n_customers=N_CUSTOMERS, seed=SEED, out_dir=root / f"extracts_{name}")
    yield duck, pg
    duck.dispose()
    pg.dispose()


def _both(engines, fn):
    out = []
    for store in engines:
        with store.connect() as conn:
            out.append(fn(conn))
    return out


def _plain(value):
    """One value in a form both engines' drivers agree on."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, decimal.Decimal | np.floating):
        return float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime().replace(tzinfo=None)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame.copy()
    frame = frame.map(_plain).astype(object)
    keys = [c for c in frame.columns if not any(isinstance(v, float) for v in frame[c])]
    # sort on the non-float columns (their text form, so None sorts too), floats last as a tiebreak
    order = frame[keys].astype(str) if keys else frame.astype(str)
    return frame.loc[order.sort_values(list(order.columns), kind="stable").index].reset_index(drop=True)


def _same_value(a, b) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9)
    return a == b


def assert_same_frame(duck: pd.DataFrame, pg: pd.DataFrame, what: str) -> None:
    assert list(duck.columns) == list(pg.columns), what
    assert len(duck) == len(pg), f"{what}: {len(duck)} rows on DuckDB, {len(pg)} on PostgreSQL"
    d, p = _normalised(duck), _normalised(pg)
    for col in d.columns:
        bad = [i for i, (a, b) in enumerate(zip(d[col], p[col], strict=True)) if not _same_value(a, b)]
        assert not bad, (
            f"{what}: column {col!r} differs in {len(bad)} rows, e.g. DuckDB {d.loc[bad[0]].to_dict()} "
            f"vs PostgreSQL {p.loc[bad[0]].to_dict()}"
        )


def assert_same_mapping(duck, pg, what: str) -> None:
    assert set(duck) == set(pg), what
    for k in duck:
        assert _same_value(duck[k], pg[k]), f"{what}: {k} is {duck[k]!r} on DuckDB, {pg[k]!r} on PostgreSQL"


# ----------------------------------------------------------------------------- the data is the same


@pytest.mark.slow
def test_both_engines_hold_the_same_company(engines):
    from cxdash.metrics.overview import source_summary

    duck, pg = _both(engines, source_summary)
    assert duck["rows"].sum() > 10_000  # a real company, not an empty comparison
    assert_same_frame(duck.drop(columns=["loaded_at"]), pg.drop(columns=["loaded_at"]), "source_summary")


# ----------------------------------------------------------------------------- KPIs


def test_headline_kpis_are_equal(engines):
    duck, pg = _both(engines, metrics.headline)
    assert duck.customers == N_CUSTOMERS
    assert_same_mapping(dataclasses.asdict(duck), dataclasses.asdict(pg), "headline")


def test_kpi_table_by_month_is_equal(engines):
    def table(conn):
        return metrics.kpi_table(
            conn, metrics.monthly_periods(metrics.as_of(conn), 6), metrics.Filters(), repeat_days=7
        )

    duck, pg = _both(engines, table)
    assert len(duck) == 6
    assert_same_frame(duck, pg, "kpi_table")


def test_kpi_report_numbers_are_equal(engines):
    def report(conn):
        return metrics.kpi_report(conn, metrics.default_period(metrics.as_of(conn)), metrics.Filters(), with_clv=False)

    duck, pg = _both(engines, report)
    assert duck.churn_basis == pg.churn_basis and duck.as_of == pg.as_of
    assert sum(v is not None for v in duck.current.values()) >= 5  # a real comparison, not of empty cards
    for part in ("current", "previous", "coverage"):
        assert_same_mapping(getattr(duck, part), getattr(pg, part), f"kpi_report.{part}")


def test_cohort_retention_and_conflicts_are_equal(engines):
    duck, pg = _both(engines, lambda c: metrics.cohort_retention(c, metrics.Filters()))
    assert_same_frame(duck, pg, "cohort_retention")
    duck, pg = _both(engines, lambda c: metrics.conflicts(c, metrics.Filters(), repeat_days=7))
    assert len(duck)
    assert_same_frame(duck, pg, "conflicts")


def test_filter_options_are_equal(engines):
    duck, pg = _both(engines, metrics.filter_options)
    assert duck == pg


# ----------------------------------------------------------------------------- journeys

PAGE_SPEC = jr.LogSpec(department_key="department", top_n=15, collapse_repeats=True)


@pytest.mark.parametrize(("spec", "min_share"), [(None, 0.0), (PAGE_SPEC, 0.005)], ids=["raw", "page-defaults"])
def test_directly_follows_graph_is_equal(engines, spec, min_share):
    duck, pg = _both(engines, lambda c: jr.discover_dfg(c, jr.journey_log(), spec, min_share=min_share))
    assert duck["count"].sum() > 1000
    assert_same_frame(duck, pg, "discover_dfg")


def test_activity_nodes_handoffs_and_variants_are_equal(engines):
    duck, pg = _both(engines, lambda c: jr.activity_nodes(c, jr.journey_log(), PAGE_SPEC))
    assert_same_frame(duck, pg, "activity_nodes")
    duck, pg = _both(engines, lambda c: jr.discover_handoffs(c, jr.journey_log(), department_key="department"))
    assert_same_frame(duck, pg, "discover_handoffs")
    duck, pg = _both(
        engines,
        lambda c: jr.discover_variants(
            c, jr.journey_log(), PAGE_SPEC, outcomes=jr.customer_outcomes(c), max_steps=5, limit=1000
        ),
    )
    assert_same_frame(duck, pg, "discover_variants")


def test_activity_list_paths_and_edge_cohort_are_equal(engines):
    duck, pg = _both(engines, lambda c: jr.activity_counts(c, jr.journey_log(), PAGE_SPEC))
    assert_same_frame(duck, pg, "activity_counts")
    duck, pg = _both(engines, lambda c: jr.paths_to(c, jr.journey_log(), "cancel_page", steps=5, spec=PAGE_SPEC))
    assert_same_frame(duck, pg, "paths_to")
    duck, pg = _both(engines, lambda c: jr.dfg_counts(c, jr.journey_log(), PAGE_SPEC))
    source, target = duck.iloc[0]["source"], duck.iloc[0]["target"]
    assert_same_frame(duck, pg, "dfg_counts")
    duck, pg = _both(
        engines, lambda c: jr.edge_customers(c, jr.journey_log(), source, target, PAGE_SPEC, case_names=jr.case_names())
    )
    assert len(duck) > 10
    assert duck["case_id"].str.startswith("CUS-").all()  # named at the edge, not numbered
    assert_same_frame(duck, pg, "edge_customers")


def test_journeys_under_a_period_are_equal(engines):
    """The Journeys page's period (issue 16): whole paths, headcounts, handoffs and hotspots of the
    90 days to the data's latest day give the same numbers on both engines."""
    from cxdash.jobs import views

    def run(name, **extra):
        def compute(conn):
            params = views.default_params(conn, name, {"journeys.activities": ["cancel_page"]})
            assert "period" in params
            return views.COMPUTATIONS[name](conn, **{**params, **extra})

        return _both(engines, compute)

    duck, pg = run("journeys.paths")
    assert len(duck) > 1
    assert_same_frame(duck, pg, "anchor_paths in the period")
    duck, pg = run("journeys.people")
    assert duck["identified"] > 0 and duck == pg
    duck, pg = run("journeys.handoffs")
    assert_same_frame(duck, pg, "handoffs in the period")
    duck, pg = run("journeys.hotspots")
    assert len(duck) >= 3
    assert_same_frame(duck, pg, "hotspots in the period")


@pytest.mark.slow
def test_friction_hotspots_are_equal(engines):
    duck, pg = _both(engines, lambda c: jr.hotspots(c, repeat_days=7))
    assert len(duck) >= 3
    assert_same_frame(duck, pg, "hotspots")
    spot = duck["hotspot"].iloc[0]
    duck, pg = _both(engines, lambda c: jr.hotspot_customers(c, spot, repeat_days=7, limit=None))
    assert len(duck) > 10 and duck["cx_id"].str.startswith("CUS-").all()
    assert_same_frame(duck, pg, "hotspot_customers")
    cx_id = str(duck["cx_id"].iloc[0])
    duck, pg = _both(engines, lambda c: jr.customer_journey(c, cx_id))
    assert len(duck) > 1
    assert_same_frame(duck, pg, "customer_journey")


# ----------------------------------------------------------------------------- model features


def test_customer_features_are_equal(engines):
    from cxdash.risk import customer_features, data_as_of

    def features(conn):
        cutoff = data_as_of(conn) - timedelta(days=60)
        return customer_features(conn, cutoff=cutoff, horizon_days=30)

    duck, pg = _both(engines, features)
    assert duck.numeric == pg.numeric and duck.categorical == pg.categorical
    assert len(duck.frame) > N_CUSTOMERS / 3
    assert duck.frame["label"].notna().any()
    assert_same_frame(duck.frame.sort_index(), pg.frame.sort_index(), "customer_features")


def test_a_few_customers_features_equal_their_rows_of_the_whole_snapshot_on_both_engines(engines):
    """The partial rescore's snapshot (``SnapshotReader(customers=..., schema=...)``, issue 17): the
    rows of 25 customers, read alone with the whole snapshot's feature typing, equal their rows of
    the whole snapshot, on each engine."""
    from cxdash.metrics.churn import candidates
    from cxdash.risk import Customers, SnapshotReader, data_as_of
    from cxdash.store.database import customer_keys_table

    def both_ways(conn):
        cutoff = data_as_of(conn) + timedelta(seconds=1)
        dated = [c.definition for c in candidates(conn) if c.dated and c.definition.basis != "subscriptions"]
        churn = dated[0] if dated else None
        whole = SnapshotReader(conn, churn=churn).features(cutoff)
        chosen = sorted(whole.frame.index)[::7][:25]
        keys = [
            int(k)
            for k in conn.execute(
                customer_keys_table.select()
                .with_only_columns(customer_keys_table.c.cx_key)
                .where(customer_keys_table.c.cx_id.in_(chosen))
            ).scalars()
        ]
        part = SnapshotReader(
            conn, churn=churn, customers=Customers(tuple(keys)), schema=(whole.numeric, whole.categorical)
        ).features(cutoff)
        return whole, part, chosen

    for (whole, part, chosen), engine in zip(_both(engines, both_ways), ("duckdb", "postgresql"), strict=True):
        assert len(chosen) == 25
        assert sorted(part.frame.index) == chosen, engine
        got = part.frame[[*whole.numeric, *whole.categorical, "value"]].sort_index()
        want = whole.frame.loc[chosen, [*whole.numeric, *whole.categorical, "value"]].sort_index()
        assert_same_frame(got, want, f"features of 25 customers read alone ({engine})")


def test_churn_candidates_and_every_definition_are_equal(engines):
    from cxdash.metrics import churn

    def cands(conn):
        found = churn.candidates(conn)
        # inactivity at another window too: date arithmetic in SQL on both engines
        extra = churn.Definition("inactivity", days=60)
        churned = {
            c.name: sorted(map(tuple, conn.execute(churn.churned(conn, c.definition, by="cx_id")).fetchall()))
            for c in [*found, churn.Candidate(extra, 0, 0, True)]
        }
        return [c.to_dict() for c in found], churned

    (duck_c, duck_sets), (pg_c, pg_sets) = _both(engines, cands)
    assert {c["basis"] for c in duck_c} >= {"subscriptions", "inactivity"}  # the demo has both readings
    assert duck_c == pg_c
    assert duck_sets.keys() == pg_sets.keys()
    for name in duck_sets:
        assert len(duck_sets[name]) > 0, name
        assert [(a, _plain(b)) for a, b in duck_sets[name]] == [(a, _plain(b)) for a, b in pg_sets[name]], name
