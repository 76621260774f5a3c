"""Choices that need an optional extra: a launcher or sweeper whose plugin is missing, and an unknown logger, are
one ``error:`` line and exit code 2 before Hydra composes (a missing plugin is simulated)."""

from __future__ import annotations

from pathlib import Path

import pytest

import prunecli.commands._extras as extras

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("group", ["hydra/launcher", "hydra/sweeper"])
def test_every_launcher_and_sweeper_config_composes_to_the_plugin_of_its_extra(group):
    from hydra import compose, initialize_config_module

    shipped = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert shipped, group
    for option in shipped:
        module, extra = extras.PLUGINS[(group, option)]
        assert extra in {"slurm", "optuna"}
        pytest.importorskip(module)
        with initialize_config_module("prunecli.conf", version_base="1.3"):
            cfg = compose("prune", overrides=[f"{group}={option}"], return_hydra_config=True)
        node = cfg.hydra[group.split("/")[1]]
        assert node._target_.startswith(module + "."), (option, node._target_)


def test_the_slurm_configs_set_the_resources():
    from hydra import compose, initialize_config_module

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_module("prunecli.conf", version_base="1.3"):
        cfg = compose("prune", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
        local = compose("prune", overrides=["hydra/launcher=slurm_local"], return_hydra_config=True)
    slurm = cfg.hydra.launcher
    assert (slurm.partition, slurm.timeout_min, slurm.gpus_per_node, slurm.cpus_per_task, slurm.mem_gb) == \
        ("gpu", 240, 1, 8, 32)
    assert slurm._target_.endswith(".SlurmLauncher") and local.hydra.launcher._target_.endswith(".LocalLauncher")
    assert local.hydra.launcher.gpus_per_node == 0


@pytest.mark.parametrize(("choice", "extra"), [
    ("hydra/launcher=slurm", "slurm"), ("hydra/launcher=submitit_local", "slurm"),
    ("hydra/launcher=slurm_local", "slurm"), ("hydra/sweeper=optuna", "optuna"),
    ("hydra/sweeper=optuna_digits", "optuna"),
])
def test_a_launcher_or_sweeper_without_its_extra_is_one_line(cli, monkeypatch, choice, extra):
    monkeypatch.setattr(extras, "installed", lambda module: not module.startswith("hydra_plugins."))
    result = cli("prune", "-m", "sparsity=0.5", choice)
    group, option = choice.split("=")
    assert result.exit_code == 2 and result.exception is None
    assert result.error_lines == [f"error: {group}={option!r} is not allowed: expected a "
                                  f"{group.split('/')[1]} whose Hydra plugin is installed "
                                  f"(pip install 'prunecli[{extra}]')"]


def test_installed_plugins_pass_the_check():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    extras.check_choices(["hydra/launcher=slurm", "hydra/sweeper=optuna", "logger=[csv,tensorboard]", "x=1"])


@pytest.mark.parametrize("choice", ["logger=foo", "logger=[csv,foo]", "+logger=foo"])
def test_an_unknown_logger_is_one_line(cli, choice):
    result = cli("prune", choice)
    assert result.exit_code == 2 and result.exception is None
    assert result.error_lines == ["error: logger='foo' is not allowed: expected one of csv, mlflow, tensorboard "
                                  "(several at once: logger=[tensorboard,csv])"]


def test_logger_options_are_the_yaml_files():
    assert extras.logger_options() == sorted(p.stem for p in (CONF / "logger").glob("*.yaml"))
