"""Plotly figures of the dashboard (built from :mod:`dashboard._data` tables; colour-blind-safe Okabe-Ito palette,
units on every axis, WebGL above :data:`WEBGL_FROM` points)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hwpareto.metrics import lookup

__all__ = [
    "PALETTE",
    "WEBGL_FROM",
    "axis_title",
    "compare_figure",
    "front3d_figure",
    "front_figure",
    "hypervolume_figure",
    "lut_op_figure",
    "metric_label",
    "predictor_figure",
]

# Okabe & Ito (2008), distinguishable with every common colour-vision deficiency
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
DIMMED = "rgba(120,120,120,0.25)"
WEBGL_FROM = 1_000  # SVG markers render slowly beyond that (a 3,000-trial chart: ~1 s more in Chromium)
MAX_3D_BACKGROUND = 5_000  # dominated points drawn in the 3-D view (a fixed random sample beyond that)


def metric_label(metric: str) -> tuple[str, str]:
    """(what it is, its unit) of a metric or objective name, as the metric catalogue has them
    (:func:`hwpareto.metrics.lookup`): ``decode_ms_per_token@board`` → ``("decode", "ms/token")``, ``val_acc_pct`` →
    ``("val acc", "%")``, ``val_ppl`` → ``("val perplexity", "exp of mean token NLL")``; an unknown metric without a
    unit suffix → ``(its name, "value")``."""
    info = lookup(metric)
    return info.label, info.unit


def axis_title(objective: str) -> str:
    """``latency_ms@edge`` → ``latency on edge (ms)``, ``decode_ms_per_token@npu`` → ``decode on npu (ms/token)``
    (:func:`metric_label`)."""
    label, unit = metric_label(objective)
    subject = objective.partition("@")[2].split(":")[0]
    return f"{label}{' on ' + subject if subject else ''} ({unit})"


def _scatter(n: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if n >= WEBGL_FROM else go.Scatter


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        height=520,
        legend={"orientation": "h", "y": -0.18},
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        clickmode="event+select",
    )
    return fig


def _customdata(rows: pd.DataFrame, hover: Mapping[int, str]) -> np.ndarray:
    """``[trial number, config text]`` per row (what a click and a hover read)."""
    data = np.empty((len(rows), 2), dtype=object)
    data[:, 0] = [int(n) for n in rows["number"]]
    data[:, 1] = [hover.get(int(n), "") for n in rows["number"]]
    return data


def front_figure(
    trials: pd.DataFrame,
    quality: str,
    costs: Sequence[str],
    fronts: Mapping[str, pd.DataFrame],
    bounds: Mapping[str, float],
    hover: Mapping[int, str],
    selected: int | None = None,
    title: str = "",
    *,
    projected: Mapping[str, pd.DataFrame] | None = None,
    panels: bool = False,
    log_x: bool = False,
    ranges: bool = True,
    dims: Mapping[str, int] | None = None,
) -> go.Figure:
    """Quality vs cost: every trial dimmed (infeasible ones as crosses; no hover, so the fronts win every hit
    test), then each cost's front in its own colour on top: the 2-D staircase of ``projected`` (default: the front
    rows themselves) and, as open markers, the rows non-dominated only over more objectives; budget lines dashed,
    ``selected`` ringed. Front points carry ``[trial number, config]`` as ``customdata`` (``hover``: trial number →
    config text; ``dims``: cost → how many objectives its front is over, for the legend).
    ``panels``: one panel per cost (small multiples, each with its own dimmed trials and x axis);
    else the fronts overlaid on the first cost's trials. ``log_x``: log cost axes. ``ranges``: default axis ranges
    around the fronts (with a margin), not the outliers."""
    from plotly.subplots import make_subplots

    from dashboard._data import axis_range, quality_range

    projected = projected if projected is not None else fronts
    groups = [[c] for c in costs] if panels and len(costs) > 1 else [list(costs)]
    fig = make_subplots(
        rows=1,
        cols=len(groups),
        shared_yaxes=True,
        horizontal_spacing=0.06,
        subplot_titles=[axis_title(g[0]) for g in groups] if len(groups) > 1 else None,
    )
    cls = _scatter(len(trials) * len(groups))
    symbols = ["circle", "diamond", "square", "triangle-up"]
    # 1. dimmed trials of every panel (drawn first, under the fronts; hover off so they never take a click)
    for col, group in enumerate(groups, start=1):
        first = group[0]
        where = " (each panel: its cost)" if len(groups) > 1 else f" on {first}"
        for name, mask, symbol in (
            (f"trials{where}", trials["feasible"].to_numpy(), "circle"),
            (f"over budget{where}", ~trials["feasible"].to_numpy(), "x"),
        ):
            part = trials[mask]
            if len(part):
                fig.add_trace(
                    cls(
                        x=part[first].to_numpy(),
                        y=part[quality].to_numpy(),
                        mode="markers",
                        name=name,
                        hoverinfo="skip",
                        legendgroup=name,
                        showlegend=col == 1,
                        marker={"color": DIMMED, "size": 5, "symbol": symbol},
                    ),
                    row=1,
                    col=col,
                )
    # 2. the selection ring, under the fronts (it takes no clicks either)
    if selected is not None:
        row = trials[trials["number"] == selected]
        for col, group in enumerate(groups, start=1):
            if len(row):
                fig.add_trace(
                    go.Scatter(
                        x=row[group[0]],
                        y=row[quality],
                        mode="markers",
                        name=f"selected: trial {selected}",
                        showlegend=col == 1,
                        customdata=row["number"],
                        hoverinfo="skip",
                        marker={"size": 18, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "#000000"}},
                    ),
                    row=1,
                    col=col,
                )
    # 3. the fronts, last: on top and first in every hit test
    for col, group in enumerate(groups, start=1):
        for cost in group:
            i = list(costs).index(cost)
            colour, symbol = PALETTE[i % len(PALETTE)], symbols[i % 4]
            stairs = projected[cost]
            rest = fronts[cost][~fronts[cost]["number"].isin(stairs["number"])]
            template = (
                "trial %{customdata[0]}<br>" + cost + " %{x:.4g}<br>" + quality + " %{y:.4g}"
                "<br>%{customdata[1]}<extra>%{fullData.name}</extra>"
            )
            if len(rest):
                fig.add_trace(
                    go.Scatter(
                        x=rest[cost],
                        y=rest[quality],
                        mode="markers",
                        name=f"non-dominated in {(dims or {}).get(cost, 'N')}-D only: {cost}",
                        customdata=_customdata(rest, hover),
                        hovertemplate=template,
                        marker={"color": colour, "size": 8, "symbol": f"{symbol}-open", "line": {"width": 1.5}},
                    ),
                    row=1,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=stairs[cost],
                    y=stairs[quality],
                    mode="lines+markers",
                    name=f"front: {cost}",
                    line_shape="hv",
                    customdata=_customdata(stairs, hover),
                    hovertemplate=template,
                    marker={"color": colour, "size": 9, "symbol": symbol},
                ),
                row=1,
                col=col,
            )
    for col, group in enumerate(groups, start=1):
        for j, (objective, bound) in enumerate(bounds.items()):
            if objective in group:
                fig.add_vline(
                    x=bound,
                    line_dash="dash",
                    line_color=PALETTE[5],
                    row=1,
                    col=col,
                    annotation_text=f"budget {objective} ≤ {bound:g}",
                    annotation_position="top",
                    annotation_yshift=-14 * j,
                )
    first = costs[0]
    x_title = axis_title(first) if len(groups) > 1 or len(costs) == 1 else "{} ({})".format(*metric_label(first))
    fig = _layout(fig, title, x_title, axis_title(quality))
    fig.update_layout(hovermode="closest")
    y_values: list[float] = []
    for col, group in enumerate(groups, start=1):
        axis: dict[str, object] = {"type": "log"} if log_x else {}
        if len(groups) > 1:
            axis["title_text"] = axis_title(group[0])
        if ranges:  # around the fronts and the budget lines (a budget far off the front stays in view)
            values = np.concatenate(
                [fronts[c][c].to_numpy(float) for c in group] + [np.array([bounds[c]]) for c in group if c in bounds]
            )
            x_range = axis_range(values, log=log_x)
            if x_range is not None:
                axis["range"] = list(x_range)
            for c in group:
                y = quality_range(trials, fronts[c], c, quality, x_range, log=log_x)
                if y is not None:
                    y_values += list(y)
        fig.update_xaxes(row=1, col=col, **axis)
    if y_values:
        fig.update_yaxes(range=[min(y_values), max(y_values)], row=1, col=1)
    return fig


def front3d_figure(
    trials: pd.DataFrame,
    front: pd.DataFrame,
    objectives: Sequence[str],
    title: str = "",
    *,
    selected: int | None = None,
    log_axes: Sequence[str] = (),
    ranges: bool = True,
) -> go.Figure:
    """Three objectives: the front (over all objectives) in colour, a sample of the other trials dimmed, ``selected``
    ringed. ``log_axes``: the objectives drawn on log axes; ``ranges``: each axis ranged around the front (with a
    margin), not the outliers (the scene's reset button shows every trial)."""
    from dashboard._data import axis_range

    x, y, z = objectives[:3]
    rest = trials[~trials["number"].isin(front["number"])]
    if len(rest) > MAX_3D_BACKGROUND:
        rest = rest.sample(MAX_3D_BACKGROUND, random_state=0)
    data = [
        go.Scatter3d(
            x=rest[x],
            y=rest[y],
            z=rest[z],
            mode="markers",
            name="other trials (sample)",
            customdata=rest["number"],
            marker={"size": 2, "color": DIMMED},
            hovertemplate="trial %{customdata}<extra></extra>",
        ),
        go.Scatter3d(
            x=front[x],
            y=front[y],
            z=front[z],
            mode="markers",
            name="Pareto front (all objectives)",
            customdata=front["number"],
            marker={"size": 4, "color": PALETTE[0]},
            hovertemplate="trial %{customdata}<br>%{x:.4g}, %{y:.4g}, %{z:.4g}<extra></extra>",
        ),
    ]
    row = trials[trials["number"] == selected] if selected is not None else trials.iloc[:0]
    if len(row):
        data.append(
            go.Scatter3d(
                x=row[x],
                y=row[y],
                z=row[z],
                mode="markers",
                name=f"selected: trial {selected}",
                customdata=row["number"],
                marker={"size": 9, "color": "rgba(0,0,0,0)", "symbol": "diamond-open", "line": {"width": 4}},
                hovertemplate="selected: trial %{customdata}<extra></extra>",
            )
        )
    scene: dict[str, dict[str, object]] = {}
    for axis, objective in zip(("xaxis", "yaxis", "zaxis"), (x, y, z), strict=True):
        log = objective in log_axes
        scene[axis] = {"title": axis_title(objective), **({"type": "log"} if log else {})}
        values = np.concatenate([front[objective].to_numpy(float), row[objective].to_numpy(float)])
        bounds = axis_range(values, log=log) if ranges else None
        if bounds is not None:
            scene[axis]["range"] = list(bounds)
    fig = go.Figure(data)
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=560,
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        scene=scene,
    )
    return fig


