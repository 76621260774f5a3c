"""Coupled channels: every parameter slice that must lose a channel together, found by Torch-Pruning.

Torch-Pruning's ``DependencyGraph`` (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023,
https://arxiv.org/abs/2301.12900) traces the model on example inputs and yields one *group* per set of coupled
channels: the producing conv/linear rows and biases, norm weights and biases, the consuming layers' input
columns, across residual adds, concatenations (index offsets), flattens and depthwise convolutions. Each
group becomes one :class:`~prunecli.sites.Site`. This is the only module that imports ``torch_pruning``.

A group is only a site when masking its channels computes exactly what removing them computes: groups
reaching the model's output, normalised over the channel dim (LayerNorm, GroupNorm, softmax...), holding
grouped (non-depthwise) convolutions, bare parameters or layers of unknown types are skipped, each with the
layer or op that caused it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.sites import IndexLayout, Member, Site

log = logging.getLogger(__name__)

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ROOT_TYPES = (*CONV, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Ops (grad_fn names, lower case) that mix the values of different channels: a zeroed channel changes the others.
MIXING_OPS = ("layernorm", "groupnorm", "softmax", "normbackward", "varbackward", "stdbackward", "sortbackward",
              "topkbackward", "cumsum", "logsumexp", "multiheadattention", "mha")


def dependency_graph(model: nn.Module, example_inputs: Any, key: str = "pruner.target") -> Any:
    """Torch-Pruning's dependency graph of ``model`` traced (in eval mode) on ``example_inputs``."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    except Exception as exc:  # tracing raises many types for unsupported ops
        raise ConfigError(key, "channel", "a model Torch-Pruning's DependencyGraph can trace",
                          reason=f"tracing {type(model).__name__} failed: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)


def groups(graph: Any) -> Iterator[tuple[nn.Module, Any]]:
    """``(root module, group over all its output channels)`` for every conv/linear layer."""
    for group in graph.get_all_groups(root_module_types=ROOT_TYPES):
        yield group[0].dep.target.module, group


def _module_dims(module: nn.Module, name: str, out: bool) -> dict[str, int] | str:
    """Which dim of each parameter of ``module`` indexes the channel, or why the group cannot be masked."""
    if isinstance(module, CONV):
        depthwise = module.groups == module.in_channels == module.out_channels
        if module.groups > 1 and not depthwise:
            return f"grouped convolution {name} (groups={module.groups}) is not supported"
        return {"weight": 0, "bias": 0} if out or depthwise else {"weight": 1}
    if isinstance(module, nn.Linear):
        return {"weight": 0, "bias": 0} if out else {"weight": 1}
    if isinstance(module, NORMS):
        return {"weight": 0, "bias": 0}
    if next(module.parameters(recurse=False), None) is None:
        return {}
    return f"{name} ({type(module).__name__}) mixes or rescales channels in a way masks cannot express exactly"


def group_site(graph: Any, group: Any, selected: dict[str, nn.Module] | None, round_to: int = 1) -> Site | str:
    """The site of one Torch-Pruning group, or the reason it cannot be one (``selected``: None = any layer)."""
    names = graph._module2name
    root = group[0].dep.target.module
    root_name = names[root]
    num_units = len(group[0].idxs)
    slices: dict[tuple[str, int], dict[int, int]] = {}
    params: dict[str, nn.Parameter] = {}
    for item in group.items:
        node, module = item.dep.target, item.dep.target.module
        out = graph.is_out_channel_pruning_fn(item.dep.handler)
        if out and not node.outputs:
            return f"its channels are outputs of the model (at {names.get(module, node.name)})"
        if isinstance(module, nn.Parameter):
            return f"it includes the bare parameter {graph._param_to_name.get(module, '?')}"
        name = names.get(module)
        if name is None:
            op = str(node.name).lower().replace("_", "")
            if any(bad in op for bad in MIXING_OPS):
                return f"op {node.name} mixes channels, so masked and removed channels would differ"
            continue
        dims = _module_dims(module, name, out)
        if isinstance(dims, str):
            return dims
        if out and isinstance(module, ROOT_TYPES) and selected is not None and name not in selected:
            return f"its channels are shared with {name}, which the layer rules leave dense"
        for pname, dim in dims.items():
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter):
                params[f"{name}.{pname}"] = p
                slices.setdefault((f"{name}.{pname}", dim), {}).update(zip(map(int, item.idxs),
                                                                           map(int, item.root_idxs)))
    fqns = [fqn for fqn, _ in slices]
    if len(set(fqns)) < len(fqns):
        return f"a parameter of it is coupled along two dims ({sorted(f for f in fqns if fqns.count(f) > 1)[0]})"
    members = []
    for (fqn, dim), mapping in slices.items():
        positions = tuple(sorted(mapping))
        layout = IndexLayout(tuple(params[fqn].shape), dim, positions, tuple(mapping[i] for i in positions),
                             num_units)
        members.append(Member(fqn, params[fqn], layout, scored=not fqn.endswith(".bias")))
    primary = f"{root_name}.weight"
    members.sort(key=lambda m: m.name != primary)
    unit_dim = -1 if isinstance(root, nn.Linear) else 1
    # The norm layer that directly consumes the root's output (Slim scores channels by its scale).
    root_node = graph.module2node.get(root)
    norm = next((names[o.module] for o in (root_node.outputs if root_node is not None else [])
                 if isinstance(o.module, NORMS) and o.module in names), None)
    return Site(primary, tuple(members), max_sparsity=(num_units - 1) / num_units, module=root_name,
                norm=norm, unit_dim=unit_dim, round_to=round_to)


