"""Churn is a definition the company chooses: every reading the data supports is offered with its
figures, one is suggested, the choice is stored and every churn figure follows it.

The SaaS company (tests/saas_company.py) is the export that once showed "0.0% churn" while the
accounts' own flag said 22%: its subscriptions never close an account's last row. Expected
figures are computed here from the generated frames with pandas, not read from cxdash.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cxdash import metrics
from cxdash.cli.main import main
from cxdash.metrics import churn
from cxdash.store import audit
from cxdash.store.database import open_store
from tests import saas_company


@pytest.fixture(scope="module")
def saas(tmp_path_factory):
    """The SaaS company loaded through the CLI, file by file, with the mappings its ops person wrote."""
    root = tmp_path_factory.mktemp("saas")
    company = saas_company.build()
    files = company.write(root / "exports")
    url = f"duckdb:///{root / 'saas.duckdb'}"
    for name, mapping in saas_company.MAPPINGS.items():
        mapping_path = root / f"{name}.json"
        mapping_path.write_text(json.dumps(mapping))
        code = main(
            [
                "--db",
                url,
                "ingest",
                str(files[name]),
                "--source",
                name,
                "--kind",
                mapping["kind"],
                "--mapping",
                str(mapping_path),
            ]
        )
        assert code == 0, name
    # feature usage carries only a subscription id: it reaches the account through that extract
    usage = root / "usage.json"
    usage.write_text(json.dumps({"kind": "events", "columns": {"timestamp": "usage_date", "activity": "feature_name"}}))
    code = main(
        [
            "--db",
            url,
            "ingest",
            str(files["usage"]),
            "--source",
            "usage",
            "--kind",
            "events",
            "--mapping",
            str(usage),
            "--link",
            "subscription_id=subscriptions.subscription_id",
            "--department",
            "product",
        ]
    )
    assert code == 0, "usage"
    return {"url": url, "company": company, "root": root}


def test_usage_keyed_by_subscription_reaches_its_account(saas):
    import sqlalchemy as sa

    from cxdash.store.database import KIND_TABLES

    company = saas["company"]
    owner = company.subscriptions.set_index("subscription_id")["account_id"]
    expected = company.usage["subscription_id"].map(owner).value_counts().sort_index()
    store = open_store(saas["url"])
    try:
        with store.connect() as conn:
            ev, crm = KIND_TABLES["events"], KIND_TABLES["customers"]
            rows = conn.execute(
                sa.select(crm.c.customer_id, sa.func.count())
                .select_from(ev.join(crm, crm.c.cx_key == ev.c.cx_key))
                .where(ev.c.source == "usage")
                .group_by(crm.c.customer_id)
            ).fetchall()
    finally:
        store.dispose()
    got = pd.Series(dict(rows)).sort_index()
    assert got.sum() == len(company.usage)  # every usage row reached an account
    pd.testing.assert_series_equal(got, expected, check_names=False)


def _json_out(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _activity(company) -> pd.Series:
    """Every moment an account showed it was there (signup, subscription start, ticket, usage),
    indexed by account: what the inactivity definition reads."""
    owner = company.subscriptions.set_index("subscription_id")["account_id"]
    parts = [
        pd.Series(pd.to_datetime(company.accounts["signup_date"]).to_numpy(), index=company.accounts["account_id"]),
        pd.Series(
            pd.to_datetime(company.subscriptions["start_date"]).to_numpy(), index=company.subscriptions["account_id"]
        ),
        pd.Series(pd.to_datetime(company.tickets["submitted_at"]).to_numpy(), index=company.tickets["account_id"]),
        pd.Series(
            pd.to_datetime(company.usage["usage_date"]).to_numpy(),
            index=company.usage["subscription_id"].map(owner).to_numpy(),
        ),
    ]
    return pd.concat(parts)


def _expected_events_churn(company) -> pd.Series:
    """Per account, the date of its latest churn event (the events definition's churn date)."""
    ev = company.churn_events
    return pd.to_datetime(ev["churn_date"]).groupby(ev["account_id"]).max()


def test_every_definition_the_saas_export_supports_is_offered_with_its_own_figures(saas, capsys):
    company = saas["company"]
    out = _json_out(capsys, ["--db", saas["url"], "churn", "--json"])
    by_name = {c["name"]: c for c in out["candidates"]}
    inactivity = [n for n in by_name if n.startswith("inactivity:")]
    assert set(by_name) == {"label:accounts", "subscriptions", "events:churn_events", *inactivity}
    assert len(inactivity) == 1  # the usage log is activity: inactivity is offered too

    flag = company.accounts["churn_flag"] == "True"
    label = by_name["label:accounts"]
    assert (label["basis"], label["customers"], label["churned"]) == ("label", len(company.accounts), int(flag.sum()))
    assert label["rate"] == pytest.approx(0.22) and label["dated"] is False

    subs = company.subscriptions
    last_open = subs.groupby("account_id")["end_date"].apply(lambda s: s.isna().any())
    sub = by_name["subscriptions"]
    assert sub["customers"] == subs["account_id"].nunique()
    assert sub["churned"] == int((~last_open).sum()) == 0  # every account keeps an open subscription
    assert sub["subscription_churn_rate"] == pytest.approx(subs["end_date"].notna().mean(), abs=1e-6)  # JSON: 6 places
    assert sub["subscriptions"] == len(subs)

    events = by_name["events:churn_events"]
    churned = _expected_events_churn(company)
    assert (events["basis"], events["customers"], events["churned"]) == ("events", len(company.accounts), len(churned))
    assert events["rate"] == pytest.approx(len(churned) / len(company.accounts))
    assert events["dated"] is True

    # Inactivity: the window from the gaps between a customer's activity days (no purchases here),
    # churned when the last activity is that many days before the data's end.
    steps = _activity(company)
    days = steps.dt.normalize().groupby(level=0).apply(lambda d: d.drop_duplicates().sort_values().diff().dt.days)
    p90 = days.dropna().quantile(0.9)
    window = next(w for w in (30, 60, 90, 120, 180, 270, 365, 540, 730) if p90 <= w)
    assert inactivity == [f"inactivity:{window}"]
    end = max(company.as_of, pd.to_datetime(company.usage["usage_date"]).max())
    last = steps.groupby(level=0).max()
    gone = last + pd.Timedelta(days=window) <= end
    assert (by_name[inactivity[0]]["customers"], by_name[inactivity[0]]["churned"]) == (last.size, int(gone.sum()))

    # Suggested: the company's own churn records; never the definition that finds nobody.
    assert out["definition"] == "events:churn_events" and out["chosen"] is False
    # Subscriptions disagree with it by 24 points (the label by 2, within the 5-point threshold).
    rate = events["rate"]
    expected = sorted(n for n, c in by_name.items() if n != out["definition"] and abs(c["rate"] - rate) > 0.05)
    assert "subscriptions" in expected and "label:accounts" not in expected
    assert sorted(out["disagreeing"]) == expected


def test_the_kpis_follow_the_suggested_dated_definition_over_the_period(saas, capsys):
    company = saas["company"]
    report = _json_out(capsys, ["--db", saas["url"], "kpis", "--json"])
    assert report["churn_definition"] == "events:churn_events"
    # The 90 days up to the data's last day, computed from the exports.
    p_end = company.as_of.normalize() + pd.Timedelta(days=1)
    p_start = p_end - pd.Timedelta(days=90)
    signup = pd.to_datetime(company.accounts.set_index("account_id")["signup_date"])
    churn_at = _expected_events_churn(company).reindex(signup.index)
    at_start = (signup < p_start) & (churn_at.isna() | (churn_at >= p_start))
    churned_in = at_start & churn_at.notna() & (churn_at < p_end)
    assert churned_in.sum() > 0, "the test world should have churn in the period"
    assert report["customers_at_start"] == int(at_start.sum())
    assert report["churned_in_period"] == int(churned_in.sum())
    assert report["churn_rate"] == pytest.approx(churned_in.sum() / at_start.sum())


def test_choosing_the_label_is_stored_audited_and_moves_every_churn_figure(saas, capsys, tmp_path):
    import shutil

    # a copy: the choice must not leak into the other tests of this module
    src = saas["url"].removeprefix("duckdb:///")
    path = tmp_path / "chosen.duckdb"
    shutil.copy(src, path)
    url = f"duckdb:///{path}"
    flag = saas["company"].accounts["churn_flag"] == "True"

    out = _json_out(capsys, ["--db", url, "churn", "--use", "label:accounts", "--json"])
    assert out["definition"] == "label:accounts" and out["chosen"] is True
    store = open_store(url)
    try:
        assert churn.chosen_name(store) == "label:accounts"
        entry = audit.recent(store, action="churn_definition")
        assert len(entry) == 1 and json.loads(entry["detail"].iloc[0]) == {"from": None, "to": "label:accounts"}

        report = _json_out(capsys, ["--db", url, "kpis", "--json"])
        assert report["churn_definition"] == "label:accounts"
        assert report["churn_rate"] == pytest.approx(flag.mean())  # a snapshot: the labelled share
        assert report["previous"]["churn_rate"] is None  # an undated label has no previous period

        from cxdash.jobs import summaries
        from cxdash.store.version import data_version

        with store.connect() as conn:  # the headline stored by `churn --use` follows the choice
            stored = summaries.lookup(conn, "headline", data_version(conn), {"churn": "label:accounts"})
            res = churn.resolve(conn, churn.chosen_name(store))
        assert stored is not summaries.MISSING
        assert stored.churned_customers == int(flag.sum()) and stored.churn_definition == "label:accounts"
        caption = res.caption()
        # label 22% against subscriptions 0%: both figures beside the number
        assert "22.0% (44 of 200 customers)" in caption and "subscriptions: 0.0% (0 of 200 customers)" in caption
    finally:
        store.dispose()


def test_a_definition_the_data_does_not_support_is_refused_and_nothing_changes(saas, capsys):
    capsys.readouterr()
    assert main(["--db", saas["url"], "churn", "--use", "label:billing"]) == 1
    err = capsys.readouterr().err
    assert "does not support churn definition 'label:billing'" in err
    assert "label:accounts" in err and "events:churn_events" in err  # the candidates, named
    assert main(["--db", saas["url"], "churn", "--use", "churned please"]) == 1
    assert "label:SOURCE, subscriptions, events:SOURCE or inactivity:DAYS" in capsys.readouterr().err
    store = open_store(saas["url"])
    try:
        assert churn.chosen_name(store) is None
        assert audit.recent(store, action="churn_definition").empty
    finally:
        store.dispose()


def test_hotspots_and_outcomes_read_the_definition_in_force(saas):
    from cxdash import journeys

    company = saas["company"]
    store = open_store(saas["url"])
    try:
        with store.connect() as conn:
            out = journeys.customer_outcomes(conn, churn=churn.Definition.parse("events:churn_events"))
            import sqlalchemy as sa

            rows = pd.DataFrame(
                conn.execute(sa.select(out.c.case_id, out.c.churned, out.c.churned_at)).fetchall(),
                columns=["case_id", "churned", "churned_at"],
            )
            label = journeys.customer_outcomes(conn, churn=churn.Definition.parse("label:accounts"))
            n_label = conn.execute(
                sa.select(sa.func.count()).select_from(label).where(label.c.churned.is_(True))
            ).scalar()
    finally:
        store.dispose()
    expected = _expected_events_churn(company)
    assert int(rows["churned"].sum()) == len(expected)
    got = rows[rows["churned"]].set_index("case_id")["churned_at"]
    assert sorted(pd.to_datetime(got).dt.normalize()) == sorted(expected.dt.normalize())
    assert n_label == int((company.accounts["churn_flag"] == "True").sum())


def test_the_card_says_whether_the_customer_left_and_what_their_churn_record_says(saas):
    from cxdash.risk import card

    company = saas["company"]
    ev = company.churn_events.iloc[0]
    store = open_store(saas["url"])
    try:
        with store.connect() as conn:
            import sqlalchemy as sa

            from cxdash.store.database import KIND_TABLES, customer_keys_table

            crm, im = KIND_TABLES["customers"], customer_keys_table
            cx_id = conn.execute(
                sa.select(im.c.cx_id)
                .select_from(crm.join(im, im.c.cx_key == crm.c.cx_key))
                .where(crm.c.customer_id == ev["account_id"])
            ).scalar()
            status = card.churn_status(conn, cx_id, churn.Definition.parse("events:churn_events"))
            label_status = card.churn_status(conn, cx_id, churn.Definition.parse("label:accounts"))
    finally:
        store.dispose()
    assert status["churned"] is True and status["definition"] == "events:churn_events"
    assert pd.Timestamp(status["churned_at"]).normalize() == pd.Timestamp(ev["churn_date"])
    assert status["records"]["reason"].tolist()[0] == ev["reason_code"]
    flagged = company.accounts.set_index("account_id").at[ev["account_id"], "churn_flag"] == "True"
    assert label_status["churned"] is flagged and label_status["churned_at"] is None  # the label has no date


def test_a_chosen_label_with_too_few_leavers_to_hold_out_saves_no_model_and_says_so(saas, tmp_path, capsys):
    """The label has 44 leavers in 200 accounts: its stratified 30% held out holds 13, too few for a
    model's figures (issue 14), so the label model is refused before fitting and nothing is saved."""
    import shutil

    from cxdash.risk import NotEnoughChurnError, model_versions
    from cxdash.risk.training import train

    path = tmp_path / "model.duckdb"
    shutil.copy(saas["url"].removeprefix("duckdb:///"), path)
    url = f"duckdb:///{path}"
    assert main(["--db", url, "churn", "--use", "label:accounts"]) == 0
    flagged = int((saas["company"].accounts["churn_flag"] == "True").sum())
    store = open_store(url)
    try:
        with pytest.raises(NotEnoughChurnError) as caught:
            train(store)
        assert model_versions(store).empty
    finally:
        store.dispose()
    # the label path (held-out customers, not snapshots): 30% of the accounts and of their leavers
    assert caught.value.part == "held-out validation" and "held-out customers" in str(caught.value)
    assert caught.value.customers == round(0.3 * len(saas["company"].accounts))
    assert caught.value.found == int(0.3 * flagged)


def test_a_retailer_without_labels_or_subscriptions_gets_inactivity_with_a_window_from_its_purchase_gaps(
    public_data, tmp_path
):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from tests.test_executive_page import RETAIL_MAPPING

    store = open_store(f"duckdb:///{tmp_path / 'retail.duckdb'}")
    try:
        ingest_file(
            store,
            public_data / "online_retail" / "online_retail_sample.csv",
            source="shop",
            mapping=Mapping.from_dict(RETAIL_MAPPING),
            reject_invalid=True,
        )
        with store.connect() as conn:
            cands = churn.candidates(conn)
            headline = metrics.headline(conn)
    finally:
        store.dispose()
    assert [c.definition.basis for c in cands] == ["inactivity"]
    # the window: 90th percentile of gaps between a customer's consecutive purchase days, rounded up
    raw = pd.read_csv(public_data / "online_retail" / "online_retail_sample.csv", dtype=str)
    raw = raw[raw["CustomerID"].notna()]
    qty = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    raw = raw[qty.notna() & price.notna() & (price >= 0)]
    days = pd.to_datetime(raw["InvoiceDate"], format="mixed", dayfirst=False).dt.normalize()
    per = pd.DataFrame({"c": raw["CustomerID"], "d": days}).drop_duplicates().sort_values(["c", "d"])
    gaps = per.groupby("c")["d"].diff().dt.days.dropna()
    p90 = gaps.quantile(0.9)
    window = next(s for s in (30, 60, 90, 120, 180, 270, 365, 540, 730) if p90 <= s)
    assert cands[0].definition.days == window
    assert headline.churn_definition == f"inactivity:{window}"
    # churned: customers whose last activity is more than the window before the data's end
    last = per.groupby("c")["d"].max()
    end = pd.to_datetime(raw["InvoiceDate"], format="mixed").max()
    expected = int((last + pd.Timedelta(days=window) <= end).sum())
    assert abs(cands[0].churned - expected) <= max(2, expected // 100)  # timestamps vs days at the boundary
    assert cands[0].customers == last.size


def test_a_customer_table_without_dates_gets_snapshot_kpis_and_churn_by_group(public_data, tmp_path):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from tests.test_churn_browser import TELCO

    csv = public_data / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    store = open_store(f"duckdb:///{tmp_path / 'telco.duckdb'}")
    try:
        ingest_file(store, csv, source="crm", mapping=Mapping.from_dict(TELCO))
        with store.connect() as conn:
            report = metrics.kpi_report(conn, None)
            splits = metrics.snapshot_splits(conn)
    finally:
        store.dispose()
    raw = pd.read_csv(csv)
    gone = raw["Churn"] == "Yes"
    assert report.period is None and report.churn_definition == "label:crm" and not report.churn_dated
    assert report.current["customers"] == 7043
    assert round(report.current["churn_rate"], 4) == 0.2654
    assert report.current["churned_in_period"] == int(gone.sum())
    assert report.current["silence_rate"] is None and "need dated data" in report.notes["period"]
    for attribute, column in (("plan", "Contract"), ("segment", "InternetService")):
        got = splits[splits["attribute"] == attribute].set_index("value")
        expected = gone.groupby(raw[column]).agg(["size", "sum"])
        assert sorted(got.index) == sorted(expected.index)
        for value, row in expected.iterrows():
            assert (got.at[value, "customers"], got.at[value, "churned"]) == (row["size"], row["sum"])
            assert got.at[value, "churn_rate"] == pytest.approx(row["sum"] / row["size"])