def compare_figure(
    fronts: Mapping[str, pd.DataFrame], cost: str, quality: str, quality_direction: str = "maximize"
) -> go.Figure:
    """Fronts of several studies (label → front rows) on the same cost/quality axes, each drawn as the Fronts chart
    draws one: the staircase of its 2-D projection, and open markers for rows non-dominated only over more
    objectives (a 3-objective front drawn as one line zig-zags)."""
    from dashboard._data import projection_front

    fig = go.Figure()
    for i, (label, front) in enumerate(fronts.items()):
        colour = PALETTE[i % len(PALETTE)]
        stairs = projection_front(front, cost, quality, "minimize", quality_direction)
        rest = front[~front["number"].isin(stairs["number"])]
        template = label + ": trial %{customdata}<br>%{x:.4g}, %{y:.4g}<extra></extra>"
        fig.add_trace(
            go.Scatter(
                x=stairs[cost],
                y=stairs[quality],
                mode="lines+markers",
                name=label,
                line_shape="hv",
                customdata=stairs["number"],
                marker={"color": colour, "size": 8},
                line={"dash": ["solid", "dash", "dot"][i % 3]},
                hovertemplate=template,
            )
        )
        if len(rest):
            fig.add_trace(
                go.Scatter(
                    x=rest[cost],
                    y=rest[quality],
                    mode="markers",
                    name=f"{label}: non-dominated over more objectives only",
                    customdata=rest["number"],
                    marker={"color": colour, "size": 7, "symbol": "circle-open", "line": {"width": 1.5}},
                    hovertemplate=template,
                )
            )
    return _layout(fig, "front comparison", axis_title(cost), axis_title(quality))


