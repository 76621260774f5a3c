"""A compact export's JSON spec is data: payloads, weights outside its directory, huge sizes, malformed removal
plans and malformed JSON are refused in one line (exit 2 from ``prunecli evaluate``, CheckpointError from
:func:`prunecli.export.compact.load`), and nothing they name runs or is read."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest
from _crafted import DELETE, edit_json, npy_bytes, pickle_payload, rehash_weights, write_text_payload

from prunecli.checkpoint import load_checkpoint
from prunecli.errors import CheckpointError
from prunecli.export import compact, export

CASES = {  # spec key, value given the marker path, what the refusal says
    "small_stem_pickle": ("model.config.small_stem", pickle_payload, r"model\.config\.small_stem is a mapping"),
    "width_write_text": ("model.config.channels.1", write_text_payload, r"model\.config\.channels\[1\] is a mapping"),
    "unregistered_target": ("model.config._target_", lambda m: "builtins.exec", r"not a registered model builder"),
    "interpolation": ("model.config.name", lambda m: "${oc.env:HOME}", r"is an interpolation"),
    "huge_width": ("model.config.channels", lambda m: [32, 4_000_000_000], r"over the limit"),
    "traversal": ("weights", lambda m: "../../etc/passwd", r"weights='\.\./\.\./etc/passwd' is not a bare file name"),
    "subdir": ("weights", lambda m: "sub/model.safetensors", r"is not a bare file name"),
    "dotdot": ("weights", lambda m: "..", r"is not a bare file name"),
    "weights_number": ("weights", lambda m: 7, r"weights=7 is not a bare file name"),
    "string_version": ("version", lambda m: "2", r"version='2' is not a format version"),
    "newer_version": ("version", lambda m: 3, r"version=3 is newer"),
    "no_model": ("model", lambda m: DELETE, r"compact export model is missing or null"),
    "model_list": ("model", lambda m: [], r"compact export model is a list"),
    "no_sha256": ("sha256", lambda m: DELETE, r"sha256 is missing"),
    "history_string": ("history", lambda m: "x", r"history is not a list"),
    "history_entry": ("history", lambda m: [["0", "yes", [0]]], r"history\[0\] is not \[layer FQN, true\|false"),
    "history_name": ("history", lambda m: [["nope", True, [0]]], r"history\[0\] names 'nope', which is not a layer"),
    "cuts_negative": ("cuts", lambda m: [["0.weight", 0, [-1]]], r"cuts\[0\] is not \[parameter FQN, dim"),
    "cuts_bool_dim": ("cuts", lambda m: [["0.weight", True, [0]]], r"cuts\[0\] is not \[parameter FQN, dim"),
    "cuts_name": ("cuts", lambda m: [["__class__.weight", 0, [0]]], r"cuts\[0\] names '__class__\.weight'"),
    "cuts_range": ("cuts", lambda m: [["0.weight", 0, [10**6]]], r"cuts\[0\] names '0\.weight' dim 0, which is not"),
    "cuts_dim": ("cuts", lambda m: [["0.weight", 9, [0]]], r"cuts\[0\] names '0\.weight' dim 9"),
    "dataset_payload": ("dataset.seed", pickle_payload, None),  # not read by compact.load; evaluate refuses it
}


@pytest.fixture(scope="module")
def honest_export(channel_checkpoint, tmp_path_factory):
    """A compact export of the channel-pruned checkpoint (cnn on digits): its directory."""
    out = tmp_path_factory.mktemp("compact")
    export(load_checkpoint(channel_checkpoint), "compact", out / "model.safetensors")
    return out


@pytest.fixture
def crafted(honest_export, tmp_path):
    """``crafted(key, make_value) -> (model.safetensors path, marker)``: a copy with the spec's key replaced."""

    def make(key, make_value):
        marker = tmp_path / "marker"
        folder = shutil.copytree(honest_export, tmp_path / "export")
        edit_json(folder / "model.json", key, make_value(marker))
        return folder / "model.safetensors", marker

    return make


def check_cli(cli, path, tmp_path, match, marker=None):
    result = cli("evaluate", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'out'}")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.stderr
    assert "Traceback" not in result.stderr and "root:" not in result.stdout
    assert marker is None or not marker.exists()
    assert not (tmp_path / "out" / "evaluate.json").exists()


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][2]))
def test_compact_load_refuses(crafted, cli, tmp_path, case):
    key, make_value, match = CASES[case]
    path, marker = crafted(key, make_value)
    with pytest.raises(CheckpointError, match=match) as err:
        compact.load(path)
    assert "\n" not in str(err.value) and not marker.exists()
    check_cli(cli, path, tmp_path, match, marker)


def test_evaluate_refuses_the_dataset_payload_of_a_compact_export(crafted, cli, tmp_path):
    path, marker = crafted("dataset.seed", pickle_payload)
    compact.load(path)  # the model is honest
    check_cli(cli, path, tmp_path, r"compact export config\.dataset\.seed is a mapping", marker)


def test_an_absolute_weights_path_with_a_matching_hash_is_refused(crafted, tmp_path):
    path, _ = crafted("version", lambda m: 2)
    outside = tmp_path / "elsewhere" / "w.safetensors"
    outside.parent.mkdir()
    shutil.copy(path, outside)
    rehash_weights(path.with_suffix(".json"), outside.read_bytes(), name=str(outside))
    recorded = json.loads(path.with_suffix(".json").read_text())["sha256"]
    assert recorded == hashlib.sha256(outside.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match=r"weights='/.* is not a bare file name"):
        compact.load(path)


def test_a_weights_link_out_of_the_directory_is_refused(crafted, tmp_path):
    path, _ = crafted("version", lambda m: 2)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(path, outside)
    (path.parent / "link.safetensors").symlink_to(outside)
    rehash_weights(path.with_suffix(".json"), outside.read_bytes(), name="link.safetensors")
    with pytest.raises(CheckpointError, match=r"weights='link\.safetensors' is a link out of the spec's directory"):
        compact.load(path)


def test_a_weights_file_that_is_not_safetensors_but_matches_the_hash_is_refused(crafted, cli, tmp_path):
    path, _ = crafted("version", lambda m: 2)
    rehash_weights(path.with_suffix(".json"), npy_bytes())
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a safetensors file") as err:
        compact.load(path)
    assert "\n" not in str(err.value)
    rehash_weights(path.with_suffix(".json"), b"\x08" + b"\x00" * 7 + b"[1, 2, 3]")
    with pytest.raises(CheckpointError, match=r"is not a safetensors file"):
        compact.load(path)


@pytest.mark.parametrize("text, match", [
    ("[" * 100_000 + "]" * 100_000, r"unreadable: JSON nested too deeply"),
    ("[]", r"is not a prunecli-compact spec"),
    ('{"format": "prunecli-compact", "version": 2', r"model\.json is unreadable"),
])
def test_malformed_spec_json_is_one_line(crafted, cli, tmp_path, text, match):
    path, _ = crafted("version", lambda m: 2)
    path.with_suffix(".json").write_text(text)
    with pytest.raises(CheckpointError, match=match) as err:
        compact.load(path)
    assert "\n" not in str(err.value)
    assert not compact.is_compact(path)
    # not a compact export, so evaluate reads it as a checkpoint dir, which it is not: still one line, exit 2
    check_cli(cli, path, tmp_path, r"is not a checkpoint|does not exist")
