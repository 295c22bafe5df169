"""Identity stitching on hand-drawn graphs."""

from __future__ import annotations

import pandas as pd

from cxdash.identity import stitch
from cxdash.validation import normalise_identity


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
