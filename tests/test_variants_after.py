"""The stored variants moved by the customers who came and left (``jr.variants_after``) equal the
variants counted again from every customer, worked out here with pandas and numpy; and they are
never a guess: when a variant not kept could reach the list, or a median leaves its kept seconds,
the answer is None (computed whole)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdash import journeys as jr
from cxdash.journeys import percentile_runs

NAMES = ["a", "b", "c", "a > b", "b > a", "a > b > c"]
case = st.tuples(st.sampled_from(NAMES), st.integers(0, 6).map(float), st.sampled_from([True, False, None]))


def counted(cases: dict[int, tuple[str, float, bool | None]]) -> pd.DataFrame:
    """Every variant, as ``discover_variants`` counts it: customers, churned, judged, median seconds."""
    frame = pd.DataFrame(
        [(cid, v, s, c) for cid, (v, s, c) in cases.items()], columns=["case_id", "variant", "seconds", "churned"]
    )
    rows = []
    for variant, group in frame.groupby("variant"):
        judged = group["churned"].dropna()
        rows.append(
            {
                "variant": variant,
                "steps": len(variant.split(jr.VARIANT_SEPARATOR)),
                "customers": len(group),
                "churned": int(sum(bool(c) for c in judged)),
                "judged": len(judged),
                "median_seconds": float(np.percentile(group["seconds"], 50)),
            }
        )
    out = pd.DataFrame(rows)
    out["share"] = out["customers"] / len(frame)
    out["churn_rate"] = [c / j if j else float("nan") for c, j in zip(out["churned"], out["judged"], strict=True)]
    return out.sort_values(["customers", "variant"], ascending=[False, True], ignore_index=True)


def stored(cases, limit: int, keep: int) -> dict:
    """What ``discover_variants(waits=True)`` keeps, built here from every customer's values."""
    every = counted(cases)
    seconds = {v: sorted(s for vv, s, _ in cases.values() if vv == v) for v in every["variant"]}
    variants = []
    for row in every.head(keep).itertuples():
        values = seconds[row.variant]
        n = len(values)
        ranks = percentile_runs._ranks_for(n, None)
        near = [(r, v) for r, v in enumerate(values) if abs(r - 0.5 * (n - 1)) <= ranks + 1]
        variants.append([row.variant, row.steps, row.churned, row.judged, percentile_runs.runs_from_ranks(n, near)])
    beyond = int(every["customers"].iloc[keep]) if len(every) > keep else 0
    return {"limit": limit, "cases": len(cases), "beyond": beyond, "variants": variants}


def their(cases, ids) -> pd.DataFrame:
    """``case_variants``' frame for the cases ``ids``."""
    rows = [(i, cases[i][0], len(cases[i][0].split(jr.VARIANT_SEPARATOR)), cases[i][1]) for i in sorted(ids)]
    return pd.DataFrame(rows, columns=["case_id", "variant", "steps", "seconds"])


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(case, min_size=1, max_size=40),
    moves=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(NAMES), st.integers(0, 6).map(float)), max_size=6),
    newcomers=st.lists(case, max_size=4),
    limit=st.integers(1, 4),
    extra=st.integers(0, 4),
    one_rank=st.booleans(),
)
def test_moved_variants_equal_them_counted_again(before, moves, newcomers, limit, extra, one_rank):
    with pytest.MonkeyPatch.context() as mp:
        if one_rank:
            mp.setattr(percentile_runs, "RUN_RANKS", 1)
        cases = dict(enumerate(before))
        state = stored(cases, limit, limit + extra)
        after = dict(cases)
        for i, variant, seconds in moves:
            if i in after:
                after[i] = (variant, seconds, after[i][2])  # churn does not move with the steps
        for j, c in enumerate(newcomers):
            after[len(before) + j] = c
        touched = {i for i in after if after[i] != cases.get(i)}
        churned = {i: after[i][2] for i in touched}
        got = jr.variants_after(state, their(after, touched), their(cases, touched & cases.keys()), churned)
        if got is None:
            # only when a variant not kept could be shown, or a median left the kept seconds
            assert state["beyond"] > 0 or one_rank
            return
        want = counted(after).head(limit)
        columns = ["variant", "steps", "customers", "share", "churn_rate", "median_seconds"]
        pd.testing.assert_frame_equal(got[columns], want[columns], check_dtype=False, rtol=1e-12)
        # what it keeps is what a refresh from every customer keeps, for the variants it keeps
        again = {v[0]: v for v in stored(after, limit, 10_000)["variants"]}
        for variant, steps, had, judged, runs in got.attrs["waits"]["variants"]:
            assert [steps, had, judged, runs["n"]] == [*again[variant][1:4], again[variant][4]["n"]]
        assert got.attrs["waits"]["cases"] == len(after)
        bound = max((n for v, n in counted(after)[["variant", "customers"]].values if v not in again), default=0)
        assert got.attrs["waits"]["beyond"] >= bound


def test_a_variant_not_kept_that_could_tie_the_last_shown_is_computed_whole():
    # a: 3, b: 3 kept (two shown), c: 1 not kept; a customer moves from a to c: c might now have 2,
    # as many as a
    cases = {0: ("a", 1.0, False), 1: ("a", 2.0, True), 2: ("a", 3.0, None), 3: ("b", 1.0, False)}
    cases |= {4: ("b", 5.0, False), 5: ("c", 1.0, None), 6: ("b", 2.0, True)}
    state = stored(cases, 2, 2)
    assert state["beyond"] == 1
    assert jr.variants_after(state, their({0: ("c", 1.0, False)}, {0}), their(cases, {0}), {0: False}) is None
    # a customer moving from b to a: nothing outside the kept gains, b's 2 stay above c's 1 at most
    got = jr.variants_after(state, their({3: ("a", 1.0, False)}, {3}), their(cases, {3}), {3: False})
    assert got["variant"].tolist() == ["a", "b"] and got["customers"].tolist() == [4, 2]
    assert got["churn_rate"].tolist() == [pytest.approx(1 / 3), 0.5]
    assert got["median_seconds"].tolist() == [1.5, 3.5]
