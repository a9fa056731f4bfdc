"""RungScheduler: successive halving on a budget clock, with catch-up, groups and units,
on synthetic studies (no Ray cluster needed)."""

import re
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from addray.core.clock import show_budget
from addray.sweep.grid import group_by_config, unit_by_setting
from addray.sweep.scheduler import RungScheduler, rung_budgets

CONT, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _config(name, lr=1e-3, seed=0, batch=256):
    return {"trial": {"name": name, "seed": seed,
                      "config": {"training": {"learning_rate": lr, "batch_size": batch}}}}


def _scheduler(catch_up, clock="steps", rungs=(1000, 3000, 9000), rf=3, **kw):
    # rungs at steps 1000, 3000, 9000 (grace 2 reports of 500 steps, rf 3), as phase 1
    return RungScheduler(score="score", clock=clock, rungs=list(rungs), reduction_factor=rf,
                         catch_up=catch_up, **kw)


def _report(sched, trial_id, step, score, config=None, **extra):
    return sched.judge(trial_id, config or _config(trial_id),
                       {"step": step, "score": score, "status": "running", **extra})


def test_rungs():
    assert rung_budgets(10_000, 1000, 3) == [1000, 3000, 9000]
    assert rung_budgets(2000, 1000, 3) == [1000]
    assert show_budget(256_000, "examples") == "256K examples"
    assert show_budget(3000, "steps") == "3,000 steps"


@pytest.mark.parametrize("catch_up", [False, True])
def test_first_at_a_rung_passes_it_and_a_late_weak_trial_is_stopped(catch_up):
    sched = _scheduler(catch_up)
    # the fastest model reaches the rung first: nothing to compare with, it goes on
    assert _report(sched, "tiny", 1000, 0.002) == CONT
    assert _report(sched, "middle", 1000, 0.088) == CONT
    # a later arrival below the rung's cutoff is stopped there, with the reason
    assert _report(sched, "lower", 1000, 0.0077) == STOP
    note = sched.stop_note("lower")
    assert note.startswith("stopped at 1,000 steps: at the 1,000 steps rung")
    assert "0.0077" in note and "2 other trials" in note


def test_catch_up_stops_the_early_arrival_once_the_rung_fills():
    sched = _scheduler(catch_up=True)
    assert _report(sched, "tiny", 1000, 0.002) == CONT
    assert _report(sched, "middle", 1000, 0.088) == CONT
    # one rival is not enough to judge the best third: tiny goes on until the rung fills
    assert _report(sched, "tiny", 1500, 0.015) == CONT
    assert _report(sched, "upper", 1000, 0.09) == CONT
    # tiny's next report: judged again at 1000 against both, as if it had come last
    assert _report(sched, "tiny", 2000, 0.02) == STOP
    assert sched.stop_note("tiny").startswith(
        "stopped at 2,000 steps: at the 1,000 steps rung it scored 0.0020")
    # the better trial is left alone at every later report
    assert _report(sched, "middle", 1500, 0.19) == CONT
    assert sched.stop_note("middle") is None


def test_without_catch_up_the_early_arrival_runs_on():
    sched = _scheduler(catch_up=False)
    assert _report(sched, "tiny", 1000, 0.002) == CONT
    assert _report(sched, "middle", 1000, 0.088) == CONT
    for step in range(1500, 10_000, 500):
        assert _report(sched, "tiny", step, 0.1) == CONT
    assert sched.stop_note("tiny") is None


def test_catch_up_keeps_the_top_third_and_ties():
    sched = _scheduler(catch_up=True)
    _report(sched, "tiny", 1000, 0.5)
    _report(sched, "middle", 1000, 0.5)  # a tie with the cutoff is not below it
    assert _report(sched, "tiny", 1500, 0.6) == CONT
    assert _report(sched, "middle", 1500, 0.6) == CONT
    # a third trial far ahead: of three, only the best third stays (tiny and middle go)
    assert _report(sched, "upper", 1000, 0.9) == CONT
    assert _report(sched, "tiny", 2000, 0.7) == STOP
    assert _report(sched, "middle", 2000, 0.7) == STOP
    assert _report(sched, "upper", 2000, 0.95) == CONT


def test_a_trial_that_ended_on_its_own_is_recorded_not_judged():
    sched = _scheduler(catch_up=True)
    _report(sched, "upper", 1000, 0.9)
    assert sched.judge("middle", _config("middle"),
                       {"step": 1000, "score": 0.1, "status": "early_stopped"}) == CONT
    assert sched.stop_note("middle") is None


