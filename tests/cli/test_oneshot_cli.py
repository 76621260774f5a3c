"""One-shot presets through the CLI (``pruner=wanda|sparsegpt|magnitude_oneshot``): no training, calibration data
from the run's training split, every linear layer of the transformer blocks pruned to the goal, a checkpoint that
evaluates and exports like any run's; bad input is one line and exit 2 before any pre-training."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from prunecli.checkpoint import load_checkpoint

# tiny_lm on short stdlib_text sequences; one dense run pre-trains it, the one-shot runs start from its weights
TEXT = ["experiment=stdlib_lm", "dataset.seq_len=64", "dataset.max_train_sequences=512",
        "dataset.max_val_sequences=64", "trainer.batch_size=16", "trainer.eval_batch_size=64",
        "trainer.progress=false", "calibration.samples=32"]
PRETRAIN = ["trainer.pretrain_epochs=2", "trainer.max_steps=64"]
LINEARS = {f"blocks.{b}.{name}" for b in (0, 1) for name in
           ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.0.weight", "mlp.2.weight")}
PRESETS = ("magnitude_oneshot", "wanda", "sparsegpt")


def _run(cli, out, *overrides) -> dict:
    result = cli("prune", *overrides, f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def dense(cli, tmp_path_factory):
    """A one-shot run at sparsity 0: tiny_lm pre-trained (no weights given), then 'pruned' to nothing."""
    out = tmp_path_factory.mktemp("oneshot") / "dense"
    return out, _run(cli, out, *TEXT, *PRETRAIN, "pruner=sparsegpt", "sparsity=0.0")


@pytest.fixture(scope="module")
def runs(cli, dense, tmp_path_factory):
    """``runs(preset, target)``: the run dir and summary of ``preset`` on the dense run's weights, run once."""
    cache: dict = {}
    weights = dense[0] / "checkpoint" / "last" / "model.safetensors"

    def run(preset: str, target: str):
        if (preset, target) not in cache:
            out = tmp_path_factory.mktemp("oneshot") / f"{preset}-{target.replace(':', '_')}"
            cache[preset, target] = out, _run(cli, out, *TEXT, f"pruner={preset}", f"pruner.target='{target}'",
                                              "sparsity=0.5", f"model.weights={weights}")
        return cache[preset, target]

    return run


def test_dense_pretraining_runs_first_then_nothing_is_trained(dense):
    out, summary = dense
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["pretrain", "pretrain", "dense"]
    assert summary["steps"] == 0 and summary["pruner"] == "sparsegpt" and summary["sparsity"] == 0.0
    assert summary["calibration"] == {"samples": 32, "seq_len": None, "batch_size": 8}
    assert 1 < summary["dense_perplexity"] < 40
    assert summary["perplexity"] == pytest.approx(summary["dense_perplexity"], rel=1e-6)


