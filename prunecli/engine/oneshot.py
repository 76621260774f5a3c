"""The engine's one-shot branch: prune a trained model from calibration data, block by block, without training.

A one-shot preset (``conf/pruner/wanda.yaml``, ``sparsegpt.yaml``, ``magnitude_oneshot.yaml``) names a
``method``; :func:`prunecli.engine.loop.train` then replaces the pruning phase with :func:`oneshot_phase`:

1. calibration sequences: ``calibration.samples`` drawn without replacement from the run's training split
   (seeded by ``seed``), each cut to its first ``calibration.seq_len`` tokens, in batches of
   ``calibration.batch_size``;
2. :func:`prunecli.oneshot.prune_oneshot` with the preset's method, target, comparison group (``allocation``)
   and ``sequential``, on every linear layer of the model's transformer blocks that ``pruner.layers`` selects
   (``include`` / ``types`` / ``exclude`` / ``exclude_last`` as for every preset; default: all of them);
3. a :class:`~prunecli.pruner.Pruner` built by :func:`prunecli.build_pruner` over the same layers,
   with schedule ``none`` (it never changes a mask), whose masks are loaded from step 2's result: the summary,
   the sparsity report and the checkpoint read it as they read any run's pruner.

The phase has no epochs (``trainer.epochs`` is not used); dense pre-training still runs first for a model with
neither ``model.weights`` nor ``model.path``. Everything that can be refused is checked by
:func:`oneshot_settings` before pre-training.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch.utils.data import default_collate

from prunecli._checks import integer
from prunecli.allocation import parse_layer_sparsity
from prunecli.config import check_pruner_config
from prunecli.errors import ConfigError
from prunecli.oneshot import find_blocks, parse_method, prune_oneshot
from prunecli.oneshot.blocks import block_layers
from prunecli.targets import parse_target

log = logging.getLogger(__name__)

# Keys of a one-shot preset's pruner node that prune_oneshot takes; the rest builds the Pruner that holds masks.
ONESHOT_KEYS = ("method", "allocation", "sequential", "blocks", "layer_sparsity", "layers")
MODEL_INPUTS = ("input_ids", "attention_mask")  # what a calibration batch passes the model (no labels)


@dataclass(frozen=True)
class OneShot:
    """A one-shot preset's settings, checked against the run's model and data."""

    method: Any
    allocation: Any
    sequential: bool
    blocks: str  # FQN of the model's block list
    layer_sparsity: Any  # uniform, or OWL's per-block sparsities (prunecli.allocation.OWL)
    layers: Any  # pruner.layers: which of the blocks' linear layers are pruned (prunecli.layers.LayerSelection)
    target: str
    samples: int
    seq_len: int | None  # None: not a token task (tensor batches)
    batch_size: int
    pruner: dict[str, Any]  # what build_pruner takes for the Pruner that holds the masks


def is_oneshot(cfg: Any) -> bool:
    """Whether the composed config's pruner is a one-shot preset (it names a ``method``)."""
    return cfg.get("pruner") is not None and cfg.pruner.get("method") is not None