def hypervolume_figure(history: np.ndarray) -> go.Figure:
    """Hypervolume after each completed trial."""
    step = max(1, len(history) // 2000)  # at most ~2,000 points drawn
    x = np.arange(1, len(history) + 1)[::step]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=history[::step],
            mode="lines",
            line={"color": PALETTE[0]},
            name="hypervolume",
            hovertemplate="after %{x} trials: %{y:.4g}<extra></extra>",
        )
    )
    fig = _layout(fig, "hypervolume history", "completed trials (count)", "hypervolume (objective units)")
    fig.update_layout(height=320, showlegend=False)
    return fig


def lut_op_figure(by_op: pd.DataFrame, metric: str = "latency_ms") -> go.Figure:
    """Mean (bar) and max (marker) cost per op of a device's LUT."""
    what, unit = metric_label(metric)
    fig = go.Figure(
        [
            go.Bar(
                x=by_op["op"],
                y=by_op[f"{metric}_mean"],
                name=f"mean {metric}",
                marker_color=PALETTE[0],
                customdata=by_op["layers"],
                hovertemplate="%{x}: mean %{y:.4g} " + unit + " over %{customdata} layers<extra></extra>",
            )
        ]
    )
    if f"{metric}_max" in by_op:
        fig.add_trace(
            go.Scatter(
                x=by_op["op"],
                y=by_op[f"{metric}_max"],
                mode="markers",
                name=f"max {metric}",
                marker={"color": PALETTE[1], "symbol": "diamond", "size": 9},
            )
        )
    fig = _layout(fig, f"per-layer {what} by op", "op (layer kind)", f"{what} per layer ({unit})")
    fig.update_layout(height=380, clickmode="event")
    return fig


