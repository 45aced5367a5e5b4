"""Plotly figures of the dashboard (built from :mod:`dashboard._data` tables; colour-blind-safe Okabe-Ito palette,
units on every axis, WebGL above :data:`WEBGL_FROM` points)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "PALETTE",
    "WEBGL_FROM",
    "axis_title",
    "compare_figure",
    "front3d_figure",
    "front_figure",
    "hypervolume_figure",
    "lut_op_figure",
    "predictor_figure",
]

# Okabe & Ito (2008), distinguishable with every common colour-vision deficiency
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
DIMMED = "rgba(120,120,120,0.25)"
WEBGL_FROM = 5_000
MAX_3D_BACKGROUND = 5_000  # dominated points drawn in the 3-D view (a fixed random sample beyond that)

_UNITS = {"latency_ms": "ms", "energy_mj": "mJ", "params": "count", "macs": "MACs", "flops": "FLOPs",
          "peak_memory_mb": "MB"}


def axis_title(objective: str) -> str:
    """``latency_ms@edge`` → ``latency on edge (ms)``; accuracy metrics keep their unit suffix (``_pct`` → %)."""
    metric, _, subject = objective.partition("@")
    metric = metric.split(":")[0]
    unit = _UNITS.get(metric)
    if unit is None:
        unit = "%" if metric.endswith("_pct") else metric.rsplit("_", 1)[-1] if "_" in metric else "value"
        label = metric.removesuffix("_pct")
    else:
        label = metric.removesuffix(f"_{unit.lower()}")
    return f"{label.replace('_', ' ')}{' on ' + subject if subject else ''} ({unit})"


def _scatter(n: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if n >= WEBGL_FROM else go.Scatter


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=520,
                      legend={"orientation": "h", "y": -0.18}, margin={"l": 60, "r": 20, "t": 50, "b": 60},
                      clickmode="event+select")
    return fig


def front_figure(trials: pd.DataFrame, quality: str, costs: Sequence[str], fronts: Mapping[str, pd.DataFrame],
                 bounds: Mapping[str, float], hover: Mapping[int, str], selected: int | None = None,
                 title: str = "") -> go.Figure:
    """Quality vs cost: every trial of the first cost dimmed (infeasible ones as crosses), each cost's front in its
    own colour, budget lines dashed, ``selected`` ringed. Points carry their trial number as ``customdata``;
    front points hover with their config (``hover``: trial number → text)."""
    fig = go.Figure()
    first = costs[0]
    cls = _scatter(len(trials))
    for name, mask, symbol in ((f"trials on {first}", trials["feasible"].to_numpy(), "circle"),
                               (f"over budget, on {first}", ~trials["feasible"].to_numpy(), "x")):
        part = trials[mask]
        if len(part):
            fig.add_trace(cls(x=part[first].to_numpy(), y=part[quality].to_numpy(), mode="markers", name=name,
                              customdata=part["number"].to_numpy(), marker={"color": DIMMED, "size": 5,
                                                                            "symbol": symbol},
                              hovertemplate="trial %{customdata}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    for i, cost in enumerate(costs):
        front = fronts[cost]
        text = [hover.get(int(n), "") for n in front["number"]]
        fig.add_trace(go.Scatter(
            x=front[cost], y=front[quality], mode="lines+markers", name=f"front: {cost}", line_shape="hv",
            customdata=front["number"], text=text, marker={"color": PALETTE[i % len(PALETTE)], "size": 9,
                                                           "symbol": ["circle", "diamond", "square", "triangle-up"][
                                                               i % 4]},
            hovertemplate="trial %{customdata}<br>" + cost + " %{x:.4g}<br>" + quality + " %{y:.4g}"
                          "<br>%{text}<extra></extra>"))
    for j, (objective, bound) in enumerate(bounds.items()):
        if objective in costs:
            fig.add_vline(x=bound, line_dash="dash", line_color=PALETTE[5],
                          annotation_text=f"budget {objective} ≤ {bound:g}", annotation_position="top",
                          annotation_yshift=-14 * j)
    if selected is not None:
        row = trials[trials["number"] == selected]
        if len(row):
            fig.add_trace(go.Scatter(x=row[first], y=row[quality], mode="markers", name=f"selected: trial {selected}",
                                     customdata=row["number"], marker={"size": 18, "color": "rgba(0,0,0,0)",
                                                                       "line": {"width": 3, "color": "#000000"}},
                                     hoverinfo="skip"))
    x_title = axis_title(first) if len(costs) == 1 else axis_title(first).split(" on ")[0] + " (" + \
        axis_title(first).rsplit("(", 1)[-1]
    return _layout(fig, title, x_title, axis_title(quality))


def front3d_figure(trials: pd.DataFrame, front: pd.DataFrame, objectives: Sequence[str], title: str = "") -> go.Figure:
    """Three objectives: the front (over all objectives) in colour, a sample of the other trials dimmed."""
    x, y, z = objectives[:3]
    rest = trials[~trials["number"].isin(front["number"])]
    if len(rest) > MAX_3D_BACKGROUND:
        rest = rest.sample(MAX_3D_BACKGROUND, random_state=0)
    fig = go.Figure([
        go.Scatter3d(x=rest[x], y=rest[y], z=rest[z], mode="markers", name="other trials (sample)",
                     customdata=rest["number"], marker={"size": 2, "color": DIMMED},
                     hovertemplate="trial %{customdata}<extra></extra>"),
        go.Scatter3d(x=front[x], y=front[y], z=front[z], mode="markers", name="Pareto front (all objectives)",
                     customdata=front["number"], marker={"size": 4, "color": PALETTE[0]},
                     hovertemplate="trial %{customdata}<br>%{x:.4g}, %{y:.4g}, %{z:.4g}<extra></extra>"),
    ])
    fig.update_layout(title=title, template="plotly_white", height=560, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      scene={"xaxis_title": axis_title(x), "yaxis_title": axis_title(y), "zaxis_title": axis_title(z)})
    return fig


def compare_figure(fronts: Mapping[str, pd.DataFrame], cost: str, quality: str) -> go.Figure:
    """Fronts of several studies (label → front rows) on the same cost/quality axes."""
    fig = go.Figure()
    for i, (label, front) in enumerate(fronts.items()):
        fig.add_trace(go.Scatter(x=front[cost], y=front[quality], mode="lines+markers", name=label, line_shape="hv",
                                 customdata=front["number"], marker={"color": PALETTE[i % len(PALETTE)], "size": 8},
                                 line={"dash": ["solid", "dash", "dot"][i % 3]},
                                 hovertemplate=label + ": trial %{customdata}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    return _layout(fig, "front comparison", axis_title(cost), axis_title(quality))


def hypervolume_figure(history: np.ndarray) -> go.Figure:
    """Hypervolume after each completed trial."""
    step = max(1, len(history) // 2000)  # at most ~2,000 points drawn
    x = np.arange(1, len(history) + 1)[::step]
    fig = go.Figure(go.Scatter(x=x, y=history[::step], mode="lines", line={"color": PALETTE[0]}, name="hypervolume",
                               hovertemplate="after %{x} trials: %{y:.4g}<extra></extra>"))
    fig = _layout(fig, "hypervolume history", "completed trials (count)", "hypervolume (objective units)")
    fig.update_layout(height=320, showlegend=False)
    return fig


def lut_op_figure(by_op: pd.DataFrame, metric: str = "latency_ms") -> go.Figure:
    """Mean (bar) and max (marker) cost per op of a device's LUT."""
    unit = "ms" if metric == "latency_ms" else "mJ"
    fig = go.Figure([go.Bar(x=by_op["op"], y=by_op[f"{metric}_mean"], name=f"mean {metric}",
                            marker_color=PALETTE[0], customdata=by_op["layers"],
                            hovertemplate="%{x}: mean %{y:.4g} " + unit + " over %{customdata} layers<extra></extra>")])
    if f"{metric}_max" in by_op:
        fig.add_trace(go.Scatter(x=by_op["op"], y=by_op[f"{metric}_max"], mode="markers", name=f"max {metric}",
                                 marker={"color": PALETTE[1], "symbol": "diamond", "size": 9}))
    fig = _layout(fig, f"per-layer {metric.split('_')[0]} by op", "op (layer kind)",
                  f"{metric.split('_')[0]} per layer ({unit})")
    fig.update_layout(height=380, clickmode="event")
    return fig


