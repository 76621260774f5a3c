"""The ``channel`` target: coupled channel groups and attention heads as sites.

The groups come from :func:`prunecli.structure.channel_groups` (Torch-Pruning's dependency graph on example
inputs: every slice that must lose a channel together) and the heads from :func:`prunecli.structure.head_site`;
this module picks those rooted at the layers the layer rules select and reports why the rest stay dense.
Masking a site's channels computes exactly what removing them computes (:func:`prunecli.structure.compact`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.sites import Site
from prunecli.structure import OWNERS, channel_groups, head_site

log = logging.getLogger(__name__)

<<<<<<< HEAD
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
ROOT_TYPES = (*CONV, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Layers whose channel removal Torch-Pruning performs exactly; groups holding anything else are sliced here.
TP_EXACT = (*CONV, nn.Linear, *NORMS)
# Layers that produce a group's channels: one left dense by the layer rules keeps the whole group dense.
OWNERS = (*ROOT_TYPES, nn.MultiheadAttention)
# Ops (grad_fn names, lower case) that mix the values of different channels: a zeroed channel changes the others.
MIXING_OPS = ("layernorm", "groupnorm", "softmax", "normbackward", "varbackward", "stdbackward", "sortbackward",
              "topkbackward", "cumsum", "logsumexp", "multiheadattention", "mha")


def _record_attention_ops(model: nn.Module, internal: set) -> list:
    """Forward hooks adding to ``internal`` the autograd nodes computed inside each ``nn.MultiheadAttention``
    (its softmax is over keys, not channels: the attention's channels are its in_proj columns and out_proj rows)."""
    def hook(module, args, kwargs, output):
        inputs = [t for t in (*args, *kwargs.values()) if isinstance(t, Tensor)]
        stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
        todo = [t.grad_fn for t in output if isinstance(t, Tensor) and t.grad_fn is not None]
        while todo:
            fn = todo.pop()
            if fn in stop or fn in internal:
                continue
            internal.add(fn)
            todo.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)

    return [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()
            if isinstance(m, nn.MultiheadAttention)]


