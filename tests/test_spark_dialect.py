"""Probe of the Spark Thrift dialect (cxdash/store/spark.py): the SQL shapes cxdash uses give the
same answers on Spark as on DuckDB over the same rows.

Runs under ``bash scripts/with_spark.sh python -m pytest -m spark tests/test_spark_dialect.py``;
skips when ``CXDASH_ANALYTICS_URL`` (``CXDASH_SPARK_TEST_URL`` once tests/conftest.py moved it) does not point at a Spark Thrift server.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.spark

from tests.spark_support import SPARK_URL, spark_url  # noqa: E402  (CXDASH_ANALYTICS_URL, moved by tests/conftest.py)

if not SPARK_URL.startswith("sparkthrift://"):
    pytest.skip(
        "CXDASH_ANALYTICS_URL is not a sparkthrift:// URL (run under scripts/with_spark.sh: make test-spark)",
        allow_module_level=True,
    )

import cxdash.store.spark  # noqa: E402,F401  (registers sparkthrift://)
from cxdash.store.dialect import percentiles  # noqa: E402  (after the module-level skip)

N_ROWS = 400
NAMES = [" Anna ", "anna", "BOB", "bob ", "Chloé", "dan", "Eve", " eve"]


def _rows() -> list[dict]:
    rng = random.Random(18)
    base = dt.datetime(2024, 1, 1, 8, 0, 0)
    rows = []
    for i in range(N_ROWS):
        # Minute steps with repeats, so several rows of one customer share a timestamp.
        ts = base + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 90, 7) // 7 * 7, microseconds=(i % 3) * 250)
        if i % 17 == 0 and rows:
            ts = rows[-1]["ts"]
        rows.append(
            {
                "id": i,
                "cust": rng.choice(NAMES),
                "n": rng.randrange(0, 12),
                "amount": None if i % 11 == 0 else round(rng.uniform(-50, 500), 3),
                "d": ts.date(),
                "ts": ts,
                "flag": rng.random() < 0.4,
                "load_id": 1 + i % 4,
            }
        )
    return rows


def _table(md: sa.MetaData, name: str, **kw) -> sa.Table:
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("cust", sa.String, nullable=False),
        sa.Column("n", sa.Integer),
        sa.Column("amount", sa.Double),
        sa.Column("d", sa.Date),
        sa.Column("ts", sa.DateTime),
        sa.Column("flag", sa.Boolean),
        sa.Column("load_id", sa.BigInteger, nullable=False),
        **kw,
    )


@pytest.fixture(scope="module")
def both():
    """(spark connection, duckdb connection, table): the same rows in both."""
    suffix = uuid.uuid4().hex[:8]
    md = sa.MetaData()
    t = _table(md, f"probe_{suffix}")
    rows = _rows()
    spark = sa.create_engine(spark_url())
    duck = sa.create_engine("duckdb:///:memory:")
    with spark.connect() as sc, duck.connect() as dc:
        t.create(sc)
        t.create(dc)
        sc.execute(t.insert(), rows)
        dc.execute(t.insert(), rows)
        dc.commit()
        try:
            yield sc, dc, t
        finally:
            md.drop_all(sc)
    spark.dispose()
    duck.dispose()


def _norm(v):
    if isinstance(v, Decimal):
        v = float(v)
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _fetch(conn, stmt, ordered=False):
    out = [tuple(_norm(v) for v in row) for row in conn.execute(stmt)]
    return out if ordered else sorted(out, key=repr)


def _same(both, stmt, ordered=False):
    sc, dc, _ = both
    spark_rows = _fetch(sc, stmt, ordered)
    duck_rows = _fetch(dc, stmt, ordered)
    assert spark_rows, "the probe query returned no rows"
    assert spark_rows == duck_rows
    return spark_rows


def test_round_trip_keeps_values_and_types(both):
    sc, _, t = both
    expected = {r["id"]: r for r in _rows()}
    got = sc.execute(sa.select(t)).mappings().all()
    assert len(got) == N_ROWS
    for row in got:
        want = expected[row["id"]]
        for col in ("cust", "n", "d", "ts", "flag", "load_id"):
            assert row[col] == want[col], (row["id"], col)
        assert (row["amount"] is None) == (want["amount"] is None)
        if want["amount"] is not None:
            assert row["amount"] == pytest.approx(want["amount"])
    assert isinstance(got[0]["ts"], dt.datetime) and isinstance(got[0]["d"], dt.date)


def test_group_by_with_count_distinct_and_string_functions(both):
    _, _, t = both
    key = sa.func.lower(sa.func.trim(t.c.cust))
    stmt = sa.select(
        key.label("k"),
        sa.func.upper(key).label("u"),
        sa.func.char_length(t.c.cust).label("len"),
        sa.func.count().label("rows"),
        sa.func.count(sa.distinct(t.c.n)).label("distinct_n"),
        sa.func.sum(t.c.amount).label("total"),
        sa.func.avg(t.c.amount).label("mean"),
        sa.func.count().filter(t.c.flag).label("flagged"),
        sa.func.max(t.c.ts).label("last"),
    ).group_by(key, sa.func.char_length(t.c.cust))
    rows = _same(both, stmt)
    assert {r[0] for r in rows} == {"anna", "bob", "chloé", "dan", "eve"}


def test_window_functions_lead_lag_row_number(both):
    _, _, t = both
    w = {"partition_by": t.c.cust, "order_by": (t.c.ts, t.c.id)}
    inner = sa.select(
        t.c.id,
        sa.func.row_number().over(**w).label("rn"),
        sa.func.lead(t.c.id).over(**w).label("next_id"),
        sa.func.lag(t.c.ts).over(**w).label("prev_ts"),
        (sa.extract("epoch", sa.func.lead(t.c.ts).over(**w)) - sa.extract("epoch", t.c.ts)).label("gap_s"),
        sa.func.dense_rank().over(partition_by=t.c.cust, order_by=t.c.d).label("day_rank"),
    ).subquery()
    rows = _same(both, sa.select(inner))
    assert len(rows) == N_ROWS
    assert any(r[4] == 0 for r in rows), "equal timestamps should give zero gaps"


def test_median_and_percentiles(both):
    _, _, t = both
    stmt = sa.select(
        t.c.cust,
        sa.func.percentile_cont(0.5).within_group(t.c.amount).label("median"),
        sa.func.percentile_cont(0.9).within_group(t.c.amount).label("p90"),
    ).group_by(t.c.cust)
    _same(both, stmt)


def test_date_trunc_epoch_arithmetic_and_case(both):
    _, _, t = both
    hours = (sa.extract("epoch", t.c.ts) - sa.extract("epoch", sa.cast(t.c.d, sa.DateTime))) / 3600.0
    stmt = sa.select(
        sa.cast(sa.func.date_trunc("month", t.c.ts), sa.DateTime).label("month"),
        sa.case((t.c.amount.is_(None), "none"), (t.c.amount < 0, "refund"), else_="sale").label("kind"),
        sa.func.count().label("rows"),
        sa.func.sum(hours).label("hours"),
        sa.func.min(t.c.d).label("first_day"),
    ).group_by(sa.text("1"), sa.text("2"))
    rows = _same(both, stmt)
    assert {r[1] for r in rows} == {"none", "refund", "sale"}
    assert all(isinstance(r[0], dt.datetime) for r in rows)


def test_nulls_last_ordering(both):
    _, _, t = both
    stmt = sa.select(t.c.id, t.c.amount).order_by(t.c.amount.desc().nulls_last(), t.c.id).limit(N_ROWS)
    rows = _same(both, stmt, ordered=True)
    assert rows[-1][1] is None and rows[0][1] is not None


def test_insert_select_and_multi_row_insert(both):
    sc, dc, t = both
    md = sa.MetaData()
    t2 = _table(md, f"{t.name}_copy")
    try:
        for conn in (sc, dc):
            t2.create(conn)
            conn.execute(t2.insert().from_select([c.name for c in t.c], sa.select(t).where(t.c.flag, t.c.amount > 0)))
        stmt = sa.select(sa.func.count(), sa.func.sum(t2.c.amount), sa.func.min(t2.c.ts))
        _same(both, stmt)
        assert _fetch(sc, sa.select(sa.func.count()).select_from(t2))[0][0] == sum(
            1 for r in _rows() if r["flag"] and r["amount"] is not None and r["amount"] > 0
        )
    finally:
        t2.drop(sc, checkfirst=True)
        t2.drop(dc, checkfirst=True)


def test_spark_refuses_delete_and_the_dialect_drops_and_rewrites_partitions(both):
    """Spark takes no DELETE on a Parquet table; the dialect's DELETE drops a whole load's partition
    and erases rows by rewriting the partitions that hold them (cxdash.store.spark_dml), with the
    rows DuckDB keeps."""
    sc, dc, t = both
    md = sa.MetaData()
    p = _table(md, f"{t.name}_bylo", sparkthrift_partitioned_by=["load_id"])
    p.create(sc)
    p.create(dc)
    try:
        for conn in (sc, dc):
            conn.execute(p.insert().from_select([c.name for c in t.c], sa.select(t)))

        with pytest.raises(sa.exc.DBAPIError, match=r"UNSUPPORTED_FEATURE\.TABLE_OPERATION"):
            sc.exec_driver_sql(f"DELETE FROM `{p.name}` WHERE id = 1")  # as sent, not rewritten

        # A failed or withdrawn load: its partition is dropped.
        counts = [conn.execute(sa.delete(p).where(p.c.load_id == 3)).rowcount for conn in (sc, dc)]
        assert counts[0] == counts[1] > 0
        partitions = {r[0] for r in sc.exec_driver_sql(f"SHOW PARTITIONS `{p.name}`")}
        assert "load_id=3" not in partitions and partitions

        # Erasure of one customer: only the partitions holding their rows are rewritten.
        erased = "BOB"
        counts = [conn.execute(sa.delete(p).where(p.c.cust == erased)).rowcount for conn in (sc, dc)]
        assert counts[0] == counts[1] > 0

        stmt = sa.select(p.c.id, p.c.cust, p.c.load_id, p.c.amount, p.c.ts)
        rows = _same(both, stmt)
        assert rows and not any(r[1] == erased for r in rows)
        assert not any(r[2] == 3 for r in rows)
    finally:
        p.drop(sc, checkfirst=True)
        p.drop(dc, checkfirst=True)


def test_reflection_sees_the_table_and_its_types(both):
    sc, _, t = both
    insp = sa.inspect(sc)
    assert insp.has_table(t.name)
    assert not insp.has_table(f"{t.name}_missing")
    assert t.name in insp.get_table_names()
    types = {c["name"]: type(c["type"]) for c in insp.get_columns(t.name)}
    assert types == {
        "id": sa.BigInteger,
        "cust": sa.String,
        "n": sa.Integer,
        "amount": sa.Double,
        "d": sa.Date,
        "ts": sa.DateTime,
        "flag": sa.Boolean,
        "load_id": sa.BigInteger,
    }


def test_special_values_round_trip(both):
    sc, _, _ = both
    md = sa.MetaData()
    s = sa.Table(
        f"special_{uuid.uuid4().hex[:8]}",
        md,
        sa.Column("k", sa.Integer),
        sa.Column("txt", sa.Text),
        sa.Column("x", sa.Float),
    )
    values = [
        {"k": 1, "txt": "it's a \\ back\nslash\t'", "x": float("nan")},
        {"k": 2, "txt": "ünïcode — ✓", "x": float("inf")},
        {"k": 3, "txt": None, "x": 1 / 3},
    ]
    s.create(sc)
    try:
        sc.execute(s.insert(), values)
        got = sc.execute(sa.select(s).order_by(s.c.k)).all()
        assert [r[1] for r in got] == [v["txt"] for v in values]
        assert math.isnan(got[0][2]) and got[1][2] == math.inf and got[2][2] == 1 / 3
    finally:
        s.drop(sc)


def test_interval_arithmetic_and_array_percentiles(both):
    """``ts + timedelta`` binds as INTERVAL DAY TO SECOND; ``cxdash.store.dialect.percentiles`` (an
    array of fractions) and 1-based array indexing (cxdash.journeys' median-and-p90) compile to
    Spark's forms."""
    _, _, t = both
    shift = dt.timedelta(days=30, hours=-1, microseconds=500)
    both_p = percentiles(t.c.amount, (0.5, 0.9))
    inner = sa.select(
        t.c.cust.label("cust"),
        sa.func.max(t.c.ts + shift).label("shifted"),
        sa.func.max(t.c.ts).label("last"),
        both_p.label("p"),
    ).group_by(t.c.cust)
    sq = inner.subquery()
    rows = _same(both, sa.select(sq.c.cust, sq.c.shifted, sq.c.p[1], sq.c.p[2]))
    sc, _, _ = both
    direct = {
        r.cust: r
        for r in sc.execute(
            sa.select(
                t.c.cust,
                sa.func.percentile_cont(0.5).within_group(t.c.amount).label("m"),
                sa.func.max(t.c.ts).label("last"),
            ).group_by(t.c.cust)
        )
    }
    for cust, shifted, p50, _p90 in rows:
        assert shifted == direct[cust].last + shift
        assert p50 == pytest.approx(direct[cust].m)


def test_parquet_bulk_insert_equals_row_inserts(both, tmp_path):
    """``insert_via_parquet`` (Parquet file + temporary view + INSERT ... SELECT) stores the same
    rows as the dialect's multi-row INSERT."""
    import pandas as pd

    from cxdash.store.spark import insert_via_parquet

    sc, _, t = both
    staging = os.environ.get("CXDASH_SPARK_STAGING") or str(tmp_path)
    md = sa.MetaData()
    bulk = _table(md, f"{t.name}_bulk")
    bulk.create(sc)
    try:
        frame = pd.DataFrame(_rows())
        frame["ts"] = pd.to_datetime(frame["ts"])
        frame["d"] = pd.to_datetime(frame["d"]).dt.date
        assert insert_via_parquet(sc, bulk, frame, staging) == N_ROWS
        cols = [c.name for c in t.c]
        got = _fetch(sc, sa.select(*[bulk.c[c] for c in cols]))
        want = _fetch(sc, sa.select(*[t.c[c] for c in cols]))
        assert got == want
        assert not any(e.name.startswith(bulk.name) for e in os.scandir(staging)), "staging files left behind"
    finally:
        bulk.drop(sc)


def test_delete_and_update_are_rewrites_with_duckdbs_results():
    """DELETE and UPDATE, which Spark refuses on Parquet tables, run as partition rewrites
    (cxdash.store.spark_dml): the same rows and row counts as DuckDB, on a table partitioned by
    load id and on a plain one, for a plain UPDATE, an UPDATE ... FROM another table, a DELETE of
    part of a load and of a whole load, and binary values."""
    import pandas as pd

    from cxdash.store.database import bulk_insert, make_engine

    md = sa.MetaData()
    suffix = uuid.uuid4().hex[:8]
    t = sa.Table(
        f"rw_t_{suffix}",
        md,
        sa.Column("load_id", sa.BigInteger),
        sa.Column("k", sa.String),
        sa.Column("v", sa.BigInteger),
        sa.Column("d", sa.Date),
        info={"partition_by": ["load_id"]},
    )
    m = sa.Table(f"rw_m_{suffix}", md, sa.Column("k", sa.String), sa.Column("v", sa.BigInteger))
    s = sa.Table(f"rw_s_{suffix}", md, sa.Column("name", sa.String), sa.Column("payload", sa.LargeBinary))
    rows = pd.DataFrame(
        {
            "load_id": [1, 1, 1, 2, 2, 3],
            "k": ["a", "b", "c", "a", "d", None],
            "v": [1, 2, 3, 4, 5, 6],
            "d": [dt.date(2024, 1, 1)] * 6,
        }
    )
    payload = bytes(range(256))

    def run(engine):
        with engine.begin() as c:
            md.create_all(c)
            bulk_insert(c, t, rows)
            bulk_insert(c, m, pd.DataFrame({"k": ["a", "d"], "v": [10, 20]}))
            c.execute(s.insert().values(name="x", payload=payload))
            counts = [
                c.execute(t.delete().where(t.c.k == "b")).rowcount,  # part of load 1
                c.execute(t.delete().where(t.c.load_id == 3)).rowcount,  # all of load 3
                c.execute(t.update().where(t.c.k == m.c.k).values(v=m.c.v)).rowcount,  # UPDATE ... FROM
                c.execute(t.update().where(t.c.k.in_(["c"])).values(v=99, d=dt.date(2025, 2, 3))).rowcount,
                c.execute(m.delete().where(m.c.k == "a")).rowcount,  # a table without partitions
                c.execute(s.delete().where(s.c.name == "nobody")).rowcount,
            ]
            out = (
                counts,
                sorted(tuple(r) for r in c.execute(sa.select(t.c.load_id, t.c.k, t.c.v, t.c.d))),
                sorted(tuple(r) for r in c.execute(sa.select(m))),
                bytes(c.execute(sa.select(s.c.payload)).scalar()),
            )
            md.drop_all(c)
        return out

    duck = run(sa.create_engine("duckdb:///:memory:"))
    assert duck[0] == [1, 1, 3, 1, 1, 0]
    assert duck[3] == payload
    spark = make_engine(spark_url())
    try:
        assert run(spark) == duck
        with spark.connect() as c:
            left = [r[1] for r in c.exec_driver_sql("SHOW TABLES") if str(r[1]).startswith("cxdash_rewrite_")]
        assert left == []  # the stage tables are gone
    finally:
        spark.dispose()


def test_a_new_connection_sees_another_writers_files():
    """A Spark Thrift session caches a table's file list: a pooled session would read files another
    writer's overwrite removed (FAILED_READ_FILE) or miss its new rows. Each connection of cxdash's
    Spark engine is a new session, so the next connection sees the other writer's change."""
    from cxdash.store.database import make_engine

    url = spark_url()
    md = sa.MetaData()
    t = sa.Table(f"seen_{uuid.uuid4().hex[:8]}", md, sa.Column("k", sa.BigInteger), info={"partition_by": []})
    reader, writer = make_engine(url), make_engine(url)
    try:
        with writer.connect() as w:
            t.create(w)
            w.execute(t.insert().values(k=1))
        with reader.connect() as r:
            assert r.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 1
        with writer.connect() as w:
            w.execute(t.insert().values(k=2))
            w.execute(t.delete().where(t.c.k == 1))  # an overwrite: the first file is gone
        with reader.connect() as r:
            assert [row[0] for row in r.execute(sa.select(t.c.k))] == [2]
        with writer.connect() as w:
            t.drop(w)
    finally:
        reader.dispose()
        writer.dispose()
