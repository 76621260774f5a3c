"""GPT-2's linear layers are transformers ``Conv1D`` (weight ``[in, out]``): one-shot pruning of a tiny random
GPT2LMHeadModel must do exactly what it does to the same model with each ``Conv1D`` replaced by the equivalent
``nn.Linear`` (weight transposed): the masks are the transposes, SparseGPT's updated weights are equal."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunecli  # noqa: F401  (first: makes transformers' model classes import on this CPU torch)
from prunecli.oneshot import prune_oneshot

GPT2_WEIGHTS = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]


def _gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=32, vocab_size=128,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config).eval()


def _as_linear(model):
    """A copy of ``model`` whose every ``Conv1D`` is the equivalent ``nn.Linear`` (weight ``[out, in]``)."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if type(module).__name__ == "Conv1D":
            linear = nn.Linear(module.weight.shape[0], module.weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(module.weight.T)
                linear.bias.copy_(module.bias)
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent), child, linear)
    return twin


def _batches():
    gen = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 128, (4, 32), generator=gen)} for _ in range(3)]


def test_the_linear_twin_computes_the_same():
    model = _gpt2()
    ids = _batches()[0]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(_as_linear(model)(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["unstructured", "2:4"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_conv1d_is_pruned_as_its_transposed_linear(method, target):
    model = _gpt2()
    twin = _as_linear(model)
    masks = prune_oneshot(model, _batches(), method, sparsity=0.5, target=target)
    expected = prune_oneshot(twin, _batches(), method, sparsity=0.5, target=target)
    names = {f"transformer.h.{b}.{n}" for b in range(2) for n in GPT2_WEIGHTS}
    assert set(masks) == set(expected) == names  # c_attn (fused qkv), c_proj, c_fc, mlp.c_proj; not lm_head
    for fqn in names:
        weight, mask = model.get_parameter(fqn).detach(), masks[fqn]
        assert mask.shape == weight.shape  # [in, out]
        assert torch.equal(mask, expected[fqn].T), fqn
        assert float(1 - mask.float().mean()) == 0.5, fqn
        if method == "wanda" or target == "2:4":  # every output (a column of [in, out]) keeps half its inputs
            assert bool((mask.sum(0) == weight.shape[0] // 2).all()), fqn
        if target == "2:4":  # 2 of every 4 consecutive inputs: along dim 0
            assert bool((mask.T.reshape(-1, 4).sum(1) == 2).all()), fqn
        torch.testing.assert_close(weight, twin.get_parameter(fqn).detach().T, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        ids = _batches()[0]["input_ids"]
        torch.testing.assert_close(model(ids).logits, twin(ids).logits, rtol=1e-4, atol=1e-4)


def test_wanda_per_row_is_per_output_on_conv1d():
    """The comparison group of a Conv1D ``[in, out]`` is an output (a column), scored |W_ij| * ||X_i||."""
    model = _gpt2()
    batches = _batches()
    captured = {}
    layer = model.transformer.h[0].mlp.c_fc
    handle = layer.register_forward_pre_hook(lambda m, args: captured.setdefault("x", []).append(args[0]))
    weight = layer.weight.detach().clone()
    masks = prune_oneshot(model, batches, "wanda", sparsity=0.5)
    handle.remove()
    x = torch.cat([t.reshape(-1, t.shape[-1]) for t in captured["x"][:len(batches)]])
    score = weight.abs() * x.square().mean(0).sqrt()[:, None]  # [in, out]
    pruned = score.topk(weight.shape[0] // 2, dim=0, largest=False).indices
    expected = torch.ones_like(weight, dtype=torch.bool).scatter_(0, pruned, False)
    assert torch.equal(masks["transformer.h.0.mlp.c_fc.weight"], expected)
