"""Friction hotspot statistics: counts of the hit and never-hit customers, a lift only where both
groups have churned customers (no +0.5 correction), scipy's interval and Fisher test, and the
Benjamini-Hochberg adjustment; with no churn data the hotspots rank by customers touched and the
page and the CLI say why.

Expected figures come from scipy (fisher_exact, relative_risk) on hand-built counts, and from
plain pandas on the small companies built here."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import fisher_exact
from scipy.stats.contingency import relative_risk

from cxdash import journeys as jr
from cxdash.cli.main import main
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.journeys import hotspot_stats as hs
from cxdash.store.database import open_store

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "journeys.py")
T0 = datetime(2024, 1, 1, 9, 0)


def _counts(rows: list[tuple]) -> pd.DataFrame:
    """(hotspot, customers judged, churned, baseline customers, baseline churned) -> the counts frame,
    every customer touched judged, nobody churned before their moment."""
    return pd.DataFrame(
        [
            {
                "hotspot": h,
                "customers": n1,
                "customers_judged": n1,
                "churned": a,
                "churned_before": 0,
                "baseline_customers": n0,
                "baseline_churned": c,
            }
            for h, n1, a, n0, c in rows
        ]
    )


def _bh(p: list[float]) -> list[float]:
    """Benjamini-Hochberg by hand: p x m / rank, made monotone from the largest p down, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- on hand-built counts


