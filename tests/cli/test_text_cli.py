"""Text end to end through the CLI: prune tiny_lm on stdlib_text, evaluate the run, export it dense."""

from __future__ import annotations

import json
import math

import pytest
import torch

# Short sequences and small caps so the run takes seconds; pre-training gets most of the steps.
TEXT = ["dataset=stdlib_text", "model=tiny_lm", "dataset.seq_len=64", "dataset.max_train_sequences=512",
        "dataset.max_val_sequences=64", "trainer.batch_size=16", "trainer.eval_batch_size=64",
        "trainer.pretrain_epochs=3", "trainer.epochs=2", "trainer.max_steps=64", "trainer.progress=false",
        "sparsity=0.5"]


@pytest.fixture(scope="module")
def text_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    result = cli("prune", *TEXT, f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out, json.loads((out / "summary.json").read_text()), result.stdout


def test_prune_reaches_its_sparsity_with_perplexity_below_uniform(text_run):
    _, summary, stdout = text_run
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert summary["steps"] == 64 and summary["dataset"] == "stdlib_text" and summary["model"] == "tiny_lm"
    # Uniform guessing over 256 bytes is perplexity 256; 192 dense + 64 pruning steps learn the byte statistics.
    assert math.isfinite(summary["perplexity"]) and 1 < summary["perplexity"] < 40
    assert summary["dense_perplexity"] < 40
    assert summary["perplexity"] == pytest.approx(math.exp(summary["loss"]), rel=1e-9)
    assert summary["log_likelihood"] == -summary["loss"] and summary["best_log_likelihood"] <= 0
    assert "accuracy" not in summary and "dense_accuracy" not in summary
    assert "perplexity  dense" in stdout and "accuracy" not in stdout


def test_evaluate_and_export_the_text_run(cli, text_run, tmp_path):
    from safetensors.torch import load_file

    from prunecli.checkpoint import model_from_spec

    out, summary, _ = text_run
    result = cli("evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["task"] == "causal_lm" and report["samples"] == 64
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)
    assert report["sparsity"] == pytest.approx(0.5, abs=1e-3) and "perplexity / loss" in result.stdout

    result = cli("export", f"checkpoint={out}", "format=dense", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    spec = json.loads((tmp_path / "x" / "model.json").read_text())["model"]
    assert (spec["task"], spec["vocab_size"], spec["seq_len"]) == ("causal_lm", 256, 64)
    model = model_from_spec(spec)
    model.load_state_dict(load_file(str(tmp_path / "x" / "model.safetensors")))
    weight = model.blocks[0].mlp[0].weight
    assert 0.1 < float((weight == 0).float().mean()) < 0.9  # the masks are folded into the weights
    assert model(torch.zeros(1, 64, dtype=torch.long)).shape == (1, 64, 256)


def test_smoke_experiment_takes_the_text_dataset(cli, tmp_path):
    out = tmp_path / "smoke"
    result = cli("prune", "experiment=smoke", "dataset=stdlib_text", "model=tiny_lm",
                 "dataset.max_train_sequences=192", "dataset.max_val_sequences=32", f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert math.isfinite(summary["perplexity"]) and summary["perplexity"] < summary["dense_perplexity"]


def test_channel_pruned_text_model_exports_compact_with_the_same_perplexity(cli, tmp_path):
    run = tmp_path / "channels"
    result = cli("prune", "experiment=smoke", "dataset=stdlib_text", "model=tiny_lm", "pruner=l1_norm",
                 "dataset.max_train_sequences=192", "dataset.max_val_sequences=32", f"hydra.run.dir={run}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["unit"] == "channels" and summary["unit_sparsity"] == pytest.approx(0.5, abs=0.02)
    result = cli("export", f"checkpoint={run}", "format=compact", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    result = cli("evaluate", f"checkpoint={tmp_path / 'x' / 'model.safetensors'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["compact"] and report["params_total"] < 0.8 * report["params_dense"]
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-4)
