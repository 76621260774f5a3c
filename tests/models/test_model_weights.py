"""Users' weights files load safely: safetensors and state-dict .pt files only, never a pickled object."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from prunecli.errors import ConfigError
from prunecli.models import build_model


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def trained():
    torch.manual_seed(1)
    return build_model("cnn", in_channels=1, image_size=8)


def test_safetensors_round_trip(tmp_path, trained):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    loaded = build_model("cnn", in_channels=1, image_size=8, weights=str(path))
    assert _same_weights(loaded, trained)


@pytest.mark.parametrize("wrap", [False, True])
def test_state_dict_pt_round_trip(tmp_path, trained, wrap):
    path = tmp_path / "w.pt"
    state = trained.state_dict()
    torch.save({"state_dict": state, "epoch": 3} if wrap else state, path)
    loaded = build_model("cnn", in_channels=1, image_size=8, weights=path)
    assert _same_weights(loaded, trained)


def test_pickled_module_is_refused(tmp_path, trained):
    path = tmp_path / "model.pt"
    torch.save(trained, path)  # a whole nn.Module: loading it would run arbitrary unpickling
    with pytest.raises(ConfigError) as err:
        build_model("cnn", in_channels=1, image_size=8, weights=path)
    assert err.value.key == "model.weights"
    assert str(path) in str(err.value)
    assert "refused" in str(err.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(ConfigError) as err:
        build_model("cnn", weights=str(path))
    assert (err.value.key, err.value.value) == ("model.weights", str(path))
    assert "no such file" in str(err.value)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ConfigError) as err:
        build_model("cnn", weights=str(path))
    assert err.value.key == "model.weights"


def test_mismatched_keys_are_named(tmp_path):
    path = tmp_path / "mlp.safetensors"
    save_file(build_model("mlp", in_channels=1, image_size=8).state_dict(), str(path))
    with pytest.raises(ConfigError) as err:
        build_model("cnn", in_channels=1, image_size=8, weights=str(path))
    message = str(err.value)
    assert err.value.key == "model.weights" and str(path) in message
    assert "missing keys 0.weight, 1.running_mean, 1.running_var, 1.num_batches_tracked, 4.weight (+7 more)" in message
    assert "unexpected keys 3.bias, 3.weight" in message and "wrong shapes 1.weight (256, 64) vs (32,)" in message


def test_another_head_keeps_its_fresh_init(tmp_path, trained):
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(0)
    fresh = build_model("cnn", in_channels=1, image_size=8, num_classes=5).state_dict()
    torch.manual_seed(0)
    loaded = build_model("cnn", in_channels=1, image_size=8, num_classes=5, weights=path).state_dict()
    source = trained.state_dict()
    assert torch.equal(loaded["12.weight"], fresh["12.weight"]) and torch.equal(loaded["12.bias"], fresh["12.bias"])
    assert all(torch.equal(loaded[k], source[k]) for k in loaded if not k.startswith("12."))


def test_non_state_dict_content_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ConfigError) as err:
        build_model("cnn", weights=path)
    assert "holds a list" in str(err.value)
