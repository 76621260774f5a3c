"""Torch-Pruning's dependency graph of a model, traced on example inputs.

Torch-Pruning's ``DependencyGraph`` (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023,
https://arxiv.org/abs/2301.12900) traces the model on example inputs and yields one *group* per set of coupled
channels: the producing conv/linear rows and biases, norm weights and biases, the consuming layers' input
columns, across residual adds, concatenations (index offsets), flattens and depthwise convolutions. This is the
only module that imports ``torch_pruning``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.structure._modules import is_layer_norm_2d, is_rms_norm

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ROOT_TYPES = (*CONV, nn.Linear)


def _record_attention_ops(model: nn.Module, internal: set) -> list:
    """Forward hooks adding to ``internal`` the autograd nodes computed inside each ``nn.MultiheadAttention``
    (its softmax is over keys, not channels: the attention's channels are its in_proj columns and out_proj rows),
    each Llama-style RMSNorm (its mean of squares counts a masked channel as zero, as its compact
    replacement :class:`~prunecli.structure.CountedRMSNorm` does) and each torchvision ``LayerNorm2d`` (likewise
    :class:`~prunecli.structure.CountedLayerNorm2d`)."""
    def hook(module, args, kwargs, output):
        inputs = [t for t in (*args, *kwargs.values()) if isinstance(t, Tensor)]
        stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
        outputs = [output] if isinstance(output, Tensor) else output
        todo = [t.grad_fn for t in outputs if isinstance(t, Tensor) and t.grad_fn is not None]
        while todo:
            fn = todo.pop()
            if fn in stop or fn in internal:
                continue
            internal.add(fn)
            todo.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)

    return [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
            if isinstance(m, nn.MultiheadAttention) or is_rms_norm(m) or is_layer_norm_2d(m)]


def _output_tensors(out: Any) -> list[Tensor]:
    """The tensors among a model's outputs (a Hugging Face output also holds a key/value cache object, which
    Torch-Pruning cannot flatten)."""
    if isinstance(out, Tensor):
        return [out]
    values = out.values() if isinstance(out, Mapping) else out if isinstance(out, (list, tuple)) else ()
    return [t for v in values for t in _output_tensors(v)]


def dependency_graph(model: nn.Module, example_inputs: Any, key: str = "pruner.target") -> Any:
    """Torch-Pruning's dependency graph of ``model`` traced (in eval mode) on ``example_inputs``; its
    ``attention_ops`` attribute holds the autograd nodes computed inside attention modules and RMSNorms.

    Raises:
        ConfigError: (at ``key``) the model cannot be traced.
    """
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    internal: set = set()
    handles = _record_attention_ops(model, internal)
    unmapped: set = set()
    try:
        with torch.enable_grad(), tolerant_reshapes(unmapped):
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False,
                                                         output_transform=_output_tensors)
    except Exception as exc:  # tracing raises many types for unsupported ops
        raise ConfigError(key, "channel", "a model Torch-Pruning's DependencyGraph can trace",
                          reason=f"tracing {type(model).__name__} failed: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    graph.attention_ops = frozenset(internal)
    graph.unmapped_reshapes = unmapped
    return graph


@contextmanager
def tolerant_reshapes(unmapped: set) -> Iterator[None]:
    """Torch-Pruning's index mapping of a reshape it cannot size (a channel shuffle's ``view(B, g, C/g, H, W)``
    divides by zero) records the reshape's node in ``unmapped`` instead of failing the whole model; groups
    through it are skipped (:func:`prunecli.structure.group_site`): the shuffle permutes channels, which an
    unmapped reshape would pass as the identity."""
    from torch_pruning.dependency import index_mapping

    base = index_mapping.update_reshape_index_mapping

    def update(graph: Any, node: Any) -> None:
        try:
            base(graph, node)
        except ZeroDivisionError:
            unmapped.add(node)

    index_mapping.update_reshape_index_mapping = update
    try:
        yield
    finally:
        index_mapping.update_reshape_index_mapping = base


class AnalysisBudget(Exception):
    """One group's dependency analysis went over :data:`INDEX_BUDGET` or :data:`GROUP_SECONDS`."""


# Bounds of Torch-Pruning's analysis. Its index mapping through window partitions (Swin, MaxViT) grows to
# gigabytes over minutes; a group that needs more is skipped with the op it was at, the rest are analysed.
INDEX_BUDGET = 1_000_000   # channel indices one group's mapping may hold (~100 MB of Python objects), or
INDEX_PER_CHANNEL = 4000   # this many per root channel if more (ViT-L's residual stream: ~1900 per channel)
GROUP_SECONDS = 30.0       # wall-clock seconds for one group
ANALYSIS_SECONDS = 600.0   # for all groups of a model; later roots are skipped


