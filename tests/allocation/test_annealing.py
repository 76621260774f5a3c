import math

import pytest
from _search_fixtures import mlp, penalise, per_layer, prune

from prunecli.allocation import SimulatedAnnealing
from prunecli.errors import ConfigError

SA = {"name": "simulated_annealing", "start_temperature": 1.0, "stop_temperature": 0.01, "cool_down_rate": 0.9,
      "max_sparsity": 0.99}


def test_annealing_spares_the_penalised_layer_and_meets_the_target():
    calls = []
    pruner = prune(mlp(), SA, penalise("3", calls))
    layers = per_layer(pruner)
    assert layers["3.weight"] < 0.05
    assert sum(layers[f"{i}.weight"] for i in (1, 3, 5)) / 3 == pytest.approx(0.5, abs=2 / 1024)
    report = pruner.allocation.report()
    steps = math.ceil(math.log(0.01 / 1.0) / math.log(0.9))
    assert report["evaluations"] == len(calls) == 1 + steps == 45
    assert report["best_score"] == pytest.approx(-10 * layers["3.weight"], abs=1e-6)
    assert report["sparsity"]["3.weight"] == pytest.approx(layers["3.weight"], abs=1e-3)


def test_annealing_counts_and_errors():
    assert SimulatedAnnealing().steps == 11   # 0.1 * 0.8**11 <= 0.01 < 0.1 * 0.8**10
    with pytest.raises(ConfigError, match=r"^pruner.allocation.start_temperature=0.01 .*zero evaluations"):
        SimulatedAnnealing(start_temperature=0.01, stop_temperature=0.01)
    with pytest.raises(ConfigError, match=r"^pruner.allocation.cool_down_rate=1.0"):
        SimulatedAnnealing(cool_down_rate=1.0)
    with pytest.raises(ConfigError, match=r"^pruner.allocation='simulated_annealing' .*evaluator"):
        prune(mlp(), "simulated_annealing", None)
