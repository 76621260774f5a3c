"""Structured targets: whole output channels and whole attention heads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from torch import nn

from prunecli.errors import ConfigError
from prunecli.sites import AxisLayout, Member, Site
from prunecli.structure import attention_site, conv1d_types, find_attention, following_norms, mha_head_site
from prunecli.targets._weights import WEIGHT_TYPES, weight_sites

log = logging.getLogger(__name__)


def _axis_member(name: str, param: nn.Parameter, dim: int, units: int, scored: bool, chunks: int = 1) -> Member:
    return Member(name, param, AxisLayout(tuple(param.shape), dim, units, chunks), scored)


@dataclass(frozen=True)
class LayerChannel:
    """Whole output channels (filters) of Conv/Linear layers, each layer on its own: the ``channel`` target
    without example inputs.

    A channel's mask covers the layer's weight rows, its bias, and the weight AND bias of a norm layer that
    directly consumes the layer's output, so a pruned channel outputs exactly zero (Li et al., "Pruning
    Filters for Efficient ConvNets", 2017, https://arxiv.org/abs/1608.08710). Coupling across residual adds
    and the consumers' input columns needs the traced graph (:class:`~prunecli.targets.CoupledChannel`). At
    least one channel is kept.
    """

    module_types = WEIGHT_TYPES
    unit_name = "channels"  # what a goal counts (the summary's "channels 0.50 removed")

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        norms = following_norms(model)
        return weight_sites(modules, lambda name, fqn, weight, _: self._site(model, name, weight, norms.get(name)))

    def _site(self, model: nn.Module, name: str, weight: nn.Parameter, norm_name: str | None) -> Site:
        module = model.get_submodule(name)
        units = weight.shape[0]
        members = [_axis_member(f"{name}.weight", weight, 0, units, True)]
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            members.append(_axis_member(f"{name}.bias", module.bias, 0, units, False))
        if norm_name is not None:
            norm = model.get_submodule(norm_name)
            for pname in ("weight", "bias"):
                p = getattr(norm, pname, None)
                if isinstance(p, nn.Parameter) and p.dim() == 1 and p.shape[0] == units:
                    members.append(_axis_member(f"{norm_name}.{pname}", p, 0, units, False))
        # Conv outputs are [N, C, ...]; Linear outputs [..., F]: the channel dim activation criteria read.
        unit_dim = -1 if isinstance(module, nn.Linear) else 1
        return Site(f"{name}.weight", tuple(members), max_sparsity=(units - 1) / units,
                    module=name, norm=norm_name, unit_dim=unit_dim)

    def __str__(self) -> str:
        return "channel"


def selected_by(site: Site, modules: dict[str, nn.Module]) -> bool:
    """Whether the layer rules select ``site``: its module, or a layer producing its units (not a consumer)."""
    return site.module in modules or any(m.name.rpartition(".")[0] in modules for m in site.members if not m.consumer)


@dataclass(frozen=True)
class Head:
    """Whole attention heads.

    Covers every ``torch.nn.MultiheadAttention`` selected by the layer rules and the attention modules of
    common Hugging Face models that :func:`prunecli.structure.find_attention` recognises (BERT/RoBERTa,
    DistilBERT, GPT-2, Llama/Mistral/Qwen2; selected through their q/k/v projection layers), or instead the
    q/k/v/o Linear quartets named in config (``quartets: [{q: attn.q_proj, k: attn.k_proj, v: attn.v_proj,
    o: attn.out_proj}]`` with ``num_heads``). A head's mask covers its rows of q, k, v (weights and biases) and
    its columns of the output projection, so the head contributes exactly zero (Michel et al., "Are Sixteen
    Heads Really Better than One?", 2019, https://arxiv.org/abs/1905.10650). With grouped-query attention one
    unit is a key/value head together with its query heads. At least one head per module is kept.
    """

    num_heads: int | None = None
    quartets: tuple[dict, ...] = field(default_factory=tuple)
    unit_name = "heads"  # what a goal counts (the summary's "heads 0.50 removed")

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        """Attention modules and the projection layers through which other attention modules are selected."""
        return (nn.MultiheadAttention, nn.Linear, *conv1d_types())

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        sites, skipped = [], {}
        for name, module in modules.items():
            if isinstance(module, nn.MultiheadAttention):
                sites.append(mha_head_site(name, module, _axis_member))
        if self.quartets:
            return sites + [self._quartet_site(model, i, q) for i, q in enumerate(self.quartets)], skipped
        found, refused = find_attention(model)
        for heads in found:
            site = attention_site(model, heads, _axis_member) if heads.module != heads.q else None
            if site is not None and selected_by(site, modules):
                sites.append(site)
        for name, reason in refused.items():
            if any(m == name or m.startswith(f"{name}.") for m in modules):
                skipped[name] = reason
                log.info("%s: skipped: %s", name, reason)
        return sites, skipped

    def _quartet_site(self, model: nn.Module, index: int, quartet: dict) -> Site:
        key = f"pruner.target.quartets[{index}]"
        if set(quartet) != {"q", "k", "v", "o"}:
            raise ConfigError(key, dict(quartet), "a mapping with exactly the keys q, k, v, o (module FQNs)")
        if not self.num_heads:
            raise ConfigError("pruner.target.num_heads", self.num_heads, "a positive integer when quartets are given")
        h = self.num_heads
        layers = {}
        for role, fqn in quartet.items():
            try:
                layers[role] = model.get_submodule(fqn)
            except AttributeError:
                raise ConfigError(f"{key}.{role}", fqn, "the FQN of an nn.Linear in the model") from None
            if not isinstance(layers[role], nn.Linear):
                raise ConfigError(f"{key}.{role}", fqn, "the FQN of an nn.Linear",
                                  f"it is a {type(layers[role]).__name__}")
        for role, dim in (("q", 0), ("k", 0), ("v", 0), ("o", 1)):
            size = layers[role].weight.shape[dim]
            if size % h:
                raise ConfigError("pruner.target.num_heads", h, f"a divisor of {quartet[role]}'s embedding size {size}")
        members = []
        for role in ("q", "k", "v"):
            layer = layers[role]
            members.append(_axis_member(f"{quartet[role]}.weight", layer.weight, 0, h, True))
            if layer.bias is not None:
                members.append(_axis_member(f"{quartet[role]}.bias", layer.bias, 0, h, False))
        members.append(replace(_axis_member(f"{quartet['o']}.weight", layers["o"].weight, 1, h, True), consumer=True))
        return Site(quartet["q"].rsplit(".", 1)[0] or quartet["q"], tuple(members), max_sparsity=(h - 1) / h,
                    module=quartet["q"])

    def __str__(self) -> str:
        return "head"
