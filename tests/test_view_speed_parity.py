"""The faster paths of the live Shared KPIs view give the results of the slower ones they replace,
on DuckDB and on PostgreSQL (issue 17): the RFM summary over every customer without working out
churn, the CLV computed once per distinct (frequency, recency, T) row, and a period's friction
moments found on the steps near the period."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.demo.build import build_demo
from cxdash.metrics.clv import BGNBD, GammaGamma, customer_lifetime_value
from cxdash.metrics.customers import customers_in_view
from cxdash.metrics.rfm import rfm_summary
from cxdash.metrics.signals import FAILED_PAYMENT_STATUSES
from cxdash.store.database import KIND_TABLES, customer_keys_table
from tests.conftest import BACKENDS, make_store


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request, tmp_path_factory):
    """A 300-customer demo company (seed 5) on each backend (PostgreSQL skipped without a server)."""
    root = tmp_path_factory.mktemp(f"speed_{request.param}")
    store = make_store(request.param, root)
    build_demo(store, n_customers=300, seed=5, out_dir=root / "extracts")
    yield store
    store.dispose()


def _end(conn):
    return metrics.default_period(metrics.as_of(conn)).end


def test_rfm_over_every_customer_equals_the_rfm_over_the_full_customer_set(demo):
    with demo.connect() as conn:
        end = _end(conn)
        fast = metrics.rfm_in_database(conn, end)
        full, _ = customers_in_view(conn, metrics.Filters())  # the set it used to join: keys, attributes and churn
        slow = metrics.rfm_in_database(conn, end, full)
        crm = pd.read_sql(sa.select(KIND_TABLES["customers"].c.cx_key), conn)
        x = KIND_TABLES["transactions"]
        tx = pd.read_sql(sa.select(x.c.cx_key, x.c.timestamp, x.c.amount, x.c.status), conn)
        names = pd.read_sql(sa.select(customer_keys_table.c.cx_key, customer_keys_table.c.cx_id), conn)
    pd.testing.assert_frame_equal(fast, slow)
    # independently: the buyers are the CRM customers with a positive, not failed payment before the end
    failed = tx["status"].fillna("").str.strip().str.lower().isin(FAILED_PAYMENT_STATUSES)
    paid = tx[(tx["amount"] > 0) & (pd.to_datetime(tx["timestamp"]) < end) & ~failed]
    keys = set(paid["cx_key"].dropna()) & set(crm["cx_key"].dropna())
    buyers = set(names[names["cx_key"].isin(keys)]["cx_id"])
    assert set(fast.index) == buyers and len(buyers) > 50


def test_the_clv_computed_per_distinct_row_equals_the_clv_computed_per_customer(demo):
    with demo.connect() as conn:
        rfm = metrics.rfm_in_database(conn, _end(conn))
    rfm = rfm[rfm["T"] > 0]
    x, tx, T, m = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T", "monetary_value"))
    assert len(rfm[["frequency", "recency", "T"]].drop_duplicates()) < len(rfm)  # some customers share a row
    # fixed parameters (a fit's values on such data): what matters is the same model on every row
    bg = BGNBD()
    bg.params_ = {"r": 0.8, "alpha": 40.0, "a": 0.6, "b": 2.5}
    gg = GammaGamma()
    gg.params_ = {"p": 6.0, "q": 4.0, "v": 60.0}
    got = customer_lifetime_value(bg, gg, x, tx, T, m, horizon_months=12, discount_rate_monthly=0.01)

    # the formula customer by customer (lifetimes' ``customer_lifetime_value``), with no sharing of rows
    spend = gg.conditional_expected_average_profit(x, m)
    expected = np.zeros(len(x))
    prev = np.zeros(len(x))
    for i in range(1, 13):
        cum = np.array(
            [bg.expected_purchases(i * 30.0, x[j : j + 1], tx[j : j + 1], T[j : j + 1])[0] for j in range(len(x))]
        )
        expected += spend * (cum - prev) / 1.01**i
        prev = cum
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert np.all(expected > 0)


def _moments(conn, **bounds) -> pd.DataFrame:
    m = jr.friction_moments(repeat_days=7, **bounds)
    frame = pd.read_sql(sa.select(m), conn)
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame.sort_values(list(frame.columns), ignore_index=True)


@pytest.mark.parametrize("days_back", [0, 45, 200])
def test_friction_moments_of_a_period_are_the_whole_historys_moments_inside_it(demo, days_back):
    """The period's rework and dead ends are found on the steps near it only: the same moments as
    finding them on the whole history and keeping those in the period."""
    with demo.connect() as conn:
        latest = metrics.as_of(conn)
        period = metrics.Period.from_dates(
            (latest - timedelta(days=days_back + 89)).date(), (latest - timedelta(days=days_back)).date()
        )
        inside = _moments(conn, since=period.start, until=period.end)
        whole = _moments(conn)
    kept = whole[(whole["ts"] >= period.start) & (whole["ts"] < period.end)].reset_index(drop=True)
    pd.testing.assert_frame_equal(inside, kept)
    assert {"rework", "dead end"} & set(kept["hotspot"])  # the moments the shortcut concerns are there
    assert len(kept) < len(whole)


def test_the_rfm_of_several_ends_in_one_pass_equals_each_ends_own_rfm(demo):
    with demo.connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
        ends = [period.end, period.previous.end, period.end - timedelta(days=400)]
        together = metrics.rfm_at_ends(conn, ends)
        apart = {e: metrics.rfm_in_database(conn, e) for e in ends}
        odd = period.end - timedelta(hours=5)  # not at midnight: each end on its own
        mixed = metrics.rfm_at_ends(conn, [period.end, odd])
        odd_alone = metrics.rfm_in_database(conn, odd)
    for e in ends:
        pd.testing.assert_frame_equal(together[e], apart[e])
    assert len(apart[ends[1]]) < len(apart[ends[0]])  # fewer buyers before the earlier end
    assert (apart[ends[1]]["frequency"].sum()) < apart[ends[0]]["frequency"].sum()
    pd.testing.assert_frame_equal(mixed[odd], odd_alone)


def test_the_rfm_from_one_aggregation_equals_the_pandas_summary(demo):
    """The RFM query takes the first purchase day's amount off each customer's sums (no window
    numbering the days): its frequency, recency, T, mean repeat spend and the spend's coefficient of
    variation equal lifetimes' conventions worked out in pandas from the raw payments, at two ends."""
    with demo.connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
        ends = [period.end, period.previous.end]
        together = metrics.rfm_at_ends(conn, ends)
        alone = metrics.rfm_in_database(conn, period.previous.end)
        crm = pd.read_sql(sa.select(KIND_TABLES["customers"].c.cx_key), conn)
        x = KIND_TABLES["transactions"]
        tx = pd.read_sql(sa.select(x.c.cx_key, x.c.timestamp, x.c.amount, x.c.status), conn)
        names = pd.read_sql(sa.select(customer_keys_table.c.cx_key, customer_keys_table.c.cx_id), conn)
    failed = tx["status"].fillna("").str.strip().str.lower().isin(FAILED_PAYMENT_STATUSES)
    paid = tx[~failed & tx["amount"].notna() & tx["cx_key"].isin(set(crm["cx_key"].dropna()))]
    paid = paid.merge(names, on="cx_key")
    paid["timestamp"] = pd.to_datetime(paid["timestamp"])
    for end in ends:
        before = paid[paid["timestamp"] < end]
        ref = rfm_summary(
            before,
            customer_col="cx_id",
            timestamp_col="timestamp",
            amount_col="amount",
            observation_end=end - timedelta(microseconds=1),
        )
        got = together[end]
        assert set(got.index) == set(ref.index)
        pd.testing.assert_frame_equal(
            got[["frequency", "recency", "T", "monetary_value"]].astype(float),
            ref.loc[got.index, ["frequency", "recency", "T", "monetary_value"]].astype(float),
            check_names=False,
            rtol=1e-9,
        )
        # the spend's coefficient of variation over the repeat purchase days (two or more of them)
        pos = before[before["amount"] > 0]
        days = pos.groupby(["cx_id", pos["timestamp"].dt.normalize()])["amount"].sum().sort_index()
        repeat = days.groupby(level="cx_id").apply(lambda s: s.iloc[1:])
        repeat.index = repeat.index.droplevel(0)
        g = repeat.groupby(level="cx_id")
        cv = (g.std(ddof=0) / g.mean())[g.size() >= 2]
        assert (got["spend_cv"].notna() == got.index.isin(cv.index)).all()
        assert got.loc[cv.index, "spend_cv"].to_numpy() == pytest.approx(cv.to_numpy(), rel=1e-6, abs=1e-9)
        # equal repeat spends have no spread: exactly 0, not a rounding residue of E[x²] - mean²
        assert (got.loc[cv.index[cv.to_numpy() < 1e-9], "spend_cv"] == 0.0).all()
        assert (cv.to_numpy() < 1e-9).sum() > 10
        # the first purchase's amount differs from the repeats' mean for many customers: taking it off matters
        firsts = days.groupby(level="cx_id").first()
        assert (firsts.loc[cv.index] - g.mean()[cv.index]).abs().gt(0.01).sum() > 10
    pd.testing.assert_frame_equal(alone, together[period.previous.end])


