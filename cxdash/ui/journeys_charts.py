"""The Journeys page's figures: the journey map, the paths Sankey, the hotspot chart and the funnel."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from cxdash import journeys as jr
from cxdash.governance import department_name
from cxdash.ui.charts import _colour_map
from cxdash.ui.figures import memoised_figure
from cxdash.ui.formatting import duration, plot_text
from cxdash.ui.journeys import _of, p_text


@memoised_figure
def journey_map(edges: pd.DataFrame, node_frame: pd.DataFrame, max_edges: int = 40) -> go.Figure:
    """The directly-follows graph: activities in columns by department, coloured by department,
    sized by customers; the ``max_edges`` busiest edges drawn with width by count."""
    e = edges[edges["source"] != edges["target"]].head(max_edges)
    names = pd.unique(pd.concat([e["source"], e["target"]], ignore_index=True)) if len(e) else []
    info = node_frame.set_index("activity") if len(node_frame) else pd.DataFrame()
    dept = {a: (info.loc[a, "department"] if a in info.index else "other") for a in names}
    customers = {a: (int(info.loc[a, "customers"]) if a in info.index else 0) for a in names}
    departments = sorted(set(dept.values()))
    colours = _colour_map(departments)
    # A ring ordered by department (then reach): each department is an arc of its colour, and
    # every edge is a chord, so 100+ activities thinned to the busiest edges stay legible.
    order = sorted(names, key=lambda a: (departments.index(dept[a]), -customers[a], a))
    n = max(len(order), 1)
    pos = {
        a: (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n))
        for i, a in enumerate(order)
    }
    fig = go.Figure()
    top = float(e["count"].max()) if len(e) else 1.0
    # All arrows in one layout update and all edge hovers in one trace: plotly validates each
    # add_annotation / add_trace call against the whole figure, seconds for 40 edges.
    arrows, mid_x, mid_y, hover = [], [], [], []
    for r in e.itertuples(index=False):
        (x0, y0), (x1, y1) = pos[r.source], pos[r.target]
        arrows.append(
            dict(
                x=x1,
                y=y1,
                ax=x0,
                ay=y0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowsize=0.5,
                arrowwidth=1 + 9 * math.sqrt(r.count / top),
                arrowcolor="rgba(100,116,139,0.30)",
                standoff=14,
                startstandoff=10,
                text="",
            )
        )
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        hover.append(
            f"{plot_text(r.source)} → {plot_text(r.target)}<br>{r.count:,} times, {r.customers:,} customers "
            f"({r.customer_share:.0%})<br>median {duration(r.median_seconds)}, p90 "
            f"{duration(r.p90_seconds)}"
        )
    if arrows:
        fig.update_layout(annotations=arrows)
        fig.add_trace(
            go.Scatter(
                x=mid_x,
                y=mid_y,
                mode="markers",
                marker=dict(size=8, opacity=0),
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
                showlegend=False,
            )
        )
    biggest = max(customers.values()) if customers else 1
    for d in departments:
        members = [a for a in names if dept[a] == d]
        fig.add_trace(
            go.Scatter(
                x=[pos[a][0] for a in members],
                y=[pos[a][1] for a in members],
                mode="markers+text",
                name=department_name(d),  # the legend: "Technology (tech)"
                text=members,
                textposition=[
                    "middle right"
                    if pos[a][0] > 0.05
                    else ("middle left" if pos[a][0] < -0.05 else ("top center" if pos[a][1] > 0 else "bottom center"))
                    for a in members
                ],
                marker=dict(
                    size=[14 + 30 * math.sqrt(customers[a] / max(biggest, 1)) for a in members],
                    color=colours[d],
                    line=dict(width=1, color="white"),
                ),
                customdata=[customers[a] for a in members],
                hovertemplate="%{text}<br>%{customdata:,} customers<extra>" + plot_text(d) + "</extra>",
            )
        )
    fig.update_layout(
        height=640,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text="department"),
        xaxis=dict(visible=False, range=[-1.9, 1.9]),
        yaxis=dict(visible=False, range=[-1.25, 1.25], scaleanchor="x"),
        plot_bgcolor="white",
    )
    return fig


def _stacked_y(links: pd.DataFrame, keys) -> list[float]:
    """Each node's vertical centre: nodes of one column (step offset) stacked by their flow, so
    plotly keeps them in their column (it ignores ``x`` unless ``y`` is given too)."""
    flow: dict[str, float] = {}
    for o, a, n in zip(links["source_offset"], links["source"], links["customers"], strict=True):
        flow[f"{o}|{a}"] = flow.get(f"{o}|{a}", 0) + n
    inflow: dict[str, float] = {}
    for o, a, n in zip(links["target_offset"], links["target"], links["customers"], strict=True):
        inflow[f"{o}|{a}"] = inflow.get(f"{o}|{a}", 0) + n
    size = {k: max(flow.get(k, 0), inflow.get(k, 0), 1) for k in keys}
    columns: dict[str, list[str]] = {}
    for k in keys:
        columns.setdefault(k.split("|", 1)[0], []).append(k)
    y: dict[str, float] = {}
    for members in columns.values():
        total, done = sum(size[k] for k in members), 0.0
        for k in members:
            y[k] = 0.02 + 0.96 * (done + size[k] / 2) / total
            done += size[k]
    return [y[k] for k in keys]


@memoised_figure
def sankey(links: pd.DataFrame, anchor: str) -> go.Figure:
    """Whole paths to (or from) the anchor (``journeys.path_links``): one column per step offset,
    the anchor red, the pooled "(other paths)" grey. Every link is drawn: the paths were already
    cut to the busiest, so no ribbon is left hanging."""
    top = links
    keys = (
        pd.unique(
            pd.concat(
                [
                    top["source_offset"].astype(str) + "|" + top["source"],
                    top["target_offset"].astype(str) + "|" + top["target"],
                ],
                ignore_index=True,
            )
        )
        if len(top)
        else []
    )
    index = {k: i for i, k in enumerate(keys)}
    offsets = [int(k.split("|", 1)[0]) for k in keys]
    lo, hi = (min(offsets), max(offsets)) if offsets else (0, 1)
    span = max(hi - lo, 1)
    labels = [k.split("|", 1)[1] for k in keys]
    colours = ["#dc2626" if lab == anchor else ("#94a3b8" if lab == jr.OTHER_PATHS else "#0ea5e9") for lab in labels]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node=dict(
                label=labels,
                color=colours,
                pad=12,
                thickness=14,
                x=[0.01 + 0.98 * (o - lo) / span for o in offsets],
                y=_stacked_y(top, keys),
            ),
            link=dict(
                source=[index[f"{o}|{s}"] for o, s in zip(top["source_offset"], top["source"], strict=True)],
                target=[index[f"{o}|{t}"] for o, t in zip(top["target_offset"], top["target"], strict=True)],
                value=top["customers"].tolist(),
                color="rgba(100,116,139,0.25)",
                hovertemplate="%{source.label} → %{target.label}: %{value:,} customers<extra></extra>",
            ),
        )
    )
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=30, b=10), font=dict(size=12))
    return fig


@memoised_figure
def hotspot_chart(spots: pd.DataFrame) -> go.Figure:
    """Each hotspot's lift with its 95% interval, for the hotspots that have one (the caption
    names the others): red when significantly above 1, green when significantly below, else grey."""
    s = spots[spots["lift"].notna()].iloc[::-1]
    err_hi = (s["ci_high"] - s["lift"]).tolist()
    err_lo = (s["lift"] - s["ci_low"]).tolist()
    below = (s["p_adjusted"] < 0.05) & (s["lift"] < 1)
    colours = [
        "#dc2626" if sig else ("#16a34a" if low else "#94a3b8")
        for sig, low in zip(s["significant"].astype(bool), below, strict=True)
    ]
    hover = [
        f"{plot_text(h)}: lift {lift:.2f} (95% CI {lo:.2f}–{hi:.2f}), adjusted p {p_text(p)}<br>"
        f"hit it: {_of(a, n1, r1)} churned; never hit it: {_of(c, n0, r0)}"
        for h, lift, lo, hi, p, a, n1, r1, c, n0, r0 in zip(
            s["hotspot"],
            s["lift"],
            s["ci_low"],
            s["ci_high"],
            s["p_adjusted"],
            s["churned"],
            s["customers_judged"],
            s["churn_rate"],
            s["baseline_churned"],
            s["baseline_customers"],
            s["baseline_churn_rate"],
            strict=True,
        )
    ]
    fig = go.Figure(
        go.Bar(
            x=s["lift"],
            y=s["hotspot"],
            orientation="h",
            marker_color=colours,
            error_x=dict(type="data", array=err_hi, arrayminus=err_lo, color="#334155"),
            text=[f"{a:,} of {n:,} churned" for a, n in zip(s["churned"], s["customers_judged"], strict=True)],
            textposition="inside",
            insidetextanchor="start",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.add_vline(x=1, line_dash="dash", line_color="#64748b")
    fig.update_layout(
        height=90 + 42 * len(s),
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="churn lift vs customers who never hit it (95% CI)",
    )
    return fig


@memoised_figure
def funnel_chart(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for seg, part in frame.groupby("segment", sort=True):
        fig.add_trace(
            go.Bar(
                x=part["activity"],
                y=part["conversion"] * 100,
                name=str(seg),
                text=[f"{c:,}" for c in part["customers"]],
                textposition="outside",
            )
        )
    fig.update_layout(
        height=380,
        barmode="group",
        yaxis_title="% of customers entering",
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=1.05, x=0),
    )
    return fig