def test_the_note_tells_near_ties_apart():
    sched = _scheduler(catch_up=True)
    _report(sched, "upper", 1000, 3.7e-7)
    _report(sched, "middle", 1000, 3.6e-7)  # 0% exact match, tie-break only
    assert _report(sched, "tiny", 1000, 3.5e-7) == STOP
    mine, cutoff = re.search(r"scored (\S+), below the cutoff (\S+) ",
                             sched.stop_note("tiny")).groups()
    assert mine != cutoff and float(mine) < float(cutoff)


def test_examples_clock_compares_at_equal_examples_and_steps_does_not():
    # upper (batch 256) and tiny (batch 2048) after 1,000 steps: tiny has seen 8x the data
    # and leads; after the same 256K examples, upper leads
    def run(clock):
        rung = 256_000 if clock == "examples" else 1000
        sched = _scheduler(True, clock=clock, rungs=[rung], rf=2)  # two trials: halving
        ups = [(1000, 256_000, 0.30), (8000, 2_048_000, 0.95)]
        tinys = [(125, 256_000, 0.05), (1000, 2_048_000, 0.40)]
        decisions = {}
        for (us, ue, ua), (ts, te, ta) in zip(ups, tinys, strict=True):
            decisions["tiny"] = sched.judge("tiny", _config("tiny", batch=2048),
                                            {"step": ts, "examples": te, "score": ta,
                                             "status": "running"})
            decisions["upper"] = sched.judge("upper", _config("upper", batch=256),
                                             {"step": us, "examples": ue, "score": ua,
                                              "status": "running"})
        return decisions

    steps, examples = run("steps"), run("examples")
    # steps: at the 1,000-step rung tiny (0.40, 2M examples) beats upper (0.30, 256K)
    assert steps == {"tiny": CONT, "upper": STOP}
    # examples: at 256K examples upper (0.30) beats tiny (0.05, after 125 steps)
    assert examples == {"tiny": STOP, "upper": CONT}


def test_within_config_comparison_never_prunes_one_config_by_another():
    # four configs x three learning rates: each config keeps its best rate, whatever
    # the other configs score
    sched = _scheduler(True, rungs=[1000], group=group_by_config, unit=unit_by_setting)
    scores = {"upper": (0.9, 0.6, 0.3), "middle": (0.5, 0.8, 0.2), "lower": (0.1, 0.2, 0.3),
              "tiny": (0.001, 0.002, 0.0)}
    decisions = {}
    for rep in range(2):
        for name, row in scores.items():
            for lr, score in zip((1e-4, 1e-3, 1e-2), row, strict=True):
                decisions[(name, lr)] = _report(sched, f"{name}-{lr}", 1000 + 500 * rep, score,
                                                _config(name, lr))
    best = {name: max(zip(row, (1e-4, 1e-3, 1e-2), strict=True))[1]
            for name, row in scores.items()}
    for (name, lr), decision in decisions.items():
        assert decision == (CONT if lr == best[name] else STOP), (name, lr)
    assert "other settings of this config" not in sched.stop_note("tiny-0.0001")


def test_seeds_of_one_setting_stand_or_fall_together():
    sched = _scheduler(True, rungs=[1000], rf=2, unit=unit_by_setting)
    # lr 1e-3's seeds average 0.5, lr 1e-2's 0.45: 1e-2 is below the cutoff of the one
    # other setting (0.5) even though its seed 1 (0.6) beats lr 1e-3's seed 0 (0.4)
    for seed, (a, b) in enumerate([(0.4, 0.3), (0.6, 0.6)]):
        _report(sched, f"a{seed}", 1000, a, _config("m", 1e-3, seed))
        _report(sched, f"b{seed}", 1000, b, _config("m", 1e-2, seed))
    assert _report(sched, "b1", 1500, 0.7, _config("m", 1e-2, 1)) == STOP
    assert _report(sched, "a0", 1500, 0.5, _config("m", 1e-3, 0)) == CONT


def _add(sched, *trials):
    for trial_id, config in trials:
        sched.on_trial_add(None, SimpleNamespace(trial_id=trial_id, config=config))


