"""Hugging Face models end to end through the CLI on the embedded text task: a tiny Llama built from a config and a
tiny GPT-2 saved to a local directory are pruned, evaluated from the checkpoint alone, and exported dense and ONNX;
bad model input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

pytest.importorskip("transformers")

import torch  # noqa: E402

LLAMA = ("+model.config={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
         "num_attention_heads: 4, num_key_value_heads: 2}")
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "vocab_size": 256}
TEXT = ["dataset=stdlib_text", "dataset.seq_len=32", "dataset.max_train_sequences=64", "dataset.max_val_sequences=16",
        "trainer.batch_size=16", "trainer.eval_batch_size=16", "trainer.pretrain_epochs=0", "trainer.epochs=1",
        "trainer.max_steps=3", "trainer.progress=false", "sparsity=0.5"]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from prunecli.models import build_hf_model

    path = tmp_path_factory.mktemp("hf") / "gpt2"
    build_hf_model(config=GPT2).save_pretrained(path)
    return path


def _prune(cli, out, *overrides):
    result = cli("prune", "model=hf", *TEXT, *overrides, f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def llama_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("llama") / "run"
    return out, _prune(cli, out, LLAMA)


def test_llama_from_a_config_prunes_evaluates_and_exports(cli, llama_run, tmp_path):
    from safetensors.torch import load_file

    from prunecli.checkpoint import load_checkpoint, model_from_spec

    out, summary = llama_run
    assert summary["model"] == "hf" and summary["steps"] == 3
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3) and 1 < summary["perplexity"] < 400
    spec = load_checkpoint(out).spec
    assert spec["config"]["class_name"] == "LlamaForCausalLM" and spec["config"]["config"]["num_key_value_heads"] == 2

    result = cli("evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["task"] == "causal_lm" and report["samples"] == 16
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)
    assert report["sparsity"] == pytest.approx(summary["sparsity"], abs=1e-6)

    result = cli("export", f"checkpoint={out}", "format=dense", f"hydra.run.dir={tmp_path / 'd'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    model = model_from_spec(json.loads((tmp_path / "d" / "model.json").read_text())["model"])
    model.load_state_dict(load_file(str(tmp_path / "d" / "model.safetensors")))
    weight = model.model.layers[0].mlp.up_proj.weight
    assert 0.1 < float((weight == 0).float().mean()) < 0.9  # the masks are folded into the weights
    _check_onnx(cli, out, tmp_path / "o", model)


def test_gpt2_from_a_local_directory_prunes_evaluates_and_exports(cli, gpt2_dir, tmp_path):
    from prunecli.checkpoint import load_checkpoint, load_model

    out = tmp_path / "run"
    # lm_head is tied to the token embedding: pruning it too carries tied weights through checkpoint and export
    summary = _prune(cli, out, f"model.path={gpt2_dir}", "trainer.pretrain_epochs=5",
                     "pruner.layers.exclude_last=false")
    assert summary["steps"] == 3 and summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    # GPT-2's blocks are transformers' Conv1D ([in, out] weights): pruned like nn.Linear
    assert {name for name in summary["per_layer"] if ".h.0." in name} == {
        f"transformer.h.0.{n}.weight" for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert "lm_head.weight" in summary["per_layer"]
    # a model loaded from a directory starts pruning at once (its weights are trained), as with model.weights
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["dense", "prune"]  # no "pretrain" rows despite pretrain_epochs=5
    spec = load_checkpoint(out).spec["config"]
    assert (spec["class_name"], spec["path"], spec["config"]["n_embd"]) == ("GPT2LMHeadModel", None, 32)

    result = cli("evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)
    _check_onnx(cli, out, tmp_path / "o", load_model(load_checkpoint(out)))


def _check_onnx(cli, checkpoint, out, model):
    """format=onnx: named text inputs and logits out, checked here with onnxruntime at another batch and length,
    as tests/test_export.py checks the image export (onnxruntime is a dependency of prunecli)."""
    import onnxruntime as ort

    result = cli("export", f"checkpoint={checkpoint}", "format=onnx", f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    info = json.loads((out / "export.json").read_text())
    assert info["match"] is True and info["max_abs_diff"] < 1e-4 and info["inputs"] == ["input_ids"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    ids = torch.randint(0, 256, (3, 20), generator=torch.Generator().manual_seed(1))
    (got,) = session.run(None, {"input_ids": ids.numpy()})
    with torch.no_grad():
        want = model.eval()(input_ids=ids).logits
    assert got.shape == (3, 20, 256) and (torch.from_numpy(got) - want).abs().max() < 1e-4


def _one_line(result, match):
    import re

    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None and "Traceback" not in result.stderr
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.stderr


@pytest.mark.parametrize("overrides, match", [
    (["model.path=some-org/not-in-the-cache"],
     r"^error: model\.path='some-org/not-in-the-cache' is not allowed: .*prunecli never downloads at run time"),
    ([LLAMA, "model.head=masked_lm"],
     r"^error: model\.head='masked_lm' is not allowed: expected auto or causal_lm for the causal_lm task"),
    (["+model.config.model_type=lama"], r"^error: model\.config\.model_type='lama' .*did you mean llama"),
    ([], r"^error: model\.path=None is not allowed: expected a local model directory, or model\.config"),
])
def test_bad_model_input_is_one_line(cli, tmp_path, overrides, match):
    _one_line(cli("prune", "model=hf", *TEXT, *overrides, f"hydra.run.dir={tmp_path}"), match)


def test_directories_that_do_not_fit_are_one_line(cli, gpt2_dir, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    _one_line(cli("prune", "model=hf", f"model.path={tmp_path / 'notes'}", *TEXT, f"hydra.run.dir={tmp_path / 'a'}"),
              r"^error: model\.path=.* expected a Hugging Face model directory \(with config\.json\)")
    _one_line(cli("prune", "model=hf", f"model.path={gpt2_dir}", *TEXT, "dataset.seq_len=128",
                  f"hydra.run.dir={tmp_path / 'b'}"), r"its max_position_embeddings is 64")


def test_a_compact_export_of_an_hf_model_is_rebuilt_from_its_spec(cli, llama_run, tmp_path):
    """compact.load rebuilds the dense Llama from the recorded node and replays the plan. The plan is written here
    (half of layer 0's MLP channels cut), since finding it on a traced Llama is prunecli.structure's work."""
    import hashlib

    from safetensors.torch import save

    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.export import compact
    from prunecli.structure import replay

    out, _ = llama_run
    ckpt = load_checkpoint(out)
    gone = list(range(0, 64, 2))
    cuts = [["model.layers.0.mlp.gate_proj.weight", 0, gone], ["model.layers.0.mlp.up_proj.weight", 0, gone],
            ["model.layers.0.mlp.down_proj.weight", 1, gone]]
    small = replay(load_model(ckpt).eval(), {"history": [], "cuts": cuts}, None)
    data = save({k: v.contiguous() for k, v in small.state_dict().items()})
    spec = {"format": "prunecli-compact", "version": 2, "weights": "model.safetensors", "model": ckpt.spec,
            "history": [], "cuts": cuts, "dataset": ckpt.meta["config"]["dataset"],
            "sha256": hashlib.sha256(data).hexdigest(), "params_dense": 34976, "params_compact": 34976 - 3 * 32 * 32}
    (tmp_path / "model.safetensors").write_bytes(data)
    (tmp_path / "model.json").write_text(json.dumps(spec))

    loaded = compact.load(tmp_path / "model.safetensors")
    assert loaded.model.layers[0].mlp.up_proj.weight.shape == (32, 32)
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, small(input_ids=ids).logits)
    result = cli("evaluate", f"checkpoint={tmp_path / 'model.safetensors'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["compact"] and report["params_total"] == 34976 - 3 * 32 * 32


@pytest.mark.parametrize("model, target, kept", [
    (LLAMA, "channel", (0.2, 0.6)),   # FFN and residual widths, and whole KV-head groups
    (LLAMA, "head", (0.8, 0.95)),     # one of each layer's two KV heads with its two query heads
    ("gpt2", "head", (0.8, 0.95)),    # fused c_attn: q, k and v rows of a head cut together
])
def test_a_structured_hf_run_exports_compact_and_evaluates_alike(cli, gpt2_dir, tmp_path, model, target, kept):
    source = f"model.path={gpt2_dir}" if model == "gpt2" else model
    summary = _prune(cli, tmp_path / "run", source, "trainer.pretrain_epochs=1", "pruner=l1_norm",
                     f"pruner.target={target}")
    assert summary["unit_sparsity"] == pytest.approx(0.5, abs=1e-6)
    result = cli("export", f"checkpoint={tmp_path / 'run'}", "format=compact", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    info = json.loads((tmp_path / "x" / "export.json").read_text())
    assert info["max_abs_diff"] < 1e-4
    result = cli("evaluate", f"checkpoint={tmp_path / 'x' / 'model.json'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)
    assert report["compact"] is True and kept[0] < report["params_ratio"] < kept[1]
