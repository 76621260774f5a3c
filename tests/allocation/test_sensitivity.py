import pytest
import torch
from _search_fixtures import mlp, penalise, per_layer, prune

from prunecli.errors import ConfigError


def test_sensitivity_spares_the_sensitive_layer_and_meets_the_target():
    calls = []
    model = mlp()
    pruner = prune(model, {"name": "sensitivity", "max_sparsity": 0.99}, penalise("3", calls))
    layers = per_layer(pruner)
    assert layers["3.weight"] == 0.0
    assert layers["1.weight"] == pytest.approx(0.75, abs=1 / 1024)
    assert layers["5.weight"] == pytest.approx(0.75, abs=1 / 1024)
    assert pruner.report().to_dict()["sparsity"] == pytest.approx(0.5, abs=1e-3)
    report = pruner.allocation.report()
    assert report["method"] == "sensitivity"
    assert report["evaluations"] == len(calls) == 1 + 3 * 10
    assert report["sparsity"]["3.weight"] == 0.0
    assert report["curves"]["3.weight"]["drop"][-1] == pytest.approx(9.5, abs=0.01)


def test_sensitivity_caches_its_scan_across_updates():
    calls = []
    model = mlp()
    pruner = prune(model, {"name": "sensitivity", "grid": [0.25, 0.5, 0.75]}, penalise("1", calls), 0.3)
    assert len(calls) == 1 + 3 * 3
    pruner.update_masks(0.5)
    assert len(calls) == 1 + 3 * 3   # no new evaluation
    layers = per_layer(pruner)
    assert layers["1.weight"] == 0.0 and (layers["3.weight"] + layers["5.weight"]) / 2 == pytest.approx(0.75, 1e-3)


def test_sensitivity_without_evaluator_or_grid_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^pruner.allocation='sensitivity' .*evaluator\(model\)") as err:
        prune(mlp(), "sensitivity", None)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^pruner.allocation.grid=\[\] .*empty grid"):
        prune(mlp(), {"name": "sensitivity", "grid": []}, penalise("1"))


def test_unreachable_budget_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^sparsity=0.95 is not allowed"):
        prune(mlp(), {"name": "sensitivity", "max_sparsity": 0.9}, penalise("1"), sparsity=0.95)
    assert torch.all(mlp()[1].weight != 0)


def test_a_resumed_search_keeps_its_scan_report_and_count():
    from prunecli import build_pruner

    calls = []
    pruner = prune(mlp(), {"name": "sensitivity", "grid": [0.25, 0.5, 0.75]}, penalise("1", calls), 0.3)
    state = pruner.state_dict()
    again = []
    cfg = {"target": "unstructured", "allocation": {"name": "sensitivity", "grid": [0.25, 0.5, 0.75]},
           "schedule": {"name": "oneshot", "final_sparsity": 0.3, "start_step": 0}}
    resumed = build_pruner(mlp(1), cfg, total_steps=1, evaluator=penalise("1", again))
    resumed.load_state_dict(state)
    assert resumed.allocation.report() == pruner.allocation.report()   # curves, evaluations, choice
    resumed.update_masks(0.5)
    assert again == []   # no new scan on the resumed run's other weights
    assert per_layer(resumed)["1.weight"] == 0.0


def test_a_resumed_annealing_draws_as_the_uninterrupted_one():
    from prunecli.allocation import SimulatedAnnealing

    first = SimulatedAnnealing()
    first._total = 37
    second = SimulatedAnnealing()
    second.load_state_dict(first.state_dict())
    assert second._total == 37 and second.report() == first.report()