def predictor_figure(points: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """Predicted vs measured with the y = x line and the ±10 % band."""
    what, unit = metric_label(metric)
    low = float(min(points["measured"].min(), points["predicted"].min())) * 0.9
    high = float(max(points["measured"].max(), points["predicted"].max())) * 1.1
    line = np.array([low, high])
    fig = go.Figure(
        [
            go.Scatter(
                x=np.concatenate([line, line[::-1]]),
                y=np.concatenate([line * 1.1, line[::-1] * 0.9]),
                fill="toself",
                fillcolor="rgba(0,158,115,0.15)",
                line={"width": 0},
                name="±10 % band",
                hoverinfo="skip",
            ),
            go.Scatter(
                x=line,
                y=line,
                mode="lines",
                line={"color": PALETTE[2], "dash": "dash"},
                name="predicted = measured",
                hoverinfo="skip",
            ),
            go.Scatter(
                x=points["measured"],
                y=points["predicted"],
                mode="markers",
                name="SubNets",
                marker={"color": PALETTE[0], "size": 7},
                text=points["config_key"],
                hovertemplate="%{text}<br>measured %{x:.4g}<br>predicted %{y:.4g}<extra></extra>",
            ),
        ]
    )
    fig = _layout(fig, title, f"measured {what} ({unit})", f"predicted {what} ({unit})")
    fig.update_layout(height=420, clickmode="event")
    return fig
