"""One registry idiom for every kind of part: names, options checked against the part's fields, ``_target_``
parts built with one-line errors, and the config names of every axis unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from prunecli.errors import ConfigError
from prunecli.registry import Registry, build_part


def _toy() -> Registry:
    reg = Registry("toy")

    @reg.register("pair")
    @dataclass
    class Pair:
        left: int = 1
        right: int = 2
        _hidden: int = 0

    return reg


def test_build_takes_a_name_a_mapping_or_a_target():
    reg = _toy()
    assert reg.build("pair", "toy").left == 1
    assert reg.build(" PAIR ", "toy").right == 2  # case and blanks ignored, as before
    assert (reg.build({"name": "pair", "right": 5}, "toy").right) == 5
    assert reg.build({"left": 7}, "toy", default="pair").left == 7
    built = reg.build({"_target_": "fractions.Fraction", "numerator": 3, "denominator": 4}, "toy")
    assert float(built) == 0.75


def test_errors_are_one_line_naming_the_key():
    reg = _toy()
    with pytest.raises(ConfigError, match=r"^toy='nope' is not allowed: expected one of pair$"):
        reg.build("nope", "toy")
    with pytest.raises(ConfigError) as err:
        reg.build({"name": "pair", "middle": 3}, "toy")  # _hidden is no option
    assert str(err.value) == "toy.middle=3 is not allowed: expected an option of pair: ['left', 'right']"
    with pytest.raises(ConfigError) as err:
        reg.build({"_target_": "nope.Missing"}, "toy")
    assert str(err.value).startswith("toy._target_='nope.Missing' is not allowed") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^toy\._target_='fractions.Fraction'.*unexpected keyword"):
        reg.build({"_target_": "fractions.Fraction", "bogus": 1}, "toy")


def test_registering_a_name_twice_is_a_programming_error():
    reg = _toy()
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("pair", object)


def test_registry_is_a_mapping_so_build_part_callers_keep_working():
    """``build_part(spec, {**ALLOCATIONS, **SEARCHES}, key, default=...)``: plain dicts and merged registries."""
    reg = _toy()
    merged = {**reg, "other": dict}
    assert sorted(merged) == ["other", "pair"] and build_part({"right": 9}, merged, "k", default="pair").right == 9
    from prunecli._parts import build_part as old_name

    assert old_name is build_part


def test_every_axis_keeps_its_config_names():
    from prunecli.criteria import CRITERIA
    from prunecli.export import FORMATS, format_module
    from prunecli.objectives import OBJECTIVES
    from prunecli.regularizers import REGULARIZERS
    from prunecli.schedules import FORMULAS
    from prunecli.targets import TARGETS

    assert CRITERIA.names() == ["apoz", "bn_scale", "fpgm", "gradient", "l1", "l2", "magnitude", "mean_activation",
                                "movement", "random", "snip_momentum", "taylor", "wanda"]
    assert OBJECTIVES.names() == ["flops", "latency", "params", "sparsity"]
    assert REGULARIZERS.names() == ["admm", "group_lasso", "l1_bn"]
    assert FORMULAS.names() == ["agp", "cos", "exp", "linear", "none", "oneshot"]
    assert TARGETS.names() == ["channel", "element", "elementwise", "filter", "head", "unstructured"]
    assert FORMATS.names() == ["compact", "dense", "onnx", "semi_structured", "sparse"]
    assert all(callable(format_module(n).check_options) and format_module(n).SUFFIX for n in FORMATS)
    with pytest.raises(ConfigError, match=r"^format='tflite' is not allowed: expected one of compact, dense, onnx, "
                                          r"semi_structured, sparse$"):
        format_module("tflite")


@pytest.mark.parametrize("spec, text", [
    ("unstructured", "unstructured"), ("Element", "unstructured"), ("elementwise", "unstructured"),
    ("2:4", "2:4"), (" 1 : 8 ", "1:8"), ("4x1", "4x1"), ("1 X 4", "1x4"), ("channel", "channel"),
    ("filter", "channel"), ("head", "head"), ({"name": "2:4"}, "2:4"),
    ({"name": "channel", "round_to": 8}, "channel(round_to=8)"),
])
def test_every_target_spelling_still_parses(spec, text):
    from prunecli.targets import parse_target

    assert str(parse_target(spec)) == text


@pytest.mark.parametrize("spec, message", [
    ("4:2", "pruner.target='4:2' is not allowed: expected N:M with 0 < N < M, e.g. 2:4"),
    ("1x1", "pruner.target='1x1' is not allowed: expected RxC blocks with R, C >= 1 and R*C >= 2, e.g. 4x1"),
    ("diagonal", ("pruner.target='diagonal' is not allowed: expected one of unstructured, N:M (e.g. 2:4), "
                  "RxC blocks (e.g. 4x1), channel, head")),
    ({"name": "channel", "size": 2}, "pruner.target.size=2 is not allowed: expected round_to, heads"),
    ({"name": "head", "size": 2}, "pruner.target.size=2 is not allowed: expected num_heads, quartets"),
    ({"name": "2:4", "size": 2}, "pruner.target.size=2 is not allowed: expected no options for this target"),
])
def test_target_errors_keep_their_shape(spec, message):
    from prunecli.targets import parse_target

    with pytest.raises(ConfigError) as err:
        parse_target(spec)
    assert str(err.value) == message


def test_a_name_with_capitals_is_found_as_typed():
    from prunecli.registry import Registry

    reg = Registry("thing")
    reg.add("MyNet", int)
    assert reg.get("MyNet") is int and reg.get(" mynet ") is int and reg.names() == ["mynet"]


def test_an_integer_too_large_for_a_float_is_refused_in_one_line():
    from prunecli._checks import number
    from prunecli.errors import ConfigError

    with pytest.raises(ConfigError, match="finite number"):
        number("trainer.optimizer.lr", 10**400, 0.0)