def test_a_setting_is_judged_once_all_its_running_seeds_are_at_the_rung():
    # the laptop study: seed 0 of one rate, first at the rung, was pruned on its own score
    # while its seed 1 went on to finish; seeds of a setting wait for each other
    sched = _scheduler(True, rungs=[1000], rf=2, unit=unit_by_setting)
    _add(sched, *[(f"{n}{seed}", _config("m", lr, seed)) for n, lr in (("a", 1e-3), ("b", 1e-2))
                  for seed in (0, 1)])
    assert _report(sched, "a0", 1000, 0.5, _config("m", 1e-3, 0)) == CONT
    assert _report(sched, "a1", 1000, 0.5, _config("m", 1e-3, 1)) == CONT
    assert _report(sched, "b0", 1000, 0.1, _config("m", 1e-2, 0)) == CONT  # b1 on its way
    assert _report(sched, "b0", 1500, 0.2, _config("m", 1e-2, 0)) == CONT
    assert _report(sched, "b1", 1000, 0.6, _config("m", 1e-2, 1)) == STOP  # mean 0.35 < 0.5
    assert _report(sched, "b0", 2000, 0.3, _config("m", 1e-2, 0)) == STOP  # with it
    assert "scored 0.3500" in sched.stop_note("b0")


def test_a_seed_that_ended_does_not_hold_its_setting_back():
    sched = _scheduler(True, rungs=[1000], rf=2, unit=unit_by_setting)
    _add(sched, ("a0", _config("m", 1e-3, 0)), ("b0", _config("m", 1e-2, 0)),
         ("b1", _config("m", 1e-2, 1)))
    assert _report(sched, "a0", 1000, 0.5, _config("m", 1e-3, 0)) == CONT
    assert _report(sched, "b0", 1000, 0.1, _config("m", 1e-2, 0)) == CONT
    del sched.__dict__["_ended"]  # as a scheduler pickled before this set existed
    assert _report(sched, "b0", 1200, 0.1, _config("m", 1e-2, 0)) == CONT
    sched.on_trial_error(None, SimpleNamespace(trial_id="b1"))  # it will never arrive
    assert _report(sched, "b0", 1500, 0.2, _config("m", 1e-2, 0)) == STOP


def test_a_single_close_rival_does_not_decide():
    # the laptop pilot: at the first rung phase1_tiny scored 0.1618 at lr 1e-2 against
    # 0.1693 at 3e-3, and 1e-2 ended best (98.55% vs 89.56%); with rf 3, fewer than three
    # settings at a rung prune nothing, and once the third arrives the best two stay
    sched = _scheduler(True, rungs=[1000], group=group_by_config, unit=unit_by_setting,
                       unit_label="setting of this config")
    assert _report(sched, "a", 1000, 0.1693, _config("tiny", 3e-3)) == CONT
    assert _report(sched, "b", 1000, 0.1618, _config("tiny", 1e-2)) == CONT
    assert _report(sched, "c", 1000, 0.1294, _config("tiny", 3e-2)) == STOP
    assert _report(sched, "b", 1500, 0.2480, _config("tiny", 1e-2)) == CONT
    assert "2 other settings of this config" in sched.stop_note("c")


# --- the screen: a config's rates on its first seed, its other seeds at the best rate ---

class _Trial:
    def __init__(self, name, lr, replica):
        self.trial_id = f"{name}-lr{lr:g}-r{replica}"
        self.config = {"trial": {"name": name, "seed": replica, "replica": replica,
                                 "config": {"training": {"learning_rate": lr,
                                                         "batch_size": 256}}}}
        self.status = "PENDING"

    def set_status(self, status):
        self.status = status

    def init_local_path(self):
        pass


class _Controller:
    """What a scheduler may use of Tune's controller: get_trials and stop_trial."""

    def __init__(self, trials, sched):
        self.trials, self.sched, self.stopped = trials, sched, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        assert trial.status in ("PENDING", "PAUSED")
        self.sched.on_trial_remove(self, trial)
        trial.status = "TERMINATED"
        self.stopped.append(trial.trial_id)


def _screened(floor=None, rungs=(1000,)):
    from addray.sweep.grid import is_screen

    sched = _scheduler(True, rungs=rungs, group=group_by_config, unit=unit_by_setting,
                       unit_label="setting of this config", floor=floor,
                       screen=(group_by_config, is_screen))
    # grid order: config, rate, seed
    trials = [_Trial(name, lr, r) for name in ("small", "large") for lr in (1e-2, 4e-2)
              for r in range(3)]
    for t in trials:
        sched.on_trial_add(None, t)
    # Tune starts every PENDING trial it has resources for: the other seeds wait PAUSED
    assert {t.trial_id for t in trials if t.status == "PENDING"} == {
        t.trial_id for t in trials if t.config["trial"]["replica"] == 0}
    return sched, trials, _Controller(trials, sched)


def _start(sched, ctl):
    trial = sched.choose_trial_to_run(ctl)
    if trial is not None:
        trial.status = "RUNNING"
    return trial


