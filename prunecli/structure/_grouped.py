"""Grouped convolutions pruned by whole groups (ResNeXt, RegNet).

A grouped (not depthwise) convolution ``K`` couples its input and output channels group by group: channel ``c``
of its input reaches only group ``c // (in / groups)``'s outputs. Masking single channels of either side cannot
be removed exactly, but masking a whole group -- its input channels, its output rows, and everything coupled to
them -- can: the compact ``K`` has fewer groups (:func:`prunecli.structure._surgery.apply_cuts` refits them).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from prunecli.sites import IndexLayout, Member, Site


def grouped_reason(grouped: list) -> str:
    module, name = grouped[0][:2]
    # Whole groups are pruned only where one prunable group feeds it and its outputs reach no other grouped conv.
    return f"grouped convolution {name} (groups={module.groups}) is not supported"


def merge_grouped(names: dict, pending: dict[str, tuple]) -> dict[str, Site | None]:
    """Whole-group sites of grouped convolutions: for each grouped conv ``K`` whose input channels are all of
    one group ``A``'s channels and whose output channels root a group ``B`` (no other grouped conv in either),
    one site of ``K.groups`` units: unit ``g`` is ``A``'s channels feeding group ``g``, ``K``'s output rows of
    group ``g`` and everything coupled to them. Masking a unit zeroes group ``g``'s inputs and outputs, so the
    compact model has ``K.groups - removed`` groups and computes the same (the weight's input dim is per group
    and stays). Returns ``{B's root FQN: site, A's root FQN: None}`` (``A``'s channels are units of the merged site)."""
    feeds = {g[0][1]: root for root, (_, g, _) in pending.items() if len(g) == 1 and not g[0][2]}
    out: dict[str, Site | None] = {}
    for b_root, (b_site, b_grouped, b_producers) in pending.items():
        if len(b_grouped) != 1 or not b_grouped[0][2]:
            continue
        module, kname, _, rows, row_roots = b_grouped[0]
        a_root = feeds.get(kname)
        if a_root is None or a_root == b_root:
            continue
        a_site, a_grouped, _ = pending[a_root]
        site = _whole_group_site(module, kname, a_site, a_grouped[0], b_site, rows, row_roots)
        if isinstance(site, Site):
            out[b_root], out[a_root] = site, None
    return out


def _whole_group_site(module: nn.Module, kname: str, a_site: Site, a_item: tuple, b_site: Site,
                      rows: list[int], row_roots: list[int]) -> Site | None:
    groups = module.groups
    cin, cout = module.in_channels // groups, module.out_channels // groups
    a_unit = {r: i // cin for i, r in zip(a_item[3], a_item[4])}
    b_unit = {r: i // cout for i, r in zip(rows, row_roots)}
    if any(u not in a_unit for u in range(a_site.num_units)) or any(u not in b_unit for u in range(b_site.num_units)):
        return None  # some of A's channels reach other layers than K, or B's roots are not all K's rows
    members = []
    for site, unit in ((a_site, a_unit), (b_site, b_unit)):
        for m in site.members:
            layout = IndexLayout(m.layout.shape, m.layout.dim, m.layout.positions,
                                 tuple(unit[u] for u in m.layout.units), groups)
            members.append(replace(m, layout=layout))
    weight = module.weight
    members.insert(0, Member(f"{kname}.weight", weight, IndexLayout(tuple(weight.shape), 0, tuple(rows),
                                                                     tuple(i // cout for i in rows), groups)))
    if module.bias is not None:
        members.append(Member(f"{kname}.bias", module.bias, IndexLayout(tuple(module.bias.shape), 0, tuple(rows),
                                                                        tuple(i // cout for i in rows), groups),
                              scored=False))
    keys = [(m.name, m.layout.dim) for m in members]
    if len(set(keys)) < len(keys) or len({m.name for m in members}) < len(members):
        return None
    return Site(f"{kname}.weight", tuple(members), max_sparsity=(groups - 1) / groups, module=kname)
