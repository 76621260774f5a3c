"""Every YAML under conf/ composes with its primary config and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CONF = Path(__file__).resolve().parents[2] / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("prunecli.conf", version_base="1.3"):
        yield hydra_compose


def test_every_yaml_belongs_to_a_group_that_is_tested():
    tested = {"model", "dataset", "pruner", "pruner/layers", "schedule", "rounds", "objective", "trainer",
              "trainer/optimizer", "experiment", "calibration",
              "hydra/job_logging", "hydra/output",
              "hydra/launcher", "hydra/sweeper", "logger"}  # the last three: tests/cli/test_extras.py, tests/loggers
    for path in CONF.rglob("*.yaml"):
        rel = path.relative_to(CONF)
        group = str(rel.parent)
        assert group == "." or group in tested, f"{rel} is in no tested group"
        assert path.read_text().lstrip().startswith("#"), f"{rel} should start with a comment"


@pytest.mark.parametrize("name", _options("model"))
def test_model_configs_build(compose, name):
    from hydra.utils import instantiate

    cfg = compose("prune", overrides=[f"model={name}"])
    build = instantiate(cfg.model)
    if name.startswith("regnet"):
        return  # torchvision's RegNet init calls .item(), which the meta device cannot; the partial resolved
    if name == "hf":  # a transformers model: needs model.path or model.config (test_hf_models.py builds them)
        assert build.keywords["path"] is None and build.keywords["config"] is None
        return
    if name == "tiny_lm":  # a text model: the causal_lm task's sizes, logits per position
        model = build(vocab_size=256, seq_len=16)
        assert model(torch.zeros(2, 16, dtype=torch.long)).shape == (2, 16, 256)
        return
    with torch.device("meta"):  # shapes only: building vit_h_14 for real would take minutes and GBs
        model = build(in_channels=3, num_classes=10, image_size=32)
    assert isinstance(model, torch.nn.Module)
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


@pytest.mark.parametrize("name", _options("dataset"))
def test_dataset_configs_build_or_ask_for_their_root(compose, name, tmp_path):
    from prunecli._instantiate import build
    from prunecli.errors import ConfigError

    cfg = compose("prune", overrides=[f"dataset={name}"])
    if name in ("digits", "fake"):
        data = build(cfg.dataset, "dataset")
        assert len(data.train) > 0 and len(data.val) > 0 and data.num_classes == 10
        return
    if name == "stdlib_text":  # embedded too: this Python's own standard library
        data = build(cfg.dataset, "dataset")
        assert (len(data.train), len(data.val), data.vocab_size, data.seq_len) == (1024, 256, 256, 128)
    with pytest.raises(ConfigError) as err:
        build(cfg.dataset, "dataset", root=str(tmp_path / "no-data"))
    assert "\n" not in str(err.value)


def _build_pruner(compose, *overrides):
    from hydra.utils import instantiate

    from prunecli.config import build_pruner
    from prunecli.engine.setup import pruner_config

    cfg = compose("prune", overrides=[*overrides, "sparsity=0.5"])
    model = instantiate(cfg.model)(in_channels=1, num_classes=10, image_size=8)
    optimizer = torch.optim.SGD(model.parameters(), 0.1)
    return build_pruner(model, pruner_config(cfg), total_steps=100, optimizer=optimizer,
                        example_inputs=torch.randn(1, 1, 8, 8))


# one-shot presets (a `method:` key) build their pruner in the engine: tests/cli/test_oneshot_cli.py
TRAINING = [p for p in _options("pruner") if "\nmethod:" not in (CONF / "pruner" / f"{p}.yaml").read_text()]


@pytest.mark.parametrize("pruner", TRAINING)
def test_pruner_configs_build_a_pruner_with_their_own_schedule(compose, pruner):
    assert _build_pruner(compose, f"pruner={pruner}").masks


@pytest.mark.parametrize("schedule", _options("schedule"))
def test_schedule_configs_build_a_pruner(compose, schedule):
    assert _build_pruner(compose, "pruner=agp", f"schedule={schedule}").masks


@pytest.mark.parametrize("objective", _options("objective"))
def test_objective_configs_choose_the_final_sparsity(compose, objective):
    # a tiny CNN's latency is mostly fixed overhead: ask for a budget it can meet
    keep = ["objective.keep=0.9"] if objective == "latency" else []
    pruner = _build_pruner(compose, "pruner=l2_norm", f"objective={objective}", *keep)
    expected = 0.5 if objective == "sparsity" else None
    assert 0.0 < pruner.schedule.final_sparsity < 1.0
    if expected is not None:
        assert pruner.schedule.final_sparsity == expected


@pytest.mark.parametrize("name", _options("trainer"))
def test_trainer_configs_build_optimizer_and_lr_schedule(compose, name):
    from hydra.utils import instantiate

    from prunecli.engine.settings import TrainerSettings

    cfg = compose("prune", overrides=[f"trainer={name}"])
    TrainerSettings.from_config(cfg.trainer)
    cfg.trainer.total_steps = 10
    optimizer = instantiate(cfg.trainer.optimizer)([torch.nn.Parameter(torch.zeros(3))])
    if cfg.trainer.lr_scheduler is not None:
        scheduler = instantiate(cfg.trainer.lr_scheduler)(optimizer)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name", _options("experiment"))
def test_experiment_configs_compose(compose, name):
    from prunecli.engine.settings import TrainerSettings

    cfg = compose("prune", overrides=[f"experiment={name}"])
    TrainerSettings.from_config(cfg.trainer)
    assert 0.0 <= cfg.sparsity < 1.0


@pytest.mark.parametrize("primary", ["evaluate", "export"])
def test_evaluate_and_export_configs_compose(compose, primary):
    cfg = compose(primary, overrides=["checkpoint=somewhere"])
    assert cfg.checkpoint == "somewhere"
    if primary == "evaluate":
        assert compose(primary, overrides=["dataset=digits"]).dataset.name == "digits"


def test_optimizer_group_swaps_the_whole_optimizer_node(compose):
    sgd = compose("prune").trainer.optimizer
    adamw = compose("prune", overrides=["trainer/optimizer=adamw"]).trainer.optimizer
    lm = compose("prune", overrides=["experiment=stdlib_lm"])
    assert sgd._target_ == "torch.optim.SGD" and sgd.momentum == 0.9 and sgd.nesterov
    assert adamw._target_ == "torch.optim.AdamW" and "momentum" not in adamw and adamw.lr == 1e-3
    assert lm.trainer.optimizer._target_ == "torch.optim.AdamW" and lm.trainer.optimizer.lr == 3e-3
    assert lm.dataset.name == "stdlib_text" and lm.model.name == "tiny_lm"
