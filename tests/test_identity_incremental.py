"""An append restitches only the parts of the identity graph it touches, with the full rebuild's result.

Two stores take the same sequence of random extracts: one the way ingest does (an append updates
the identity map part by part, a replace rebuilds it), the reference with a full
``rebuild_identity_map`` after every load. After each load the identity map, the hubs, the
customer keys and every row's ``id_key`` and ``cx_key`` must be equal, keys included: the full
rebuild keeps a customer's key while its ``cx_id`` stays and numbers new customers in ``cx_id``
order from one above the highest key, and the update must do exactly that too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdash.identity.stitch import DEFAULT_HUB_DEGREE, rebuild_identity_map, update_identity_map
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import (
    IDENTITY_UNSTITCHED,
    KIND_TABLES,
    customer_keys_table,
    identity_hubs_table,
    identity_map_table,
    identity_restitch_table,
    loads_table,
    open_store,
    read_frame,
    rollup_appends_table,
    work_pending,
)
from tests.conftest import BACKENDS, make_store

CRM_MAP = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "mail", "phone": "tel"}})
TICKET_MAP = Mapping.from_dict(
    {"kind": "tickets", "columns": {"ticket_id": "ticket", "email": "mail", "phone": "tel", "opened_at": "opened"}}
)
TICKET_ACCOUNT_MAP = Mapping.from_dict(
    {
        "kind": "tickets",
        "columns": {
            "ticket_id": "ticket",
            "email": "mail",
            "phone": "tel",
            "account_id": "acct",
            "opened_at": "opened",
        },
    }
)
WEB_MAP = Mapping.from_dict(
    {"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at", "activity": "page"}}
)

HUB = "help@x.org"  # the helpdesk's own address: with enough tickets, a hub of many links
EMAILS = ["a@x.org", "b@x.org", "c@x.org", "d@x.org", HUB]
PHONES = ["5550000001", "5550000002", "5550000003"]
SHARED_ACCOUNT = "ACC-0"  # a placeholder account many callers' tickets carry: a hub
maybe = lambda pool: st.one_of(st.just(""), st.sampled_from(pool))  # noqa: E731 - a strategy shorthand

crm_rows = st.lists(
    st.tuples(st.sampled_from(["C1", "C2", "C3", "C4"]), maybe(EMAILS[:4]), maybe(PHONES)),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r[0],  # one row per customer, or the extract is refused
)
ticket_rows = st.lists(  # a ticket carries an email or a phone, or it is invalid
    st.tuples(maybe(EMAILS), maybe(PHONES)).filter(lambda r: any(r)), min_size=1, max_size=4
)
web_rows = st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3", "v4"]), maybe(EMAILS[:4])), min_size=1, max_size=4)
loads = st.lists(
    st.one_of(
        st.tuples(st.just("crm"), crm_rows),
        st.tuples(st.just("tickets"), ticket_rows),
        st.tuples(st.just("web"), web_rows),
        st.tuples(st.just("web-replace"), web_rows),
        # a burst of helpdesk tickets, each from another caller: the address crosses the hub degree
        st.tuples(st.just("helpdesk"), st.integers(min_value=1, max_value=DEFAULT_HUB_DEGREE + 3)),
        # tickets on one shared account with each caller's email and phone: the account becomes a
        # hub, and a row moved off it (to its email) links its email and phone anew
        st.tuples(st.just("helpdesk-accounts"), st.integers(min_value=1, max_value=DEFAULT_HUB_DEGREE + 3)),
    ),
    min_size=1,
    max_size=5,
)


class Extracts:
    """Writes each generated load as a CSV file (ticket ids and times unique across loads)."""

    def __init__(self, folder: Path):
        self.folder, self.n = folder, 0

    def write(self, what: str, rows) -> tuple[Path, str, Mapping, str]:
        self.n += 1
        path = self.folder / f"load{self.n}.csv"
        if what == "crm":
            text = "id,mail,tel\n" + "".join(f"{c},{m},{p}\n" for c, m, p in rows)
            out = (path, "crm", CRM_MAP, "append")
        elif what == "helpdesk-accounts":  # one shared account, each caller's email and phone
            text = "ticket,mail,tel,acct,opened\n" + "".join(
                f"T{self.n}-{i},{EMAILS[i] if i < 4 else f'caller{i}@x.org'},"
                f"{PHONES[i] if i < len(PHONES) else f'555{self.n:03d}{i:04d}'},{SHARED_ACCOUNT},"
                f"2024-03-02 10:{i % 60:02d}\n"
                for i in range(rows)
            )
            out = (path, "helpdesk-accounts", TICKET_ACCOUNT_MAP, "append")
        elif what in ("tickets", "helpdesk"):
            if what == "helpdesk":  # callers' own phones: new ones, and the shared pool's
                rows = [(HUB, PHONES[i] if i < len(PHONES) else f"555{self.n:03d}{i:04d}") for i in range(rows)]
            text = "ticket,mail,tel,opened\n" + "".join(
                f"T{self.n}-{i},{m},{p},2024-03-01 10:{i % 60:02d}\n" for i, (m, p) in enumerate(rows)
            )
            out = (path, "helpdesk", TICKET_MAP, "append")
        else:
            text = "visitor,mail,at,page\n" + "".join(
                f"{v},{m},2024-02-{self.n:02d} 10:{i:02d},home\n" for i, (v, m) in enumerate(rows)
            )
            out = (path, "web", WEB_MAP, "replace" if what == "web-replace" else "append")
        path.write_text(text)
        return out


def state(store) -> dict[str, pd.DataFrame]:
    """Everything stitching writes, each frame in one canonical order."""
    with store.connect() as conn:
        out = {
            "identity_map": read_frame(conn, sa.select(identity_map_table)),
            "hubs": read_frame(conn, sa.select(identity_hubs_table)),
            "customer_keys": read_frame(conn, sa.select(customer_keys_table)),
        }
        for name, t in KIND_TABLES.items():
            out[name] = read_frame(conn, sa.select(t.c.source, t.c.load_id, t.c.row_key, t.c.id_key, t.c.cx_key))
    for name, frame in out.items():
        frame = frame.astype(object).where(frame.notna(), None)
        out[name] = frame.sort_values(list(frame.columns), key=lambda s: s.astype(str)).reset_index(drop=True)
    return out


def assert_same(got: dict, want: dict, step: int) -> None:
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_dtype=False, obj=f"{name} after load {step}")


def assert_noted_appends_kept_earlier_rows(store, before: dict, after: dict, step: int) -> None:
    """A load noted as an append that changed no earlier row (``rollups.note_append``: the rollups
    and the summaries kept from before take its rows as they are) left every earlier row's
    customer key, the hubs and every earlier customer's CRM flag as they were."""
    with store.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()
        noted = conn.execute(
            sa.select(rollup_appends_table.c.load_id).where(rollup_appends_table.c.load_id == last)
        ).first()
    if noted is None:
        return
    for name in KIND_TABLES:
        earlier = after[name][after[name]["load_id"] != last].reset_index(drop=True)
        pd.testing.assert_frame_equal(earlier, before[name], check_dtype=False, obj=f"{name}, noted load {step}")
    pd.testing.assert_frame_equal(after["hubs"], before["hubs"], check_dtype=False, obj=f"hubs, noted load {step}")
    kept = before["customer_keys"].merge(after["customer_keys"], on="cx_key", how="left", suffixes=("", "_after"))
    assert kept["known"].tolist() == kept["known_after"].tolist(), f"a CRM flag moved in noted load {step}"


