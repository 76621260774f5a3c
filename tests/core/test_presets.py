"""Every preset under conf/pruner/ builds, prunes a tiny CNN to its sparsity in a short run, and keeps its
target's invariants; the alias configs of older APIs resolve to their presets and stay generated in sync."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.aliases import ALIASES, note_alias
from prunecli.targets import NM

ROOT = Path(__file__).resolve().parents[2]
PRUNERS = ROOT / "conf" / "pruner"
STEPS = 20


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_pruner_aliases", ROOT / "scripts" / "gen_pruner_aliases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
# one-shot presets (a `method:` key) prune the blocks of a language model: tests/cli/test_oneshot_cli.py
PRESETS = sorted(p.stem for p in PRUNERS.glob("*.yaml")
                 if GEN.MARKER not in p.read_text() and "\nmethod:" not in p.read_text())


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("prunecli.conf", version_base="1.3"):
        yield hydra_compose


def pruner_cfg(compose, name: str, sparsity: float = 0.5) -> tuple[dict, object]:
    from omegaconf import OmegaConf

    cfg = compose("prune", overrides=[f"pruner={name}", f"sparsity={sparsity}"])
    plain = OmegaConf.to_container(cfg.pruner, resolve=True)
    plain["schedule"] = OmegaConf.to_container(cfg.schedule, resolve=True)
    return plain, cfg


def tiny_cnn(cfg) -> nn.Module:
    from hydra.utils import instantiate

    torch.manual_seed(0)
    return instantiate(cfg.model)(in_channels=1, num_classes=10, image_size=8)   # conv-bn x2, linear x2


def train(model, pruner, optimizer):
    g = torch.Generator().manual_seed(0)
    pruner.on_train_begin()
    for step in range(STEPS):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        pruner.on_step_begin(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        optimizer.step()
        pruner.on_after_optimizer_step()
        pruner.on_step_end()
    pruner.on_train_end()


def scored_sparsity(pruner) -> float:
    pruned = total = 0
    for site in pruner.sites.values():
        for m in site.members:
            if m.scored:
                pruned += int((~pruner.masks[m.name]).sum())
                total += m.param.numel()
    return pruned / total


def check_invariants(pruner) -> None:
    storages = {m.untyped_storage().data_ptr() for m in pruner.masks.values()}
    assert len(storages) == len(pruner.masks)   # no two masks share memory: a checkpoint saves each on its own
    for site in pruner.sites.values():
        scored = next(m for m in site.members if m.scored)
        keep = scored.layout.to_units(pruner.masks[scored.name]).any(1)
        for m in site.members:
            assert torch.equal(pruner.masks[m.name], m.layout.expand(keep)), m.name   # whole units only
            assert int(m.param.detach()[~pruner.masks[m.name]].count_nonzero()) == 0, m.name
        if isinstance(pruner.target, NM):
            groups = keep.reshape(-1, pruner.target.m).sum(1)
            assert bool((groups >= pruner.target.n).all()), site.name


@pytest.mark.parametrize("name", PRESETS)
def test_preset_reaches_its_sparsity_with_its_target_invariants(compose, name):
    cfg, composed = pruner_cfg(compose, name)
    model = tiny_cnn(composed)
    if cfg["schedule"]["name"] == "none":   # pattern_lock: keeps the zeros the model has, prunes nothing new
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    module.weight.view(-1)[::2] = 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # amc's sparsity is a FLOPs fraction: check a weight budget here, in 3 episodes
    if isinstance(cfg["allocation"], dict) and cfg["allocation"].get("budget") == "flops":
        cfg["allocation"] = {**cfg["allocation"], "budget": "params", "episodes": 3}
    x = torch.randn(8, 1, 8, 8)   # searched allocations (allocation.search) need an evaluator; the others ignore it
    pruner = build_pruner(model, cfg, total_steps=STEPS, optimizer=optimizer,
                          evaluator=lambda m: -float(m(x).pow(2).mean()))
    train(model, pruner, optimizer)
    assert scored_sparsity(pruner) == pytest.approx(0.5, abs=0.02)
    check_invariants(pruner)
    assert not any(m._forward_hooks for m in model.modules())
    assert not any(p._post_accumulate_grad_hooks for p in model.parameters())


def test_presets_cover_issue_4_part_a():
    wanted = {"level", "l1_norm", "l2_norm", "fpgm", "slim", "apoz", "mean_activation", "taylor_fo", "movement",
              "snip_momentum", "gradient", "group_lasso", "pattern_lock", "progressive", "linear", "agp"}
    assert wanted <= set(PRESETS)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_composes_to_its_preset(compose, alias):
    via_alias, _ = pruner_cfg(compose, alias)
    preset, _ = pruner_cfg(compose, ALIASES[alias].preset)
    assert via_alias.pop("alias") == alias
    assert via_alias == preset


def test_alias_configs_are_generated_in_sync():
    want = GEN.expected()
    assert {p: p.read_text() for p in want if p.exists()} == want
    assert GEN.stale() == []


def test_aliases_point_at_presets_and_only_at_built_algorithms():
    assert {a.preset for a in ALIASES.values()} <= set(PRESETS)
    not_built_yet: set[str] = set()   # every NNI pruner of issue 4 is built now
    assert not not_built_yet & set(ALIASES)
    assert ALIASES["LevelPruner"].preset == "level" and ALIASES["GroupLasso"].preset == "group_lasso"


def test_building_through_an_alias_logs_the_new_name(compose, caplog):
    cfg, composed = pruner_cfg(compose, "L1NormPruner")
    with caplog.at_level(logging.INFO, logger="prunecli.aliases"):
        build_pruner(tiny_cnn(composed), cfg, total_steps=STEPS)
    assert "pruner=L1NormPruner is NNI's name: prunecli calls this preset 'l1_norm' (pruner=l1_norm)" in caplog.text
    with pytest.raises(Exception, match=r"^pruner.alias='NoSuchPruner'"):
        note_alias("NoSuchPruner")


def test_the_layers_block_is_defined_once(compose):
    """Every preset pulls conf/pruner/layers/default.yaml; only slim narrows it (its types)."""
    import yaml

    default = yaml.safe_load((PRUNERS / "layers" / "default.yaml").read_text())
    assert default == {"include": [], "types": [], "exclude": [], "exclude_last": True}
    for name in PRESETS:
        assert "exclude_last" not in (PRUNERS / f"{name}.yaml").read_text(), name
        layers = pruner_cfg(compose, name)[0]["layers"]
        want = {**default, "types": ["Conv1d", "Conv2d", "Conv3d"]} if name == "slim" else default
        assert layers == want, name
