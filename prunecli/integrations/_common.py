"""What both callbacks share: the pruner config they take (resolved and checked before training starts), and
the pruner's state as a safetensors file (tensors plus a JSON skeleton, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from prunecli._flatten import flatten, unflatten
from prunecli.config import check_pruner_config
from prunecli.errors import CheckpointError, ConfigError
from prunecli.presets import merge_keys, pruner_preset
from prunecli.pruner import Pruner

STATE_FILE = "prunecli_pruner.safetensors"
# Total steps used to check a config before the run's own are known (fractions need some; large enough that
# absolute start_step/end_step values pass).
_CHECK_STEPS = 1_000_000


def resolve_config(pruner: str | Mapping[str, Any], sparsity: float | None, overrides: Sequence[str],
                   keys: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`prunecli.build_pruner` mapping for a preset name (with ``sparsity``, Hydra ``overrides`` and
    ``keys``) or for a full mapping (with ``keys`` merged and ``sparsity`` as the schedule's final one); checked.

    Raises:
        ConfigError: A bad preset, override or part; ``overrides`` given with a mapping.
    """
    if isinstance(pruner, str):
        cfg = pruner_preset(pruner, sparsity=sparsity, overrides=overrides, **keys)
    elif isinstance(pruner, Mapping):
        if overrides:
            raise ConfigError("overrides", list(overrides), "none with a pruner mapping",
                              "Hydra overrides apply to a preset name")
        cfg = merge_keys(pruner, keys)
        if sparsity is not None:
            schedule = cfg.get("schedule")
            schedule = {"name": schedule} if isinstance(schedule, str) else dict(schedule or {})
            cfg["schedule"] = {**schedule, "final_sparsity": float(sparsity)}
    else:
        raise ConfigError("pruner", pruner, "a preset name of conf/pruner/ or a build_pruner mapping")
    check_pruner_config(cfg, _CHECK_STEPS)
    return cfg


def write_state(pruner: Pruner, path: Path | str) -> Path:
    """Write the pruner's :meth:`~prunecli.pruner.Pruner.state_dict` to ``path`` (safetensors, no pickle)."""
    from safetensors.torch import save_file

    tensors, skeleton = flatten(pruner.state_dict())
    path = Path(path)
    save_file(tensors, str(path), metadata={"skeleton": json.dumps(skeleton)})
    return path


def read_state(pruner: Pruner, path: Path | str) -> None:
    """Restore a state written by :func:`write_state` into ``pruner`` (masks re-applied to the model).

    Raises:
        CheckpointError: The file is missing or not a pruner state.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no pruner state at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            skeleton = json.loads((f.metadata() or {})["skeleton"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, ValueError, OSError, SafetensorError) as err:
        raise CheckpointError(f"{path} is not a prunecli pruner state ({type(err).__name__})") from None
    pruner.load_state_dict(unflatten(skeleton, tensors))
