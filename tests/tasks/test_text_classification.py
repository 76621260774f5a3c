"""The text_classification task: loss and accuracy sums, what the model is given, spec checks, example inputs,
and a tiny BERT that learns a separable toy dataset through the engine's loaders and evaluation."""

import json
import math
import random

import pytest
import torch
from torch import nn

from prunecli.errors import CheckpointError
from prunecli.models.spec import Origin, check_spec
from prunecli.tasks import get_task

TASK = get_task("text_classification")
SPEC = {"config": {"name": "hf"}, "task": "text_classification", "vocab_size": 100, "seq_len": 8, "num_classes": 3}


class Fixed(nn.Module):
    """The same logits for every sample; takes exactly what the task may pass."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, input_ids, attention_mask=None):
        self.seen = attention_mask
        return self.logits.expand(input_ids.shape[0], -1)


def batch(labels):
    n = len(labels)
    return {"input_ids": torch.zeros(n, 8, dtype=torch.long), "attention_mask": torch.ones(n, 8, dtype=torch.long),
            "labels": torch.tensor(labels)}


def test_loss_and_accuracy_sums():
    model = Fixed([0.0, 0.0, math.log(2.0)])  # p = (1/4, 1/4, 1/2)
    loss, sums = TASK.training_step(model, batch([2, 2, 0, 1]))
    assert loss.item() == pytest.approx((2 * math.log(2) + 2 * math.log(4)) / 4, rel=1e-6)
    assert (int(sums["correct"]), sums["samples"]) == (2, 4)
    assert torch.equal(model.seen, torch.ones(4, 8, dtype=torch.long))
    with torch.no_grad():
        totals = {k: float(v) for k, v in TASK.evaluation_step(model, batch([2, 0])).items()}
    metrics = TASK.metrics(totals)
    assert metrics == {"loss": pytest.approx((math.log(2) + math.log(4)) / 2), "accuracy": 0.5}
    assert TASK.metrics({}) == {"loss": 0.0, "accuracy": 0.0} and TASK.score == "accuracy"


def test_sizes_example_inputs_and_data_options():
    x = TASK.example_inputs(SPEC, 4, seed=3)
    assert set(x) == {"input_ids", "attention_mask"} and x["input_ids"].shape == (4, 8) == x["attention_mask"].shape
    assert torch.equal(x["input_ids"], TASK.example_inputs(SPEC, 4, seed=3)["input_ids"])
    assert int(x["input_ids"].max()) < 100 and int(x["attention_mask"].min()) == 1
    assert TASK.spec_fields == ("vocab_size", "seq_len", "num_classes") and TASK.data_options(SPEC) == {"seq_len": 8}


@pytest.mark.parametrize("field,value", [("num_classes", 1), ("vocab_size", 0), ("seq_len", True),
                                         ("num_classes", "2"), ("seq_len", 10**7), ("vocab_size", None)])
def test_spec_checks_refuse_bad_sizes(field, value):
    origin = Origin("checkpoint", "meta.json")
    assert check_spec(dict(SPEC), origin) == SPEC
    with pytest.raises(CheckpointError, match=f"model.{field}"):
        check_spec({**SPEC, field: value}, origin)


def write_toy(path, n, seed):
    """Byte texts whose class is the word they contain after random filler: separable only by reading them."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            word = rng.choice(["alpha", "omega"])
            filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(0, 5)))
            f.write(json.dumps({"text": f"{filler} {word}", "label": word}) + "\n")
    return str(path)


def test_a_tiny_bert_learns_a_separable_toy_dataset(tmp_path):
    pytest.importorskip("datasets")
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertForSequenceClassification

    from prunecli.data import build_dataset
    from prunecli.engine.data import eval_loader, train_loader
    from prunecli.engine.evaluation import evaluate

    data = build_dataset("text_files", train=write_toy(tmp_path / "train.jsonl", 256, 0),
                         val=write_toy(tmp_path / "val.jsonl", 64, 1), label_field="label", max_length=16)
    assert (data.task, data.num_classes, data.vocab_size, data.seq_len) == ("text_classification", 2, 256, 16)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=data.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=data.seq_len, num_labels=data.num_classes)
    model = BertForSequenceClassification(config)
    device, val = torch.device("cpu"), eval_loader(data.val, 64)
    before = evaluate(TASK, model, val, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = train_loader(data.train, 32, seed=0, phase=0, num_workers=0)
    for epoch in range(6):
        loader.sampler.set_epoch(epoch)
        for b in loader:
            loss, _ = TASK.training_step(model, TASK.to_device(b, device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = evaluate(TASK, model, val, device)
    assert after["samples"] == 64 and after["loss"] < before["loss"]
    assert after["accuracy"] >= 0.9 > before["accuracy"] + 0.2  # chance is 0.5
    # the mask reaches BERT: what the padding holds changes nothing
    model.eval()
    b = next(iter(val))
    junk = torch.randint(0, 256, b["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    noisy = {**b, "input_ids": torch.where(b["attention_mask"] == 1, b["input_ids"], junk)}
    assert int((b["attention_mask"] == 0).sum()) > 100 and not torch.equal(noisy["input_ids"], b["input_ids"])
    with torch.no_grad():
        assert float(TASK.evaluation_step(model, noisy)["loss"]) == pytest.approx(
            float(TASK.evaluation_step(model, b)["loss"]), rel=1e-5)
