"""``format=semi_structured`` on a GPU of compute capability >= 8.0 (skipped elsewhere): the exported tiny LM's
sparse outputs match its dense float16 outputs, and a 4096x4096 float16 2:4 layer is timed dense vs sparse."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.export import semi_structured, two_four

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or two_four.cuda_support() is not None,
                                reason="needs a CUDA device of compute capability >= 8.0")

TEXT = ["dataset=stdlib_text", "model=tiny_lm", "dataset.seq_len=32", "dataset.max_train_sequences=64",
        "dataset.max_val_sequences=16", "trainer.batch_size=16", "trainer.eval_batch_size=16",
        "trainer.pretrain_epochs=0", "trainer.epochs=1", "trainer.max_steps=2", "trainer.progress=false",
        "pruner=semi_structured_2_4", "sparsity=0.5"]


def test_export_converts_and_the_loaded_sparse_model_matches_dense_float16(cli, tmp_path):
    from prunecli.checkpoint import load_checkpoint, load_model

    run = tmp_path / "run"
    result = cli("prune", *TEXT, f"hydra.run.dir={run}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    result = cli("export", f"checkpoint={run}", "format=semi_structured", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "x" / "export.json").read_text())
    mlp = [f"blocks.{i}.mlp.{j}" for i in (0, 1) for j in (0, 2)]
    assert report["converted"] == mlp and report["max_abs_diff"] <= 1e-2
    assert set(report["skipped"]) == {"blocks.0.attn.out_proj", "blocks.1.attn.out_proj"}

    sparse = semi_structured.load(tmp_path / "x" / "model.json", device="cuda")
    assert all(type(sparse.get_submodule(n).weight).__name__.startswith("SparseSemiStructuredTensor") for n in mlp)
    dense = load_model(load_checkpoint(run)).to("cuda", torch.float16).eval()
    ids = torch.randint(0, 256, (4, 32), device="cuda")
    with torch.no_grad():
        diff = float((sparse(ids).float() - dense(ids).float()).abs().max())
    assert diff <= 1e-2


def test_a_4096_layer_runs_sparse_within_1e_2_of_dense_and_is_timed():
    times = two_four.matmul_times(4096, 4096, 4096, torch.float16)
    print(f"4096x4096 float16 2:4, batch 4096: dense {times['dense_ms']:.3f} ms, sparse {times['sparse_ms']:.3f} ms, "
          f"speedup {times['speedup']:.2f}x")
    assert times["max_abs_diff"] <= 1e-2
    assert times["dense_ms"] > 0 and times["sparse_ms"] > 0
