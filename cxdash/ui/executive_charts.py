"""Plotly figures for the executive page, and their PNG export (kaleido with Debian's Chromium)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cxdash.governance import department_name
from cxdash.ui.figures import memoised_figure
from cxdash.ui.formatting import NO_CURRENCY, currency, plot_text

log = logging.getLogger(__name__)

BAD = "#dc2626"
GOOD = "#16a34a"
NEUTRAL = "#64748b"
DEPARTMENT_COLOURS = {"marketing": "#7c3aed", "sales": "#16a34a", "support": "#f97316", "billing": "#0ea5e9"}

# (column, title, kind) of the trend panels
TREND_PANELS = [
    ("active_customers", "Active customers", "count"),
    ("retention_rate", "Retention (each month)", "share"),
    ("silence_rate", "Silence metric (each month)", "share"),
    ("repeat_contact_rate", "Repeat contacts", "share"),
    ("contacts_per_active_customer", "Contacts per active customer", "ratio"),
    ("transfer_rate", "Transferred contacts", "share"),
    ("revenue", "Revenue", "money"),
]


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), height=height, template="plotly_white")
    return fig


@memoised_figure
def trends(frame: pd.DataFrame, now=None, money_currency: str | None = None) -> go.Figure:
    """Small multiples of the monthly KPIs (``metrics.kpi_table`` over monthly periods). A last month that
    the data does not cover to its end (``now`` before it ends) is drawn as an open marker. Money is
    titled with its currency (``money_currency`` as recorded, else the company setting, else "currency
    not recorded")."""
    code = currency(money_currency)
    unit = {"money": f" ({code or NO_CURRENCY})"}
    panels = [
        (col, title + unit.get(kind, ""), kind)
        for col, title, kind in TREND_PANELS
        if col in frame.columns and frame[col].notna().any()
    ]
    partial = (
        now is not None
        and len(frame)
        and pd.Timestamp(frame["period_end"].iloc[-1]) > pd.Timestamp(now).normalize() + pd.Timedelta(days=1)
    )
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[1] for p in panels], vertical_spacing=0.16)
    x = pd.to_datetime(frame["period_start"])
    for i, (col, _title, kind) in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        symbols = ["circle"] * len(frame)
        if partial:
            symbols[-1] = "circle-open"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=frame[col],
                mode="lines+markers",
                line=dict(color="#2563eb"),
                showlegend=False,
                name=col,
                marker=dict(symbol=symbols, size=8),
            ),
            row=r,
            col=c,
        )
        fmt = {"share": ".1%", "money": ",.3s", "count": ",d"}.get(kind, ",.2f")
        fig.update_yaxes(tickformat=fmt, row=r, col=c)
    if not panels:
        fig.add_annotation(text="No monthly data", showarrow=False)
    fig = _layout(fig, 260 * rows)
    if partial:
        fig.update_layout(
            title=dict(
                text=f"Open marker: {pd.Timestamp(now):%b %Y} so far (to {pd.Timestamp(now):%d %b})",
                font=dict(size=12, color=NEUTRAL),
                x=0,
                y=0.995,
            )
        )
        fig.update_layout(margin=dict(t=60))
    return fig


