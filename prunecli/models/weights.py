"""Load a user's weights file into a freshly built model, without ever unpickling arbitrary objects.

``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``, which
accepts tensors and plain containers only, so a file holding a pickled ``nn.Module`` (or anything else that
would run code on load) is refused.

Like timm's ``pretrained`` with another ``num_classes`` and Hugging Face's ``ignore_mismatched_sizes``, weights of
the same architecture with another stem or head (an ImageNet resnet18 for 1-channel, 10-class images) load:
tensors whose shapes differ keep their fresh initialisation, and a log line names them. Missing or unexpected
keys (another architecture), or shapes differing in more than half the tensors, are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from prunecli.errors import ConfigError

log = logging.getLogger(__name__)

_KEY = "model.weights"
_SHOWN_KEYS = 5
# More tensors than this fraction with other shapes is another architecture, not another stem or head.
MAX_FRESH_FRACTION = 0.5


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict in ``path`` into ``model`` and return ``model``.

    Every key must match; tensors whose shapes differ (a stem or head made for other inputs or classes) keep
    ``model``'s fresh initialisation and are named in a log line, unless they are more than
    :data:`MAX_FRESH_FRACTION` of the tensors.

    Args:
        model: The model, already built with the architecture the file was saved from.
        path: A ``.safetensors`` file, or a ``torch.save`` file of a state dict or of ``{"state_dict": ...}``.

    Raises:
        ConfigError: (key ``model.weights``) the file is missing, unreadable, not a state dict, or its keys or
            shapes do not match the model (see above).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(_KEY, str(path), "a path to an existing .safetensors or .pt file", reason="no such file")
    state = _read(file)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            _KEY, str(path), "a state dict (parameter name -> tensor) or {'state_dict': ...}",
            reason=f"the file holds a {type(state).__name__}",
        )
    own = model.state_dict()
    fresh = _check_matches(own, state, path)
    if fresh:
        log.info("%s: kept fresh init for %d tensors whose shapes differ: %s", _KEY, len(fresh), ", ".join(
            f"{k} {_shape(state[k])} vs {_shape(own[k])}" for k in fresh))
        state = {**state, **{k: own[k] for k in fresh}}
    model.load_state_dict(state, strict=True)
    return model


def _read(file: Path) -> object:
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(file), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ConfigError(_KEY, str(file), "a valid .safetensors file", reason=_one_line(err)) from None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many types for a bad or unsafe file
        raise ConfigError(
            _KEY, str(file), "a .safetensors file or a torch.save of a plain state dict (tensors only)",
            reason=f"refused to load it safely: {_one_line(err)}",
        ) from None


def _check_matches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                   path: str | Path) -> list[str]:
    """The keys whose shapes differ (to keep fresh), or a ConfigError when the file is another architecture."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not missing and not unexpected and len(wrong_shape) <= MAX_FRESH_FRACTION * len(expected):
        return [k for k, v in expected.items() if state[k].shape != v.shape]
    problems = [
        f"{label} {_first(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape))
        if keys
    ]
    if not missing and not unexpected:
        problems.append(f"{len(wrong_shape)} of {len(expected)} tensors differ, more than a stem and a head")
    raise ConfigError(_KEY, str(path), "weights saved from the same architecture (same model.* settings and dataset)",
                      reason="; ".join(problems))


def _shape(t: torch.Tensor) -> str:
    return "(" + ",".join(str(d) for d in t.shape) + ")"


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return f"{shown} (+{more} more)" if more > 0 else shown


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200] + "..." if len(text) > 200 else text
