"""Money figures carry the currency the transactions were written in, or say they mix several."""

from __future__ import annotations

from cxdash import metrics
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping

MAPPING = Mapping(
    "transactions", {"transaction_id": "id", "customer_id": "cust", "timestamp": "at", "amount": "amount"}
)


def _load(store, tmp_path, text: str, source: str = "shop") -> None:
    path = tmp_path / f"{source}.csv"
    path.write_text(text)
    ingest_file(store, path, source=source, mapping=MAPPING)


def test_one_currency_is_named_on_the_headline_and_the_report(duck, tmp_path):
    _load(duck, tmp_path, "id,cust,at,amount\nT1,C1,2024-01-02,$12.00\nT2,C2,2024-01-03,$30\n")
    with duck.connect() as conn:
        head = metrics.headline(conn)
        report = metrics.kpi_report(conn, with_clv=False)
    assert head.revenue == 42.0 and head.currency == "USD"  # the $ of the amounts, kept per row
    assert report.currency == "USD"


def test_several_currencies_are_said_to_be_mixed_and_none_is_none(duck, tmp_path):
    with duck.connect() as conn:
        assert metrics.money_currency(conn) is None  # nothing loaded: no currency is claimed
    _load(duck, tmp_path, "id,cust,at,amount\nT1,C1,2024-01-02,12 EUR\n", "eu")
    _load(duck, tmp_path, "id,cust,at,amount\nT2,C2,2024-01-03,USD 30.00\n", "us")
    with duck.connect() as conn:
        assert metrics.money_currency(conn) == "mixed: EUR, USD"
