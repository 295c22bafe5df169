"""Plotly figures reused across reruns.

Streamlit reruns a page's script on every click, and the pages rebuild their (cached, small)
frames each time; building a plotly figure from them costs far more than the data (plotly
validates every property), often a second on a full page. ``memoised_figure`` keeps the last
figures a chart function built, keyed on the content of its inputs.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pandas as pd

__all__ = ["memoised_figure"]

_lock = threading.Lock()
MAX_FIGURES = 32  # per chart function


def _frame_key(value) -> object:
    """A cheap, content-based key for a chart's input (the page rebuilds its frames on every rerun)."""
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        hashed = pd.util.hash_pandas_object(value.astype(str), index=True).to_numpy()
        # order matters (a chart draws rows in order): weight each row's hash by its position
        return ("frame", tuple(map(str, value.columns)), value.shape,
                int((hashed * (np.arange(len(hashed), dtype=np.uint64) * 2 + 1)).sum()))
    if isinstance(value, np.ndarray):
        return ("array", value.shape, str(value.dtype), hash(value.tobytes()))
    return repr(value)


def memoised_figure(build):
    """Building a plotly figure costs a second or more on a large page (plotly validates every
    property): keep the last figures built, keyed on their input's content."""
    memo: dict = {}

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        key = (tuple(_frame_key(a) for a in args), tuple(sorted((k, _frame_key(v)) for k, v in kwargs.items())))
        fig = memo.get(key)
        if fig is None:
            fig = build(*args, **kwargs)
            with _lock:
                while len(memo) >= MAX_FIGURES:
                    memo.pop(next(iter(memo)))
                memo[key] = fig
        return fig

    return wrapper
