"""prunecli.presets.pruner_preset: a preset by name gives the mapping the CLI builds its pruner from, with the
CLI's overrides, merged keys, one-line errors, and a caller's own Hydra state left alone."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from prunecli.errors import ConfigError
from prunecli.presets import pruner_preset


def cli_mapping(*overrides: str) -> dict:
    with initialize_config_module("prunecli.conf", version_base="1.3"):
        cfg = compose("prune", overrides=list(overrides))
    node = OmegaConf.to_container(cfg, resolve=True)
    return {**node["pruner"], "schedule": node["schedule"], "objective": node["objective"]}


@pytest.mark.parametrize("name, overrides", [
    ("agp", []), ("block_4x1", ["schedule.end=0.5"]), ("snip_momentum", ["schedule=linear"]),
    ("L1FilterPruner", ["pruner.layers.exclude_last=false"]),
])
def test_a_preset_by_name_is_the_clis_pruner_mapping(name, overrides):
    got = pruner_preset(name, sparsity=0.8, overrides=overrides)
    assert got == cli_mapping(f"pruner={name}", "sparsity=0.8", *overrides)
    assert got["schedule"]["final_sparsity"] == 0.8


def test_keys_merge_into_mappings_and_replace_other_values():
    got = pruner_preset("agp", target="4x1", allocation="local", layers={"exclude_last": False},
                        schedule={"frequency": 5})
    assert got["target"] == "4x1" and got["allocation"] == "local"
    assert got["layers"] == {"include": [], "types": [], "exclude": [], "exclude_last": False}
    assert got["schedule"] == {"name": "agp", "initial_sparsity": 0.0, "final_sparsity": 0.9, "start": 0.0,
                               "end": 0.7, "frequency": 5}


@pytest.mark.parametrize("name, overrides, words", [
    ("nope", [], "Could not find 'pruner/nope'"),
    ("agp", ["schedule.bogus=1"], "schedule.bogus"),
    ("lottery_ticket", [], "prunecli prune"),
    ("agp", ["rounds=iterative"], "rounds"),
])
def test_bad_presets_and_engine_only_presets_fail_in_one_line(name, overrides, words):
    with pytest.raises(ConfigError) as err:
        pruner_preset(name, overrides=overrides)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_inside_a_hydra_app_the_callers_hydra_state_survives():
    with initialize_config_module("prunecli.conf", version_base="1.3"):
        assert pruner_preset("movement", sparsity=0.5)["criterion"] == "movement"
        assert GlobalHydra.instance().is_initialized()
        assert compose("prune", overrides=["pruner=slim"]).pruner.criterion == "bn_scale"
    assert not GlobalHydra.instance().is_initialized()
