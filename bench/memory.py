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