def test_the_kpi_reports_clv_equals_the_forecasts_made_one_by_one(demo):
    with demo.connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
        report = metrics.kpi_report(conn, period)
        alone = metrics.predicted_clv(conn, period.end)
        previous = metrics.predicted_clv(conn, period.previous.end)
    assert report.clv.ok and alone.ok
    # the same forecasts summed in another order (PostgreSQL returns rows unordered): equal to the last bits
    assert report.current["clv_predicted_total"] == pytest.approx(alone.total(), rel=1e-12)
    assert report.previous["clv_predicted_total"] == pytest.approx(previous.total(), rel=1e-12)


def test_the_kpi_reports_clv_for_a_segment_sums_the_forecast_over_its_customers(demo):
    """With a filter, the predicted CLV total is the forecast summed over the customers in view
    (matched by id in the forecast's index): worked out here from the CRM rows."""
    with demo.connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
        report = metrics.kpi_report(conn, period, metrics.Filters(segment=("consumer",)))
        alone = metrics.predicted_clv(conn, period.end)
        crm = pd.read_sql(sa.select(KIND_TABLES["customers"].c.cx_key, KIND_TABLES["customers"].c.segment), conn)
        names = pd.read_sql(sa.select(customer_keys_table.c.cx_key, customer_keys_table.c.cx_id), conn)
    consumers = set(names[names["cx_key"].isin(crm.loc[crm["segment"] == "consumer", "cx_key"])]["cx_id"])
    forecast = alone.per_customer
    expected = float(forecast[forecast.index.isin(consumers)].sum())
    assert 0 < len(consumers & set(forecast.index)) < len(forecast)
    assert report.current["clv_predicted_total"] == pytest.approx(expected, rel=1e-12)
    assert report.current["clv_predicted_total"] < alone.total()