def load_both(store, reference, extracts: Extracts, what: str, rows) -> None:
    path, source, mapping, mode = extracts.write(what, rows)
    ingest_file(store, path, source=source, mapping=mapping, mode=mode)
    ingest_file(reference, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
    with reference.begin() as conn:
        rebuild_identity_map(conn)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=loads)
def test_appends_restitch_to_the_full_rebuilds_result(backend, sequence, tmp_path_factory):
    folder = tmp_path_factory.mktemp("incr")
    store = make_store(backend, folder)
    reference = open_store(f"duckdb:///{folder / 'reference.duckdb'}")
    extracts = Extracts(folder)
    try:
        for step, (what, rows) in enumerate(sequence, start=1):
            before = state(store)
            load_both(store, reference, extracts, what, rows)
            after = state(store)
            assert_same(after, state(reference), step)
            assert_noted_appends_kept_earlier_rows(store, before, after, step)
    finally:
        store.dispose()
        reference.dispose()


def test_a_hub_and_a_merging_record_give_the_full_rebuilds_result(duck, tmp_path):
    """By hand: two web visitors' components, a CRM record that merges them, the helpdesk address
    crossing the hub degree with a known caller's phone, then a ticket from a known email."""
    reference = open_store(f"duckdb:///{tmp_path / 'reference.duckdb'}")
    extracts = Extracts(tmp_path)
    steps = [
        ("web", [("v1", "a@x.org"), ("v2", "b@x.org")]),
        ("tickets", [("b@x.org", PHONES[0])]),
        ("crm", [("C1", "a@x.org", PHONES[0])]),  # a@ and b@ (through the phone) become C1's
        ("helpdesk", DEFAULT_HUB_DEGREE + 2),  # rows move off the new hub to the callers' phones
        ("tickets", [("a@x.org", "")]),
        ("helpdesk", 3),  # more tickets on the hub, moved at once
        ("crm", [("C2", "c@x.org", "5550040004")]),  # a caller of the helpdesk burst is a customer
        ("web", [("v3", "c@x.org"), ("v1", "")]),
    ]
    for step, (what, rows) in enumerate(steps, start=1):
        load_both(duck, reference, extracts, what, rows)
        got = state(duck)
        assert_same(got, state(reference), step)
    m = got["identity_map"].set_index("id_key")
    assert m.loc["visitor_id:v2", "cx_id"] == "C1" and m.loc["visitor_id:v1", "cx_id"] == "C1"
    assert m.loc["visitor_id:v3", "cx_id"] == "C2"
    assert got["hubs"]["id_key"].tolist() == [f"email:{HUB}"]
    assert m.loc[f"email:{HUB}", "part"] == f"email:{HUB}"  # a hub is a part of its own
    assert m.loc["email:b@x.org", "part"] == m.loc["customer_id:C1", "part"]
    reference.dispose()


