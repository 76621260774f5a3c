"""SparseGPT against direct least-squares solves, N:M, blocking, and the reconstruction ordering of the papers."""

from __future__ import annotations

import pytest
import torch
from _layers import OneLinear, outlier_inputs, relative_error

from prunecli.errors import ConfigError
from prunecli.oneshot import column_selector, inverse_factor, prune_columns, prune_oneshot


def _problem(rows=6, cols=24, tokens=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.2, 3, cols, dtype=torch.float64)
    x = torch.randn(tokens, cols, generator=gen, dtype=torch.float64) * scale
    w = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    return x, w, 2 * x.T @ x / tokens


def _sequential_lstsq(x, w, keep):
    """The reference SparseGPT approximates: columns left to right; at each pruned column the weights right of
    it are re-solved by least squares given every column up to it fixed (pruned ones at 0)."""
    out = w.clone()
    for r in range(w.shape[0]):
        row = w[r].clone()
        for i in range(w.shape[1]):
            if keep[r, i]:
                continue
            row[i] = 0
            if i + 1 < w.shape[1]:
                target = x @ w[r] - x[:, :i + 1] @ row[:i + 1]
                row[i + 1:] = torch.linalg.lstsq(x[:, i + 1:], target).solution
        out[r] = row
    return out


def _global_lstsq(x, w, keep):
    """The optimal kept weights of each row for a fixed mask: ``min ||x w_r - x_kept w'||``."""
    out = torch.zeros_like(w)
    for r in range(w.shape[0]):
        out[r, keep[r]] = torch.linalg.lstsq(x[:, keep[r]], x @ w[r]).solution
    return out


@pytest.mark.parametrize("group", ["layer", "row"])
def test_own_mask_matches_sequential_least_squares(group):
    x, w, h = _problem()
    select, columns = column_selector(0.5, group)
    new, keep = prune_columns(w, *inverse_factor(h, percdamp=0.0), select, columns, blocksize=128)
    assert float(1 - keep.double().mean()) == pytest.approx(0.5)
    if group == "row":
        assert keep.sum(1).tolist() == [12] * 6
    assert torch.equal(new == 0, ~keep)
    reference = _sequential_lstsq(x, w, keep)
    assert float((new - reference).norm() / reference.norm()) < 1e-9


def test_mask_with_pruned_prefix_matches_global_least_squares():
    """When every row's pruned columns precede its kept ones, the left-to-right optimum is the global one."""
    x, w, h = _problem()
    keep = torch.ones_like(w, dtype=torch.bool)
    for r, k in enumerate([3, 12, 7, 20, 1, 15]):
        keep[r, :k] = False
    select, columns = column_selector(0.5, mask=keep)
    new, got = prune_columns(w, *inverse_factor(h, percdamp=0.0), select, columns, blocksize=128)
    assert torch.equal(got, keep)
    reference = _global_lstsq(x, w, keep)
    assert float((new - reference).norm() / reference.norm()) < 1e-9


def test_float32_blocked_lazy_updates_match_float64_reference():
    """blocksize 8 (three lazy updates over 24 columns) in float32 against the float64 least-squares solves."""
    x, w, h = _problem()
    select, columns = column_selector(0.5, "row")
    new, keep = prune_columns(w.float(), *inverse_factor(h.float(), percdamp=0.0), select, columns, blocksize=8)
    reference = _sequential_lstsq(x, w, keep)
    assert new.dtype == torch.float32
    assert float((new.double() - reference).norm() / reference.norm()) < 1e-4


@pytest.mark.parametrize("group", ["layer", "row"])
def test_two_four_exact_in_every_group_of_four(group):
    x, w, h = _problem(rows=8, cols=32)
    select, columns = column_selector(0.5, group, nm=(2, 4))
    new, keep = prune_columns(w, *inverse_factor(h), select, columns, blocksize=16)
    assert keep.reshape(8, 8, 4).sum(-1).eq(2).all()
    assert torch.equal(new == 0, ~keep)


def test_dead_input_columns_are_pruned_first():
    x, w, _ = _problem()
    x[:, [2, 5]] = 0
    select, columns = column_selector(0.25, "row")
    new, keep = prune_columns(w, *inverse_factor(2 * x.T @ x / len(x)), select, columns)
    assert not keep[:, [2, 5]].any() and (new[:, [2, 5]] == 0).all()


def test_reconstruction_error_sparsegpt_below_wanda_below_magnitude():
    """On a layer whose inputs have a few outlier features (section 3 of Wanda's paper), at 50% unstructured."""
    x = outlier_inputs(2048, 128)
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = OneLinear(w)
        masks = prune_oneshot(model, [x[i:i + 256] for i in range(0, 2048, 256)], method, sparsity=0.5)
        assert float(1 - masks["blocks.0.weight"].float().mean()) == 0.5
        errors[method] = relative_error(w, model.blocks[0].weight.detach(), x)
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors
    assert errors["sparsegpt"] < 0.8 * errors["wanda"] and errors["wanda"] < 0.5 * errors["magnitude"], errors


def test_bad_options_are_one_line_config_errors():
    model = OneLinear(torch.randn(4, 6))
    with pytest.raises(ConfigError, match=r"^pruner.method.damp=0.1 is not allowed"):
        prune_oneshot(model, [torch.randn(3, 6)], {"name": "sparsegpt", "damp": 0.1})
    with pytest.raises(ConfigError, match=r"^pruner.allocation='Global' is not allowed"):
        prune_oneshot(model, [torch.randn(3, 6)], "sparsegpt", allocation="global")
    with pytest.raises(ConfigError, match=r"^pruner.target='4x1' is not allowed"):
        prune_oneshot(model, [torch.randn(3, 6)], "sparsegpt", target="4x1")
    with pytest.raises(ConfigError, match=r"^pruner.method='obs' is not allowed"):
        prune_oneshot(model, [torch.randn(3, 6)], "obs")
    with pytest.raises(ConfigError, match=r"^sparsity=1.5 is not allowed"):
        prune_oneshot(model, [torch.randn(3, 6)], "wanda", sparsity=1.5)
