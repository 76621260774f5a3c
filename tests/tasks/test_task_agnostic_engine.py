"""The engine is task-agnostic: a toy token tagger (dict batches ``{"x": ids, "y": tags}``, defined here and never
registered) trains, is evaluated and is pruned through :mod:`prunecli.engine` without any image code."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

import prunecli.engine.loop as loop
from prunecli.engine import evaluate
from prunecli.engine.data import eval_loader, train_loader
from prunecli.engine.evaluator import loader_evaluator
from prunecli.engine.settings import TrainerSettings
from prunecli.engine.setup import Phase, Run
from prunecli.engine.state import Position

VOCAB, TAGS, LENGTH = 12, 3, 6


class TokenTagging:
    """Per-token classification: loss and accuracy per token, perplexity = exp(mean token loss)."""

    name = "toy_token_tagging"
    spec_fields = ("vocab", "tags")
    score = "accuracy"

    def __init__(self):
        self.evaluated = 0  # evaluation batches seen

    def sizes(self, data: Any) -> dict[str, Any]:
        return {"vocab": VOCAB, "tags": TAGS}

    def check_spec(self, spec: Mapping[str, Any], origin: Any, key: str) -> None:
        pass

    def data_options(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def to_device(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        return {key: value.to(device) for key, value in batch.items()}

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(x=batch["x"]).flatten(0, 1).float()

    def training_step(self, model, batch):
        logits, tags = self._logits(model, batch), batch["y"].flatten()
        loss = nn.functional.cross_entropy(logits, tags)
        return loss, {"loss": loss.detach() * tags.numel(), "correct": (logits.argmax(1) == tags).sum(),
                      "tokens": tags.numel(), "samples": batch["x"].shape[0]}

    def evaluation_step(self, model, batch):
        self.evaluated += 1
        logits, tags = self._logits(model, batch), batch["y"].flatten()
        return {"loss": nn.functional.cross_entropy(logits, tags, reduction="sum"),
                "correct": (logits.argmax(1) == tags).sum(), "tokens": tags.numel(), "samples": batch["x"].shape[0]}

    def metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        tokens = max(sums.get("tokens", 0), 1)
        loss = sums.get("loss", 0.0) / tokens
        return {"loss": loss, "accuracy": sums.get("correct", 0) / tokens, "perplexity": math.exp(loss)}

    def example_inputs(self, spec, batch_size=1, device="cpu", seed=0):
        g = torch.Generator().manual_seed(seed)
        return {"x": torch.randint(spec["vocab"], (batch_size, LENGTH), generator=g).to(device)}


class Tagger(nn.Module):
    """Embedding -> hidden Linear -> ReLU -> tag Linear, called with the keyword ``x``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.hidden = nn.Linear(8, 16)
        self.out = nn.Linear(16, TAGS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(x))))


class Tokens(Dataset):
    """Sequences whose tag is ``token % TAGS``: learnable, so training lowers the loss."""

    def __init__(self, n: int, seed: int):
        self.x = torch.randint(VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.x[i] % TAGS}


def make_run(tmp_path, model: nn.Module, pruner: dict[str, Any]) -> Run:
    trainer = {"epochs": 1, "pretrain_epochs": 0, "max_steps": None, "batch_size": 8, "eval_batch_size": 16,
               "accumulate": 1, "grad_clip": None, "device": "cpu", "precision": "fp32", "num_workers": 0,
               "checkpoint_every": None, "resume": None, "resume_override": False, "progress": False}
    return Run(cfg=OmegaConf.create({"pruner": pruner, "seed": 0}), settings=TrainerSettings.from_config(trainer),
               model=model, data=None, spec={"config": {}, "task": TokenTagging.name, "vocab": VOCAB, "tags": TAGS},
               device=torch.device("cpu"), amp=None, val_loader=eval_loader(Tokens(32, 1), 16), run_dir=tmp_path,
               task=TokenTagging())


def test_engine_evaluation_aggregates_a_dict_batch_task_over_tokens():
    torch.manual_seed(0)
    model, task = Tagger(), TokenTagging()
    loader = DataLoader(Tokens(10, 1), batch_size=4)  # batches of 4, 4, 2 sequences
    metrics = evaluate(task, model, loader, torch.device("cpu"))
    with torch.no_grad():
        x = Tokens(10, 1).x
        logits = model(x=x).flatten(0, 1)
        loss = nn.functional.cross_entropy(logits, (x % TAGS).flatten()).item()
        accuracy = (logits.argmax(1) == (x % TAGS).flatten()).float().mean().item()
    assert metrics["samples"] == 10
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5) and metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert -loader_evaluator(task, loader, torch.device("cpu"), batches=3)(model) == pytest.approx(loss, rel=1e-5)


def test_a_pruner_built_and_driven_by_the_engine_prunes_a_dict_batch_model(tmp_path):
    torch.manual_seed(0)
    model = Tagger()
    before = evaluate(TokenTagging(), model, eval_loader(Tokens(32, 1), 16), torch.device("cpu"))
    # Coupled channels traced on the task's dict example inputs; the sensitivity scan runs the task's evaluator.
    pruner = {"target": "channel", "criterion": "l2", "layers": {"exclude_last": True},
              "allocation": {"name": "sensitivity", "grid": [0.25, 0.5, 0.75], "eval_batches": 1}}
    run = make_run(tmp_path, model, pruner)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    hooks = loop.make_pruner(run, {**pruner, "schedule": {"name": "oneshot", "final_sparsity": 0.5}}, 8, optimizer)
    assert run.task.evaluated == 0  # the scan runs at the first step
    phase = Phase(name="prune", epochs=1, total_steps=8, steps_per_epoch=8, batches_per_epoch=8,
                  loader=train_loader(Tokens(64, 2), 8, 0, 1, 0), optimizer=optimizer, scheduler=None, scaler=None,
                  hooks=hooks)
    pos = Position(phase="prune")
    hooks.on_train_begin()
    hooks.on_epoch_begin(0)
    loop.train_epoch(run, phase, pos)
    hooks.on_train_end()

    assert pos.step == 8 and pos.batches_done == 8
    assert pos.epoch_sums["samples"] == 64 and pos.epoch_sums["tokens"] == 64 * LENGTH
    train = pos.epoch_metrics(run.task)
    assert set(train) == {"train_loss", "train_accuracy", "train_perplexity"}
    assert train["train_perplexity"] == pytest.approx(math.exp(train["train_loss"]))
    # Half the hidden units go whole (rows of hidden, its bias, columns of out): the channel coupling was traced
    # through the keyword input; the sensitivity scan spent 1 + 3 grid points evaluations of one batch each.
    masks = hooks.masks
    assert set(masks) == {"hidden.weight", "hidden.bias", "out.weight"}
    rows = masks["hidden.weight"].all(dim=1)
    assert int(rows.sum()) == 8 and torch.equal(masks["hidden.weight"].any(dim=1), rows)
    assert torch.equal(masks["hidden.bias"], rows) and torch.equal(masks["out.weight"], rows.expand(TAGS, -1))
    assert hooks.allocation.report()["evaluations"] == 4 and run.task.evaluated == 4
    after = evaluate(run.task, model, run.val_loader, run.device)
    assert after["samples"] == 32 and after["loss"] < before["loss"]
