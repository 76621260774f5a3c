"""``export format=compact``: safetensors + JSON spec, reloaded from Python, equal to the masked model."""

from __future__ import annotations

import json

import pytest
import torch
from _structured import prune, randomized

from prunecli.checkpoint import Checkpoint, model_from_spec
from prunecli.errors import CheckpointError
from prunecli.export import compact, export
from prunecli.tasks import ImageClassification

SPEC = {"config": {"_target_": "prunecli.models.build_model", "_partial_": True, "name": "resnet18"},
        "in_channels": 3, "num_classes": 10, "image_size": 32}


@pytest.fixture
def exported(tmp_path):
    model = randomized(model_from_spec(SPEC))
    pruner = prune(model, ImageClassification().example_inputs(SPEC, 1))
    ckpt = Checkpoint(tmp_path / "ckpt", {"model": SPEC, "config": {"dataset": {"name": "digits"}}},
                      model.state_dict(), pruner.masks)
    result = export(ckpt, "compact", tmp_path / "model.safetensors")
    return model, result, tmp_path / "model.safetensors"


def test_compact_export_reloads_equal_and_smaller(exported):
    model, result, path = exported
    assert result["max_abs_diff"] <= 1e-4 and result["params_compact"] < 0.4 * result["params_dense"]
    spec = json.loads(path.with_suffix(".json").read_text())
    assert spec["format"] == "prunecli-compact" and spec["history"]
    small = compact.load(path)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-4
    assert sum(p.numel() for p in small.parameters()) == result["params_compact"]
    assert compact.is_compact(path) and compact.is_compact(path.with_suffix(".json"))


def test_version_1_spec_without_cuts_still_loads(exported):
    model, _, path = exported
    spec = json.loads(path.with_suffix(".json").read_text())
    assert spec["version"] == 2 and spec["cuts"] == []
    del spec["cuts"]
    path.with_suffix(".json").write_text(json.dumps({**spec, "version": 1}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (compact.load(path)(x) - model(x)).abs().max() <= 1e-4


def test_vit_export_records_cuts_and_reloads_counted_norms_and_attention(tmp_path):
    from prunecli.structure import Attention, CountedLayerNorm

    spec = {**SPEC, "config": {**SPEC["config"], "name": "vit_b_16"}}
    torch.manual_seed(0)
    model = randomized(model_from_spec(spec))
    pruner = prune(model, ImageClassification().example_inputs(spec, 1))
    ckpt = Checkpoint(tmp_path / "ckpt", {"model": spec, "config": {"dataset": {"name": "digits"}}},
                      model.state_dict(), pruner.masks)
    result = export(ckpt, "compact", tmp_path / "vit.safetensors")
    assert result["max_abs_diff"] <= 1e-5 and result["params_compact"] < 0.26 * result["params_dense"]
    meta = json.loads((tmp_path / "vit.json").read_text())
    assert ["encoder.layers.encoder_layer_0.self_attention.in_proj_weight", 1] in [c[:2] for c in meta["cuts"]]
    small = compact.load(tmp_path / "vit.safetensors")
    assert isinstance(small.encoder.ln, CountedLayerNorm)
    assert isinstance(small.encoder.layers[3].self_attention, Attention)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-5


def test_tampered_weights_are_refused(exported):
    _, _, path = exported
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        compact.load(path)


def test_exactness_is_judged_relative_to_the_output_scale():
    from prunecli.errors import ConfigError
    from prunecli.structure import output_gap

    # inception_v3 with random weights: logits of 6.9e7 differ by 54 in float32 rounding alone.
    assert compact.check_exact("Inception3", 54.0, 6.9e7, 1e-6, 1e-5) == pytest.approx(54.0 / 6.9e7)
    assert compact.check_exact("Zero", 5e-7, 0.0, 1e-6, 1e-5) == float("inf")  # no scale: the atol floor passes it
    with pytest.raises(ConfigError, match=r"differ by 0\.003 at an output scale of 2 \(relative 0\.0015\)"):
        compact.check_exact("Net", 3e-3, 2.0, 1e-6, 1e-5)
    assert output_gap(torch.tensor([1.0, -4.0]), torch.tensor([1.5, -4.0])) == (0.5, 4.0)
    assert compact.check_options({}) == {"atol": 1e-6, "rtol": 1e-5}
