"""The one FLOP counter (FlopCounterMode): totals and per-module counts, and the masked estimate built on them."""

import torch
from torch import nn

from prunecli.metrics import count_flops, module_flops


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def test_module_flops_are_twice_the_macs_of_each_module_and_return_the_result():
    model = cnn()
    total, per_module, out = module_flops(model, lambda: model(torch.ones(3, 1, 8, 8)))
    macs = {"0": 72 * 64, "2": 1152 * 16, "5": 2560}   # weights x output positions, per sample
    assert {n: per_module[n] for n in macs} == {n: 2 * 3 * m for n, m in macs.items()}
    assert per_module[""] == total == 2 * 3 * sum(macs.values())
    assert out.shape == (3, 10)


def test_module_flops_leave_out_modules_that_did_not_run():
    model = cnn()
    total, per_module, out = module_flops(model, lambda: 7)
    assert (total, per_module, out) == (0, {}, 7)


def test_count_flops_scales_a_masked_module_by_its_density():
    model = cnn().train()
    mask = torch.zeros(16, 8, 3, 3, dtype=torch.bool)
    mask[:4] = True   # a quarter of the second conv's weights kept
    report = count_flops(model, torch.ones(1, 1, 8, 8), {"2.weight": mask, "2.bias": torch.zeros(16, dtype=torch.bool)})
    dense = 2 * (72 * 64 + 1152 * 16 + 2560)
    assert report == {"flops": dense, "flops_effective": dense - round(0.75 * 2 * 1152 * 16)}
    assert model.training   # train mode restored
