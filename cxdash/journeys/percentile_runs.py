"""Percentiles that a few added and removed values can move exactly, without reading every value.

A continuous percentile (SQL's ``percentile_cont``) at fraction ``f`` of ``n`` values sorted as
``v[0] <= ... <= v[n-1]`` reads two ranks: with ``h = f * (n - 1)``, it is
``v[floor(h)] + (h - floor(h)) * (v[ceil(h)] - v[floor(h)])``. Adding or removing a value moves
``h`` by at most half a rank, so the values within ``RUN_RANKS`` ranks of each percentile's
position (a *run*: its first rank and its values, in order) are enough to give the percentile
again after a few changes. Runs are what a stored view keeps beside its percentiles; ``moved``
brings them up to date, or says that it cannot (more changes than a run covers: compute whole).

Runs are JSON-ready: ``{"n": n, "runs": [[first_rank, [values...]], ...]}``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

__all__ = ["RUN_MOST", "RUN_RANKS", "RUN_SHARE", "kept", "moved", "near_positions", "percentile", "runs_from_ranks"]

# Ranks kept on each side of each percentile's position: RUN_RANKS, or this share of a large
# group's values, at most RUN_MOST. A 1,000-row append lands on the large groups most (in
# proportion to their size, at 200k customers about one value in a thousand of each): and when its
# values all fall on one side (waits since the customers' last steps, all long), each position
# moves by half of them or more. k added or removed values move a position by at most k ranks, so
# RUN_MOST covers any append of up to 1,000 values in a group; more are computed whole. (Without
# the cap the runs of a 1M-customer store's map, handoffs and positions took 12 MB of JSON, read
# and written by every refresh.)
RUN_RANKS = 64
RUN_SHARE = 0.005
RUN_MOST = 1024


class _KeptList(list):
    """A list pandas does not copy (see ``kept``)."""

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class _KeptDict(dict):
    """A dict pandas does not copy (see ``kept``)."""

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def kept(value):
    """``value`` (a JSON list or dict) to put in a frame's ``attrs``: pandas deep-copies ``attrs``
    into every frame derived from it (each filter, ``head``, ``copy``), and the runs a stored view
    keeps are tens of thousands of numbers (a map at 200k customers: 29,000; every ``edge_labels``
    call took 0.38 s copying them). Kept values are never changed in place (an increment builds new
    ones), so the derived frames share them."""
    if isinstance(value, dict):
        return _KeptDict(value)
    return _KeptList(value)


def _ranks_for(n: int, ranks: int | None) -> int:
    """The ranks each side a group of ``n`` values keeps: ``ranks`` when given, else the defaults."""
    return ranks if ranks is not None else max(RUN_RANKS, min(math.ceil(RUN_SHARE * n), RUN_MOST))


def _position(n: int, f: float) -> float:
    return f * (n - 1)


def near_positions(rank, n, fractions: Sequence[float], ranks: int | None = None) -> sa.ColumnElement:
    """SQL: whether the 0-based ``rank`` of a value among ``n`` lies within ``ranks`` (plus the one
    interpolation needs; by default ``RUN_RANKS`` or ``RUN_SHARE`` of ``n``, at most ``RUN_MOST``) of some fraction's
    position: the rows ``runs_from_ranks`` takes."""
    each = (
        ranks
        if ranks is not None
        else sa.func.greatest(RUN_RANKS, sa.func.least(sa.func.ceil(RUN_SHARE * n), RUN_MOST))
    )
    return sa.or_(*[sa.func.abs(rank - f * (n - 1)) <= each + 1 for f in fractions])


def runs_from_ranks(n: int, ranked: Iterable[tuple[int, float]]) -> dict:
    """A group's runs from its ``(rank, value)`` rows near the percentiles' positions (any order):
    consecutive ranks make one run."""
    runs: list[list] = []
    for rank, value in sorted(ranked):
        if runs and runs[-1][0] + len(runs[-1][1]) == rank:
            runs[-1][1].append(float(value))
        else:
            runs.append([int(rank), [float(value)]])
    return {"n": int(n), "runs": runs}


def _at(runs: list[list], rank: int) -> float | None:
    for first, values in runs:
        if first <= rank < first + len(values):
            return values[rank - first]
    return None


def percentile(state: dict, f: float) -> float | None:
    """The continuous percentile at ``f`` from ``state`` (runs), or None when a rank it reads is in
    no run (or there are no values)."""
    n = state["n"]
    if n <= 0:
        return None
    h = _position(n, f)
    lo, hi = math.floor(h), math.ceil(h)
    a, b = _at(state["runs"], lo), _at(state["runs"], hi)
    if a is None or b is None:
        return None
    return a + (h - lo) * (b - a)


def _covered(runs: list[list], n: int, fractions: Sequence[float]) -> bool:
    return all(
        _at(runs, math.floor(_position(n, f))) is not None and _at(runs, math.ceil(_position(n, f))) is not None
        for f in fractions
    )


def moved(
    state: dict | None,
    removed: Iterable[float],
    added: Iterable[float],
    fractions: Sequence[float],
    ranks: int | None = None,
) -> dict | None:
    """``state`` (a group's runs; None: a group with no values yet) after taking out ``removed``
    (values it holds) and putting in ``added``, cut back to ``ranks`` around the positions (by
    default ``RUN_RANKS`` or ``RUN_SHARE`` of the values, at most ``RUN_MOST``); None when a percentile's ranks would fall outside
    every run, or a removed value is not where the runs say it must be (compute whole then).

    Each run is a stretch of the sorted values: a value below it moves it one rank up (down when
    removed), one above it leaves it, one inside it is put in (taken out) in order. A value equal to
    a run's first value may stand below the run or in it; either way the sorted values read the
    same. A group whose values were all in one run from rank 0 (few values) is taken whole."""
    removed, added = list(removed), list(added)
    n = 0 if state is None else int(state["n"])
    runs = [[first, list(values)] for first, values in ([] if state is None else state["runs"])]
    whole = n == 0 or (len(runs) == 1 and runs[0][0] == 0 and len(runs[0][1]) == n)
    if whole:
        values = runs[0][1] if runs else []
        for y in removed:
            if y not in values:
                return None
            values.remove(y)
        values = sorted(values + [float(x) for x in added])
        kept = _trimmed([[0, values]], len(values), fractions, _ranks_for(len(values), ranks)) if values else []
        return {"n": len(values), "runs": kept}
    for y in removed:
        for run in runs:
            values = run[1]
            if y < values[0]:
                run[0] -= 1
            elif y <= values[-1]:
                i = bisect.bisect_left(values, y)
                if i == len(values) or values[i] != y or len(values) == 1:
                    return None  # not held where the runs say, or the run would be gone
                del values[i]
        n -= 1
    for x in (float(v) for v in added):
        for run in runs:
            values = run[1]
            if x < values[0]:
                run[0] += 1
            elif x <= values[-1]:
                bisect.insort(values, x)
        n += 1
    if n <= 0 or not _covered(runs, n, fractions):
        return None
    return {"n": n, "runs": _trimmed(runs, n, fractions, _ranks_for(n, ranks))}


def _trimmed(runs: list[list], n: int, fractions: Sequence[float], ranks: int) -> list[list]:
    """The runs cut back to ``ranks`` (plus one) around the positions, so they stay small."""
    keep = set()
    for f in fractions:
        h = _position(n, f)
        keep.update(range(max(0, math.floor(h) - ranks - 1), min(n, math.ceil(h) + ranks + 2)))
    out: list[list] = []
    for first, values in runs:
        for i, value in enumerate(values):
            rank = first + i
            if rank not in keep:
                continue
            if out and out[-1][0] + len(out[-1][1]) == rank:
                out[-1][1].append(value)
            else:
                out.append([rank, [value]])
    return out
