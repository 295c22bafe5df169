"""A customer's value (and so the revenue at risk) comes from transactions when they are loaded,
else from subscriptions' MRR (12 × MRR live at the cutoff), and is unknown, said in words, when
neither is: a SaaS export without transactions no longer shows 0 at risk."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.risk import VALUE_BASES, customer_features, data_as_of, value_basis
from cxdash.store.database import open_store
from tests import saas_company


@pytest.fixture(scope="module")
def saas(tmp_path_factory):
    company = saas_company.build()
    root = tmp_path_factory.mktemp("saas_value")
    paths = company.write(root / "files")
    store = open_store(f"duckdb:///{root / 'cx.duckdb'}")
    for name in ("accounts", "subscriptions", "tickets", "churn_events"):
        m = saas_company.MAPPINGS[name]
        ingest_file(
            store,
            paths[name],
            source=name,
            kind=m["kind"],
            mapping=Mapping(m["kind"], m["columns"]),
            reject_invalid=True,
        )
    yield store, company
    store.dispose()


def test_without_transactions_value_is_twelve_times_the_mrr_live_at_the_cutoff(saas):
    store, company = saas
    with store.connect() as conn:
        assert value_basis(conn) == "mrr"
        cutoff = data_as_of(conn) + timedelta(seconds=1)
        ff = customer_features(conn, cutoff=cutoff)
    subs = company.subscriptions.assign(
        start=pd.to_datetime(company.subscriptions["start_date"]), end=pd.to_datetime(company.subscriptions["end_date"])
    )
    live = (subs["start"] < pd.Timestamp(cutoff)) & (subs["end"].isna() | (subs["end"] > pd.Timestamp(cutoff)))
    mrr = subs[live].groupby(subs["account_id"].astype(str))["mrr_amount"].sum()
    got = ff.frame.set_index(ff.frame["customer_id"].astype(str))["value"]
    expected = 12.0 * mrr.reindex(got.index).fillna(0.0)
    assert len(got) > 100 and got.sum() > 0
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert got.sum() == pytest.approx(12.0 * mrr.reindex(got.index).fillna(0.0).sum(), rel=1e-9)


def test_the_at_risk_sentence_sums_risk_times_value_and_names_the_basis():
    pytest.importorskip("streamlit")
    from cxdash.ui import risk
    from cxdash.ui.formatting import money

    frame = pd.DataFrame(
        {
            "cx_id": ["a", "b", "c"],
            "customer_id": ["A", "B", "C"],
            "risk": [0.5, 0.25, 0.1],
            "value": [1200.0, 2400.0, 0.0],
            "top_reason": ["", "", ""],
            "department": ["", "", ""],
            "action": ["", "", ""],
            "status": ["open"] * 3,
            "reasons": [[], [], []],
        }
    )
    frame["priority"] = frame["risk"] * frame["value"]
    text = risk.at_risk_sentence(frame, {}, "mrr")
    assert money(0.5 * 1200 + 0.25 * 2400) in text  # 1,200 by hand
    assert "12 × MRR" in text and VALUE_BASES["mrr"] in text
    assert list(risk.at_risk_table(frame, "mrr", "EUR").columns[:4]) == [
        "customer",
        "customer id",
        "risk",
        "12 × MRR (EUR)",  # what the value is and its currency, in the header
    ]


def test_with_neither_transactions_nor_mrr_the_value_is_unknown_and_the_page_says_so(tmp_path):
    pytest.importorskip("streamlit")
    from cxdash.ui import risk

    (tmp_path / "crm.csv").write_text("id,joined\nC1,2024-01-01\nC2,2024-02-01\nC3,2024-03-01\n")
    (tmp_path / "tickets.csv").write_text(
        "ticket,id,opened\nT1,C1,2024-04-01 10:00\nT2,C2,2024-04-02 10:00\nT3,C1,2024-04-03 10:00\n"
    )
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    try:
        ingest_file(
            store,
            tmp_path / "crm.csv",
            source="crm",
            kind="customers",
            mapping=Mapping("customers", {"customer_id": "id", "signup_date": "joined"}),
        )
        ingest_file(
            store,
            tmp_path / "tickets.csv",
            source="helpdesk",
            kind="tickets",
            mapping=Mapping("tickets", {"ticket_id": "ticket", "customer_id": "id", "opened_at": "opened"}),
        )
        with store.connect() as conn:
            assert value_basis(conn) is None
            ff = customer_features(conn, cutoff=data_as_of(conn) + timedelta(seconds=1))
    finally:
        store.dispose()
    assert len(ff.frame) == 3 and ff.frame["value"].isna().all()  # unknown, not 0
    frame = pd.DataFrame(
        {
            "cx_id": ["a"],
            "customer_id": ["C1"],
            "risk": [0.4],
            "value": [np.nan],
            "priority": [0.4],
            "top_reason": [""],
            "department": [""],
            "action": [""],
            "status": ["open"],
            "reasons": [[]],
        }
    )
    text = risk.at_risk_sentence(frame, {}, None)
    assert "value is unknown" in text and "revenue at risk is shown" in text and "0.00" not in text
    assert list(risk.at_risk_table(frame, None).columns) == [
        "customer",
        "customer id",
        "risk",
        "top reason",
        "next best action · owner",
        "status",
    ]