def test_a_forecast_total_counts_each_customer_once_and_skips_the_unknown():
    f = metrics.ClvForecast(True, "", 12, pd.Series([1.0, 2.0, np.nan, 4.0], index=["a", "b", "c", "d"]))
    assert f.total(["b", "b", "zz", "c", "d"]) == 6.0
    assert f.total([]) == 0.0 and f.total() == 7.0


def test_distinct_rows_give_every_row_back_and_are_distinct():
    from cxdash.metrics.clv import _distinct_rows

    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, 2_000).astype(float)
    tx = rng.integers(0, 30, 2_000).astype(float)
    T = tx + rng.integers(0, 3, 2_000)
    (ux, utx, uT), back = _distinct_rows(x, tx, T)
    np.testing.assert_array_equal(ux[back], x)
    np.testing.assert_array_equal(utx[back], tx)
    np.testing.assert_array_equal(uT[back], T)
    expected = pd.DataFrame({"x": x, "tx": tx, "T": T}).drop_duplicates()
    assert len(ux) == len(expected) < 2_000


def test_the_data_date_read_per_column_is_the_latest_step_of_the_timeline(demo):
    """``as_of`` reads one ``max`` per time column without the timeline's joins: the same date as the
    timeline's latest step, and as the latest of every time column read into pandas."""
    from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS, timeline

    with demo.connect() as conn:
        got = metrics.as_of(conn)
        tl = timeline(("ts",))
        joined = conn.execute(sa.select(sa.func.max(tl.c.ts))).scalar()
        latest = {
            (kind, column): pd.read_sql(sa.select(KIND_TABLES[kind].c[column]), conn)[column].max()
            for kind, column in TIMELINE_TIME_COLUMNS
        }
    dated = {k: v for k, v in latest.items() if pd.notna(v)}
    assert len(dated) >= 5  # the demo fills most time columns, so the maximum is taken over several
    assert got == joined == max(pd.Timestamp(v) for v in dated.values())


