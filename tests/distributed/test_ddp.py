"""Data-parallel runs on CPU (gloo): two processes on localhost train on the same global batches as one process,
so they end with the same masks and metrics (equal for a weight criterion; within float tolerance for a gradient
criterion, whose scores each rank averages), with identical masks on both ranks at every step
(``trainer.check_masks=true`` stops a run at a difference), files written once, and a run whose rank 1 is
killed resumes to the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunecli.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
# mlp (no BatchNorm: its batch statistics would be per rank), 23 batches of 64 per epoch, masks every 2 steps
COMMON = ["dataset=digits", "model=mlp", "model.hidden=[32]", "trainer.pretrain_epochs=0", "trainer.epochs=2",
          "trainer.batch_size=64", "trainer.max_steps=30", "trainer.eval_batch_size=512", "trainer.progress=false",
          "trainer.num_threads=1", "sparsity=0.5", "schedule.frequency=2", "seed=3"]
WEIGHT = [*COMMON, "trainer.checkpoint_every=4"]


def torchrun(*args: str, script: str | None = None, env: dict | None = None, timeout: int = 400):
    """``torchrun --standalone --nproc-per-node 2 -m prunecli prune *args`` (or ``script``)."""
    target = [script] if script else ["-m", "prunecli"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--monitor-interval", "0.2", *target, "prune", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def last(run_dir: Path):
    return load_checkpoint(run_dir / "checkpoint" / "last")


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_same_masks(a: Path, b: Path) -> None:
    ma, mb = last(a).masks, last(b).masks
    assert ma.keys() == mb.keys()
    for name in ma:
        assert torch.equal(ma[name], mb[name]), name


@pytest.fixture(scope="module")
def weight_runs(cli, tmp_path_factory):
    """The weight-criterion recipe (magnitude, global) in one process, and in two started by
    ``prunecli prune trainer.devices=2`` (the CLI re-launches itself through torchrun's launcher)."""
    root = tmp_path_factory.mktemp("ddp")
    one = cli("prune", *WEIGHT, f"hydra.run.dir={root / 'one'}")
    assert one.exit_code == 0, (one.stderr, one.exception)
    command = [sys.executable, "-m", "prunecli", "prune", *WEIGHT, "trainer.strategy=ddp", "trainer.devices=2",
               "trainer.check_masks=true", f"hydra.run.dir={root / 'two'}"]
    two = subprocess.run(command, capture_output=True, text=True, timeout=400,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    return root / "one", root / "two", two


def test_two_processes_end_where_one_does_with_a_weight_criterion(weight_runs):
    one, two, _ = weight_runs
    assert_same_masks(one, two)
    a, b = summary(one), summary(two)
    assert a["sparsity"] == b["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert a["per_layer"] == b["per_layer"] and a["steps"] == b["steps"] == 30
    assert a["accuracy"] == b["accuracy"] and a["dense_accuracy"] == b["dense_accuracy"]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == [r["phase"] for r in ref] == ["dense", "prune", "prune"]  # written once
    for r, q in zip(rows, ref):  # train metrics are all ranks' batches, validation metrics the whole set
        assert r["samples"] == 360 and r["accuracy"] == q["accuracy"]
        assert r.get("train_accuracy") == q.get("train_accuracy")
        assert r.get("train_loss", 0) == pytest.approx(q.get("train_loss", 0), rel=1e-5)


def test_only_rank_0_writes_files(weight_runs):
    _, two, proc = weight_runs
    names = sorted(p.name for p in two.iterdir())
    assert names == [".hydra", "checkpoint", "metrics.jsonl", "prune.log", "prune.rank1.log", "summary.json"]
    assert sorted(p.name for p in (two / "checkpoint").iterdir()) == ["best", "last"]
    assert proc.stdout.count("pruned") == 1  # the summary table, printed by rank 0 alone
    state = load_checkpoint(two / "checkpoint" / "last", with_state=True).state
    assert len(state["rng_ranks"]) == 2  # each rank resumes with its own RNG state


@pytest.mark.parametrize("target", ["unstructured", "2:4", "4x1", "channel"])
def test_a_gradient_criterion_selects_the_same_masks_on_two_processes(cli, tmp_path, target):
    """taylor (|w * grad|) over 2 observed steps: DDP averages the gradients, each rank scores, the scores are
    averaged; every mask update is checked across ranks (check_masks)."""
    args = [*COMMON, f"pruner.target={target}", "pruner.criterion={name:taylor,batches:2}"]
    if target == "channel":
        args.append("pruner.allocation=local")
    one = cli("prune", *args, f"hydra.run.dir={tmp_path / 'one'}")
    assert one.exit_code == 0, (one.stderr, one.exception)
    two = torchrun(*args, "trainer.strategy=ddp", "trainer.check_masks=true", f"hydra.run.dir={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_masks(tmp_path / "one", tmp_path / "two")
    a, b = summary(tmp_path / "one"), summary(tmp_path / "two")
    assert b["sparsity"] == pytest.approx(a["sparsity"], abs=1e-9) and a["sparsity"] > 0.3
    assert abs(a["accuracy"] - b["accuracy"]) <= 1 / 360 and b["loss"] == pytest.approx(a["loss"], rel=1e-4)


def test_a_run_whose_rank_1_is_killed_resumes_to_the_same_result(weight_runs, tmp_path):
    """Rank 1 SIGKILLs itself after its 3rd save (step 12): torchrun stops rank 0; a torchrun resume from
    checkpoint/last (written by rank 0) ends with the uninterrupted run's weights, masks and metrics."""
    _, full, _ = weight_runs
    run = tmp_path / "killed"
    killed = torchrun(*WEIGHT, "trainer.strategy=ddp", f"hydra.run.dir={run}", script=str(HERE / "_kill_worker.py"),
                      env={"KILL_RANK": "1", "KILL_AFTER": "3"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    assert json.loads((run / "checkpoint" / "last" / "meta.json").read_text())["progress"]["step"] == 12
    assert not (run / "summary.json").exists()
    resumed = torchrun(f"trainer.resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("model.safetensors", "masks.safetensors"):
        assert (full / "checkpoint/last" / name).read_bytes() == (run / "checkpoint/last" / name).read_bytes(), name
    a, b = summary(full), summary(run)
    for key in ("dense_accuracy", "dense_loss", "accuracy", "loss", "sparsity", "per_layer", "steps"):
        assert a[key] == b[key], key
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_check_masks_names_the_step_and_the_first_differing_parameter(tmp_path):
    script = tmp_path / "differ.py"
    script.write_text(
        "import os, torch\n"
        "import torch.distributed as dist\n"
        "from prunecli.engine.ranks import check_masks\n"
        "dist.init_process_group('gloo')\n"
        "rank = dist.get_rank()\n"
        "masks = {'a.weight': torch.ones(4, dtype=torch.bool), 'b.weight': torch.ones(3, dtype=torch.bool)}\n"
        "check_masks(masks, 5)\n"
        "masks['b.weight'][rank] = False\n"
        "try:\n"
        "    check_masks(masks, 7)\n"
        "except Exception as err:\n"
        f"    open(os.path.join({str(tmp_path)!r}, f'rank{{rank}}.txt'), 'w').write(str(err))\n"
        "dist.barrier()\n"  # both ranks done before either tears gloo down (a peer gone first aborts the other)
        "dist.destroy_process_group()\n")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script)], capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr[-2000:]
    # Each rank writes its error to its own file: two processes' prints share torchrun's stdout and can interleave.
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert all("at step 7 the mask of b.weight differs between rank 0 and rank 1" in line for line in lines), lines