def index_budget(channels: int) -> int:
    """Indices the group of a root with ``channels`` output channels may map (:data:`INDEX_BUDGET`...)."""
    return max(INDEX_BUDGET, INDEX_PER_CHANNEL * int(channels))


@contextmanager
def _bounded(indices: int, seconds: float) -> Iterator[None]:
    """Make Torch-Pruning's groups raise :class:`AnalysisBudget` (naming the op reached) once one holds more than
    ``indices`` indices or takes more than ``seconds``: its group class is swapped for a counting subclass for
    the duration (Torch-Pruning has no hook for this; restored on exit)."""
    from torch_pruning.dependency import graph as tp_graph

    base = tp_graph.Group
    deadline = time.monotonic() + seconds
    count = [0]

    class Bounded(base):  # type: ignore[misc, valid-type]
        def add_dep(self, dep, idxs):
            count[0] += len(idxs)
            if count[0] > indices or time.monotonic() > deadline:
                what = f"{count[0]} indices" if count[0] > indices else f"{seconds:g} s"
                raise AnalysisBudget(f"its index mapping reached {what} at {dep.target.name}")
            super().add_dep(dep, idxs)

    tp_graph.Group = Bounded
    try:
        yield
    finally:
        tp_graph.Group = base


def root_groups(graph: Any, skip: Iterable[str] = ()) -> Iterator[tuple[nn.Module, Any]]:
    """``(root module, group over all its output channels)`` for every conv/linear layer but those named in
    ``skip`` (FQNs: layers whose outputs are pruned otherwise, e.g. as attention heads; Torch-Pruning's group of
    a grouped-query attention's v projection takes minutes to build); the group is a string, the reason, where
    its analysis went over the bounds (:data:`INDEX_BUDGET`...) or failed.

    Torch-Pruning's ``get_all_groups``, one root at a time, so one root's failure skips that group alone."""
    names = set(skip)
    ignored = {id(m) for m, name in graph._module2name.items() if name in names}
    ignored |= {id(m) for m in graph.IGNORED_LAYERS_IN_TRACING}
    visited: set[int] = set()
    stop = time.monotonic() + ANALYSIS_SECONDS
    for m in list(graph.module2node):
        if id(m) in ignored or id(m) in visited or not isinstance(m, ROOT_TYPES):
            continue
        pruner = graph.get_pruner_of_module(m)
        channels = pruner.get_out_channels(m) if pruner is not None else None
        if channels is None:
            continue
        if time.monotonic() > stop:
            yield m, f"the model's dependency analysis took over {ANALYSIS_SECONDS:g} s before reaching it"
            continue
        try:
            with _bounded(index_budget(channels), GROUP_SECONDS), tolerant_reshapes(graph.unmapped_reshapes):
                group = graph.get_pruning_group(m, pruner.prune_out_channels, list(range(channels)))
        except AnalysisBudget as over:
            yield m, f"Torch-Pruning's dependency analysis is over budget: {over}"
            continue
        except Exception as exc:  # e.g. ZeroDivisionError mapping indices through a channel shuffle
            yield m, f"Torch-Pruning's dependency analysis fails on it: {type(exc).__name__}: {exc}"
            continue
        outs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        visited.update(id(o) for o in outs)
        if not any(id(o) in ignored for o in outs):
            yield m, group


def prune_out_channels(graph: Any, root: nn.Module, idxs: list[int]) -> None:
    """Remove output channels ``idxs`` of ``root`` and everything coupled to them, as Torch-Pruning does."""
    pruner = graph.get_pruner_of_module(root)
    with _bounded(index_budget(pruner.get_out_channels(root)), GROUP_SECONDS), \
            tolerant_reshapes(graph.unmapped_reshapes):
        group = graph.get_pruning_group(root, pruner.prune_out_channels, idxs)
    group.prune()


def history(graph: Any) -> list[list]:
    """The graph's pruning history, JSON-ready: ``[[root FQN, out channels?, [indices]], ...]``."""
    return [[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in graph.pruning_history()]


def load_history(graph: Any, entries: list[list]) -> None:
    """Replay a pruning :func:`history` on the graph of a dense model of the same architecture."""
    with tolerant_reshapes(graph.unmapped_reshapes):
        graph.load_pruning_history([list(h) for h in entries])
