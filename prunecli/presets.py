"""A pruner preset by name, composed as the CLI composes it: ``conf/pruner/<name>.yaml`` (shipped as the package
``prunecli.conf``) with its schedule and objective, through Hydra's own compose API.

    cfg = pruner_preset("block_4x1", sparsity=0.8, overrides=["schedule.end=0.5"])
    pruner = build_pruner(model, cfg, total_steps=1000, optimizer=optimizer)

gives the pruner that ``prunecli prune pruner=block_4x1 sparsity=0.8 schedule.end=0.5`` trains with, for a user's
own loop or the callbacks of :mod:`prunecli.integrations`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from prunecli.errors import ConfigError

CONFIG_MODULE = "prunecli.conf"


def pruner_preset(name: str, *, sparsity: float | None = None, overrides: Sequence[str] = (),
                  **keys: Any) -> dict[str, Any]:
    """The mapping :func:`prunecli.build_pruner` takes for preset ``name``, as ``prunecli prune pruner=<name>``
    composes it.

    Args:
        name: A preset of ``conf/pruner/`` (``agp``, ``block_4x1``, ``movement``, ... or an alias such as
            ``AGPPruner``).
        sparsity: The final sparsity (the CLI's ``sparsity=``); default the CLI's.
        overrides: Hydra overrides exactly as on the command line: ``schedule.end=0.5``, ``schedule=linear``,
            ``pruner.layers.exclude_last=false``, ``objective=params``.
        keys: Keys of the result (``target``, ``criterion``, ``allocation``, ``layers``, ``schedule``, ...): a
            mapping merges into the preset's mapping of that key, any other value replaces it.

    Raises:
        ConfigError: An unknown preset or override, or a preset that needs prunecli's engine (``rounds``).
    """
    cfg = _compose(name, [*(["sparsity=" + repr(float(sparsity))] if sparsity is not None else []), *overrides])
    if cfg.get("rounds") is not None:
        raise ConfigError("pruner", name, "a preset without rounds (not lottery_ticket or rounds=...)",
                          "rounds of prune-rewind-retrain are run by prunecli's engine: prunecli prune")
    return merge_keys(pruner_config(cfg), keys)


def pruner_config(cfg: Any) -> dict[str, Any]:
    """What :func:`prunecli.build_pruner` takes from a composed ``prune`` config: the pruner node plus
    ``schedule`` (and ``objective``), resolved to plain Python."""
    out = _plain(cfg.pruner)
    out["schedule"] = _plain(cfg.schedule)
    if cfg.get("objective") is not None:
        out["objective"] = _plain(cfg.objective)
    return out


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def merge_keys(cfg: Mapping[str, Any], keys: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with ``keys`` on top: a mapping merges into a mapping (one level, as a Hydra override of a
    sub-key would), any other value replaces."""
    out = dict(cfg)
    for key, value in keys.items():
        old = out.get(key)
        out[key] = {**old, **value} if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def _compose(name: str, overrides: list[str]) -> Any:
    """Compose ``conf/prune.yaml`` with ``pruner=<name>`` and ``overrides``; a caller already inside a Hydra app
    keeps its own Hydra state (Hydra refuses a second initialisation, so it is set aside and restored)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            return compose("prune", overrides=[f"pruner={name}", *overrides])
    except (HydraException, OmegaConfBaseException) as err:
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("pruner", " ".join([name, *overrides]), "a preset of conf/pruner/ and overrides as the "
                          "CLI takes them", line) from None
    finally:
        restore_gh_from_backup(backup)
