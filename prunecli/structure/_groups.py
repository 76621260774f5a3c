"""Coupled channel groups and attention heads as sites: every parameter slice that must go together.

Each Torch-Pruning group (:mod:`prunecli.structure._graph`) rooted at a conv/linear layer becomes one
:class:`~prunecli.sites.Site` of index-layout members, when masking its channels computes exactly what
removing them computes. A channel masked wherever it is produced (conv/linear rows and bias, embedding
columns, bare parameters such as a ViT's ``class_token`` sliced along their channel dim, norm weight and bias)
is zero at every later layer, including LayerNorm and GroupNorm (their statistics still count it: the compact
model keeps that count, see :mod:`prunecli.structure._modules`) and ``nn.MultiheadAttention`` (its ``in_proj``
columns and ``out_proj`` rows are members). Each ``nn.MultiheadAttention`` also has a head site
(:func:`head_site`). A group is refused, with the layer or op that caused it, when it reaches the model's
output, passes an op that mixes channels (softmax over channels, a functional norm such as RMSNorm's
``rsqrt``...), holds one tied parameter twice, grouped (non-depthwise) convolutions, LayerNorm subclasses or
norms without affine parameters, attention with separate q/k/v sizes, ``bias_k`` or ``add_zero_attn``, or
layers of unknown types.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator

from torch import nn

from prunecli.sites import IndexLayout, Member, Site
from prunecli.structure._graph import CONV, ROOT_TYPES, dependency_graph, root_groups
from prunecli.structure._grouped import grouped_reason, merge_grouped
from prunecli.structure._modules import is_layer_norm_2d

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Layers that produce a group's channels: one left dense by the layer rules keeps the whole group dense.
OWNERS = (*ROOT_TYPES, nn.MultiheadAttention)
# Ops (grad_fn names, lower case) that mix the values of different channels: a zeroed channel changes the others.
MIXING_OPS = ("layernorm", "groupnorm", "softmax", "normbackward", "varbackward", "stdbackward", "sortbackward",
              "topkbackward", "cumsum", "logsumexp", "multiheadattention", "mha", "sqrt")


@dataclass(frozen=True)
class ChannelGroup:
    """The coupled output channels of one conv/linear layer ``root``.

    ``site`` holds every coupled slice (index layouts), or is None when masks cannot make the group exact;
    ``reason`` then says why, and ``producers`` names the layers whose output channels are in the group.
    """

    root: str
    site: Site | None
    reason: str = ""
    producers: tuple[str, ...] = ()


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
    if isinstance(module, nn.Embedding) and out and module.max_norm is None:  # max_norm rescales whole rows
        return {"weight": 1}
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
    if type(norm) not in (nn.LayerNorm, nn.GroupNorm) and not is_layer_norm_2d(norm):
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


def index_member(name: str, param: nn.Parameter, dim: int, units: int, scored: bool, chunks: int = 1) -> Member:
    """A member of ``units`` equal slices along ``dim`` (``chunks`` packed copies, e.g. q/k/v) as an IndexLayout."""
    size = param.shape[dim]
    per = size // (chunks * units)
    positions = tuple(range(size))
    layout = IndexLayout(tuple(param.shape), dim, positions, tuple(p % (size // chunks) // per for p in positions),
                         units)
    return Member(name, param, layout, scored)


def is_grouped(module: nn.Module) -> bool:
    """A grouped convolution that is not depthwise (its channels couple by whole groups)."""
    return isinstance(module, CONV) and module.groups > 1 and not (
        module.groups == module.in_channels == module.out_channels)


def group_site(graph: Any, group: Any, selected: dict[str, nn.Module] | None, round_to: int = 1,
               grouped: list | None = None) -> Site | str:
    """The site of one Torch-Pruning group, or the reason it cannot be one (``selected``: None = any layer).

    ``grouped``: a list to which the group's grouped-convolution slices are added as ``(module, FQN, out?,
    positions, root indices)`` instead of refusing the group; the site then leaves them out (see
    :func:`merge_grouped`)."""
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
        if node in getattr(graph, "unmapped_reshapes", ()):
            return (f"op {node.name} is a reshape Torch-Pruning cannot map (e.g. a channel shuffle, which permutes "
                    "channels)")
        name = names.get(module)
        if name is None:
            op = str(node.name).lower().replace("_", "")
            if any(bad in op for bad in MIXING_OPS) and node.grad_fn not in graph.attention_ops:
                return f"op {node.name} mixes channels, so masked and removed channels would differ"
            continue
        if grouped is not None and is_grouped(module):
            if out and selected is not None and name not in selected:
                return f"its channels are shared with {name}, which the layer rules leave dense"
            grouped.append((module, name, out, [int(i) for i in item.idxs], [int(r) for r in item.root_idxs]))
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
    tied = {}
    for fqn, p in params.items():
        if tied.setdefault(id(p), fqn) != fqn:
            return f"{tied[id(p)]} and {fqn} are one tied parameter, which compaction cannot cut as two"
    fqns = [fqn for fqn, _ in slices]
    if len(set(fqns)) < len(fqns):
        return f"a parameter of it is coupled along two dims ({sorted(f for f in fqns if fqns.count(f) > 1)[0]})"
    bad = out_of_range(slices, params, num_units)
    if bad:
        return bad
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


def out_of_range(slices: dict[tuple[str, int], dict[int, int]], params: dict[str, nn.Parameter],
                 num_units: int) -> str | None:
    """Why the index positions Torch-Pruning mapped onto the group's parameters cannot be masks (a position
    beyond a parameter's size, or a unit beyond the root's channels: its index mapping through some reshapes of
    attention and MLP-mixer layouts is wrong), or None."""
    for (fqn, dim), mapping in slices.items():
        size = params[fqn].shape[dim]
        if any(not 0 <= p < size for p in mapping):
            return (f"the dependency graph maps its channels to positions beyond {fqn}'s size {size} along dim "
                    f"{dim} (max {max(mapping)}), so its slices are unknown")
        if any(not 0 <= u < num_units for u in mapping.values()):
            return (f"the dependency graph maps {fqn} to channels beyond the root's {num_units}, so its slices are "
                    "unknown")
    return None


def traced_groups(graph: Any, selected: dict[str, nn.Module] | None = None, round_to: int = 1,
                  skip: Iterable[str] = ()) -> Iterator[tuple[nn.Module, ChannelGroup]]:
    """``(root module, group)`` for every conv/linear root of ``graph`` (only those in ``selected`` unless None,
    none of those in ``skip``). The two groups around a grouped convolution (its input channels, its output
    channels) become one site whose units are the convolution's groups (:func:`merge_grouped`)."""
    names = graph._module2name
    done: list[tuple[nn.Module, ChannelGroup | tuple]] = []
    for root, group in root_groups(graph, skip):
        name = names[root]
        if selected is not None and name not in selected:
            continue
        if isinstance(group, str):  # its analysis went over the bounds or failed
            done.append((root, ChannelGroup(name, None, group, (name,))))
            continue
        grouped: list = []
        site = group_site(graph, group, selected, round_to, grouped)
        producers = tuple(p for p in (names.get(item.dep.target.module) for item in group.items
                                      if graph.is_out_channel_pruning_fn(item.dep.handler)) if p is not None)
        if isinstance(site, Site) and grouped:
            done.append((root, (site, grouped, producers)))
        elif isinstance(site, Site):
            done.append((root, ChannelGroup(name, site)))
        else:
            done.append((root, ChannelGroup(name, None, site, producers)))
    merged = merge_grouped(names, {names[r]: g for r, g in done if isinstance(g, tuple)})
    for root, group in done:
        if isinstance(group, tuple):
            name = names[root]
            if name in merged:  # the feeding group's root has no site of its own: its channels are units
                group = ChannelGroup(name, merged[name]) if merged[name] is not None else ChannelGroup(name, None)
            else:
                group = ChannelGroup(name, None, grouped_reason(group[1]), group[2])
        yield root, group