def _pending(store) -> set[str]:
    with store.connect() as conn:
        return set(read_frame(conn, sa.select(identity_restitch_table.c.id_key))["id_key"])


def test_rows_moved_off_a_hub_wait_for_a_restitch_only_when_they_link_something_new(duck, tmp_path):
    """A row moved off the hub with one usable identifier (the caller's phone) links it to the hub
    either way: nothing waits for the next update, after an append or a rebuild. A row on a shared
    account with an email and a phone moves to its email and links the phone to it: those wait,
    and the next load stitches each caller's email and phone together, as the full rebuild does."""
    reference = open_store(f"duckdb:///{tmp_path / 'reference.duckdb'}")
    extracts = Extracts(tmp_path)
    load_both(duck, reference, extracts, "crm", [("C1", "a@x.org", PHONES[0])])
    load_both(duck, reference, extracts, "helpdesk", DEFAULT_HUB_DEGREE + 2)
    assert_same(state(duck), state(reference), 2)
    assert state(duck)["hubs"]["id_key"].tolist() == [f"email:{HUB}"]
    assert _pending(duck) == set() and _pending(reference) == set()
    # more callers than the hub degree: the account keeps many links once the rows left it
    load_both(duck, reference, extracts, "helpdesk-accounts", DEFAULT_HUB_DEGREE + 3)
    assert_same(state(duck), state(reference), 3)
    assert f"account_id:{SHARED_ACCOUNT}" in set(state(duck)["hubs"]["id_key"])
    waiting = _pending(duck)
    assert {"email:b@x.org", f"phone:{PHONES[1]}", "email:caller5@x.org"} <= waiting
    assert waiting == _pending(reference)
    load_both(duck, reference, extracts, "web", [("v9", "d@x.org")])
    got = state(duck)
    assert_same(got, state(reference), 4)
    assert _pending(duck) == set()
    m = got["identity_map"].set_index("id_key")
    # caller i wrote from EMAILS[i] (caller{i}@x.org from the fifth) and PHONES[i] (then 555003...)
    assert m.loc["email:b@x.org", "cx_id"] == m.loc[f"phone:{PHONES[1]}", "cx_id"]
    assert m.loc["email:caller5@x.org", "cx_id"] == m.loc["phone:5550030005", "cx_id"]
    assert m.loc["email:caller5@x.org", "cx_id"] != m.loc["email:caller6@x.org", "cx_id"]
    assert f"account_id:{SHARED_ACCOUNT}" in set(got["hubs"]["id_key"])
    reference.dispose()


