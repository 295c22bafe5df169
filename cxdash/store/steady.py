"""Answers about the data kept while a caller holds the data still.

The summaries refresh asks the same few questions about the data many times over: its date
(``metrics.periods.as_of``), the loads since a version, their customers and kinds, the data stamp.
After a 1,000-row append at 200k customers that was about 150 small queries, 0.5 s of a 2.5 s
refresh. Inside ``held_still()`` each answer is read once and kept; ``forget()`` drops them whenever
the refresh opens a new connection. Outside it nothing is kept: pages and loads read every answer
afresh.

The answers can still be older than the data a query sees: on DuckDB a second connection (the
refresh reads the churn definition on one) is a transaction of its own, and on PostgreSQL (read
committed) each statement sees every commit so far. That is why this is safe rather than exact: a
refresh that finds the data changed when it is done stores nothing, so an answer kept from before
such a change never reaches a stored result.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from sqlalchemy.engine import Connection

__all__ = ["forget", "held_still", "kept"]

T = TypeVar("T")

_answers: ContextVar[dict | None] = ContextVar("cxdash_steady_answers", default=None)


@contextlib.contextmanager
def held_still() -> Iterator[None]:
    """Keep the answers ``kept`` computes until the block ends (in this thread or task alone)."""
    token = _answers.set({})
    try:
        yield
    finally:
        _answers.reset(token)


def forget() -> None:
    """Drop the answers kept so far (the data may have moved)."""
    answers = _answers.get()
    if answers is not None:
        answers.clear()


def kept(conn: Connection, question: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or the answer kept for ``question`` on ``conn``'s store inside ``held_still``.
    A list, set or dict comes back as a copy, so a caller changing it changes no one else's."""
    answers = _answers.get()
    if answers is None:
        return compute()
    key = (id(conn.engine), question)
    if key not in answers:
        answers[key] = compute()
    answer = answers[key]
    return copy.copy(answer) if isinstance(answer, (list, set, dict)) else answer
