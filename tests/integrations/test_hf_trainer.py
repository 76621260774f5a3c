"""prunecli.integrations.hf inside a real transformers.Trainer: a tiny BERT from a config on a separable token
task reaches 80% 4x1 block sparsity with the masks held, the pruner gets the torch optimizer inside accelerate's
wrapper (zero-state fast path), gradient accumulation, checkpoints and the one-call helper."""

from __future__ import annotations

import pytest

import prunecli  # noqa: F401  (before transformers: prepares the torchvision import on this CPU torch)

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

from prunecli.integrations.hf import STATE_FILE, PruningCallback, prune  # noqa: E402
from prunecli.pruner import ZERO_PRESERVING  # noqa: E402

SEQ, VOCAB = 8, 64


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=SEQ, num_labels=2)
    return BertForSequenceClassification(config)


def token_task(n: int = 256) -> list[dict[str, torch.Tensor]]:
    """Class 0 draws its tokens from the lower half of the vocabulary, class 1 from the upper half."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (n,), generator=g)
    tokens = torch.randint(0, VOCAB // 2, (n, SEQ), generator=g) + labels[:, None] * (VOCAB // 2)
    return [{"input_ids": t, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": y}
            for t, y in zip(tokens, labels)]


def make_trainer(tmp_path, model, max_steps: int = 40, accumulation: int = 1, eval_dataset=None, **args) -> Trainer:
    options = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=max_steps,
                   per_device_train_batch_size=16, gradient_accumulation_steps=accumulation, learning_rate=2e-3,
                   save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
    options.update(args)
    return Trainer(model=model, args=TrainingArguments(**options), train_dataset=token_task(),
                   eval_dataset=eval_dataset)


def assert_masks_held(model, pruner, sparsity: float) -> None:
    """Every pruned weight is exactly zero in the model, the masks are 4x1 blocks, and the selected Linear
    weights reach ``sparsity``."""
    params = dict(model.named_parameters())
    weights = [n for n in pruner.masks if n.endswith(".weight")]
    assert "classifier.weight" not in pruner.masks  # the preset's layers leave the last layer dense
    assert any("attention.self.query" in n for n in weights) and any("intermediate.dense" in n for n in weights)
    zeros = total = 0
    for name in weights:
        mask, weight = pruner.masks[name], params[name].detach()
        assert torch.all(weight[~mask] == 0), name
        blocks = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1])  # 4 output rows x 1 input column
        assert torch.all(blocks.all(dim=1) == blocks.any(dim=1)), name
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    assert zeros / total == pytest.approx(sparsity, abs=0.01)
    assert pruner.report().sparsity == pytest.approx(sparsity, abs=0.01)


def test_trainer_reaches_80_percent_4x1_with_masks_held_and_the_torch_optimizer(tmp_path):
    model = tiny_bert()
    callback = PruningCallback("block_4x1", sparsity=0.8, overrides=["schedule.frequency=5"])
    trainer = make_trainer(tmp_path, model)
    trainer.add_callback(callback)
    trainer.train()
    pruner = callback.pruner
    assert pruner.schedule.end_step == 28  # the preset's end=0.7 of the Trainer's max_steps=40
    assert_masks_held(model, pruner, 0.8)
    # the pruner got the torch optimizer inside accelerate's wrapper: the zero-state fast path
    assert type(trainer.optimizer).__name__ == "AcceleratedOptimizer"
    assert type(callback.optimizer) in ZERO_PRESERVING and callback.optimizer is trainer.optimizer.optimizer
    assert not pruner._reapply_each_step
    params = dict(model.named_parameters())
    for name, mask in pruner.masks.items():
        state = callback.optimizer.state[params[name]]
        assert torch.all(state["exp_avg"][~mask] == 0) and torch.all(state["exp_avg_sq"][~mask] == 0), name


def test_gradient_accumulation_steps_the_schedule_per_optimizer_step(tmp_path):
    model = tiny_bert()
    steps = []

    class Steps(PruningCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            steps.append(state.global_step)
            super().on_step_begin(args, state, control, **kwargs)

    callback = Steps("movement", sparsity=0.8, target="4x1", overrides=["schedule.frequency=4"])
    trainer = make_trainer(tmp_path, model, max_steps=20, accumulation=2, per_device_train_batch_size=8)
    trainer.add_callback(callback)
    trainer.train()
    assert steps == list(range(20))  # one on_step_begin per optimizer step, not per micro-batch
    assert callback.pruner.step == 20
    assert_masks_held(model, callback.pruner, 0.8)


def test_one_call_prune_and_checkpoints_hold_masks_and_pruner_state(tmp_path):
    model = tiny_bert()
    trainer = make_trainer(tmp_path, model, max_steps=20, save_strategy="steps", save_steps=20)
    pruner = prune(trainer, "agp", sparsity=0.5, target="4x1", overrides=["schedule.end=0.5", "schedule.frequency=5"])
    assert not any(isinstance(c, PruningCallback) for c in trainer.callback_handler.callbacks)  # removed again
    assert pruner.schedule.final_sparsity == 0.5 and pruner.report().sparsity == pytest.approx(0.5, abs=0.01)
    folder = tmp_path / "checkpoint-20"
    saved = load_file(str(folder / "model.safetensors"))
    for name, mask in pruner.masks.items():
        assert torch.all(saved[name][~mask] == 0), name
    state = load_file(str(folder / STATE_FILE))
    assert torch.equal(state["masks.bert.encoder.layer.0.attention.self.query.weight"],
                       pruner.masks["bert.encoder.layer.0.attention.self.query.weight"])


def test_a_full_mapping_and_a_bad_config_fail_before_training():
    from prunecli.errors import ConfigError

    callback = PruningCallback({"target": "4x1", "schedule": {"name": "agp", "end": 0.5}}, sparsity=0.6)
    assert callback.config["schedule"] == {"name": "agp", "end": 0.5, "final_sparsity": 0.6}
    with pytest.raises(ConfigError, match="pruner.target"):
        PruningCallback("agp", target="5x")
    with pytest.raises(ConfigError, match="nope"):
        PruningCallback("nope")


def test_resuming_a_trainer_checkpoint_restores_the_pruner_state(tmp_path):
    overrides = ["schedule.end=0.5", "schedule.frequency=5"]
    first = PruningCallback("block_4x1", sparsity=0.8, overrides=overrides)
    trainer = make_trainer(tmp_path, tiny_bert(), max_steps=20, save_strategy="steps", save_steps=10,
                           eval_strategy="steps", eval_steps=10, eval_dataset=token_task(32))
    trainer.add_callback(first)
    trainer.train()
    saved = load_file(str(tmp_path / "checkpoint-10" / STATE_FILE))
    assert 0 < saved["masks.bert.pooler.dense.weight"].float().mean() < 1  # mid-schedule masks

    seen = {}

    class Resumed(PruningCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            seen.update(step=self.pruner.step, masks={n: m.clone() for n, m in self.pruner.masks.items()})

    resumed = Resumed("block_4x1", sparsity=0.8, overrides=overrides)
    again = make_trainer(tmp_path, tiny_bert(), max_steps=20)
    again.add_callback(resumed)
    again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    assert seen["step"] == 10
    assert all(torch.equal(seen["masks"][n], saved[f"masks.{n}"]) for n in seen["masks"])
    for name, mask in first.pruner.masks.items():  # the resumed run ends where the uninterrupted one did
        assert torch.equal(resumed.pruner.masks[name], mask), name
