"""Identity stitching on hand-drawn graphs."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdash.identity.stitch import stitch
from cxdash.ingest.identifiers import normalise_identity


def graph(edges, crm):
    e = pd.DataFrame(edges, columns=["a", "b"])
    nodes = pd.DataFrame({"node": sorted(set(e["a"]) | set(e["b"]) | set(crm))})
    nodes["crm"] = nodes["node"].isin(crm)
    return e, nodes


def test_a_cookie_that_logged_in_joins_its_customer():
    e, n = graph(
        [
            ("customer_id:C1", "email:ann@x.org"),
            ("customer_id:C1", "account_id:A9"),
            ("visitor:ck1", "email:ann@x.org"),
        ],
        crm=["customer_id:C1"],
    )
    m, hubs = stitch(e, n)
    assert set(m["cx_id"]) == {"C1"} and m["known"].all()
    assert hubs.empty


def test_a_shared_helpdesk_address_is_a_hub_and_merges_no_one():
    edges = [("customer_id:C1", "phone:5550000001"), ("customer_id:C2", "phone:5550000002")]
    edges += [("email:desk@help", "phone:5550000001"), ("email:desk@help", "phone:5550000002")]
    e, n = graph(edges, crm=["customer_id:C1", "customer_id:C2"])
    m, hubs = stitch(e, n)
    got = dict(zip(m["id_key"], m["cx_id"], strict=True))
    assert got["phone:5550000001"] == "C1" and got["phone:5550000002"] == "C2"
    assert got["email:desk@help"] == "email:desk@help"
    assert list(hubs["id_key"]) == ["email:desk@help"]


def test_an_identifier_with_many_links_is_a_hub_even_without_crm_records():
    edges = [("phone:5551234567", f"visitor:{i}") for i in range(30)]
    e, n = graph(edges, crm=[])
    m, hubs = stitch(e, n, hub_degree=25)
    assert list(hubs["id_key"]) == ["phone:5551234567"]
    assert m["cx_id"].nunique() == 31  # nobody merged through the hub


def test_without_a_crm_record_the_customer_id_names_the_customer():
    e, n = graph([("customer_id:17850", "email:z@y.com")], crm=[])
    m, _ = stitch(e, n)
    assert set(m["cx_id"]) == {"17850"} and not m["known"].any()


def test_phone_formats_normalise_to_the_same_key():
    raw = pd.Series(["+1 (555) 010-0123", "555.010.0123", "15550100123", "  ", None])
    out = normalise_identity("phone", raw)
    assert out.iloc[:3].tolist() == ["5550100123"] * 3
    assert out.iloc[3:].isna().all()


# ----------------------------------------------------------------------------- CRM records never merge
def test_a_long_chain_between_two_crm_records_merges_neither():
    """CRM C1 - email a - web visitor - another email - phone - email b - CRM C2 (issue 14)."""
    chain = [
        "customer_id:C1",
        "email:a@x.org",
        "visitor_id:v1",
        "email:other@x.org",
        "phone:5550001111",
        "email:b@x.org",
        "customer_id:C2",
    ]
    e, n = graph(list(itertools.pairwise(chain)), crm=["customer_id:C1", "customer_id:C2"])
    m, hubs = stitch(e, n)
    got = dict(zip(m["id_key"], m["cx_id"], strict=True))
    # each identifier joins the CRM record it is fewest links from; the middle one is equally near both
    assert [got[k] for k in chain[:3]] == ["C1"] * 3
    assert [got[k] for k in chain[4:]] == ["C2"] * 3
    assert got["email:other@x.org"] == "email:other@x.org"
    assert hubs.set_index("id_key")["reason"].to_dict() == {"email:other@x.org": "equally near two CRM customers"}


@pytest.mark.parametrize("bridge", [3, 4, 5, 6])
def test_bridges_of_three_to_six_links_keep_two_crm_records_apart(bridge):
    middle = [f"visitor_id:m{i}" for i in range(bridge - 1)]
    chain = ["customer_id:C1", *middle, "customer_id:C2"]
    e, n = graph(list(itertools.pairwise(chain)), crm=["customer_id:C1", "customer_id:C2"])
    m, hubs = stitch(e, n)
    got = dict(zip(m["id_key"], m["cx_id"], strict=True))
    # by hand: node i of the middle is i+1 links from C1 and bridge-1-i from C2
    for i, node in enumerate(middle):
        near1, near2 = i + 1, bridge - 1 - i
        expected = "C1" if near1 < near2 else "C2" if near2 < near1 else node
        assert got[node] == expected, (bridge, node)
    assert len(hubs) == (1 if bridge % 2 == 0 else 0)  # an even bridge has a middle identifier
    assert m.attrs["refused_links"] == (1 if bridge % 2 == 1 else 0)


def test_an_identifier_on_one_record_and_linked_to_anothers_stays_with_its_own():
    """A web event carries C1's email and C2's phone: the event's link is refused, both keep theirs."""
    e, n = graph(
        [
            ("customer_id:C1", "email:a@x.org"),
            ("customer_id:C2", "phone:5550002222"),
            ("email:a@x.org", "phone:5550002222"),
        ],
        crm=["customer_id:C1", "customer_id:C2"],
    )
    m, hubs = stitch(e, n)
    got = dict(zip(m["id_key"], m["cx_id"], strict=True))
    assert got["email:a@x.org"] == "C1" and got["phone:5550002222"] == "C2"
    assert hubs.empty and m.attrs["refused_links"] == 1


