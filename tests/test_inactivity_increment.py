"""The inactivity definition's counts after an append, read in one pass over the appended customers'
steps (``churn._inactivity_moves``), equal its counts read apart with and without the loads' rows
(``churn._counts``, as every other definition's), on DuckDB and PostgreSQL: a known customer's late
visit revives them, an old visit moves nobody, a visitor new to the store has no earlier standing."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cxdash.demo.world import write_demo_extracts
from cxdash.jobs.loads import update_rollups
from cxdash.metrics import churn
from cxdash.metrics.periods import as_of
from cxdash.store import rollups
from cxdash.store.database import loads_table
from cxdash.store.dialect import among
from tests.conftest import BACKENDS, make_store
from tests.demo_company import append_rows, load_demo_extracts, loaded


@pytest.fixture(params=[(backend, crm) for backend in BACKENDS for crm in (True, False)], ids=str)
def company(request, tmp_path):
    """The demo company, and the same without its CRM (every identified customer is then in the
    KPI universe, a visitor new to the store too)."""
    backend, crm = request.param
    if crm:
        with loaded(backend, tmp_path, 150, seed=11) as (store, extracts):
            yield store, extracts, crm
        return
    store = make_store(backend, tmp_path)
    extracts = {ex.source: ex for ex in write_demo_extracts(tmp_path / "extracts", 150, seed=11) if ex.source != "crm"}
    load_demo_extracts(store, list(extracts.values()))
    try:
        yield store, extracts, crm
    finally:
        store.dispose()


def _rows(extract) -> list[dict]:
    with open(extract.path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_pass_counts_equal_the_counts_read_apart(company, tmp_path):
    store, extracts, crm = company
    with store.connect() as conn:
        now = as_of(conn)
    visits = [r for r in _rows(extracts["web"]) if r.get("user_email")]
    by_email = {r["user_email"]: r for r in visits}  # one row per known visitor
    late = [dict(r, event_time=f"{now - timedelta(days=1):%Y-%m-%d %H:%M:%S}") for r in list(by_email.values())[:60]]
    old = [dict(r, event_time="2001-01-01 00:00:00") for r in list(by_email.values())[60:70]]
    stranger = dict(visits[0], user_email="", cookie_id="cookie-nobody-saw", event_time=f"{now:%Y-%m-%d %H:%M:%S}")
    append_rows(store, tmp_path, extracts["web"], [*late, *old, stranger], "visits")
    update_rollups(store)
    definition = churn.Definition("inactivity", days=60)
    with store.connect() as conn:
        assert as_of(conn) == now  # the append did not move the data's date
        loads = [int(conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar())]
        cases = rollups.appended_keys(conn, loads)
        earlier = churn._earlier_keys(conn, cases, loads)
        assert len(cases) == len(earlier) + 1  # the stranger is new to the store

        def touched(t):
            return (among(t.c.cx_key, cases),)

        def without_loads(t):
            return (among(t.c.cx_key, earlier), *((t.c.load_id.not_in(loads),) if "load_id" in t.c else ()))

        apart = (*churn._counts(conn, definition, now, touched), *churn._counts(conn, definition, now, without_loads))
        one_pass = churn._inactivity_moves(conn, definition, now, cases, loads)
    assert one_pass == apart
    judged, churned_now, judged_before, churned_before = one_pass
    if crm:
        assert judged == judged_before >= 60  # the stranger is no CRM customer: in neither
    else:
        assert judged == judged_before + 1 >= 60  # the stranger counts now, and had no standing before
    assert churned_before > churned_now  # the late visits revived some who had gone quiet
