"""Transformer structure of Hugging Face models: heads found without quartets, grouped-query attention units,
the channel target never splitting a head, and exact compaction and replay (heads, feed-forward widths)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunecli
from prunecli.metrics import call_model
from prunecli.structure import compact, find_attention, find_ffn, replay

transformers = pytest.importorskip("transformers")

SIZES = dict(vocab_size=128, max_position_embeddings=64)


def build(family: str) -> nn.Module:
    """A tiny model of ``family`` (hidden 32, 2 layers, 4 heads, head_dim 8; Llama: 2 key/value heads), with
    weights large enough that every head and channel matters."""
    torch.manual_seed(0)
    t = transformers
    if family == "bert":
        model = t.BertForSequenceClassification(t.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                             intermediate_size=64, **SIZES))
    elif family == "distilbert":
        model = t.DistilBertForSequenceClassification(t.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                                         **SIZES))
    elif family == "gpt2":
        model = t.GPT2LMHeadModel(t.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                               bos_token_id=0, eos_token_id=0))
    else:
        model = t.LlamaForCausalLM(t.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                 num_key_value_heads=2, intermediate_size=64, **SIZES))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                scale = 1.0 if "emb" in name or name.endswith(("wte.weight", "wpe.weight")) else p.shape[-1] ** -0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def tokens(batch: int, length: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 128, (batch, length), generator=torch.Generator().manual_seed(1))}


def pruned(model: nn.Module, target: str, sparsity: float = 0.5):
    pruner = prunecli.build_pruner(model, {"target": target, "criterion": "l2", "allocation": "local",
                                           "schedule": {"name": "oneshot", "final_sparsity": sparsity}},
                                   example_inputs=tokens(1, 8))
    pruner.update_masks(sparsity)
    return pruner


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


FAMILIES = {  # family: (attention FQN of layer 0, q projection, output projection, key/value heads)
    "bert": ("bert.encoder.layer.0.attention", "self.query", "output.dense", 4),
    "distilbert": ("distilbert.transformer.layer.0.attention", "q_lin", "out_lin", 4),
    "gpt2": ("transformer.h.0.attn", "c_attn", "c_proj", 4),
    "llama": ("model.layers.0.self_attn", "q_proj", "o_proj", 2),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_find_attention_counts_heads_of_each_family(family):
    module, q, o, kv = FAMILIES[family]
    model = build(family)
    found, refused = find_attention(model)
    assert refused == {} and len(found) == 2
    heads = found[0]
    assert (heads.module, heads.q, heads.o) == (module, f"{module}.{q}", f"{module}.{o}")
    assert (heads.num_heads, heads.num_kv_heads, heads.head_dim, heads.fused) == (4, kv, 8, family == "gpt2")
    assert [f.width for f in find_ffn(model)] == [128 if family == "gpt2" else 64] * 2


def test_grouped_query_unit_is_a_key_value_head_with_its_query_heads():
    model = build("llama")
    pruner = pruned(model, "head")
    site = pruner.sites["model.layers.0.self_attn"]
    assert site.num_units == 2 and set(pruner.sites) == {"model.layers.0.self_attn", "model.layers.1.self_attn"}
    masks = site.unit_masks(torch.tensor([False, True]))
    attn = "model.layers.0.self_attn"
    assert masks[f"{attn}.q_proj.weight"].all(1).tolist() == [False] * 16 + [True] * 16  # query heads 0 and 1
    assert masks[f"{attn}.k_proj.weight"].all(1).tolist() == [False] * 8 + [True] * 8
    assert masks[f"{attn}.v_proj.weight"].all(1).tolist() == [False] * 8 + [True] * 8
    assert masks[f"{attn}.o_proj.weight"].all(0).tolist() == [False] * 16 + [True] * 16
    small = copy.deepcopy(model)
    compact(small, pruner.masks, tokens(1, 8))
    layer = small.model.layers[0].self_attn
    assert (layer.q_proj.out_features, layer.k_proj.out_features, layer.o_proj.in_features) == (16, 8, 16)
    assert layer.num_key_value_groups == 2  # each kept key/value head still serves two query heads


@pytest.mark.parametrize("family", FAMILIES)
def test_channel_target_never_splits_a_head(family):
    module, q, _, _ = FAMILIES[family]
    model = build(family)
    pruner = pruned(model, "channel")
    q_weight = f"{module}.{q}.weight"
    rows = 1 if family == "gpt2" else 0  # GPT-2's Conv1D stores [in, 3 * inner]
    holders = [s.name for s in pruner.sites.values() if (m := s.member(q_weight)) and m.layout.dim == rows]
    assert holders == [module]  # q's rows belong to the head site alone, never to a channel group
    kept = pruner.masks[q_weight].any(1 - rows)  # a row with any kept weight is kept (BERT masks q's columns too)
    per_unit = kept.reshape(-1, 8)  # one row per head (of q, k and v for GPT-2)
    assert bool((per_unit.all(1) | ~per_unit.any(1)).all())  # each head's dims are all kept or all pruned
    assert 0 < int((~per_unit.any(1)).sum()) < per_unit.shape[0]


# Parameters dense -> compact: half the heads (head) or half of each site's units (channel: heads, feed-forward
# widths, BERT's pooler / DistilBERT's pre-classifier, and the residual width, which GPT-2 (untraceable) keeps).
COMPACT = {("bert", "head"): (24482, 20290), ("distilbert", "head"): (24418, 20226),
           ("gpt2", "head"): (31616, 27424), ("llama", "head"): (26784, 23712),
           ("bert", "channel"): (24482, 7890), ("distilbert", "channel"): (24418, 7858),
           ("gpt2", "channel"): (31616, 19104), ("llama", "channel"): (26784, 8784)}


@pytest.mark.parametrize("family, target", COMPACT)
def test_compact_and_replay_equal_the_masked_model(family, target):
    model = build(family)
    pruner = pruned(model, target)
    x = tokens(3, 10)
    x["attention_mask"] = torch.ones_like(x["input_ids"])
    x["attention_mask"][1, 7:] = 0  # padding, as the text tasks pass it
    with torch.no_grad():
        masked = call_model(model, x)
    small = copy.deepcopy(model)
    plan = compact(small, pruner.masks, tokens(1, 8))
    with torch.no_grad():
        assert (call_model(small, x) - masked).abs().max() <= 1e-4 < masked.abs().max()
    assert (params(model), params(small)) == COMPACT[family, target]
    fresh = replay(build(family), plan, tokens(1, 8))
    fresh.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert (call_model(fresh, x) - masked).abs().max() <= 1e-4


def test_gpt2_surgery_updates_what_its_forward_reads():
    model = build("gpt2")
    small = copy.deepcopy(model)
    plan = compact(small, pruned(model, "channel").masks, tokens(1, 8))
    attn, mlp = small.transformer.h[0].attn, small.transformer.h[0].mlp
    assert plan["history"] == []  # Torch-Pruning cannot trace GPT-2: heads and widths are cut by slicing
    assert (attn.split_size, attn.num_heads, attn.c_attn.nf, attn.c_attn.weight.shape) == (16, 2, 48, (32, 48))
    assert (attn.c_proj.nx, mlp.c_fc.nf, mlp.c_proj.nx, mlp.c_proj.weight.shape) == (16, 64, 64, (64, 32))


def test_bert_compaction_keeps_head_counts_true():
    model = build("bert")
    small = copy.deepcopy(model)
    compact(small, pruned(model, "head").masks, tokens(1, 8))
    self_attn = small.bert.encoder.layer[1].attention.self
    assert (self_attn.num_attention_heads, self_attn.all_head_size, self_attn.attention_head_size) == (2, 16, 8)


def test_gpt2_residual_width_is_kept_with_the_reason():
    pruner = pruned(build("gpt2"), "channel")
    assert "its residual channels are kept: tracing GPT2LMHeadModel failed" in \
        pruner.skipped["transformer.h.0.mlp.c_proj"]


def test_llama_residual_width_shrinks_through_counted_rms_norms():
    from prunecli.structure import CountedRMSNorm

    model = build("llama")
    pruner = pruned(model, "channel")
    assert pruner.skipped == {}
    residual = next(s for s in pruner.sites.values() if s.member("model.embed_tokens.weight"))
    assert {"model.norm.weight", "model.layers.1.post_attention_layernorm.weight", "lm_head.weight",
            "model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"} <= \
        {m.name for m in residual.members}
    small = copy.deepcopy(model)
    compact(small, pruner.masks, tokens(1, 8))
    norm = small.model.layers[0].input_layernorm
    assert isinstance(norm, CountedRMSNorm) and (norm.count, norm.weight.shape) == (32, (16,))
    assert small.model.embed_tokens.weight.shape == (128, 16) and small.lm_head.in_features == 16


def test_bert_residual_width_shrinks_through_embeddings_and_layer_norms():
    from prunecli.structure import CountedLayerNorm

    model = build("bert")
    pruner = pruned(model, "channel")
    assert pruner.skipped == {}
    residual = next(s for s in pruner.sites.values() if s.member("bert.embeddings.word_embeddings.weight"))
    assert {"bert.embeddings.position_embeddings.weight", "bert.encoder.layer.1.output.LayerNorm.bias",
            "bert.encoder.layer.0.attention.self.key.weight", "bert.pooler.dense.weight"} <= \
        {m.name for m in residual.members}
    small = copy.deepcopy(model)
    compact(small, pruner.masks, tokens(1, 8))
    emb = small.bert.embeddings
    assert emb.word_embeddings.embedding_dim == 16 and emb.word_embeddings.weight.shape == (128, 16)
    assert isinstance(emb.LayerNorm, CountedLayerNorm) and emb.LayerNorm.count == 32


def test_attention_without_a_head_size_is_refused_with_the_reason():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(8, 8) for _ in range(4))

    model = nn.Sequential(Attention())
    assert find_attention(model) == ([], {"0": "0: its head size is unknown (no head_dim/num_heads attribute, no "
                                                "config.num_attention_heads)"})
    model[0].num_heads = 2
    (heads,), _ = find_attention(model)
    assert (heads.num_heads, heads.head_dim) == (2, 4)


def test_heads_false_keeps_hf_heads_whole_and_prunes_feed_forward_widths():
    model = build("llama")
    pruner = prunecli.build_pruner(model, {"target": {"name": "channel", "heads": False}, "criterion": "l2",
                                           "schedule": {"name": "oneshot", "final_sparsity": 0.5}},
                                   example_inputs=tokens(1, 8))
    assert {"model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate_proj.weight"} <= set(pruner.sites)
    assert not any(s.unit_dim is None for s in pruner.sites.values())  # no head site
    assert pruner.skipped["model.layers.0.self_attn.q_proj"] == "its heads are kept whole (pruner.target.heads: false)"


def test_layer_rules_select_hf_heads_through_their_projections():
    model = build("gpt2")
    pruner = prunecli.build_pruner(model, {"target": "head", "layers": {"include": [r"transformer\.h\.1\..*"]},
                                           "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert list(pruner.sites) == ["transformer.h.1.attn"] and pruner.sites["transformer.h.1.attn"].num_units == 4


def test_qwen2_heads_take_their_q_k_v_biases_along():
    t = transformers
    torch.manual_seed(0)
    model = t.Qwen2ForCausalLM(t.Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2, intermediate_size=64, **SIZES)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_proj.bias"):
                p.normal_(0, 0.3)
    pruner = pruned(model, "head")
    assert pruner.sites["model.layers.0.self_attn"].member("model.layers.0.self_attn.k_proj.bias") is not None
    x = tokens(3, 10)
    with torch.no_grad():
        masked = call_model(model, x)
    small = copy.deepcopy(model)
    compact(small, pruner.masks, tokens(1, 8))
    with torch.no_grad():
        assert (call_model(small, x) - masked).abs().max() <= 1e-4
    assert small.model.layers[0].self_attn.k_proj.bias.shape == (8,) and params(small) == params(model) - 2 * 1568


def test_tied_embeddings_keep_the_residual_width_with_the_reason():
    t = transformers
    torch.manual_seed(0)
    model = t.LlamaForCausalLM(t.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True,
                                             **SIZES)).eval()
    pruner = pruned(model, "channel")
    assert pruner.skipped["model.layers.0.mlp.down_proj"] == ("lm_head.weight and model.embed_tokens.weight are one "
                                                              "tied parameter, which compaction cannot cut as two")
    assert "model.layers.0.self_attn" in pruner.sites and "model.layers.0.mlp.gate_proj.weight" in pruner.sites
