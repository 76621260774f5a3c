"""One failing job does not end a sweep: every job runs, each failure is written to its job dir's error.txt,
the sweep ends with a list of the failed jobs and exit code 2 (user errors only) or 1 (anything else)."""

from __future__ import annotations

import json

import pytest

import prunecli.commands.prune as prune_task
from prunecli.commands._sweep import failed_jobs

BAD = "error: sparsity=1.5 is not allowed: expected a number in [0, 1)"


def _sweep(cli, smoke, sweep, values, *extra):
    return cli("prune", "-m", *smoke, f"sparsity={values}", f"hydra.sweep.dir={sweep}", *extra)


def test_a_bad_first_job_does_not_stop_the_basic_launcher(cli, smoke, tmp_path):
    sweep = tmp_path / "sweep"
    result = _sweep(cli, smoke, sweep, "1.5,0.5")
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert (sweep / "0" / "error.txt").read_text() == BAD + "\n"
    assert json.loads((sweep / "1" / "summary.json").read_text())["target_sparsity"] == 0.5
    assert result.error_lines[-2:] == ["error: 1 job(s) of the sweep failed (see error.txt in each job dir):",
                                       f"job 0 (sparsity=1.5): {BAD}"]


@pytest.mark.slow
def test_joblib_keeps_the_good_job_and_reports_the_bad_one(cli, smoke, tmp_path):
    sweep = tmp_path / "sweep"
    result = _sweep(cli, smoke, sweep, "0.5,1.5", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert json.loads((sweep / "0" / "summary.json").read_text())["target_sparsity"] == 0.5
    assert (sweep / "1" / "error.txt").read_text() == BAD + "\n"
    assert result.error_lines[-1] == f"job 1 (sparsity=1.5): {BAD}"


def test_an_unexpected_error_is_written_with_its_traceback_and_exits_1(cli, smoke, tmp_path, monkeypatch):
    real = prune_task.check_sparsity

    def check(value):
        if value == 0.3:
            raise RuntimeError("boom")
        return real(value)

    monkeypatch.setattr(prune_task, "check_sparsity", check)
    sweep = tmp_path / "sweep"
    result = _sweep(cli, smoke, sweep, "0.3,1.5,0.5")
    assert result.exit_code == 1, (result.stderr, result.exception)
    text = (sweep / "0" / "error.txt").read_text()
    assert text.startswith("error: RuntimeError: boom\nTraceback (most recent call last):")
    assert 'raise RuntimeError("boom")' in text
    assert (sweep / "2" / "summary.json").is_file()
    assert result.error_lines[-2:] == ["job 0 (sparsity=0.3): error: RuntimeError: boom",
                                       f"job 1 (sparsity=1.5): {BAD}"]
    assert [(f.num, f.user_error) for f in failed_jobs(sweep, ["sparsity=0.3,1.5,0.5"])] == [(0, False), (1, True)]
    # a later sweep into the same dir, all good: the old error.txt files are gone or not reported
    monkeypatch.undo()
    again = _sweep(cli, smoke, sweep, "0.3,0.5")
    assert again.exit_code == 0, again.stderr
    assert not (sweep / "0" / "error.txt").exists()
