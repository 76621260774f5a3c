"""A checkpoint's meta.json is data: payloads in its model and dataset nodes, huge sizes and malformed JSON are
refused in one line (exit 2 from the CLI, CheckpointError from Python), and nothing they name runs."""

from __future__ import annotations

import json

import pytest
from _crafted import DELETE, copy_dir, edit_json, pickle_payload, write_text_payload

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.errors import CheckpointError

SECRET = "s3cr3t-value-from-the-environment"

# (meta.json key, value given the marker path, what the refusal says); all of them concern the model
MODEL_CASES = {
    "small_stem_pickle": ("model.config.small_stem", pickle_payload, r"model\.config\.small_stem is a mapping"),
    "width_write_text": ("model.config.hidden", write_text_payload, r"model\.config\.hidden is a mapping"),
    "list_element": ("model.config.channels.0", write_text_payload, r"model\.config\.channels\[0\] is a mapping"),
    "whole_node": ("model.config", write_text_payload, r"model\.config\.self is a mapping"),
    "unregistered_target": ("model.config._target_", lambda m: "pathlib.Path.write_text",
                            r"_target_='pathlib\.Path\.write_text' is not a registered model builder"),
    "interpolation": ("model.config.name", lambda m: "${oc.env:PRUNECLI_TEST_SECRET}",
                      r"model\.config\.name='\$\{oc\.env:PRUNECLI_TEST_SECRET\}' is an interpolation"),
    "huge_width": ("model.config.channels", lambda m: [4_000_000_000, 64], r"over the limit of 20,000,000,000"),
    "float_width": ("model.config.channels", lambda m: [4e9, 64], r"model\.config does not build"),
    "other_width": ("model.config.channels", lambda m: [16, 64],
                    r"does not fit its weights: 0\.weight is \[32, 1, 3, 3\] in the weights, \[16, 1, 3, 3\]"),
    "huge_input": ("model.image_size", lambda m: 100_000, r"model\.image_size=100000 is not allowed"),
    "string_size": ("model.in_channels", lambda m: "1", r"model\.in_channels='1' is not allowed"),
    "bool_size": ("model.num_classes", lambda m: True, r"model\.num_classes=True is not allowed"),
    "no_model": ("model", lambda m: DELETE, r"checkpoint model is missing or null"),
    "model_list": ("model", lambda m: [], r"checkpoint model is a list"),
    "config_list": ("model.config", lambda m: [], r"model\.config is a list"),
    "hydra_key": ("model.config._recursive_", lambda m: True, r"model\.config\._recursive_ is not a setting name"),
}
DATASET_CASES = {
    "dataset_pickle": ("config.dataset.seed", pickle_payload, r"config\.dataset\.seed is a mapping"),
    "dataset_node": ("config.dataset", write_text_payload, r"config\.dataset\.self is a mapping"),
    "dataset_target": ("config.dataset._target_", lambda m: "os.system",
                       r"_target_='os\.system' is not a registered dataset builder"),
    "dataset_interpolation": ("config.dataset.name", lambda m: "x${oc.env:PRUNECLI_TEST_SECRET}",
                              r"is an interpolation"),
    "no_config": ("config", lambda m: DELETE, r"config\.dataset is missing"),
}
MALFORMED = {  # the whole meta.json replaced
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, r"meta\.json is unreadable: JSON nested too deeply"),
    "top_level_list": ("[]", r"is not a prunecli-checkpoint sidecar"),
    "not_json": ("{", r"meta\.json is unreadable"),
}


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("PRUNECLI_TEST_SECRET", SECRET)


@pytest.fixture
def crafted(smoke_checkpoint, tmp_path):
    """``crafted(key, make_value) -> (checkpoint dir, marker)``: the smoke checkpoint with meta.json's ``key``
    set to ``make_value(marker)``."""

    def make(key, make_value):
        marker = tmp_path / "marker"
        path = copy_dir(smoke_checkpoint, tmp_path / "ckpt")
        edit_json(path / "meta.json", key, make_value(marker))
        return path, marker

    return make


