"""conf/model matches the registry plus torchvision's list, and every file instantiates into a working model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prunecli._torchvision import import_torchvision
from prunecli.models import build_model, list_models
from prunecli.models._registry import builtin_models

ROOT = Path(__file__).resolve().parents[2]
MODEL_CONF = ROOT / "conf" / "model"
# torchvision's RegNet builders compute widths with tensors, which fails under torch.device("meta"); these
# small ones are built for real instead, the rest are only checked as configs.
REGNETS_BUILT = {"regnet_x_400mf", "regnet_y_400mf", "regnet_x_800mf", "regnet_y_800mf"}
# Written by hand, not by the generator: model=hf (prunecli.models.build_hf_model; tested in test_hf_models.py).
HAND_WRITTEN = {"hf.yaml"}
GENERATED = sorted(p for p in MODEL_CONF.glob("*.yaml") if p.name not in HAND_WRITTEN)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_model_configs", ROOT / "scripts" / "gen_model_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conf_model_is_in_sync_with_the_registry():
    expected = _generator().expected_files()
    on_disk = {p.name: p.read_text() for p in GENERATED}
    assert sorted(on_disk) == sorted(f"{n}.yaml" for n in list_models())
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert stale == [], "run: python scripts/gen_model_configs.py"


def _is_regnet(name: str) -> bool:
    return import_torchvision().models.get_model_builder(name).__module__.endswith(".regnet")


def test_the_hand_written_hf_node_builds_a_transformers_model():
    pytest.importorskip("transformers")
    from prunecli.models import build_hf_model

    path = MODEL_CONF / "hf.yaml"
    assert path.read_text().startswith("# prunecli prune model=hf ")
    cfg = OmegaConf.load(path)
    assert (cfg.path, cfg.config, cfg.head, cfg.weights) == (None, None, "auto", None)
    cfg.config = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                  "num_attention_heads": 2}
    make = instantiate(cfg)
    assert make.func is build_hf_model
    logits = make(vocab_size=256, seq_len=8).eval()(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits
    assert logits.shape == (1, 8, 256)


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.stem)
def test_model_config_instantiates_and_runs(path):
    name = path.stem
    assert path.read_text().splitlines()[0] == f"# prunecli prune model={name}"
    cfg = OmegaConf.load(path)
    make = instantiate(cfg)
    assert make.func is build_model and make.keywords["name"] == name
    if name == "tiny_lm":  # the text model takes its task's sizes (causal_lm): logits per position
        logits = make(vocab_size=256, seq_len=8).eval()(torch.zeros(1, 8, dtype=torch.long))
        assert logits.shape == (1, 8, 256)
        return
    if name in builtin_models():
        out = make(in_channels=1, num_classes=10, image_size=8).eval()(torch.randn(1, 1, 8, 8))
    elif _is_regnet(name):
        if name not in REGNETS_BUILT:
            return
        out = make(in_channels=3, num_classes=10, image_size=32).eval()(torch.randn(1, 3, 32, 32))
    else:
        # Shapes only, on the meta device: building every torchvision model for real would take minutes.
        with torch.device("meta"):
            out = make(in_channels=3, num_classes=10, image_size=32).eval()(torch.randn(1, 3, 32, 32))
    assert tuple(out.shape) == (1, 10)
