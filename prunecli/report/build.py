"""``prunecli report``: read the runs, draw the figures, write ``report.html``, ``report.md`` and the PNGs.

A single run gets its summary, dense vs pruned metrics, cost (from ``evaluate.json``), per-layer sparsity and
training curves. Several runs (a sweep, or several dirs) get a table of every job, the failed ones with their
error, and Pareto plots of the metric against sparsity, FLOPs and latency (the latter two from the jobs'
``evaluate.json``); a few runs also get their own sections.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Optional

from prunecli.report import plots
from prunecli.report.html import Image, Note, Section, Table, write_html, write_markdown
from prunecli.report.read import Job, Runs, load_runs, varying_overrides
from prunecli.report.schedule import schedule_trace
from prunecli.report.series import curves, layer_sizes

DETAILED_JOBS = 6   # a set of runs this small also gets each run's own sections
_OURS = re.compile(r"^(layers|curves|pareto)[\w.-]*\.png$")
_EVALUATE_HINT = "prunecli evaluate checkpoint=<run dir> hydra.run.dir=<run dir>/evaluate"


def write_report(paths: Iterable[str | Path], out: Optional[str | Path] = None) -> Path:
    """Write the report of ``paths`` into ``out`` (default ``<first path>/report``); returns ``report.html``."""
    runs = load_runs(paths)
    out = Path(out) if out is not None else runs.sources[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):   # figures of an earlier report that this one may not draw again
        if _OURS.match(old.name):
            old.unlink()
    if runs.is_sweep:
        title, sections = sweep_sections(runs, out)
    else:
        job = runs.jobs[0]
        title, sections = f"prunecli report: {_describe(job)}", run_sections(job, out, "")
    write_markdown(title, sections, out / "report.md")
    return write_html(title, sections, out / "report.html")


def run_sections(job: Job, out: Path, suffix: str, heading: str = "") -> list[Section]:
    """The sections of one finished run; ``suffix`` keeps its figures' file names apart from other runs'."""
    s = job.summary or {}
    sections = [Section(f"{heading}Run", [_run_table(job)]), Section(f"{heading}Dense vs pruned", [_metrics_table(s)]),
                Section(f"{heading}Cost", [_cost_block(job)])]
    per_layer = s.get("per_layer") or {}
    layers = Section(f"{heading}Per-layer sparsity")
    if per_layer:
        sizes = layer_sizes(job)
        png = plots.layer_sparsity(per_layer, sizes, out / f"layers{suffix}.png",
                                   f"{_describe(job)}: sparsity {s.get('sparsity', 0):.4f} over {len(per_layer)} "
                                   "layers (model order)")
        layers.blocks += [Image(png, "per-layer sparsity"), _layer_table(per_layer, sizes, s)]
    else:
        layers.blocks.append(Note("No layer was pruned (summary.json lists no per_layer sparsity)."))
    sections.append(layers)
    sections.append(Section(f"{heading}Training curves", [_curves_block(job, out, suffix)]))
    return sections


def sweep_sections(runs: Runs, out: Path) -> tuple[str, list[Section]]:
    """The sections of several runs: every job, failures, Pareto plots, and each run's own when they are few."""
    jobs, ok = runs.jobs, runs.ok
    where = ", ".join(str(p) for p in runs.sources)
    title = f"prunecli report: {len(jobs)} runs ({where})"
    sections = [Section("Jobs", [_jobs_table(jobs)])]
    if runs.failed:
        sections.append(Section(f"Failed jobs ({len(runs.failed)})", [
            Table(["job", "overrides", "error", "dir"],
                  [[j.label, " ".join(j.overrides), j.error or "", str(j.path)] for j in runs.failed])]))
    sections.append(Section("Pareto plots", _pareto_blocks(ok, out)))
    if 0 < len(ok) <= DETAILED_JOBS:
        for job in ok:
            sections += run_sections(job, out, f"_{_slug(job.label)}", heading=f"{job.label}: ")
    return title, sections


def _pareto_blocks(ok: list[Job], out: Path) -> list[Any]:
    if not ok:
        return [Note("No job finished: nothing to plot.")]
    metric = ok[0].metric
    jobs = [j for j in ok if _finite(j.value(metric))]
    blocks: list[Any] = []
    axes = [("sparsity", "sparsity", True, lambda j: j.value("sparsity"), False),
            ("flops", "FLOPs per sample (zeros skipped)", False, _flops, True),
            ("latency", "latency, median ms", False, lambda j: j.value("latency_ms_median"), True)]
    for name, label, higher, x_of, log_x in axes:
        have = [j for j in jobs if _finite(x_of(j))]
        if not have:
            blocks.append(Note(f"No {label} vs {metric} plot: no job has an evaluate.json (run {_EVALUATE_HINT})."))
            continue
        png = plots.pareto(have, x_of, label, higher, metric, out / f"pareto_{name}.png",
                           f"{metric} vs {label}: {len(have)} runs", log_x=log_x)
        blocks.append(Image(png, f"{metric} vs {label}"))
        if len(have) < len(jobs):
            blocks.append(Note(f"{len(jobs) - len(have)} finished run(s) have no {label} (no evaluate.json)."))
    return blocks


