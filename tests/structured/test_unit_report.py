"""Channel pruning reports its goal in channels: the weight sparsity also counts the consumers' input columns,
and a dense classifier after a pruned layer is reported as losing inputs only."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli import build_pruner
from prunecli.models import build_model


def _pruned(target: str, sparsity: float = 0.5):
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, num_classes=10, image_size=8)  # conv 0, 4; linear 10, 12
    pruner = build_pruner(model, {"target": target, "criterion": "l1", "layers": {"exclude_last": True},
                                  "schedule": {"name": "oneshot", "final_sparsity": sparsity}},
                          example_inputs=torch.randn(1, 1, 8, 8))
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    return pruner


@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_channel_goal_is_reported_in_channels_and_consumers_as_inputs(sparsity):
    pruner = _pruned("channel", sparsity)
    report = pruner.report()
    assert report.unit_sparsity == pytest.approx(sparsity)
    assert report.sparsity > sparsity + 0.1   # the consumers' input columns go too
    assert pruner.unit_name == "channels"
    kinds = report.per_layer_kind
    assert kinds["12.weight"] == "inputs" and report.per_layer["12.weight"] == pytest.approx(sparsity)
    assert {n for n, k in kinds.items() if k == "units"} == {
        "0.weight", "1.weight", "1.bias", "4.weight", "5.weight", "5.bias", "10.weight", "10.bias"}
    # The classifier keeps all 10 outputs: each row keeps the surviving inputs.
    assert bool(pruner.masks["12.weight"].any(1).all())


def test_unstructured_units_are_the_weights():
    pruner = _pruned("unstructured")
    report = pruner.report()
    assert pruner.unit_name is None
    assert report.unit_sparsity == pytest.approx(report.sparsity, abs=1e-3) == pytest.approx(0.5, abs=1e-3)
    assert set(report.per_layer_kind.values()) == {"units"}


def test_cli_summary_shows_channels_and_weights(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "pruner=l1_norm", "sparsity=0.5", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "channels 0.50 removed (goal 0.5); weights 0.7411" in result.stdout
    assert "12.weight 0.5000 (lost input columns; output channels untouched)" in " ".join(result.stdout.split())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["unit"] == "channels" and summary["unit_sparsity"] == pytest.approx(0.5)
    assert summary["target_sparsity"] == 0.5 and summary["sparsity"] == pytest.approx(0.7411, abs=1e-4)
    assert summary["per_layer_kind"]["12.weight"] == "inputs"


def test_a_report_from_masks_alone_leaves_the_unit_fields_out():
    from prunecli.report import sparsity_report

    pruner = _pruned("channel")
    report = sparsity_report(pruner.model, pruner.masks).to_dict()
    assert "unit_sparsity" not in report and "per_layer_kind" not in report
    assert report["sparsity"] == pytest.approx(pruner.report().sparsity)
    assert pruner.report().to_dict()["unit_sparsity"] == pytest.approx(0.5)


def test_evaluate_reads_the_units_and_kinds_the_pruner_recorded(cli, channel_checkpoint, tmp_path):
    result = cli("evaluate", f"checkpoint={channel_checkpoint}", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "evaluate.json").read_text())
    assert report["unit"] == "channels" and report["unit_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert report["per_layer_kind"]["12.weight"] == "inputs"      # the dense classifier only loses inputs
    assert report["per_layer_kind"]["0.weight"] == "units"
    assert "input columns only" in result.stdout and "channels 0.5" in result.stdout
