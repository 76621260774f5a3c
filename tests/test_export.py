"""prunecli evaluate and export on a pruned checkpoint: numbers in evaluate.json, ONNX parity, dense round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prunecli.checkpoint import load_checkpoint, load_model


def test_evaluate_reports_accuracy_sparsity_flops_latency(cli, smoke_checkpoint, tmp_path):
    result = cli("evaluate", f"checkpoint={smoke_checkpoint}", "latency.repeats=5", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    report = json.loads((tmp_path / "evaluate.json").read_text())
    summary = json.loads((smoke_checkpoint.parents[1] / "summary.json").read_text())
    assert report["accuracy"] == pytest.approx(summary["accuracy"])
    assert report["sparsity"] == pytest.approx(summary["sparsity"]) == pytest.approx(0.75, abs=0.01)
    assert report["params_nonzero"] == summary["params_nonzero"] < report["params_total"]
    assert report["per_layer"] == pytest.approx(summary["per_layer"])
    assert 0 < report["flops_effective"] < report["flops"]
    assert report["latency_ms_median"] > 0 and report["latency_repeats"] == 5
    assert "per-layer sparsity" in result.stdout


def test_onnx_export_matches_pytorch(cli, smoke_checkpoint, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    result = cli("export", f"checkpoint={smoke_checkpoint}", "format=onnx", f"output={out}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    info = json.loads((tmp_path / "run" / "export.json").read_text())
    assert info["max_abs_diff"] < 1e-4 and info["match"] is True
    assert "max abs difference" in result.stdout
    # independent check, with a batch size other than the export's (the batch axis is dynamic)
    model = load_model(load_checkpoint(smoke_checkpoint)).eval()
    x = torch.randn(5, 1, 8, 8)
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    assert (torch.from_numpy(got) - model(x).detach()).abs().max() < 1e-4


def test_dense_export_round_trips(cli, smoke_checkpoint, tmp_path):
    result = cli("export", f"checkpoint={smoke_checkpoint}", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    weights = load_file(str(tmp_path / "model.safetensors"))
    spec = json.loads((tmp_path / "model.json").read_text())
    ckpt = load_checkpoint(smoke_checkpoint)
    assert spec["model"] == ckpt.spec
    for key, value in ckpt.model_state.items():
        assert torch.equal(weights[key], value)
    for key, mask in ckpt.masks.items():
        assert int(weights[key][~mask].count_nonzero()) == 0


def test_onnx_export_of_a_text_model_takes_input_ids_and_returns_logits(tmp_path):
    """tiny_lm (keyword input ``input_ids``; nn.MultiheadAttention fixes its sequence length): batch axis only."""
    from types import SimpleNamespace

    import onnxruntime as ort

    from prunecli.export import onnx as onnx_format
    from prunecli.models import build_model

    model = build_model("tiny_lm", vocab_size=256, seq_len=16, dim=32, heads=4, layers=1).eval()
    spec = {"config": {}, "task": "causal_lm", "vocab_size": 256, "seq_len": 16}
    info = onnx_format.export(model, SimpleNamespace(spec=spec), tmp_path / "m.onnx", {})
    assert info["match"] and info["max_abs_diff"] < 1e-4 and info["inputs"] == ["input_ids"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    ids = torch.randint(0, 256, (3, 16))
    (got,) = session.run(None, {"input_ids": ids.numpy()})
    assert (torch.from_numpy(got) - model(ids).detach()).abs().max() < 1e-4
