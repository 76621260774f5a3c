"""Loss and perplexity of a causal LM on byte sequences (the one-shot quality tests)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def lm_loss(model, ids):
    """Next-byte cross-entropy of ``model`` on ``ids`` ``[B, T]``."""
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def perplexity(model, val):
    """Validation perplexity of ``model`` on ``val``."""
    with torch.no_grad():
        return math.exp(float(lm_loss(model, val)))
