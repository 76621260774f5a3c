"""Run dirs and sweeps read back for a report: what ``prunecli prune`` (and ``prunecli evaluate``) left on disk.

A run dir holds ``summary.json`` (the final numbers), ``metrics.jsonl`` (one line per evaluation: ``dense``, then
one per epoch of ``pretrain`` and ``prune``), ``.hydra/overrides.yaml`` and ``checkpoint/last/meta.json`` (the
resolved config). A multirun dir holds one such dir per job (``0``, ``1`` ...); a job that failed holds
``error.txt`` instead of ``summary.json`` (:mod:`prunecli.commands._sweep`). ``evaluate.json`` (params, FLOPs,
latency) is read from the run dir or a dir inside it (``prunecli evaluate checkpoint=<run>
hydra.run.dir=<run>/evaluate``), or from an evaluate run dir given beside the runs, matched by its checkpoint.

Only JSON and YAML are read here (no torch), so a sweep of hundreds of jobs reads in well under a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from prunecli.errors import ConfigError

SUMMARY, METRICS, EVALUATE, ERROR = "summary.json", "metrics.jsonl", "evaluate.json", "error.txt"
_INPUT = "a prune run dir (summary.json), a multirun dir (job dirs 0, 1, ...) or an evaluate run dir"


@dataclass
class Job:
    """One run (or one job of a sweep): its numbers, or the error it failed with.

    Attributes:
        path: The run dir.
        label: How tables name it: the job number in a sweep, else the dir name.
        overrides: Its command line (``.hydra/overrides.yaml``).
        summary: ``summary.json``, or None when the job failed.
        error: The first line of ``error.txt`` (or why there is no summary), or None.
        evaluate: ``evaluate.json`` of its checkpoint, when one was found.
    """

    path: Path
    label: str
    overrides: list[str] = field(default_factory=list)
    summary: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    evaluate: Optional[dict[str, Any]] = None
    sweep: Optional[Path] = None

    @property
    def ok(self) -> bool:
        return self.summary is not None

    @property
    def metric(self) -> str:
        """The task's headline metric: ``perplexity`` for a language model, else ``accuracy``."""
        return "perplexity" if self.summary is not None and "perplexity" in self.summary else "accuracy"

    def value(self, key: str) -> Any:
        """``key`` of the summary, else of ``evaluate.json`` (``flops``, ``latency_ms`` ...), else None."""
        if self.summary is not None and self.summary.get(key) is not None:
            return self.summary[key]
        return (self.evaluate or {}).get(key)

    def metrics(self) -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl`` (read on demand: a sweep's table does not need them)."""
        return read_jsonl(self.path / METRICS)

    @property
    def checkpoint(self) -> Path:
        """``checkpoint/last`` in the run dir (where it is now, if the dir was moved), else where the summary
        says it was written."""
        here = self.path / "checkpoint" / "last"
        return here if here.is_dir() else Path((self.summary or {}).get("checkpoint") or here)

    def meta_config(self) -> dict[str, Any]:
        """The resolved config the checkpoint keeps (``checkpoint/last/meta.json``), or ``{}``."""
        meta = _read_json(self.checkpoint / "meta.json") if (self.checkpoint / "meta.json").is_file() else None
        return (meta or {}).get("config") or {}


@dataclass
class Runs:
    """What was given to ``prunecli report``: the jobs in order, and whether they form a sweep (several jobs)."""

    jobs: list[Job]
    sources: list[Path]

    @property
    def is_sweep(self) -> bool:
        return len(self.jobs) > 1 or any(job.sweep is not None for job in self.jobs)

    @property
    def ok(self) -> list[Job]:
        return [job for job in self.jobs if job.ok]

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if not job.ok]


