"""A sparse export's JSON spec and weights are data: payloads, weights outside its directory, forged layer
tables and packed tensors that do not fit them are refused in one line (exit 2 from ``prunecli evaluate``,
CheckpointError from :func:`prunecli.export.sparse.load`), and nothing they name runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _crafted import DELETE, check_evaluate_refuses, pickle_payload, rehash_weights

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.errors import CheckpointError
from prunecli.export import sparse

CASES = {  # spec key, value given the marker path, what the refusal says
    "small_stem_pickle": ("model.config.small_stem", pickle_payload, r"model\.config\.small_stem is a mapping"),
    "unregistered_target": ("model.config._target_", lambda m: "builtins.exec", r"not a registered model builder"),
    "traversal": ("weights", lambda m: "../../etc/passwd", r"weights='\.\./\.\./etc/passwd' is not a bare file name"),
    "newer_version": ("version", lambda m: 2, r"version=2 is newer"),
    "no_sha256": ("sha256", lambda m: DELETE, r"sha256 is missing"),
    "layers_list": ("layers", lambda m: [], r"layers is not a mapping"),
}


@pytest.fixture(scope="module")
def honest_export(smoke_checkpoint, tmp_path_factory):
    """A sparse export of the smoke checkpoint (cnn on digits, 75% unstructured): its directory."""
    ckpt = load_checkpoint(smoke_checkpoint)
    out = tmp_path_factory.mktemp("sparse")
    sparse.export(load_model(ckpt).eval(), ckpt, out / "model.safetensors", {})
    return out


@pytest.fixture
def crafted(honest_export, tmp_path):
    def make(edit):
        marker = tmp_path / "marker"
        folder = shutil.copytree(honest_export, tmp_path / "export")
        spec = folder / "model.json"
        doc = json.loads(spec.read_text())
        edit(doc, marker)
        spec.write_text(json.dumps(doc))
        return folder / "model.safetensors", marker

    return make


def _set(key, make_value):
    def edit(doc, marker):
        *parents, last = key.split(".")
        for part in parents:
            doc = doc[part]
        value = make_value(marker)
        if value is DELETE:
            del doc[last]
        else:
            doc[last] = value
    return edit


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_refuses(crafted, cli, tmp_path, case):
    key, make_value, match = CASES[case]
    path, marker = crafted(_set(key, make_value))
    with pytest.raises(CheckpointError, match=match) as err:
        sparse.load(path)
    assert "\n" not in str(err.value) and not marker.exists()
    check_evaluate_refuses(cli, path, tmp_path, match)
    assert not marker.exists()


@pytest.mark.parametrize("layer, match", [
    ({"shape": [64, -1], "dtype": "float32", "kept": 1}, r"is not \{shape: \[sizes\]"),
    ({"shape": [64, 288], "dtype": "pickle", "kept": 1}, r"is not \{shape: \[sizes\]"),
    ({"shape": [64, 288], "dtype": "float32", "kept": 10**9}, r"is not \{shape: \[sizes\]"),
    ({"shape": [32, 64, 3, 3], "dtype": "float32", "kept": 1},
     r"does not fit its weights: 4\.weight is \[32, 64, 3, 3\] in the weights, \[64, 32, 3, 3\]"),
    ({"shape": [64, 32, 3, 3], "dtype": "float16", "kept": 0}, r"does not match its :values tensor"),
])
def test_a_forged_layer_table_is_refused(crafted, layer, match):
    path, _ = crafted(lambda doc, marker: doc["layers"].update({"4.weight": layer}))
    with pytest.raises(CheckpointError, match=match) as err:
        sparse.load(path)
    assert "\n" not in str(err.value)


def test_a_layer_the_model_lacks_is_refused_before_anything_is_unpacked(crafted):
    path, _ = crafted(lambda doc, marker: doc["layers"].update(
        {"nope.weight": {"shape": [10**6, 10**6], "dtype": "float32", "kept": 0}}))
    with pytest.raises(CheckpointError, match=r"'nope\.weight' is not in the model"):
        sparse.load(path)


@pytest.mark.parametrize("forge, match", [
    (lambda t: t.update({"4.weight:mask": t["4.weight:mask"][:-1]}), r"does not match its :mask tensor: expected"),
    (lambda t: t.update({"4.weight:mask": torch.full_like(t["4.weight:mask"], 255)}),
     r"expected 18432 kept float32 values as the mask says"),
    (lambda t: t.pop("4.weight:values"), r"has no :mask and :values tensors"),
    (lambda t: t.update({"x:values": torch.zeros(2)}), r"layers do not list 'x:values'"),
])
def test_forged_packed_tensors_with_a_matching_hash_are_refused(crafted, cli, tmp_path, forge, match):
    from safetensors.torch import load, save

    path, _ = crafted(lambda doc, marker: None)
    tensors = load(path.read_bytes())
    forge(tensors)
    rehash_weights(path.with_suffix(".json"), save(tensors))
    with pytest.raises(CheckpointError, match=match) as err:
        sparse.load(path)
    assert "\n" not in str(err.value)
    check_evaluate_refuses(cli, path, tmp_path, match)


def test_a_changed_weights_file_fails_its_hash(crafted):
    path, _ = crafted(lambda doc, marker: None)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        sparse.load_state(path)
