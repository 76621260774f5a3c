"""The tiny_lm briefly trained on stdlib_text that the one-shot quality tests prune (trained once a session)."""

from __future__ import annotations

import pytest
import torch
from _lm import lm_loss

from prunecli.data.stdlib_text import stdlib_text
from prunecli.models import build_model

STEPS = 250


@pytest.fixture(scope="session")
def trained():
    """``(model, calibration batches, validation ids)``: tiny_lm after STEPS AdamW steps, 8 x 16 calibration
    sequences of 64 bytes."""
    data = stdlib_text(seq_len=64, max_train_sequences=4096, max_val_sequences=128)
    train, val = data.train.ids, data.val.ids
    torch.manual_seed(0)
    model = build_model("tiny_lm", vocab_size=256, seq_len=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        loss = lm_loss(model, train[torch.randint(0, len(train), (32,), generator=gen)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    calibration = [{"input_ids": train[i:i + 16]} for i in range(0, 128, 16)]
    return model.eval(), calibration, val
