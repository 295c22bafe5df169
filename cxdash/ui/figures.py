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
import plotly.graph_objects as go
import streamlit as st

from cxdash.ui.formatting import plot_text

__all__ = ["escape_figure_text", "memoised_figure", "plotly_chart"]

_lock = threading.Lock()
MAX_FIGURES = 32  # per chart function


def _frame_key(value) -> object:
    """A cheap, content-based key for a chart's input (the page rebuilds its frames on every rerun)."""
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        hashed = pd.util.hash_pandas_object(value.astype(str), index=True).to_numpy()
        # order matters (a chart draws rows in order): weight each row's hash by its position
        return (
            "frame",
            tuple(map(str, value.columns)),
            value.shape,
            int((hashed * (np.arange(len(hashed), dtype=np.uint64) * 2 + 1)).sum()),
        )
    if isinstance(value, np.ndarray):
        return ("array", value.shape, str(value.dtype), hash(value.tobytes()))
    return repr(value)


# Trace properties that carry values from the data and that plotly draws through its HTML-subset
# text renderer (category ticks, legend entries, node labels, point labels). ``customdata`` and the
# templates are left alone: the chart functions build those, escaping the data they put in them.
_DATA_TEXT = ("x", "y", "text", "hovertext", "labels", "ids", "parents", "name", "legendgroup")
_NESTED_TEXT = (("node", "label"), ("link", "label"))
_ESCAPED = "_cxdash_text_escaped"


def _escaped_values(values):
    if isinstance(values, str):
        return plot_text(values)
    if isinstance(values, tuple | list | np.ndarray | pd.Series | pd.Index):
        items = list(values)
        if any(isinstance(v, str) for v in items):
            return [plot_text(v) if isinstance(v, str) else v for v in items]
    return values


def escape_figure_text(fig: go.Figure) -> go.Figure:
    """``fig`` with every data-bearing string of its traces (see ``_DATA_TEXT``) escaped by
    ``formatting.plot_text``, so a loaded value such as ``<a href=...>`` shows as typed rather than as
    a link. Changes ``fig`` in place once (a memoised figure is not escaped twice) and returns it."""
    if getattr(fig, _ESCAPED, False):
        return fig
    for trace in fig.data:
        for prop in _DATA_TEXT:
            if prop in trace and trace[prop] is not None:
                new = _escaped_values(trace[prop])
                if new is not trace[prop]:
                    trace[prop] = new
        for parent, prop in _NESTED_TEXT:
            if parent in trace and trace[parent] is not None and trace[parent][prop] is not None:
                trace[parent][prop] = _escaped_values(trace[parent][prop])
    object.__setattr__(fig, _ESCAPED, True)
    return fig


def plotly_chart(fig: go.Figure, **kwargs):
    """``st.plotly_chart`` for a figure whose traces may hold loaded values: they are escaped first
    (``escape_figure_text``). Same keyword arguments as ``st.plotly_chart``."""
    return st.plotly_chart(escape_figure_text(fig), **kwargs)


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
