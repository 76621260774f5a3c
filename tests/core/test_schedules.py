"""Schedule formulas against the published equations at table points."""

import math

import pytest

from prunecli.errors import ConfigError
from prunecli.schedules import Schedule, agp, build_schedule, cos, exp, linear, lottery_ticket_rate


@pytest.mark.parametrize("p, expected", [(0.0, 0.0), (0.25, 0.9 * (1 - 0.75**3)), (0.5, 0.7875), (1.0, 0.9)])
def test_agp_cubic_formula(p, expected):
    # Zhu & Gupta eq. 1: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i=0, s_f=0.9
    assert agp(p, 0.0, 0.9) == pytest.approx(expected)


def test_agp_schedule_table():
    s = Schedule("agp", 0.0, 0.8, start_step=100, end_step=1100, frequency=100)
    table = {0: 0.0, 99: 0.0, 100: 0.0, 150: 0.0, 200: 0.8 - 0.8 * 0.9**3, 600: 0.8 - 0.8 * 0.5**3, 1100: 0.8,
             5000: 0.8}
    for step, value in table.items():
        assert s.sparsity(step) == pytest.approx(value), step
    assert [t for t in range(0, 1300) if s.is_update_step(t)] == list(range(100, 1101, 100))


def test_linear_exp_cos_formulas():
    assert linear(0.5, 0.2, 0.8) == pytest.approx(0.5)
    # exp: density shrinks by the same factor per unit of progress
    assert exp(0.5, 0.0, 0.96) == pytest.approx(1 - math.sqrt(0.04))
    assert exp(1.0, 0.1, 0.9) == pytest.approx(0.9)
    assert cos(0.5, 0.0, 0.9) == pytest.approx(0.9 * (1 - math.cos(math.pi / 4)))
    assert cos(1.0, 0.0, 0.9) == pytest.approx(0.9)


def test_oneshot_updates_once_at_start():
    s = build_schedule({"name": "oneshot", "final_sparsity": 0.7, "start_step": 5})
    assert [t for t in range(20) if s.is_update_step(t)] == [5]
    assert s.sparsity(4) == 0.0 and s.sparsity(5) == 0.7 and s.sparsity(100) == 0.7


def test_end_step_reaches_final_even_off_frequency():
    s = Schedule("linear", 0.0, 0.6, start_step=0, end_step=25, frequency=10)
    assert [t for t in range(40) if s.is_update_step(t)] == [0, 10, 20, 25]
    assert s.sparsity(25) == pytest.approx(0.6) and s.sparsity(24) == pytest.approx(0.6 * 20 / 25)


def test_fractions_resolve_against_total_steps():
    s = build_schedule({"name": "agp", "final_sparsity": 0.9, "start": 0.1, "end": 0.6, "frequency": 5}, 200)
    assert (s.start_step, s.end_step) == (20, 120)


@pytest.mark.parametrize("n, final, rate", [(1, 0.8, 0.8), (2, 0.75, 0.5), (3, 0.875, 0.5), (5, 0.96, 1 - 0.04**0.2)])
def test_lottery_ticket_rate(n, final, rate):
    assert lottery_ticket_rate(final, n) == pytest.approx(rate)
    assert 1 - (1 - lottery_ticket_rate(final, n)) ** n == pytest.approx(final)


@pytest.mark.parametrize("cfg, key", [
    ({"name": "agp", "final_sparsity": 1.5, "end_step": 10}, "schedule.final_sparsity"),
    ({"name": "agp", "final_sparsity": -0.1, "end_step": 10}, "schedule.final_sparsity"),
    ({"name": "cubic", "final_sparsity": 0.5}, "schedule.name"),
    ({"name": "agp", "final_sparsity": 0.5, "start_step": 10, "end_step": 5}, "schedule.end_step"),
    ({"name": "agp", "final_sparsity": 0.5, "end_step": 10, "frequency": 0}, "schedule.frequency"),
    ({"name": "agp", "final_sparsity": 0.5, "end": 0.5}, "schedule.end"),
    ({"name": "agp", "final_sparsity": 0.5, "stop": 3}, "schedule.stop"),
])
def test_bad_schedule_names_the_key(cfg, key):
    with pytest.raises(ConfigError) as info:
        build_schedule(cfg)
    assert str(info.value).startswith(key + "=") and "\n" not in str(info.value)