@memoised_figure
def cohort_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Signup cohorts (rows) x months since signup (columns), coloured by the share retained."""
    values = matrix.drop(columns=["customers"])
    labels = [f"{pd.Timestamp(c):%b %Y} ({n:,})" for c, n in zip(values.index, matrix["customers"], strict=True)]
    z = values.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.0%}")(np.nan_to_num(z)))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in values.columns],
            y=labels,
            colorscale="RdYlGn",
            zmin=max(0.0, float(np.nanmin(z)) if np.isfinite(z).any() else 0.0),
            zmax=1.0,
            text=text,
            texttemplate="%{text}" if z.shape[1] <= 18 else None,
            hovertemplate="cohort %{y}<br>month %{x}: %{z:.1%} retained<extra></extra>",
            colorbar=dict(title="retained", tickformat=".0%"),
        )
    )
    fig.update_xaxes(title="months since signup", side="top")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, max(320, 22 * len(labels) + 120))


@memoised_figure
def conflict_quadrants(frame: pd.DataFrame) -> go.Figure:
    """Each cohort placed by its departmental KPI rank (x) and its shared-outcome rank (y) within its
    department. Bottom-right: looks good to the department, bad for the shared outcome. Conflicts in red."""
    f = frame.copy()
    key = ["department", "cohort_by"]
    f["score"] = np.where(f["shared_kpi"] == "repeat_after_close", -f["shared_value"], f["shared_value"])
    # 0 = lowest, 1 = highest within its department: the scale on which the 25th/75th percentiles
    # (linear interpolation, as the flags use) sit exactly at 0.25 / 0.75.
    for col, out in (("departmental_value", "x"), ("score", "y")):
        rank = f.groupby(key)[col].rank(method="average")
        n = f.groupby(key)[col].transform("count")
        f[out] = ((rank - 1) / (n - 1).where(n > 1)).fillna(0.5)
    fig = go.Figure()
    fig.add_shape(type="rect", x0=0.75, x1=1.05, y0=-0.05, y1=0.25, fillcolor="rgba(220,38,38,0.08)", line_width=0)
    for dept, part in f.groupby("department"):
        normal = part[~part["conflict"]]
        fig.add_trace(
            go.Scatter(
                x=normal["x"],
                y=normal["y"],
                mode="markers",
                name=department_name(dept),  # "Customer support (support)": escaped when drawn
                marker=dict(size=10, color=DEPARTMENT_COLOURS.get(str(dept), NEUTRAL), opacity=0.55),
                text=normal["cohort_by"] + ": " + normal["cohort"],
                hovertemplate="%{text}<extra>" + plot_text(department_name(dept)) + "</extra>",
            )
        )
    bad = f[f["conflict"]]
    if not bad.empty:
        fig.add_trace(
            go.Scatter(
                x=bad["x"],
                y=bad["y"],
                mode="markers+text",
                name="conflict",
                marker=dict(size=18, color=BAD, symbol="diamond", line=dict(color="white", width=1)),
                text=bad["cohort"],
                textposition="middle left",
                textfont=dict(color=BAD, size=14),
                hovertemplate="%{text}<extra>conflict</extra>",
            )
        )
    fig.update_xaxes(title="departmental KPI (rank within its department)", range=[-0.04, 1.06], tickformat=".0%")
    fig.update_yaxes(title="shared outcome (rank, higher is better)", range=[-0.06, 1.06], tickformat=".0%")
    fig = _layout(fig, 450)
    # the legend names departments in words ("Customer support (support)"): two rows under the title
    fig.update_layout(
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text=""),
        title=dict(
            text="Shaded corner: good for the department, bad for the customer",
            font=dict(size=13, color=BAD),
            x=0,
            y=0.99,
            yanchor="top",
        ),
        margin=dict(t=95),
    )
    return fig


@memoised_figure
def campaign_bars(frame: pd.DataFrame) -> go.Figure:
    """Marketing's view beside the shared one: new customers per campaign, coloured by 90-day retention."""
    f = frame[(frame["department"] == "marketing") & (frame["cohort_by"] == "campaign")].sort_values(
        "departmental_value"
    )
    colours = [BAD if c else NEUTRAL for c in f["conflict"]]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.16,
        subplot_titles=("New customers (Marketing's KPI)", "Kept at 90 days (shared)"),
    )
    fig.add_trace(
        go.Bar(
            x=f["departmental_value"],
            y=f["cohort"],
            orientation="h",
            marker_color=colours,
            showlegend=False,
            hovertemplate="%{y}: %{x:,} new customers<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=f["shared_value"],
            y=f["cohort"],
            orientation="h",
            marker_color=colours,
            showlegend=False,
            text=[f"{v:.0%}" if pd.notna(v) else "" for v in f["shared_value"]],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1%} retained at 90 days<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(tickformat=",d", nticks=4, row=1, col=1)
    fig.update_xaxes(tickformat=".0%", range=[0, 1], tickvals=[0, 0.5, 1], row=1, col=2)
    fig.update_annotations(font_size=12)
    return _layout(fig, 120 + 28 * max(len(f), 1))


@memoised_figure
def holdout_chart(by_frequency: pd.DataFrame) -> go.Figure:
    label = by_frequency.columns[0]
    fig = go.Figure(
        [
            go.Bar(x=by_frequency[label], y=by_frequency["actual"], name="actual", marker_color=NEUTRAL),
            go.Bar(
                x=by_frequency[label],
                y=by_frequency["predicted"],
                name="predicted by the purchase model",
                marker_color="#2563eb",
            ),
        ]
    )
    fig.update_layout(barmode="group", legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(title="repeat purchases in the calibration period", type="category")
    fig.update_yaxes(title="mean purchases per customer in the holdout")
    return _layout(fig, 340)


# ---------------------------------------------------------------------------------- PNG export

_CHROMIUM = Path(os.environ.get("CXDASH_CHROMIUM", "/usr/bin/chromium"))
_server_lock = threading.Lock()
_server_started = False


class PngExportError(RuntimeError):
    """A chart could not be turned into a PNG (no kaleido or no Chromium)."""


def to_png(fig: go.Figure, *, width: int = 1200, height: int | None = None) -> bytes:
    """The figure as PNG bytes, rendered by kaleido in Debian's Chromium (``BROWSER_PATH``).

    The first call starts one headless Chromium that later calls reuse (about 3 s, then about
    0.4 s per chart on the development machine).
    """
    global _server_started
    try:
        import kaleido
    except ImportError as exc:  # pragma: no cover - kaleido is pinned in requirements.txt
        raise PngExportError("PNG export needs the kaleido package (pip install -r requirements.txt).") from exc
    if "BROWSER_PATH" not in os.environ:
        if not _CHROMIUM.exists():
            raise PngExportError(f"PNG export needs Chromium at {_CHROMIUM} (apt-get install chromium).")
        os.environ["BROWSER_PATH"] = str(_CHROMIUM)
    with _server_lock:
        if not _server_started:
            kaleido.start_sync_server(silence_warnings=True)
            _server_started = True
        height = height or int(fig.layout.height or 500)
        return kaleido.calc_fig_sync(fig, opts={"format": "png", "width": width, "height": height})
