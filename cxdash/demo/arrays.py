"""Small numpy/pyarrow helpers the demo generators share: string columns, times, money, draws."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MONEY = pa.decimal128(18, 2)
TIMESTAMP = pa.timestamp("s")
STRING = pa.string()


def strings(values) -> pa.Array:
    """A pyarrow string array of ``values`` (to index into with ``take``)."""
    return pa.array(list(values), STRING)


def take(catalogue: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``catalogue[idx]`` as a pyarrow array; null where ``valid`` is False."""
    ia = pa.array(np.asarray(idx, dtype=np.int64), mask=None if valid is None else ~valid)
    return catalogue.take(ia)


def digits(x: np.ndarray, width: int | None = None) -> pa.Array:
    """Integers as strings, left-padded with zeros to ``width``."""
    s = pa.array(np.asarray(x, dtype=np.int64)).cast(STRING)
    return pc.utf8_lpad(s, width=width, padding="0") if width else s


def concat(*parts, sep: str = "") -> pa.Array:
    """Element-wise string concatenation of arrays and scalars."""
    return pc.binary_join_element_wise(*parts, sep)


def timestamps(sec: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    a = np.asarray(sec, dtype=np.int64).astype("datetime64[s]")
    return pa.array(a, type=TIMESTAMP, mask=None if valid is None else ~valid)


def dates(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    a = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    return pa.array(a, type=pa.date32(), mask=None if valid is None else ~valid)


def money(cents: np.ndarray) -> pa.Array:
    """Cents as decimal(18, 2), built straight from the two's-complement 128-bit buffer."""
    c = np.asarray(cents, dtype=np.int64)
    buf = np.empty((c.size, 2), dtype="<i8")
    buf[:, 0] = c
    buf[:, 1] = np.where(c < 0, -1, 0)
    return pa.Array.from_buffers(MONEY, c.size, [None, pa.py_buffer(buf.tobytes())])


def scramble(counter: np.ndarray, mod: int, mult: int, add: int) -> np.ndarray:
    """Bijective scramble of unique counters into [0, mod) (mult coprime with mod)."""
    return (np.asarray(counter, dtype=np.int64) * mult + add) % mod


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` rows per owner i: each row's owner and its index within the owner."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(owner.size, dtype=np.int64) - starts[owner]
    return owner, within


def row_choice(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def uniform_between(rng: np.random.Generator, lo, hi) -> np.ndarray:
    """An integer in [lo, hi) per row (lo itself when the range is empty)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    return lo + (rng.random(lo.shape) * np.maximum(hi - lo, 1)).astype(np.int64)


def add_months(start_day: np.ndarray, k: np.ndarray, dom: np.ndarray) -> np.ndarray:
    """Day number of the k-th monthly anniversary (k>=1) of start_day, dom clamped to 28."""
    sm = np.asarray(start_day).astype("datetime64[D]").astype("datetime64[M]")
    d = (sm + k.astype("timedelta64[M]")).astype("datetime64[D]")
    return d.astype(np.int64) + (dom - 1)


def month_index(day: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of a day number."""
    return np.asarray(day).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_start_day(day: np.ndarray) -> np.ndarray:
    """Day number of the first of the month of a day number."""
    return np.asarray(day).astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def compact_left(names: np.ndarray) -> np.ndarray:
    """Shift valid (>=0) entries of each row to the left, keeping order."""
    valid = names >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(names, order, axis=1)
