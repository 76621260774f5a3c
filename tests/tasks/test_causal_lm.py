"""The causal_lm task: shifted next-token loss, sums-based perplexity, spec checks, example inputs."""

import math

import pytest
import torch
from torch import nn

from prunecli.errors import CheckpointError
from prunecli.models.spec import Origin, check_spec
from prunecli.tasks import get_task

TASK = get_task("causal_lm")
SPEC = {"config": {"name": "tiny_lm"}, "task": "causal_lm", "vocab_size": 256, "seq_len": 16}


class Uniform(nn.Module):
    """Equal logits for every token: perplexity is the vocabulary size."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(256))

    def forward(self, input_ids):
        return self.bias.expand(*input_ids.shape, 256)


class Oracle(nn.Module):
    """Knows the next token (the batch is the sequence 0, 1, 2, ...): a large logit on ``input + 1``."""

    def forward(self, input_ids):
        return 50.0 * nn.functional.one_hot((input_ids + 1) % 256, 256).float()


def batch(b=3, t=16, seed=0):
    return {"input_ids": torch.randint(0, 256, (b, t), generator=torch.Generator().manual_seed(seed))}


def total(sums_list):
    out = {}
    for sums in sums_list:
        for key, value in sums.items():
            out[key] = out.get(key, 0) + float(value.detach() if torch.is_tensor(value) else value)
    return out


def test_uniform_model_has_perplexity_256_over_any_batching():
    model = Uniform()
    loss, sums = TASK.training_step(model, batch())
    assert loss.item() == pytest.approx(math.log(256), rel=1e-6)
    assert (sums["tokens"], sums["samples"]) == (3 * 15, 3)
    parts = [TASK.evaluation_step(model, batch(b, 16, s)) for s, b in enumerate((1, 4, 2))]
    metrics = TASK.metrics(total(parts))
    assert metrics["perplexity"] == pytest.approx(256.0, rel=1e-5)
    assert metrics["loss"] == pytest.approx(math.log(256), rel=1e-6)
    assert metrics["log_likelihood"] == -metrics["loss"] and TASK.score == "log_likelihood"


def test_labels_are_the_inputs_shifted_by_one():
    ids = torch.arange(0, 32).view(2, 16)
    metrics = TASK.metrics(total([TASK.evaluation_step(Oracle(), {"input_ids": ids})]))
    assert metrics["perplexity"] == pytest.approx(1.0, abs=1e-6)
    wrong = TASK.metrics(total([TASK.evaluation_step(Oracle(), {"input_ids": ids.flip(1)})]))
    assert wrong["loss"] > 40  # predicting input + 1 is wrong on a descending sequence


def test_empty_sums_and_overflow():
    assert TASK.metrics({}) == {"log_likelihood": 0.0, "loss": 0.0, "perplexity": 1.0}
    assert TASK.metrics({"loss": 1e6, "tokens": 1})["perplexity"] == math.inf


def test_example_inputs_and_sizes():
    x = TASK.example_inputs(SPEC, 4, seed=3)
    assert set(x) == {"input_ids"} and x["input_ids"].shape == (4, 16) and x["input_ids"].dtype == torch.long
    assert torch.equal(x["input_ids"], TASK.example_inputs(SPEC, 4, seed=3)["input_ids"])
    assert int(x["input_ids"].max()) < 256
    assert TASK.spec_fields == ("vocab_size", "seq_len") and TASK.data_options(SPEC) == {"seq_len": 16}


@pytest.mark.parametrize("field,value", [("vocab_size", 0), ("seq_len", 1), ("seq_len", True),
                                         ("vocab_size", "256"), ("seq_len", 10**7), ("vocab_size", None)])
def test_spec_checks_refuse_bad_sizes(field, value):
    origin = Origin("checkpoint", "meta.json")
    assert check_spec(dict(SPEC), origin) == SPEC
    with pytest.raises(CheckpointError, match=f"model.{field}"):
        check_spec({**SPEC, field: value}, origin)
    with pytest.raises(CheckpointError, match="logits per sample"):
        check_spec({**SPEC, "vocab_size": 1_000_000, "seq_len": 1000}, origin)


def padded(seed=0):
    """Two texts of 5 and 9 tokens right-padded to 12 (padding holds random ids: it must never count)."""
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0, :5], mask[1, :9] = 1, 1
    return {"input_ids": ids, "attention_mask": mask}


class MaskReader(nn.Module):
    """Oracle logits, and remembers the attention mask it was given."""

    def forward(self, input_ids, attention_mask=None):
        self.seen = attention_mask
        return Oracle()(input_ids)


def test_padded_batches_score_real_next_tokens_only():
    loss, sums = TASK.training_step(Uniform(), padded())
    assert int(sums["tokens"]) == 4 + 8 and sums["samples"] == 2
    assert loss.item() == pytest.approx(math.log(256), rel=1e-6)
    # an oracle on texts 0, 1, 2, ... is perfect on real tokens whatever the padding holds
    batch = padded()
    batch["input_ids"][:, :9] = torch.arange(9)
    for seed in (1, 2):
        batch["input_ids"][:, 9:] = padded(seed)["input_ids"][:, 9:]
        batch["input_ids"][0, 5:9] = padded(seed)["input_ids"][0, 5:9]
        metrics = TASK.metrics(total([TASK.evaluation_step(Oracle(), batch)]))
        assert metrics["perplexity"] == pytest.approx(1.0, abs=1e-6)


def test_the_mask_goes_to_models_that_take_it():
    model, batch = MaskReader(), padded()
    TASK.evaluation_step(model, batch)
    assert torch.equal(model.seen, batch["attention_mask"])
    TASK.evaluation_step(model, {"input_ids": batch["input_ids"]})
    assert model.seen is None  # packed batches: input_ids alone, as before
    TASK.evaluation_step(Uniform(), batch)  # forward(input_ids) only: called without the mask


def test_a_hugging_face_lm_scores_padded_texts_as_it_scores_them_alone():
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=12, n_embd=32, n_layer=1, n_head=4)).eval()
    batch = padded()
    together = total([TASK.evaluation_step(model, batch)])
    alone = total([TASK.evaluation_step(model, {"input_ids": batch["input_ids"][i:i + 1, :n]})
                   for i, n in enumerate((5, 9))])
    assert together["tokens"] == alone["tokens"] == 12
    assert together["loss"] == pytest.approx(alone["loss"], rel=1e-5)
