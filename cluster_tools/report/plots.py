"""The figures of a run report, drawn with matplotlib to PNG files.

* ``latency.png``: every call's latency over time (log scale), coloured by operation for
  successful calls and by AWS exception name for failed ones, with each fault drawn as a shaded
  window labelled with its kind and node;
* ``throughput.png``: successful calls per second and errors per second by exception name;
* ``nodes.png`` (runs with faults or node samples): each node's state over time and, where it was
  sampled, its replication lag.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .data import OK, RunData  # noqa: E402

MAX_OK_POINTS = 200_000   # beyond this, every k-th successful call is drawn (every failure always is)
FAULT_COLOURS = {"kill": "#d62728", "pause": "#ff7f0e", "restart": "#9467bd", "remove": "#8c564b",
                 "delete-hsm": "#8c564b", "stop": "#d62728"}
OP_COLOURS = ["#1f77b4", "#2ca02c", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#aec7e8"]
ERROR_COLOURS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#000000", "#bcbd22", "#17becf"]
STATE_COLOURS = {"up": "#2ca02c", "ACTIVE": "#2ca02c", "unreachable": "#d62728", "down": "#d62728",
                 "paused": "#ff7f0e", "removed": "#8c564b"}
DPI = 110


def _shade_faults(ax: Axes, run: RunData, *, labels: bool) -> None:
    end = run.end - run.t0
    for n, w in enumerate(run.faults):
        start, stop = w.start - run.t0, (w.end if math.isfinite(w.end) else run.end) - run.t0
        stop = max(stop, start + 0.05)  # an instant fault still shows
        colour = FAULT_COLOURS.get(w.kind, "#7f7f7f")
        ax.axvspan(start, min(stop, end), color=colour, alpha=0.12, lw=0)
        if labels:
            ax.text(start, 1.0 - 0.06 * (n % 4), f" {w.label}", transform=ax.get_xaxis_transform(), fontsize=7,
                    color=colour, va="top", ha="left", clip_on=True)


def latency(run: RunData, path: Path) -> Path:
    calls = run.calls
    fig, ax = plt.subplots(figsize=(12, 5.5))
    ok_index = calls.outcomes.index(OK) if OK in calls.outcomes else -1
    n_ok = sum(1 for o in calls.outcome if o == ok_index)
    step = max(1, math.ceil(n_ok / MAX_OK_POINTS))
    series: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    seen_ok = 0
    for start, lat, op, outcome in zip(calls.start, calls.latency, calls.op, calls.outcome, strict=True):
        if outcome == ok_index:
            seen_ok += 1
            if seen_ok % step:
                continue
        xs, ys = series[(calls.ops[op], calls.outcomes[outcome])]
        xs.append(start - run.t0)
        ys.append(max(lat * 1000, 0.01))
    handles = []
    op_names = sorted({op for op, outcome in series if outcome == OK})
    for i, op in enumerate(op_names):
        xs, ys = series[(op, OK)]
        colour = OP_COLOURS[i % len(OP_COLOURS)]
        ax.scatter(xs, ys, s=2, alpha=0.35, color=colour, lw=0, rasterized=True)
        handles.append(Line2D([], [], marker="o", ls="", color=colour, label=f"{op} ok"))
    errors = Counter()
    for (_, outcome), (xs, _) in series.items():
        if outcome != OK:
            errors[outcome] += len(xs)
    for i, (name, count) in enumerate(errors.most_common()):
        colour = ERROR_COLOURS[i % len(ERROR_COLOURS)]
        xs = [x for (_, o), (sx, _) in series.items() if o == name for x in sx]
        ys = [y for (_, o), (_, sy) in series.items() if o == name for y in sy]
        ax.scatter(xs, ys, s=14, marker="x", color=colour, lw=0.9, rasterized=True)
        handles.append(Line2D([], [], marker="x", ls="", color=colour, label=f"{name} ({count})"))
    _shade_faults(ax, run, labels=True)
    ax.set_yscale("log")
    ax.set_xlim(0, max(run.end - run.t0, 1.0))
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("latency (ms, log scale)")
    thinned = f"; every {step}th successful call drawn" if step > 1 else ""
    ax.set_title(f"{run.title}: latency of every call ({len(calls):,} calls{thinned})", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right", ncols=2, framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def throughput(run: RunData, path: Path) -> Path:
    calls = run.calls
    seconds = max(1, int(run.end - run.t0))  # whole seconds: a last, partial second would look like a drop
    ok_per_s = [0] * seconds
    errors: dict[str, list[int]] = defaultdict(lambda: [0] * seconds)
    ok_index = calls.outcomes.index(OK) if OK in calls.outcomes else -1
    for start, lat, outcome in zip(calls.start, calls.latency, calls.outcome, strict=True):
        second = int(start + lat - run.t0)  # counted when it ended
        if 0 <= second < seconds:
            if outcome == ok_index:
                ok_per_s[second] += 1
            else:
                errors[calls.outcomes[outcome]][second] += 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True, height_ratios=(3, 2))
    xs = list(range(seconds))
    top.plot(xs, ok_per_s, color="#1f77b4", lw=1.2, label="successful calls/s")
    top.set_ylabel("calls/s")
    top.set_title(f"{run.title}: throughput and errors per second", fontsize=10)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=7, loc="upper right")
    _shade_faults(top, run, labels=True)
    bottom_stack = [0] * seconds
    for i, (name, counts) in enumerate(sorted(errors.items(), key=lambda kv: -sum(kv[1]))):
        bottom.bar(xs, counts, bottom=bottom_stack, width=1.0, align="edge",
                   color=ERROR_COLOURS[i % len(ERROR_COLOURS)], label=f"{name} ({sum(counts)})")
        bottom_stack = [a + b for a, b in zip(bottom_stack, counts, strict=True)]
    _shade_faults(bottom, run, labels=False)
    bottom.set_ylabel("errors/s")
    bottom.set_xlabel("seconds since the start of the run")
    bottom.grid(True, alpha=0.3)
    if errors:
        bottom.legend(fontsize=7, loc="upper right")
    else:
        bottom.text(0.5, 0.5, "no errors", transform=bottom.transAxes, ha="center", va="center", color="#2ca02c")
    bottom.set_xlim(0, seconds)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def nodes(run: RunData, path: Path) -> Path | None:
    names = list(dict.fromkeys(run.nodes + [w.node for w in run.faults] + [s.node for s in run.node_samples]))
    if not names or not (run.faults or run.node_samples):
        return None
    lagged = [s for s in run.node_samples if s.lag is not None]
    rows = 2 if lagged else 1
    fig, axes = plt.subplots(rows, 1, figsize=(12, 1.2 + 0.55 * len(names) + (2.5 if lagged else 0)),
                             sharex=True, squeeze=False, height_ratios=(1, 1.2)[:rows] if lagged else None)
    ax = axes[0][0]
    span = max(run.end - run.t0, 1.0)
    for y, node in enumerate(names):
        ax.broken_barh([(0, span)], (y - 0.35, 0.7), color=STATE_COLOURS["up"], alpha=0.35)
        for w in (w for w in run.faults if w.node == node):
            stop = (w.end if math.isfinite(w.end) else run.end) - run.t0
            ax.broken_barh([(w.start - run.t0, max(stop - (w.start - run.t0), 0.05))], (y - 0.35, 0.7),
                           color=FAULT_COLOURS.get(w.kind, "#7f7f7f"), alpha=0.8)
        for s in (s for s in run.node_samples if s.node == node and s.state not in ("ACTIVE", "up")):
            ax.plot([s.at - run.t0], [y], marker="|", color=STATE_COLOURS.get(s.state, "#000000"), ms=10)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_title(f"{run.title}: HSM nodes over time (green: serving; shaded: the fault that took it away)",
                 fontsize=10)
    kinds = sorted({w.kind for w in run.faults})
    handles = [Line2D([], [], lw=6, color=FAULT_COLOURS.get(k, "#7f7f7f"), label=k) for k in kinds]
    if any(s.state not in ("ACTIVE", "up") for s in run.node_samples):
        handles += [Line2D([], [], marker="|", ls="", ms=10, color=STATE_COLOURS["unreachable"],
                           label="sample: no answer"),
                    Line2D([], [], marker="|", ls="", ms=10, color="#000000", label="sample: not ACTIVE")]
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncols=max(1, len(handles)))
    if lagged:
        lag_ax = axes[1][0]
        for i, node in enumerate(names):
            pts = [(s.at - run.t0, s.lag) for s in lagged if s.node == node]
            if pts:
                lag_ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.1, label=node,
                            color=OP_COLOURS[i % len(OP_COLOURS)])
        _shade_faults(lag_ax, run, labels=False)
        lag_ax.set_ylim(bottom=0, top=max(1.0, max(s.lag or 0 for s in lagged) * 1.1))
        lag_ax.set_ylabel("replication lag (writes)")
        lag_ax.grid(True, alpha=0.3)
        lag_ax.legend(fontsize=7, loc="upper right")
    axes[-1][0].set_xlabel("seconds since the start of the run")
    axes[-1][0].set_xlim(0, span)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def draw_all(run: RunData, out: Path, prefix: str = "") -> list[Path]:
    """Every figure of the run, as ``<prefix>latency.png`` ... in ``out``."""
    drawn = [latency(run, out / f"{prefix}latency.png"), throughput(run, out / f"{prefix}throughput.png")]
    node_plot = nodes(run, out / f"{prefix}nodes.png")
    return drawn + ([node_plot] if node_plot else [])
