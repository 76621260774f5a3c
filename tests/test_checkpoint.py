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
