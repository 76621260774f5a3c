"""The image classification task: its loss, sums, metrics, example inputs and spec checks, in numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli.data import DataBundle, ImageTensorDataset
from prunecli.engine import evaluate
from prunecli.engine.state import Position
from prunecli.errors import CheckpointError, ConfigError
from prunecli.models.spec import Origin, check_spec, sizes
from prunecli.tasks import DEFAULT_TASK, ImageClassification, get_task, list_tasks, task_of

SPEC = {"config": {"_target_": "prunecli.models.build_model", "name": "mlp"}, "in_channels": 1, "num_classes": 3,
        "image_size": 2}
# log(e + 2) - 1: cross-entropy of logits (1, 0, 0) for label 0; log(e + 2) for label 1 or 2.
CE0, CE1 = math.log(math.e + 2) - 1, math.log(math.e + 2)


def constant_model() -> nn.Module:
    """Logits (1, 0, 0) for every image: predicts class 0."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    return model


def batch(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(len(labels), 1, 2, 2), torch.tensor(labels)


def test_training_step_returns_the_mean_loss_and_sums_without_syncing():
    task = get_task("image_classification")
    loss, sums = task.training_step(constant_model(), batch([0, 1]))
    assert loss.requires_grad and loss.item() == pytest.approx((CE0 + CE1) / 2, rel=1e-6)
    assert sums["loss"].item() == pytest.approx(CE0 + CE1, rel=1e-6) and not sums["loss"].requires_grad
    assert isinstance(sums["correct"], torch.Tensor) and sums["correct"].item() == 1
    assert sums["samples"] == 2


def test_evaluation_step_and_metrics_are_means_over_all_samples():
    task = ImageClassification()
    sums = task.evaluation_step(constant_model(), batch([0, 0, 2]))
    assert sums["loss"].item() == pytest.approx(2 * CE0 + CE1, rel=1e-6)
    metrics = task.metrics({"loss": sums["loss"].item(), "correct": sums["correct"].item(), "samples": 3})
    assert metrics == {"loss": pytest.approx((2 * CE0 + CE1) / 3, rel=1e-6), "accuracy": pytest.approx(2 / 3)}
    assert task.metrics({}) == {"loss": 0.0, "accuracy": 0.0}


def test_engine_evaluation_sums_over_batches():
    images, labels = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 0, 2, 0])
    loader = DataLoader(ImageTensorDataset(images, labels), batch_size=2)
    metrics = evaluate(task_of(SPEC), constant_model(), loader, torch.device("cpu"))
    assert metrics["samples"] == 5 and metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["loss"] == pytest.approx((3 * CE0 + 2 * CE1) / 5, rel=1e-6)


def test_example_inputs_have_the_spec_shape_and_repeat_per_seed():
    task = ImageClassification()
    x = task.example_inputs({**SPEC, "in_channels": 3, "image_size": 5}, 4)
    assert x.shape == (4, 3, 5, 5) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.equal(x, task.example_inputs({**SPEC, "in_channels": 3, "image_size": 5}, 4))
    assert not torch.equal(x, task.example_inputs({**SPEC, "in_channels": 3, "image_size": 5}, 4, seed=1))
    assert abs(float(x.mean())) < 0.5 and 0.7 < float(x.std()) < 1.3


def test_sizes_and_data_options_come_from_the_bundle_and_the_spec():
    task = ImageClassification()
    data = DataBundle(train=[], val=[], in_channels=3, num_classes=7, image_size=16, name="toy")
    assert data.task == "image_classification"
    assert task.sizes(data) == {"in_channels": 3, "num_classes": 7, "image_size": 16}
    assert task.data_options(SPEC) == {"image_size": 2}
    assert sizes(SPEC) == {"in_channels": 1, "num_classes": 3, "image_size": 2}


def test_registry_and_a_spec_without_a_task_are_image_classification():
    assert "image_classification" in list_tasks() and DEFAULT_TASK == "image_classification"
    assert task_of(SPEC) is get_task("image_classification") is task_of({**SPEC, "task": "image_classification"})
    with pytest.raises(ConfigError, match=r"dataset.task='text' is not allowed: expected .*image_classification"):
        get_task("text", key="dataset.task")


@pytest.mark.parametrize("field,value,message", [
    ("task", "language_model",
     r"model.task='language_model' is not allowed: expected one of causal_lm, image_classification"),
    ("task", 3, r"model.task=3 is not allowed"),
    ("in_channels", 0, r"model.in_channels=0 is not allowed: expected an integer in \[1, 4096\]"),
    ("image_size", 8192, r"model.image_size=8192 with in_channels=2 is over 67,108,864 input elements"),
])
def test_check_spec_refuses_an_unknown_task_and_bad_sizes(field, value, message):
    with pytest.raises(CheckpointError, match=message):
        check_spec({**SPEC, "in_channels": 2, field: value}, Origin("checkpoint", "meta.json"))
    assert check_spec(dict(SPEC), Origin("checkpoint", "meta.json")) == SPEC


def test_a_position_saved_before_tasks_resumes_with_its_sums():
    old = {"phase": "prune", "epoch": 1, "epoch_loss": 6.0, "epoch_correct": 3, "epoch_seen": 4}
    pos = Position.from_dict(old)
    assert pos.epoch_sums == {"loss": 6.0, "correct": 3, "samples": 4}
    assert pos.epoch_metrics(ImageClassification()) == {"train_loss": 1.5, "train_accuracy": 0.75}
    assert Position().epoch_metrics(ImageClassification()) == {"train_loss": 0.0, "train_accuracy": 0.0}


def test_evaluate_refuses_a_dataset_of_another_task_or_other_sizes():
    from prunecli.commands.evaluate import check_fit

    data = DataBundle(train=[], val=[], in_channels=3, num_classes=3, image_size=2, name="toy")
    with pytest.raises(ConfigError, match=r"dataset='toy' is not allowed: expected a dataset with the checkpoint's "
                                          r"model sizes \(in_channels=1, num_classes=3, image_size=2\) \(it has "
                                          r"in_channels=3\)"):
        check_fit(data, SPEC)
    with pytest.raises(ConfigError, match=r"checkpoint's task, image_classification \(it serves text\)"):
        check_fit(DataBundle([], [], 1, 3, 2, "toy", task="text"), SPEC)
    check_fit(DataBundle([], [], 1, 3, 2, "toy"), SPEC)


@pytest.mark.parametrize("task", [None, "image_classification"])
def test_a_checkpoint_with_or_without_a_task_name_rebuilds_an_image_classifier(tmp_path, task):
    from prunecli.checkpoint import load_checkpoint, load_model, save_checkpoint
    from prunecli.models import build_model as build_net

    spec = {"config": {"_target_": "prunecli.models.build_model", "_partial_": True, "name": "mlp"},
            "in_channels": 1, "num_classes": 3, "image_size": 4, **({"task": task} if task else {})}
    net = build_net("mlp", in_channels=1, num_classes=3, image_size=4)
    save_checkpoint(tmp_path / "ck", model_state=net.state_dict(), masks={}, meta={"model": spec})
    ckpt = load_checkpoint(tmp_path / "ck")
    rebuilt = load_model(ckpt)
    x = task_of(ckpt.spec).example_inputs(ckpt.spec, 2)
    assert x.shape == (2, 1, 4, 4) and torch.equal(rebuilt(x), net(x))
