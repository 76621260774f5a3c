"""Run and sweep dirs are claimed atomically: runs started in the same second never share a dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from prunecli.commands._common import RunDirCheck, claim_dir


def _prunecli_script() -> str:
    script = shutil.which("prunecli", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if script is None:
        pytest.skip("the prunecli console script is not installed (pip install -e .)")
    return script


def test_claim_dir_takes_the_first_free_suffix(tmp_path):
    base = tmp_path / "14-00-00"
    assert claim_dir(base) == base and base.is_dir()
    assert claim_dir(base) == tmp_path / "14-00-00-1"
    assert claim_dir(base) == tmp_path / "14-00-00-2"


def _hydra_node(mode: str, path, typed: bool):
    words = [f"hydra.{mode}.dir={path}"] if typed else []
    return OmegaConf.create({"hydra": {"run": {"dir": str(path)}, "sweep": {"dir": str(path)},
                                       "overrides": {"hydra": words, "task": []}}})


def test_a_taken_sweep_dir_is_claimed_anew_and_passed_to_the_jobs(tmp_path):
    taken = tmp_path / "multirun" / "12-00-00"
    taken.mkdir(parents=True)
    cfg = _hydra_node("sweep", taken, typed=False)
    RunDirCheck().on_multirun_start(cfg)
    assert cfg.hydra.sweep.dir == f"{taken}-1" and (tmp_path / "multirun" / "12-00-00-1").is_dir()
    assert list(cfg.hydra.overrides.hydra) == [f"hydra.sweep.dir='{taken}-1'"]  # jobs compose from these


def test_a_taken_run_dir_is_claimed_anew_unless_typed(tmp_path):
    taken = tmp_path / "outputs" / "12-00-00"
    taken.mkdir(parents=True)
    cfg = _hydra_node("run", taken, typed=False)
    RunDirCheck().on_run_start(cfg)
    assert cfg.hydra.run.dir == f"{taken}-1" and (tmp_path / "outputs" / "12-00-00-1").is_dir()
    pattern = _hydra_node("run", taken, typed=False)
    pattern.hydra.overrides.hydra = ["hydra.run.dir=outputs/${now:%H-%M-%S}"]  # a typed timestamp: claimed too
    RunDirCheck().on_run_start(pattern)
    assert pattern.hydra.run.dir == f"{taken}-2"


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_typed_dir_is_used_as_given(tmp_path, mode):
    cfg = _hydra_node(mode, tmp_path, typed=True)
    getattr(RunDirCheck(), f"on_{'multi' if mode == 'sweep' else ''}run_start")(cfg)
    assert cfg.hydra[mode].dir == str(tmp_path) and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_runs_started_together_in_one_directory_get_two_run_dirs(tmp_path):
    cmd = [_prunecli_script(), "prune", "experiment=smoke"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    summaries = sorted((tmp_path / "outputs" / "prune").glob("*/*/summary.json"))
    assert len(summaries) == 2, [err for _, err in outputs]
    dirs = {json.loads(s.read_text())["run_dir"] for s in summaries}
    assert dirs == {str(s.parent.resolve()) for s in summaries}
    for summary in summaries:
        assert json.loads(summary.read_text())["steps"] == 12   # experiment=smoke: max_steps 12
        assert len((summary.parent / "metrics.jsonl").read_text().splitlines()) == 2  # dense + one epoch


def test_two_sweeps_into_one_timestamped_dir_get_two_sweep_dirs(cli, smoke, tmp_path):
    pattern = f"hydra.sweep.dir={tmp_path}/${{now:%Y}}"  # the same dir for both sweeps: a certain collision
    for _ in range(2):
        result = cli("prune", "-m", *smoke, "trainer.max_steps=1", "sparsity=0.3,0.5", pattern)
        assert result.exit_code == 0, (result.stderr, result.exception)
    (first,) = [p for p in tmp_path.iterdir() if not p.name.endswith("-1")]
    jobs = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*/summary.json"))
    assert jobs == [f"{first.name}-1/0/summary.json", f"{first.name}-1/1/summary.json",
                    f"{first.name}/0/summary.json", f"{first.name}/1/summary.json"]
