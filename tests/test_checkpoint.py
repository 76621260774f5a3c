"""Checkpoints: safetensors + meta.json, verified on load, never unpickled, replaced atomically."""

from __future__ import annotations

import json
import os

import pytest
import torch

from prunecli._flatten import flatten, unflatten
from prunecli.checkpoint import load_checkpoint, save_checkpoint
from prunecli.errors import CheckpointError


def _model_and_masks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    masks = {"0.weight": torch.rand(4, 6) > 0.5, "2.weight": torch.rand(2, 4) > 0.3}
    return model, masks


def _optimizer_state(model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.randn(5, 6)).sum().backward()
    opt.step()
    return opt


def test_round_trip_folds_masks_and_restores_resume_state(tmp_path):
    model, masks = _model_and_masks()
    opt = _optimizer_state(model)
    state = {"optimizer": opt.state_dict(), "progress": {"epoch": 2, "best": 0.5, "dense": {}}}
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={"note": "x"},
                           state=state)
    ck = load_checkpoint(path, with_state=True)
    assert torch.equal(ck.model_state["0.weight"], model.state_dict()["0.weight"] * masks["0.weight"])
    assert torch.equal(ck.model_state["1.running_var"], model.state_dict()["1.running_var"])
    assert all(torch.equal(ck.masks[k], masks[k]) and ck.masks[k].dtype == torch.bool for k in masks)
    assert ck.meta["note"] == "x" and set(ck.meta["files"]) == {"model.safetensors", "masks.safetensors",
                                                                  "state.safetensors"}
    assert ck.state["progress"] == state["progress"]
    fresh = torch.optim.Adam(model.parameters(), lr=1.0)
    fresh.load_state_dict(ck.state["optimizer"])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9) and fresh.param_groups[0]["lr"] == 1e-3
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_flatten_keeps_types():
    obj = {"a": (1, 2.5), 3: [torch.ones(2), None, {"x": "y"}], "n": {}, "t": torch.tensor(True)}
    tensors, skeleton = flatten(obj)
    json.dumps(skeleton)
    back = unflatten(json.loads(json.dumps(skeleton)), tensors)
    assert back["a"] == (1, 2.5) and back[3][1] is None and back[3][2] == {"x": "y"} and back["n"] == {}
    assert torch.equal(back[3][0], torch.ones(2)) and bool(back["t"])
    with pytest.raises(TypeError):
        flatten({"f": object()})


@pytest.mark.parametrize("name", ["model.safetensors", "masks.safetensors", "state.safetensors"])
def test_a_flipped_byte_is_a_checkpoint_error(tmp_path, name):
    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={}, state={"s": 1})
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{name} is corrupt or was modified") as err:
        load_checkpoint(path, with_state=True)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_meta_are_checkpoint_errors(tmp_path):
    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={})
    os.remove(path / "masks.safetensors")
    with pytest.raises(CheckpointError, match="masks.safetensors is missing"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json is unreadable"):
        load_checkpoint(path)
    (path / "meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a prunecli-checkpoint"):
        load_checkpoint(path)


def test_a_run_dir_resolves_to_its_last_checkpoint(tmp_path):
    model, masks = _model_and_masks()
    save_checkpoint(tmp_path / "run" / "checkpoint" / "last", model_state=model.state_dict(), masks=masks, meta={})
    assert load_checkpoint(tmp_path / "run").path == tmp_path / "run" / "checkpoint" / "last"


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path):
    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={"v": 1})
    with pytest.raises(TypeError):  # fails while writing, after the old checkpoint exists
        save_checkpoint(path, model_state=model.state_dict(), masks=masks, meta={"v": 2}, state={"bad": object()})
    assert load_checkpoint(path).meta["v"] == 1
    save_checkpoint(path, model_state=model.state_dict(), masks=masks, meta={"v": 3})
    assert load_checkpoint(path).meta["v"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={"v": 1})
    os.replace(path, tmp_path / "ck.old")  # what a kill after the first rename of replace_dir leaves
    assert load_checkpoint(path).meta["v"] == 1


def test_a_pickle_in_place_of_safetensors_is_rejected_not_loaded(tmp_path):
    import hashlib
    import io

    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={})
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)  # a pickle, with its hash re-recorded as a tamperer would
    (path / "model.safetensors").write_bytes(buffer.getvalue())
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["model.safetensors"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(path)


def test_masks_are_stored_bit_packed_with_their_shapes(tmp_path):
    from safetensors import safe_open

    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={},
                           state={"pruner": {"masks": masks}})
    with safe_open(str(path / "masks.safetensors"), framework="pt") as f:
        meta = f.metadata()
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert json.loads(meta["masks"]) == {"layout": "bits", "shapes": {"0.weight": [4, 6], "2.weight": [2, 4]}}
    assert {k: (v.dtype, tuple(v.shape)) for k, v in stored.items()} == {"0.weight": (torch.uint8, (3,)),
                                                                         "2.weight": (torch.uint8, (1,))}
    with safe_open(str(path / "state.safetensors"), framework="pt") as f:  # the pruner's copy is packed too
        assert f.get_tensor("pruner.masks.0.weight").dtype == torch.uint8
    ck = load_checkpoint(path, with_state=True)
    assert json.loads((path / "meta.json").read_text())["version"] == 2
    for again in range(3):  # byte for byte the same each time (a resumed run's files are compared so)
        other = save_checkpoint(tmp_path / f"ck{again}", model_state=model.state_dict(), masks=masks, meta={},
                                state={"pruner": {"masks": masks}})
        for name in ("masks.safetensors", "state.safetensors"):
            assert (other / name).read_bytes() == (path / name).read_bytes()
    for key, mask in masks.items():
        assert ck.masks[key].dtype == torch.bool and torch.equal(ck.masks[key], mask)
        assert torch.equal(ck.state["pruner"]["masks"][key], mask)