def _finite(value: Any) -> bool:
    """A number that can be plotted (a diverged run's perplexity is inf; a missing value None)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flops(job: Job) -> Any:
    value = job.value("flops_effective")
    return value if value is not None else job.value("flops")


def _describe(job: Job) -> str:
    s = job.summary or {}
    return f"{s.get('model', '?')} on {s.get('dataset', '?')}, pruner {s.get('pruner', '?')}"


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "run"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _run_table(job: Job) -> Table:
    s = job.summary or {}
    rows = [[key, _fmt(s.get(key))] for key in ("model", "dataset", "pruner", "schedule", "objective",
                                                  "target_sparsity", "sparsity", "unit_sparsity", "steps")]
    rows += [["params non-zero / total", f"{_fmt(s.get('params_nonzero'))} / {_fmt(s.get('params_total'))}"],
             ["wall time", f"{_fmt(s.get('wall_seconds'), 1)} s"], ["overrides", " ".join(job.overrides)],
             ["run dir", str(job.path)]]
    return Table(["summary.json", ""], [r for r in rows if r[1]])


def _metrics_table(s: dict[str, Any]) -> Table:
    """Each metric the summary has both dense (``dense_<name>``) and pruned."""
    rows = []
    for key, dense in s.items():
        name = key[len("dense_"):]
        if key.startswith("dense_") and isinstance(dense, (int, float)) and isinstance(s.get(name), (int, float)):
            rows.append([name, _fmt(float(dense)), _fmt(float(s[name])), f"{s[name] - dense:+.4f}"])
    return Table(["metric", "dense", "pruned", "change"], rows)


def _cost_block(job: Job) -> Any:
    e = job.evaluate
    if e is None:
        return Note(f"No evaluate.json for this run: for params, FLOPs and latency run {_EVALUATE_HINT}.")
    rows = [["params non-zero / total", f"{_fmt(e.get('params_nonzero'))} / {_fmt(e.get('params_total'))}"],
            ["FLOPs per sample, dense / zeros skipped", f"{_fmt(e.get('flops'))} / {_fmt(e.get('flops_effective'))}"],
            ["latency median (IQR), ms", f"{_fmt(e.get('latency_ms_median'), 3)} ({_fmt(e.get('latency_ms_iqr'), 3)})"],
            ["latency batch, repeats, device",
             f"{_fmt(e.get('latency_batch_size'))}, {_fmt(e.get('latency_repeats'))}, {e.get('device', '')}"],
            ["checkpoint", str(e.get("checkpoint", ""))]]
    return Table(["evaluate.json", ""], rows)


def _layer_table(per_layer: dict[str, float], sizes: dict[str, int], s: dict[str, Any]) -> Table:
    kinds = s.get("per_layer_kind") or {}
    return Table(["layer", "params", "pruned", "kind"],
                 [[name, _fmt(sizes.get(name)), f"{value:.4f}", str(kinds.get(name, ""))]
                  for name, value in per_layer.items()])


def _curves_block(job: Job, out: Path, suffix: str) -> Any:
    c = curves(job.metrics())
    if not any(row.get("phase") in ("pretrain", "prune") for row in c.rows):
        steps = (job.summary or {}).get("steps")
        return Note(f"No training curves: the run evaluated its model before and after pruning only "
                    f"({_fmt(steps)} training steps; a one-shot preset, or trainer.epochs=0).")
    s = job.summary or {}
    metric = job.metric
    trace = schedule_trace(job, c.prune_start)
    png = plots.training_curves(c, trace, metric, s.get(f"dense_{metric}"), out / f"curves{suffix}.png",
                                f"{_describe(job)}: schedule {s.get('schedule', '?')}")
    return Image(png, "training curves")


def _jobs_table(jobs: list[Job]) -> Table:
    shown = varying_overrides(jobs)
    metrics = [m for m in ("accuracy", "perplexity") if any(j.ok and j.metric == m for j in jobs)]
    header = ["job", "overrides", "pruner", *[f"dense {m}" for m in metrics], *metrics, "sparsity",
              "params non-zero", "FLOPs (zeros skipped)", "latency ms", "wall s", "status"]
    rows, failed = [], set()
    for i, job in enumerate(jobs):
        if not job.ok:
            failed.add(i)
            rows.append([job.label, shown[job.label], *[""] * (len(header) - 4), "", job.error or "failed"])
            continue
        s = job.summary or {}
        rows.append([job.label, shown[job.label], str(s.get("pruner", "")),
                     *[_fmt(s.get(f"dense_{m}")) for m in metrics], *[_fmt(s.get(m)) for m in metrics],
                     _fmt(s.get("sparsity")), _fmt(s.get("params_nonzero")), _fmt(_flops(job)),
                     _fmt(job.value("latency_ms_median"), 3), _fmt(s.get("wall_seconds"), 1), "ok"])
    return Table(header, rows, failed)