def test_a_map_from_before_parts_and_skipped_stitching_fall_back_to_the_full_rebuild(duck, tmp_path):
    reference = open_store(f"duckdb:///{tmp_path / 'reference.duckdb'}")
    extracts = Extracts(tmp_path)
    load_both(duck, reference, extracts, "crm", [("C1", "a@x.org", "")])
    with duck.begin() as conn:  # a store written before identifiers knew their part
        conn.execute(identity_map_table.update().values(part=None))
    load_both(duck, reference, extracts, "web", [("v1", "a@x.org")])
    assert_same(state(duck), state(reference), 2)
    assert state(duck)["identity_map"]["part"].notna().all()
    # a load that skips stitching leaves a full rebuild to do, which the next append does
    path, source, mapping, mode = extracts.write("web", [("v2", "b@x.org")])
    ingest_file(duck, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
    ingest_file(reference, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
    with duck.connect() as conn:
        assert work_pending(conn, IDENTITY_UNSTITCHED)
    load_both(duck, reference, extracts, "tickets", [("c@x.org", "")])
    got = state(duck)
    assert_same(got, state(reference), 4)
    assert "visitor_id:v2" in set(got["identity_map"]["id_key"])
    with duck.connect() as conn:
        assert not work_pending(conn, IDENTITY_UNSTITCHED)
    reference.dispose()


def test_the_update_restitches_only_the_touched_part(duck, tmp_path):
    """A ticket from a known email with a new phone rewrites its customer's identifiers alone:
    another customer's rows keep theirs (the summary counts the restitched identifiers)."""
    extracts = Extracts(tmp_path)
    path, source, mapping, mode = extracts.write("crm", [("C1", "a@x.org", PHONES[0]), ("C2", "b@x.org", "")])
    ingest_file(duck, path, source=source, mapping=mapping, mode=mode)
    path, source, mapping, mode = extracts.write("tickets", [("a@x.org", "5559990000")])
    result = ingest_file(duck, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
    with duck.begin() as conn:
        conn.execute(sa.text("delete from pending_work"))  # the update, not the fallback
        summary = update_identity_map(conn, result.load_id)
    # C1's part: customer_id:C1, email:a@x.org, both phones; C2's two identifiers are not restitched
    assert summary["restitched"] == 4
    assert summary["customers"] == 2


def _restitched(store, extracts: Extracts, what: str, rows) -> int:
    """Load ``rows`` as an append, stitching it with ``update_identity_map`` as ingest does;
    the summary's count of restitched identifiers."""
    path, source, mapping, mode = extracts.write(what, rows)
    result = ingest_file(store, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
    with store.begin() as conn:
        conn.execute(sa.text("delete from pending_work"))
        return update_identity_map(conn, result.load_id)["restitched"]


@pytest.mark.parametrize("lookup", ["by value", "by join"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_append_that_adds_no_identifier_and_no_link_keys_its_rows_without_a_restitch(
    backend, lookup, tmp_path, monkeypatch
):
    """A ticket from a known email, or a visit repeating a known (cookie, email) pair, leaves the
    graph as it was: nothing is restitched, and the rows get their customer's key all the same.
    A new cookie, a new link between two known identifiers of one customer, a ticket from the hub
    address each restitch. After every load the store equals one rebuilt in full. A small load
    looks its identifiers up in the map by value; ``by join`` takes the large load's way."""
    if lookup == "by join":
        # the module, not the package's ``stitch`` function of the same name
        monkeypatch.setattr(sys.modules["cxdash.identity.stitch"], "FEW_IDENTIFIERS", 0)
    store, reference = make_store(backend, tmp_path / "a"), make_store(backend, tmp_path / "b")
    extracts = Extracts(tmp_path)
    try:
        setup = [
            ("crm", [("C1", "a@x.org", PHONES[0]), ("C2", "b@x.org", "")]),
            ("web", [("v1", "a@x.org"), ("v2", "b@x.org")]),
            ("helpdesk", DEFAULT_HUB_DEGREE + 2),  # help@x.org becomes a hub of many links
            # the rows moved off the new hub are restitched with the next append: this one
            ("web", [("v3", "c@x.org")]),
        ]
        for what, rows in setup:
            load_both(store, reference, extracts, what, rows)
        assert_same(state(store), state(reference), 0)
        cases = [
            ("tickets", [("a@x.org", "")], 0),  # a known email alone
            ("web", [("v1", "a@x.org")], 0),  # a known cookie with its known email
            ("tickets", [("b@x.org", ""), ("a@x.org", "")], 0),
            ("web", [("v9", "a@x.org")], None),  # a new cookie
            ("tickets", [("a@x.org", PHONES[0])], None),  # email and phone known, never on one row before
            ("tickets", [(HUB, "")], None),  # the hub's rows move to another identifier
        ]
        for step, (what, rows, expected) in enumerate(cases, start=1):
            before = state(store)["identity_map"]
            n = _restitched(store, extracts, what, rows)
            # the reference: the same file, stitched by the full rebuild
            extracts.n -= 1
            path, source, mapping, mode = extracts.write(what, rows)
            ingest_file(reference, path, source=source, mapping=mapping, mode=mode, rebuild_identities=False)
            with reference.begin() as conn:
                rebuild_identity_map(conn)
            after = state(store)
            assert_same(after, state(reference), step)
            if expected == 0:
                assert n == 0, f"case {step}: {rows} restitched {n} identifiers"
                pd.testing.assert_frame_equal(after["identity_map"], before)
            else:
                assert n > 0, f"case {step}: {rows} added a node or a link and was not restitched"
            # every row of the load has its customer's key (the email's, from the map)
            with store.connect() as conn:
                top = conn.execute(sa.select(sa.func.max(KIND_TABLES["tickets"].c.load_id))).scalar()
                top = max(top or 0, conn.execute(sa.select(sa.func.max(KIND_TABLES["events"].c.load_id))).scalar())
                t = KIND_TABLES["tickets" if what == "tickets" else "events"]
                unkeyed = conn.execute(
                    sa.select(sa.func.count()).where(t.c.load_id == top, t.c.id_key.is_not(None), t.c.cx_key.is_(None))
                ).scalar()
            assert unkeyed == 0
    finally:
        store.dispose()
        reference.dispose()
