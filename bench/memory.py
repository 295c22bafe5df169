"""Peak memory per phase of one process: a sampler thread reads this process's resident set
size (``/proc/self/statm``) every few milliseconds and charges it to the phase in force.

``getrusage``'s ``ru_maxrss`` is one high-water mark per process; this tells which step of a
long command (generation, each source's load, the identity rebuild, each summary) holds it.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PhaseSampler", "rss_mb"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """This process's resident set size now, in MB (MiB), from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


class PhaseSampler:
    """Samples RSS every ``interval`` seconds on a daemon thread while in a ``with`` block.

    ``phase(name)`` starts a phase (ending the one before). ``phases`` after the block: one dict per
    phase in order, ``name, seconds, start_rss_mb, peak_rss_mb``. A phase may repeat a name (each
    occurrence is its own row).
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.phases: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def _sample(self) -> None:
        now = rss_mb()
        with self._lock:
            if self.phases:
                current = self.phases[-1]
                current["peak_rss_mb"] = max(current["peak_rss_mb"], now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def phase(self, name: str) -> None:
        self._sample()  # the end of the phase before
        now, rss = time.perf_counter(), rss_mb()
        with self._lock:
            if self.phases:
                self.phases[-1]["seconds"] = round(now - self._t0, 3)
            self.phases.append({"name": name, "seconds": 0.0, "start_rss_mb": round(rss, 1), "peak_rss_mb": rss})
            self._t0 = now

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        now = time.perf_counter()
        if self.phases:
            self.phases[-1]["seconds"] = round(now - self._t0, 3)
        for p in self.phases:
            p["peak_rss_mb"] = round(p["peak_rss_mb"], 1)

    def grouped(self) -> dict[str, dict]:
        """Phases by the first word of their name (``load``, ``summary``...): summed seconds, max peak."""
        out: dict[str, dict] = {}
        for p in self.phases:
            g = out.setdefault(p["name"].split()[0], {"seconds": 0.0, "peak_rss_mb": 0.0})
            g["seconds"] = round(g["seconds"] + p["seconds"], 3)
            g["peak_rss_mb"] = max(g["peak_rss_mb"], p["peak_rss_mb"])
        return out


# ----------------------------------------------------------------------------- summaries, one per process


def _summary_params(store, name: str) -> tuple[dict | None, str | None]:
    """The parameters the refresh gives ``name``, the views it depends on read from the stored
    summaries of the current data version (so only ``name`` itself is computed)."""
    from cxdash.jobs import summaries as sm
    from cxdash.jobs.views import DEPENDS_ON, default_params
    from cxdash.store.version import data_version

    with store.connect() as conn:
        version = data_version(conn)
        stored = sm.lookup(conn, "churn_candidates", version)
    churn = sm.effective_churn(store, None if stored is sm.MISSING else stored)
    computed: dict[str, object] = {}
    with store.connect() as conn:
        for dep in DEPENDS_ON.get(name, ()):
            dep_params = default_params(conn, dep, computed, churn)
            found = sm.lookup(conn, dep, version, dep_params)
            computed[dep] = sm.get(conn, dep, version, dep_params) if found is sm.MISSING else found
        if name in sm.VIEWS:
            return default_params(conn, name, computed, churn), churn
    return ({"churn": churn} if name in sm.CHURN_DEPENDENT and churn else {}), churn


def summary_peak(url: str, name: str) -> dict:
    """One summary computed (and encoded, as the refresh stores it) alone in this process: its
    seconds, the RSS when it started and its peak. Run each in a fresh process."""
    from cxdash.jobs import summaries as sm
    from cxdash.store.database import open_store

    store = open_store(url)
    with PhaseSampler(interval=0.005) as sampler:
        sampler.phase("setup")
        params, _churn = _summary_params(store, name)
        sampler.phase(name)
        if params is not None:
            with store.connect() as conn:
                result = sm._computations()[name](conn, **params)
                payload = sm._encode(result)
            del result, payload
    _setup, run = sampler.phases
    return {
        "summary": name,
        "seconds": run["seconds"],
        "start_rss_mb": run["start_rss_mb"],
        "peak_rss_mb": run["peak_rss_mb"],
        "skipped": params is None,
    }


def refresh_peak(url: str) -> dict:
    """The whole summaries refresh (``cxdash.jobs.summaries.refresh``) in this process: seconds and
    peak RSS per summary, and the refresh's peak."""
    from cxdash.jobs import summaries as sm
    from cxdash.store.database import open_store

    store = open_store(url)
    with PhaseSampler(interval=0.005) as sampler:
        sampler.phase("start")
        sm.refresh(store, progress=lambda name: sampler.phase(name))
        sampler.phase("end")
    return {
        "peak_rss_mb": max(p["peak_rss_mb"] for p in sampler.phases),
        "seconds": round(sum(p["seconds"] for p in sampler.phases), 3),
        "phases": sampler.phases,
    }


def _main(argv: list[str]) -> None:
    """``python -m bench.memory URL summary NAME`` or ``python -m bench.memory URL refresh``:
    prints one JSON line."""
    import json

    url, what, *rest = argv
    out = summary_peak(url, rest[0]) if what == "summary" else refresh_peak(url)
    print(json.dumps(out))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
