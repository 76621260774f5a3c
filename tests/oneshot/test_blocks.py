"""Block-by-block one-shot pruning on prunecli's tiny_lm and a tiny Hugging Face Llama."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import prunecli  # noqa: F401  (first: makes transformers' model classes import on this CPU torch)
from prunecli.errors import ConfigError
from prunecli.models import build_model
from prunecli.oneshot import SparseGPT, find_blocks, prune_oneshot

TINY_LM_WEIGHTS = ["attn.in_proj_weight", "attn.out_proj.weight", "mlp.0.weight", "mlp.2.weight"]
LLAMA_WEIGHTS = ([f"self_attn.{p}_proj.weight" for p in "qkvo"]
                 + [f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")])


def _batches(count=3, size=4, length=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 256, (size, length), generator=gen)} for _ in range(count)]


def _tiny_lm(seed=0):
    torch.manual_seed(seed)
    return build_model("tiny_lm", vocab_size=256, seq_len=64)


def _llama(seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(config)


def _check_half_of_every_linear(model, masks, prefix, names):
    expected = {f"{prefix}.{b}.{n}" for b in range(2) for n in names}
    assert set(masks) == expected
    for fqn, mask in masks.items():
        weight = model.get_parameter(fqn)
        assert mask.shape == weight.shape and mask.dtype == torch.bool
        assert float(1 - mask.float().mean()) == 0.5, fqn
        assert not weight.detach()[~mask].any(), fqn  # pruned weights are zero in the model


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sequential", [True, False])
def test_tiny_lm_every_linear_at_half(method, sequential):
    model = _tiny_lm()
    dense = [p.detach().clone() for p in model.parameters()]
    masks = prune_oneshot(model, _batches(), method, sequential=sequential)
    _check_half_of_every_linear(model, masks, "blocks", TINY_LM_WEIGHTS)
    assert model.training  # the mode is restored
    untouched = [n for n, p in model.named_parameters() if n not in masks and "blocks" not in n]
    assert untouched and all(torch.equal(p.detach(), dense[i]) for i, (n, p) in enumerate(model.named_parameters())
                             if n in untouched)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_sequential_statistics_come_from_the_pruned_blocks(method):
    """Block 0 sees the same inputs either way; block 1 sees the pruned block 0's outputs only when sequential."""
    got = {seq: prune_oneshot(_tiny_lm(), _batches(), method, sequential=seq) for seq in (True, False)}
    for name in TINY_LM_WEIGHTS:
        assert torch.equal(got[True][f"blocks.0.{name}"], got[False][f"blocks.0.{name}"])
    assert any(not torch.equal(got[True][f"blocks.1.{n}"], got[False][f"blocks.1.{n}"]) for n in TINY_LM_WEIGHTS)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("sequential", [True, False])
def test_llama_every_linear_at_half(method, sequential):
    model = _llama()
    batches = _batches(length=32)
    with torch.no_grad():
        before = model(**batches[0]).logits
    masks = prune_oneshot(model, batches, method, sequential=sequential)
    _check_half_of_every_linear(model, masks, "model.layers", LLAMA_WEIGHTS)
    with torch.no_grad():
        after = model(**batches[0]).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after)


