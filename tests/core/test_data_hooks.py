"""Forward hooks for activation criteria exist only while needed; updates wait for data; a run that never
provides it ends with a one-line error."""

import copy

import pytest
import torch
from _models import batch, small_cnn
from torch import nn

from prunecli import build_pruner
from prunecli.errors import ConfigError

NORMS = ("1", "4")           # small_cnn: conv 0 -> bn 1, conv 3 -> bn 4; Linear 8 has no norm
LAYERS = ("0", "1", "3", "4", "8")


def hooked(model):
    return {name for name in LAYERS if model.get_submodule(name)._forward_hooks}


def step(model, pruner, optimizer, t):
    x, y = batch(seed=t)
    pruner.on_step_begin(t)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    pruner.on_before_optimizer_step()
    optimizer.step()
    pruner.on_after_optimizer_step()


def test_hooks_only_in_the_batches_before_each_update():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = {"name": "linear", "final_sparsity": 0.5, "start_step": 4, "end_step": 14, "frequency": 5}
    pruner = build_pruner(model, {"target": "channel", "criterion": {"name": "apoz", "batches": 3},
                                  "schedule": schedule})
    pruner.on_train_begin()
    seen = {}
    for t in range(18):
        step(model, pruner, optimizer, t)
        seen[t] = hooked(model)
    # updates at 4, 9, 14; each is fed by the 3 training batches before it; the Linear's output has no norm
    collecting = {1, 2, 3, 6, 7, 8, 11, 12, 13}
    assert {t for t, names in seen.items() if names} == collecting
    assert all(names == {"4", "1", "8"} for t, names in seen.items() if names)
    assert pruner.report().sparsity == pytest.approx(0.5, abs=0.02)
    pruner.on_train_end()
    assert all(not model.get_submodule(n)._forward_hooks for n in LAYERS)


def test_oneshot_at_step_zero_waits_for_its_batches_and_eval_batches_do_not_count():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner = build_pruner(model, {"target": "channel", "criterion": {"name": "mean_activation", "batches": 2},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    pruner.on_train_begin()
    step(model, pruner, optimizer, 0)
    pruner.on_before_eval()
    assert not hooked(model)
    with torch.no_grad():
        model.eval()(batch(seed=99)[0])
    model.train()
    pruner.on_after_eval()
    assert pruner.report().sparsity == 0.0 and not pruner.criterion.ready
    step(model, pruner, optimizer, 1)
    assert pruner.report().sparsity == 0.0 and pruner.criterion.ready
    step(model, pruner, optimizer, 2)
    assert pruner.report().sparsity == pytest.approx(0.5, abs=0.02)
    assert not hooked(model)


@pytest.mark.parametrize("criterion, missing", [
    ({"name": "apoz", "batches": 8}, "activations of 8 training batches"),
    ({"name": "taylor"}, "gradients of 1 optimizer step"),
])
def test_run_without_data_ends_with_one_line_naming_what_is_missing(criterion, missing):
    model = small_cnn()
    pruner = build_pruner(model, {"target": "channel", "criterion": criterion,
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    pruner.on_train_begin()
    pruner.on_step_begin(0)                     # e.g. trainer.epochs=0: one-shot masks without training
    with pytest.raises(ConfigError) as info:
        pruner.on_train_end()
    message = str(info.value)
    assert message.startswith(f"pruner.criterion='{criterion['name']}'") and missing in message
    assert "\n" not in message
    assert not hooked(model) and not any(p._post_accumulate_grad_hooks for p in model.parameters())


def test_resume_in_the_middle_of_collecting():
    cfg = {"target": "channel", "criterion": {"name": "apoz", "batches": 4},
           "schedule": {"name": "oneshot", "final_sparsity": 0.5, "start_step": 2}}

    def make(seed=0):
        model = small_cnn(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, build_pruner(model, cfg, optimizer=optimizer), optimizer

    ref = make()
    ref[1].on_train_begin()
    for t in range(8):
        step(*ref, t)
    first = make()
    first[1].on_train_begin()
    for t in range(2):
        step(*first, t)
    saved = [copy.deepcopy(x.state_dict()) for x in first]
    resumed = make(seed=7)
    resumed[1].on_train_begin()
    for obj, state in zip(resumed, saved):
        obj.load_state_dict(state)
    for t in range(2, 8):
        step(*resumed, t)
    assert ref[1].report().sparsity == pytest.approx(0.5, abs=0.02)
    for name, mask in ref[1].masks.items():
        assert torch.equal(mask, resumed[1].masks[name]), name
    for (name, a), b in zip(ref[0].state_dict().items(), resumed[0].state_dict().values()):
        assert torch.equal(a, b), name
