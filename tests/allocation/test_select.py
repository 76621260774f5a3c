"""select_lowest equals the naive reference (concatenate, stable sort, prefix by cumulative weight) exactly."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import prunecli.allocation.select as select_module
from prunecli.allocation import select_lowest

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def reference_many(scores: list[torch.Tensor], budgets: list[int], weights: list[int] | None = None):
    """Sort every unit stably by score (ties: tensor order, then flat index) and, per budget, take the longest
    prefix whose total weight is at most the budget. float64 holds every float16/bfloat16/float32 exactly."""
    weights = weights or [1] * len(scores)
    values = torch.cat([s.reshape(-1).double() for s in scores])
    unit_weight = torch.cat([torch.full((s.numel(),), w, dtype=torch.int64) for s, w in zip(scores, weights)])
    order = torch.sort(values, stable=True).indices
    cumulative = torch.cumsum(unit_weight[order], 0)
    results = []
    for budget in budgets:
        chosen = torch.zeros(values.numel(), dtype=torch.bool)
        chosen[order[: int(torch.searchsorted(cumulative, budget, right=True))]] = True
        results.append([part.view(s.shape) for part, s in zip(chosen.split([s.numel() for s in scores]), scores)])
    return results


def reference(scores: list[torch.Tensor], budget: int, weights: list[int] | None = None) -> list[torch.Tensor]:
    return reference_many(scores, [budget], weights)[0]


def finite_weight(scores, weights=None) -> int:
    weights = weights or [1] * len(scores)
    return sum(w * int((s != math.inf).sum()) for s, w in zip(scores, weights))


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == torch.bool and g.shape == w.shape
        assert torch.equal(g, w)


@st.composite
def problems(draw):
    """1-6 tensors of random shapes and dtypes, rounded to force ties, with zeros, +-inf, negatives."""
    n = draw(st.integers(1, 6))
    same_dtype = draw(st.booleans())
    dtype0 = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(n):
        shape = tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3)))
        x = torch.randn(shape, generator=gen) * draw(st.sampled_from([1.0, 100.0]))
        x = x.round(decimals=draw(st.sampled_from([0, 1, 4])))
        for value, rate in ((0.0, 0.4), (math.inf, 0.15), (-math.inf, 0.1)):
            if draw(st.booleans()):
                x[torch.rand(shape, generator=gen) < rate] = value
        scores.append(x.to(dtype0 if same_dtype else draw(st.sampled_from(DTYPES))))
    weights = draw(st.one_of(st.none(), st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    top = finite_weight(scores, weights)
    budget = draw(st.one_of(st.integers(0, top), st.just(top)))
    return scores, budget, weights


@pytest.fixture(params=[0, 2048], ids=["selector", "one-sort"])
def both_paths(request, monkeypatch):
    """Small inputs go through one sort by default; ``_SORT_MEAN_SIZE = 0`` sends them through the selector."""
    monkeypatch.setattr(select_module, "_SORT_MEAN_SIZE", request.param)


@pytest.fixture
def tiny_sample(monkeypatch):
    """Force the sampling, bracket-retry and tie-splitting paths on small inputs."""

    def configure(sample_size: int, z: float, slack: int) -> None:
        monkeypatch.setattr(select_module, "_SORT_MEAN_SIZE", 0)
        monkeypatch.setattr(select_module, "SAMPLE_SIZE", sample_size)
        monkeypatch.setattr(select_module, "_Z", z)
        monkeypatch.setattr(select_module, "_SLACK", slack)

    return configure


def equals_reference(strategy, examples: int) -> None:
    """select_lowest equals the reference on every problem hypothesis draws from ``strategy``."""

    @settings(max_examples=examples, deadline=None)
    @given(strategy)
    def check(problem):
        scores, budget, weights = problem
        assert_same(select_lowest(scores, budget, weights), reference(scores, budget, weights))

    check()


@pytest.mark.parametrize("sort_mean_size", [0, 2048], ids=["gathered-whole", "one-sort"])
def test_equals_reference_on_small_inputs(monkeypatch, sort_mean_size):
    monkeypatch.setattr(select_module, "_SORT_MEAN_SIZE", sort_mean_size)
    equals_reference(problems(), 100)


@pytest.mark.parametrize("sample_size,z,slack", [(16, 5.0, 0), (8, 0.0, 0), (32, 1.0, 2)])
def test_equals_reference_through_sampling(tiny_sample, sample_size, z, slack):
    """z=0 makes the sampled bracket miss often; slack=0 makes every tie block at a cut be split off."""
    tiny_sample(sample_size, z, slack)
    equals_reference(problems(), 120)


def _large_case(dtype: torch.dtype, rows: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    scores = [torch.randn(rows, 700, generator=gen), torch.rand(1000, rows, generator=gen),
              torch.randn(5, generator=gen)]
    scores = [s.to(dtype) for s in scores]
    scores[0][:, :100] = 0.0  # a large tie block
    return scores


def _check_fractions(scores, weights, fractions=(0.0, 0.001, 0.1, 0.5, 0.9, 0.999, 1.0)):
    total = finite_weight(scores, weights)
    budgets = [round(fraction * total) for fraction in fractions]
    for budget, want in zip(budgets, reference_many(scores, budgets, weights)):
        got = select_lowest(scores, budget, weights)
        assert_same(got, want)
        if weights is None:
            assert sum(int(m.sum()) for m in got) == budget


def test_large_input_at_the_real_sample_size():
    scores = _large_case(torch.float32, 300)
    assert sum(s.numel() for s in scores) > select_module.SAMPLE_SIZE
    _check_fractions(scores, None, (0.001, 0.9))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [None, [3, 1, 7]])
def test_larger_inputs_take_the_sampled_path(monkeypatch, dtype, weights):
    monkeypatch.setattr(select_module, "SAMPLE_SIZE", 2048)
    monkeypatch.setattr(select_module, "_SORT_MEAN_SIZE", 0)
    scores = _large_case(dtype, 40)
    assert sum(s.numel() for s in scores) > 10 * select_module.SAMPLE_SIZE
    _check_fractions(scores, weights)


def test_massive_ties_at_the_threshold():
    scores = [torch.zeros(600, 600), torch.ones(200, 200), torch.zeros(300, 300)]
    budgets = [1, 123_457, 360_000, 400_000, 449_999, 450_000, 460_000]
    for budget, want in zip(budgets, reference_many(scores, budgets)):
        assert_same(select_lowest(scores, budget), want)


def test_ties_fill_in_tensor_then_index_order(both_paths):
    scores = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0.0, 0.0, -1.0])]
    got = select_lowest(scores, 3)
    assert got[0].tolist() == [[False, True], [True, False]]
    assert got[1].tolist() == [False, False, True]


def test_weighted_prefix_stops_at_the_first_unit_that_does_not_fit(both_paths):
    scores = [torch.tensor([1.0, 4.0]), torch.tensor([2.0, 3.0])]
    got = select_lowest(scores, 6, weights=[1, 5])  # 1.0 (1), 2.0 (5) = 6; then 3.0 (5) does not fit
    assert [m.tolist() for m in got] == [[True, False], [True, False]]
    got = select_lowest(scores, 5, weights=[1, 5])  # 2.0 does not fit, so neither does the later 4.0 (1)
    assert [m.tolist() for m in got] == [[True, False], [False, False]]


def test_inf_is_never_selected_and_minus_inf_first(both_paths):
    scores = [torch.tensor([math.inf, -math.inf, 0.5, math.inf])]
    assert select_lowest(scores, 2)[0].tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="finite"):
        select_lowest(scores, 3)


def test_single_tensor_and_non_contiguous_input(both_paths):
    x = torch.randn(50, 40).t()
    got = select_lowest([x], 777)[0]
    assert got.shape == x.shape and int(got.sum()) == 777
    assert torch.equal(got, reference([x.contiguous()], 777)[0])


def test_empty_tensors_and_zero_budget(both_paths):
    scores = [torch.empty(0), torch.randn(3, 0), torch.tensor([2.0, 1.0])]
    assert [m.tolist() for m in select_lowest(scores, 1)] == [[], [[], [], []], [False, True]]
    assert not any(m.any() for m in select_lowest(scores, 0))


@pytest.mark.parametrize("budget", [0, 1, 5])
def test_nan_is_rejected(both_paths, budget):
    scores = [torch.tensor([1.0, float("nan"), 3.0, 4.0, 5.0])]
    with pytest.raises(ValueError, match="NaN"):
        select_lowest(scores, budget)


def test_bad_arguments():
    with pytest.raises(TypeError):
        select_lowest([torch.tensor([1, 2])], 1)
    with pytest.raises(ValueError, match="weights"):
        select_lowest([torch.ones(2)], 1, weights=[1, 2])
    with pytest.raises(ValueError, match="weights"):
        select_lowest([torch.ones(2)], 1, weights=[0])
    with pytest.raises(ValueError, match="budget"):
        select_lowest([torch.ones(2)], -1)
    with pytest.raises(ValueError, match="budget"):
        select_lowest([torch.ones(2)], 3)


def test_global_rng_untouched():
    scores = [torch.randn(700, 700)]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    select_lowest(scores, 1000)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------ the -inf floor shortcut (_select_floor)
import prunecli.allocation._select_floor as floor_module  # noqa: E402


@st.composite
def floor_problems(draw):
    """Like ``problems`` but with a large ``-inf`` block and a budget a little above it (gradual pruning)."""
    scores, _, weights = draw(problems())
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    for s in scores:
        s[torch.rand(s.shape, generator=gen) < draw(st.sampled_from([0.3, 0.6, 0.9]))] = -math.inf
    w = weights or [1] * len(scores)
    floor = sum(wi * int(torch.isneginf(s).sum()) for s, wi in zip(scores, w))
    budget = min(floor + draw(st.integers(0, 12)), finite_weight(scores, weights))
    return scores, budget, weights


@pytest.mark.parametrize("sample,z,slack", [(8192, 5.0, 4096), (4, 0.0, 0), (16, 1.0, 1)])
def test_floor_shortcut_equals_reference(monkeypatch, sample, z, slack):
    """z=0 and tiny samples make the shortcut's cut miss often: it must then hand over, never answer wrongly."""
    monkeypatch.setattr(select_module, "_SORT_MEAN_SIZE", 0)
    monkeypatch.setattr(floor_module, "MAX_FRACTION", 1.0)
    for name, value in (("SAMPLE", sample), ("_Z", z), ("_SLACK", slack)):
        monkeypatch.setattr(floor_module, name, value)
    equals_reference(floor_problems(), 150)


@pytest.mark.parametrize("weights", [None, [4, 4, 1]])
def test_floor_shortcut_answers_the_gradual_pruning_case(monkeypatch, weights):
    """Half the units at -inf and the budget a few units above: the shortcut answers (no general selector)
    and equals the reference, ties at the cut included."""
    gen = torch.Generator().manual_seed(3)
    scores = [torch.randn(512, 400, generator=gen), torch.rand(700, 300, generator=gen).round(decimals=3),
              torch.randn(3000, generator=gen)]
    for s in scores:
        s[torch.rand(s.shape, generator=gen) < 0.5] = -math.inf
    calls = []
    monkeypatch.setattr(select_module._Selector, "run", lambda self: calls.append(1))
    floor = sum(w * int(torch.isneginf(s).sum()) for s, w in zip(scores, weights or [1, 1, 1]))
    budgets = [floor, floor + 1, floor + 70, floor + 2000]
    for budget, want in zip(budgets, reference_many(scores, budgets, weights)):
        assert_same(select_lowest(scores, budget, weights), want)
    assert calls == []
