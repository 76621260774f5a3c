"""Progressive pruning: the weights an update prunes are zeroed over stages, lowest score first; the final
update lands whole; a run resumed mid-interpolation continues exactly."""

import copy
import logging

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.errors import ConfigError

LINEAR = {"name": "linear", "final_sparsity": 0.5, "start_step": 0, "end_step": 20, "frequency": 10}


def fixed_model():
    """Linear(8, 8) whose weights have magnitudes 1..64 in a scrambled order (plus a dense classifier)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 2))
    values = (torch.randperm(64, generator=g) + 1).float() * torch.where(torch.rand(64, generator=g) < 0.5, -1, 1)
    with torch.no_grad():
        model[0].weight.copy_(values.reshape(8, 8))
    return model


def run(pruner, model, steps, start=0, record=None):
    for t in range(start, start + steps):
        pruner.on_step_begin(t)
        if record is not None:
            record[t] = pruner.masks["0.weight"].clone()
        pruner.on_after_optimizer_step()


def test_newly_pruned_weights_go_in_four_stages_lowest_first():
    model = fixed_model()
    magnitude = model[0].weight.detach().abs().clone()
    pruner = build_pruner(model, {"progressive": {"steps": 4}, "schedule": LINEAR})
    pruner.on_train_begin()
    masks = {}
    run(pruner, model, 22, record=masks)
    pruned = {t: int((~m).sum()) for t, m in masks.items()}
    # update at 10 (sparsity 0.25: 16 new) in stages at 10, 12, 14, 16; the last update (20) lands whole
    assert pruned == {**{t: 0 for t in range(10)}, 10: 4, 11: 4, 12: 8, 13: 8, 14: 12, 15: 12,
                      16: 16, 17: 16, 18: 16, 19: 16, 20: 32, 21: 32}
    for t, k in ((10, 4), (12, 8), (14, 12), (16, 16), (20, 32)):
        assert set(magnitude[~masks[t]].tolist()) == set(range(1, k + 1)), t
        assert int(model[0].weight.detach().count_nonzero()) == 64 - 32
    assert pruner.report().sparsity == 0.5


def test_block_target_interpolates_inside_blocks_and_ends_aligned():
    model = fixed_model()
    pruner = build_pruner(model, {"target": "4x1", "progressive": {"steps": 4}, "schedule": LINEAR})
    masks = {}
    run(pruner, model, 21, record=masks)

    def aligned(mask):
        blocks = mask.reshape(2, 4, 8)  # 4 rows x 1 column blocks
        return bool((blocks.all(1) | ~blocks.any(1)).all())

    assert not aligned(masks[10]) and int((~masks[10]).sum()) == 4
    assert aligned(masks[16]) and int((~masks[16]).sum()) == 16
    assert aligned(masks[20]) and int((~masks[20]).sum()) == 32


def test_frequency_smaller_than_steps_uses_one_stage_per_step():
    model = fixed_model()
    schedule = {**LINEAR, "frequency": 2, "end_step": 6}       # updates at 0, 2, 4, 6
    pruner = build_pruner(model, {"progressive": 4, "schedule": schedule})
    masks = {}
    run(pruner, model, 7, record=masks)
    # update at 2: 11 new weights (1/6 of 64) in 2 stages (steps 2, 3); at 4: 10 more (steps 4, 5); 6 lands whole
    assert [int((~masks[t]).sum()) for t in range(7)] == [0, 0, 6, 11, 16, 21, 32]


def test_resume_mid_interpolation_continues_exactly():
    cfg = {"progressive": {"steps": 4}, "schedule": LINEAR}
    ref_model = fixed_model()
    ref = build_pruner(ref_model, cfg)
    ref_masks = {}
    run(ref, ref_model, 22, record=ref_masks)

    model = fixed_model()
    first = build_pruner(model, cfg)
    run(first, model, 13)
    saved = copy.deepcopy(first.state_dict()), copy.deepcopy(model.state_dict())
    resumed_model = fixed_model()
    resumed = build_pruner(resumed_model, cfg)
    resumed.load_state_dict(saved[0])
    resumed_model.load_state_dict(saved[1])
    masks = {}
    run(resumed, resumed_model, 9, start=13, record=masks)
    for t, mask in masks.items():
        assert torch.equal(mask, ref_masks[t]), t


def test_channel_target_cannot_interpolate():
    with pytest.raises(ConfigError) as info:
        build_pruner(fixed_model(), {"target": "channel", "progressive": {"steps": 4}, "schedule": LINEAR})
    message = str(info.value)
    assert message.startswith("pruner.progressive.steps=4") and "unstructured, N:M or RxC block target" in message


def test_oneshot_schedule_turns_interpolation_off(caplog):
    model = fixed_model()
    with caplog.at_level(logging.INFO, logger="prunecli._progressive"):
        pruner = build_pruner(model, {"progressive": {"steps": 4},
                                      "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert "progressive pruning is off" in caplog.text
    pruner.on_step_begin(0)
    assert pruner.report().sparsity == 0.5


@pytest.mark.parametrize("spec, key", [({"steps": 0}, "pruner.progressive.steps"),
                                       ({"stages": 4}, "pruner.progressive.stages"),
                                       ("fast", "pruner.progressive")])
def test_bad_progressive_config(spec, key):
    with pytest.raises(ConfigError) as info:
        build_pruner(fixed_model(), {"progressive": spec, "schedule": LINEAR})
    assert str(info.value).startswith(key + "=")