def dependency_graph(model: nn.Module, example_inputs: Any, key: str = "pruner.target") -> Any:
    """Torch-Pruning's dependency graph of ``model`` traced (in eval mode) on ``example_inputs``; its
    ``attention_ops`` attribute holds the autograd nodes computed inside attention modules."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    internal: set = set()
    handles = _record_attention_ops(model, internal)
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    except Exception as exc:  # tracing raises many types for unsupported ops
        raise ConfigError(key, "channel", "a model Torch-Pruning's DependencyGraph can trace",
                          reason=f"tracing {type(model).__name__} failed: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    graph.attention_ops = frozenset(internal)
    return graph


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
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return _norm_dims(module, name)
    if isinstance(module, nn.MultiheadAttention):
        reason = attention_unsupported(module, name)
        return reason or {"in_proj_weight": 1, "out_proj.weight": 0, "out_proj.bias": 0}
    if next(module.parameters(recurse=False), None) is None:
        return {}
    return f"{name} ({type(module).__name__}) mixes or rescales channels in a way masks cannot express exactly"


def _norm_dims(norm: nn.LayerNorm | nn.GroupNorm, name: str) -> dict[str, int] | str:
    kind = type(norm).__name__
    if type(norm) not in (nn.LayerNorm, nn.GroupNorm):
        return f"{name} ({kind}) subclasses a norm layer: only nn.LayerNorm and nn.GroupNorm are compacted exactly"
    if getattr(norm, "weight", None) is None:
        return f"{name} ({kind}) has no affine weight, so a masked channel is not zero after it"
    if isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) != 1:
        return f"{name} (LayerNorm) normalises over {len(norm.normalized_shape)} dims, not the channel dim alone"
    return {"weight": 0, "bias": 0}


def attention_unsupported(mha: nn.MultiheadAttention, name: str) -> str | None:
    """Why ``mha`` cannot be compacted (heads or residual channels removed), or None."""
    if not mha._qkv_same_embed_dim:
        return f"{name} (MultiheadAttention) has separate q/k/v sizes (kdim/vdim), which compaction does not support"
    if mha.bias_k is not None or mha.add_zero_attn:
        return f"{name} (MultiheadAttention) uses bias_k/bias_v or add_zero_attn, which compaction does not support"
    return None


def _param(module: nn.Module, pname: str) -> nn.Parameter | None:
    try:
        return module.get_parameter(pname)
    except AttributeError:
        return None


def _index_member(name: str, param: nn.Parameter, dim: int, units: int, scored: bool, chunks: int = 1) -> Member:
    """A member of ``units`` equal slices along ``dim`` (``chunks`` packed copies, e.g. q/k/v) as an IndexLayout."""
    size = param.shape[dim]
    per = size // (chunks * units)
    positions = tuple(range(size))
    layout = IndexLayout(tuple(param.shape), dim, positions, tuple(p % (size // chunks) // per for p in positions),
                         units)
    return Member(name, param, layout, scored)


def group_site(graph: Any, group: Any, selected: dict[str, nn.Module] | None, round_to: int = 1) -> Site | str:
    """The site of one Torch-Pruning group, or the reason it cannot be one (``selected``: None = any layer)."""
    names = graph._module2name
    root = group[0].dep.target.module
    root_name = names[root]
    num_units = len(group[0].idxs)
    slices: dict[tuple[str, int], dict[int, int]] = {}
    params: dict[str, nn.Parameter] = {}
    consumers: set[str] = set()  # parameters whose input columns carry the group (not its producers)
    for item in group.items:
        node, module = item.dep.target, item.dep.target.module
        out = graph.is_out_channel_pruning_fn(item.dep.handler)
        if out and not node.outputs:
            return f"its channels are outputs of the model (at {names.get(module, node.name)})"
        if isinstance(module, nn.Parameter):
            pname = graph._param_to_name.get(module)
            if pname is None or module.dim() == 0:
                return f"it includes a bare parameter Torch-Pruning cannot name ({node.name})"
            params[pname] = module
            slices.setdefault((pname, node.pruning_dim % module.dim()), {}).update(
                zip(map(int, item.idxs), map(int, item.root_idxs)))
            continue
        name = names.get(module)
        if name is None:
            op = str(node.name).lower().replace("_", "")
            if any(bad in op for bad in MIXING_OPS) and node.grad_fn not in graph.attention_ops:
                return f"op {node.name} mixes channels, so masked and removed channels would differ"
            continue
        dims = _module_dims(module, name, out)
        if isinstance(dims, str):
            return dims
        attention = isinstance(module, nn.MultiheadAttention)
        if (out or attention) and isinstance(module, OWNERS) and selected is not None and name not in selected:
            return f"its channels are shared with {name}, which the layer rules leave dense"
        for pname, dim in dims.items():
            p = _param(module, pname)
            if p is not None:
                params[f"{name}.{pname}"] = p
                if dim == 1 and isinstance(module, (*ROOT_TYPES, nn.MultiheadAttention)):
                    consumers.add(f"{name}.{pname}")
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
        members.append(Member(fqn, params[fqn], layout, scored=not fqn.endswith(".bias"), consumer=fqn in consumers))
    primary = f"{root_name}.weight"
    members.sort(key=lambda m: m.name != primary)
    unit_dim = -1 if isinstance(root, nn.Linear) else 1
    # The norm layer that directly consumes the root's output (Slim scores channels by its scale).
    root_node = graph.module2node.get(root)
    norm = next((names[o.module] for o in (root_node.outputs if root_node is not None else [])
                 if isinstance(o.module, NORMS) and o.module in names), None)
    return Site(primary, tuple(members), max_sparsity=(num_units - 1) / num_units, module=root_name,
                norm=norm, unit_dim=unit_dim, round_to=round_to)


def _attention_modules(model: nn.Module) -> dict[str, nn.MultiheadAttention]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}


def head_site(name: str, mha: nn.MultiheadAttention) -> Site | str:
    """The head site of ``mha`` with index layouts (as the channel groups have), or why it cannot be compacted."""
    return attention_unsupported(mha, name) or mha_head_site(name, mha, _index_member)

=======
>>>>>>> structure

def coupled_sites(model: nn.Module, modules: dict[str, nn.Module], example_inputs: Any,
                  round_to: int = 1, heads: bool = True) -> tuple[list[Site], dict[str, str]]:
    """Sites of the coupled groups rooted at the selected ``modules`` and (with ``heads``) the heads of the
    selected attention modules, and ``{module FQN: reason}`` for the rest."""
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    # An attention module's out_proj is pruned through the attention module (heads, residual channels).
    modules = {n: m for n, m in modules.items() if not any(n.startswith(f"{a}.") for a in attention)}
    sites, skipped = [], {}
    for group in channel_groups(model, example_inputs, modules, round_to):
        if group.site is not None:
            sites.append(group.site)
            continue
        log.info("%s: channel group skipped: %s", group.root, group.reason)
        for producer in group.producers:  # every selected layer whose output channels are in the group
            if producer in modules:
                skipped[producer] = group.reason
    for name, module in modules.items():
        if isinstance(module, nn.MultiheadAttention) and not heads:
            skipped.setdefault(name, "its heads are kept whole (pruner.target.heads: false)")
        elif isinstance(module, nn.MultiheadAttention):
            site = head_site(name, module)
            if isinstance(site, Site):
                sites.append(site)
                skipped.pop(name, None)  # its heads are pruned even where the residual channels through it stay dense
            else:
                skipped[name] = site
        elif name not in skipped and not any(s.member(f"{name}.weight") for s in sites):
            skipped[name] = "not reached by the traced forward pass"
    return sites, skipped


@dataclass(frozen=True)
class CoupledChannel:
    """Whole channels of coupled groups (``pruner.target=channel``), found on the model's example inputs.

    A channel's mask covers every coupled slice (see :mod:`prunecli.structure`), so the masked model computes
    what the compacted model computes (``prunecli export format=compact``). Selected ``nn.MultiheadAttention``
    modules add one head site each, scored and allocated like the channel groups (``heads: false`` keeps heads
    whole, e.g. for criteria that read output channels). ``round_to`` keeps each group's channel count a multiple
    of e.g. 8. Without example inputs (``build_pruner(..., example_inputs=None)``) it falls
    back to :class:`~prunecli.targets.LayerChannel` (layer + following norm, no coupling) with a warning.
    """

    round_to: int = 1
    heads: bool = True
    module_types = OWNERS
    needs_example_inputs = True
    unit_name = "channels"  # what a goal counts (the summary's "channels 0.50 removed")

    def __post_init__(self) -> None:
        if not isinstance(self.round_to, int) or isinstance(self.round_to, bool) or self.round_to < 1:
            raise ConfigError("pruner.target.round_to", self.round_to, "a positive integer, e.g. 8")
        if not isinstance(self.heads, bool):
            raise ConfigError("pruner.target.heads", self.heads, "true or false")

    def sites(self, model: nn.Module, modules: dict[str, nn.Module],
              example_inputs: Any = None) -> tuple[list[Site], dict[str, str]]:
        if example_inputs is None:
            from prunecli.targets._structured import LayerChannel

            log.warning("pruner.target=channel without example inputs: channels are masked per layer (with the "
                        "following norm), not across coupled layers; compact export removes nothing")
            return LayerChannel().sites(model, modules)
        return coupled_sites(model, modules, example_inputs, self.round_to, self.heads)

    def __str__(self) -> str:
        options = [f"round_to={self.round_to}"] * (self.round_to != 1) + ["heads=false"] * (not self.heads)
        return f"channel({', '.join(options)})" if options else "channel"