def _finish(sched, trial, score, step=3000):
    assert sched.judge(trial.trial_id, trial.config,
                       {"step": step, "score": score, "status": "completed"}) == CONT
    trial.status = "TERMINATED"
    sched.on_trial_complete(None, trial, {})


def test_screen_runs_first_seeds_first_then_only_the_best_rate():
    sched, trials, ctl = _screened()
    by_id = {t.trial_id: t for t in trials}
    first = [_start(sched, ctl), _start(sched, ctl)]
    # the two first seeds of "small" start before any other seed
    assert [t.trial_id for t in first] == ["small-lr0.01-r0", "small-lr0.04-r0"]
    # no other trial of "small" may start while its screen runs: "large" screens next
    nxt = _start(sched, ctl)
    assert nxt.trial_id == "large-lr0.01-r0"
    # the larger rate ends best (it rose late): the smaller rate's other seeds never run
    _finish(sched, first[0], 0.40)
    assert _start(sched, ctl).trial_id == "large-lr0.04-r0"  # small's screen not done yet
    _finish(sched, first[1], 0.70)
    started = _start(sched, ctl)
    assert started.trial_id == "small-lr0.04-r1"
    assert ctl.stopped == ["small-lr0.01-r1", "small-lr0.01-r2"]
    note = sched.stop_note("small-lr0.01-r1")
    assert "ended best at lr 0.04" in note and "0.01 0.4000" in note and "0.04 0.7000" in note
    assert by_id["small-lr0.04-r2"].status == "PAUSED"  # the best rate's seeds all run
    # "large": its screen decides on its own trials only
    _finish(sched, by_id["large-lr0.01-r0"], 0.99)
    _finish(sched, by_id["large-lr0.04-r0"], 0.98)
    assert _start(sched, ctl).trial_id == "small-lr0.04-r2"
    assert _start(sched, ctl).trial_id == "large-lr0.01-r1"
    assert "large-lr0.04-r1" in ctl.stopped and "large-lr0.04-r2" in ctl.stopped
    assert _start(sched, ctl).trial_id == "large-lr0.01-r2"
    assert _start(sched, ctl) is None


def test_screen_never_compares_a_first_seed_with_other_rates_before_its_end():
    # without a floor, ASHA's comparison would stop the rate that is behind at a rung;
    # with the screen and a floor, only a run below the floor is stopped
    sched, trials, ctl = _screened(floor=0.002)
    a, b = _start(sched, ctl), _start(sched, ctl)
    c = _start(sched, ctl)
    d = _start(sched, ctl)
    assert sched.judge(a.trial_id, a.config, {"step": 1000, "score": 0.30,
                                              "status": "running"}) == CONT
    # far behind at the rung, but learning: goes on (the larger rate rises late)
    assert sched.judge(b.trial_id, b.config, {"step": 1000, "score": 0.01,
                                              "status": "running"}) == CONT
    assert sched.judge(c.trial_id, c.config, {"step": 1000, "score": 0.5,
                                              "status": "running"}) == CONT
    # not learning at all: stopped, the floor named
    assert sched.judge(d.trial_id, d.config, {"step": 1000, "score": 0.001,
                                              "status": "running"}) == STOP
    assert "below the floor 0.002" in sched.stop_note(d.trial_id)


def test_floor_replaces_the_comparison():
    sched = _scheduler(True, rungs=(1000,), floor=0.002)
    for i, score in enumerate((0.9, 0.8, 0.7, 0.6)):
        assert _report(sched, f"t{i}", 1000, score) == CONT  # ASHA would stop t3
    assert _report(sched, "t4", 1000, 0.0) == STOP


def test_a_screen_whose_first_seeds_all_errored_runs_every_seed():
    sched, trials, ctl = _screened()
    a, b = _start(sched, ctl), _start(sched, ctl)
    for t in (a, b):  # no score reported
        t.status = "ERROR"
        sched.on_trial_error(None, t)
    started = [_start(sched, ctl).trial_id for _ in range(6)]
    assert "small-lr0.01-r1" in started and "small-lr0.04-r1" in started
    assert ctl.stopped == []


def test_a_seed_at_the_screened_rate_is_never_stopped_by_the_floor():
    sched, trials, ctl = _screened(floor=0.002)
    a, b = _start(sched, ctl), _start(sched, ctl)
    _finish(sched, a, 0.30)
    _finish(sched, b, 0.20)
    replica = _start(sched, ctl)
    assert replica.trial_id == "small-lr0.01-r1"
    # a slow seed of the chosen rate, below the floor at the rung: it goes on
    assert sched.judge(replica.trial_id, replica.config, {"step": 1000, "score": 0.0,
                                                          "status": "running"}) == CONT
