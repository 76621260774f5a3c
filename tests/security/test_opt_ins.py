"""What still loads: today's checkpoints and exports as they are, a custom ``_target_`` rebuilt from the user's own
``model=`` config, and anything at all with the explicit ``trust_checkpoint_code=true`` (which really runs the
file's ``_target_``s: the payloads of the other tests here are live)."""

from __future__ import annotations

import json

import _crafted
import pytest
import torch
from _crafted import copy_dir, edit_json, pickle_payload, write_text_payload

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.errors import CheckpointError
from prunecli.export import compact, export

FAST = ["latency.repeats=1", "latency.warmup=0"]
CUSTOM = "_crafted.build_cnn"


def evaluate(cli, checkpoint, out, *overrides):
    result = cli("evaluate", f"checkpoint={checkpoint}", *FAST, f"hydra.run.dir={out}", *overrides)
    report = json.loads((out / "evaluate.json").read_text()) if result.exit_code == 0 else None
    return result, report


@pytest.fixture
def custom(channel_checkpoint, tmp_path):
    """The smoke checkpoint with its model node's ``_target_`` replaced by a harmless unregistered one."""
    _crafted.CALLS.clear()
    path = copy_dir(channel_checkpoint, tmp_path / "custom")
    edit_json(path / "meta.json", "model.config._target_", CUSTOM)
    return path


def test_todays_checkpoint_evaluates_and_exports_as_before(cli, channel_checkpoint, tmp_path):
    meta = json.loads((channel_checkpoint / "meta.json").read_text())
    assert meta["model"]["config"]["_target_"] == "prunecli.models.build_model" and meta["model"]["config"]["_partial_"]
    result, report = evaluate(cli, channel_checkpoint, tmp_path / "ev")
    assert result.exit_code == 0, result.stderr
    assert 0.45 < report["sparsity"] < 0.95   # half the channels, more weights
    for fmt in ("dense", "compact"):
        out = tmp_path / f"model_{fmt}.safetensors"
        result = cli("export", f"checkpoint={channel_checkpoint}", f"format={fmt}", f"output={out}",
                     f"hydra.run.dir={tmp_path / fmt}")
        assert result.exit_code == 0, result.stderr
    result, again = evaluate(cli, tmp_path / "model_compact.safetensors", tmp_path / "ev2")
    assert result.exit_code == 0, result.stderr
    assert again["accuracy"] == pytest.approx(report["accuracy"]) and again["samples"] == report["samples"]


def test_an_unregistered_target_is_refused_with_both_ways_out(cli, custom, tmp_path):
    result, _ = evaluate(cli, custom, tmp_path / "ev")
    assert result.exit_code == 2
    (line,) = [line for line in result.error_lines if line.startswith("error:")]
    assert f"model.config._target_='{CUSTOM}' is not a registered model builder" in line
    assert "model=<name>" in line and "trust_checkpoint_code=true" in line
    assert _crafted.CALLS == []


def test_model_override_rebuilds_from_the_users_config(cli, channel_checkpoint, custom, tmp_path):
    _, honest = evaluate(cli, channel_checkpoint, tmp_path / "honest")
    result, report = evaluate(cli, custom, tmp_path / "cnn", "model=cnn")
    assert result.exit_code == 0, result.stderr
    assert report["accuracy"] == pytest.approx(honest["accuracy"]) and _crafted.CALLS == []
    # the user's config is what is built: an mlp does not fit the cnn's weights
    result, _ = evaluate(cli, custom, tmp_path / "mlp", "model=mlp")
    assert result.exit_code == 2 and "does not fit its weights" in result.stderr
    # and the user's own _target_ composes onto a model group, sizes still from the checkpoint
    result, report = evaluate(cli, custom, tmp_path / "own", "model=cnn", f"model._target_={CUSTOM}")
    assert result.exit_code == 0, result.stderr
    assert report["accuracy"] == pytest.approx(honest["accuracy"])
    assert [(c["in_channels"], c["num_classes"], c["image_size"]) for c in _crafted.CALLS] == [(1, 10, 8)] * 2


def test_export_takes_the_model_override_too(cli, custom, tmp_path):
    result = cli("export", f"checkpoint={custom}", "format=compact", "model=cnn", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.stderr
    assert compact.load(tmp_path / "model.safetensors", model={"_target_": "prunecli.models.build_model",
                                                               "_partial_": True, "name": "cnn"})


def test_trust_checkpoint_code_instantiates_the_files_target(cli, channel_checkpoint, custom, tmp_path):
    _, honest = evaluate(cli, channel_checkpoint, tmp_path / "honest")
    result, report = evaluate(cli, custom, tmp_path / "trusted", "trust_checkpoint_code=true")
    assert result.exit_code == 0, result.stderr
    assert report["accuracy"] == pytest.approx(honest["accuracy"]) and len(_crafted.CALLS) == 2  # meta, then CPU
    result, _ = evaluate(cli, custom, tmp_path / "typo", "trust_checkpoint_code=yes")
    assert result.exit_code == 2 and "trust_checkpoint_code='yes' is not allowed" in result.stderr


def test_python_api_options(channel_checkpoint, custom, tmp_path):
    honest = load_model(load_checkpoint(channel_checkpoint)).eval()
    ckpt = load_checkpoint(custom)
    with pytest.raises(CheckpointError, match="not a registered model builder"):
        load_model(ckpt)
    node = {"_target_": "prunecli.models.build_model", "_partial_": True, "name": "cnn"}
    x = torch.randn(4, 1, 8, 8)
    for model in (load_model(ckpt, model=node), load_model(ckpt, trust_checkpoint_code=True)):
        assert torch.equal(model.eval()(x), honest(x))
    export(ckpt, "compact", tmp_path / "c.safetensors", trust_checkpoint_code=True)
    with pytest.raises(CheckpointError, match="not a registered model builder"):
        compact.load(tmp_path / "c.safetensors")
    small = compact.load(tmp_path / "c.safetensors", trust_checkpoint_code=True)
    assert torch.allclose(small(x), honest(x), atol=1e-5)


@pytest.mark.parametrize("payload", [write_text_payload, pickle_payload], ids=["write_text", "numpy_pickle"])
def test_the_payloads_are_live_when_trusted(channel_checkpoint, tmp_path, payload):
    """What the refusals prevent: trusted, the same payload runs (and the build then fails)."""
    marker = tmp_path / "marker"
    path = copy_dir(channel_checkpoint, tmp_path / "ckpt")
    edit_json(path / "meta.json", "model.config.small_stem", payload(marker))
    with pytest.raises(CheckpointError):
        load_model(load_checkpoint(path))
    assert not marker.exists()
    with pytest.raises(Exception):
        load_model(load_checkpoint(path), trust_checkpoint_code=True)
    assert marker.exists()


def test_every_shipped_model_and_dataset_node_is_a_valid_spec():
    """What a prune run writes into meta.json for any config/model and config/dataset option is accepted."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from prunecli.models.spec import DATASET_BUILDERS, MODEL_BUILDERS, Origin, builder

    conf = Path(__file__).resolve().parents[2] / "conf"
    origin = Origin("checkpoint", "meta.json")
    for kind, registry in (("model", MODEL_BUILDERS), ("dataset", DATASET_BUILDERS)):
        files = sorted((conf / kind).glob("*.yaml"))
        assert len(files) >= (80 if kind == "model" else 7)
        for file in files:
            node = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
            fn, args = builder(node, kind, origin, f"{kind}.config")
            assert fn is registry[node["_target_"]] and "_target_" not in args, file.name
