"""Attention heads and feed-forward widths of transformer blocks, found from the module tree (no tracing).

:func:`find_attention` recognises the attention modules of common Hugging Face models by their projections'
names and ``torch.nn.MultiheadAttention``:

==========================================  =====================================================
BERT / RoBERTa / ELECTRA                    ``self.query/key/value`` + ``output.dense``
DistilBERT                                  ``q_lin/k_lin/v_lin`` + ``out_lin``
GPT-2                                       fused ``c_attn`` (``Conv1D``, weight ``[in, 3*inner]``) + ``c_proj``
Llama / Mistral / Qwen2 (grouped queries)   ``q_proj/k_proj/v_proj`` + ``o_proj`` (or ``out_proj``)
==========================================  =====================================================

Head counts come from the rows of the projections divided by the module's head size (``head_dim``,
``attention_head_size``), so a compacted model is read the same way. One *unit* is one key/value head with
its ``num_heads / num_kv_heads`` query heads (grouped-query attention; a plain head otherwise): its q, k, v rows
and biases and its columns of the output projection. Masking them zeroes the unit's contribution exactly, and
removing them leaves each kept head's dims together, since these models reshape with ``view(..., -1, head_dim)``
(Michel et al., "Are Sixteen Heads Really Better than One?", 2019, https://arxiv.org/abs/1905.10650).

:func:`find_ffn` finds the feed-forward blocks whose intermediate width is free to prune per layer:
``gate_proj``/``up_proj`` -> ``down_proj``, ``intermediate.dense`` -> ``output.dense``, ``lin1`` -> ``lin2``,
``c_fc`` -> ``c_proj`` (``Conv1D``), the activation between them elementwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from torch import nn

from prunecli.sites import Member, Site

# (query, key, value, output) projection names relative to the attention module, separate projections.
SEPARATE = (("q_proj", "k_proj", "v_proj", "o_proj"), ("q_proj", "k_proj", "v_proj", "out_proj"),
            ("q_lin", "k_lin", "v_lin", "out_lin"), ("self.query", "self.key", "self.value", "output.dense"))
FUSED = (("c_attn", "c_proj"),)  # GPT-2: q, k, v packed along the output dim of one Conv1D
HEAD_SIZE_ATTRS = ("head_dim", "attention_head_size", "head_size")
HEAD_COUNT_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
# (producers, consumer) of feed-forward blocks; the producers' outputs meet elementwise.
FFN = ((("gate_proj", "up_proj"), "down_proj"), (("intermediate.dense",), "output.dense"),
       (("lin1",), "lin2"), (("c_fc",), "c_proj"))

MemberFactory = Callable[..., Member]


def conv1d_types() -> tuple[type, ...]:
    """Hugging Face's ``Conv1D`` (a linear layer storing its weight as ``[in, out]``) once transformers is loaded."""
    utils = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(utils, "Conv1D", None)
    return (conv1d,) if isinstance(conv1d, type) else ()


def _out_dim(layer: nn.Module) -> int:
    """Dim of ``layer.weight`` that indexes output features (Conv1D stores ``[in, out]``)."""
    return 1 if isinstance(layer, conv1d_types()) else 0


@dataclass(frozen=True)
class AttentionHeads:
    """One attention module's heads.

    ``q``, ``k``, ``v``, ``o``: FQNs of the projection layers (all three equal for a fused q/k/v layer, the
    attention module itself for ``nn.MultiheadAttention``); ``num_heads`` query heads share ``num_kv_heads``
    key/value heads of ``head_dim`` dims each; the units are the key/value heads.
    """

    module: str
    q: str
    k: str
    v: str
    o: str
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def fused(self) -> bool:
        return self.q == self.k == self.v

    @property
    def layers(self) -> tuple[str, ...]:
        """The projection layers' FQNs (each once)."""
        return tuple(dict.fromkeys((self.q, self.k, self.v, self.o)))


@dataclass(frozen=True)
class FeedForward:
    """One feed-forward block: ``up`` layers (their outputs meet elementwise) feed ``down``."""

    module: str
    up: tuple[str, ...]
    down: str
    width: int


