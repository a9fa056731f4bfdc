"""StepASHA: Tune's ASHA on the training step, plus re-judging at passed rungs."""

import re
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from addray.scheduler import NOTE_ATTR, asha, asha_rungs

CONT, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _scheduler(catch_up: bool):
    # rungs at steps 1000, 3000, 9000 (grace 2 reports of 500 steps, rf 3), as phase 1
    sched = asha("asha_score", 10_000, 500, 2, 3, catch_up=catch_up)
    trials = {n: SimpleNamespace(trial_id=n) for n in ("tiny", "middle", "lower", "upper")}
    for t in trials.values():
        sched.on_trial_add(None, t)
    return sched, trials


def _report(sched, trial, step, score):
    return sched.on_trial_result(None, trial, {"step": step, "asha_score": score})


def test_rungs_in_steps():
    assert asha_rungs(10_000, 1000, 3) == [1000, 3000, 9000]
    assert asha_rungs(2000, 1000, 3) == [1000]


@pytest.mark.parametrize("catch_up", [False, True])
def test_first_at_a_rung_passes_it_and_a_late_weak_trial_is_stopped(catch_up):
    sched, t = _scheduler(catch_up)
    # the fastest model reaches the rung first: nothing to compare with, it goes on
    assert _report(sched, t["tiny"], 1000, 0.002) == CONT
    assert _report(sched, t["middle"], 1000, 0.088) == CONT
    # a later arrival below the rung's cutoff is stopped there, with the reason
    assert _report(sched, t["lower"], 1000, 0.0077) == STOP
    note = getattr(t["lower"], NOTE_ATTR)
    assert note.startswith("ASHA stopped it at step 1000: at the 1000-step rung")
    assert "0.0077" in note and "2 other trials" in note


def test_catch_up_stops_the_early_arrival_once_the_rung_fills():
    sched, t = _scheduler(catch_up=True)
    assert _report(sched, t["tiny"], 1000, 0.002) == CONT
    assert _report(sched, t["middle"], 1000, 0.088) == CONT
    # tiny's next report: judged again at 1000 against middle, as if it had come last
    assert _report(sched, t["tiny"], 1500, 0.015) == STOP
    assert getattr(t["tiny"], NOTE_ATTR).startswith(
        "ASHA stopped it at step 1500: at the 1000-step rung it scored 0.0020")
    # the better trial is left alone at every later report
    assert _report(sched, t["middle"], 1500, 0.19) == CONT
    assert not hasattr(t["middle"], NOTE_ATTR)


def test_without_catch_up_the_early_arrival_runs_on():
    sched, t = _scheduler(catch_up=False)
    assert _report(sched, t["tiny"], 1000, 0.002) == CONT
    assert _report(sched, t["middle"], 1000, 0.088) == CONT
    for step in range(1500, 10_000, 500):
        assert _report(sched, t["tiny"], step, 0.1) == CONT
    assert not hasattr(t["tiny"], NOTE_ATTR)


def test_catch_up_keeps_the_top_third_and_ties():
    sched, t = _scheduler(catch_up=True)
    _report(sched, t["tiny"], 1000, 0.5)
    _report(sched, t["middle"], 1000, 0.5)  # a tie with the cutoff is not below it
    assert _report(sched, t["tiny"], 1500, 0.6) == CONT
    assert _report(sched, t["middle"], 1500, 0.6) == CONT
    # a third trial far ahead: of three, only the best third stays (tiny and middle go)
    assert _report(sched, t["upper"], 1000, 0.9) == CONT
    assert _report(sched, t["tiny"], 2000, 0.7) == STOP
    assert _report(sched, t["middle"], 2000, 0.7) == STOP
    assert _report(sched, t["upper"], 2000, 0.95) == CONT


def test_a_trial_at_max_steps_stops_without_a_pruning_note():
    sched, t = _scheduler(catch_up=True)
    assert _report(sched, t["middle"], 10_000, 0.99) == STOP  # done, not pruned
    assert not hasattr(t["middle"], NOTE_ATTR)


def test_the_note_tells_near_ties_apart():
    sched, t = _scheduler(catch_up=True)
    _report(sched, t["middle"], 1000, 3.6e-7)  # 0% exact match, tie-break only
    assert _report(sched, t["tiny"], 1000, 3.5e-7) == STOP
    note = getattr(t["tiny"], NOTE_ATTR)
    mine, cutoff = re.search(r"scored (\S+), below the cutoff (\S+) ", note).groups()
    assert mine != cutoff and float(mine) < float(cutoff), note
