"""Peak memory per phase (bench/memory.py) and the demo's phase hook that feeds it (issue 17:
find which step of the demo load holds the peak)."""

from __future__ import annotations

import numpy as np

from bench.memory import PhaseSampler
from cxdash.demo.build import build_demo


def test_a_phase_that_holds_memory_shows_it_and_the_next_phase_does_not_inherit_its_peak():
    size = 300 * 2**20  # 300 MiB, touched so it is resident
    with PhaseSampler(interval=0.005) as sampler:
        sampler.phase("small")
        sum(range(1000))
        sampler.phase("big")
        block = np.ones(size // 8)
        block[::4096] += 1
        del block
        sampler.phase("after")
    small, big, after = sampler.phases
    assert [p["name"] for p in sampler.phases] == ["small", "big", "after"]
    assert big["peak_rss_mb"] - small["peak_rss_mb"] >= 250
    assert after["peak_rss_mb"] < big["peak_rss_mb"] - 250
    grouped = sampler.grouped()
    assert grouped["big"]["peak_rss_mb"] == big["peak_rss_mb"]


def test_the_demo_names_each_phase_as_it_starts(duck, tmp_path):
    seen: list[str] = []
    build_demo(duck, n_customers=200, seed=3, out_dir=tmp_path / "demo", phase=seen.append)
    assert seen[0] == "generate"
    loads = [p for p in seen if p.startswith("load ")]
    assert sorted(loads) == sorted(
        f"load {s}" for s in ("crm", "web", "marketing", "helpdesk", "billing", "subscriptions", "sales")
    )
    assert seen.index("identity") == len(loads) + 1  # after every load, before the summaries
    assert seen[len(loads) + 2 :] and all(p.startswith("summary ") for p in seen[len(loads) + 2 :])
    assert "summary headline" in seen
