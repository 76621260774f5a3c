"""Sweeps through Hydra plugins: a two-job sweep through submitit's local executor (the Slurm launcher's path on
this machine), and a searched Optuna sweep whose best value is a job's summary metric (``optimize``)."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.mark.slow  # two fresh Python processes (like the joblib sweep test); CI runs slow tests too
def test_submitit_local_runs_a_two_job_sweep(cli, smoke, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = cli("prune", "-m", *smoke, "sparsity=0.5,0.7", "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    summaries = [json.loads((sweep / str(n) / "summary.json").read_text()) for n in (0, 1)]
    assert [s["target_sparsity"] for s in summaries] == [0.5, 0.7]
    assert [round(s["sparsity"], 2) for s in summaries] == [0.5, 0.7]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # each job ran in a submitit process


def test_optuna_sweep_optimises_the_summary_metric(cli, smoke, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    result = cli("prune", "-m", *smoke, "hydra/sweeper=optuna_digits", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    summaries = [json.loads((sweep / str(n) / "summary.json").read_text()) for n in range(2)]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(s["accuracy"] for s in summaries)
    winner = next(s for s in summaries if s["accuracy"] == best["best_value"])
    assert best["best_params"]["pruner"] == winner["pruner"]
    assert best["best_params"]["sparsity"] == pytest.approx(winner["target_sparsity"])
    assert all(0.9 <= s["target_sparsity"] <= 0.97 for s in summaries)  # the constraint is the search space


def test_an_unknown_optimize_metric_is_one_line(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "optimize=acc", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and result.exception is None
    assert result.error_lines[-1].startswith("error: optimize='acc' is not allowed: expected one of accuracy, loss, ")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_searched_sweep_without_optimize_is_one_line(cli, smoke, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = cli("prune", "-m", *smoke, "hydra/sweeper=optuna", "sparsity=interval(0.5,0.6)",
                 "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.exit_code == 2 and result.exception is None
    assert result.error_lines == ["error: optimize=None is not allowed: expected a summary metric, e.g. "
                                  "optimize=accuracy (the sweeper OptunaSweeper optimises the number the task "
                                  "returns)"]
    assert not (tmp_path / "sweep").exists()


def test_objective_returns_one_float_or_a_list():
    from prunecli.commands.prune import objective
    from prunecli.errors import ConfigError

    summary = {"accuracy": 0.5, "sparsity": 0.9, "best_accuracy": None}
    assert objective(summary, "accuracy") == 0.5
    assert objective(summary, ["accuracy", "sparsity"]) == [0.5, 0.9]
    with pytest.raises(ConfigError, match="best_accuracy"):
        objective(summary, "best_accuracy")
