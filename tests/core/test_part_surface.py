"""The pruner's public surface (prune_to, report) and the builder's composition: optional part members have
one documented default (``prunecli._parts``), parts are composed by ``build_pruner``, and a pruner config is
checked without a model (``check_pruner_config``)."""

from __future__ import annotations

import pytest
import torch
from _models import mlp
from _plugins import FirstUnitsLeast, Rows

from prunecli import build_pruner
from prunecli._parts import DEFAULTS, optional
from prunecli.allocation import Local
from prunecli.config import check_pruner_config, compose, parse_pruner_config
from prunecli.criteria import Magnitude
from prunecli.errors import ConfigError
from prunecli.pruner import Pruner
from prunecli.schedules import Schedule
from prunecli.targets import Unstructured

ONESHOT = {"name": "oneshot", "final_sparsity": 0.5}


def test_optional_members_have_one_documented_default():
    assert optional(None, "needs_example_inputs") is False and optional(None, "batches") == 1
    assert optional(FirstUnitsLeast(), "needs_activations") is False and optional(Rows(), "unit_name") is None
    assert optional(object(), "state_dict")() == {} and optional(object(), "report")() is None
    assert optional(object(), "bind")(model=None, evaluator=None) is None
    assert optional(Magnitude(), "state_dict")() == {}  # a part's own member wins
    with pytest.raises(KeyError):
        optional(object(), "no_such_member")  # only documented members are optional
    assert set(DEFAULTS) >= {"bind", "share_allocation", "load_state_dict", "per_unit"}


def test_user_parts_without_optional_members_prune_save_and_report():
    model = mlp()
    pruner = build_pruner(model, {"target": {"_target_": "_plugins.Rows"},
                                  "criterion": {"_target_": "_plugins.FirstUnitsLeast"},
                                  "allocation": {"_target_": "_plugins.PlainAllocation"},
                                  "regularizer": {"_target_": "_plugins.CountingPenalty"}, "schedule": ONESHOT})
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    pruner.on_before_optimizer_step()
    assert pruner.regularizer.calls == 1
    mask = pruner.masks["1.weight"]
    assert not mask[:24].any() and mask[24:].all()  # the first 24 of 48 rows pruned (FirstUnitsLeast)
    state = pruner.state_dict()
    assert state["regularizer"] == {}
    pruner.load_state_dict(state)
    report = pruner.report()
    assert pruner.unit_name is None and report.search is None and report.target_sparsity == 0.5
    assert set(report.to_dict()) == {"sparsity", "params_total", "params_nonzero", "per_layer", "unit_sparsity",
                                     "per_layer_kind"}  # what a checkpoint's meta.json keeps, as before


def test_prune_to_prunes_now_and_refuses_a_criterion_without_data():
    model = mlp()
    pruner = build_pruner(model, {"schedule": ONESHOT})
    pruner.prune_to(0.25)
    assert pruner.report().sparsity == pytest.approx(0.25, abs=0.01) and pruner.target_sparsity == 0.25
    waiting = build_pruner(mlp(), {"criterion": "taylor", "schedule": ONESHOT})
    with pytest.raises(ConfigError, match=r"^pruner.criterion='taylor' is not allowed: .*weights alone") as err:
        waiting.prune_to(0.5)
    assert "\n" not in str(err.value)
    assert all(bool(m.all()) for m in waiting.masks.values())  # nothing changed


def test_report_carries_the_solved_target_sparsity():
    model = mlp()
    pruner = build_pruner(model, {"objective": {"name": "params", "keep": 0.5}, "schedule": ONESHOT})
    targeted = sum(p.numel() for p in pruner.params.values())
    total = sum(p.numel() for p in model.parameters())
    assert pruner.report().target_sparsity == pytest.approx(0.5 * total / targeted)
    assert pruner.report().target_sparsity == pruner.schedule.final_sparsity != 0.5


def test_search_report_is_the_allocations():
    calls = []
    model = mlp(widths=(64, 32))

    def evaluator(m):
        calls.append(1)
        return 0.0

    pruner = build_pruner(model, {"allocation": {"name": "sensitivity", "grid": [0.25, 0.5]}, "schedule": ONESHOT},
                          total_steps=1, evaluator=evaluator)
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    report = pruner.report()
    assert report.search == pruner.allocation.report() and report.search["evaluations"] == len(calls) > 0
    assert report.search["method"] == "sensitivity" and "search" not in report.to_dict()


def test_the_builder_composes_and_the_pruner_takes_ready_parts():
    model = mlp()
    parts = parse_pruner_config({"objective": {"name": "params", "keep": 0.5}, "schedule": ONESHOT})
    assert parts.schedule.final_sparsity == 0.5  # parsed, not solved: no model yet
    built = compose(model, parts)
    assert built.schedule.final_sparsity > 0.5 and set(built.sites) == {"1.weight", "3.weight"}  # the classifier stays
    sites, skipped = Unstructured().sites(model, {"1": model[1]})
    direct = Pruner(model, sites, target=Unstructured(), criterion=Magnitude(), allocation=Local(),
                    schedule=Schedule(final_sparsity=0.5), skipped=skipped)
    direct.prune_to(0.5)
    assert set(direct.masks) == {"1.weight"} and direct.report().sparsity == pytest.approx(0.5)


def test_build_pruner_still_refuses_what_needs_the_model():
    with pytest.raises(ConfigError, match=r"^pruner.layers="):
        build_pruner(mlp(), {"target": "head", "schedule": ONESHOT})  # an MLP has no heads
    with pytest.raises(ConfigError, match=r"^sparsity=0.9 .*<= 0.5"):
        build_pruner(mlp(), {"target": "2:4", "schedule": {"name": "oneshot", "final_sparsity": 0.9}})


@pytest.mark.parametrize("cfg, key", [
    ({"target": "3:2"}, "pruner.target"),
    ({"criterion": "bogus"}, "pruner.criterion"),
    ({"allocation": "greedy"}, "pruner.allocation"),
    ({"objective": "speed"}, "objective"),
    ({"regularizer": "l0"}, "pruner.regularizer"),
    ({"progressive": {"steps": 0}}, "pruner.progressive.steps"),
    ({"initial_masks": "random"}, "pruner.initial_masks"),
    ({"reapply": "never"}, "pruner.reapply"),
    ({"schedule": {"name": "agp", "final_sparsity": 0.5, "end": 0.5}}, "schedule.end"),
    ({"schedule": {"name": "agp", "final_sparsity": 1.5}}, "schedule.final_sparsity"),
    ({"colour": "red"}, "pruner.colour"),
])
def test_check_pruner_config_refuses_every_bad_part_without_a_model(cfg, key):
    cfg = {"schedule": ONESHOT, **cfg}
    with pytest.raises(ConfigError) as err:
        check_pruner_config(cfg)  # no total_steps: a schedule fraction cannot be resolved
    assert str(err.value).startswith(f"{key}=") and "\n" not in str(err.value)


def test_check_pruner_config_accepts_a_good_config_and_touches_nothing():
    cfg = {"target": "channel", "criterion": "taylor", "allocation": "global", "objective": "flops",
           "schedule": {"name": "agp", "final_sparsity": 0.5, "start": 0.0, "end": 0.5, "frequency": 2}}
    before = torch.get_rng_state()
    assert check_pruner_config(cfg, total_steps=10) is None
    assert torch.equal(torch.get_rng_state(), before)