def refused_in_one_line(result, match, marker=None):
    import re

    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.exception is None
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert marker is None or not marker.exists()


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_python_api_refuses_model_payloads(crafted, case):
    key, make_value, match = MODEL_CASES[case]
    path, marker = crafted(key, make_value)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(load_checkpoint(path))
    assert "\n" not in str(err.value) and SECRET not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("command", [["evaluate"], ["export", "format=dense"], ["export", "format=compact"]],
                         ids=["evaluate", "dense", "compact"])
@pytest.mark.parametrize("case", ["small_stem_pickle", "width_write_text", "list_element", "unregistered_target",
                                  "interpolation", "huge_width", "no_model"])
def test_cli_refuses_model_payloads(cli, crafted, tmp_path, case, command):
    key, make_value, match = MODEL_CASES[case]
    path, marker = crafted(key, make_value)
    result = cli(*command, f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}")
    refused_in_one_line(result, match, marker)
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_evaluate_refuses_dataset_payloads(cli, crafted, tmp_path, case):
    key, make_value, match = DATASET_CASES[case]
    path, marker = crafted(key, make_value)
    result = cli("evaluate", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}")
    refused_in_one_line(result, match, marker)
    assert not (tmp_path / "out" / "evaluate.json").exists()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_meta_json_is_one_line(cli, smoke_checkpoint, tmp_path, case):
    text, match = MALFORMED[case]
    path = copy_dir(smoke_checkpoint, tmp_path / "ckpt")
    (path / "meta.json").write_text(text)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    refused_in_one_line(cli("evaluate", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}"), match)


@pytest.mark.parametrize("key, value, match", [
    ("version", "1", r"version='1' is not a format version"),
    ("version", 99, r"version=99 is newer than this prunecli reads"),
    ("config", "digits", r"checkpoint config is a str: expected a mapping"),
    ("files", [], r"is not a prunecli-checkpoint sidecar"),
])
def test_wrong_field_types_in_meta_json_are_one_line(crafted, key, value, match):
    path, _ = crafted(key, lambda m: value)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_the_weights_file_is_still_hash_checked_before_any_build(crafted):
    path, _ = crafted("model.config.channels", lambda m: [4_000_000_000, 64])
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_checkpoint(path)
    assert json.loads((path / "meta.json").read_text())["model"]["config"]["channels"][0] == 4_000_000_000


def test_the_element_limit_applies_to_honest_models_too(smoke_checkpoint, monkeypatch):
    from prunecli.errors import ConfigError

    ckpt = load_checkpoint(smoke_checkpoint)
    monkeypatch.setenv("PRUNECLI_MAX_ELEMENTS", "50000")
    with pytest.raises(CheckpointError, match=r"names a model of 53,\d{3} elements, over the limit of 50,000"):
        load_model(ckpt)
    monkeypatch.setenv("PRUNECLI_MAX_ELEMENTS", "lots")
    with pytest.raises(ConfigError, match="PRUNECLI_MAX_ELEMENTS='lots' is not allowed"):
        load_model(ckpt)
    monkeypatch.setenv("PRUNECLI_MAX_ELEMENTS", "60000")
    assert sum(t.numel() for t in load_model(ckpt).state_dict().values()) <= 60000


def test_masks_that_do_not_fit_the_weights_are_refused(smoke_checkpoint, tmp_path):
    import hashlib

    import torch
    from safetensors.torch import save

    path = copy_dir(smoke_checkpoint, tmp_path / "ckpt")
    data = save({"0.weight": torch.ones(3, 3, dtype=torch.bool)})  # re-hashed, as anyone can
    (path / "masks.safetensors").write_bytes(data)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["masks.safetensors"] = hashlib.sha256(data).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"checkpoint masks hold '0\.weight', which is not a weight of that"):
        load_model(load_checkpoint(path))


