"""The one clock: the FLOPs a run reports and the step where it reaches a rung placed by
the grid (``Clock.of`` from the config alone) agree."""

import pytest

from addray.core.clock import Clock, show_budget
from addray.core.fused import train_fused
from addray.core.model import Transformer, count_parameters
from addray.core.tokens import max_example_length
from addray.core.trainer import train
from tests.conftest import small_config


def test_flops_are_six_times_parameters_times_the_padded_example():
    cfg = small_config()
    params = count_parameters(Transformer(cfg.model))
    fed = max_example_length(99, 10) - 1  # "99+99=198<end>": 10 tokens, 9 fed
    clock = Clock.of(cfg, params, "flops")
    assert fed == 9
    assert clock.per_step == 6 * params * 9 * cfg.training.batch_size
    assert clock.readings(3) == {"examples": 3 * 128, "flops": 3 * clock.per_step}
    assert Clock.of(cfg, params, "examples").per_step == 128
    assert Clock.of(cfg, params).per_step == 1


def test_a_budget_is_reached_at_the_first_step_at_or_past_it():
    clock = Clock("examples", 128, 1.0)
    assert clock.steps_reaching([128, 129, 1280, 1]) == {1, 2, 10}
    with pytest.raises(ValueError, match="clock = 'hours': must be one of steps"):
        Clock("hours", 128, 1.0)


@pytest.mark.parametrize("fused", [False, True])
def test_the_trainer_evaluates_where_the_rung_the_grid_placed_falls(fused):
    cfg = small_config(training={"max_steps": 12, "check_every": 100})
    clock = Clock.of(cfg, count_parameters(Transformer(cfg.model)), "flops")
    rung = 4.5 * clock.per_step  # between steps 4 and 5: reached at step 5
    if fused:
        history = train_fused([cfg], num_threads=1, rungs=("flops", [rung]))[0]["history"]
    else:
        history = train(cfg, num_threads=1, rungs=("flops", [rung]))["history"]
    assert [m["step"] for m in history] == [5, 12]
    assert history[0]["flops"] >= rung > history[0]["flops"] - clock.per_step
    assert [m["flops"] for m in history] == [clock.readings(s)["flops"] for s in (5, 12)]


def test_budgets_are_shown_in_their_unit():
    assert show_budget(1000, "steps") == "1,000 steps"
    assert show_budget(64_000, "examples") == "64K examples"
    assert show_budget(1.5e12, "flops") == "1.5e+12 FLOPs"