def test_llama_two_four_and_shared_hessians():
    model = _llama()
    method = SparseGPT()
    seen = []
    method.observe_input = lambda names, x, inner=method.observe_input: (seen.append(names), inner(names, x))
    masks = prune_oneshot(model, _batches(length=32), method, target="2:4")
    for fqn, mask in masks.items():
        assert mask.reshape(mask.shape[0], -1, 4).sum(-1).eq(2).all(), fqn
    qkv = tuple(f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv")
    gate_up = tuple(f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up"))
    assert qkv in seen and gate_up in seen  # one Hessian per input tensor, shared by the layers reading it


@pytest.mark.parametrize("build, prefix", [(_tiny_lm, "blocks"), (_llama, "model.layers")])
def test_one_block_of_inputs_and_statistics_at_a_time(build, prefix):
    """When each block starts a forward pass: the hidden states held are one per calibration batch (no second
    block's copy) and the statistics held are the current block's only."""
    model, batches, method = build(), _batches(count=3, length=32), SparseGPT()
    hidden = model.config.hidden_size if prefix == "model.layers" else 64
    counts, stale = [], []

    def check(index):
        def hook(module, args):
            counts.append(sum(1 for o in gc.get_objects() if type(o) is torch.Tensor and o.shape == (4, 32, hidden)))
            stale.extend(n for n in method.hessians.names() if not n.startswith(f"{prefix}.{index}."))
        return hook

    for i, block in enumerate(find_blocks(model)[1]):
        block.register_forward_pre_hook(check(i))
    prune_oneshot(model, batches, method)
    # capture: 1..3 (block 0's pre-hook fires before the capture stops each batch); then 2 blocks x 2 passes x 3
    assert len(counts) == 3 + 12 and max(counts) == 3 and stale == []


def test_global_allocation_spreads_each_block_budget_over_its_layers():
    model = _tiny_lm()
    masks = prune_oneshot(model, _batches(), "wanda", allocation="global", device="cpu")
    for b in range(2):
        block = [m for n, m in masks.items() if n.startswith(f"blocks.{b}.")]
        pruned = sum(int((~m).sum()) for m in block) / sum(m.numel() for m in block)
        assert pruned == pytest.approx(0.5, abs=1e-4)
        assert len({round(float((~m).float().mean()), 3) for m in block}) > 1  # layers differ


def test_find_blocks_and_bad_calls():
    model = _tiny_lm()
    assert find_blocks(model)[0] == "blocks"
    with pytest.raises(ConfigError, match=r"^oneshot.blocks='head' is not allowed"):
        prune_oneshot(model, _batches(), "wanda", blocks="head")
    with pytest.raises(ConfigError, match=r"^oneshot.blocks=None is not allowed: expected a model with a "
                       r"ModuleList of blocks holding nn.Linear layers \(Linear has none\)$"):
        find_blocks(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match=r"^calibration.samples=0 is not allowed"):
        prune_oneshot(model, [], "wanda")


def test_multihead_attention_inputs_reach_in_and_out_projections():
    """nn.MultiheadAttention never calls out_proj: its input is recomputed, and must reproduce the output."""
    from prunecli.oneshot import InputFeeds

    attn = _tiny_lm().blocks[0].attn.eval()
    x = torch.randn(2, 8, 64)
    mask = torch.ones(8, 8, dtype=torch.bool).triu(1)
    seen = {}
    params = {"a.in_proj_weight", "a.out_proj.weight"}
    with torch.no_grad(), InputFeeds(attn, "a", params, lambda names, t: seen.update(dict.fromkeys(names, t))):
        out = attn(x, x, x, attn_mask=mask, need_weights=False)[0]
    assert set(seen) == params and seen["a.in_proj_weight"] is x
    rebuilt = attn.out_proj(seen["a.out_proj.weight"])
    assert torch.allclose(rebuilt, out, atol=1e-6)


def test_module_docstring_example_runs():
    import prunecli.oneshot as oneshot

    doc = oneshot.__doc__
    code = doc[doc.index("::\n") + 3:doc.index("``masks`` maps")]
    scope: dict = {}
    exec(compile("\n".join(line[4:] for line in code.splitlines()), "oneshot-example", "exec"), scope)
    assert scope["kept"] == 0.5 and len(scope["masks"]) == 8
    assert all(m.reshape(m.shape[0], -1, 4).sum(-1).eq(2).all() for m in scope["masks_24"].values())


def _qwen2_sliding():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=256, use_sliding_window=True, sliding_window=4,
                                      layer_types=["sliding_attention", "full_attention"])
    return transformers.Qwen2ForCausalLM(config)


@pytest.mark.parametrize("build, final", [(_tiny_lm, "ln"), (_llama, "model.norm"), (_qwen2_sliding, "model.norm")])
def test_replaying_the_blocks_reproduces_the_model(build, final):
    """Captured inputs run through every block give the hidden states the model itself hands its final norm,
    also when sliding-window and full-attention layers get different masks."""
    from prunecli.oneshot import capture_inputs, run_block

    model, batches = build().eval(), _batches(count=2, length=16)
    expected = []
    handle = model.get_submodule(final).register_forward_pre_hook(lambda m, args: expected.append(args[0]))
    with torch.no_grad():
        for batch in batches:
            model(**batch)
    handle.remove()
    blocks = find_blocks(model)[1]
    inputs = capture_inputs(model, blocks, batches)
    for index, block in enumerate(blocks):
        run_block(block, index, inputs, replace=True)
    for got, want in zip(inputs.hidden, expected):
        assert torch.allclose(got, want, atol=1e-5)
    if build is _qwen2_sliding:
        assert inputs.kinds == ["sliding_attention", "full_attention"] and len(inputs.extras) == 2
        # the full-attention layer replayed with the sliding layer's mask would not match
        wrong = capture_inputs(model, blocks, batches)
        wrong.extras["full_attention"] = wrong.extras["sliding_attention"]
        for index, block in enumerate(blocks):
            run_block(block, index, wrong, replace=True)
        assert not torch.allclose(wrong.hidden[0], expected[0], atol=1e-3)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_half_precision_model_keeps_its_dtype(method):
    """Statistics and the SparseGPT sweep run in float32; the bfloat16 weights are written back as bfloat16."""
    model = _llama().to(torch.bfloat16)
    masks = prune_oneshot(model, _batches(count=2, length=16), method)
    _check_half_of_every_linear(model, masks, "model.layers", LLAMA_WEIGHTS)
    assert all(model.get_parameter(n).dtype == torch.bfloat16 for n in masks)


@pytest.mark.parametrize("layer_sparsity", ["uniform", "owl"])
def test_layers_rules_pick_the_blocks_layers(layer_sparsity):
    model = _tiny_lm()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = prune_oneshot(model, _batches(), "wanda", sparsity=0.6, layers={"exclude": [r".*attn.*", r"blocks\.1\..*"]},
                          layer_sparsity=layer_sparsity)
    assert set(masks) == {"blocks.0.mlp.0.weight", "blocks.0.mlp.2.weight"}
    assert sum(int((~m).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()) == \
        pytest.approx(0.6, abs=5e-3)  # per-row rounding; OWL with one block left gives it the whole sparsity
    for name, param in model.named_parameters():
        if name not in masks:
            assert torch.equal(param.detach(), dense[name]), name


def test_layers_rules_that_leave_no_block_layer_are_one_line():
    with pytest.raises(ConfigError, match=r"^pruner\.layers=.* expected rules selecting linear layers inside blocks"):
        prune_oneshot(_tiny_lm(), _batches(), "wanda", layers={"include": ["head"]})
    with pytest.raises(ConfigError, match=r"^pruner\.layers\.include='nope' is not allowed"):
        prune_oneshot(_tiny_lm(), _batches(), "wanda", layers={"include": ["nope"]})