@pytest.mark.parametrize("target", ["unstructured", "2:4"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_block_linear_reaches_the_sparsity(runs, dense, preset, target):
    out, summary = runs(preset, target)
    assert summary["steps"] == 0 and summary["pruner"] == preset and summary["target_sparsity"] == 0.5
    assert summary["dense_perplexity"] == pytest.approx(dense[1]["dense_perplexity"], rel=1e-6)  # same weights
    assert set(summary["per_layer"]) == LINEARS   # the blocks' layers; embeddings and the head stay dense
    assert all(v == pytest.approx(0.5, abs=1e-9) for v in summary["per_layer"].values()), summary["per_layer"]
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-9)
    masks = load_checkpoint(out).masks   # bool, whatever layout masks.safetensors has
    weights = load_file(str(out / "checkpoint" / "last" / "model.safetensors"))
    assert set(masks) == LINEARS
    for fqn, mask in masks.items():
        assert int(weights[fqn][~mask].count_nonzero()) == 0, fqn
        if target == "2:4":  # exactly 2 of every 4 consecutive weights along the input dim are non-zero
            assert bool(((weights[fqn] != 0).reshape(-1, 4).sum(1) == 2).all()), fqn


@pytest.mark.parametrize("target", ["unstructured", "2:4"])
def test_sparsegpt_beats_magnitude(runs, dense, target):
    # on this briefly trained model wanda and magnitude are within 0.5% of each other (either may win)
    ppl = {p: runs(p, target)[1]["perplexity"] for p in PRESETS}
    assert ppl["sparsegpt"] < ppl["magnitude_oneshot"], ppl
    assert dense[1]["dense_perplexity"] < ppl["sparsegpt"], ppl


def test_checkpoint_evaluates_and_exports_with_its_masks(cli, runs, tmp_path):
    out, summary = runs("sparsegpt", "2:4")
    result = cli("evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-6)
    assert report["sparsity"] == pytest.approx(0.5, abs=1e-9)
    result = cli("export", f"checkpoint={out}", "format=dense", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    exported = load_file(str(tmp_path / "x" / "model.safetensors"))
    for fqn in LINEARS:
        assert bool(((exported[fqn] != 0).reshape(-1, 4).sum(1) == 2).all()), fqn


def test_progress_is_one_line_per_block(cli, dense, tmp_path):
    weights = dense[0] / "checkpoint" / "last" / "model.safetensors"
    _run(cli, tmp_path, *TEXT, "pruner=wanda", "sparsity=0.3", f"model.weights={weights}", "calibration.seq_len=16",
         "calibration.samples=4", "calibration.batch_size=2")
    log = "".join(p.read_text() for p in tmp_path.rglob("*.log"))
    assert "block 1/2 pruned: 4 tensors" in log and "block 2/2 pruned: 4 tensors" in log
    assert "4 calibration samples of 16 tokens" in log


def test_hf_llama_from_config_is_pruned_2_4(cli, tmp_path):
    import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

    pytest.importorskip("transformers")
    llama = ("+model.config={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
             "num_attention_heads: 4, num_key_value_heads: 2}")
    summary = _run(cli, tmp_path / "run", "model=hf", llama, "dataset=stdlib_text", "dataset.seq_len=32",
                   "dataset.max_train_sequences=64", "dataset.max_val_sequences=16", "trainer.batch_size=16",
                   "trainer.eval_batch_size=16", "trainer.pretrain_epochs=1", "trainer.max_steps=4",
                   "trainer.progress=false", "pruner=wanda", "pruner.target='2:4'", "sparsity=0.5",
                   "calibration.samples=8")
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert len(summary["per_layer"]) == 14 and all(any(n in k for n in names) for k in summary["per_layer"])
    assert all(v == pytest.approx(0.5, abs=1e-9) for v in summary["per_layer"].values())
    weights = load_file(str(tmp_path / "run" / "checkpoint" / "last" / "model.safetensors"))
    for fqn in summary["per_layer"]:
        assert bool(((weights[fqn] != 0).reshape(-1, 4).sum(1) == 2).all()), fqn
    result = cli("evaluate", f"checkpoint={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-5)


BAD = [
    (["calibration.samples=0"], "calibration.samples=0 is not allowed"),
    (["calibration.seq_len=65"], "calibration.seq_len=65 is not allowed: expected at most 64"),
    (["calibration.batch_size=0"], "calibration.batch_size=0"),
    (["model.dim=36", "pruner.target='4:8'", "sparsity=0.5"], "input dimension 36 is not a multiple of 8"),
    (["pruner.target='2:4'", "sparsity=0.7"], "sparsity=0.7 is not allowed: expected at most 0.5"),
    (["pruner.sequential=maybe"], "pruner.sequential='maybe' is not allowed: expected true or false"),
    (["objective=params"], "objective='params' is not allowed: expected sparsity"),
    (["pruner.method=obc"], "pruner.method='obc' is not allowed: expected one of magnitude, wanda, sparsegpt"),
    (["pruner.method.percdamp=-1"], "percdamp=-1 is not allowed"),
    (["pruner.allocation=sideways"], "allocation"),
    (["pruner.layer_sparsity=lumpy"], "pruner.layer_sparsity='lumpy' is not allowed: expected one of"),
    (["pruner.layer_sparsity=owl", "pruner.target='2:4'", "sparsity=0.5"],
     "pruner.layer_sparsity='owl' is not allowed: expected uniform with an N:M target"),
    (["pruner.layers.include=[nothing]"], "pruner.layers.include='nothing' is not allowed: expected a regex matching"),
    (["pruner.layers.include=[head]"], "expected rules selecting linear layers inside blocks"),
    (["pruner.layers.exclude=[blocks.*]"], "expected rules selecting linear layers inside blocks"),
    (["pruner.layers.types=[Conv2d]"], "pruner.layers={'include': [], 'types': ['Conv2d']"),
    (["+pruner.layers.colour=red"], "pruner.layers.colour='red' is not allowed"),
]


@pytest.mark.parametrize("overrides, line", BAD, ids=[b[1].split("=")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_before_pretraining(cli, tmp_path, overrides, line):
    result = cli("prune", *TEXT, *PRETRAIN, "pruner=sparsegpt", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    errors = [e for e in result.error_lines if e.startswith("error:")]
    assert errors == result.error_lines[-1:] and line in errors[0], result.error_lines
    assert not (tmp_path / "metrics.jsonl").exists()   # refused before any pre-training epoch


def test_resume_of_a_one_shot_run_is_refused(cli, dense, tmp_path):
    result = cli("prune", *TEXT, "pruner=sparsegpt", f"trainer.resume={dense[0]}", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert "is not allowed: expected no resume with a one-shot preset" in result.error_lines[-1], result.error_lines


def test_image_model_without_blocks_is_refused_saying_what_is_needed(cli, tmp_path):
    result = cli("prune", "pruner=wanda", "trainer.progress=false", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    line = result.error_lines[-1]
    assert [e for e in result.error_lines if e.startswith("error:")] == [line]
    assert line.startswith("error: pruner='wanda' is not allowed: expected a model with transformer blocks"), line
    assert line.endswith("(Sequential has none)"), line


def test_empty_training_split_is_no_calibration_data():
    from prunecli.engine.oneshot import _calibration
    from prunecli.errors import ConfigError

    run = SimpleNamespace(data=SimpleNamespace(train=[], name="mine"), spec={"seq_len": 64},
                          model=torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match=r"calibration.samples=128 .* \(the training split of mine is empty\)"):
        _calibration(run, {})
    run.data.train = [0]
    assert _calibration(run, {"seq_len": 16, "samples": 3}) == (3, 16, 8)


def test_one_shot_preset_is_refused_by_build_pruner():
    from prunecli import build_pruner
    from prunecli.errors import ConfigError
    from prunecli.presets import pruner_preset

    with pytest.raises(ConfigError, match="pruner.method='wanda' is not allowed: expected a training preset"):
        build_pruner(torch.nn.Linear(4, 4), pruner_preset("wanda", sparsity=0.5))


def test_statistics_from_the_dense_model_are_a_config_choice(cli, runs, dense, tmp_path):
    weights = dense[0] / "checkpoint" / "last" / "model.safetensors"
    summary = _run(cli, tmp_path, *TEXT, "pruner=sparsegpt", "pruner.sequential=false", "sparsity=0.5",
                   f"model.weights={weights}")
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-9)
    sequential = runs("sparsegpt", "unstructured")[1]["perplexity"]
    # block 1 sees other inputs than in the sequential run, so its weights are reconstructed differently
    assert summary["perplexity"] != sequential and abs(summary["perplexity"] / sequential - 1) < 0.05


def test_onnx_export_computes_the_masked_model(cli, runs, tmp_path):
    import onnxruntime as ort

    from prunecli.checkpoint import load_checkpoint, load_model

    out, _ = runs("wanda", "unstructured")
    result = cli("export", f"checkpoint={out}", "format=onnx", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    ids = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (got,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
    with torch.no_grad():
        want = load_model(load_checkpoint(out))(ids)
    assert float((torch.from_numpy(got) - want).abs().max()) < 1e-4


def test_owl_gives_the_blocks_their_own_sparsities(cli, dense, tmp_path):
    weights = dense[0] / "checkpoint" / "last" / "model.safetensors"
    summary = _run(cli, tmp_path / "run", *TEXT, "pruner=wanda", "pruner.layer_sparsity=owl", "sparsity=0.7",
                   f"model.weights={weights}")
    per_block = {b: {v for k, v in summary["per_layer"].items() if k.startswith(f"blocks.{b}.")} for b in (0, 1)}
    # every layer of a block at its block's sparsity (per output row: rounding), the blocks apart by <= 2 lambda
    spans = [max(v) - min(v) for v in per_block.values()]
    assert max(spans) < 0.02 and 0.0 < abs(min(per_block[0]) - min(per_block[1])) <= 0.16 + 0.02
    assert all(0.7 - 0.08 - 0.01 <= v <= 0.7 + 0.08 + 0.01 for v in summary["per_layer"].values())
    assert summary["sparsity"] == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("rule", ["pruner.layers.exclude=[.*attn.*]", "pruner.layers.include=[blocks\\..\\.mlp\\..*]"])
@pytest.mark.parametrize("preset", ["wanda", "sparsegpt"])
def test_pruner_layers_selects_the_layers_of_the_blocks(cli, dense, tmp_path, preset, rule):
    weights_in = dense[0] / "checkpoint" / "last" / "model.safetensors"
    summary = _run(cli, tmp_path, *TEXT, f"pruner={preset}", rule, "sparsity=0.5", f"model.weights={weights_in}")
    mlp = {n for n in LINEARS if ".mlp." in n}
    assert set(summary["per_layer"]) == mlp and all(v == 0.5 for v in summary["per_layer"].values())
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-9)
    assert set(load_file(str(tmp_path / "checkpoint" / "last" / "masks.safetensors"))) == mlp
    dense_weights = load_file(str(weights_in))
    weights = load_file(str(tmp_path / "checkpoint" / "last" / "model.safetensors"))
    for fqn in LINEARS - mlp:  # attention stays dense and, with sparsegpt, un-updated
        assert torch.equal(weights[fqn], dense_weights[fqn]), fqn
    for fqn in mlp:
        assert int(weights[fqn].count_nonzero()) == weights[fqn].numel() // 2, fqn


def test_hf_gpt2_conv1d_mlp_only_is_pruned_2_4_along_its_input_dim(cli, tmp_path):
    import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

    pytest.importorskip("transformers")
    gpt2 = "+model.config={model_type: gpt2, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 32}"
    summary = _run(cli, tmp_path / "run", "model=hf", gpt2, "dataset=stdlib_text", "dataset.seq_len=32",
                   "dataset.max_train_sequences=64", "dataset.max_val_sequences=16", "trainer.batch_size=16",
                   "trainer.eval_batch_size=16", "trainer.pretrain_epochs=1", "trainer.max_steps=4",
                   "trainer.progress=false", "pruner=sparsegpt", "pruner.target='2:4'", "sparsity=0.5",
                   "calibration.samples=8", "pruner.layers.include=[.*mlp.*]")
    mlp = {f"transformer.h.{b}.mlp.{n}.weight" for b in (0, 1) for n in ("c_fc", "c_proj")}
    assert set(summary["per_layer"]) == mlp and all(v == 0.5 for v in summary["per_layer"].values())
    weights = load_file(str(tmp_path / "run" / "checkpoint" / "last" / "model.safetensors"))
    for fqn in mlp:  # Conv1D weights are [in, out]: 2 of every 4 consecutive inputs of each output are kept
        assert bool(((weights[fqn].T != 0).reshape(-1, 4).sum(1) == 2).all()), fqn
