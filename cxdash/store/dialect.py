"""The SQL forms that differ between the engines cxdash runs on, in one place.

Queries use these instead of spelling an engine's syntax: DuckDB and PostgreSQL get the SQL they
always got; Spark SQL (``sparkthrift://``, cxdash.store.spark) gets its own spelling where it needs
one. Everything else the queries use is portable SQLAlchemy Core, and the Spark dialect renders
the rest of its differences (epoch extraction, ``listagg``, typed binds) itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from duckdb_engine import Dialect as _DuckDBEngineDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType

__all__ = ["DuckDBDialect", "among", "epoch_seconds", "percentiles", "value_at_min"]


class DuckDBDialect(_DuckDBEngineDialect):
    """duckdb_engine's dialect with SQLAlchemy's compiled-statement cache on (``duckdb://`` URLs
    resolve to it: ``cxdash.store.database`` registers it).

    duckdb_engine turns the cache off only to silence SQLAlchemy's warning until it was tested
    (its pull request 268); its statements are compiled by PostgreSQL's compiler, which caches. Off,
    every statement is compiled again on every run: the journey and KPI views are large statements
    (hundreds of clauses), and after a one-row append at 200k customers compiling the refresh's
    ~280 statements took 0.77 s of its 5 s. cxdash's own constructs carry their cache keys
    (``_Fractions``' fractions, ``value_at_min``'s arguments)."""

    supports_statement_cache = True


def epoch_seconds(col) -> sa.ColumnElement:
    """Seconds since 1970 of a timestamp column (``EXTRACT(epoch FROM col)``; on Spark, which has
    no EPOCH field, ``unix_micros(...) / 1e6``, rendered by its dialect)."""
    return sa.extract("epoch", col)


class _Fractions(ColumnElement):
    """An array literal of fractions: ``ARRAY[0.5, 0.9]`` (PostgreSQL, DuckDB), ``array(0.5, 0.9)``
    (Spark)."""

    inherit_cache = True
    _traverse_internals = (("fractions", InternalTraversal.dp_plain_obj),)  # part of the cache key
    type = sa.ARRAY(sa.Double)

    def __init__(self, fractions: Sequence[float]) -> None:
        self.fractions = tuple(float(f) for f in fractions)
        if not self.fractions or not all(0.0 <= f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be in [0, 1], got {fractions!r}")


def _items(element: _Fractions) -> str:
    return ", ".join(repr(f) for f in element.fractions)


@compiles(_Fractions)
def _fractions_default(element, compiler, **kw) -> str:
    return f"ARRAY[{_items(element)}]"


@compiles(_Fractions, "sparkthrift")
def _fractions_spark(element, compiler, **kw) -> str:
    return f"array({_items(element)})"


def percentiles(col, fractions: Sequence[float]) -> sa.ColumnElement:
    """Several continuous percentiles of ``col`` from one sort of each group, as an array
    (``percentile_cont(ARRAY[...]) WITHIN GROUP (ORDER BY col)``); index it 1-based
    (``percentiles(c, [0.5, 0.9])[1]`` is the median: Spark's dialect renders ``element_at``)."""
    array = sa.cast(_Fractions(fractions), sa.ARRAY(sa.Double))
    return sa.type_coerce(sa.func.percentile_cont(array).within_group(col), sa.ARRAY(sa.Double))


class value_at_min(GenericFunction):  # lower case: an SQL function, as sa.func names them
    """The aggregate ``value`` of the row with the smallest ``order`` in each group (one such row:
    ``order`` unique in the group). DuckDB ``arg_min(value, order)``, Spark ``min_by(value, order)``,
    PostgreSQL (which has neither) ``(array_agg(value ORDER BY order))[1]``. Saves a window that
    numbers every row only to pick the first one."""

    inherit_cache = True
    name = "arg_min"

    def __init__(self, value, order, **kw):
        super().__init__(value, order, **kw)
        self.type = self.clauses.clauses[0].type


@compiles(value_at_min, "postgresql")
def _value_at_min_postgresql(element, compiler, **kw) -> str:
    value, order = (compiler.process(c, **kw) for c in element.clauses.clauses)
    return f"(array_agg({value} ORDER BY {order}))[1]"


@compiles(value_at_min, "sparkthrift")
def _value_at_min_spark(element, compiler, **kw) -> str:
    value, order = (compiler.process(c, **kw) for c in element.clauses.clauses)
    return f"min_by({value}, {order})"


class _Among(ColumnElement):
    """``col`` is one of a list of values given at run time (``among``)."""

    inherit_cache = True
    _traverse_internals = (
        ("col", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
        ("listed", InternalTraversal.dp_clauseelement),
    )
    type = sa.Boolean()

    def __init__(self, col: ColumnElement, values: list) -> None:
        self.col = col
        # an expanding bind: one parameter per value, the statement compiled once for any number
        self.values = sa.bindparam("among", values, expanding=True, unique=True, type_=col.type)
        # the same values as one list parameter (DuckDB), NumPy scalars as Python values (DuckDB's
        # client takes none inside a list); each engine renders one of the two, and a bind the
        # statement does not render is not sent
        listed = [v.item() if isinstance(v, np.generic) else v for v in values]
        self.listed = sa.bindparam("among_list", listed, unique=True, type_=NullType())

    @property
    def _from_objects(self) -> list:
        return self.col._from_objects


@compiles(_Among)
def _among_default(element, compiler, **kw) -> str:
    return compiler.process(element.col.in_(element.values), **kw)


@compiles(_Among, "duckdb")
def _among_duckdb(element, compiler, **kw) -> str:
    return f"{compiler.process(element.col, **kw)} IN (SELECT unnest({compiler.process(element.listed, **kw)}))"


def among(col, values: Sequence) -> sa.ColumnElement:
    """``col IN (values)`` for a list of up to a few thousand values (the customers an append
    touched, say). DuckDB checks a long ``IN (...)`` list against every row it scans; spelled as
    ``IN (SELECT unnest($1))`` it is a hash semi-join: at 1M customers, 1,000 keys against the 36M
    stored events took 0.09 s as a list and 0.05 s as a join. The values go to DuckDB as one list
    parameter: binding a statement of 4,000 parameters (four tables' rows of 1,000 customers) took
    0.04 s before the query ran, one list of them 0.004 s. Other engines get ``IN (...)``. No
    values: false."""
    values = list(values)
    return _Among(col, values) if values else sa.false()
