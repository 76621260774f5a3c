"""``format=semi_structured`` on CPU: the 2:4 invariant, the packed form, the conversion path up to the device
check, and the CLI (refusal without a GPU, the portable file with ``require_cuda=false``, evaluate of it)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunecli.errors import CheckpointError, ConfigError
from prunecli.export import semi_structured, two_four


def two_four_weight(out: int, inputs: int, seed: int = 0) -> torch.Tensor:
    """A random ``[out, inputs]`` weight keeping the 2 largest of every 4 inputs."""
    w = torch.randn(out, inputs, generator=torch.Generator().manual_seed(seed))
    keep = w.abs().reshape(out, -1, 4).topk(2, dim=-1).indices
    mask = torch.zeros(out, inputs // 4, 4, dtype=torch.bool).scatter_(-1, keep, True)
    return w * mask.reshape(out, inputs)


def test_violation_counts_groups_over_two_and_refuses_widths_not_divisible_by_4():
    w = two_four_weight(8, 16)
    assert two_four.violation(w) is None
    w[3, 4:8] = torch.tensor([1.0, 2.0, 3.0, 0.0])   # one group keeps 3
    w[5, 0:4] = 1.0                                    # one keeps 4
    assert two_four.violation(w) == "2 of 32 groups of 4 inputs keep more than 2 weights"
    assert two_four.violation(torch.zeros(4, 6)) == "its 6 inputs are not a multiple of 4"
    assert two_four.violation(torch.zeros(4, 8)) is None   # all zero is 2:4 (and 4:4 zeros)


def test_pack_writes_known_bytes_and_round_trips_bit_exact():
    # groups: (0 5 0 7) keeps positions 1, 3; (1 0 0 0) keeps 0 and the lowest free one, 1; (0 0 0 0) keeps 0, 1
    w = torch.tensor([[0.0, 5.0, 0.0, 7.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    values, positions = two_four.pack(w)
    assert values.tolist() == [[5.0, 7.0, 1.0, 0.0, 0.0, 0.0]]
    # 2 bits per index, lowest first: 1 | 3<<2 | 0<<4 | 1<<6 = 77, then 0 | 1<<2 = 4 (6 indices: 2 bytes)
    assert positions.dtype == torch.uint8 and positions.tolist() == [[77, 4]]
    assert torch.equal(two_four.unpack(values, positions, 12), w)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for out, inputs in ((64, 128), (3, 12), (5, 4)):
            w = two_four_weight(out, inputs, seed=out).to(dtype)
            values, positions = two_four.pack(w)
            assert (tuple(values.shape), tuple(positions.shape)) == two_four.packed_shapes(out, inputs)
            back = two_four.unpack(values, positions, inputs)
            # bit for bit, zeros as +0.0 (masking makes -0.0 of negative weights)
            assert back.dtype == dtype and torch.equal(back.view(torch.uint8), (w + 0.0).view(torch.uint8))
            assert int((w.view(torch.uint8) != back.view(torch.uint8)).sum()) > 0  # the -0.0 were there


def test_unpack_refuses_positions_pack_never_writes():
    values, positions = two_four.pack(two_four_weight(2, 8))
    positions[0, 0] = 0   # indices 0, 0: two kept weights in one place
    with pytest.raises(ValueError, match="ascending"):
        two_four.unpack(values, positions, 8)


class Net(nn.Module):
    """2:4 Linear layers that the kernels take and one they do not, a dense one, a tied pair, and attention."""

    def __init__(self):
        super().__init__()
        self.fit = nn.Linear(128, 64)
        self.small = nn.Linear(16, 8)
        self.dense = nn.Linear(128, 128)
        self.odd = nn.Linear(6, 4)
        self.tied_a, self.tied_b = nn.Linear(16, 16), nn.Linear(16, 16)
        self.tied_b.weight = self.tied_a.weight
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        with torch.no_grad():
            for layer, seed in ((self.fit, 1), (self.small, 2), (self.tied_a, 3), (self.attn.out_proj, 4)):
                layer.weight.copy_(two_four_weight(*layer.weight.shape, seed=seed))


def test_plan_packs_2of4_layers_and_lists_the_rest_with_reasons():
    packed, dense = semi_structured.plan(Net())
    assert packed == {"fit.weight": "linear", "small.weight": "linear", "attn.out_proj.weight": "linear"}
    assert dense == {"dense": "4096 of 4096 groups of 4 inputs keep more than 2 weights",
                     "odd": "its 6 inputs are not a multiple of 4",
                     "tied_a": "its weight is tied to another parameter",
                     "tied_b": "its weight is tied to another parameter",
                     "attn": "nn.MultiheadAttention's input projection is a bare parameter, not a Linear layer"}


def test_conv1d_packs_along_its_input_dim_and_converts_to_the_linear_it_computes(monkeypatch):
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

    layer = Conv1D(64, 128)                      # weight [in=128, out=64]
    with torch.no_grad():
        layer.weight.copy_(two_four_weight(64, 128, seed=5).t())
    model = nn.Sequential(layer)
    packed, dense = semi_structured.plan(model)
    assert (packed, dense) == ({"0.weight": "conv1d"}, {})
    state = model.state_dict()
    tensors = semi_structured.pack_state(state, packed, torch.float32)
    assert tuple(tensors["0.weight" + semi_structured.VALUES].shape) == (64, 64)
    meta = {"dtype": "float16", "layers": {"0.weight": {"shape": [128, 64], "layout": "conv1d"}}}
    back = semi_structured.unpack_state(semi_structured.pack_state(state, packed, torch.float16), meta,
                                        semi_structured.Origin("test", "here"))
    assert torch.equal(back["0.weight"], state["0.weight"].half())

    x = torch.randn(3, 128)
    expected = model(x)
    calls = []
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: calls.append(w.shape) or w)
    two_four.convert(model, ["0"])
    assert type(model[0]) is nn.Linear and calls == [torch.Size([64, 128])]
    assert torch.allclose(model(x), expected, rtol=1e-5, atol=1e-5)  # x @ W vs x @ (W^T)^T: summation order


def test_kernel_fit_reads_each_backends_min_shapes():
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT as Lt
    from torch.sparse import SparseSemiStructuredTensorCUTLASS as Cut

    assert two_four.kernel_fit((64, 128), torch.float16, Cut) is None
    assert two_four.kernel_fit((16, 16), torch.float16, Lt) is None
    assert two_four.kernel_fit((16, 16), torch.float16, Cut) == \
        "[16, 16] is not a multiple of cutlass's [32, 64] for torch.float16"
    assert two_four.kernel_fit((64, 128), torch.float32, Lt) == "cusparselt has no torch.float32 kernels"


def test_sparsify_refuses_without_a_capable_gpu_and_converts_what_fits_past_the_check(monkeypatch):
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    model = Net()
    meta = {"dtype": "float16", "layers": {k: {} for k in semi_structured.plan(model)[0]}}
    with pytest.raises(ConfigError, match="compute capability >= 8.0"):
        semi_structured.sparsify(model, meta, torch.device("cuda"))

    calls = []
    monkeypatch.setattr(two_four, "cuda_support", lambda device=None: None)
    monkeypatch.setattr(two_four, "backend", lambda: SparseSemiStructuredTensorCUTLASS)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured",
                        lambda w: calls.append((tuple(w.shape), w.dtype, w.is_contiguous())) or w)
    report = semi_structured.sparsify(model, meta, torch.device("cpu"))
    assert report == {"converted": ["fit"], "skipped": {
        "small": "[8, 16] is not a multiple of cutlass's [32, 64] for torch.float16",
        "attn.out_proj": "nn.MultiheadAttention reads its weights itself, not through the layer's forward"}}
    assert calls == [((64, 128), torch.float16, True)]
    assert model.fit.weight.dtype == torch.float16 and not model.fit.weight.requires_grad


TEXT = ["dataset=stdlib_text", "model=tiny_lm", "dataset.seq_len=32", "dataset.max_train_sequences=64",
        "dataset.max_val_sequences=16", "trainer.batch_size=16", "trainer.eval_batch_size=16",
        "trainer.pretrain_epochs=0", "trainer.epochs=1", "trainer.max_steps=2", "trainer.progress=false",
        "pruner=semi_structured_2_4", "sparsity=0.5"]


@pytest.fixture(scope="module")
def two_four_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("semi") / "run"
    result = cli("prune", *TEXT, f"hydra.run.dir={out}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a machine without CUDA")
def test_export_refuses_in_one_line_without_cuda(cli, two_four_run, tmp_path):
    result = cli("export", f"checkpoint={two_four_run}", "format=semi_structured", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2 and result.error_lines == [
        "error: format='semi_structured' is not allowed: expected a CUDA device with compute capability >= 8.0 "
        "(torch.sparse.to_sparse_semi_structured) (this machine has no CUDA device; "
        "semi_structured.require_cuda=false writes the portable file here and converts its layers when it is "
        "loaded on such a GPU)"]
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.json").exists()


def test_portable_export_reloads_the_run_and_evaluates_to_its_perplexity(cli, two_four_run, tmp_path):
    from prunecli.checkpoint import load_checkpoint, load_model

    result = cli("export", f"checkpoint={two_four_run}", "format=semi_structured",
                 "semi_structured.require_cuda=false", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    spec = json.loads((tmp_path / "x" / "model.json").read_text())
    mlp = [f"blocks.{i}.{n}.weight" for i in (0, 1) for n in ("attn.out_proj", "mlp.0", "mlp.2")]
    assert sorted(spec["layers"]) == mlp and spec["dtype"] == "float16"
    mha = "nn.MultiheadAttention's input projection is a bare parameter, not a Linear layer"
    assert spec["dense"] == {"blocks.0.attn": mha, "blocks.1.attn": mha,
                             "head": "4096 of 4096 groups of 4 inputs keep more than 2 weights"}

    # The reloaded model is the run's masked model with its 2:4 weights rounded to float16, bit for bit.
    ckpt = load_checkpoint(two_four_run)
    reference = load_model(ckpt).eval()
    with torch.no_grad():
        for key in mlp:
            reference.get_parameter(key).copy_(reference.get_parameter(key).half().float())
    model = semi_structured.load(tmp_path / "x" / "model.safetensors")
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(ids), reference(ids))

    result = cli("evaluate", f"checkpoint={tmp_path / 'x' / 'model.json'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    summary = json.loads((two_four_run / "summary.json").read_text())
    assert report["perplexity"] == pytest.approx(summary["perplexity"], rel=1e-3)
    assert report["per_layer"] == {key: 0.5 for key in mlp} and report["sparsity"] == 0.5

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="compute capability >= 8.0"):
            semi_structured.load(tmp_path / "x" / "model.json", device="cuda")
    (tmp_path / "x" / "model.safetensors").write_bytes(b"\0" + (tmp_path / "x" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        semi_structured.load(tmp_path / "x" / "model.json")


def test_export_of_a_run_without_2of4_layers_is_refused(cli, smoke_checkpoint, tmp_path):
    result = cli("export", f"checkpoint={smoke_checkpoint}", "format=semi_structured",
                 "semi_structured.require_cuda=false", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2 and result.error_lines == [
        "error: format='semi_structured' is not allowed: expected a run pruned with pruner=semi_structured_2_4 or "
        "pruner.target=2:4 (no Linear or Conv1D weight is 2:4 along its input dim)"]


@pytest.mark.parametrize("key, value, allowed", [("dtype", "float32", "one of float16, bfloat16"),
                                                 ("require_cuda", "yes", "true or false"),
                                                 ("atol", -1, "a finite number >= 0")])
def test_options_are_checked(key, value, allowed):
    with pytest.raises(ConfigError, match=allowed):
        semi_structured.check_options({key: value})
    with pytest.raises(ConfigError, match="a key of semi_structured"):
        semi_structured.check_options({"dtyp": "float16"})


def test_example_images_are_cast_to_the_export_dtype_and_token_ids_are_not():
    images = semi_structured._floats_as(torch.zeros(2, 3), torch.float16)
    tokens = semi_structured._floats_as({"input_ids": torch.zeros(2, 3, dtype=torch.long)}, torch.float16)
    assert images.dtype == torch.float16 and tokens["input_ids"].dtype == torch.long


def test_the_gpu_export_path_converts_checks_outputs_and_writes_with_the_device_faked(two_four_run, tmp_path,
                                                                                       monkeypatch):
    """The export as it runs on a capable GPU, with the device check, the device (CPU) and the kernel (identity:
    the dense float16 weight) faked: what it would convert, skip and compare."""
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    from prunecli.checkpoint import load_checkpoint
    from prunecli.export import export

    calls = []
    monkeypatch.setattr(two_four, "cuda_support", lambda device=None: None)
    monkeypatch.setattr(two_four, "gpu", lambda: torch.device("cpu"))
    monkeypatch.setattr(two_four, "backend", lambda: SparseSemiStructuredTensorCUTLASS)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: calls.append(tuple(w.shape)) or w)
    report = export(load_checkpoint(two_four_run), "semi_structured", tmp_path / "m.safetensors")
    mlp = [f"blocks.{i}.mlp.{j}" for i in (0, 1) for j in (0, 2)]
    assert report["converted"] == mlp and calls == [(256, 64), (64, 256)] * 2
    assert set(report["skipped"]) == {"blocks.0.attn.out_proj", "blocks.1.attn.out_proj"}
    # the same float16 weights, dense on both sides: only summation order differs
    assert report["max_abs_diff"] <= 1e-2 and report["atol"] == 1e-2
    assert json.loads((tmp_path / "m.json").read_text())["dtype"] == "float16"

    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w * 2)  # a kernel that is wrong
    with pytest.raises(ConfigError, match=r"sparse and dense float16 outputs agree within semi_structured\.atol=0\.01"
                                          r" \(they differ by"):
        export(load_checkpoint(two_four_run), "semi_structured", tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_a_kernel_failure_during_the_gpu_export_is_one_line(two_four_run, tmp_path, monkeypatch):
    from prunecli.checkpoint import load_checkpoint
    from prunecli.export import export

    def refuse(weight):
        raise RuntimeError("CUDA error: operation not supported\nmore detail")

    monkeypatch.setattr(two_four, "cuda_support", lambda device=None: None)
    monkeypatch.setattr(two_four, "gpu", lambda: torch.device("cpu"))
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", refuse)
    with pytest.raises(ConfigError, match=r"run on this GPU \(converting or running it failed: CUDA error: "
                                          r"operation not supported\)$"):
        export(load_checkpoint(two_four_run), "semi_structured", tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
