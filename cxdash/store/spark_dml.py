"""DELETE and UPDATE on Spark SQL's Parquet tables, which refuse both, as partition rewrites.

Spark 4 answers ``DELETE``/``UPDATE`` on a Parquet table with ``UNSUPPORTED_FEATURE.TABLE_OPERATION``,
and ``INSERT OVERWRITE`` may not read the table it overwrites. The Spark dialect
(cxdash.store.spark) hands every DELETE and UPDATE statement to ``rewrite`` instead of sending it, so
no query in cxdash knows which engine it runs on. ``rewrite``:

1. counts the rows the statement matches, per partition (tables partitioned by load id, whose name
   is in ``Table.info["partition_by"]``) or in all (other tables);
2. writes the rows those partitions keep, changed as the statement says, into a stage table
   (``CREATE TABLE ... USING parquet AS SELECT``);
3. overwrites those partitions from the stage (``INSERT OVERWRITE ... PARTITION (load_id)`` with
   dynamic partition overwrite: only the partitions in the stage are replaced), drops the partitions
   a DELETE empties (``ALTER TABLE ... DROP PARTITION``), and drops the stage.

Each step is one Spark job committed on its own; there is no transaction around them. A failure
before step 3 leaves the table as it was (and a stage table named ``cxdash_rewrite_*``); a failure
inside step 3 can leave some partitions rewritten and others not. Re-running the statement finishes
it: every rewrite here is idempotent (a DELETE deletes what is left, an UPDATE sets the same values).

An UPDATE whose values or conditions read other tables (``UPDATE t SET x = m.x FROM m WHERE t.k =
m.k``) becomes correlated scalar subqueries: the row matches when the subquery counts a row, and
takes the largest value among the matching ones (an UPDATE ... FROM with several matches takes
any one of them; this takes a deterministic one).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import dml, visitors
from sqlalchemy.sql.expression import ClauseElement, Executable

__all__ = ["partition_columns", "rewrite"]


def partition_columns(table: sa.Table) -> list[str]:
    """The table's partition columns on Spark (``Table.info["partition_by"]`` or the dialect option)."""
    parts = table.info.get("partition_by") or table.dialect_options["sparkthrift"]["partitioned_by"] or []
    return list(parts)


def rewrite(conn: Connection, stmt: dml.UpdateBase) -> int:
    """Carry out a DELETE or UPDATE ``stmt`` by rewriting the rows it touches; the rows matched."""
    table = stmt.table
    if not isinstance(table, sa.Table):
        raise NotImplementedError(f"a rewrite needs a plain table, not {table!r}")
    where = stmt.whereclause
    if isinstance(stmt, dml.Delete):
        changed: dict[str, sa.ColumnElement] = {}
    elif isinstance(stmt, dml.Update):
        if stmt._multi_values or getattr(stmt, "_maintain_values_ordering", False):
            raise NotImplementedError("Spark rewrite: only UPDATE ... SET with .values(col=...) is supported")
        changed = {}
        for key, value in stmt._values.items():
            name = key if isinstance(key, str) else key.name
            if isinstance(value, sa.BindParameter) and value.type._isnull:  # .values(col=plain value)
                value = sa.literal(value.value, table.c[name].type)
            changed[name] = value
    else:  # pragma: no cover - the dialect sends only these two
        raise NotImplementedError(type(stmt).__name__)
    others = _other_tables(conn, stmt)
    match = _match(table, where, others)
    values = {name: _value(table, expr, where, others) for name, expr in changed.items()}
    parts = partition_columns(table)
    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    if len(parts) > 1:
        raise NotImplementedError("Spark rewrite: one partition column at most")
    if not parts:
        return _rewrite_whole(conn, table, target, match, values, is_delete=isinstance(stmt, dml.Delete))
    return _rewrite_partitions(conn, table, target, parts[0], match, values, is_delete=isinstance(stmt, dml.Delete))


def _other_tables(conn: Connection, stmt: dml.UpdateBase) -> list[sa.FromClause]:
    """The tables an ``UPDATE ... FROM`` / ``DELETE ... USING`` reads besides its own (as SQLAlchemy
    would render them; a table inside a subquery stays there)."""
    compiler = conn.dialect.statement_compiler(conn.dialect, None)
    state_cls = dml.UpdateDMLState if isinstance(stmt, dml.Update) else dml.DeleteDMLState
    return list(state_cls(stmt, compiler)._extra_froms)


def _match(table: sa.Table, where, others: list) -> sa.ColumnElement | None:
    """True for the rows the statement touches (None: every row)."""
    if where is None:
        return None
    if not others:
        return where
    counted = sa.select(sa.func.count()).select_from(*others).where(where).correlate(table).scalar_subquery()
    return counted > 0


