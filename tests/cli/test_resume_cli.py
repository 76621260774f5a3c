"""``prunecli prune trainer.resume=<run dir>``: the killed run's saved overrides and run dir, a config that
differs from the checkpoint's refused unless ``trainer.resume_override=true``, untrusted saved overrides refused."""

from __future__ import annotations

import json

import pytest
import yaml

import prunecli.engine.loop as loop
from prunecli.commands._resume import resume_command

KILLABLE = ["trainer.checkpoint_every=1", "schedule.frequency=1"]


def _kill_at_step(monkeypatch, n: int) -> None:
    real, calls = loop.optimizer_step, {"n": 0}

    def step(run, phase):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        real(run, phase)

    monkeypatch.setattr(loop, "optimizer_step", step)


@pytest.fixture
def killed(cli, smoke, tmp_path, monkeypatch):
    """A ``sparsity=0.6`` smoke run killed at its 3rd optimizer step (checkpoint of step 2)."""
    out = tmp_path / "killed"
    _kill_at_step(monkeypatch, 3)
    result = cli("prune", *smoke, *KILLABLE, "sparsity=0.6", f"hydra.run.dir={out}")
    assert result.exit_code == 130, result.stderr
    monkeypatch.undo()
    return out


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("where", ["", "checkpoint", "checkpoint/last"])
def test_resume_as_told_continues_the_killed_run_with_its_own_config(cli, killed, where):
    target = killed / where if where else killed
    result = cli("prune", f"trainer.resume={target}")  # what the Ctrl-C message says, nothing else
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["target_sparsity"] == 0.6 and summary["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert summary["run_dir"] == str(killed.resolve()) and summary["steps"] == 4
    assert [row["phase"] for row in _rows(killed)] == ["dense", "prune"]  # one run's metrics.jsonl
    saved = yaml.safe_load((killed / ".hydra" / "overrides.yaml").read_text())
    assert "sparsity=0.6" in saved and f"trainer.resume={target}" in saved


def test_resume_with_another_sparsity_is_refused_unless_overridden(cli, killed):
    refused = cli("prune", f"trainer.resume={killed}", "sparsity=0.5")
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    (line,) = [line for line in refused.error_lines if line.startswith("error:")]
    assert "was saved with another config: schedule.final_sparsity (0.6 -> 0.5), sparsity (0.6 -> 0.5)" in line
    assert line.endswith("pass trainer.resume_override=true")
    saved = (killed / ".hydra" / "overrides.yaml").read_text()
    assert "sparsity=0.6" in saved and "sparsity=0.5" not in saved  # refused before Hydra wrote the run dir
    forced = cli("prune", f"trainer.resume={killed}", "sparsity=0.5", "trainer.resume_override=true")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((killed / "summary.json").read_text())["target_sparsity"] == 0.5


def test_resume_ignores_keys_that_do_not_change_the_result(cli, killed):
    result = cli("prune", f"trainer.resume={killed}", "trainer.progress=false", "trainer.num_workers=0")
    assert result.exit_code == 0, result.stderr


def test_saved_interpolation_is_used_only_when_typed_again(cli, smoke, tmp_path, monkeypatch):
    out, interpolated = tmp_path / "run", "trainer.eval_batch_size=${trainer.batch_size}"
    _kill_at_step(monkeypatch, 3)
    assert cli("prune", *smoke, *KILLABLE, interpolated, f"hydra.run.dir={out}").exit_code == 130
    monkeypatch.undo()
    refused = cli("prune", f"trainer.resume={out}")
    assert refused.exit_code == 2 and len(refused.error_lines) == 1, refused.stderr
    assert interpolated in refused.stderr and "type it on the command line" in refused.stderr
    assert cli("prune", f"trainer.resume={out}", interpolated).exit_code == 0


def test_resume_in_a_sweep_and_a_bad_overrides_file_are_one_line(cli, killed):
    sweep = cli("prune", "-m", f"trainer.resume={killed}")
    assert sweep.exit_code == 2 and sweep.error_lines == [
        f"error: trainer.resume={str(killed)!r} is not allowed: expected a single run "
        "(-m/--multirun sweeps cannot resume a run)"]
    (killed / ".hydra" / "overrides.yaml").write_text("model: mlp\n")
    bad = cli("prune", f"trainer.resume={killed}")
    assert bad.exit_code == 2 and bad.error_lines[-1].endswith("is not a list of overrides (key=value strings)")


def test_resume_command_puts_saved_overrides_before_typed_ones(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=mlp", "sparsity=0.6", "seed=2"]))
    typed = ["--cfg", "job", "seed=5", f"trainer.resume={tmp_path}"]
    assert resume_command(typed) == ["--cfg", "job", "seed=5", "model=mlp", "sparsity=0.6",
                                     f"trainer.resume={tmp_path}", f"hydra.run.dir='{tmp_path.resolve()}'"]
    assert resume_command(["seed=5"]) == ["seed=5"]                                       # no resume: unchanged
    elsewhere = f"trainer.resume={tmp_path / 'other' / 'checkpoint' / 'last'}"  # no .hydra/: nothing to reuse
    assert resume_command([elsewhere]) == [elsewhere]
    explicit = resume_command([f"trainer.resume={tmp_path}", "hydra.run.dir=/tmp/x"])
    assert explicit[-1] == "hydra.run.dir=/tmp/x" and not any("'" in o for o in explicit)


def test_a_saved_target_is_refused_unless_typed_again(tmp_path):
    from prunecli.errors import ConfigError

    (tmp_path / ".hydra").mkdir()
    target = "+model._target_=os.system"
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1", target]))
    with pytest.raises(ConfigError, match="type it on the command line to use it") as err:
        resume_command([f"trainer.resume={tmp_path}"])
    assert target in str(err.value) and "\n" not in str(err.value)
    assert resume_command([f"trainer.resume={tmp_path}", target])[:3] == ["seed=1", f"trainer.resume={tmp_path}",
                                                                          f"hydra.run.dir='{tmp_path.resolve()}'"]


@pytest.mark.parametrize("saved", ["+hydra.callbacks.pw={_target_:builtins.open,_args_:['/tmp/x','w']}",
                                   "model={_target_:shutil.copyfile,src:/etc/passwd,dst:/tmp/x}",
                                   "hydra.searchpath=[file:///tmp]", "hydra/launcher=joblib"])
def test_saved_callbacks_nested_targets_and_hydra_keys_are_refused(tmp_path, saved):
    from prunecli.errors import ConfigError

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1", saved]))
    with pytest.raises(ConfigError, match="type it on the command line to use it"):
        resume_command([f"trainer.resume={tmp_path}"])
