"""A Hugging Face model's checkpoint node (class name plus config dict) is data: a crafted node cannot name code
to run, ask for remote code, read a directory, or allocate what it likes; each refusal is one line."""

from __future__ import annotations

import pytest
from _crafted import copy_dir, edit_json, write_text_payload

import prunecli  # noqa: F401  (before transformers: its model classes import torchvision)

pytest.importorskip("transformers")

from prunecli.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from prunecli.errors import CheckpointError  # noqa: E402

GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}

# (meta.json key under model.config, value given the marker path, what the refusal says)
CASES = {
    "dotted_class": ("class_name", lambda m: "os.system", r"class_name='os\.system' is not a transformers model class"),
    "module_name": ("class_name", lambda m: "os", r"class_name='os' is not a transformers model class"),
    "auto_class": ("class_name", lambda m: "AutoModelForCausalLM", r"is not a transformers model class"),
    "base_class": ("class_name", lambda m: "PreTrainedModel", r"is not a transformers model class"),
    "other_type": ("class_name", lambda m: "LlamaForCausalLM",
                   r"config\.model_type='gpt2' is not the model type of LlamaForCausalLM"),
    "auto_map": ("config.auto_map", lambda m: {"AutoModelForCausalLM": "evil--modeling.Model"},
                 r"model\.config\.config\.auto_map is refused \(remote code\)"),
    "nested_auto_map": ("config.task_specific_params", lambda m: {"x": {"auto_map": {"AutoModel": "evil.M"}}},
                        r"task_specific_params\.x\.auto_map is refused \(remote code\)"),
    "trust_remote_code": ("config.trust_remote_code", lambda m: True, r"trust_remote_code is refused"),
    "hydra_payload": ("config.task_specific_params", write_text_payload,
                      r"task_specific_params\._target_ is refused \(a Hydra key\)"),
    "node_payload": ("weights", write_text_payload, r"model\.config\.weights is a mapping"),
    "path": ("path", lambda m: str(m.parent), r"model\.config\.path=.* is refused: .* never loaded from a directory"),
    "config_path": ("config", lambda m: "/etc/passwd", r"model\.config\.config is not a mapping"),
    "interpolation": ("config.n_embd", lambda m: "${oc.env:HOME}", r"config\.n_embd='\$\{oc\.env:HOME\}' is an interp"),
    "huge_vocab": ("config.vocab_size", lambda m: 4_000_000_000, r"over the limit of 20,000,000,000"),
    "many_layers": ("config.n_layer", lambda m: 10**7, r"n_layer=10000000 is not allowed: expected at most 4096"),
    "deep": ("config.task_specific_params", lambda m: {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
             r"is nested deeper than 6 levels"),
    "long_list": ("config.bad_words_ids", lambda m: [0] * 5000, r"is a list of 5000 values: at most 4096"),
    "unknown_key": ("cache_dir", lambda m: "/tmp", r"model\.config\.cache_dir is not a setting of a Hugging Face"),
    "other_width": ("config.n_embd", lambda m: 64, r"does not fit its weights"),
}


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """An honest checkpoint of a tiny GPT-2 as a prune run writes it (its node from recorded_node)."""
    from prunecli.models import build_hf_model, recorded_node

    model = build_hf_model(config=GPT2, vocab_size=256, seq_len=32)
    spec = {"config": recorded_node({"_target_": "prunecli.models.build_hf_model"}, model), "task": "causal_lm",
            "vocab_size": 256, "seq_len": 32}
    path = tmp_path_factory.mktemp("hf") / "ckpt"
    return save_checkpoint(path, model_state=model.state_dict(), masks={}, meta={"model": spec, "config": {}})


@pytest.fixture
def crafted(hf_checkpoint, tmp_path):
    def make(key, make_value):
        marker = tmp_path / "marker"
        path = copy_dir(hf_checkpoint, tmp_path / "ckpt")
        edit_json(path / "meta.json", f"model.config.{key}", make_value(marker))
        return path, marker

    return make


def test_the_honest_checkpoint_loads(hf_checkpoint):
    assert type(load_model(load_checkpoint(hf_checkpoint))).__name__ == "GPT2LMHeadModel"


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_hf_nodes_are_refused(crafted, case):
    key, make_value, match = CASES[case]
    path, marker = crafted(key, make_value)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(load_checkpoint(path))
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_the_cli_refuses_them_in_one_line(cli, crafted, tmp_path):
    path, marker = crafted(*CASES["dotted_class"][:2])
    result = cli("export", f"checkpoint={path}", "format=dense", f"hydra.run.dir={tmp_path / 'out'}")
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "os.system" in errors[0], result.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_remote_code_is_never_trusted(hf_checkpoint, monkeypatch):
    """The builder never passes trust_remote_code=True to transformers, whatever the node says."""
    import transformers

    seen = []
    original = transformers.AutoConfig.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", classmethod(spy))
    from prunecli.models import build_hf_model

    directory = hf_checkpoint.parent / "model-dir"
    build_hf_model(config=GPT2, vocab_size=256).save_pretrained(directory)
    build_hf_model(path=str(directory), vocab_size=256, seq_len=32)
    assert seen and set(seen) == {False}  # ours, and the one the auto class makes with what we passed it
