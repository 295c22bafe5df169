"""The command line opens the same views as the pages: ``kpis``, ``journeys`` and ``hotspots`` take
the pages' period and filters, and refuse a filter their page does not offer."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.cli.main import main
from cxdash.metrics import churn


def _kpis(capsys, db: str, *args: str) -> dict:
    assert main(["--db", db, "kpis", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_kpis_filters_narrow_the_customers_to_the_chosen_segments_and_regions(small_demo, capsys):
    with sa.create_engine(small_demo).connect() as conn:
        crm = pd.read_sql("select customer_id, segment, region from src_customers", conn)
    crm = crm.drop_duplicates("customer_id")
    segment, other = crm["segment"].dropna().value_counts().index[:2]
    region = crm["region"].dropna().value_counts().index[0]

    everyone = _kpis(capsys, small_demo)
    one = _kpis(capsys, small_demo, "--segment", segment)
    two = _kpis(capsys, small_demo, "--segment", segment, "--segment", other)
    both = _kpis(capsys, small_demo, "--segment", segment, "--region", region)

    assert everyone["customers"] == crm["customer_id"].nunique()
    assert one["customers"] == (crm["segment"] == segment).sum()
    assert two["customers"] == crm["segment"].isin([segment, other]).sum()
    assert both["customers"] == ((crm["segment"] == segment) & (crm["region"] == region)).sum()
    assert one["filters"]["segment"] == [segment]
    assert both["filters"]["region"] == [region]


# ----------------------------------------------------------------------------- journeys and hotspots


def _json(capsys, db: str, *args: str):
    assert main(["--db", db, *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _month_before_latest(db: str) -> tuple[date, date]:
    """A 30-day period ending 30 days before the data's latest day: not the default view."""
    with sa.create_engine(db).connect() as conn:
        latest = metrics.as_of(conn).date()
    last = latest - timedelta(days=30)
    return last - timedelta(days=29), last


def _whole_log(db: str) -> pd.DataFrame:
    with sa.create_engine(db).connect() as conn:
        return pd.read_sql(sa.select(jr.journey_log()), conn)


def test_journeys_for_a_period_count_only_the_transitions_inside_it(small_demo, capsys):
    first, last = _month_before_latest(small_demo)
    everything = _json(capsys, small_demo, "journeys")
    month = _json(capsys, small_demo, "journeys", "--from", first.isoformat(), "--to", last.isoformat())

    log = _whole_log(small_demo)
    start, end = pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1)
    inside = log[(log["ts"] >= start) & (log["ts"] < end)]
    steps = inside.groupby("cx_key").size()
    # every customer with n steps in the period makes n - 1 directly-follows pairs
    assert sum(e["count"] for e in month) == int((steps - 1).sum())
    assert sum(e["count"] for e in everything) == int((log.groupby("cx_key").size() - 1).sum())
    assert sum(e["count"] for e in month) < sum(e["count"] for e in everything)


def test_journeys_with_the_pages_filters_equal_the_library_call_with_the_same_parameters(small_demo, capsys):
    first, last = _month_before_latest(small_demo)
    args = ("--from", first.isoformat(), "--to", last.isoformat(), "--top-n", "6", "--collapse", "--min-share", "0.01")
    printed = pd.DataFrame(_json(capsys, small_demo, "journeys", *args))
    plain = pd.DataFrame(_json(capsys, small_demo, "journeys"))

    period = metrics.Period.from_dates(first, last)
    filters = jr.MapFilters(min_share=0.01, top_n=6, collapse=True, by_department=False, rename=())
    with sa.create_engine(small_demo).connect() as conn:
        # the library on the journey log (the CLI runs the page's computation)
        expected = jr.discover_dfg(
            conn, jr.journey_log(since=period.start, until=period.end), filters.spec(), min_share=0.01
        )
    cols = ["source", "target", "count", "customers"]
    key = ["source", "target"]
    got = printed[cols].sort_values(key).reset_index(drop=True)
    want = expected[cols].astype({"count": "int64", "customers": "int64"}).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert printed["median_seconds"].tolist() == pytest.approx(
        expected.set_index(key)
        .loc[list(zip(printed["source"], printed["target"], strict=True))]["median_seconds"]
        .tolist()
    )
    assert len({*printed["source"], *printed["target"]} - {jr.OTHER}) <= 6
    assert not got.equals(plain[cols].sort_values(key).reset_index(drop=True))


def test_journeys_rename_rules_group_activities_as_on_the_page(small_demo, capsys):
    plain = pd.DataFrame(_json(capsys, small_demo, "journeys"))
    name = plain["source"].value_counts().index[0]
    renamed = pd.DataFrame(_json(capsys, small_demo, "journeys", "--rename", f"{name} => renamed step"))
    assert "renamed step" in set(renamed["source"]) and name not in set(renamed["source"])
    assert renamed["count"].sum() == plain["count"].sum()


@pytest.mark.parametrize("command", ["journeys", "hotspots"])
@pytest.mark.parametrize("flag", ["--segment", "--region", "--plan", "--channel", "--campaign", "--department"])
def test_a_shared_kpis_filter_the_journeys_page_lacks_is_refused_not_ignored(small_demo, capsys, command, flag):
    assert main(["--db", small_demo, command, "--json", flag, "anything"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert f"{flag} is not a filter of the Journeys page" in out.err and "--from/--to" in out.err


def test_a_period_ending_before_it_starts_is_refused_with_the_days(small_demo, capsys):
    assert main(["--db", small_demo, "journeys", "--from", "2026-05-02", "--to", "2026-05-01"]) == 1
    assert "--to (2026-05-01) is before --from (2026-05-02)" in capsys.readouterr().err


def test_hotspots_for_a_period_equal_the_library_call_and_differ_from_all_history(small_demo, capsys):
    first, last = _month_before_latest(small_demo)
    whole = _json(capsys, small_demo, "hotspots")
    month = _json(capsys, small_demo, "hotspots", "--from", first.isoformat(), "--to", last.isoformat())
    assert (month["period_start"], month["period_end"]) == (first.isoformat(), last.isoformat())
    assert whole["period_start"] is None

    period = metrics.Period.from_dates(first, last)
    with sa.create_engine(small_demo).connect() as conn:
        definition = churn.resolve(conn, None).definition
        expected = jr.hotspots(
            conn,
            repeat_days=7,
            churn=definition,
            moments=jr.friction_moments(repeat_days=7, since=period.start, until=period.end),
        )
    got = {h["hotspot"]: (h["customers"], h["churned"], h["baseline_churned"]) for h in month["hotspots"]}
    want = {
        h: (int(r["customers"]), int(r["churned"]), int(r["baseline_churned"]))
        for h, r in expected.set_index("hotspot").iterrows()
    }
    assert got == want
    assert sum(h["customers"] for h in month["hotspots"]) < sum(h["customers"] for h in whole["hotspots"])


def test_kpis_from_alone_runs_to_the_latest_day(small_demo, capsys):
    with sa.create_engine(small_demo).connect() as conn:
        latest = metrics.as_of(conn).date()
    first = latest - timedelta(days=9)
    out = _kpis(capsys, small_demo, "--from", first.isoformat())
    assert out["period_start"] == first.isoformat()
    assert out["period_end"] == latest.isoformat()
