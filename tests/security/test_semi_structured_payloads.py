"""A semi-structured export's JSON spec is data: payloads, weights outside its directory, forged layer tables
and packed tensors are refused in one line (exit 2 from ``prunecli evaluate``, CheckpointError from
:func:`prunecli.export.semi_structured.load`), and nothing they name runs or is read."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _crafted import DELETE, check_evaluate_refuses, edit_json, pickle_payload, rehash_weights

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.errors import CheckpointError
from prunecli.export import semi_structured

CASES = {  # spec key, value given the marker path, what the refusal says
    "small_stem_pickle": ("model.config.small_stem", pickle_payload, r"model\.config\.small_stem is a mapping"),
    "unregistered_target": ("model.config._target_", lambda m: "builtins.exec", r"not a registered model builder"),
    "traversal": ("weights", lambda m: "../../etc/passwd", r"weights='\.\./\.\./etc/passwd' is not a bare file name"),
    "newer_version": ("version", lambda m: 2, r"version=2 is newer"),
    "no_sha256": ("sha256", lambda m: DELETE, r"sha256 is missing"),
    "dtype": ("dtype", lambda m: "float64", r"dtype='float64' is not one of float16, bfloat16"),
    "layers_list": ("layers", lambda m: [], r"layers is not a mapping"),
}


@pytest.fixture(scope="module")
def honest_export(smoke_checkpoint, tmp_path_factory):
    """A portable semi-structured export of the smoke checkpoint (cnn on digits) with its Linear weights made
    2:4 by magnitude: its directory."""
    ckpt = load_checkpoint(smoke_checkpoint)
    model = load_model(ckpt).eval()
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
            w = layer.weight
            keep = w.abs().reshape(w.shape[0], -1, 4).topk(2, dim=-1).indices
            mask = torch.zeros(w.shape[0], w.shape[1] // 4, 4, dtype=torch.bool).scatter_(-1, keep, True)
            w.mul_(mask.reshape(w.shape))
    out = tmp_path_factory.mktemp("semi")
    report = semi_structured.export(model, ckpt, out / "model.safetensors", {"require_cuda": False})
    assert report["packed"], report
    return out


@pytest.fixture
def crafted(honest_export, tmp_path):
    def make(key, make_value):
        marker = tmp_path / "marker"
        folder = shutil.copytree(honest_export, tmp_path / "export")
        edit_json(folder / "model.json", key, make_value(marker))
        return folder / "model.safetensors", marker

    return make


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_refuses(crafted, cli, tmp_path, case):
    key, make_value, match = CASES[case]
    path, marker = crafted(key, make_value)
    with pytest.raises(CheckpointError, match=match) as err:
        semi_structured.load(path)
    assert "\n" not in str(err.value) and not marker.exists()
    check_evaluate_refuses(cli, path, tmp_path, match)
    assert not marker.exists()


def _edit_layers(path, edit):
    spec = path.with_suffix(".json")
    doc = json.loads(spec.read_text())
    edit(doc["layers"])
    spec.write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, match", [
    (lambda layers: layers[next(iter(layers))].update(shape=[7, 3]), r"is not \{shape: \[out, in\]"),
    (lambda layers: layers[next(iter(layers))].update(layout="pickle"), r"is not \{shape: \[out, in\]"),
    (lambda layers: layers[next(iter(layers))].update(shape=[8, 8]), r"does not fit its weights: .* is \[8, 8\]"),
    (lambda layers: layers.update({"nope.weight": {"shape": [4, 4], "layout": "linear"}}),
     r"'nope\.weight' is not in the model"),
])
def test_a_forged_layer_table_is_refused(crafted, tmp_path, edit, match):
    path, _ = crafted("version", lambda m: 1)
    _edit_layers(path, edit)
    with pytest.raises(CheckpointError, match=match) as err:
        semi_structured.load(path)
    assert "\n" not in str(err.value)


def test_forged_positions_with_a_matching_hash_are_refused(crafted):
    from safetensors.torch import load, save

    path, _ = crafted("version", lambda m: 1)
    tensors = load(path.read_bytes())
    key = next(k for k in tensors if k.endswith(semi_structured.POSITIONS))
    tensors[key] = torch.zeros_like(tensors[key])   # index 0 twice in every group
    rehash_weights(path.with_suffix(".json"), save(tensors))
    with pytest.raises(CheckpointError, match=r"positions that are not two ascending indices"):
        semi_structured.load(path)


def test_packed_values_of_another_dtype_with_a_matching_hash_are_refused(crafted):
    from safetensors.torch import load, save

    path, _ = crafted("version", lambda m: 1)
    tensors = load(path.read_bytes())
    key = next(k for k in tensors if k.endswith(semi_structured.VALUES))
    tensors[key] = tensors[key].float()
    rehash_weights(path.with_suffix(".json"), save(tensors))
    with pytest.raises(CheckpointError, match=r"does not match its packed tensors in the weights file \(values "):
        semi_structured.load(path)
