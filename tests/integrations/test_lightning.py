"""prunecli.integrations.lightning inside a real Lightning Trainer: a tiny LightningModule reaches its sparsity
with the masks held, the pruner gets the torch optimizer inside LightningOptimizer, accumulate_grad_batches
steps the schedule per optimizer step, and the pruner's state rides in Lightning's checkpoints."""

from __future__ import annotations

import pytest

import prunecli  # noqa: F401  (before lightning: prepares the torchvision import on this CPU torch)

pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from prunecli.integrations.lightning import PruningCallback  # noqa: E402
from prunecli.pruner import ZERO_PRESERVING  # noqa: E402


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(n: int = 512, batch: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 16, generator=g) + 2.0 * y[:, None]
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def fit(callback, tmp_path, max_steps: int = 30, ckpt_path=None, **options) -> tuple[pl.Trainer, Classifier]:
    module = Classifier()
    settings = dict(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                    callbacks=[callback], limit_val_batches=0)
    settings.update(options)
    trainer = pl.Trainer(**settings)
    resume = {"ckpt_path": ckpt_path, "weights_only": True} if ckpt_path else {}  # the state is plain tensors
    trainer.fit(module, loader(), loader(64) if options.get("limit_val_batches") else None, **resume)
    return trainer, module


def assert_masks_held(module, pruner, sparsity: float) -> None:
    params = dict(module.named_parameters())
    assert sorted(pruner.masks) == ["net.0.weight", "net.2.weight"]  # the last layer stays dense
    zeros = total = 0
    for name, mask in pruner.masks.items():
        weight = params[name].detach()
        assert torch.all(weight[~mask] == 0), name
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    assert zeros / total == pytest.approx(sparsity, abs=0.01)


def test_lightning_reaches_80_percent_4x1_with_masks_held_and_the_torch_optimizer(tmp_path):
    callback = PruningCallback("block_4x1", sparsity=0.8, overrides=["schedule.frequency=5"])
    trainer, module = fit(callback, tmp_path, limit_val_batches=2, val_check_interval=10)
    pruner = callback.pruner
    assert pruner.schedule.end_step == 21 and pruner.step == 30  # end=0.7 of estimated_stepping_batches=30
    assert_masks_held(module, pruner, 0.8)
    for mask in pruner.masks.values():
        blocks = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1])
        assert torch.all(blocks.all(dim=1) == blocks.any(dim=1))
    assert type(callback.optimizer) in ZERO_PRESERVING and callback.optimizer is trainer.optimizers[0]
    assert not pruner._reapply_each_step
    params = dict(module.named_parameters())
    for name, mask in pruner.masks.items():
        assert torch.all(callback.optimizer.state[params[name]]["exp_avg"][~mask] == 0), name


def test_accumulate_grad_batches_steps_the_schedule_per_optimizer_step(tmp_path):
    steps = []

    class Steps(PruningCallback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self._new_step:
                steps.append(trainer.global_step)
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    callback = Steps("movement", sparsity=0.7, overrides=["schedule.frequency=4"])
    fit(callback, tmp_path, max_steps=20, accumulate_grad_batches=2)
    assert steps == list(range(20)) and callback.pruner.step == 20
    assert callback.pruner.report().sparsity == pytest.approx(0.7, abs=0.01)


def test_pruner_state_rides_in_lightning_checkpoints(tmp_path):
    callback = PruningCallback("agp", sparsity=0.5, overrides=["schedule.end=0.5", "schedule.frequency=5"])
    trainer, module = fit(callback, tmp_path, max_steps=20)
    path = tmp_path / "pruned.ckpt"
    trainer.save_checkpoint(path)
    resumed = PruningCallback("agp", sparsity=0.5, overrides=["schedule.end=0.5", "schedule.frequency=5"])
    fit(resumed, tmp_path, max_steps=24, ckpt_path=str(path))
    assert resumed.pruner.step == 24
    for name, mask in callback.pruner.masks.items():
        assert torch.equal(resumed.pruner.masks[name], mask), name
