"""Data health's "department and owner" form speaks in department words: the department is chosen
among the company's known departments (the kinds', the ones the house names, the sources' and the
rows' own), shown spelled out; another one can be typed in, stored as a code (trimmed, lower-case)
and shown by that name from then on. Every save is audited; a re-load without a department keeps
what was set. Expected lists and sentences are written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cxdash.governance.sources import department_code, known_departments, set_source_owner, source_owners
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries
from cxdash.store import audit
from cxdash.store.database import Store, open_store
from cxdash.ui import opsview
from tests.conftest import REPO

PAGE = str(REPO / "pages" / "data_health.py")

TICKETS = Mapping.from_dict(
    {
        "kind": "tickets",
        "columns": {"ticket_id": "id", "customer_id": "who", "opened_at": "opened", "department": "team"},
    }
)
EVENTS = Mapping.from_dict(
    {"kind": "events", "columns": {"customer_id": "who", "timestamp": "at", "activity": "what", "department": "dept"}}
)
CUSTOMERS = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "who", "segment": "segment"}})


def load_company(store: Store, folder: Path) -> None:
    """Three sources: a CRM (sales, the kind's), a helpdesk whose tickets name their team (one
    "tech", one "Field ops", one none), and a usage log loaded as "product" whose events name "growth"."""
    crm = folder / "crm.csv"
    crm.write_text("who,segment\nC1,smb\nC2,enterprise\n")
    tickets = folder / "tickets.csv"
    tickets.write_text(
        "id,who,opened,team\nT1,C1,2026-10-01 09:00:00,tech\nT2,C2,2026-10-02 10:00:00,Field ops\n"
        "T3,C1,2026-10-03 11:00:00,\n"
    )
    usage = folder / "usage.csv"
    usage.write_text("who,at,what,dept\nC1,2026-10-04 08:00:00,export,growth\nC2,2026-10-05 08:00:00,login,\n")
    ingest_file(store, crm, source="crm", mapping=CUSTOMERS)
    ingest_file(store, tickets, source="helpdesk", mapping=TICKETS)
    ingest_file(store, usage, source="usage", mapping=EVENTS, department="product")


# ----------------------------------------------------------------------------- the known departments


def test_the_known_departments_are_the_kinds_the_named_the_sources_and_the_rows_own_sorted_by_their_words(
    store, tmp_path
):
    load_company(store, tmp_path)
    set_source_owner(store, "crm", department="customer care", actor="test")
    with store.connect() as conn:
        known = known_departments(conn)
    # By hand: the kinds' departments (sales, web, support, billing, success), the ones the house names
    # (billing, finance, marketing, product, sales, success, support, tech, web; not the "unknown"
    # placeholder), the sources' (customer care now for crm, support, product) and the rows' own (tech,
    # Field ops, growth; the blank ones are not departments). In the order of their words:
    # Billing, customer care, Customer success, Customer support, Field ops, Finance, growth, Marketing,
    # Product, Technology, Web / digital -- with Sales before Technology.
    assert known == [
        "billing",
        "customer care",
        "success",
        "support",
        "Field ops",
        "finance",
        "growth",
        "marketing",
        "product",
        "sales",
        "tech",
        "web",
    ]


def test_an_empty_store_knows_the_kinds_and_the_named_departments(store):
    with store.connect() as conn:
        known = known_departments(conn)
    assert set(known) == {"billing", "finance", "marketing", "product", "sales", "success", "support", "tech", "web"}
    assert "unknown" not in known


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("  Field   Ops ", "field ops"),  # trimmed, lower-case, one space
        ("CUSTOMER CARE", "customer care"),
        ("billing", "billing"),
        ("Customer support", "support"),  # a known department's words give its code
        ("technology (TECH)", "tech"),  # as the pages write it
    ],
)
def test_a_typed_department_becomes_a_code(typed, code):
    assert department_code(typed) == code


def test_a_blank_department_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="the new department has no name: type it"):
        department_code(" \t ")


def test_the_choices_keep_a_department_set_since_the_list_was_read_and_end_with_another():
    options, index = opsview.department_choices(["billing", "support"], "customer care")
    assert options == ["billing", "support", "customer care", opsview.ANOTHER_DEPARTMENT]
    assert index == 2
    assert opsview.department_choices(["billing", "support"], None) == (
        ["billing", "support", opsview.ANOTHER_DEPARTMENT],
        None,
    )
    assert [opsview.department_choice_words(o) for o in options] == [
        "Billing (billing)",
        "Customer support (support)",
        "customer care",
        "Another department…",
    ]


# ----------------------------------------------------------------------------- the page


@pytest.mark.parametrize(
    ("department", "owner", "value", "words"),
    [
        ("support", "support", "", "now the Customer support team (support)"),  # what a load records
        ("field care", "support", "", "now the Customer support team (support)"),  # an old department's code
        ("field care", "field care", "", "now the field care team (field care)"),
        ("billing", None, "", "not set: the Billing team answers for it"),
        ("billing", float("nan"), "", "not set: the Billing team answers for it"),
        ("billing", "  Lee (billing ops) ", "Lee (billing ops)", ""),
        (None, None, "", "not set"),
    ],
)
def test_the_owner_box_shows_a_named_owner_and_says_a_teams_in_words(department, owner, value, words):
    got_value, placeholder = opsview.owner_box(department, owner)
    assert got_value == value
    assert placeholder.startswith(words) if words else placeholder == ""


def _owners(url: str) -> dict[str, tuple[str, str]]:
    store = open_store(url)
    try:
        with store.connect() as conn:
            frame = source_owners(conn)
    finally:
        store.dispose()
    return {r.name: (r.department, r.owner) for r in frame.itertuples()}


def _owner_changes(url: str) -> list[dict]:
    store = open_store(url)
    try:
        entries = audit.recent(store, action="source_owner_changed")
    finally:
        store.dispose()
    return [json.loads(d) for d in entries["detail"]]


def _page_on(db: str, tmp_path: Path, source: str) -> AppTest:
    store = open_store(db)
    try:
        load_company(store, tmp_path)
    finally:
        store.dispose()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="health_owner_source").set_value(source)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _widget(widgets, label: str):
    """The one widget with ``label`` (the form's keys change with each save: found by what a person reads)."""
    (found,) = [w for w in widgets if w.label == label]
    return found


def _said(element) -> str:
    return element.value.replace("\\", "")  # plain() escapes every punctuation mark for markdown


def test_picking_a_department_in_words_stores_its_code_and_is_audited(db, tmp_path):
    at = _page_on(db, tmp_path, "helpdesk")
    box = _widget(at.selectbox, "Department")
    assert box.value == "support"  # the source's current department is selected...
    assert box.options[box.index] == "Customer support (support)"  # ...and shown in words
    assert {"Billing (billing)", "Technology (tech)", "Field ops", "growth", "Another department…"} <= set(box.options)
    assert not [o for o in box.options if o in {"billing", "support", "tech", "sales"}]  # no bare code
    # the load recorded the department's code as owner: the box is empty and says who answers, in words
    owner = _widget(at.text_input, "Owner (team or person)")
    assert owner.value == ""
    assert "Customer support team (support)" in owner.proto.placeholder
    box.select_index(box.options.index("Billing (billing)"))
    _widget(at.text_input, "Owner (team or person)").set_value("Lee (billing ops)")
    at.button(key="health_owner_save").click()
    at.run()
    summaries.wait_for_background()  # the new department's views, prepared again on a thread
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert _owners(db)["helpdesk"] == ("billing", "Lee (billing ops)")
    assert _owner_changes(db) == [
        {
            "source": "helpdesk",
            "before": {"department": "support", "owner": "support"},
            "after": {"department": "billing", "owner": "Lee (billing ops)"},
        }
    ]
    assert [_said(s) for s in at.success] == [
        "Saved: helpdesk now belongs to Billing (billing), owner Lee (billing ops)."
        " Journeys, handoffs, hotspots and conflicts show its rows under that department from now on"
        " (their default views are being prepared again)."
    ]
    # after the save the form shows the source's new department
    box = _widget(at.selectbox, "Department")
    assert box.options[box.index] == "Billing (billing)"
    assert _widget(at.text_input, "Owner (team or person)").value == "Lee (billing ops)"


def test_another_department_is_typed_in_refused_blank_then_stored_as_a_code_and_kept_by_a_reload(db, tmp_path):
    at = _page_on(db, tmp_path, "helpdesk")
    box = _widget(at.selectbox, "Department")
    box.select_index(box.options.index("Another department…"))
    at.run()
    typed = _widget(at.text_input, "The other department's name")
    # nothing typed: refused, nothing stored, no audit entry
    at.button(key="health_owner_save").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [_said(e) for e in at.error] == [
        "Not saved: helpdesk stays as it was. The new department has no name: type it (for example field "
        "service), or choose one from the list."
    ]
    assert _owners(db)["helpdesk"] == ("support", "support")
    assert _owner_changes(db) == []

    typed = _widget(at.text_input, "The other department's name")
    typed.set_value("  Field  Care ")
    at.button(key="health_owner_save").click()
    at.run()
    summaries.wait_for_background()  # the new department's views, prepared again on a thread
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert _owners(db)["helpdesk"] == ("field care", "support")
    assert _owner_changes(db) == [
        {
            "source": "helpdesk",
            "before": {"department": "support", "owner": "support"},
            "after": {"department": "field care", "owner": "support"},
        }
    ]
    # the owner was the old department's code: the saved sentence names that team in words
    assert [_said(s) for s in at.success] == [
        "Saved: helpdesk now belongs to field care, owner Customer support team (support)."
        " Journeys, handoffs, hotspots and conflicts show its rows under that department from now on"
        " (their default views are being prepared again)."
    ]
    box = _widget(at.selectbox, "Department")
    assert box.options[box.index] == "field care"  # now one of the known departments, selected
    assert [t.label for t in at.text_input] == ["Owner (team or person)"]  # the other department's box is gone

    # a re-load of the source that names no department keeps the one set here
    store = open_store(db)
    try:
        again = tmp_path / "more_tickets.csv"
        again.write_text("id,who,opened,team\nT4,C2,2026-10-06 12:00:00,tech\n")
        ingest_file(store, again, source="helpdesk", mapping=TICKETS)
    finally:
        store.dispose()
    assert _owners(db)["helpdesk"] == ("field care", "support")
