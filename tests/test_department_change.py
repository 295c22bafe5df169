"""A source moved to another department is shown there at once, on every engine.

The journey nodes, handoffs, hotspots and conflicts name the department of each row, taken from
the row itself or else from its source. Moving a source to another department (Data health,
``sources set``) changes no row, but it changes those views: it must move the data version, so
that no stored view (``cxdash.jobs.summaries``) and no journey map kept in memory
(``cxdash.jobs.views``) answers with the old department. The daily rollups keep the rows' own
departments and join the source's at read time: they stay current and are not rebuilt.
"""

from __future__ import annotations

import pytest

from cxdash.demo.build import load_demo_extracts
from cxdash.demo.world import write_demo_extracts
from cxdash.governance.sources import set_source_owner
from cxdash.jobs import summaries
from cxdash.jobs.loads import after_load, update_rollups
from cxdash.jobs.views import COMPUTATIONS, default_params
from cxdash.store import rollups
from cxdash.store.version import data_version
from tests.conftest import BACKENDS, make_store


def view(store, name: str):
    """``(version, stored or MISSING, the answer a page gets)`` for the default view ``name``."""
    with store.connect() as conn:
        version = data_version(conn)
        params = default_params(conn, name, {}, None)
        return version, summaries.lookup(conn, name, version, params), summaries.get(conn, name, version, params)


def departments_of(nodes, activity: str) -> str:
    return nodes.set_index("activity").loc[activity, "department"]


def handoff_departments(handoffs) -> set[str]:
    return set(handoffs["source_department"]) | set(handoffs["target_department"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_source_moved_to_another_department_is_shown_there_at_once_and_in_the_stored_views(backend, tmp_path):
    store = make_store(backend, tmp_path)
    load_demo_extracts(store, write_demo_extracts(tmp_path / "extracts", 150, seed=3))
    after_load(store)
    version, stored, _ = view(store, "journeys.nodes")
    assert stored is not summaries.MISSING, "the load's refresh stores the default journey nodes"
    # purchases are the billing source's transactions, which carry no department of their own
    assert departments_of(stored, "purchase") == "billing"
    with store.connect() as conn:  # a page computed the map live: the pair is kept in memory too
        params = default_params(conn, "journeys.nodes", {}, None)
        assert departments_of(COMPUTATIONS["journeys.nodes"](conn, **params), "purchase") == "billing"

    # a new owner alone changes no figure: the version stays, the stored views stand
    set_source_owner(store, "billing", owner="Finance ops (Ravi)", actor="test")
    assert view(store, "journeys.nodes")[0] == version

    set_source_owner(store, "billing", department="finance", actor="test")
    moved, stored, live = view(store, "journeys.nodes")
    assert moved == version + 1
    assert stored is summaries.MISSING, "a view stored with the old department must not be served"
    assert departments_of(live, "purchase") == "finance"
    _, stored_handoffs, handoffs = view(store, "journeys.handoffs")
    assert stored_handoffs is summaries.MISSING
    # the subscriptions source stays in billing; the transactions now hand off from finance
    assert {"finance", "billing"} <= handoff_departments(handoffs)

    # the rollups took no rebuild (rows' own departments), and the refresh stores the new views
    assert update_rollups(store) == "current"
    after_load(store)
    again, stored, _ = view(store, "journeys.nodes")
    assert again == moved and stored is not summaries.MISSING
    assert departments_of(stored, "purchase") == "finance"
    assert "finance" in handoff_departments(view(store, "journeys.handoffs")[1])
    with store.connect() as conn:
        assert rollups.current(conn)
    store.dispose()