def test_a_checkpoint_cannot_make_evaluate_download(cli, crafted, tmp_path, monkeypatch):
    import prunecli.data.torchvision_datasets as tvd

    calls = []
    monkeypatch.setattr(tvd, "_load", lambda name, root, download, *rest: calls.append(download) or
                        tvd._root(root, download, "no files"))
    node = {"_target_": "prunecli.data.build_dataset", "name": "mnist", "root": str(tmp_path / "fetched"),
            "download": True}
    path, _ = crafted("config.dataset", lambda marker: node)
    result = cli("evaluate", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}")
    refused_in_one_line(result, "dataset.root=.*an existing folder")
    assert calls == [False] and not (tmp_path / "fetched").exists()   # download=true from a file is ignored


@pytest.mark.parametrize("kind", ["link_to_dev_zero", "link_outside", "fifo"])
def test_checkpoint_files_must_be_regular_files(smoke_checkpoint, tmp_path, kind):
    import os

    path = copy_dir(smoke_checkpoint, tmp_path / "ckpt")
    target = path / "model.safetensors"
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero" if kind == "link_to_dev_zero" else outside)
    with pytest.raises(CheckpointError, match="link|regular file") as err:
        load_checkpoint(path)   # returns at once: no read of /dev/zero, no blocking on the FIFO
    assert "\n" not in str(err.value)


def test_a_files_dataset_node_cannot_ask_for_gigabytes(cli, crafted, tmp_path):
    node = {"_target_": "prunecli.data.build_dataset", "name": "fake", "num_samples": 5_000_000}
    path, _ = crafted("config.dataset", lambda marker: node)
    result = cli("evaluate", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}")
    refused_in_one_line(result, "num_samples=5000000 is more than a file may ask for")


def _forge_masks(path, edit):
    """Rewrite the checkpoint's bit-packed masks.safetensors through ``edit(tensors, metadata)`` and re-hash it."""
    import hashlib

    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path / "masks.safetensors"), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    edit(tensors, metadata)
    data = save(tensors, metadata=metadata)
    (path / "masks.safetensors").write_bytes(data)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["masks.safetensors"] = hashlib.sha256(data).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))


def _record(metadata, **changes):
    record = json.loads(metadata["masks"])
    for key, value in changes.items():
        if key == "layout":
            record["layout"] = value
        else:
            record["shapes"][key.replace("_", ".")] = value
    metadata["masks"] = json.dumps(record)


PACKED_MASKS = {  # a forged bit-packed masks file (re-hashed): what the refusal says
    "short_bytes": (lambda t, m: t.update({"4.weight": t["4.weight"][:-1]}),
                    r"masks\.safetensors is malformed: '4\.weight': expected 2304 packed bytes"),
    "other_shape": (lambda t, m: _record(m, **{"4_weight": [32, 64, 3, 3]}),
                    r"holds a mask of '4\.weight' of shape \[32, 64, 3, 3\], which is not a weight of that shape"),
    "huge_shape": (lambda t, m: _record(m, **{"4_weight": [10**12]}),
                   r"mask of '4\.weight' of shape \[1000000000000\]"),
    "deep_json": (lambda t, m: m.update(masks="[" * 100_000), r"masks metadata is not a JSON object"),
    "unknown_layout": (lambda t, m: _record(m, layout="pickle"), r"layout='pickle': expected 'bits'"),
}


@pytest.mark.parametrize("command", [["evaluate"], ["export", "format=sparse"]], ids=["evaluate", "sparse"])
@pytest.mark.parametrize("case", sorted(PACKED_MASKS))
def test_forged_packed_masks_are_refused_in_one_line(cli, smoke_checkpoint, tmp_path, case, command):
    edit, match = PACKED_MASKS[case]
    path = copy_dir(smoke_checkpoint, tmp_path / "ckpt")
    _forge_masks(path, edit)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    refused_in_one_line(cli(*command, f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}"), match)
