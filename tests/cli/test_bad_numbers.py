"""Every bad number (wrong type, out of range, NaN, inf) and every unresolvable override is one ``error:`` line
naming the key and the value, exit code 2, no traceback, and nothing written: no checkpoint, summary, report
or export."""

from __future__ import annotations

import pytest
from test_bad_input import _assert_one_line

RUN_OUTPUTS = ("checkpoint", "summary.json", "metrics.jsonl", "evaluate.json", "export.json",
               "model.safetensors", "model.json", "model.onnx")


def _assert_nothing_written(run_dir) -> None:
    left = sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []
    assert not set(left) & set(RUN_OUTPUTS), left
    assert not [name for name in left if name.endswith(".tmp")], left


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("seed=abc", ("seed='abc'", "[0, 4294967295]")),
        ("seed=99999999999999999999999", ("seed=99999999999999999999999", "integer")),
        ("seed=1.5", ("seed=1.5", "integer")),
        ("seed=-1", ("seed=-1", "integer")),
        ("seed=true", ("seed=True", "integer")),
        ("trainer.grad_clip=nan", ("trainer.grad_clip=nan", "finite number > 0")),
        ("trainer.grad_clip=0", ("trainer.grad_clip=0", "finite number > 0")),
        ("trainer.optimizer.lr=nan", ("trainer.optimizer.lr=nan", "finite number >= 0")),
        ("trainer.optimizer.lr=inf", ("trainer.optimizer.lr=inf", "finite number >= 0")),
        ("trainer.optimizer.lr=abc", ("trainer.optimizer.lr='abc'", "finite number")),
        ("trainer.optimizer.momentum=-inf", ("trainer.optimizer.momentum=-inf", "finite number >= 0")),
        ("trainer.optimizer.weight_decay=nan", ("trainer.optimizer.weight_decay=nan", "finite")),
        ("trainer.lr_scheduler.T_max=-1", ("trainer.lr_scheduler.T_max=-1", "integer >= 1")),
        ("+trainer.lr_scheduler.eta_min=nan", ("trainer.lr_scheduler.eta_min=nan", "finite number")),
        ("sparsity=${nope}", ("sparsity='${nope}'", "interpolation that resolves", "'nope' not found")),
        ("trainer.optimizer.lr=${trainer.nope}", ("trainer.optimizer.lr='${trainer.nope}'", "resolves")),
    ],
)
def test_bad_prune_numbers_are_one_line_before_any_work(cli, smoke, tmp_path, override, fragments):
    run = tmp_path / "run"
    _assert_one_line(cli("prune", *smoke, override, f"hydra.run.dir={run}"), *fragments)
    _assert_nothing_written(run)


def test_adam_betas_must_be_finite(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "trainer.optimizer._target_=torch.optim.Adam", "~trainer.optimizer.momentum",
                 "~trainer.optimizer.nesterov", "+trainer.optimizer.betas=[0.9,nan]", f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, "trainer.optimizer.betas=[0.9, nan]", "finite numbers")
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("override", ["=0.5", "+=1"])
def test_override_without_a_key_is_one_line(cli, tmp_path, override):
    _assert_one_line(cli("prune", override, f"hydra.run.dir={tmp_path / 'run'}"), f"'{override}'", "names no key")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("batch_size=0", ("batch_size=0", "integer >= 1")),
        ("batch_size=abc", ("batch_size='abc'", "integer >= 1")),
        ("latency.batch_size=0", ("latency.batch_size=0", "integer >= 1")),
        ("latency.repeats=0", ("latency.repeats=0", "integer >= 1")),
        ("latency.warmup=-1", ("latency.warmup=-1", "integer >= 0")),
        ("latency.warmup=2.5", ("latency.warmup=2.5", "integer >= 0")),
    ],
)
def test_bad_evaluate_numbers_are_one_line(cli, smoke_checkpoint, tmp_path, override, fragments):
    result = cli("evaluate", f"checkpoint={smoke_checkpoint}", override, f"hydra.run.dir={tmp_path}")
    _assert_one_line(result, *fragments)
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["format=onnx", "onnx.opset=1"], ("onnx.opset=1", "[7, 20]")),
        (["format=onnx", "onnx.opset=21"], ("onnx.opset=21", "[7, 20]")),
        (["format=onnx", "onnx.opset=abc"], ("onnx.opset='abc'", "[7, 20]")),
        (["format=onnx", "onnx.batch_size=0"], ("onnx.batch_size=0", "integer >= 1")),
        (["format=onnx", "onnx.atol=-1"], ("onnx.atol=-1", "finite number >= 0")),
        (["format=onnx", "onnx.atol=nan"], ("onnx.atol=nan", "finite number >= 0")),
        (["format=onnx", "+onnx.opst=13"], ("onnx.opst=13", "opset, batch_size, atol")),
        (["format=compact", "compact.atol=inf"], ("compact.atol=inf", "finite number >= 0")),
        (["format=compact"], ("format='compact'", "pruner.target=channel or head", "use format=dense")),
    ],
)
def test_bad_export_options_are_one_line(cli, smoke_checkpoint, tmp_path, overrides, fragments):
    out = tmp_path / "out" / "model.bin"
    result = cli("export", f"checkpoint={smoke_checkpoint}", *overrides, f"output={out}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    _assert_one_line(result, *fragments)
    _assert_nothing_written(tmp_path / "run")
    assert not out.parent.exists() or not list(out.parent.iterdir())