@pytest.mark.parametrize("segment", [None, "first"])
def test_kpi_coverage_from_one_pass_per_table_equals_the_shares_counted_in_pandas(demo, segment):
    """``coverage`` flags each customer's data in one GROUP BY per table: the shares equal those
    counted in pandas from the rows (customers in view that have a ticket, a transfer, a closed or
    rated ticket, a subscription, an MRR, an amount), with and without a segment filter."""
    from cxdash.metrics.report import coverage

    with demo.connect() as conn:
        options = metrics.filter_options(conn)
        filters = metrics.Filters(segment=(options["segment"][0],)) if segment else metrics.Filters()
        cust, _ = customers_in_view(conn, filters)
        keys = set(pd.read_sql(sa.select(cust.c.cx_key), conn)["cx_key"])
        got = coverage(conn, filters)
        rows = {
            kind: pd.read_sql(sa.select(KIND_TABLES[kind]), conn)
            for kind in ("tickets", "subscriptions", "transactions")
        }
    assert len(keys) > 0 and (len(keys) < 300 if segment else True)

    def share(kind: str, column: str | None = None) -> float:
        frame = rows[kind] if column is None else rows[kind][rows[kind][column].notna()]
        return len(keys & set(frame["cx_key"].dropna())) / len(keys)

    expected = {
        "silence_rate": share("tickets"),
        "transfer_rate": share("tickets", "transfers"),
        "median_hours_to_resolution": share("tickets", "closed_at"),
        "satisfaction": share("tickets", "satisfaction"),
        "renewal_rate": share("subscriptions"),
        "revenue_churn_rate": share("subscriptions", "mrr"),
        "clv_historical_total": share("transactions", "amount"),
    }
    assert 0 < expected["satisfaction"] < expected["silence_rate"]  # the figures differ: a swapped flag shows
    assert {name: got[name] for name in expected} == pytest.approx(expected)


@pytest.mark.parametrize(
    "filters",
    [
        {"min_share": 0.0, "top_n": None, "collapse": True, "by_department": False, "rename": ()},
        {"min_share": 0.02, "top_n": 6, "collapse": True, "by_department": False, "rename": ()},
        {"min_share": 0.0, "top_n": 8, "collapse": False, "by_department": False, "rename": (("home", "browse"),)},
        {"min_share": 0.01, "top_n": None, "collapse": True, "by_department": True, "rename": ()},
    ],
    ids=["all", "top-6-pooled", "uncollapsed-renamed", "by-department"],
)
def test_the_journey_map_from_one_query_equals_the_graph_and_the_nodes_found_apart(demo, filters):
    """``journey_map`` sorts the period's steps once for the graph and the nodes: both frames equal
    ``discover_dfg`` and ``activity_nodes`` (values and order), whatever the noise controls."""
    spec = jr.MapFilters(**filters).spec()
    with demo.connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
        log = jr.journey_log(since=period.start, until=period.end)
        graph, nodes = jr.journey_map(conn, log, spec, min_share=filters["min_share"])
        apart = jr.discover_dfg(conn, log, spec, min_share=filters["min_share"])
        node_apart = jr.activity_nodes(conn, log, spec)
        cases = jr.journey_customers(conn, log, spec)
    assert len(graph) > 3 and len(nodes) > 2
    pd.testing.assert_frame_equal(graph, apart)
    pd.testing.assert_frame_equal(nodes, node_apart)
    assert nodes["starts"].sum() == nodes["ends"].sum() == cases > 0  # each case starts and ends once


def test_the_outcomes_without_revenue_judge_the_same_customers(demo):
    """The hotspots' baseline counts and the variants read churn alone: the customers' outcomes
    without their revenue (no pass over the payments) are the same customers with the same churn."""
    with demo.connect() as conn:
        whole = pd.read_sql(sa.select(jr.customer_outcomes(conn)), conn).sort_values("case_id", ignore_index=True)
        bare = pd.read_sql(sa.select(jr.customer_outcomes(conn, revenue=False)), conn)
    bare = bare.sort_values("case_id", ignore_index=True)
    assert bare["revenue_12m"].isna().all() and (whole["revenue_12m"] > 0).any()
    pd.testing.assert_frame_equal(bare.drop(columns="revenue_12m"), whole.drop(columns="revenue_12m"))
    assert whole["churned"].astype(bool).any() and whole["churn_known"].astype(bool).any()
