"""Wanda's criterion and the per-row allocation against brute-force references."""

from __future__ import annotations

import pytest
import torch
from _layers import OneLinear, outlier_inputs

from prunecli.allocation import PerRow, parse_allocation
from prunecli.criteria import Wanda, parse_criterion
from prunecli.errors import ConfigError
from prunecli.oneshot import prune_oneshot
from prunecli.targets import parse_target


def _brute_force_keep(w, x, sparsity):
    """Sort ``|W_ij| * ||X_j||_2`` within each row and drop the lowest ``sparsity`` share of it."""
    norm = x.square().sum(0).sqrt()
    keep = torch.ones_like(w, dtype=torch.bool)
    k = int(sparsity * w.shape[1])
    for r in range(w.shape[0]):
        order = sorted(range(w.shape[1]), key=lambda j: float(w[r, j].abs() * norm[j]))
        keep[r, order[:k]] = False
    return keep


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_mask_equals_brute_force_sort_per_row(sparsity):
    x, w = outlier_inputs(512, 32), torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    model = OneLinear(w)
    masks = prune_oneshot(model, [x[:200], x[200:]], "wanda", sparsity=sparsity)
    assert torch.equal(masks["blocks.0.weight"], _brute_force_keep(w, x, sparsity))
    assert torch.equal(model.blocks[0].weight.detach(), w * masks["blocks.0.weight"])


def test_outlier_features_are_kept_where_magnitude_drops_them():
    x = outlier_inputs(512, 32, outliers=2, scale=50.0)
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(4))
    w[:, :2] = 0.1  # small weights on the loud features: magnitude prunes them, Wanda must not
    wanda = prune_oneshot(OneLinear(w), [x], "wanda")["blocks.0.weight"]
    magnitude = prune_oneshot(OneLinear(w), [x], "magnitude")["blocks.0.weight"]
    assert wanda[:, :2].all() and not magnitude[:, :2].any()


def test_two_four_keeps_the_two_best_scores_of_every_group():
    x, w = outlier_inputs(256, 32), torch.randn(8, 32, generator=torch.Generator().manual_seed(5))
    keep = prune_oneshot(OneLinear(w), [x], "wanda", target="2:4")["blocks.0.weight"]
    groups = keep.reshape(8, 8, 4)
    assert groups.sum(-1).eq(2).all()
    score = (w.abs() * x.square().sum(0).sqrt()).reshape(8, 8, 4)
    assert torch.equal(groups, torch.zeros_like(groups).scatter(2, score.topk(2, dim=2).indices, True))


def test_per_row_reaches_the_sparsity_in_every_row_and_respects_caps():
    w = torch.randn(6, 10)
    sites, _ = parse_target("unstructured").sites(None, {"fc": OneLinear(w).blocks[0]})
    sites = {s.name: s for s in sites}
    scores = {"fc.weight": torch.rand(60)}
    keep = PerRow().allocate(scores, sites, 0.3)["fc.weight"].reshape(6, 10)
    assert keep.sum(1).tolist() == [7] * 6
    assert PerRow(max_sparsity=0.2).allocate(scores, sites, 0.5)["fc.weight"].reshape(6, 10).sum(1).tolist() == [8] * 6
    assert PerRow(max_sparsity=0.2).reachable(sites) == pytest.approx(0.2)
    nm_sites = {s.name: s for s in parse_target("2:4").sites(None, {"fc": torch.nn.Linear(8, 3)})[0]}
    assert PerRow().reachable(nm_sites) == 0.5
    assert isinstance(parse_allocation("per_row"), PerRow) and isinstance(parse_criterion("wanda"), Wanda)


def test_per_row_refuses_blocks_in_one_line():
    sites = {s.name: s for s in parse_target("4x1").sites(None, {"fc": torch.nn.Linear(8, 8)})[0]}
    with pytest.raises(ConfigError, match=r"^pruner.allocation='per_row' is not allowed: expected an unstructured"):
        PerRow().allocate({"fc.weight": torch.rand(16)}, sites, 0.5)


def test_wanda_without_calibration_input_names_the_layer():
    site = parse_target("unstructured").sites(None, {"fc": torch.nn.Linear(4, 2)})[0][0]
    with pytest.raises(ConfigError, match=r"\(no calibration input was observed for fc.weight\)$"):
        Wanda().score(site)


def test_per_row_drives_the_training_time_pruner_too():
    """``pruner.allocation=per_row`` in a gradual run: every output row of every layer at the same sparsity,
    already-pruned weights (score -inf) staying pruned."""
    from prunecli import build_pruner

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 10))
    schedule = {"name": "agp", "final_sparsity": 0.5, "start_step": 0, "end_step": 10, "frequency": 1}
    pruner = build_pruner(model, {"target": "unstructured", "allocation": "per_row", "schedule": schedule})
    pruner.prune_to(0.25)
    first = {n: m.clone() for n, m in pruner.masks.items()}
    pruner.prune_to(0.5)
    for fqn, mask in pruner.masks.items():
        rows = mask.reshape(mask.shape[0], -1)
        assert rows.sum(1).eq(rows.shape[1] // 2).all(), fqn
        assert not (mask & ~first[fqn]).any(), fqn


def test_the_training_time_pruner_refuses_wanda_up_front():
    from prunecli import build_pruner
    from prunecli.config import check_pruner_config

    cfg = {"criterion": "wanda", "allocation": "per_row", "schedule": {"name": "oneshot", "final_sparsity": 0.5}}
    with pytest.raises(ConfigError, match=r"pruner.criterion='wanda' .*prune_oneshot"):
        check_pruner_config(cfg)  # before any training: a run would otherwise end waiting for calibration data
    with pytest.raises(ConfigError, match="calibration inputs"):
        build_pruner(torch.nn.Sequential(torch.nn.Linear(4, 4)), cfg)
