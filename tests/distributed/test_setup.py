"""The pieces of a data-parallel run that need no second process: each rank's part of the global batches, the
launcher environment, and bad input as one line with exit code 2."""

from __future__ import annotations

import pytest
import torch

from prunecli.commands import _parallel
from prunecli.engine.data import EpochSampler, RankBatches, share
from prunecli.engine.distributed import Env, Parallel, check_request, check_world, launched, rank_seed
from prunecli.errors import ConfigError


@pytest.mark.parametrize("n, world", [(10, 2), (7, 3), (5, 5), (64, 4)])
def test_shares_cover_n_in_order_and_differ_by_at_most_one(n, world):
    parts = [share(n, r, world) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [e - s for s, e in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_together_train_on_the_batches_of_one_process(world):
    data, batch = list(range(103)), 16  # a last batch of 7
    one = EpochSampler(data, seed=5, phase=1)
    one.set_epoch(2)
    order = list(one)
    expected = [order[b:b + batch] for b in range(0, len(order), batch)]
    ranks = [RankBatches(EpochSampler(data, seed=5, phase=1), batch, r, world) for r in range(world)]
    for r in ranks:
        r.set_epoch(2)
    got = list(zip(*[list(r) for r in ranks]))
    assert [sum(parts, []) for parts in got] == expected
    assert all(len(r) == len(expected) == 7 for r in ranks)
    # DDP averages the ranks' gradients of factor * (their part's mean loss): the factors / world must be the parts'
    # fractions of the batch, so that the average is the uneven last batch's mean
    assert [r.weight(6) / world for r in ranks] == pytest.approx([len(p) / len(expected[6]) for p in got[6]])
    assert all((r.weight(0) == 1.0) == (batch % world == 0) for r in ranks)


def test_a_resumed_epoch_starts_at_the_same_global_batch():
    data = list(range(50))
    full, resumed = RankBatches(EpochSampler(data, 1), 8, 1, 2), RankBatches(EpochSampler(data, 1), 8, 1, 2)
    full.set_epoch(0)
    resumed.set_epoch(0, start_batch=3)
    assert list(resumed) == list(full)[3:]


def test_the_launcher_environment_is_read():
    env = launched({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "h", "MASTER_PORT": "29500"})
    assert env == Env(rank=3, world_size=4, local_rank=1, local_world_size=2) and not env.is_main
    slurm = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "1(x2)",
             "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert launched(slurm) is None  # a Slurm allocation alone is no data-parallel run
    assert launched(slurm, strategy="ddp") == Env(rank=1, world_size=2, local_rank=0, local_world_size=1)
    assert launched({}) is None
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(4)}) == 4


@pytest.mark.parametrize("node, key", [
    ({"devices": 2}, "trainer.devices=2 is not allowed: expected 1 or auto unless trainer.strategy=ddp"),
    ({"strategy": "fsdp"}, "trainer.strategy='fsdp' is not allowed: expected one of auto, ddp"),
    ({"strategy": "ddp", "devices": 0}, "trainer.devices=0 is not allowed"),
    ({"strategy": "ddp", "num_nodes": 0}, "trainer.num_nodes=0 is not allowed"),
])
def test_bad_parallel_settings_are_config_errors(node, key):
    with pytest.raises(ConfigError) as err:
        Parallel.from_config(node)
    assert str(err.value).startswith(key)


def test_a_launch_without_rendezvous_and_too_many_devices_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="MASTER_ADDR and MASTER_PORT not set"):
        launched({"RANK": "0", "WORLD_SIZE": "2"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="more devices than this machine has"):
        check_request(Parallel("ddp", 2), "auto")
    with pytest.raises(ConfigError, match="more processes than CUDA devices"):
        check_world(Parallel("ddp"), Env(0, 2, 0, 2), "cuda")
    with pytest.raises(ConfigError, match="the launcher started 4 processes"):
        check_world(Parallel("ddp", 3, 1), Env(0, 4, 0, 4), "cpu")


@pytest.mark.parametrize("args, env, line", [
    (["trainer.devices=2"], {}, "error: trainer.devices=2 is not allowed: expected 1 or auto unless "
                                "trainer.strategy=ddp (trainer.strategy=auto runs one process)"),
    (["trainer.strategy=horovod"], {}, "error: trainer.strategy='horovod' is not allowed: expected one of auto, ddp"),
    (["trainer.strategy=ddp", "trainer.num_nodes=2", "trainer.devices=1"], {},
     "error: trainer.num_nodes=2 is not allowed: expected 1 without a launcher"),
    ([], {"WORLD_SIZE": "2", "RANK": "0"}, "error: WORLD_SIZE=2 is not allowed: expected a launch with a "
                                           "rendezvous"),
])
def test_bad_input_is_one_line_and_exit_code_2(cli, smoke, tmp_path, monkeypatch, args, env, line):
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = cli("prune", *smoke, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith(line), result.error_lines


def test_a_failed_relaunch_says_how_to_continue(tmp_path, capsys):
    from omegaconf import OmegaConf

    (tmp_path / "checkpoint" / "last").mkdir(parents=True)
    config = OmegaConf.create({"hydra": {"job": {"name": "prune"},
                                         "overrides": {"task": ["sparsity=0.8"], "hydra": ["hydra.run.dir=x"]}}})
    seen = []
    code = _parallel._relaunch(config, tmp_path, 2, lambda n, args: seen.append((n, args)) or 1, str)
    assert code == 1 and seen == [(2, ["prune", "sparsity=0.8", f"hydra.run.dir={tmp_path}"])]
    err = capsys.readouterr().err.strip()
    assert err == (f"error: a process of the 2-process run failed (exit code 1) and the others were stopped; "
                   f"continue with trainer.resume={tmp_path}")
