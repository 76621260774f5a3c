"""The engine hands its validation-loader evaluator to a search preset, which logs what it spent."""


def test_engine_runs_a_search_preset_with_its_evaluator(prune_run):
    out, summary = prune_run("pruner=simulated_annealing", "pruner.allocation.eval_batches=1", "sparsity=0.5")
    logs = "".join(p.read_text() for p in out.rglob("*.log"))
    assert "simulated_annealing: 12 evaluations" in logs, (logs[-2000:], sorted(summary))
    search = summary["search"]  # the allocation's report, carried by the pruner's report()
    assert search["method"] == "simulated_annealing" and search["total_evaluations"] == 12
    assert search["sparsity"] and set(search["sparsity"]) <= set(summary["per_layer"])  # chosen per layer