def _value(table: sa.Table, expr, where, others: list) -> sa.ColumnElement:
    if not isinstance(expr, sa.ClauseElement):  # SQLAlchemy binds plain values already; kept safe
        return sa.literal(expr)
    reads = {c.table for c in visitors.iterate(expr) if isinstance(c, sa.ColumnClause) and c.table is not None}
    if others and any(t in others for t in reads):
        return sa.select(sa.func.max(expr)).select_from(*others).where(where).correlate(table).scalar_subquery()
    return expr


def _flag(match: sa.ColumnElement | None) -> sa.ColumnElement:
    """1 where ``match`` is true, else 0 (NULL counts as false, as in a WHERE)."""
    if match is None:
        return sa.literal(1)
    return sa.case((match, 1), else_=0)


def _physical_columns(conn: Connection, table: sa.Table, target: str) -> list[str]:
    """The table's columns in Spark's order (partition columns last; added columns after the rest)."""
    return list(conn.exec_driver_sql(f"SELECT * FROM {target} LIMIT 0").keys())  # noqa: S608 - our identifier


def _new_rows(table: sa.Table, columns: list[str], match, values: dict) -> list[sa.ColumnElement]:
    out = []
    for name in columns:
        col = table.c[name]
        if name in values:
            new = values[name]
            new = sa.case((match, new), else_=col) if match is not None else new
            out.append(sa.cast(new, col.type).label(name))
        else:
            out.append(col)
    return out


def _stage_name() -> str:
    return f"cxdash_rewrite_{uuid.uuid4().hex[:12]}"


class _CreateStage(Executable, ClauseElement):
    """``CREATE TABLE name USING parquet AS <select>``, compiled by the dialect so the select's
    bound values get their casts and conversions (and ``%`` in its literals the DB-API's escaping)."""

    inherit_cache = False

    def __init__(self, name: str, select) -> None:
        self.name = name
        self.select = select


@compiles(_CreateStage)
def _compile_stage(element: _CreateStage, compiler, **kw) -> str:
    return f"CREATE TABLE {element.name} USING parquet AS {compiler.process(element.select, **kw)}"


def _create_stage(conn: Connection, stage: str, select) -> None:
    conn.execute(_CreateStage(stage, select))


def _partition_literal(value) -> str:
    """A partition value as SQL (load ids: integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotImplementedError(f"Spark rewrite: partition values must be integers, not {value!r}")
    return str(int(value))


def _overwrite(conn: Connection, target: str, select, partition: str = "") -> None:
    """Replace ``target``'s rows (with ``partition``, only the partitions ``select`` yields) by
    ``select``'s, through a stage table: Spark may not overwrite a table it reads."""
    stage = _stage_name()
    _create_stage(conn, stage, select)
    try:
        conn.exec_driver_sql(f"INSERT OVERWRITE TABLE {target}{partition} SELECT * FROM {stage}")  # noqa: S608
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")


def _rewrite_whole(conn, table, target, match, values, *, is_delete: bool) -> int:
    flag = _flag(match)
    n = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(flag), 0)).select_from(table)).scalar())
    if n == 0:
        return 0
    if is_delete and match is None:
        conn.exec_driver_sql(f"TRUNCATE TABLE {target}")
        return n
    columns = _physical_columns(conn, table, target)
    if is_delete:
        select = sa.select(*[table.c[c] for c in columns]).where(flag == 0)
    else:
        select = sa.select(*_new_rows(table, columns, match, values))
    _overwrite(conn, target, select)
    return n


def _rewrite_partitions(conn, table, target, part: str, match, values, *, is_delete: bool) -> int:
    key = table.c[part]
    flagged = sa.select(key.label("p"), _flag(match).label("m")).subquery()
    counts = conn.execute(
        sa.select(flagged.c.p, sa.func.count().label("n"), sa.func.sum(flagged.c.m).label("m"))
        .group_by(flagged.c.p)
        .having(sa.func.sum(flagged.c.m) > 0)
    ).all()
    if not counts:
        return 0
    total = sum(int(r.m) for r in counts)
    prep = conn.dialect.identifier_preparer
    quoted = prep.quote(part)
    if is_delete:
        emptied = [r.p for r in counts if int(r.m) == int(r.n)]
        kept = [r.p for r in counts if int(r.m) < int(r.n)]
    else:
        emptied, kept = [], [r.p for r in counts]
    if kept:
        columns = _physical_columns(conn, table, target)
        if is_delete:
            select = sa.select(*[table.c[c] for c in columns]).where(key.in_(kept), _flag(match) == 0)
        else:
            select = sa.select(*_new_rows(table, columns, match, values)).where(key.in_(kept))
        _overwrite(conn, target, select, f" PARTITION ({quoted})")
    for value in emptied:
        literal = _partition_literal(value)
        conn.exec_driver_sql(f"ALTER TABLE {target} DROP IF EXISTS PARTITION ({quoted} = {literal})")
    return total
