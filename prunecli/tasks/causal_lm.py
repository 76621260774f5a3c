"""Causal language modelling: batches ``{"input_ids": LongTensor[B, T]}``, next-token cross-entropy, perplexity.

The model is called as ``model(input_ids=...)`` (:func:`prunecli.metrics.call_model` of the batch) and returns
logits ``[B, T, vocab_size]``; the task shifts the labels itself (position ``t`` predicts token ``t + 1``), so a
sample of ``T`` tokens scores ``T - 1`` predictions. The model spec's sizes are ``vocab_size`` and ``seq_len``.

A batch of right-padded texts also holds ``attention_mask`` ``[B, T]`` (1 = real token): only predictions of real
tokens are scored, and the mask goes to a model whose ``forward`` takes ``attention_mask`` (a Hugging Face LM). A
model without that argument (``tiny_lm``) gets ``input_ids`` alone, which is exact: under right padding a causal
model's outputs at real positions never depend on the padding after them.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import torch
from torch import nn

from prunecli.metrics import call_model
from prunecli.tasks._registry import register_task
from prunecli.tasks.base import Sums, check_sizes

# Upper bounds of the sizes a file-given spec may hold: example inputs and one sample's logits
# (seq_len x vocab_size) are allocated from them before any weight is checked.
SIZE_LIMITS = {"vocab_size": 1_000_000, "seq_len": 1_000_000}
MAX_SAMPLE_LOGITS = 2**28
MIN_SEQ_LEN = 2  # one prediction needs two tokens
IGNORE = -100  # the target of a padding position (cross_entropy's ignore_index)


@register_task("causal_lm")
class CausalLM:
    """Mean next-token cross-entropy (float32 under autocast); perplexity ``exp(loss sum / tokens)``.

    The score (higher is better) is ``log_likelihood``, the mean log-probability of a token (``-loss``): it ranks
    models as perplexity does, reversed.
    """

    name = "causal_lm"
    spec_fields = tuple(SIZE_LIMITS)
    score = "log_likelihood"

    def sizes(self, data: Any) -> dict[str, Any]:
        return {"vocab_size": data.vocab_size, "seq_len": data.seq_len}

    def check_spec(self, spec: Mapping[str, Any], origin: Any, key: str) -> None:
        """Each size an int within :data:`SIZE_LIMITS` (``seq_len`` >= 2), one sample's logits bounded."""
        check_sizes(spec, origin, key, SIZE_LIMITS, low={"seq_len": MIN_SEQ_LEN})
        if spec["vocab_size"] * spec["seq_len"] > MAX_SAMPLE_LOGITS:
            raise origin.error(f"{key}.seq_len={spec['seq_len']}", f"with vocab_size={spec['vocab_size']} "
                               f"is over {MAX_SAMPLE_LOGITS:,} logits per sample")

    def data_options(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The dataset cuts its text into the model's ``seq_len`` tokens."""
        return {"seq_len": spec["seq_len"]}

    def to_device(self, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Sums]:
        loss_sum, tokens = _next_token_loss(model, batch)
        # a padded batch counts its tokens on the device (no sync); clamp: a batch may score no token at all
        loss = loss_sum / (tokens.clamp(min=1) if isinstance(tokens, torch.Tensor) else max(tokens, 1))
        return loss, {"loss": loss_sum.detach(), "tokens": tokens, "samples": batch["input_ids"].shape[0]}

    def evaluation_step(self, model: nn.Module, batch: Any) -> Sums:
        loss_sum, tokens = _next_token_loss(model, batch)
        return {"loss": loss_sum, "tokens": tokens, "samples": batch["input_ids"].shape[0]}

    def metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """``log_likelihood`` (the score), ``loss`` (nats per token) and ``perplexity`` over the summed tokens."""
        loss = float(sums.get("loss", 0.0)) / max(float(sums.get("tokens", 0)), 1.0)
        perplexity = math.exp(loss) if loss < 700 else math.inf  # exp overflows a float past ~709
        return {"log_likelihood": -loss, "loss": loss, "perplexity": perplexity}

    def example_inputs(self, spec: Mapping[str, Any], batch_size: int = 1, device: torch.device | str = "cpu",
                       seed: int = 0) -> dict[str, torch.Tensor]:
        """Uniformly random token ids ``{"input_ids": [batch_size, seq_len]}``, the same for the same ``seed``."""
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, spec["vocab_size"], (batch_size, spec["seq_len"]), generator=g)
        return {"input_ids": ids.to(device)}


def _next_token_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int | torch.Tensor]:
    """``(summed cross-entropy of each next real token, number of those tokens)``; without an ``attention_mask``
    every token is real and the count a plain int."""
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    inputs = {"input_ids": ids}
    if mask is not None and takes_attention_mask(model):
        inputs["attention_mask"] = mask
    logits = call_model(model, inputs)
    targets = ids[:, 1:]
    if mask is not None:  # padding is never a target: cross_entropy skips ignore_index
        targets = targets.masked_fill(mask[:, 1:] == 0, IGNORE)
    loss = nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(), reduction="sum",
                                       ignore_index=IGNORE)
    return loss, (mask[:, 1:] != 0).sum() if mask is not None else targets.numel()


def takes_attention_mask(model: nn.Module) -> bool:
    """Whether ``model.forward`` has an ``attention_mask`` parameter (or takes any keyword)."""
    params = inspect.signature(model.forward).parameters.values()
    return any(p.name == "attention_mask" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