def load_runs(paths: Iterable[str | Path]) -> Runs:
    """Read every path (a run dir, a multirun dir, an evaluate run dir); a path that is none of them, or a sweep
    with no job, is a :class:`ConfigError` naming it."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("report", None, _INPUT, "no dir given")
    jobs: list[Job] = []
    evaluations: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise ConfigError("report", str(path), _INPUT, "no such file or dir")
        if not path.is_dir():
            raise ConfigError("report", str(path), _INPUT, "not a dir")
        if (path / SUMMARY).is_file():
            jobs.append(read_job(path, path.name))
        elif (path / EVALUATE).is_file():   # an evaluate run dir (its own .hydra too, but no summary)
            evaluations.append(_read_json(path / EVALUATE) or {})
        else:
            jobs.extend(read_sweep(path))
    if not jobs:
        raise ConfigError("report", str(paths[0]), "at least one prune run beside the evaluate run dirs")
    _attach_evaluations(jobs, evaluations)
    _unique_labels(jobs, several=len(paths) > 1)
    return Runs(jobs, paths)


def _unique_labels(jobs: list[Job], several: bool) -> None:
    """Jobs of several sweeps are named ``<sweep dir>/<number>``; a name that still repeats gets ``#2``, ``#3``."""
    seen: dict[str, int] = {}
    for job in jobs:
        if several and job.sweep is not None:
            job.label = f"{job.sweep.name}/{job.label}"
        seen[job.label] = seen.get(job.label, 0) + 1
        if seen[job.label] > 1:
            job.label = f"{job.label}#{seen[job.label]}"


def read_sweep(path: Path) -> list[Job]:
    """The jobs of a multirun dir, by job number; failed jobs carry their error line."""
    children = [c for c in path.iterdir() if c.is_dir() and is_job_dir(c)]
    if not children:
        if is_job_dir(path):   # a single run that never wrote its summary
            raise ConfigError("report", str(path), "a finished run",
                              f"no {SUMMARY}: the run failed or is still running (see its prune.log)")
        if (path / "multirun.yaml").is_file():
            raise ConfigError("report", str(path), "a sweep with at least one job dir", "the sweep is empty")
        raise ConfigError("report", str(path), _INPUT, f"neither {SUMMARY} nor job dirs in it")
    children.sort(key=lambda c: (not c.name.isdigit(), int(c.name) if c.name.isdigit() else 0, c.name))
    return [read_job(c, c.name, sweep=path) for c in children]


def is_job_dir(path: Path) -> bool:
    """Whether ``path`` is a prune run (or job) dir, finished or not."""
    return (path / SUMMARY).is_file() or (path / ERROR).is_file() or (path / ".hydra" / "overrides.yaml").is_file()


def read_job(path: Path, label: str, sweep: Optional[Path] = None) -> Job:
    """One run or job dir: summary, overrides, evaluate.json; the error of a failed job."""
    job = Job(path=path, label=label, overrides=_overrides(path), sweep=sweep)
    summary = _read_json(path / SUMMARY) if (path / SUMMARY).is_file() else None
    if isinstance(summary, dict):
        job.summary = summary
    elif (path / ERROR).is_file():
        text = (path / ERROR).read_text(errors="replace").strip()
        job.error = text.splitlines()[0] if text else "error: (empty error.txt)"
    elif summary is not None or (path / SUMMARY).is_file():
        job.error = f"error: {SUMMARY} is not a JSON object"
    else:
        job.error = f"error: no {SUMMARY} and no {ERROR} (killed, or still running)"
    job.evaluate = _find_evaluate(path)
    return job


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (a torn last line of a killed run is skipped); [] without the file."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def varying_overrides(jobs: list[Job]) -> dict[str, str]:
    """Job label -> the overrides that set it apart from the other jobs (all of them for a single job)."""
    keyed = [{o.partition("=")[0]: o for o in job.overrides} for job in jobs]
    keys = {k for d in keyed for k in d}
    varying = {k for k in keys if len({d.get(k) for d in keyed}) > 1} if len(jobs) > 1 else keys
    return {job.label: " ".join(o for k, o in d.items() if k in varying) for job, d in zip(jobs, keyed)}


def _overrides(path: Path) -> list[str]:
    import yaml

    file = path / ".hydra" / "overrides.yaml"
    try:
        data = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def _find_evaluate(path: Path) -> Optional[dict[str, Any]]:
    """``evaluate.json`` in the run dir or a dir directly inside it (the newest when there are several)."""
    found = [p for p in [path / EVALUATE, *path.glob(f"*/{EVALUATE}")] if p.is_file()]
    for file in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        data = _read_json(file)
        if isinstance(data, dict):
            return data
    return None


def _attach_evaluations(jobs: list[Job], evaluations: list[dict[str, Any]]) -> None:
    """Give each job without its own ``evaluate.json`` the one whose checkpoint is in its run dir."""
    by_run: dict[Path, dict[str, Any]] = {}
    for data in evaluations:
        ckpt = Path(str(data.get("checkpoint") or ""))
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoint" else ckpt
        by_run[run.resolve()] = data
    for job in jobs:
        if job.evaluate is None:
            job.evaluate = by_run.get(job.path.resolve())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