def channel_groups(model: nn.Module, example_inputs: Any, selected: dict[str, nn.Module] | None = None,
                   round_to: int = 1, key: str = "pruner.target", skip: Iterable[str] = ()) -> list[ChannelGroup]:
    """The coupled channel groups of ``model``, traced on ``example_inputs``, in graph order.

    Args:
        selected: Only the groups rooted at these layers (``{FQN: module}``), and a group whose channels a
            conv/linear/attention layer outside it also produces is refused; None: every group.
        round_to: Each site's ``round_to`` (kept channel counts a multiple of it).
        key: The config key a tracing failure names.
        skip: FQNs of layers not to root a group at (their output channels are pruned otherwise).
    """
    graph = dependency_graph(model, example_inputs, key)
    return [group for _, group in traced_groups(graph, selected, round_to, skip)]


def mha_head_site(name: str, mha: nn.MultiheadAttention, member: Callable[..., Member], round_to: int = 1) -> Site:
    """The head site of ``mha``: its heads' rows of q, k, v (weights and biases) and columns of ``out_proj``.

    ``member(fqn, param, dim, heads, scored, chunks=1)`` builds each member (axis or index layouts);
    ``chunks=3`` is the packed q/k/v ``in_proj``.
    """
    h = mha.num_heads
    members = []
    if mha.in_proj_weight is not None:
        members.append(member(f"{name}.in_proj_weight", mha.in_proj_weight, 0, h, True, chunks=3))
    else:
        for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            members.append(member(f"{name}.{p}", getattr(mha, p), 0, h, True))
    if mha.in_proj_bias is not None:
        members.append(member(f"{name}.in_proj_bias", mha.in_proj_bias, 0, h, False, chunks=3))
    members.append(replace(member(f"{name}.out_proj.weight", mha.out_proj.weight, 1, h, True), consumer=True))
    return Site(name, tuple(members), max_sparsity=(h - 1) / h, module=name, round_to=round_to)


def head_site(name: str, mha: nn.MultiheadAttention) -> Site | str:
    """The head site of ``mha`` with index layouts (as the channel groups have), or why it cannot be compacted."""
    return attention_unsupported(mha, name) or mha_head_site(name, mha, index_member)