def predictor_figure(points: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """Predicted vs measured with the y = x line and the ±10 % band."""
    unit = "ms" if metric.startswith("latency") else "mJ" if metric.startswith("energy") else "value"
    low = float(min(points["measured"].min(), points["predicted"].min())) * 0.9
    high = float(max(points["measured"].max(), points["predicted"].max())) * 1.1
    line = np.array([low, high])
    fig = go.Figure([
        go.Scatter(x=np.concatenate([line, line[::-1]]), y=np.concatenate([line * 1.1, line[::-1] * 0.9]),
                   fill="toself", fillcolor="rgba(0,158,115,0.15)", line={"width": 0}, name="±10 % band",
                   hoverinfo="skip"),
        go.Scatter(x=line, y=line, mode="lines", line={"color": PALETTE[2], "dash": "dash"},
                   name="predicted = measured", hoverinfo="skip"),
        go.Scatter(x=points["measured"], y=points["predicted"], mode="markers", name="SubNets",
                   marker={"color": PALETTE[0], "size": 7}, text=points["config_key"],
                   hovertemplate="%{text}<br>measured %{x:.4g}<br>predicted %{y:.4g}<extra></extra>"),
    ])
    fig = _layout(fig, title, f"measured {metric.split('_')[0]} ({unit})", f"predicted {metric.split('_')[0]} ({unit})")
    fig.update_layout(height=420, clickmode="event")
    return fig
