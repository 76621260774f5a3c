"""The end of a sweep (``-m``): which jobs failed, read from their job dirs.

A failed job leaves ``error.txt`` in its job dir (:func:`prunecli.commands._common.task`): the ``error:`` line,
then the traceback when the exception was not a user error. Jobs may run in other processes (joblib), so the
files are the record; ``.hydra/hydra.yaml`` beside each gives the job number and its overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ERROR_FILE = "error.txt"
TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Failure:
    """One failed job: its number, the overrides that set it apart, its error line, and whether it was a
    user error (no traceback)."""

    num: int
    overrides: str
    error: str
    user_error: bool


def failed_jobs(sweep_dir: Path, sweep_overrides: list[str], since: float = 0.0) -> list[Failure]:
    """The failures under ``sweep_dir`` written since ``since`` (a time stamp), by job number.

    ``sweep_overrides`` (the sweep's command line, ``sparsity=0.5,1.5``) tell the keys every job shares, left
    out of each job's overrides so a job shows what sets it apart: ``sparsity=1.5``.
    """
    shared = {key for key, swept in _keys(sweep_overrides) if not swept}
    failures = []
    for path in sorted(sweep_dir.rglob(ERROR_FILE)):
        if path.stat().st_mtime < since:
            continue
        text = path.read_text(errors="replace")
        num, overrides = _job(path.parent)
        shown = [o for o, (key, _) in zip(overrides, _keys(overrides)) if key not in shared] or overrides
        first = text.splitlines()[0] if text.strip() else "error: (empty error.txt)"
        failures.append(Failure(num, " ".join(shown), first, TRACEBACK not in text))
    return sorted(failures, key=lambda f: f.num)


def report(failures: list[Failure]) -> str:
    """Lines for stderr: ``job 1 (sparsity=1.5): error: ...``, one per failed job."""
    lines = [f"error: {len(failures)} job(s) of the sweep failed (see error.txt in each job dir):"]
    lines += [f"job {f.num} ({f.overrides}): {f.error}" for f in failures]
    return "\n".join(lines)


def _job(job_dir: Path) -> tuple[int, list[str]]:
    """Job number and task overrides from ``<job dir>/.hydra/hydra.yaml``; ``(-1, [dir name])`` without it."""
    import yaml

    try:
        hydra = (yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text()) or {})["hydra"]
        num, overrides = int(hydra["job"]["num"]), [str(o) for o in hydra["overrides"]["task"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return -1, [job_dir.name]
    return num, overrides


def _keys(overrides: list[str]) -> list[tuple[str, bool]]:
    """``(key, is a sweep)`` of each override, as Hydra parses it (the text before ``=`` if it does not parse)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, out = OverridesParser.create(), []
    for word in overrides:
        try:
            parsed = parser.parse_override(word)
            out.append((parsed.get_key_element(), parsed.is_sweep_override()))
        except Exception:  # noqa: BLE001  only for display
            out.append((word.partition("=")[0], False))
    return out