def oneshot_settings(run: Any) -> OneShot | None:
    """The checked one-shot settings of ``run``, or None for a training preset.

    Raises:
        ConfigError: In one line, for what one-shot pruning of this model and data cannot do: no calibration data,
            ``calibration.seq_len`` longer than the dataset's or the model's context, a model without transformer
            blocks, a target pattern that does not divide a layer's input dimension, a sparsity the pattern cannot
            reach, a non-sparsity objective, rounds, or ``trainer.resume``.
    """
    from prunecli.engine.setup import plain, pruner_config

    cfg = run.cfg
    if not is_oneshot(cfg):
        return None
    name = cfg.pruner.get("method")
    name = name.get("name") if isinstance(name, Mapping) else name
    if run.settings.resume:
        raise ConfigError("trainer.resume", run.settings.resume, "no resume with a one-shot preset",
                          reason=f"pruner.method={name} does not train: run it again instead")
    if run.rounds is not None:
        raise ConfigError("rounds", "set", "no rounds with a one-shot preset", reason=f"pruner.method={name}")
    objective = (plain(cfg.get("objective")) or {}).get("name", "sparsity")
    if objective != "sparsity":
        raise ConfigError("objective", objective, "sparsity with a one-shot preset")
    node = pruner_config(cfg)
    parse_method(node["method"], node.get("allocation"))  # an unknown method or option fails before pre-training
    layer_sparsity = parse_layer_sparsity(node.get("layer_sparsity"))
    prefix = _blocks(run.model, node.get("blocks"), name)
    layers = node.get("layers")
    modules = block_layers(run.model, prefix, layers)
    target = node.get("target", "unstructured")
    _check_target(run.model, modules, target, float(cfg.sparsity))
    if layer_sparsity is not None and target != "unstructured":
        raise ConfigError("pruner.layer_sparsity", str(node.get("layer_sparsity")), "uniform with an N:M target",
                          reason=f"target {target} gives every layer the same sparsity")
    samples, seq_len, batch_size = _calibration(run, plain(cfg.get("calibration")) or {})
    building = {k: v for k, v in node.items() if k not in ONESHOT_KEYS}
    # the Pruner holds masks for exactly the layers prune_oneshot prunes: the selected ones of the blocks
    building["layers"] = {"include": [re.escape(n) for n in modules], "exclude_last": False}
    check_pruner_config(building)
    sequential = node.get("sequential", True)
    if not isinstance(sequential, bool):
        raise ConfigError("pruner.sequential", sequential, "true or false")
    return OneShot(method=node["method"], allocation=node.get("allocation"), sequential=sequential,
                   blocks=prefix, layer_sparsity=layer_sparsity, layers=layers, target=target, samples=samples,
                   seq_len=seq_len, batch_size=batch_size, pruner=building)


def _blocks(model: Any, name: Any, method: Any) -> str:
    """FQN of the model's transformer blocks; a model without them is refused naming what one-shot needs."""
    try:
        prefix, _ = find_blocks(model, name)
    except ConfigError as err:
        if name is not None:
            raise ConfigError("pruner.blocks", name, "the FQN of the model's nn.ModuleList of blocks") from None
        raise ConfigError("pruner", method, "a model with transformer blocks for one-shot pruning (an nn.ModuleList "
                          "of identical blocks holding nn.Linear layers: model=tiny_lm, model=hf, vit_*)",
                          reason=err.reason) from None
    return prefix


def _check_target(model: Any, modules: dict[str, Any], spec: Any, sparsity: float) -> None:
    """Every selected linear layer of the blocks takes the target's pattern, and the pattern can reach
    ``sparsity``."""
    target = parse_target(spec)
    sites, skipped = target.sites(model, modules)
    if skipped:
        module, reason = next(iter(skipped.items()))
        raise ConfigError("pruner.target", str(spec), "a pattern every linear layer of the blocks takes",
                          reason=f"{module}: {reason}")
    cap = min((s.max_sparsity for s in sites), default=1.0)
    if sparsity > cap + 1e-9:
        raise ConfigError("sparsity", sparsity, f"at most {cap:g} with pruner.target={spec}")


def _calibration(run: Any, node: Mapping[str, Any]) -> tuple[int, int | None, int]:
    """``(samples, seq_len, batch_size)`` of ``calibration``, checked against the data and the model."""
    samples = integer("calibration.samples", node.get("samples", 128), 1)
    batch_size = integer("calibration.batch_size", node.get("batch_size", 8), 1)
    if len(run.data.train) == 0:
        raise ConfigError("calibration.samples", samples, "a dataset with training samples to calibrate on",
                          reason=f"the training split of {run.data.name} is empty")
    data_len = run.spec.get("seq_len")
    seq_len = integer("calibration.seq_len", node.get("seq_len"), 2, optional=True)
    if data_len is None:
        if seq_len is not None:
            raise ConfigError("calibration.seq_len", seq_len, "null for a dataset without token sequences")
        return samples, None, batch_size
    seq_len = data_len if seq_len is None else seq_len
    context = model_context(run.model)
    if seq_len > data_len or (context is not None and seq_len > context):
        limit = min(data_len, context) if context is not None else data_len
        raise ConfigError("calibration.seq_len", seq_len, f"at most {limit}",
                          reason=f"the dataset's sequences have {data_len} tokens"
                          + (f", the model takes {context}" if context is not None else ""))
    return samples, seq_len, batch_size


