"""The built-in tiny causal transformer LM: shapes, causality, sizes from the task, settings, checkpoint specs."""

import pytest
import torch

from prunecli.checkpoint import model_from_spec
from prunecli.errors import ConfigError
from prunecli.models import build_model


def test_logits_shape_backward_and_default_size():
    model = build_model("tiny_lm", vocab_size=256, seq_len=32)
    ids = torch.randint(0, 256, (3, 32))
    logits = model(ids)
    assert logits.shape == (3, 32, 256)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # embeddings 256x64 + 32x64, 2 blocks of (attn 4*64*64+4*64, 2 LN, MLP 64*256*2+256+64), final LN, head
    block = 4 * 64 * 64 + 4 * 64 + 2 * 2 * 64 + 64 * 256 + 256 + 256 * 64 + 64
    expected = 256 * 64 + 32 * 64 + 2 * block + 2 * 64 + 64 * 256 + 256
    assert sum(p.numel() for p in model.parameters()) == expected


def test_a_position_never_sees_later_tokens():
    torch.manual_seed(0)
    model = build_model("tiny_lm", vocab_size=50, seq_len=16, dim=32, heads=2, layers=2).eval()
    ids = torch.randint(0, 50, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 50
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:], atol=1e-3)
    assert model(ids[:, :5]).shape == (1, 5, 50)  # shorter inputs work; longer ones are refused
    with pytest.raises(ValueError, match="longer than the model's seq_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("kwargs,key", [({"dim": 30, "heads": 4}, "model.dim"), ({"layers": 0}, "model.layers"),
                                        ({"dropout": 1.0}, "model.dropout"), ({"channels": 3}, "model.channels")])
def test_bad_settings_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as err:
        build_model("tiny_lm", vocab_size=256, seq_len=8, **kwargs)
    assert err.value.key == key


def test_a_checkpoint_spec_rebuilds_it():
    spec = {"config": {"_target_": "prunecli.models.build_model", "_partial_": True, "name": "tiny_lm",
                       "dim": 32, "heads": 2, "layers": 1, "weights": None},
            "task": "causal_lm", "vocab_size": 100, "seq_len": 12}
    model = model_from_spec(spec)
    assert model(torch.zeros(2, 12, dtype=torch.long)).shape == (2, 12, 100)
    assert model.positions.weight.shape == (12, 32) and len(model.blocks) == 1