def test_lift_interval_and_p_values_equal_scipys_on_hand_built_counts():
    rows = [("a", 120, 30, 880, 88), ("b", 50, 9, 950, 109), ("c", 300, 24, 700, 94)]
    got = hs.hotspot_statistics(_counts(rows), churn_definition="subscriptions").set_index("hotspot")
    raw = []
    for h, n1, a, n0, c in rows:
        rr = relative_risk(a, n1, c, n0)
        ci = rr.confidence_interval(confidence_level=0.95)
        assert got.loc[h, "lift"] == pytest.approx((a / n1) / (c / n0))
        assert got.loc[h, "lift"] == pytest.approx(rr.relative_risk)
        assert (got.loc[h, "ci_low"], got.loc[h, "ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
        p = fisher_exact([[a, n1 - a], [c, n0 - c]], alternative="two-sided").pvalue
        assert got.loc[h, "p_value"] == pytest.approx(p)
        assert got.loc[h, "churn_rate"] == pytest.approx(a / n1)
        assert got.loc[h, "baseline_churn_rate"] == pytest.approx(c / n0)
        assert got.loc[h, "excess_churned"] == pytest.approx(n1 * (a / n1 - c / n0))
        raw.append(p)
    assert got["p_adjusted"].tolist() == pytest.approx(_bh(raw))
    assert got["tested"].all() and (got["why"] == "").all()
    # a: 25% vs 10%, overwhelming; c: 8% vs 13.4%, significantly *less* churn: not a friction finding
    assert got.loc["a", "significant"] and not got.loc["c", "significant"]
    assert got.loc["c", "p_adjusted"] < 0.05 and got.loc["c", "lift"] < 1


def test_zero_cells_never_create_a_lift_and_say_why():
    rows = [
        ("both zero", 12, 0, 300, 0),
        ("none hit churned", 12, 0, 300, 30),
        ("none never hit churned", 40, 6, 300, 0),
    ]
    got = hs.hotspot_statistics(_counts(rows), churn_definition="label:crm").set_index("hotspot")
    assert got[["lift", "ci_low", "ci_high"]].isna().all().all()
    assert not got["significant"].any()
    assert got.loc["both zero", "why"] == "nobody churned: 0 of 12 hit and 0 of 300 never hit"
    assert got.loc["none hit churned", "why"] == "no churned customer among the 12 hit"
    assert "no churned customer among the 300 who never hit it" in got.loc["none never hit churned", "why"]
    assert "no finite value" in got.loc["none never hit churned", "why"]
    # 0% vs 0% holds no evidence either way: not tested; a single zero cell still has Fisher's p
    assert not got.loc["both zero", "tested"] and math.isnan(got.loc["both zero", "p_value"])
    assert got.loc["none hit churned", "p_value"] == pytest.approx(fisher_exact([[0, 12], [30, 270]]).pvalue)
    # the old +0.5 (Haldane) correction turned 0% vs 0% into a lift of (0.5/13)/(0.5/301) = 23
    assert hs.risk_ratio(0, 12, 0, 300) == (pytest.approx(math.nan, nan_ok=True),) * 3


def test_one_raw_p_below_005_among_eight_hotspots_is_not_significant_after_benjamini_hochberg():
    # seven hotspots with the baseline's churn rate (12.5%), one with 25%: raw p about 0.04
    rows = [("suspect", 40, 10, 400, 50)] + [(f"plain {i}", 40, 5, 400, 50) for i in range(7)]
    got = hs.hotspot_statistics(_counts(rows), churn_definition="subscriptions").set_index("hotspot")
    raw = fisher_exact([[10, 30], [50, 350]], alternative="two-sided").pvalue
    assert raw < 0.05  # alone it would be called significant
    assert got.loc["suspect", "p_value"] == pytest.approx(raw)
    expected = _bh([fisher_exact([[a, n1 - a], [c, n0 - c]]).pvalue for _, n1, a, n0, c in rows])
    assert got.loc["suspect", "p_adjusted"] == pytest.approx(expected[0])
    assert got.loc["suspect", "p_adjusted"] > 0.05
    assert got.loc["suspect", "lift"] == pytest.approx(2.0)
    assert not got["significant"].any()
    assert hs.significance_counts(got.reset_index()) == (0, 8)


def test_without_a_churn_definition_no_hotspot_has_a_rate_a_lift_or_a_test():
    counts = _counts([("x", 0, 0, 0, 0)]).assign(customers=25)
    got = hs.hotspot_statistics(counts, churn_definition=None)
    row = got.iloc[0]
    assert row["why"] == "churn unknown: no churn definition"
    assert all(math.isnan(row[c]) for c in ("churn_rate", "baseline_churn_rate", "lift", "p_value", "p_adjusted"))
    assert not row["tested"] and not row["significant"] and pd.isna(row["churn_definition"])
    assert hs.ranking_note(got) == (
        "No churn data: hotspots are ranked by customers touched; lift needs churned and retained customers."
    )


# ----------------------------------------------------------------------------- small companies in a store

N_LABELLED = 58  # C00..C57 carry a churn label; C58 and C59 none (churn unknown)
TRANSFERRED = [f"C{i:02d}" for i in range(20)] + ["C58"]
REPEATERS = [f"C{i:02d}" for i in range(10, 15)] + [f"C{i:02d}" for i in range(30, 40)]
CHURNED = [f"C{i:02d}" for i in range(10)] + [f"C{i:02d}" for i in range(20, 26)]


def _write_company(folder: Path, *, churned: list[str] | None, crm: bool = True) -> dict[str, Path]:
    """A CRM extract (churn flag, blank for C58 and C59; ``churned`` None: no flag column at all)
    and a helpdesk extract: one ticket each on its own topic, a transferred ticket for
    ``TRANSFERRED``, a second ticket on the same topic two days later for ``REPEATERS``."""
    ids = [f"C{i:02d}" for i in range(60)]
    out = {}
    if crm:
        customers = pd.DataFrame({"customer_id": ids, "signup_date": "2023-06-01"})
        if churned is not None:
            customers["churned"] = [("" if i >= N_LABELLED else str(c in churned)) for i, c in enumerate(ids)]
        out["crm"] = folder / "crm.csv"
        customers.to_csv(out["crm"], index=False)
    tickets = []
    for i, c in enumerate(ids):
        opened = T0 + timedelta(days=i)
        tickets.append(
            {
                "ticket_id": f"T{i}",
                "customer_id": c,
                "opened_at": opened,
                "closed_at": opened + timedelta(hours=1),
                "topic": f"topic {i}",
                "transfers": 1 if c in TRANSFERRED else 0,
            }
        )
        if c in REPEATERS:
            again = opened + timedelta(days=2)
            tickets.append(
                {
                    "ticket_id": f"R{i}",
                    "customer_id": c,
                    "opened_at": again,
                    "closed_at": again + timedelta(hours=1),
                    "topic": f"topic {i}",
                    "transfers": 0,
                }
            )
    out["tickets"] = folder / "tickets.csv"
    pd.DataFrame(tickets).to_csv(out["tickets"], index=False)
    return out


def _load(url: str, files: dict[str, Path], *, label: bool) -> None:
    store = open_store(url)
    try:
        if "crm" in files:
            columns = {"customer_id": "customer_id", "signup_date": "signup_date"}
            if label:
                columns["churn_label"] = "churned"
            ingest_file(store, files["crm"], source="crm", kind="customers", mapping=Mapping("customers", columns))
        ingest_file(
            store,
            files["tickets"],
            source="helpdesk",
            kind="tickets",
            department="support",
            mapping=Mapping(
                "tickets", {c: c for c in ("ticket_id", "customer_id", "opened_at", "closed_at", "topic", "transfers")}
            ),
        )
    finally:
        store.dispose()


@pytest.fixture
def labelled(tmp_path):
    url = f"duckdb:///{tmp_path / 'labelled.duckdb'}"
    _load(url, _write_company(tmp_path, churned=CHURNED), label=True)
    return url


@pytest.fixture
def complaints(tmp_path):
    """A complaints log and nothing else: no customer extract, no churn of any kind."""
    url = f"duckdb:///{tmp_path / 'complaints.duckdb'}"
    _load(url, _write_company(tmp_path, churned=None, crm=False), label=False)
    return url


def _expected_table(hit: list[str]) -> tuple[int, int, int, int]:
    """(customers judged, churned, baseline customers, baseline churned) by plain pandas."""
    people = pd.DataFrame({"cx": [f"C{i:02d}" for i in range(N_LABELLED)]})  # the customers whose churn is known
    people["hit"] = people["cx"].isin(hit)
    people["churned"] = people["cx"].isin(CHURNED)
    hit_group, base = people[people["hit"]], people[~people["hit"]]
    return len(hit_group), int(hit_group["churned"].sum()), len(base), int(base["churned"].sum())


def _hotspots(url: str) -> pd.DataFrame:
    store = open_store(url, create=False)
    try:
        with store.connect() as conn:
            return jr.hotspots(conn).set_index("hotspot")
    finally:
        store.dispose()


def test_a_labelled_company_counts_both_groups_among_customers_whose_churn_is_known(labelled):
    spots = _hotspots(labelled)
    assert set(spots.index) == {"transferred ticket", "repeat contact"}
    t = spots.loc["transferred ticket"]
    n1, a, n0, c = _expected_table(TRANSFERRED)
    assert (n1, a, n0, c) == (20, 10, 38, 6)  # the company as built
    assert t["customers"] == len(TRANSFERRED) == 21  # C58 is touched, but its churn is unknown: not judged
    assert (t["customers_judged"], t["churned"], t["baseline_customers"], t["baseline_churned"]) == (n1, a, n0, c)
    rr = relative_risk(a, n1, c, n0)
    ci = rr.confidence_interval()
    assert t["lift"] == pytest.approx(rr.relative_risk) and t["lift"] == pytest.approx((10 / 20) / (6 / 38))
    assert (t["ci_low"], t["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert t["p_value"] == pytest.approx(fisher_exact([[a, n1 - a], [c, n0 - c]]).pvalue)
    r = spots.loc["repeat contact"]
    n1r, ar, n0r, cr = _expected_table(REPEATERS)
    assert (r["customers_judged"], r["churned"], r["baseline_customers"], r["baseline_churned"]) == (n1r, ar, n0r, cr)
    assert ar == 0 and math.isnan(r["lift"]) and r["why"] == f"no churned customer among the {n1r} hit"
    pr = fisher_exact([[ar, n1r - ar], [cr, n0r - cr]]).pvalue
    assert r["p_value"] == pytest.approx(pr)
    assert spots["p_adjusted"].tolist() == pytest.approx(_bh(spots["p_value"].tolist()))
    assert bool(t["significant"]) == (t["p_adjusted"] < 0.05) and not r["significant"]
    assert spots.index[0] == "transferred ticket"  # the churn it comes with ranks it first


def test_zero_percent_against_zero_percent_gives_no_lift_and_the_reason(tmp_path):
    url = f"duckdb:///{tmp_path / 'nobody.duckdb'}"
    _load(url, _write_company(tmp_path, churned=[]), label=True)
    spots = _hotspots(url)
    assert spots["lift"].isna().all() and not spots["tested"].any() and not spots["significant"].any()
    assert spots.loc["transferred ticket", "why"] == "nobody churned: 0 of 20 hit and 0 of 38 never hit"
    assert list(spots.index) == ["transferred ticket", "repeat contact"]  # 21 touched, then 15
    assert hs.ranking_note(spots.reset_index()) == (
        "Nobody churned under label:crm (0 of 58 customers judged): hotspots are ranked by customers touched; lift "
        "needs churned and retained customers."
    )


def test_a_complaints_log_without_churn_ranks_hotspots_by_customers_touched(complaints):
    spots = _hotspots(complaints)
    expected = pd.Series({"transferred ticket": len(TRANSFERRED), "repeat contact": len(REPEATERS)})
    assert spots["customers"].to_dict() == expected.to_dict()
    assert list(spots.index) == expected.sort_values(ascending=False).index.tolist()
    assert spots["lift"].isna().all() and spots["p_value"].isna().all() and not spots["significant"].any()
    assert (spots["why"] == "churn unknown: no churn definition").all()
    assert spots["churn_definition"].isna().all()


def test_the_cli_prints_each_hotspots_counts_and_statistics_as_json(labelled, capsys):
    assert main(["--db", labelled, "hotspots", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["churn_definition"] == "label:crm" and out["adjustment"] == "Benjamini-Hochberg"
    by_name = {h["hotspot"]: h for h in out["hotspots"]}
    t, r = by_name["transferred ticket"], by_name["repeat contact"]
    n1, a, n0, c = _expected_table(TRANSFERRED)
    assert (t["customers"], t["churned"], t["baseline_customers"], t["baseline_churned"]) == (21, a, n0, c)
    assert t["customers_judged"] == n1
    ci = relative_risk(a, n1, c, n0).confidence_interval()
    assert t["lift"] == pytest.approx((a / n1) / (c / n0))
    assert (t["ci_low"], t["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    p = [fisher_exact([[a, n1 - a], [c, n0 - c]]).pvalue]
    n1r, ar, n0r, cr = _expected_table(REPEATERS)
    p.append(fisher_exact([[ar, n1r - ar], [cr, n0r - cr]]).pvalue)
    assert t["p_adjusted"] == pytest.approx(_bh(p)[0])
    assert t["significant"] is (t["p_adjusted"] < 0.05 and t["lift"] > 1)
    assert r["lift"] is None and r["ci_low"] is None and r["ci_high"] is None and r["significant"] is False
    assert out["tested"] == 2 and out["significant"] == int(t["significant"])


def test_the_cli_on_a_complaints_log_says_why_there_is_no_lift(complaints, capsys):
    assert main(["--db", complaints, "hotspots", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["churn_definition"] is None and out["tested"] == 0
    assert out["note"].startswith("No churn data: hotspots are ranked by customers touched")
    assert [h["hotspot"] for h in out["hotspots"]] == ["transferred ticket", "repeat contact"]
    assert all(h["lift"] is None and h["p_adjusted"] is None and h["churn_rate"] is None for h in out["hotspots"])
    assert main(["--db", complaints, "hotspots"]) == 0
    text = capsys.readouterr().out
    assert "No churn data: hotspots are ranked by customers touched" in text
    assert "churn unknown: no churn definition" in text


# ----------------------------------------------------------------------------- the page


def _page(url: str, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CXDASH_DB_URL", url)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_on_a_complaints_log_says_in_words_why_hotspots_have_no_lift(complaints, monkeypatch):
    at = _page(complaints, monkeypatch)
    metric = next(m for m in at.metric if m.label.startswith("Significant hotspots"))
    assert metric.value == "—"  # not known, and the notes say why
    notes = [i.value for i in at.info]
    assert any(
        n.startswith(
            "No churn data: hotspots are ranked by customers touched; lift needs churned and retained customers"
        )
        for n in notes
    ), notes
    table = at.dataframe[0].value
    assert table["hotspot"].tolist() == ["transferred ticket", "repeat contact"]
    assert "lift (95% CI)" not in table.columns and "churned after it" not in table.columns
    assert "No churn data" in at.markdown[0].value  # the lead sentence says it too


def test_the_page_counts_significant_hotspots_of_those_tested_with_counts_beside_rates(labelled, monkeypatch):
    at = _page(labelled, monkeypatch)
    metric = next(m for m in at.metric if m.label == "Significant hotspots")
    n1, a, n0, c = _expected_table(TRANSFERRED)
    p = fisher_exact([[a, n1 - a], [c, n0 - c]]).pvalue
    n1r, ar, n0r, cr = _expected_table(REPEATERS)
    p_adj = _bh([p, fisher_exact([[ar, n1r - ar], [cr, n0r - cr]]).pvalue])[0]
    assert metric.value == f"{int(p_adj < 0.05)} of 2"
    assert "Benjamini–Hochberg" in metric.help
    table = at.dataframe[0].value.set_index("hotspot")
    assert table.loc["transferred ticket", "churned after it"] == f"{a} of {n1} ({a / n1:.1%})"
    detail = at.dataframe[1].value.set_index("hotspot")  # the comparison group, under the table
    assert detail.loc["transferred ticket", "never hit it: churned"] == f"{c} of {n0} ({c / n0:.1%})"
    # no lift: a dash, with the reason beside it
    assert table.loc["repeat contact", "lift (95% CI)"] == f"— (no churned customer among the {n1r} hit)"


def test_a_hotspot_frame_stored_in_the_old_shape_is_not_read_but_computed_again(labelled):
    from datetime import UTC

    from cxdash.jobs import summaries, views
    from cxdash.store.database import summaries_table
    from cxdash.store.version import data_version

    old = pd.DataFrame(
        {
            "hotspot": ["transferred ticket"],
            "customers": [21],
            "lift": [75.0],
            "lift_low": [1.76],
            "lift_high": [3191.0],
        }
    )  # the shape before the statistics were fixed
    store = open_store(labelled, create=False)
    try:
        with store.begin() as conn:
            version = data_version(conn)
            for churn_name in (None, "label:crm"):
                legacy = {"repeat_days": 7, **({"churn": churn_name} if churn_name else {})}
                conn.execute(
                    summaries_table.insert().values(
                        name=views.params_key("journeys.hotspots", legacy),
                        data_version=version,
                        computed_at=datetime.now(UTC).replace(tzinfo=None),
                        seconds=0.0,
                        payload=summaries._encode(old),
                    )
                )
        with store.connect() as conn:
            got = summaries.get(conn, "journeys.hotspots", version, views.hotspots_params(7, "label:crm"))
    finally:
        store.dispose()
    assert list(got.columns) == jr.HOTSPOT_COLUMNS
    assert got.set_index("hotspot").loc["transferred ticket", "lift"] == pytest.approx((10 / 20) / (6 / 38))


def test_a_group_where_everyone_churned_keeps_its_ratio_but_claims_no_interval():
    # Seen on the SaaS export: 1 of 1 hit churned against 46 of 198. Katz's interval has no
    # variance from a group whose every member churned and printed 3.34-5.54 on one customer.
    lift, low, high = hs.risk_ratio(1, 1, 46, 198)
    assert lift == pytest.approx((1 / 1) / (46 / 198))
    assert math.isnan(low) and math.isnan(high)
    lift, low, high = hs.risk_ratio(3, 10, 5, 5)  # every never-hit customer churned
    assert lift == pytest.approx(0.3) and math.isnan(low) and math.isnan(high)