def coupled_sites(model: nn.Module, modules: dict[str, nn.Module], example_inputs: Any,
                  round_to: int = 1) -> tuple[list[Site], dict[str, str]]:
    """Sites of the coupled groups rooted at the selected ``modules``, and ``{root FQN: reason}`` for the rest."""
    graph = dependency_graph(model, example_inputs)
    sites, skipped = [], {}
    for root, group in groups(graph):
        name = graph._module2name[root]
        if name not in modules:
            continue
        site = group_site(graph, group, modules, round_to)
        if isinstance(site, Site):
            sites.append(site)
            continue
        log.info("%s: channel group skipped: %s", name, site)
        for item in group.items:  # every selected layer whose output channels are in the group
            member = graph._module2name.get(item.dep.target.module)
            if member in modules and graph.is_out_channel_pruning_fn(item.dep.handler):
                skipped[member] = site
    for name in modules:
        if name not in skipped and not any(s.member(f"{name}.weight") for s in sites):
            skipped[name] = "not reached by the traced forward pass"
    return sites, skipped


def removable(site: Site, masks: dict[str, Tensor]) -> list[int]:
    """Units of ``site`` whose every member slice is masked (False) in ``masks``: removing them is exact."""
    kept = torch.zeros(site.num_units, dtype=torch.bool)
    for m in site.members:
        mask = masks.get(m.name)
        if mask is None:
            return []
        kept |= m.layout.to_units(mask.cpu().float()).bool().any(dim=1).cpu()
    return [int(i) for i in (~kept).nonzero().reshape(-1)]


@torch.no_grad()
def compact(model: nn.Module, masks: dict[str, Tensor], example_inputs: Any) -> list[list]:
    """Physically remove, in place, every channel whose coupled slices are all masked; returns the history
    (``[[root FQN, True, [indices]], ...]``) that :func:`replay` applies to a fresh dense model."""
    graph = dependency_graph(model, example_inputs, key="format")
    plan = []
    for root, group in groups(graph):
        site = group_site(graph, group, None)
        if isinstance(site, Site):
            idxs = removable(site, masks)
            if idxs:
                plan.append((root, idxs))
    for root, idxs in plan:
        pruner = graph.get_pruner_of_module(root)
        graph.get_pruning_group(root, pruner.prune_out_channels, idxs).prune()
    return [[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in graph.pruning_history()]


def replay(model: nn.Module, history: list[list], example_inputs: Any) -> nn.Module:
    """Apply a :func:`compact` history to a dense model of the same architecture (deterministic)."""
    graph = dependency_graph(model, example_inputs, key="format")
    graph.load_pruning_history([list(h) for h in history])
    return model


@dataclass(frozen=True)
class CoupledChannel:
    """Whole channels of coupled groups (``pruner.target=channel``), found on the model's example inputs.

    A channel's mask covers every coupled slice (see the module docstring), so the masked model computes what
    the compacted model computes (``prunecli export format=compact``). ``round_to`` keeps each group's channel
    count a multiple of e.g. 8. Without example inputs (``build_pruner(..., example_inputs=None)``) it falls
    back to :class:`~prunecli.targets.Channel` (layer + following norm, no coupling) with a warning.
    """

    round_to: int = 1
    module_types = ROOT_TYPES
    needs_example_inputs = True

    def __post_init__(self) -> None:
        if not isinstance(self.round_to, int) or isinstance(self.round_to, bool) or self.round_to < 1:
            raise ConfigError("pruner.target.round_to", self.round_to, "a positive integer, e.g. 8")

    def sites(self, model: nn.Module, modules: dict[str, nn.Module],
              example_inputs: Any = None) -> tuple[list[Site], dict[str, str]]:
        if example_inputs is None:
            from prunecli.targets._structured import Channel

            log.warning("pruner.target=channel without example inputs: channels are masked per layer (with the "
                        "following norm), not across coupled layers; compact export removes nothing")
            return Channel().sites(model, modules)
        return coupled_sites(model, modules, example_inputs, self.round_to)

    def __str__(self) -> str:
        return "channel" if self.round_to == 1 else f"channel(round_to={self.round_to})"
