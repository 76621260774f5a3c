"""Real runs for the report tests, made once per module: a digits smoke run with ``evaluate.json``, a 4-job
sweep (three presets finish, one fails at run time; two jobs evaluated) and a one-shot text run (wanda)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EVALUATE = ["latency.repeats=3", "latency.warmup=1"]


def evaluate_into(cli, run: Path) -> None:
    """``prunecli evaluate`` of ``run``'s checkpoint, its evaluate.json in ``<run>/evaluate``."""
    result = cli("evaluate", f"checkpoint={run}", f"hydra.run.dir={run / 'evaluate'}", *EVALUATE)
    assert result.exit_code == 0, (result.stderr, result.exception)


@pytest.fixture(scope="module")
def digits_run(cli, smoke, tmp_path_factory) -> Path:
    """A digits run: 12 steps of agp to 0.75 with a mask update every 2 steps, evaluated."""
    run = tmp_path_factory.mktemp("digits") / "run"
    result = cli("prune", *smoke, "trainer.max_steps=12", "sparsity=0.75", "schedule.frequency=2",
                 f"hydra.run.dir={run}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    evaluate_into(cli, run)
    return run


@pytest.fixture(scope="module")
def sweep(cli, smoke, tmp_path_factory) -> Path:
    """``-m pruner=level,agp,l1_norm,semi_structured_2_4 sparsity=0.7``: job 3 fails (2:4 stops at 0.5);
    jobs 0 and 1 are evaluated."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    result = cli("prune", "-m", *smoke, "pruner=level,agp,l1_norm,semi_structured_2_4", "sparsity=0.7",
                 f"hydra.sweep.dir={out}")
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert (out / "3" / "error.txt").is_file() and not (out / "3" / "summary.json").exists()
    for job in ("0", "1"):
        evaluate_into(cli, out / job)
    return out


@pytest.fixture(scope="module")
def text_oneshot(cli, tmp_path_factory) -> Path:
    """A one-shot preset on a language model: wanda on tiny_lm, perplexity, no training steps."""
    run = tmp_path_factory.mktemp("text") / "run"
    result = cli("prune", "experiment=smoke", "pruner=wanda", "dataset=stdlib_text", "model=tiny_lm",
                 "calibration.samples=8", f"hydra.run.dir={run}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    return run
