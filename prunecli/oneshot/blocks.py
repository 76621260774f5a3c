"""Transformer blocks: find them, capture the first one's inputs, run one block over the calibration batches.

The blocks are the model's ``nn.ModuleList`` of identical layers (Hugging Face ``model.layers``,
``transformer.h``, ``encoder.layer``; prunecli's ``tiny_lm`` ``blocks``); their prunable layers are the
:func:`prunable_types` (``nn.Linear``, ``nn.MultiheadAttention``, GPT-2's ``Conv1D``). The first block's inputs
are caught by a forward pre-hook that stops the model's forward there, so nothing past it runs: the hidden states and
every other argument the model passes its blocks (Hugging Face: ``attention_mask``, ``position_embeddings``,
``position_ids``; ``tiny_lm``: the causal mask). Every block of a kind gets the same extra arguments (a
Hugging Face model whose config lists ``layer_types`` gives sliding-window and full-attention layers different
masks), so only the hidden states change from block to block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.layers import LayerSelection
from prunecli.targets import element_types

PRUNABLE = (nn.Linear, nn.MultiheadAttention)  # and transformers' Conv1D once it is defined: prunable_types()
# Arguments that would make a block write to or read from a generation cache.
CACHE_ARGUMENTS = ("cache", "past_key_values", "past_key_value", "layer_past")


def prunable_types() -> tuple[type[nn.Module], ...]:
    """The layer types one-shot pruning prunes: :data:`PRUNABLE`, plus transformers' ``Conv1D`` (GPT-2's linear
    layers, weight ``[in, out]``) once transformers has defined it."""
    return (*PRUNABLE, *(t for t in element_types() if t.__name__ == "Conv1D"))


def block_layers(model: nn.Module, prefix: str, layers: Any = None) -> dict[str, nn.Module]:
    """The prunable layers (:func:`prunable_types`) inside the blocks at ``prefix`` that ``layers`` selects: None
    (all), or rules as ``pruner.layers`` takes them (a mapping of ``include`` / ``types`` / ``exclude`` /
    ``exclude_last``, or a :class:`~prunecli.layers.LayerSelection`), keyed by FQN in registration order.

    Raises:
        ConfigError: A rule is malformed or matches no layer of the model (``pruner.layers.*``), or the rules
            leave no layer of the blocks (``pruner.layers``).
    """
    inside = f"{prefix}." if prefix else ""
    types = prunable_types()
    if layers is None:
        return {n: m for n, m in model.named_modules() if n.startswith(inside) and n and isinstance(m, types)}
    rules = layers if isinstance(layers, LayerSelection) else LayerSelection.from_config(layers)
    chosen = {n: m for n, m in rules.select(model, types).items() if n.startswith(inside) and isinstance(m, types)}
    if not chosen:
        raise ConfigError("pruner.layers", rules.describe(),
                          f"rules selecting linear layers inside {prefix or 'the blocks'}",
                          reason="one-shot presets prune only the transformer blocks' layers")
    return chosen


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
    best, size, types = None, 0, prunable_types()
    for fqn, module in model.named_modules():
        if (isinstance(module, nn.ModuleList) and len(module) and len({type(b) for b in module}) == 1
                and any(isinstance(m, types) for m in module[0].modules())):
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
    block's outputs, so one block's activations are held at a time. The other arguments are kept per kind of
    block (``kinds[i]`` of block ``i``): every block of a kind gets the same ones."""

    hidden: list[Tensor]
    kinds: list[Any]
    extras: dict[Any, list[tuple[tuple, dict[str, Any]]]]

    def __len__(self) -> int:
        return len(self.hidden)


def block_kinds(model: nn.Module, count: int) -> list[Any]:
    """What decides the extra arguments of each of ``count`` blocks: a Hugging Face config's ``layer_types``
    (sliding-window and full-attention layers get different masks), else one kind for all."""
    kinds = getattr(getattr(model, "config", None), "layer_types", None)
    return list(kinds) if isinstance(kinds, (list, tuple)) and len(kinds) == count else [None] * count


class _Caught(Exception):
    """Raised by the capture hook to stop the model's forward once every kind of block has its inputs."""


def _to(value: Any, device: torch.device | None) -> Any:
    if isinstance(value, Tensor):
        return value.to(device) if device is not None else value
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


def _split(module: nn.Module, args: tuple, kwargs: dict, device: torch.device | None) -> tuple[Tensor, tuple, dict]:
    """A block call's ``(hidden states, other args, kwargs)``, moved to ``device``, with any cache turned off."""
    kwargs = dict(kwargs)
    hidden, args = (args[0], args[1:]) if args else (kwargs.pop("hidden_states", None), ())
    if not isinstance(hidden, Tensor):
        raise ConfigError("oneshot.blocks", type(module).__name__, "blocks called with their hidden states first")
    for key in CACHE_ARGUMENTS:
        if key in kwargs:
            kwargs[key] = None
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    return _to(hidden, device), _to(args, device), {k: _to(v, device) for k, v in kwargs.items()}


@torch.no_grad()
def capture_inputs(model: nn.Module, blocks: nn.ModuleList, batches: Iterable[Any],
                   device: torch.device | None = None) -> BlockInputs:
    """Run ``model`` on each batch (a mapping of keyword tensors, e.g. ``input_ids``, or a tensor) and keep what
    ``blocks[0]`` receives, moved to ``device`` (default: where it is). The forward stops at the first block
    (of a model whose blocks are of several kinds: at the first block of the last kind to appear)."""
    kinds = block_kinds(model, len(blocks))
    firsts = {kind: kinds.index(kind) for kind in dict.fromkeys(kinds)}
    inputs = BlockInputs([], kinds, {kind: [] for kind in firsts})

    def record(kind: Any, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden, args, kwargs = _split(module, args, kwargs, device)
            if index == 0:
                inputs.hidden.append(hidden)
            inputs.extras[kind].append((args, kwargs))
            if index == max(firsts.values()):
                raise _Caught

        return hook

    handles = [blocks[i].register_forward_pre_hook(record(k, i), with_kwargs=True) for k, i in firsts.items()]
    try:
        for batch in batches:
            try:
                model(**batch) if isinstance(batch, Mapping) else model(batch)
            except _Caught:
                pass
    finally:
        for handle in handles:
            handle.remove()
    if not inputs.hidden:
        raise ConfigError("calibration.samples", 0, "at least one calibration batch that reaches the blocks")
    return inputs


@torch.no_grad()
def run_block(block: nn.Module, index: int, inputs: BlockInputs, replace: bool) -> None:
    """Run ``block`` (the ``index``-th) on every batch of ``inputs``; with ``replace``, its outputs become the
    next block's inputs."""
    extras = inputs.extras[inputs.kinds[index]]
    for i in range(len(inputs)):
        args, kwargs = extras[i]
        out = block(inputs.hidden[i], *args, **kwargs)
        if replace:
            inputs.hidden[i] = out[0] if isinstance(out, (tuple, list)) else out
        del out
