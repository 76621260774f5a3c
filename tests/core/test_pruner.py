"""The pruner's hooks: masks survive optimizers, state round-trips, bad input is refused whole."""

import copy

import pytest
import torch
from _models import batch, mlp, small_cnn, train
from torch import nn

import prunecli.pruner as pruner_module
from prunecli import build_pruner
from prunecli._increments import newly_pruned
from prunecli.errors import ConfigError
from prunecli.pruner import Pruner

ONESHOT = {"name": "oneshot", "final_sparsity": 0.5}

AGP = {"name": "agp", "final_sparsity": 0.8, "start_step": 0, "end_step": 60, "frequency": 10}


class PlainSGD(torch.optim.Optimizer):
    """An optimizer the pruner does not know: per-step re-application must kick in."""

    def __init__(self, params, lr=0.05):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + 1e-3, alpha=-group["lr"])   # the constant would revive zeros


OPTIMIZERS = {
    "sgd_momentum_wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-3, nesterov=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "adam_amsgrad": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3, amsgrad=True),
    "unknown": lambda ps: PlainSGD(ps),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("tell_optimizer", [True, False])
@pytest.mark.parametrize("target", ["unstructured", "channel"])
def test_pruned_weights_stay_zero_through_200_steps(name, tell_optimizer, target):
    model = small_cnn()
    optimizer = OPTIMIZERS[name](model.parameters())
    pruner = build_pruner(model, {"target": target, "allocation": "global", "schedule": AGP},
                          optimizer=optimizer if tell_optimizer else None)
    train(model, pruner, optimizer, steps=200)
    assert pruner.report().sparsity == pytest.approx(0.8, abs=0.03)
    for fqn, mask in pruner.masks.items():
        assert int(model.get_parameter(fqn).detach()[~mask].count_nonzero()) == 0, fqn


def test_fast_path_skips_reapply_only_for_known_optimizers():
    model = small_cnn()
    cfg = {"schedule": {"name": "oneshot", "final_sparsity": 0.5}}
    assert not build_pruner(model, cfg, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))._reapply_each_step
    assert build_pruner(model, cfg, optimizer=PlainSGD(model.parameters()))._reapply_each_step
    assert build_pruner(model, cfg)._reapply_each_step
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert build_pruner(model, {**cfg, "reapply": "always"}, optimizer=optimizer)._reapply_each_step


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "movement", "snip_momentum", "random"])
def test_state_round_trip_and_resume_reach_identical_masks(criterion):
    cfg = {"target": "4x1", "criterion": criterion, "allocation": "global", "schedule": AGP}

    def run(model, optimizer, pruner, steps, start):
        pruner.on_train_begin()
        for step in range(start, start + steps):
            x, y = batch(seed=step)
            pruner.on_step_begin(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            pruner.on_before_optimizer_step()
            optimizer.step()
            pruner.on_after_optimizer_step()

    ref = small_cnn()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    ref_pruner = build_pruner(ref, cfg, optimizer=ref_opt)
    run(ref, ref_opt, ref_pruner, 80, 0)

    first = small_cnn()
    first_opt = torch.optim.SGD(first.parameters(), lr=0.05, momentum=0.9)
    first_pruner = build_pruner(first, cfg, optimizer=first_opt)
    run(first, first_opt, first_pruner, 35, 0)
    saved = tuple(copy.deepcopy(x.state_dict()) for x in (first, first_opt, first_pruner))

    resumed = small_cnn(seed=123)
    resumed.load_state_dict(saved[0])
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    resumed_opt.load_state_dict(saved[1])
    resumed_pruner = build_pruner(resumed, cfg, optimizer=resumed_opt)
    resumed_pruner.load_state_dict(saved[2])
    assert all(torch.equal(resumed_pruner.masks[n], first_pruner.masks[n]) for n in first_pruner.masks)
    run(resumed, resumed_opt, resumed_pruner, 45, 35)

    assert resumed_pruner.step == ref_pruner.step == 80
    for n in ref_pruner.masks:
        assert torch.equal(resumed_pruner.masks[n], ref_pruner.masks[n]), n
    for (n, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n


def test_gradient_criterion_defers_a_step_zero_update_until_it_has_gradients():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner = build_pruner(model, {"criterion": "taylor", "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    train(model, pruner, optimizer, steps=1, shape=(8, 64))
    assert pruner.report().sparsity == 0.0
    train(model, pruner, optimizer, steps=1, shape=(8, 64))
    assert pruner.report().sparsity == pytest.approx(0.5, abs=1e-3)


def test_report_counts_parameters():
    model = mlp(widths=(64, 32))            # Linear(64,32) + Linear(32,10): classifier excluded
    pruner = build_pruner(model, {"schedule": {"name": "oneshot", "final_sparsity": 0.25}})
    pruner.on_step_begin()
    report = pruner.report().to_dict()
    assert report["params_total"] == 64 * 32 + 32 + 32 * 10 + 10
    assert report["per_layer"] == {"1.weight": 0.25}
    assert report["sparsity"] == 0.25
    nonzero_before = sum(int(p.count_nonzero()) for p in mlp(widths=(64, 32)).parameters())
    assert report["params_nonzero"] == nonzero_before - 512


def test_pattern_lock_keeps_existing_zeros_and_prunes_nothing_new():
    model = mlp()
    with torch.no_grad():
        model[1].weight[:, ::3] = 0
    zeros = model[1].weight == 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pruner = build_pruner(model, {"initial_masks": "nonzero", "schedule": {"name": "none", "final_sparsity": 0.0}},
                          optimizer=optimizer)
    train(model, pruner, optimizer, steps=30, shape=(8, 64))
    assert torch.equal(model[1].weight == 0, zeros)
    assert int((model[3].weight == 0).sum()) == 0


def test_user_plugins_by_dotted_path():
    model = mlp()
    pruner = build_pruner(model, {"target": {"_target_": "_plugins.Rows"},
                                  "criterion": {"_target_": "_plugins.FirstUnitsLeast"}, "schedule": ONESHOT})
    pruner.on_step_begin()
    rows = pruner.masks["1.weight"].all(1)
    assert rows.tolist() == [False] * 24 + [True] * 24


@pytest.mark.parametrize("cfg, key", [
    ({"schedule": {"name": "oneshot", "final_sparsity": 1.0}}, "schedule.final_sparsity"),
    ({"schedule": {"name": "oneshot", "final_sparsity": -0.5}}, "schedule.final_sparsity"),
    ({"target": "2:4", "schedule": {"name": "oneshot", "final_sparsity": 0.6}}, "sparsity"),
    ({"target": "4:2", "schedule": ONESHOT}, "pruner.target"),
    ({"target": "diagonal", "schedule": ONESHOT}, "pruner.target"),
    ({"criterion": "hessian", "schedule": ONESHOT}, "pruner.criterion"),
    ({"allocation": "greedy", "schedule": ONESHOT}, "pruner.allocation"),
    ({"schedule": {"name": "stairs", "final_sparsity": 0.5}}, "schedule.name"),
    ({"layers": {"include": ["conv.*"]}, "schedule": ONESHOT}, "pruner.layers.include"),
    ({"layers": {"include": ["(("]}, "schedule": ONESHOT}, "pruner.layers.include"),
    ({"layers": {"types": ["Conv9d"]}, "schedule": ONESHOT}, "pruner.layers.types"),
    ({"layers": {"exclude": [".*"]}, "schedule": ONESHOT}, "pruner.layers"),
    ({"allocation": {"name": "global", "max_sparsity": 0.3}, "schedule": ONESHOT}, "sparsity"),
    ({"sparsity": 0.5, "schedule": ONESHOT}, "pruner.sparsity"),
    ({"criterion": {"name": "snip_momentum", "gamma": 2}, "schedule": ONESHOT}, "pruner.criterion.gamma"),
    ({"target": "head", "schedule": ONESHOT}, "pruner.layers"),
])
def test_bad_input_is_one_line_naming_the_key_and_changes_nothing(cfg, key):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError) as info:
        build_pruner(model, cfg)
    message = str(info.value)
    assert message.startswith(key + "=") and "expected" in message and "\n" not in message
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    assert not any(p._post_accumulate_grad_hooks for p in model.parameters())


def test_pruner_is_the_one_class_and_build_pruner_the_one_builder():
    model = mlp()
    assert type(build_pruner(model, {"schedule": {"name": "oneshot", "final_sparsity": 0.1}})) is Pruner


@pytest.mark.parametrize("target", ["unstructured", "2:4", "4x1", "channel"])
def test_incremental_mask_updates_equal_full_recomputation(target, monkeypatch):
    """An update that only prunes more zeroes just the newly pruned elements (weights, float masks, momentum);
    the result must equal recomputing and re-applying every mask. Channel sites are coupled (IndexLayout, the
    generic expand fallback); 2:4 permutes the elements; 4x1 uses block arithmetic."""
    low, high = (0.3, 0.5) if target == "2:4" else (0.5, 0.8)
    schedule = {"name": "linear", "initial_sparsity": low, "final_sparsity": high, "start_step": 0,
                "end_step": 60, "frequency": 3}
    runs = []
    for incremental in (True, False):
        model = small_cnn()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        pruner = build_pruner(model, {"target": target, "criterion": "snip_momentum", "allocation": "global",
                                      "schedule": schedule}, optimizer=opt,
                              example_inputs=batch()[0][:2] if target == "channel" else None)
        calls = []
        if incremental:
            monkeypatch.setattr(pruner_module, "newly_pruned", lambda old, new, f=newly_pruned: (
                lambda r: calls.append(r is not None) or r)(f(old, new)))
        else:
            monkeypatch.setattr(pruner_module, "newly_pruned", lambda old, new: None)
        train(model, pruner, opt, 66)
        runs.append((model, opt, pruner, calls))
    (a, opt_a, pa, calls), (b, opt_b, pb, _) = runs
    # the jump to the initial sparsity recomputes everything; every later update takes the short path
    assert len(calls) >= 19 and not calls[0] and all(calls[1:]) and pa.report().sparsity > 0.3
    for n in pa.masks:
        assert torch.equal(pa.masks[n], pb.masks[n]), n
        assert torch.equal(pa._fmasks[n], pb._fmasks[n]), n
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
        assert torch.equal(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"]), n


def test_float_masks_exist_only_once_training_starts():
    """A one-shot run installs its masks and never trains: no float copy of the masks is made (it would be the
    size of the pruned weights). The first training step builds them, equal to the bool masks."""
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = build_pruner(model, {"schedule": {"name": "none", "final_sparsity": 0.5}}, optimizer=opt)
    state = pruner.state_dict()
    g = torch.Generator().manual_seed(0)
    state["masks"] = {n: torch.rand(m.shape, generator=g) > 0.5 for n, m in state["masks"].items()}
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner.load_state_dict(state)
    pruner.on_train_begin()
    assert pruner._fcache is None
    for n, mask in state["masks"].items():  # applied all the same, the very products of the float masks
        weight = model.get_parameter(n)
        assert torch.equal(weight.view(torch.int32), (dense[n] * mask.float()).view(torch.int32)), n
    train(model, pruner, opt, 2)
    assert pruner._fcache is not None
    for n, mask in pruner.masks.items():
        assert torch.equal(pruner._fcache[n], mask.float()) and not model.get_parameter(n)[~mask].any(), n