def model_context(model: Any) -> int | None:
    """The longest input the model takes in tokens: ``tiny_lm``'s ``seq_len``, a Hugging Face config's
    ``max_position_embeddings``, or None when it does not say."""
    for value in (getattr(model, "seq_len", None),
                  getattr(getattr(model, "config", None), "max_position_embeddings", None)):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def calibration_batches(run: Any, shot: OneShot) -> list[Any]:
    """``shot.samples`` training samples (all, if the split has fewer) drawn by a generator seeded with ``seed``,
    cut to ``shot.seq_len`` tokens and batched, on the run's device: mappings of model inputs, or tensors."""
    data = run.data.train
    g = torch.Generator().manual_seed(int(run.cfg.seed))
    order = torch.randperm(len(data), generator=g)[:shot.samples].tolist()
    if len(order) < shot.samples:
        log.info("calibration: the training split has %d samples, fewer than calibration.samples=%d: using all",
                 len(order), shot.samples)
    batches = []
    for start in range(0, len(order), shot.batch_size):
        batch = default_collate([data[i] for i in order[start:start + shot.batch_size]])
        if isinstance(batch, Mapping):
            batch = {k: v[:, :shot.seq_len].to(run.device) for k, v in batch.items() if k in MODEL_INPUTS}
        else:  # (inputs, labels) of an image task
            batch = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(run.device)
        batches.append(batch)
    return batches


def oneshot_masks(run: Any, shot: OneShot) -> dict[str, torch.Tensor]:
    """Prune the run's model in place with ``shot`` from its calibration batches; returns the keep masks."""
    batches = calibration_batches(run, shot)
    tokens = f" of {shot.seq_len} tokens" if shot.seq_len is not None else ""
    log.info("one-shot %s to sparsity %g (%s): %d calibration samples%s", _name(shot.method), float(run.cfg.sparsity),
             shot.target, sum(len(b["input_ids"] if isinstance(b, Mapping) else b) for b in batches), tokens)
    return prune_oneshot(run.model, batches, shot.method, sparsity=float(run.cfg.sparsity), target=shot.target,
                         allocation=shot.allocation, sequential=shot.sequential, blocks=shot.blocks,
                         layer_sparsity=shot.layer_sparsity, layers=shot.layers)


def _name(method: Any) -> str:
    return str(method.get("name")) if isinstance(method, Mapping) else str(method)


def oneshot_phase(run: Any, shot: OneShot) -> Any:
    """The pruning phase of a one-shot run: no epochs; its hooks are a Pruner over the blocks' layers whose masks
    are the one-shot result (schedule ``none``: no hook changes them)."""
    from prunecli.config import build_pruner
    from prunecli.engine.setup import make_phase

    if run.settings.epochs:
        log.info("trainer.epochs=%d not used: a one-shot preset does not fine-tune", run.settings.epochs)
    masks = oneshot_masks(run, shot)
    phase = make_phase(run, "prune", 0)
    pruner = build_pruner(run.model, shot.pruner, total_steps=0, optimizer=phase.optimizer)
    unexpected = set(masks) - set(pruner.masks)
    assert not unexpected, f"one-shot masks outside the pruner's layers: {sorted(unexpected)[:3]}"
    state = pruner.state_dict()
    # a layer no calibration input reached (prune_oneshot warned) stays dense
    state["masks"] = {n: masks.get(n, m) for n, m in state["masks"].items()}
    state["target_sparsity"] = float(run.cfg.sparsity)
    pruner.load_state_dict(state)
    phase.hooks = pruner
    phase.hooks.on_train_begin()
    return phase
