"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no GUI, no global
state): per-layer sparsity, training curves with the sparsity schedule, and Pareto plots of a sweep.

matplotlib is an optional extra (``pip install 'prunecli[report]'``): :func:`missing_extra` says so in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from prunecli.report.read import Job
from prunecli.report.series import Curves, ScheduleTrace, pareto_front

MISSING = "prunecli report needs matplotlib: pip install 'prunecli[report]'"
DPI = 100
_SPARSITY_COLOR = "tab:gray"
_LABELLED_LAYERS = 80   # more layers than this: every k-th one is labelled


def missing_extra() -> Optional[str]:
    """The one-line error when matplotlib is not installed, else None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI)
    return path


def layer_sparsity(per_layer: dict[str, float], sizes: dict[str, int], path: Path, title: str) -> Path:
    """Horizontal bars, one per pruned layer in model order (top to bottom), labelled with its parameter count;
    the kept share of each bar is drawn light so a bar's length is the layer's size in the overall picture."""
    names = list(per_layer)
    n = len(names)
    fig = _figure(8.0, min(2.0 + 0.24 * n, 60.0))
    ax = fig.add_subplot()
    ys = list(range(n))
    values = [per_layer[name] for name in names]
    ax.barh(ys, [1.0] * n, color="#e8eef6", height=0.8)
    ax.barh(ys, values, color="tab:blue", height=0.8, label="pruned")
    step = max(1, -(-n // _LABELLED_LAYERS))
    ax.set_yticks(ys[::step], [_layer_label(names[i], sizes.get(names[i])) for i in ys[::step]],
                  fontsize=8 if n < 40 else 6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the layer's weights pruned")
    for y, v in zip(ys, values):
        if n <= _LABELLED_LAYERS:
            inside = v > 0.85   # no room right of the bar: white, inside its end
            ax.text(v - 0.01 if inside else v + 0.01, y, f"{v:.1%}", va="center", ha="right" if inside else "left",
                    fontsize=7, color="white" if inside else "black")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _layer_label(name: str, size: Optional[int]) -> str:
    return f"{name} ({_count(size)})" if size else name


def _count(n: Optional[float]) -> str:
    """``53.1k``, ``1.2M``, ``3.4G``."""
    if n is None:
        return "?"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def training_curves(c: Curves, trace: Optional[ScheduleTrace], metric: str, dense: Optional[float], path: Path,
                    title: str) -> Path:
    """Two panels on one step axis: loss (validation and training), then the metric; the sparsity (the schedule's
    target, and the sparsity measured at each evaluation) on a twin axis of each, mask updates as dots on the
    schedule, dense pre-training shaded."""
    fig = _figure(10.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for ax, keys, label in ((top, ("loss", "train_loss"), "loss"),
                            (bottom, (metric, f"train_{metric}"), metric)):
        for key, style, phases in zip(keys, ("o-", "s--"), ({"dense", "pretrain", "prune"}, {"pretrain", "prune"})):
            xs, ys = c.series(key, phases)   # validation starts at the dense model's evaluation
            if xs:
                ax.plot(xs, ys, style, ms=4, lw=1.5, label=key.replace("_", " ") if "train" in key else "validation")
        ax.set_ylabel(label)
        if c.pretrain_end > 0:
            ax.axvspan(0, c.pretrain_end, color="#f3f3f3", zorder=0, label="dense pre-training")
        if ax is bottom and dense is not None:
            ax.axhline(dense, color="tab:green", ls=":", lw=1.2, label=f"dense {metric} {dense:.4g}")
        twin = _sparsity_axis(ax, c, trace)
        handles = [h for a in (ax, twin) for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.1, 1.0))  # outside: no overlap
        ax.grid(alpha=0.3)
    if metric == "perplexity":
        bottom.set_yscale("log")
    bottom.set_xlabel("optimizer step")
    top.set_title(title, fontsize=10)
    return _save(fig, path)


def _sparsity_axis(ax: Any, c: Curves, trace: Optional[ScheduleTrace]) -> Any:
    """A twin axis of ``ax`` with the schedule's target sparsity, its mask updates and the measured sparsity."""
    twin = ax.twinx()
    if trace is not None:
        twin.plot(trace.steps, trace.sparsity, drawstyle="steps-post", color=_SPARSITY_COLOR, lw=1, alpha=0.8,
                  label="scheduled sparsity")
        twin.plot(trace.updates, trace.update_sparsity, "|", color="tab:red", ms=8, mew=1,
                  label=f"mask updates ({len(trace.updates)})")
    xs, ys = c.series("sparsity", {"pretrain", "prune"})
    if xs:
        twin.plot(xs, ys, "D", color=_SPARSITY_COLOR, ms=3, label="sparsity")
    twin.set_ylim(0, 1)
    twin.set_ylabel("sparsity", color=_SPARSITY_COLOR)
    twin.tick_params(axis="y", colors=_SPARSITY_COLOR)
    return twin


def pareto(jobs: Sequence[Job], x_of: Any, x_label: str, x_higher: bool, metric: str, path: Path,
           title: str, log_x: bool = False) -> Path:
    """The metric of every job against ``x_of(job)``, one series per preset, the Pareto front over all of them
    drawn as a line through ringed points."""
    higher = metric != "perplexity"
    points = [(float(x_of(j)), float(j.value(metric))) for j in jobs]
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    presets: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        presets.setdefault(str((job.summary or {}).get("pruner") or "?"), []).append(i)
    for name, idx in sorted(presets.items()):
        ax.plot([points[i][0] for i in idx], [points[i][1] for i in idx], "o", ms=6, alpha=0.85, label=name)
    front = pareto_front(points, x_higher, higher)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "-", color="black", lw=1, alpha=0.6,
            label="Pareto front")
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "o", ms=11, mfc="none", mec="black")
    if log_x:
        ax.set_xscale("log")
    if metric == "perplexity":
        ax.set_yscale("log")
    better = ("higher" if x_higher else "lower") + " is better"
    ax.set_xlabel(f"{x_label} ({better})")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
