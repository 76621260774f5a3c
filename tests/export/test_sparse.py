"""``format=sparse``: bit-packed masks plus kept values, bit-identical round trips, the size goals, refusal of
a model it would not shrink, and ``prunecli evaluate`` of the export giving the checkpoint's numbers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save

from prunecli.errors import ConfigError
from prunecli.export import sparse
from prunecli.models.spec import Origin

ORIGIN = Origin("sparse export", "test")


def _masks(shape, pattern, seed=0):
    """A keep mask of ``shape``: ``("unstructured", s)``, ``("2:4",)`` along the last dim, ``("4x1", s)`` blocks."""
    g = torch.Generator().manual_seed(seed)
    if pattern[0] == "unstructured":
        return torch.rand(shape, generator=g) >= pattern[1]
    if pattern[0] == "2:4":
        keep = torch.rand(*shape[:-1], shape[-1] // 4, 4, generator=g).topk(2, dim=-1).indices
        return torch.zeros(*shape[:-1], shape[-1] // 4, 4, dtype=torch.bool).scatter_(-1, keep, True).reshape(shape)
    rows = torch.rand(shape[0] // 4, shape[1], generator=g) >= pattern[1]
    return rows.repeat_interleave(4, dim=0)


def _state(dtype, pattern):
    g = torch.Generator().manual_seed(1)
    state = {"fc1.weight": torch.randn(256, 512, generator=g), "fc1.bias": torch.randn(256, generator=g),
             "fc2.weight": torch.randn(64, 256, generator=g), "norm.running_var": torch.rand(64, generator=g),
             "norm.num_batches_tracked": torch.tensor(7)}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    masks = {"fc1.weight": _masks((256, 512), pattern), "fc2.weight": _masks((64, 256), pattern, seed=2)}
    for key, mask in masks.items():
        state[key] = state[key].masked_fill(~mask, 0)
    return state, masks


def _bits(t):
    return t.contiguous().view(torch.uint8) if t.is_floating_point() else t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("pattern", [("unstructured", 0.9), ("unstructured", 0.5), ("2:4",), ("4x1", 0.75)],
                         ids=["u90", "u50", "2:4", "4x1"])
def test_round_trip_is_bit_identical(dtype, pattern):
    state, masks = _state(dtype, pattern)
    tensors, layers = sparse.pack_state(state, masks)
    assert set(tensors) == {"fc1.weight:mask", "fc1.weight:values", "fc2.weight:mask", "fc2.weight:values",
                            "fc1.bias", "norm.running_var", "norm.num_batches_tracked"}
    assert tensors["fc1.weight:mask"].dtype == torch.uint8 and tensors["fc1.weight:mask"].numel() == 256 * 512 // 8
    assert layers["fc1.weight"] == {"shape": [256, 512], "dtype": str(dtype).removeprefix("torch."),
                                    "kept": int(masks["fc1.weight"].sum())}
    back, back_masks = sparse.unpack_state(tensors, layers, ORIGIN)
    assert set(back) == set(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key
        assert torch.equal(_bits(back[key]), _bits(value)), key
    assert all(torch.equal(back_masks[k], masks[k]) for k in masks)


@pytest.mark.parametrize("pattern, goal", [(("unstructured", 0.9), 0.15), (("2:4",), 0.6),
                                           (("unstructured", 0.95), 0.1), (("4x1", 0.75), 0.3)])
def test_file_size_goals_in_fp32(pattern, goal):
    state, masks = _state(torch.float32, pattern)
    ratio = len(save(sparse.pack_state(state, masks)[0])) / len(save(state))
    assert ratio <= goal
    assert ratio >= 1 - (pattern[1] if len(pattern) > 1 else 0.5)  # the kept values are all there


def test_unpack_refuses_tensors_that_do_not_fit_the_spec():
    state, masks = _state(torch.float32, ("unstructured", 0.9))
    tensors, layers = sparse.pack_state(state, masks)
    cases = [
        ({**tensors, "fc1.weight:values": tensors["fc1.weight:values"][:-1]}, layers, r"expected \d+ kept float32"),
        ({**tensors, "fc1.weight:values": tensors["fc1.weight:values"].half()}, layers, r"got \[\d+\] float16"),
        ({**tensors, "fc1.weight:mask": tensors["fc1.weight:mask"][:-1]}, layers, r"expected 16384 packed bytes"),
        ({k: v for k, v in tensors.items() if k != "fc2.weight:mask"}, layers, r"has no :mask and :values"),
        ({**tensors, "x.weight:values": torch.zeros(3)}, layers, r"layers do not list 'x\.weight:values'"),
        (tensors, {**layers, "fc1.weight": {**layers["fc1.weight"], "kept": 3}}, r"and kept=3"),
    ]
    from prunecli.errors import CheckpointError

    for bad_tensors, bad_layers, match in cases:
        with pytest.raises(CheckpointError, match=match) as err:
            sparse.unpack_state(bad_tensors, bad_layers, ORIGIN)
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def sparse_export(cli, smoke_checkpoint, tmp_path_factory):
    """The smoke checkpoint (cnn on digits, 75% unstructured) exported with ``format=sparse`` by the CLI."""
    out = tmp_path_factory.mktemp("sparse")
    result = cli("export", f"checkpoint={smoke_checkpoint}", "format=sparse", f"output={out / 'm.safetensors'}",
                    f"hydra.run.dir={out / 'run'}")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "(sparse);" in result.stdout and "x the dense state's" in result.stdout
    return out / "m.safetensors"


def test_the_export_loads_back_to_the_checkpoints_weights_bit_for_bit(smoke_checkpoint, sparse_export):
    from prunecli.checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(smoke_checkpoint)
    state, masks = sparse.load_state(sparse_export)
    assert set(state) == set(ckpt.model_state) and set(masks) == set(ckpt.masks)
    for key, value in ckpt.model_state.items():
        assert torch.equal(state[key], value) and torch.equal(_bits(state[key]), _bits(value)), key
    assert all(torch.equal(masks[k], ckpt.masks[k]) for k in masks)
    model, reference = sparse.load(sparse_export.with_suffix(".json")), load_model(ckpt)
    assert not model.training
    for (key, value), (_, ref) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(_bits(value), _bits(ref)), key
    spec = json.loads(sparse_export.with_suffix(".json").read_text())
    assert spec["format"] == "prunecli-sparse" and spec["bytes"] == sparse_export.stat().st_size
    assert spec["bytes"] < 0.45 * spec["bytes_dense"]  # 75% pruned: 0.28x of the masked weights, biases dense


def test_evaluate_of_the_export_reports_what_the_checkpoint_reports(cli, smoke_checkpoint, sparse_export, tmp_path):
    results = []
    for path in (smoke_checkpoint, sparse_export):
        result = cli("evaluate", f"checkpoint={path}", "latency.repeats=1", "latency.warmup=0",
                     f"hydra.run.dir={tmp_path / path.name}")
        assert result.exit_code == 0, (result.stderr, result.exception)
        results.append(json.loads((tmp_path / path.name / "evaluate.json").read_text()))
    checkpoint, exported = results
    for key in ("accuracy", "loss", "samples", "sparsity", "per_layer", "params_nonzero", "params_total", "flops",
                "flops_effective", "unit_sparsity", "per_layer_kind", "compact"):
        assert exported[key] == checkpoint[key], key
    assert checkpoint["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_a_model_it_would_not_shrink_is_refused_in_one_line(smoke_checkpoint, tmp_path):
    from prunecli.checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(smoke_checkpoint)
    model = load_model(ckpt)
    ckpt.masks = {}
    with pytest.raises(ConfigError, match=r"^format='sparse' is not allowed: expected a pruned checkpoint.*"
                                          r"it has no masks") as err:
        sparse.export(model, ckpt, tmp_path / "m.safetensors", {})
    ckpt.masks = {k: torch.rand(v.shape) >= 0.02 for k, v in load_checkpoint(smoke_checkpoint).masks.items()}
    with pytest.raises(ConfigError, match=r"9\d\.\d% of its masked weights are kept, so the file would be "
                                          r"1\.0\dx the dense state; use format=dense") as err:
        sparse.export(model, ckpt, tmp_path / "m.safetensors", {})
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"^sparse\.level="):
        sparse.check_options({"level": 3})


def test_the_cli_refuses_a_dense_checkpoint_with_exit_code_2(cli, smoke_checkpoint, tmp_path):
    from prunecli.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(smoke_checkpoint)
    dense = save_checkpoint(tmp_path / "dense", model_state=ckpt.model_state,
                            masks={k: torch.ones_like(m) for k, m in ckpt.masks.items()}, meta=ckpt.meta)
    result = cli("export", f"checkpoint={dense}", "format=sparse", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.error_lines[-1].startswith("error: format='sparse' is not allowed: expected a model pruned far "
                                             "enough"), result.stderr
    assert "100.0% of its masked weights are kept, so the file would be 1.0" in result.error_lines[-1]
    assert not (tmp_path / "run" / "model.safetensors").exists()