KINDS_OF_KEY = ("customer_id", "email", "phone", "visitor_id", "account_id")


@st.composite
def identity_graphs(draw):
    n = draw(st.integers(min_value=1, max_value=28))
    names = [f"{KINDS_OF_KEY[i % len(KINDS_OF_KEY)]}:n{i}" for i in range(n)]
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))
    edges = [(names[a], names[b]) for a, b in pairs if a != b]
    crm = draw(st.sets(st.sampled_from(names), max_size=max(1, n // 2)))
    hub_degree = draw(st.sampled_from([2, 3, 25]))
    return names, edges, sorted(crm), hub_degree


def _components(names, edges):
    """Connected components of the raw graph, by plain union-find (the test's own)."""
    parent = {x: x for x in names}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    return {x: find(x) for x in names}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identity_graphs(), st.randoms(use_true_random=False))
def test_no_customer_ever_holds_two_crm_records_whatever_the_graph(g, rnd):
    names, edges, crm, hub_degree = g
    e = pd.DataFrame(edges, columns=["a", "b"]) if edges else pd.DataFrame({"a": [], "b": []}, dtype=object)
    nodes = pd.DataFrame({"node": names, "crm": [x in crm for x in names]})
    m, hubs = stitch(e, nodes, hub_degree=hub_degree)
    assert sorted(m["id_key"]) == sorted(names)
    owner = dict(zip(m["id_key"], m["cx_id"], strict=True))
    # no component holds two distinct CRM records
    crm_per_customer = pd.Series([owner[c] for c in crm]).value_counts()
    assert (crm_per_customer <= 1).all()
    # every CRM record keeps its own customer: named by its own id, and known
    for c in crm:
        assert owner[c] == (c.removeprefix("customer_id:") if c.startswith("customer_id:") else c)
    known = dict(zip(m["id_key"], m["known"], strict=True))
    for x in names:
        assert known[x] == (owner[x] in {owner[c] for c in crm})
    # stitching only ever splits: identifiers of one customer are connected in the raw graph
    raw = _components(names, edges)
    for _, group in m.groupby("cx_id"):
        assert len({raw[x] for x in group["id_key"]}) == 1
    # and the answer does not depend on the order of the rows or of the ends of a link
    shuffled = [(b, a) if rnd.random() < 0.5 else (a, b) for a, b in edges]
    rnd.shuffle(shuffled)
    e2 = pd.DataFrame(shuffled, columns=["a", "b"]) if shuffled else e
    n2 = nodes.sample(frac=1.0, random_state=rnd.randint(0, 10_000))
    m2, hubs2 = stitch(e2, n2, hub_degree=hub_degree)
    assert dict(zip(m2["id_key"], m2["cx_id"], strict=True)) == owner
    assert sorted(hubs2["id_key"]) == sorted(hubs["id_key"])


def test_a_chain_of_real_rows_between_two_crm_records_keeps_them_apart(store, tmp_path):
    """The issue 14 chain, built from loaded extracts: CRM C1 (email a) - web visit (visitor v1,
    email a) - web visit (v1, email other) - ticket (email other, phone p) - ticket (phone p,
    email b) - CRM C2 (email b)."""
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from cxdash.store.database import KIND_TABLES, customer_keys_table

    crm = tmp_path / "crm.csv"
    crm.write_text("id,email\nC1,a@x.org\nC2,b@x.org\n")
    web = tmp_path / "web.csv"
    web.write_text("cookie,email,at,page\nv1,a@x.org,2024-01-01 10:00,home\nv1,other@x.org,2024-01-02 10:00,cart\n")
    desk = tmp_path / "desk.csv"
    desk.write_text(
        "ticket,email,phone,opened\nT1,other@x.org,555-000-1111,2024-01-03\nT2,b@x.org,555-000-1111,2024-01-04\n"
    )
    ingest_file(store, crm, source="crm", mapping=Mapping("customers", {"customer_id": "id", "email": "email"}))
    ingest_file(
        store,
        web,
        source="web",
        mapping=Mapping("events", {"visitor_id": "cookie", "email": "email", "timestamp": "at", "activity": "page"}),
    )
    ingest_file(
        store,
        desk,
        source="desk",
        mapping=Mapping("tickets", {"ticket_id": "ticket", "email": "email", "phone": "phone", "opened_at": "opened"}),
    )
    ck = customer_keys_table
    with store.connect() as conn:
        known = sorted(r[0] for r in conn.execute(sa.select(ck.c.cx_id).where(ck.c.known.is_(True))))
        tickets = dict(
            conn.execute(
                sa.select(KIND_TABLES["tickets"].c.ticket_id, ck.c.cx_id).select_from(
                    KIND_TABLES["tickets"].outerjoin(ck, ck.c.cx_key == KIND_TABLES["tickets"].c.cx_key)
                )
            ).fetchall()
        )
    assert known == ["C1", "C2"]
    # by hand: a=1 link from C1, v1=2, other=3; b=1 from C2, p=2, other=3: "other" is equally near
    # both and links no one. T1 is keyed on that email, so it is matched on its phone (C2's side);
    # T2 on email b (C2).
    assert tickets == {"T1": "C2", "T2": "C2"}
