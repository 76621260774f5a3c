"""Transformer blocks: find them, capture the first one's inputs, run one block over the calibration batches.

The blocks are the model's ``nn.ModuleList`` of identical layers (Hugging Face ``model.layers``,
``transformer.h``, ``encoder.layer``; prunecli's ``tiny_lm`` ``blocks``). The first block's inputs are caught
by a forward pre-hook that stops the model's forward there, so nothing past it runs: the hidden states and
every other argument the model passes its blocks (Hugging Face: ``attention_mask``, ``position_embeddings``,
``position_ids``; ``tiny_lm``: the causal mask). Every block of such a model gets the same extra arguments,
so only the hidden states change from block to block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError

PRUNABLE = (nn.Linear, nn.MultiheadAttention)
# Arguments that would make a block write to or read from a generation cache.
CACHE_ARGUMENTS = ("cache", "past_key_values", "past_key_value", "layer_past")


def find_blocks(model: nn.Module, name: str | None = None) -> tuple[str, nn.ModuleList]:
    """``(FQN, blocks)``: the ``nn.ModuleList`` named ``name``, or else the one holding the most parameters
    among those whose children are all of one class and contain linear layers.

    Raises:
        ConfigError: ``name`` is no ``nn.ModuleList`` of ``model``, or the model has no such list.
    """
    if name is not None:
        found = dict(model.named_modules()).get(name)
        if not isinstance(found, nn.ModuleList) or not len(found):
            raise ConfigError("oneshot.blocks", name, "the name of a non-empty nn.ModuleList of the model")
        return name, found
    best, size = None, 0
    for fqn, module in model.named_modules():
        if (isinstance(module, nn.ModuleList) and len(module) and len({type(b) for b in module}) == 1
                and any(isinstance(m, PRUNABLE) for m in module[0].modules())):
            params = sum(p.numel() for p in module.parameters())
            if params > size:
                best, size = (fqn, module), params
    if best is None:
        raise ConfigError("oneshot.blocks", None, "a model with a ModuleList of blocks holding nn.Linear layers",
                          f"{type(model).__name__} has none")
    return best


@dataclass
class BlockInputs:
    """The current block's inputs, one entry per calibration batch; ``hidden`` is replaced in place by each
    block's outputs, so one block's activations are held at a time."""

    hidden: list[Tensor]
    args: list[tuple]
    kwargs: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.hidden)


class _Caught(Exception):
    """Raised by the capture hook to stop the model's forward at the first block."""


def _to(value: Any, device: torch.device | None) -> Any:
    if isinstance(value, Tensor):
        return value.to(device) if device is not None else value
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


@torch.no_grad()
def capture_inputs(model: nn.Module, first: nn.Module, batches: Iterable[Any],
                   device: torch.device | None = None) -> BlockInputs:
    """Run ``model`` on each batch (a mapping of keyword tensors, e.g. ``input_ids``, or a tensor) up to the
    block ``first`` and keep what that block receives, moved to ``device`` (default: where it is)."""
    inputs = BlockInputs([], [], [])

    def catch(module: nn.Module, args: tuple, kwargs: dict) -> None:
        kwargs = dict(kwargs)
        hidden, args = (args[0], args[1:]) if args else (kwargs.pop("hidden_states", None), ())
        if not isinstance(hidden, Tensor):
            raise ConfigError("oneshot.blocks", type(module).__name__, "blocks called with their hidden states first")
        for key in CACHE_ARGUMENTS:
            if key in kwargs:
                kwargs[key] = None
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        inputs.hidden.append(hidden.to(device) if device is not None else hidden)
        inputs.args.append(_to(args, device))
        inputs.kwargs.append({k: _to(v, device) for k, v in kwargs.items()})
        raise _Caught

    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(**batch) if isinstance(batch, Mapping) else model(batch)
            except _Caught:
                pass
    finally:
        handle.remove()
    if not inputs.hidden:
        raise ConfigError("calibration.samples", 0, "at least one calibration batch that reaches the blocks")
    return inputs


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs, replace: bool) -> None:
    """Run ``block`` on every batch of ``inputs``; with ``replace``, its outputs become the next block's inputs."""
    for i in range(len(inputs)):
        out = block(inputs.hidden[i], *inputs.args[i], **inputs.kwargs[i])
        if replace:
            inputs.hidden[i] = out[0] if isinstance(out, (tuple, list)) else out
        del out
