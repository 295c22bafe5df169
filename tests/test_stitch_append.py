"""An append's stitch (the links made in SQL, identifiers matched in Arrow) on hand-built files:
shared identifiers, missing ones, a hub of many links and identifiers written in another case.
Each row's customer is worked out by hand below, and a full rebuild of the map from every stored
row (the other way to stitch) must find nothing to change."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.identity.stitch import DEFAULT_HUB_DEGREE, rebuild_identity_map
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import (
    KIND_TABLES,
    customer_keys_table,
    identity_hubs_table,
    identity_map_table,
    read_frame,
)

CRM = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "mail", "phone": "tel"}})
WEB = Mapping.from_dict(
    {"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at", "activity": "page"}}
)
HUB_COOKIES = [f"h{i}" for i in range(1, DEFAULT_HUB_DEGREE + 2)]  # one more than a hub's degree
stitch_module = importlib.import_module("cxdash.identity.stitch")  # the package re-exports a function of that name


def web_file(path, rows: list[tuple[str, str]], day: int):
    lines = ["visitor,mail,at,page"] + [
        f"{v},{m},2024-02-{day:02d} {i // 60:02d}:{i % 60:02d},home" for i, (v, m) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def customers_by_line(store, source: str) -> list[str | None]:
    """The customer (``cx_id``) of each stored row of ``source``, in file order."""
    t, ck = KIND_TABLES["events"], customer_keys_table
    q = (
        sa.select(t.c.row_number, ck.c.cx_id)
        .select_from(t.outerjoin(ck, ck.c.cx_key == t.c.cx_key))
        .where(t.c.source == source)
        .order_by(t.c.row_number)
    )
    with store.connect() as conn:
        return [r.cx_id for r in conn.execute(q)]


def stitched(store) -> dict[str, pd.DataFrame]:
    """The identity map, the hubs, the customer keys and every row's keys, each in one order."""
    with store.connect() as conn:
        out = {
            "map": read_frame(conn, sa.select(identity_map_table)),
            "hubs": read_frame(conn, sa.select(identity_hubs_table)),
            "keys": read_frame(conn, sa.select(customer_keys_table)),
        }
        for name, t in KIND_TABLES.items():
            out[name] = read_frame(conn, sa.select(t.c.row_key, t.c.id_key, t.c.cx_key))
    for name, frame in out.items():
        frame = frame.astype(object).where(frame.notna(), None)
        out[name] = frame.sort_values(list(frame.columns), key=lambda s: s.astype(str)).reset_index(drop=True)
    return out


@pytest.mark.parametrize("way", ["parts", "whole"])
def test_an_append_stitches_shared_missing_hub_and_mixed_case_identifiers(store, tmp_path, monkeypatch, way):
    """``parts``: each append restitches the parts it touches (a map this small always is);
    ``whole``: every append is made to rebuild the map, as one touching most of a large map does."""
    if way == "whole":
        monkeypatch.setattr(stitch_module, "REBUILD_MIN_IDENTIFIERS", 0)
        monkeypatch.setattr(stitch_module, "REBUILD_SHARE", 0.0)
    rebuilds = []
    real_rebuild = stitch_module.rebuild_identity_map
    monkeypatch.setattr(
        stitch_module, "rebuild_identity_map", lambda conn, *a: rebuilds.append(1) or real_rebuild(conn, *a)
    )
    crm = tmp_path / "crm.csv"
    crm.write_text("id,mail,tel\nC1,ann@x.org,5550000001\nC2,bob@x.org,\n", encoding="utf-8")
    ingest_file(store, crm, source="crm", mapping=CRM)

    first = [
        ("v1", "Ann@X.org"),  # C1's email in another case: emails match whatever the case
        ("v2", ""),  # no email: a visitor of their own
        ("V2", "bob@x.org"),  # visitor ids keep their case: V2 is not v2, and is C2's
        *[(c, "shared@x.org") for c in HUB_COOKIES],  # one address on 26 cookies: a hub, links nothing
        ("v1", ""),  # v1 again, without the email: still C1
        ("v3", "cat@x.org"),  # nobody known: v3 and cat@ are one new customer, named by the email
    ]
    ingest_file(store, web_file(tmp_path / "web1.csv", first, 1), source="web", mapping=WEB)
    assert customers_by_line(store, "web") == [
        "C1",
        "visitor_id:v2",
        "C2",
        *[f"visitor_id:{c}" for c in HUB_COOKIES],  # rows keyed on the hub moved to their cookie
        "C1",
        "email:cat@x.org",
    ]
    with store.connect() as conn:
        hubs = read_frame(conn, sa.select(identity_hubs_table.c.id_key, identity_hubs_table.c.degree))
    assert hubs.astype(object).values.tolist() == [["email:shared@x.org", len(HUB_COOKIES)]]

    # v3 now shows bob's address: cat@ and v3 join C2 (bob@ is C2's), earlier rows included;
    # v2 shares nothing with anyone and stays on its own.
    second = [("v3", "BOB@x.org"), ("v2", ""), ("h1", "ann@x.org")]
    ingest_file(store, web_file(tmp_path / "web2.csv", second, 2), source="web2", mapping=WEB)
    assert customers_by_line(store, "web2") == ["C2", "visitor_id:v2", "C1"]
    assert customers_by_line(store, "web")[-1] == "C2"
    # h1's earlier row (keyed on h1 after leaving the hub) is C1's now too
    assert customers_by_line(store, "web")[3] == "C1"
    assert customers_by_line(store, "web")[4:-2] == [f"visitor_id:{c}" for c in HUB_COOKIES[1:]]

    assert len(rebuilds) == (3 if way == "whole" else 0)  # the three appends
    before = stitched(store)
    with store.begin() as conn:
        rebuild_identity_map(conn)
    after = stitched(store)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], check_dtype=False, obj=name)


def test_identifier_membership_is_exact_and_a_missing_value_is_never_a_member():
    from cxdash.identity.stitch import _isin

    values = pd.Series(["email:a@x.org", "email:A@x.org", None, "visitor_id:v1", "email:a@x.org"], dtype="string")
    among = pd.Series(["email:a@x.org", None, "visitor_id:V1"], dtype=object)
    assert _isin(values, among).tolist() == [True, False, False, False, True]
    assert _isin(values, among.iloc[:0]).tolist() == [False] * 5