def _child(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _head_dim(holder: nn.Module, model: nn.Module, q_rows: int) -> int | None:
    """The head size a module reads in forward, else q rows / its head count, else the model config's."""
    for attr in HEAD_SIZE_ATTRS:
        if isinstance(value := getattr(holder, attr, None), int) and value > 0:
            return value
    for attr in HEAD_COUNT_ATTRS:
        if isinstance(value := getattr(holder, attr, None), int) and value > 0 and q_rows % value == 0:
            return q_rows // value
    heads = getattr(getattr(model, "config", None), "num_attention_heads", None)
    return q_rows // heads if isinstance(heads, int) and heads > 0 and q_rows % heads == 0 else None


def _attention_at(model: nn.Module, name: str, module: nn.Module) -> AttentionHeads | str | None:
    """The heads of ``module`` if it is a known attention module, the reason it cannot be pruned, or None."""
    if isinstance(module, nn.MultiheadAttention):
        return AttentionHeads(name, name, name, name, name, module.num_heads, module.num_heads, module.head_dim)
    for roles in SEPARATE:
        layers = [_child(module, r) for r in roles]
        if all(isinstance(layer, nn.Linear) for layer in layers):
            q, k, v, o = layers
            holder = module.get_submodule(roles[0].rpartition(".")[0]) if "." in roles[0] else module
            head_dim = _head_dim(holder, model, q.out_features)
            fqns = [_join(name, r) for r in roles]
            return _checked(name, fqns, (q.out_features, k.out_features, v.out_features, o.in_features), head_dim)
    for qkv_name, o_name in FUSED:
        qkv, o = _child(module, qkv_name), _child(module, o_name)
        if isinstance(qkv, (nn.Linear, *conv1d_types())) and isinstance(o, (nn.Linear, *conv1d_types())):
            if not (isinstance(qkv, conv1d_types()) and isinstance(o, conv1d_types())):
                return f"{name}: fused {qkv_name} is not a transformers Conv1D"
            if _child(module, "q_attn") is not None:
                return f"{name}: cross-attention (separate q_attn) is not supported"
            rows = qkv.weight.shape[1]
            if rows % 3:
                return f"{name}: fused {qkv_name} has {rows} outputs, not q, k and v of equal size"
            fqns = [_join(name, qkv_name)] * 3 + [_join(name, o_name)]
            return _checked(name, fqns, (rows // 3,) * 3 + (o.weight.shape[0],), _head_dim(module, model, rows // 3))
    return None


def _checked(name: str, fqns: list[str], sizes: tuple[int, int, int, int], head_dim: int | None,
             ) -> AttentionHeads | str:
    q_rows, k_rows, v_rows, o_cols = sizes
    if head_dim is None:
        return f"{name}: its head size is unknown (no head_dim/num_heads attribute, no config.num_attention_heads)"
    if q_rows % head_dim or k_rows % head_dim or k_rows != v_rows or o_cols != q_rows:
        return (f"{name}: projection sizes q={q_rows}, k={k_rows}, v={v_rows}, o_in={o_cols} do not split into "
                f"heads of {head_dim}")
    heads, kv = q_rows // head_dim, k_rows // head_dim
    if heads % kv:
        return f"{name}: {heads} query heads do not split evenly over {kv} key/value heads"
    return AttentionHeads(name, *fqns, heads, kv, head_dim)


def _per_head_parameter(model: nn.Module, heads: AttentionHeads) -> str | None:
    """A parameter of the attention module outside its projections indexed by head (it would need cutting too)."""
    if heads.module == heads.q:
        return None
    inside = tuple(f"{layer}." for layer in heads.layers)
    for pname, p in model.get_submodule(heads.module).named_parameters():
        fqn = _join(heads.module, pname)
        if not fqn.startswith(inside) and any(s in (heads.num_heads, heads.num_kv_heads) and s != heads.head_dim
                                             for s in p.shape):
            return f"{heads.module}: {fqn} is indexed by head, which head pruning does not cut"
    return None


def find_attention(model: nn.Module) -> tuple[list[AttentionHeads], dict[str, str]]:
    """The attention modules of ``model`` (see the module docstring), outermost first, and ``{module FQN:
    reason}`` for attention-like modules whose heads cannot be pruned."""
    found, skipped, inside = [], {}, ()
    for name, module in model.named_modules():
        if inside and name.startswith(inside):
            continue
        heads = _attention_at(model, name, module)
        if heads is None:
            continue
        inside = (*inside, f"{name}.") if name else ("",)
        if isinstance(heads, AttentionHeads):
            heads = _per_head_parameter(model, heads) or heads
        if isinstance(heads, str):
            skipped[name] = heads
        else:
            found.append(heads)
    return found, skipped


def attention_site(model: nn.Module, heads: AttentionHeads, member: MemberFactory) -> Site:
    """The head site of ``heads``: per key/value head, its query heads' q rows, its k and v rows (weights and
    biases) and the query heads' columns of the output projection. ``member(fqn, param, dim, units, scored,
    chunks=1)`` builds each member (axis or index layouts); the units are the key/value heads."""
    kv = heads.num_kv_heads
    members = []
    for role, fqn in (("q", heads.q), ("k", heads.k), ("v", heads.v))[: 1 if heads.fused else 3]:
        layer = model.get_submodule(fqn)
        chunks = 3 if heads.fused else 1
        members.append(member(f"{fqn}.weight", layer.weight, _out_dim(layer), kv, True, chunks=chunks))
        if isinstance(getattr(layer, "bias", None), nn.Parameter):
            members.append(member(f"{fqn}.bias", layer.bias, 0, kv, False, chunks=chunks))
    o = model.get_submodule(heads.o)
    in_dim = 1 - _out_dim(o)
    o_member = member(f"{heads.o}.weight", o.weight, in_dim, kv, True)
    members.append(Member(o_member.name, o_member.param, o_member.layout, o_member.scored, consumer=True))
    return Site(heads.module, tuple(members), max_sparsity=(kv - 1) / kv, module=heads.module)


def find_ffn(model: nn.Module) -> list[FeedForward]:
    """The feed-forward blocks of ``model`` (see the module docstring) whose layers agree on one width."""
    linear = (nn.Linear, *conv1d_types())
    found = []
    for name, module in model.named_modules():
        for ups, down_name in FFN:
            layers = [_child(module, u) for u in ups]
            down = _child(module, down_name)
            if not (isinstance(down, linear) and all(isinstance(u, linear) for u in layers)):
                continue
            widths = {u.weight.shape[_out_dim(u)] for u in layers}
            if len(widths) == 1 and down.weight.shape[1 - _out_dim(down)] in widths and \
                    all(type(u) is type(down) for u in layers):
                found.append(FeedForward(name, tuple(_join(name, u) for u in ups), _join(name, down_name),
                                         widths.pop()))
            break
    return found


def ffn_site(model: nn.Module, ffn: FeedForward, member: MemberFactory, round_to: int = 1) -> Site:
    """The intermediate channels of ``ffn``: the up layers' output rows and biases, the down layer's inputs."""
    members = []
    for fqn in ffn.up:
        layer = model.get_submodule(fqn)
        members.append(member(f"{fqn}.weight", layer.weight, _out_dim(layer), ffn.width, True))
        if isinstance(getattr(layer, "bias", None), nn.Parameter):
            members.append(member(f"{fqn}.bias", layer.bias, 0, ffn.width, False))
    down = model.get_submodule(ffn.down)
    d = member(f"{ffn.down}.weight", down.weight, 1 - _out_dim(down), ffn.width, True)
    members.append(Member(d.name, d.param, d.layout, d.scored, consumer=True))
    return Site(f"{ffn.up[0]}.weight", tuple(members), max_sparsity=(ffn.width - 1) / ffn.width, module=ffn.up[0],
                unit_dim=-1, round_to=round_to)


def refit_blocks(model: nn.Module) -> None:
    """After slicing: each attention module's head-count attributes (GPT-2's ``split_size``, read by its
    forward; ``num_heads``-style counts and ``all_head_size`` kept true) and Conv1D's ``nf``/``nx``."""
    conv1d = conv1d_types()
    for module in model.modules():
        if conv1d and isinstance(module, conv1d):
            module.nx, module.nf = module.weight.shape
    found, _ = find_attention(model)
    for heads in found:
        if heads.module == heads.q:
            continue  # nn.MultiheadAttention: compacted by prunecli.structure.Attention
        module = model.get_submodule(heads.module)
        holder = model.get_submodule(heads.q.rpartition(".")[0]) if not heads.fused else module
        if not any(isinstance(getattr(holder, attr, None), int) for attr in HEAD_SIZE_ATTRS):
            continue  # its head size came from a (now stale) head count: the counts cannot be recomputed
        inner = heads.num_heads * heads.head_dim
        for target in {id(module): module, id(holder): holder}.values():
            for attr in HEAD_COUNT_ATTRS:
                if isinstance(getattr(target, attr, None), int):
                    setattr(target, attr, heads.num_heads)
            for attr, value in (("num_key_value_heads", heads.num_kv_heads), ("all_head_size", inner),
                                ("split_size", inner)):
                if isinstance(getattr(target, attr, None), int):
                    setattr(target, attr, value)


def transformer_sites(model: nn.Module, member: MemberFactory, round_to: int = 1,
                      ) -> tuple[list[Site], dict[str, str]]:
    """Head sites of every attention module :func:`find_attention` finds (``nn.MultiheadAttention`` excepted:
    :func:`prunecli.structure.head_site`) and intermediate-channel sites of every :func:`find_ffn` block, and
    ``{module FQN: reason}`` for the attention modules refused."""
    found, refused = find_attention(model)
    sites = [attention_site(model, heads, member) for heads in found if heads.module != heads.q]
    return sites + [ffn_site(model, ffn, member, round_to) for ffn in find_ffn(model)], refused


def site_keys(site: Site) -> set[tuple[str, int]]:
    """``(parameter FQN, dim)`` of every member of ``site``: two sites sharing one would cut the same dim."""
    return {(m.name, m.layout.dim) for m in site.members}


def producers(sites: Iterable[Site]) -> set[str]:
    """FQNs of the layers whose output units the ``sites`` hold (not their consumers)."""
    return {m.name.rpartition(".")[0] for site in sites for m in site.members if not m.consumer}
