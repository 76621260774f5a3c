"""Choices on the command line that need an optional extra, checked before Hydra composes.

A launcher or sweeper whose Hydra plugin is not installed is not a config Hydra can find: it would answer
``hydra/launcher=slurm`` with a composition error naming no package. Here it is one line naming the extra to
install (``pip install 'prunecli[slurm]'``) and exit code 2. ``logger=`` options are checked against
``conf/logger/`` the same way (an unknown one is one line); a logger's own package is checked when it is built
(:mod:`prunecli.loggers`).
"""

from __future__ import annotations

import importlib.util
from typing import Iterator

from prunecli.errors import ConfigError

# The launcher and sweeper configs that need a Hydra plugin: {(group, option): (plugin module, prunecli extra)}.
# Both the plugins' own configs and prunecli's (conf/hydra/launcher/, conf/hydra/sweeper/), which extend them;
# tests/cli/test_extras.py checks that every YAML of those two groups is listed here.
PLUGINS = {
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "slurm_local"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
    ("hydra/sweeper", "optuna_digits"): ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
}
LOGGER_GROUP = "logger"
GROUPS = {group for group, _ in PLUGINS} | {LOGGER_GROUP}


def check_choices(overrides: list[str]) -> None:
    """Raise a :class:`ConfigError` for a launcher/sweeper whose extra is missing or an unknown logger."""
    loggers: list[str] | None = None
    for group, option in _choices(overrides):
        plugin = PLUGINS.get((group, option))
        if plugin is not None and not installed(plugin[0]):
            kind = group.rpartition("/")[2]
            raise ConfigError(group, option, f"a {kind} whose Hydra plugin is installed",
                              f"pip install 'prunecli[{plugin[1]}]'")
        if group == LOGGER_GROUP:
            loggers = logger_options() if loggers is None else loggers
            if option not in loggers:
                raise ConfigError(group, option, loggers, "several at once: logger=[tensorboard,csv]")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def logger_options() -> list[str]:
    """The options of the ``logger`` config group: the YAML files of ``prunecli.conf/logger``."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("prunecli.conf").joinpath(LOGGER_GROUP).iterdir()
                  if p.name.endswith(".yaml"))


def _choices(overrides: list[str]) -> Iterator[tuple[str, str]]:
    """``(group, option)`` of each group override, one per option of a list (``logger=[a,b]``) or a sweep
    (``logger=a,b``). Words Hydra's parser rejects are left to Hydra, which reports them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for word in overrides:
        if word.startswith("-") or "=" not in word:
            continue
        try:
            parsed = parser.parse_override(word)
        except Exception:  # noqa: BLE001  Hydra reports a malformed override in its own words
            continue
        group = parsed.get_key_element().lstrip("+~")
        if group not in GROUPS or parsed.is_delete() or parsed.package is not None:
            continue
        if parsed.is_sweep_override():  # a choice sweep (interval and range sweeps name no option)
            values = list(parsed.sweep_string_iterator()) if parsed.is_choice_sweep() else []
        else:
            value = parsed.value()
            values = value if isinstance(value, list) else [value]
        for value in values:
            if isinstance(value, str):
                yield group, value
