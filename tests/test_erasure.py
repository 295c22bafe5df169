"""Right to erasure: a demo customer with several linked identifiers is erased, then every table is
searched for any trace; re-loading the original extracts does not bring them back; the audit log
holds a salted hash, never the id."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.cli.main import main
from cxdash.governance.erasure import ErasureError, erase_customer
from cxdash.governance.privacy import identifier_hash
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store import audit
from cxdash.store.database import (
    ANALYTICS,
    APP_STATE,
    KIND_TABLES,
    activation_table,
    identity_map_table,
    loads_table,
    open_store,
    quarantine_table,
    read_frame,
    scores_table,
    suppression_table,
)
from cxdash.store.version import changes_table, data_version

SALT = "erasure-test-salt"


@pytest.fixture(autouse=True)
def _salt(monkeypatch):
    monkeypatch.setenv("CXDASH_SECRET_SALT", SALT)


def _all_tables() -> list[sa.Table]:
    return [*ANALYTICS.sorted_tables, *APP_STATE.sorted_tables]


def _dump(store) -> dict[str, pd.DataFrame]:
    out = {}
    for t in _all_tables():
        conn_cm = store.connect() if t.metadata is ANALYTICS else store.app_begin()
        with conn_cm as conn:
            out[t.name] = read_frame(conn, sa.select(t))
    return out


def _traces(store, values: set[str], phones: set[str]) -> list[str]:
    """Every (table, column, cell) whose text holds one of ``values`` (case-insensitive) or, for
    short cells, one of the phone numbers written any way."""
    lowered = [v.lower() for v in values]
    found = []
    for name, frame in _dump(store).items():
        for col in frame.columns:
            cells = frame[col].dropna()
            if cells.empty or pd.api.types.is_numeric_dtype(cells) or pd.api.types.is_datetime64_any_dtype(cells):
                continue
            for cell in cells.astype(str):
                low = cell.lower()
                if any(v in low for v in lowered) or (
                    len(cell) < 30 and any(p in re.sub(r"\D", "", cell) for p in phones)
                ):
                    found.append(f"{name}.{col}: {cell[:80]}")
    return found


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    """A fresh 400-customer demo; the customer with the most linked identifiers erased by phone."""
    from cxdash.demo.build import build_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXDASH_SECRET_SALT", SALT)
        root = tmp_path_factory.mktemp("erasure")
        store = open_store(f"duckdb:///{root / 'demo.duckdb'}")
        build_demo(store, n_customers=400, seed=5, out_dir=root / "extracts")
        with store.connect() as conn:
            im = read_frame(conn, sa.select(identity_map_table).where(identity_map_table.c.known.is_(True)))
            im["field"] = im["id_key"].str.split(":").str[0]
            fields = im.groupby("cx_id")["field"].agg(lambda f: (f.nunique(), len(f)))
            cx_id = max(fields.index, key=lambda c: fields[c])
            keys = im.loc[im["cx_id"] == cx_id, "id_key"].tolist()
            other = next(c for c in fields.index if c != cx_id)
            before = {k: read_frame(conn, sa.select(t.c.id_key, t.c.source)) for k, t in KIND_TABLES.items()}
            customers_before = im["cx_id"].nunique()
        # Tables other engineers added (scores, follow-up lists) and a quarantined value hold the
        # customer too; one row of another customer in each must survive.
        phone = next(k.split(":", 1)[1] for k in keys if k.startswith("phone:"))
        email = next(k.split(":", 1)[1] for k in keys if k.startswith("email:"))
        now = datetime(2026, 1, 1)
        with store.app_begin() as conn:
            for i, c in enumerate([cx_id, other]):
                conn.execute(
                    scores_table.insert().values(
                        model_version=1, position=i, cx_id=c, customer_id=c, risk=0.5, scored_at=now
                    )
                )
                conn.execute(
                    activation_table.insert().values(
                        id=i + 1, cx_id=c, customer_id=c, status="contacted", actor="agent", updated_at=now
                    )
                )
        with store.begin() as conn:
            conn.execute(
                quarantine_table.insert(),
                [
                    {
                        "load_id": 1,
                        "source": "helpdesk",
                        "row_number": 5,
                        "column_name": "Requester Email",
                        "rule": "x",
                        "value": email.upper(),
                        "reason": "test",
                    },
                    {
                        "load_id": 1,
                        "source": "helpdesk",
                        "row_number": 6,
                        "column_name": "Requester Email",
                        "rule": "x",
                        "value": "someone.else@example.com",
                        "reason": "test",
                    },
                ],
            )
        written = "(" + phone[:3] + ") " + phone[3:6] + "-" + phone[6:]  # the phone as a person types it
        result = erase_customer(store, written, actor="dpo@company")
        yield {
            "store": store,
            "root": root,
            "cx_id": cx_id,
            "keys": keys,
            "other": other,
            "result": result,
            "before": before,
            "customers_before": customers_before,
            "request": written,
        }
        store.dispose()


def _identifiers(keys):
    values = {k.split(":", 1)[1] for k in keys}
    phones = {k.split(":", 1)[1] for k in keys if k.startswith("phone:")}
    return values, phones


def _file_hits(db, values) -> dict[str, int]:
    """How often each value occurs in the database file's bytes and its write-ahead log (what
    `strings demo.duckdb` would find)."""
    wal = db.with_name(db.name + ".wal")
    raw = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    return {v: raw.count(v.encode()) for v in values if raw.count(v.encode())}


def test_no_row_of_the_customer_survives_in_the_freed_space_and_a_compaction_leaves_no_byte(erased):
    from cxdash.store.compaction import compact_duckdb_file

    store, db = erased["store"], erased["root"] / "demo.duckdb"
    store.dispose()
    values, _ = _identifiers(erased["keys"])
    values |= {erased["cx_id"]}
    # After the erasure's scrub, what is left is at most DuckDB's old column statistics (a row
    # group's smallest and largest value), never the rows: emails and phones are nobody's extreme.
    assert erased["result"].scrubbed
    left = _file_hits(db, values)
    assert set(left) <= {erased["cx_id"], *(k.split(":", 1)[1] for k in erased["keys"] if k.startswith("customer_id:"))}
    # The compaction (the CLI's erase runs it) rewrites the file from its live rows: nothing is left.
    assert compact_duckdb_file(store.engine) == db.resolve()
    assert _file_hits(db, values) == {}
    with store.connect() as conn:  # and the store still opens and holds everyone else
        assert conn.execute(sa.select(sa.func.count()).select_from(identity_map_table)).scalar() > 0


def test_the_chosen_customer_really_has_several_kinds_of_identifier(erased):
    fields = {k.split(":")[0] for k in erased["keys"]}
    assert {"customer_id", "email", "phone", "account_id", "visitor_id"} <= fields
    assert len(erased["keys"]) >= 5


def test_no_table_holds_any_trace_of_any_linked_identifier(erased):
    values, phones = _identifiers(erased["keys"])
    assert _traces(erased["store"], values | {erased["cx_id"]}, phones) == []


def test_exactly_the_customers_rows_were_deleted_and_no_one_elses(erased):
    store, before = erased["store"], erased["before"]
    keys = set(erased["keys"])
    deleted = erased["result"].rows_deleted
    with store.connect() as conn:
        for kind, t in KIND_TABLES.items():
            expected = int(before[kind]["id_key"].isin(keys).sum())
            assert deleted.get(t.name, 0) == expected, kind
            after = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            assert after == len(before[kind]) - expected
        im = identity_map_table
        known = conn.execute(sa.select(sa.func.count(sa.distinct(im.c.cx_id))).where(im.c.known.is_(True))).scalar()
    assert known == erased["customers_before"] - 1
    assert deleted["scores"] == 1 and deleted["activation"] == 1 and deleted["quarantine"] == 1
    with store.app_begin() as conn:
        assert conn.execute(sa.select(scores_table.c.cx_id)).scalars().all() == [erased["other"]]


def test_the_audit_log_holds_a_salted_hash_never_the_id(erased):
    log = audit.recent(erased["store"], action="erasure")
    assert len(log) == 1 and log.iloc[0]["actor"] == "dpo@company"
    detail = json.loads(log.iloc[0]["detail"])
    assert detail["request_hash"] == identifier_hash("request:" + erased["request"].lower(), SALT.encode())
    assert detail["customer_hash"] == identifier_hash("cx_id:" + erased["cx_id"], SALT.encode())
    text = log.to_string() + json.dumps(detail)
    values, _phones = _identifiers(erased["keys"])
    assert not any(v.lower() in text.lower() for v in values | {erased["cx_id"], erased["request"]})


def test_the_suppression_list_holds_one_salted_hash_per_identifier(erased):
    with erased["store"].app_begin() as conn:
        hashes = set(conn.execute(sa.select(suppression_table.c.id_hash)).scalars())
    # one per linked identifier, and the customer's own id (how a retry recognises them)
    expected = {identifier_hash(k, SALT.encode()) for k in [*erased["keys"], "cx_id:" + erased["cx_id"]]}
    assert hashes == expected


def test_the_data_version_moved_so_no_cache_serves_the_customer(erased):
    with erased["store"].connect() as conn:
        last = conn.execute(sa.select(changes_table.c.kind).order_by(changes_table.c.id.desc()).limit(1)).scalar()
        loads = conn.execute(sa.select(sa.func.count(), sa.func.max(loads_table.c.load_id))).one()
        version = data_version(conn)
    assert last == "erasure"
    # every load of the demo moved the version once and the erasure once more; no pretend load
    assert loads[0] == loads[1] and version == loads[1] + 1


def test_reloading_the_original_extracts_does_not_bring_the_customer_back(erased):
    store, before = erased["store"], erased["before"]
    with store.connect() as conn:
        loads = conn.execute(
            sa.select(loads_table.c.source, loads_table.c.file_name).where(loads_table.c.kind != "erasure")
        ).fetchall()
    suppressed = 0
    for source, file_name in loads:
        result = ingest_file(store, erased["root"] / "extracts" / file_name, source=source, mode="replace")
        suppressed += result.rows_suppressed
        assert result.stored
        if result.rows_suppressed:
            assert f"{result.rows_suppressed:,} rows belong to erased customers and are left out" in result.notes
            assert "erased customers' rows dropped" in result.summary()
    values, phones = _identifiers(erased["keys"])
    assert _traces(store, values | {erased["cx_id"]}, phones) == []
    keys = set(erased["keys"])
    with store.connect() as conn:
        for kind, t in KIND_TABLES.items():
            after = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            assert after == len(before[kind]) - int(before[kind]["id_key"].isin(keys).sum()), kind
    assert suppressed >= erased["result"].rows_deleted.get("src_events", 0)


def test_an_unknown_id_or_an_injection_attempt_erases_nothing(erased):
    store = erased["store"]
    with store.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["events"])).scalar()
    for bad in ("nobody@example.com", "x' OR '1'='1", "%", "'; DELETE FROM src_events; --", "  "):
        with pytest.raises(ErasureError):
            erase_customer(store, bad, actor="dpo")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["events"])).scalar() == before


def test_a_hub_identifier_is_refused_because_it_names_no_one(store, tmp_path):
    # Thirty customers wrote in from the helpdesk's own address: it is a hub, not a person.
    rows = [[f"C{i}", f"c{i}@x.com", "555000000" + str(i % 10)] for i in range(30)]
    crm = tmp_path / "crm.csv"
    pd.DataFrame(rows, columns=["id", "email", "phone"]).to_csv(crm, index=False)
    ingest_file(
        store,
        crm,
        source="crm",
        mapping=Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "email"}}),
    )
    tickets = tmp_path / "t.csv"
    pd.DataFrame(
        {
            "tid": [f"T{i}" for i in range(30)],
            "email": ["help@shop.com"] * 30,
            "cust": [f"C{i}" for i in range(30)],
            "opened": ["2024-01-02"] * 30,
        }
    ).to_csv(tickets, index=False)
    ingest_file(
        store,
        tickets,
        source="helpdesk",
        mapping=Mapping.from_dict(
            {
                "kind": "tickets",
                "columns": {"ticket_id": "tid", "email": "email", "customer_id": "cust", "opened_at": "opened"},
            }
        ),
    )
    with pytest.raises(ErasureError, match="hub"):
        erase_customer(store, "help@shop.com", actor="dpo")
    # Erasing one of them removes their CRM row and their ticket, and leaves the shared address
    # on everyone else's tickets.
    result = erase_customer(store, "C7", actor="dpo")
    assert result.rows_deleted["src_customers"] == 1 and result.rows_deleted["src_tickets"] == 1
    with store.connect() as conn:
        t = KIND_TABLES["tickets"]
        left = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.email == "help@shop.com")).scalar()
        assert left == 29
        assert conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.customer_id == "C7")).scalar() == 0


def test_the_cli_erases_by_email_and_prints_no_identifier(tmp_path, capsys):
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    s = open_store(url)
    crm = tmp_path / "crm.csv"
    pd.DataFrame([["C1", "ann@x.com"], ["C2", "bo@x.com"]], columns=["id", "email"]).to_csv(crm, index=False)
    ingest_file(
        s,
        crm,
        source="crm",
        mapping=Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "email"}}),
    )
    s.dispose()
    assert main(["--db", url, "erase", "--customer", "ANN@x.com", "--actor", "dpo"]) == 0
    out = capsys.readouterr().out
    assert "src_customers 1" in out and "ann" not in out.lower() and "C1" not in out
    assert "rewritten from its live rows" in out
    assert _file_hits(tmp_path / "cli.duckdb", {"ann@x.com", "C1"}) == {}
    # Asked again, the customer is recognised as erased already (nothing left to find), not unknown.
    assert main(["--db", url, "erase", "--customer", "ann@x.com"]) == 0
    assert "already erased" in capsys.readouterr().out
    assert main(["--db", url, "erase", "--customer", "nobody@x.com"]) == 1
    assert "no customer matches" in capsys.readouterr().err


def _two_customer_store(tmp_path):
    """CRM CUST-ANN (ann) and CUST-BO (bo), a ticket each, and a score and a follow-up row each."""
    s = open_store(f"duckdb:///{tmp_path / 'two.duckdb'}")
    crm, tickets = tmp_path / "crm.csv", tmp_path / "tickets.csv"
    pd.DataFrame([["CUST-ANN", "ann@x.com"], ["CUST-BO", "bo@x.com"]], columns=["id", "email"]).to_csv(crm, index=False)
    pd.DataFrame(
        [["T1", "ann@x.com", "2026-01-02"], ["T2", "bo@x.com", "2026-01-03"]], columns=["tid", "email", "opened"]
    ).to_csv(tickets, index=False)
    ingest_file(
        s,
        crm,
        source="crm",
        mapping=Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "email"}}),
    )
    ingest_file(
        s,
        tickets,
        source="helpdesk",
        mapping=Mapping.from_dict(
            {"kind": "tickets", "columns": {"ticket_id": "tid", "email": "email", "opened_at": "opened"}}
        ),
    )
    _score(s, ["CUST-ANN", "CUST-BO"])
    return s


def _score(store, cx_ids, start=0):
    now = datetime(2026, 2, 1)
    with store.app_begin() as conn:
        for i, c in enumerate(cx_ids, start=start):
            conn.execute(
                scores_table.insert().values(
                    model_version=1, position=i, cx_id=c, customer_id=c, risk=0.5, scored_at=now
                )
            )
            conn.execute(
                activation_table.insert().values(
                    id=i + 1, cx_id=c, customer_id=c, status="open", actor="agent", updated_at=now
                )
            )


def _app_customers(store) -> list[str]:
    with store.app_begin() as conn:
        return sorted(
            conn.execute(sa.select(scores_table.c.cx_id)).scalars().all()
            + conn.execute(sa.select(activation_table.c.cx_id)).scalars().all()
        )


def _rows_of(store, cx_key_of: str) -> int:
    with store.connect() as conn:
        t = KIND_TABLES["tickets"]
        return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.email == cx_key_of)).scalar()


class _Crash(RuntimeError):
    pass


def _crash_at(monkeypatch, where):
    import cxdash.governance.erasure as erasure

    def fail(step):
        if step == where:
            raise _Crash(step)

    monkeypatch.setattr(erasure, "_fail_point", fail)


def test_a_failure_after_the_suppression_leaves_a_request_a_retry_finishes(tmp_path, monkeypatch):
    store = _two_customer_store(tmp_path)
    _crash_at(monkeypatch, "suppressed")
    with pytest.raises(_Crash):
        erase_customer(store, "ann@x.com", actor="dpo")
    # The suppression and the app rows went first; the analytical rows are still there.
    assert _app_customers(store) == ["CUST-BO", "CUST-BO"]
    with store.app_begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(suppression_table)).scalar() == 3
    assert _rows_of(store, "ann@x.com") == 1
    monkeypatch.undo()
    monkeypatch.setenv("CXDASH_SECRET_SALT", SALT)
    result = erase_customer(store, "ann@x.com", actor="dpo")
    assert not result.already_erased
    assert result.rows_deleted["src_customers"] == 1 and result.rows_deleted["src_tickets"] == 1
    assert _rows_of(store, "ann@x.com") == 0 and _rows_of(store, "bo@x.com") == 1
    assert _traces(store, {"ann@x.com", "CUST-ANN"}, set()) == []
    with store.app_begin() as conn:  # the retry added no second hash
        assert conn.execute(sa.select(sa.func.count()).select_from(suppression_table)).scalar() == 3


def test_a_failure_after_the_analytical_step_is_finished_by_a_retry_that_sweeps_the_app_state(tmp_path, monkeypatch):
    store = _two_customer_store(tmp_path)
    _crash_at(monkeypatch, "analytics")
    with pytest.raises(_Crash):
        erase_customer(store, "CUST-ANN", actor="dpo")
    assert _rows_of(store, "ann@x.com") == 0
    # A scoring run between the steps wrote the customer back into the app state.
    _score(store, ["CUST-ANN"], start=10)
    assert "CUST-ANN" in _app_customers(store)
    monkeypatch.undo()
    monkeypatch.setenv("CXDASH_SECRET_SALT", SALT)
    # The retry names them by email: gone from the analytical store, but on the suppression list.
    result = erase_customer(store, "ANN@x.com", actor="dpo")
    assert result.already_erased
    assert result.rows_deleted == {"scores": 1, "activation": 1}
    assert _app_customers(store) == ["CUST-BO", "CUST-BO"]
    assert _traces(store, {"ann@x.com", "CUST-ANN"}, set()) == []
    assert "already erased" in result.summary()
    # Someone never erased is still refused as unknown, not swept.
    with pytest.raises(ErasureError, match="no customer matches"):
        erase_customer(store, "nobody@x.com", actor="dpo")
