"""The command line opens the same views as the pages: ``kpis --json`` takes the page's filters."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from cxdash.cli import main


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
