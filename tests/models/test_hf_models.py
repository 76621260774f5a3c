"""build_hf_model: tiny transformers models from a config or a local directory, heads from the task, one-line
refusals of what cannot work, and the checkpoint node that rebuilds a model without its directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

from prunecli.errors import ConfigError  # noqa: E402
from prunecli.models import build_hf_model, recorded_node  # noqa: E402

LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}
LM = {"vocab_size": 256, "seq_len": 32}


def _ids(batch=2, length=16):
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("config, cls", [(LLAMA, "LlamaForCausalLM"), (GPT2, "GPT2LMHeadModel")])
def test_a_language_task_gets_a_causal_lm_sized_by_the_task(config, cls):
    model = build_hf_model(config=config, **LM)
    assert type(model).__name__ == cls and model.training
    assert model.config.vocab_size == 256  # the task's, since the config does not say
    assert model(input_ids=_ids()).logits.shape == (2, 16, 256)


def test_a_classification_task_gets_a_sequence_classifier_with_its_labels():
    model = build_hf_model(config=LLAMA, vocab_size=256, seq_len=32, num_classes=3)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 3
    model.config.pad_token_id = 0
    assert model(input_ids=_ids()).logits.shape == (2, 3)


def test_without_a_task_any_head_builds():
    assert type(build_hf_model(config=LLAMA, head="base")).__name__ == "LlamaModel"
    assert type(build_hf_model(config={**LLAMA, "vocab_size": 100})).__name__ == "LlamaForCausalLM"


def test_a_config_json_path_builds_too(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(GPT2))
    assert type(build_hf_model(config=str(tmp_path / "config.json"), **LM)).__name__ == "GPT2LMHeadModel"


def test_a_saved_directory_loads_with_its_weights(tmp_path):
    saved = build_hf_model(config=GPT2, **LM).eval()
    saved.save_pretrained(tmp_path / "gpt2")
    loaded = build_hf_model(path=str(tmp_path / "gpt2"), **LM)
    assert loaded.training and loaded.dtype == torch.float32
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=_ids()).logits, saved(input_ids=_ids()).logits)


def test_the_recorded_node_rebuilds_the_model_without_its_directory(tmp_path):
    from prunecli.checkpoint import model_from_spec

    model = build_hf_model(config=LLAMA, **LM).eval()
    node = recorded_node({"_target_": "prunecli.models.build_hf_model", "path": "gone", "head": "auto"}, model)
    assert (node["class_name"], node["path"], node["weights"]) == ("LlamaForCausalLM", None, None)
    assert node["config"]["hidden_size"] == 32 and json.loads(json.dumps(node)) == node
    spec = {"config": node, "task": "causal_lm", **LM}
    rebuilt = model_from_spec(spec).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(input_ids=_ids()).logits, model(input_ids=_ids()).logits)
    assert recorded_node({"name": "cnn"}, torch.nn.Linear(2, 2)) == {"name": "cnn"}  # other models: as they are


def test_a_checkpointed_hf_model_builds_on_the_meta_device_first():
    from prunecli.models.meta import on_meta

    node = recorded_node({}, build_hf_model(config=GPT2, **LM))
    with on_meta():
        probe = build_hf_model(**{k: v for k, v in node.items() if not k.startswith("_")}, **LM)
    large = [t for t in probe.state_dict().values() if t.numel() > 1024]  # on_meta keeps tiny ones on the CPU
    # wte, wpe, lm_head and per block c_attn, mlp.c_fc, mlp.c_proj (attn.c_proj is 32x32, 1024: kept on the CPU)
    assert len(large) == 9 and {t.device.type for t in large} == {"meta"}


@pytest.mark.parametrize("kwargs, match", [
    ({"config": LLAMA, "head": "masked_lm", **LM},
     r"model\.head='masked_lm' is not allowed: expected auto or causal_lm for the causal_lm task"),
    ({"config": LLAMA, "head": "sequence_classification", **LM}, r"expected auto or causal_lm"),
    ({"config": LLAMA, "head": "masked_lm"},
     r"model\.head='masked_lm' is not allowed: .*there is no AutoModelForMaskedLM class for llama"),
    ({"config": {"model_type": "codegen", "n_embd": 32, "n_layer": 2, "n_head": 4}, "num_classes": 3, **LM},
     r"model\.head='sequence_classification' .* no AutoModelForSequenceClassification class for codegen"),
    ({"config": {**LLAMA, "model_type": "lama"}, **LM},
     r"model\.config\.model_type='lama' is not allowed: .*did you mean llama"),
    ({"config": {"hidden_size": 32}, **LM}, r"model\.config\.model_type=None is not allowed"),
    ({"config": {**LLAMA, "auto_map": {"AutoModel": "evil.Model"}}, **LM}, r"never runs a model repository's own"),
    ({"config": {**LLAMA, "vocab_size": 100}, **LM}, r"vocabulary covers the dataset's 256 token ids"),
    ({"config": GPT2, "vocab_size": 256, "seq_len": 128}, r"its max_position_embeddings is 64"),
    ({"config": LLAMA, "head": "decoder", **LM}, r"model\.head='decoder' is not allowed: expected one of auto, "),
    ({**LM}, r"model\.path=None is not allowed: expected a local model directory, or model\.config"),
    ({"config": "/no/such/config.json", **LM}, r"model\.config='/no/such/config\.json' is not allowed"),
    ({"config": LLAMA, "class_name": "os.system", **LM}, r"model\.class_name='os\.system' is not allowed"),
    ({"path": "some-org/not-in-the-cache", **LM},
     r"model\.path='some-org/not-in-the-cache' .*prunecli never downloads at run time"),
])
def test_bad_input_is_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        build_hf_model(**kwargs)
    assert "\n" not in str(err.value)


def test_directories_that_are_not_models_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"a Hugging Face model directory \(with config\.json\).*without config"):
        build_hf_model(path=str(tmp_path / "empty"), **LM)
    build_hf_model(config={**GPT2, "vocab_size": 100}).save_pretrained(tmp_path / "small")
    with pytest.raises(ConfigError, match=r"vocabulary covers the dataset's 256 token ids \(its vocab_size is 100"):
        build_hf_model(path=str(tmp_path / "small"), **LM)
    codegen = {"model_type": "codegen", "n_embd": 32, "n_layer": 1, "n_head": 4, "rotary_dim": 4}
    build_hf_model(config=codegen, **LM).save_pretrained(tmp_path / "codegen")  # a causal LM without a classifier
    with pytest.raises(ConfigError, match=r"there is no AutoModelForSequenceClassification class for codegen"):
        build_hf_model(path=str(tmp_path / "codegen"), num_classes=3, **LM)
    (tmp_path / "small" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"model\.path=.* expected a model directory with its weights"):
        build_hf_model(path=str(tmp_path / "small"), vocab_size=100, seq_len=32)


def test_without_transformers_model_hf_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'prunecli\[hf\]'"):
        build_hf_model(config=LLAMA, **LM)


def test_prunecli_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import prunecli, prunecli.models, prunecli.checkpoint, prunecli.export, prunecli.engine.setup\n"
            "from prunecli.models.spec import MODEL_BUILDERS\n"
            "assert 'prunecli.models.build_hf_model' in MODEL_BUILDERS\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_hub_id_already_in_the_cache_loads_without_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-gpt2" / "snapshots" / "0123abc"
    build_hf_model(config=GPT2, **LM).save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # were anything to ask the network, it would fail here
    model = build_hf_model(path="tiny-org/tiny-gpt2", **LM)
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_embd == 32
    with pytest.raises(ConfigError, match="never downloads"):
        build_hf_model(path="tiny-org/other-model", **LM)
