"""The one formatting layer (cxdash.ui.formatting): every figure with its unit, "—" for unknown, human
column names, and the comparison a change is measured against. Expected strings are written by hand."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from cxdash.metrics import Headline
from cxdash.ui import formatting as f


@pytest.mark.parametrize("unknown", [None, float("nan"), np.nan, pd.NA, pd.NaT])
def test_unknown_is_a_dash_never_none_or_nan(unknown):
    for render in (f.count, f.percent, f.money_exact, f.duration, f.day):
        assert render(unknown) == "—"
    assert f.signed(unknown) is None


def test_counts_have_thousands_separators_and_plural_nouns():
    assert f.count(1426) == "1,426"
    assert f.count(np.int64(10_000), "customer") == "10,000 customers"
    assert f.count(1, "customer") == "1 customer"
    assert f.count(2, "anonymous visitor") == "2 anonymous visitors"
    assert f.count(3, "company") == "3 companies"


def test_percent_money_and_durations_carry_their_units():
    assert f.percent(0.711) == "71.1%"
    assert f.money_exact(5531.729, "USD") == "5,531.73 USD"
    assert f.money_exact(1886859.28) == "1,886,859.28"
    assert f.money(28_810_000, "USD") == "28.81 M USD"
    assert f.money(12_345, "EUR") == "12.3 k EUR"
    assert f.duration(1_535_789) == "17.8 days"  # the median_seconds 1535789
    assert f.duration(2700) == "45 min"
    assert f.duration(2.37) == "2.4 s"  # a load reaching the card: seconds, not "0 min"
    assert f.duration(38.4) == "38 s"
    assert f.duration(95) == "2 min"
    assert f.duration(5.2 * 3600) == "5.2 h"


def test_changes_are_signed_with_units_and_name_their_comparison():
    assert f.signed(1022) == "+1,022"
    assert f.signed(-0.02, "share") == "-2.0 pts"
    assert f.signed(-4_520_000, "money", "USD") == "-4.52 M USD"
    assert f.versus(90) == "vs the previous 90 days"
    assert f.versus() == "vs the previous period"
    assert f.versus(words="the same month last year") == "vs the same month last year"


def test_dates_spans_and_periods_in_words():
    assert f.day(datetime(2026, 12, 2, 14, 5)) == "2 Dec 2026"
    assert f.span("2023-11-02", "2026-10-31") == "2 Nov 2023 – 31 Oct 2026"
    # [3 Aug, 1 Nov) is the 90 days to 31 Oct
    assert f.period_words(datetime(2026, 8, 3), datetime(2026, 11, 1)) == "the 90 days to 31 Oct 2026"
    assert f.period_words(datetime(2026, 8, 3), datetime(2026, 8, 4)) == "the 1 day to 3 Aug 2026"


def test_column_names_read_as_words():
    assert f.label("cohort_by") == "cohort by"
    assert f.label("departmental_kpi") == "departmental KPI"
    assert f.label("median_seconds") == "median wait"
    assert f.label("some_new_column") == "some new column"
    frame = f.labelled(pd.DataFrame({"cx_id": [1], "first_at": [2]}))
    assert list(frame.columns) == ["customer key", "first record"]


def test_the_currency_comes_from_the_data_else_the_company_setting_else_says_so(monkeypatch):
    monkeypatch.delenv(f.CURRENCY_ENV, raising=False)
    assert f.currency("USD") == "USD"
    assert f.currency(None) is None
    assert f.money_with_unit(28_810_000, None) == "28.81 M (currency not recorded)"
    assert "CXDASH_CURRENCY" in f.currency_note(None)
    monkeypatch.setenv(f.CURRENCY_ENV, " eur ")
    assert f.currency(None) == "EUR"
    assert f.currency("GBP") == "GBP"  # what the data records wins over the setting
    assert f.money_with_unit(28_810_000, None) == "28.81 M EUR"
    assert "company's setting" in f.currency_note(None)
    assert "without conversion" in f.currency_note("mixed: EUR, USD")


def _sources() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["crm", "web", "billing"],
            "kind": ["customers", "events", "transactions"],
            "department": ["sales", "web", "billing"],
            "rows": [10_000, 324_917, 136_134],
            "customers": [10_000, 13_966, 10_000],
            "identified": [10_000, 10_000, 10_000],
            "unmatched": [0, 3_966, 0],
            "first_at": pd.to_datetime(["2023-11-02", "2023-10-04", "2023-11-02"]),
            "last_at": pd.to_datetime(["2026-10-30", "2026-10-31", "2026-10-31"]),
            "loaded_at": pd.to_datetime(["2026-12-01"] * 3),
            "loads": [1, 1, 1],
            "rows_rejected": [0, 0, 0],
        }
    )


HEAD = Headline(datetime(2026, 10, 31, 23, 0), 10_000, 6_907, 3_021, "subscriptions", 28_810_000.0, "x", None)


def test_the_overview_names_anonymous_visitors_apart_from_customers():
    sentence = f.overview_sentence(HEAD, _sources())
    assert "**10,000 customers**" in sentence
    assert "3,966 anonymous visitors in web" in sentence and "Not counted as customers" in sentence
    table = f.sources_table(_sources())
    web = table[table["source"] == "web"].iloc[0]
    assert web["customers"] == 10_000 and web["anonymous or unmatched"] == 3_966
    assert web["to (newest record)"].startswith("31 Oct 2026 (")
    assert not [c for c in table.columns if "_" in c]


def test_the_overview_cards_give_each_figure_its_unit_and_period(monkeypatch):
    monkeypatch.delenv(f.CURRENCY_ENV, raising=False)
    cards = {title: rest for title, *rest in f.overview_cards(HEAD, _sources())}
    assert cards["Customers"][0] == "10,000"
    assert cards["Active (last 30 days)"][:3] == ["6,907", "69.1% of customers", "in the 30 days to 31 Oct 2026"]
    assert cards["Churned"][:3] == ["3,021", "30.2% of customers", "by 31 Oct 2026"]
    value, context, caption, _help = cards["Revenue"]
    assert (value, context) == ("28.81 M", "currency not recorded")
    assert caption == "paid transactions, 2 Nov 2023 – 31 Oct 2026"
    monkeypatch.setenv(f.CURRENCY_ENV, "EUR")
    cards = {title: rest for title, *rest in f.overview_cards(HEAD, _sources())}
    assert cards["Revenue"][:2] == ["28.81 M EUR", None]


def test_unknown_overview_figures_are_a_dash_with_the_reason():
    head = Headline(None, 50, 0, 0, "none", 0.0)
    cards = {title: rest for title, *rest in f.overview_cards(head, _sources()[_sources()["kind"] != "transactions"])}
    assert cards["Churned"][0] == "—" and "No churn label" in cards["Churned"][3]
    assert cards["Active (last 30 days)"][0] == "—" and "no dates" in cards["Active (last 30 days)"][3]
    assert cards["Revenue"][0] == "—" and cards["Revenue"][2] == "no transactions loaded"
