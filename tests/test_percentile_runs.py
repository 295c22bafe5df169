"""Percentile runs: after values are added and removed, the percentiles they give equal the
percentiles of every value (numpy's linear percentile, which is SQL's percentile_cont)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdash.journeys import percentile_runs as pr

FRACTIONS = (0.5, 0.9)


def state_of(values: list[float], ranks: int) -> dict:
    """The runs a database would give: the sorted values whose rank is near a position."""
    n = len(values)
    ranked = [(r, v) for r, v in enumerate(sorted(values)) if any(abs(r - f * (n - 1)) <= ranks + 1 for f in FRACTIONS)]
    return pr.runs_from_ranks(n, ranked)


# waits with many ties (whole minutes), as handoffs at the same second or minute are
values_st = st.lists(st.integers(0, 30).map(float), min_size=1, max_size=400)


@settings(max_examples=300, deadline=None)
@given(values=values_st, data=st.data())
def test_moved_runs_give_the_percentiles_of_every_value(values, data):
    ranks = data.draw(st.integers(1, 8))
    k = data.draw(st.integers(0, ranks))  # up to ``ranks`` changes in all
    gone = data.draw(st.lists(st.integers(0, len(values) - 1), unique=True, max_size=min(k, len(values) - 1)))
    removed = [values[i] for i in gone]
    kept = [v for i, v in enumerate(values) if i not in set(gone)]
    added = data.draw(st.lists(st.integers(0, 30).map(float), max_size=k - len(removed)))
    after = pr.moved(state_of(values, ranks), removed, added, FRACTIONS, ranks)
    everything = kept + added
    # as many changes as a run has ranks on each side: the percentiles are always still covered
    assert after is not None
    assert after["n"] == len(everything)
    for f in FRACTIONS:
        assert math.isclose(pr.percentile(after, f), float(np.percentile(everything, 100 * f)), rel_tol=1e-12)
    # and the runs are those the database would give now, at most: every value in them is in place
    ordered = sorted(everything)
    for first, run in after["runs"]:
        assert run == ordered[first : first + len(run)]


def test_more_changes_than_a_run_covers_say_so():
    values = [float(v) for v in range(1000)]
    state = state_of(values, ranks=4)
    # ten values far below the median move its position past the run's end
    assert pr.moved(state, [], [-1.0] * 10, FRACTIONS, ranks=4) is None
    # a value the runs say the group holds but it does not
    assert pr.moved(state, [500.5], [], FRACTIONS, ranks=4) is None


def test_a_new_group_is_its_added_values():
    after = pr.moved(None, [], [5.0, 1.0, 3.0], FRACTIONS)
    assert after == {"n": 3, "runs": [[0, [1.0, 3.0, 5.0]]]}
    assert pr.percentile(after, 0.5) == 3.0
    assert pr.percentile(after, 0.9) == 3.0 + 0.8 * 2.0


def test_kept_runs_are_shared_by_derived_frames_not_copied():
    import pandas as pd

    from cxdash.jobs import summaries

    runs = pr.kept({"n": 3, "runs": [[0, [1.0, 2.0, 3.0]]]})
    frame = pd.DataFrame({"a": [1, 2, 3]})
    frame.attrs["map"] = runs
    derived = frame[frame["a"] > 1].head(1).copy()
    assert derived.attrs["map"] is runs  # pandas deep-copies attrs; kept values are shared
    # and a stored frame reads back with them kept, equal in value
    back = summaries._frame_from(summaries._frame_payload(frame)[1:])
    assert back.attrs["map"] == runs
    assert back[back["a"] > 2].attrs["map"] is back.attrs["map"]
