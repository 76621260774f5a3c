"""Bad input ends with one ``error:`` line on stderr (after any progress lines) and a non-zero exit code,
never a traceback."""

from __future__ import annotations

import pytest


def _assert_one_line(result, *fragments: str, code: int = 2) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and result.error_lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("sparsity=1.5", ("sparsity=1.5", "[0, 1)")),
        ("trainer.epochs=-1", ("trainer.epochs=-1", "integer >= 0")),
        ("trainer.batch_size=0", ("trainer.batch_size=0", "integer >= 1")),
        ("trainer.precision=fp8", ("trainer.precision='fp8'", "fp16")),
        ("trainer.device=tpu", ("trainer.device='tpu'", "cuda")),
        ("model.name=not_a_model", ("not_a_model",)),
        ("pruner.criterion=bogus", ("bogus",)),
        ("trainer.optimizer.lr=-1", ("trainer.optimizer.lr=-1", "finite number >= 0")),
        ("dataset=mnist", ("dataset.root=",)),
    ],
)
def test_bad_values_are_one_line(cli, smoke, tmp_path, override, fragments):
    _assert_one_line(cli("prune", *smoke, override, f"hydra.run.dir={tmp_path}"), *fragments)


def test_unknown_group_option_is_hydras_short_error(cli, tmp_path):
    result = cli("prune", "model=not_a_model", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 1 and result.exception is None
    assert "Could not find 'model/not_a_model'" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_override_is_hydras_short_error(cli):
    result = cli("prune", "trainer.epochs=[")
    assert result.exit_code == 1 and result.exception is None
    assert "Traceback" not in result.stderr and "override" in result.stderr.lower()


def test_missing_checkpoint_is_one_line(cli, tmp_path):
    _assert_one_line(cli("evaluate", f"checkpoint={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'e'}"),
                     "does not exist")
    _assert_one_line(cli("export", f"hydra.run.dir={tmp_path / 'x'}"), "checkpoint=None")


def test_unwritable_output_is_one_line(cli, smoke_checkpoint, tmp_path):
    result = cli("export", f"checkpoint={smoke_checkpoint}", "output=/proc/prunecli/model.onnx", "format=onnx",
                 f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, "output='/proc/prunecli/model.onnx'", "writable")


def test_unknown_export_format_is_one_line(cli, smoke_checkpoint, tmp_path):
    result = cli("export", f"checkpoint={smoke_checkpoint}", "format=tflite", f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, "format='tflite'", "dense", "onnx")


def test_evaluate_on_a_dataset_that_does_not_fit_is_one_line(cli, smoke_checkpoint, tmp_path):
    result = cli("evaluate", f"checkpoint={smoke_checkpoint}", "dataset=fake", "dataset.in_channels=3",
                 f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, "dataset=", "in_channels=1")


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_run_dir_that_cannot_be_created_is_one_line(cli, key):
    args = ["prune", "-m", f"{key}=/proc/prunecli"] if key == "hydra.sweep.dir" else ["prune", f"{key}=/proc/prunecli"]
    _assert_one_line(cli(*args), f"{key}='/proc/prunecli'", "can be created")


@pytest.mark.parametrize("device", ["xpu", "no_such_device"])
def test_unavailable_evaluate_device_is_one_line(cli, smoke_checkpoint, tmp_path, device):
    result = cli("evaluate", f"checkpoint={smoke_checkpoint}", f"device={device}", f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, f"device='{device}'")


def test_home_in_a_path_value_reaches_the_path_setting(cli, smoke, tmp_path, monkeypatch):
    # Hydra's grammar has no unquoted `~` in a value; the CLI quotes `key=~/...` so the path setting expands it.
    monkeypatch.setenv("HOME", str(tmp_path))
    result = cli("prune", *smoke, "dataset=cifar10", "dataset.root=~/no_data", f"hydra.run.dir={tmp_path / 'r'}")
    _assert_one_line(result, "dataset.root='~/no_data'", "an existing folder")
    (tmp_path / "cifar").mkdir()
    result = cli("prune", *smoke, "dataset=cifar10", "dataset.root=~/cifar", f"hydra.run.dir={tmp_path / 'r2'}")
    _assert_one_line(result, f"dataset.root='{tmp_path / 'cifar'}'", "cifar-10-batches-py")


def test_a_full_disk_at_the_summary_is_one_line(cli, smoke, tmp_path, monkeypatch):
    import errno

    import prunecli._atomic

    write_json = prunecli._atomic.write_json

    def full(path, obj):
        if path.name != "summary.json":
            return write_json(path, obj)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(prunecli._atomic, "write_json", full)
    result = cli("prune", *smoke, f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, f"cannot write {tmp_path / 'summary.json'}", "No space left on device")
    assert not (tmp_path / "summary.json").exists()
    assert (tmp_path / "checkpoint" / "last" / "meta.json").is_file()   # the run's checkpoint stays
