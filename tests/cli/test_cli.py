"""The prunecli command end to end, in process: prune, Hydra's own flags, sweeps, help, completion."""

from __future__ import annotations

import json
import os

import pytest


def test_prune_smoke_writes_summary_checkpoint_and_metrics(prune_run):
    out, summary = prune_run("sparsity=0.5", "schedule=oneshot")
    assert summary["sparsity"] == pytest.approx(0.5, abs=0.01)
    for key in ("dense_accuracy", "accuracy", "params_total", "params_nonzero", "per_layer", "wall_seconds"):
        assert key in summary
    assert 0.0 <= summary["accuracy"] <= 1.0 and 0.0 <= summary["dense_accuracy"] <= 1.0
    assert summary["params_nonzero"] < summary["params_total"]
    assert summary["steps"] == 4
    assert all(0.0 <= s <= 1.0 for s in summary["per_layer"].values())
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / "prune.log").is_file()
    for name in ("last", "best"):
        assert {p.name for p in (out / "checkpoint" / name).iterdir()} == {
            "model.safetensors", "masks.safetensors", "state.safetensors", "meta.json"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["dense", "prune"]
    assert rows[-1]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_default_recipe_prunes_digits_cnn_accurately(cli, tmp_path):
    """The defaults (digits, cnn, agp to 0.9, dense pre-training) reach a meaningful accuracy."""
    out = tmp_path / "default"
    result = cli("prune", "trainer.progress=false", f"hydra.run.dir={out}")  # nothing shrunk: the real default
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dense_accuracy"] > 0.97
    assert summary["accuracy"] > 0.97
    assert summary["sparsity"] == pytest.approx(0.9, abs=0.005)


def test_cfg_job_prints_composed_config_without_running(cli, tmp_path):
    result = cli("prune", "--cfg", "job", "pruner=l1_norm", "sparsity=0.3", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, result.stderr
    assert "sparsity: 0.3" in result.stdout and "pruner:" in result.stdout and "trainer:" in result.stdout
    assert not (tmp_path / "x").exists()


def test_schedule_comes_from_the_pruner_preset_unless_overridden(cli):
    agp = cli("prune", "--cfg", "job", "--resolve", "pruner=agp")
    assert "name: agp" in agp.stdout.split("schedule:")[1].split("pruner:")[0]
    linear = cli("prune", "--cfg", "job", "--resolve", "pruner=agp", "schedule=linear")
    assert "name: linear" in linear.stdout.split("schedule:")[1].split("pruner:")[0]


def test_multirun_writes_one_summary_per_job(cli, smoke, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("prune", "-m", *smoke, "sparsity=0.3,0.6", f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2
    got = sorted(json.loads(p.read_text())["target_sparsity"] for p in summaries)
    assert got == [0.3, 0.6]
    assert (sweep / "multirun.yaml").is_file()


@pytest.mark.slow
def test_multirun_with_joblib_launcher(cli, smoke, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("prune", "-m", *smoke, "sparsity=0.3,0.6", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(list(sweep.glob("*/summary.json"))) == 2


def test_help_lists_config_groups_and_their_options(cli):
    result = cli("prune", "--help")
    assert result.exit_code == 0
    for group in ("model", "dataset", "pruner", "schedule", "trainer", "experiment"):
        assert group in result.stdout
    for option in ("cnn", "digits", "agp", "oneshot", "smoke", "l1_norm"):
        assert option in result.stdout
    evaluate = cli("evaluate", "--help")
    assert "dataset" in evaluate.stdout and "pruner" not in evaluate.stdout and "joblib" in evaluate.stdout
    top = cli("--help")
    assert all(cmd in top.stdout for cmd in ("prune", "evaluate", "export"))


def test_top_level_help_does_not_import_torch_or_hydra():
    import subprocess
    import sys

    code = "import sys; from prunecli.cli import app; print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_tab_completion_of_overrides_comes_from_hydra(tmp_path):
    from typer.testing import CliRunner

    from prunecli.cli import app

    env = {"_PRUNECLI_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "prunecli prune pruner=l"}
    result = CliRunner().invoke(app, [], env=env, prog_name="prunecli")
    assert "pruner=l1_norm" in result.stdout and "pruner=level" in result.stdout
    env["_TYPER_COMPLETE_ARGS"] = "prunecli prune trainer.ep"
    result = CliRunner().invoke(app, [], env=env, prog_name="prunecli")
    assert "trainer.epochs=" in result.stdout


def test_show_completion_script_names_the_command(cli, monkeypatch):
    import typer.completion
    from typer.testing import CliRunner

    from prunecli.cli import app

    # Typer finds the shell from the process tree (shellingham), which fails when pytest runs detached from
    # any shell (a background job whose parent exited): pin the detected shell, that is not what is tested.
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    result = CliRunner().invoke(app, ["--show-completion"], prog_name="prunecli",
                                env={"SHELL": os.environ.get("SHELL", "/bin/bash")})
    assert result.exit_code == 0
    assert "_PRUNECLI_COMPLETE" in result.stdout
