"""The numbers behind the report's figures: the step axis of the curves, the schedule and its mask updates, Pareto
fronts, the overrides that set jobs apart."""

from __future__ import annotations

import json

import pytest

from prunecli.report.read import Job, varying_overrides
from prunecli.report.schedule import schedule_trace
from prunecli.report.series import curves, pareto_front


def test_phases_and_rounds_follow_each_other_on_one_step_axis():
    rows = [{"phase": "pretrain", "epoch": 1, "step": 10, "loss": 1.0},
            {"phase": "pretrain", "epoch": 2, "step": 20, "loss": 0.5},
            {"phase": "dense", "loss": 0.4, "accuracy": 0.9},
            {"phase": "prune", "round": 1, "epoch": 1, "step": 5, "loss": 0.6, "sparsity": 0.3},
            {"phase": "prune", "round": 1, "epoch": 2, "step": 10, "loss": 0.5, "sparsity": 0.5},
            {"phase": "prune", "round": 2, "epoch": 1, "step": 10, "loss": 0.7, "sparsity": 0.75}]
    c = curves(rows)
    assert c.steps == [10, 20, 20, 25, 30, 40]
    assert (c.pretrain_end, c.prune_start) == (20, 20)
    assert c.series("loss", {"prune"}) == ([25, 30, 40], [0.6, 0.5, 0.7])
    assert c.series("accuracy") == ([20], [0.9])
    assert curves([{"phase": "dense", "loss": 1.0}, {"phase": "prune", "step": 4, "loss": float("nan")}]).series(
        "loss") == ([0.0], [1.0])   # a NaN loss is left out, not drawn


def test_pareto_fronts_for_each_direction():
    # accuracy vs sparsity: both higher is better
    pts = [(0.5, 0.9), (0.5, 0.8), (0.8, 0.85), (0.9, 0.7), (0.8, 0.6)]
    assert pareto_front(pts, x_higher=True, y_higher=True) == [0, 2, 3]
    # accuracy vs FLOPs: fewer FLOPs is better
    pts = [(100, 0.9), (50, 0.8), (200, 0.95), (150, 0.85)]
    assert pareto_front(pts, x_higher=False, y_higher=True) == [1, 0, 2]
    # perplexity vs sparsity: lower perplexity is better; equal points both stay
    pts = [(0.5, 30.0), (0.5, 30.0), (0.7, 40.0), (0.7, 45.0)]
    assert pareto_front(pts, x_higher=True, y_higher=False) == [0, 1, 2]


def _job(tmp_path, schedule: dict, **summary) -> Job:
    ckpt = tmp_path / "checkpoint" / "last"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text(json.dumps({"config": {"schedule": schedule}}))
    return Job(tmp_path, "run", summary={"rounds": None, **summary})


def test_the_schedule_is_redrawn_with_its_mask_updates(tmp_path):
    agp = {"name": "agp", "initial_sparsity": 0.0, "final_sparsity": 0.9, "start": 0.0, "end": 0.7, "frequency": 2}
    # 12 steps, end 0.7 -> step 8; the objective's final sparsity (summary) wins over the config's
    trace = schedule_trace(_job(tmp_path, agp, steps=12, target_sparsity=0.75), start=100)
    assert trace.updates == [100, 102, 104, 106, 108]
    assert trace.steps[0] == 100 and trace.steps[-1] == 112 and trace.sparsity[-1] == pytest.approx(0.75)
    assert trace.update_sparsity == pytest.approx([0.75 * (1 - (1 - p) ** 3) for p in (0, 2 / 8, 4 / 8, 6 / 8, 1)])


@pytest.mark.parametrize("schedule, summary", [
    ({"name": "none", "initial_sparsity": 0.0, "final_sparsity": 0.5}, {"steps": 0}),      # one-shot preset
    ({"name": "agp", "final_sparsity": 0.5}, {"steps": 12, "rounds": {"count": 3}}),      # rounds: not one schedule
    ({"_target_": "my.Schedule"}, {"steps": 12}),                                         # a user's own class
    ({"name": "agp", "final_sparsity": 0.5, "start": 0.0, "end": 0.7, "frequency": 0}, {"steps": 12}),  # broken
])
def test_no_schedule_where_it_cannot_be_redrawn(tmp_path, schedule, summary):
    assert schedule_trace(_job(tmp_path, schedule, **summary)) is None


def test_a_job_shows_the_overrides_that_set_it_apart(tmp_path):
    jobs = [Job(tmp_path, str(i), overrides=["trainer.epochs=1", f"pruner={p}", f"sparsity={s}"])
            for i, (p, s) in enumerate([("agp", 0.5), ("agp", 0.8), ("level", 0.5)])]
    assert varying_overrides(jobs) == {"0": "pruner=agp sparsity=0.5", "1": "pruner=agp sparsity=0.8",
                                       "2": "pruner=level sparsity=0.5"}
    assert varying_overrides(jobs[:1]) == {"0": "trainer.epochs=1 pruner=agp sparsity=0.5"}