def test_folded_weights_hold_positive_zeros_where_pruned(tmp_path):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, float("inf"), 2.0], [3.0, -4.0, -5.0]]))
    mask = torch.tensor([[False, False, True], [True, False, True]])
    ck = load_checkpoint(save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks={"weight": mask},
                                         meta={}))
    assert ck.model_state["weight"].view(torch.int32).tolist() == \
        torch.tensor([[0.0, 0.0, 2.0], [3.0, 0.0, -5.0]]).view(torch.int32).tolist()


def _write_version_1(path, model, masks, state):
    """A checkpoint as prunecli wrote it before bit-packed masks: bool tensors, meta.json version 1."""
    import hashlib

    from safetensors.torch import save

    path.mkdir()
    tensors, skeleton = flatten(state)  # bool tensors stored as they are
    blobs = {"model.safetensors": save({k: v * masks[k] if k in masks else v for k, v in model.state_dict().items()}),
             "masks.safetensors": save({k: m.contiguous() for k, m in masks.items()}),
             "state.safetensors": save(tensors, metadata={"skeleton": json.dumps(skeleton)})}
    for name, data in blobs.items():
        (path / name).write_bytes(data)
    files = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    (path / "meta.json").write_text(json.dumps({"format": "prunecli-checkpoint", "version": 1, "files": files}))
    return path


def test_a_version_1_checkpoint_with_bool_masks_still_loads(tmp_path):
    model, masks = _model_and_masks()
    path = _write_version_1(tmp_path / "old", model, masks, {"pruner": {"masks": masks, "step": 3}})
    ck = load_checkpoint(path, with_state=True)
    for key, mask in masks.items():
        assert ck.masks[key].dtype == torch.bool and torch.equal(ck.masks[key], mask)
        assert torch.equal(ck.state["pruner"]["masks"][key], mask)
    assert ck.state["pruner"]["step"] == 3
    assert torch.equal(ck.model_state["0.weight"], model.state_dict()["0.weight"] * masks["0.weight"])


def _rewrite_masks(path, tensors, metadata):
    """Replace masks.safetensors and re-record its hash, as anyone who edits a checkpoint can."""
    import hashlib

    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    (path / "masks.safetensors").write_bytes(data)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["masks.safetensors"] = hashlib.sha256(data).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))


PACKED = {"0.weight": torch.zeros(3, dtype=torch.uint8), "2.weight": torch.zeros(1, dtype=torch.uint8)}
SHAPES = {"0.weight": [4, 6], "2.weight": [2, 4]}


def _record(layout="bits", **shapes):
    return {"masks": json.dumps({"layout": layout, "shapes": {**SHAPES, **shapes}})}


MALFORMED_MASKS = {
    "short": ({**PACKED, "0.weight": torch.zeros(2, dtype=torch.uint8)}, _record(),
              r"malformed: '0\.weight': expected 3 packed bytes"),
    "float_bytes": ({**PACKED, "0.weight": torch.zeros(3)}, _record(), r"expected 3 packed bytes \(uint8, 1-D\)"),
    "other_shape": (PACKED, _record(**{"0.weight": [6, 4]}),
                    r"holds a mask of '0\.weight' of shape \[6, 4\], which is not a weight of that shape"),
    "not_a_weight": ({**PACKED, "x": torch.zeros(1, dtype=torch.uint8)}, _record(x=[8]),
                     r"mask of 'x' of shape \[8\], which is not a weight"),
    "no_shapes": (PACKED, {"masks": json.dumps({"layout": "bits"})}, r"shapes are not a JSON object"),
    "bad_json": (PACKED, {"masks": "{"}, r"masks metadata is not a JSON object"),
    "list": (PACKED, {"masks": "[]"}, r"masks metadata is not a JSON object"),
    "negative": (PACKED, _record(**{"0.weight": [-4, 6]}), r"shapes are not a JSON object"),
    "missing_shape": (PACKED, {"masks": json.dumps({"layout": "bits", "shapes": {"0.weight": [4, 6]}})},
                      r"'2\.weight' is in its tensors or its shapes, not both"),
    "layout": (PACKED, _record(layout="zstd"), r"layout='zstd': expected 'bits'"),
    "v1_not_bool": (PACKED, {}, r"holds '0\.weight' as torch\.uint8: expected bool masks"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MASKS))
def test_malformed_packed_masks_are_one_line_checkpoint_errors(tmp_path, case):
    tensors, metadata, match = MALFORMED_MASKS[case]
    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={})
    _rewrite_masks(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and "masks.safetensors" in str(err.value)


def test_a_packed_pruner_state_with_a_wrong_shape_is_a_checkpoint_error(tmp_path):
    import hashlib

    model, masks = _model_and_masks()
    path = save_checkpoint(tmp_path / "ck", model_state=model.state_dict(), masks=masks, meta={},
                           state={"pruner": {"masks": masks}})
    from safetensors.torch import load, save

    data = (path / "state.safetensors").read_bytes()
    skeleton = {"pruner": {"masks": {"0.weight": {"__bits__": ["pruner.masks.0.weight", [40, 6]]},
                                     "2.weight": {"__bits__": ["pruner.masks.2.weight", [2, 4]]}}}}
    data = save(load(data), metadata={"skeleton": json.dumps(skeleton)})
    (path / "state.safetensors").write_bytes(data)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["state.safetensors"] = hashlib.sha256(data).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"state\.safetensors is corrupt: expected 30 packed bytes"):
        load_checkpoint(path, with_state=True)
