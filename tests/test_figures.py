"""Chart figures are reused across reruns only while their input is the same."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cxdash.ui.figures import memoised_figure


def test_a_figure_is_rebuilt_when_its_input_changes_and_reused_when_not():
    built = []

    @memoised_figure
    def bars(frame: pd.DataFrame, title: str = "") -> go.Figure:
        built.append(title)
        return go.Figure(go.Bar(x=frame["x"], y=frame["y"]), layout=dict(title=title))

    a = pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})
    first = bars(a, title="t")
    assert bars(a.copy(), title="t") is first  # same content, new frame object: reused
    assert len(built) == 1
    assert bars(a, title="other") is not first  # another argument
    assert bars(pd.DataFrame({"x": ["a", "b"], "y": [1, 3]}), title="t") is not first  # another value
    assert bars(a.iloc[::-1].reset_index(drop=True), title="t") is not first  # same rows, other order
    assert bars(a.rename(columns={"y": "y"}).assign(z=0), title="t") is not first  # another column
    assert len(built) == 5
    long_a = pd.DataFrame({"x": [str(i) for i in range(500)], "y": range(500)})
    long_b = long_a.assign(y=long_a["y"].where(long_a.index != 250, -1))  # differs only in the middle
    assert bars(long_a) is not bars(long_b)
