"""Asynchronous successive halving (ASHA) on a fair clock, on Tune's public scheduler
interface (``FIFOScheduler`` hooks) with its own rung bookkeeping.

**Clock.** A rung is a budget in training steps, examples (steps x batch size) or
FLOPs (6 x parameters x tokens): with examples, a batch-256 trial and a batch-2048
trial are compared after the same number of examples, not the same number of steps.
Each trial evaluates at the step where it reaches each rung (the trainable asks the
trainer to), and its score there is the one recorded.

**Who is compared.** ``group`` decides which trials compete: all of them, or only those
of one config (its learning rates and seeds), so that pruning picks each config's best
learning rate and never decides one config's scaling point by another's. ``unit``
decides what is judged: a trial, or a setting whose seeds are judged together on their
mean score once every seed still running has reached the rung (seeds of one learning
rate stop together; a seed that already finished cannot be stopped).

**Judgement.** When a trial reaches a rung, its unit is compared with the other units
recorded there; it is stopped if it is below the cutoff that keeps the best
1/reduction_factor (Tune's ASHA rule), once at least reduction_factor units are there
(against a single rival, a 0.7-point gap at the first rung pruned the learning rate
that ended best, docs/LOG.md). Tune's ASHA judges a trial once, on arrival, so
the first trial at a rung always passes; in a grid of models of different speeds the
fastest never meets a rival (on one H100, phase1_tiny ran all 10,000 steps to 24% while
better models were pruned, docs/LOG.md). With ``catch_up`` a trial is judged
again at every report against everything recorded since at the rungs it passed: what
synchronous successive halving would decide, without making fast trials wait.
With ``floor`` the comparison is replaced by an absolute rule: a unit is stopped at a
rung only if its mean score there is below the floor (a run that has not started to
learn), whatever its rivals score, so that a rate whose curve rises late (the larger
rate under a cosine schedule) is never judged against one that rose early.

**Screen.** With ``screen`` a config's learning rates are first trained on its first
seed only; its other seeds start once every first-seed trial of the config has ended,
and only at the rate whose first seed ended best (its last score); those at the other
rates are stopped before they start (``stop_trial`` of Tune's scheduler interface), so
no rate is dropped on an early judgement and the best one gets every seed; those seeds
are never stopped by a rung.
The reason for every stop is kept (``stop_note``) for the study's trials.csv.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from addray.core.clock import REPORT_KEY, show_budget


def rung_budgets(max_budget: float, grace: float, reduction_factor: int) -> list[float]:
    """Budgets at which trials are compared: grace * rf**k below the largest budget."""
    rungs, t = [], grace
    while t < max_budget:
        rungs.append(t)
        t *= reduction_factor
    return rungs

def _rate(unit: Any) -> str:
    """A unit's learning rate as shown (units are (config, rate) in grid studies)."""
    return f"{unit[1]:g}" if isinstance(unit, tuple) and len(unit) == 2 else str(unit)


class RungScheduler(FIFOScheduler):
    """ASHA on ``clock`` (steps, examples or flops) with groups, units and catch-up (see
    the module docstring). ``score`` is the report key compared (higher is better)."""

    def __init__(self, *, score: str, clock: str, rungs: list[float], reduction_factor: int,
                 catch_up: bool, group: Callable[[dict], Any] | None = None,
                 unit: Callable[[dict], Any] | None = None, unit_label: str = "trial",
                 floor: float | None = None,
                 screen: tuple[Callable[[dict], Any], Callable[[dict], bool]] | None = None):
        super().__init__()
        self.floor = floor
        # screen: (config of a trial, whether it is a first seed); trial id -> last score
        self._screen = screen
        self._last: dict[str, float] = {}
        self._started: set[str] = set()  # trials this scheduler chose to run
        self.score, self.clock, self.rungs = score, clock, sorted(rungs)
        self.reduction_factor, self.catch_up = reduction_factor, catch_up
        self._group_of, self._unit_of, self.unit_label = group, unit, unit_label
        # (group, rung) -> unit -> trial id -> score recorded there
        self._records: dict[tuple[Any, float], dict[Any, dict[str, float]]] = {}
        self._where: dict[str, tuple[Any, Any]] = {}  # trial id -> (group, unit)
        self._notes: dict[str, str] = {}
        self._ended: set[str] = set()  # trials that will report no more

    def _end(self, trial_id: str) -> None:
        if "_ended" not in self.__dict__:  # a study resumed from before this set existed
            self._ended = set()
        self._ended.add(trial_id)

    def ended(self, trial_id: str) -> None:
        """The trial will report no more (a caller judging runs outside Tune says so)."""
        self._end(trial_id)

    def place(self, trial_id: str, config: dict) -> None:
        """Make a trial known before its first report (so that its setting waits for
        it at a rung)."""
        self._place(trial_id, config)

    def stop_note(self, trial_id: str) -> str | None:
        """Why this scheduler stopped the trial, or None if it did not."""
        return self._notes.get(trial_id)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._place(trial.trial_id, trial.config)
        screen = self.__dict__.get("_screen")
        if screen and not screen[1](trial.config) and trial.status == "PENDING":
            # held back until its config's screen has ended: Tune starts every PENDING
            # trial it has resources for, but a PAUSED one only when a scheduler picks it
            trial.set_status("PAUSED")
            # Tune makes a trial's folder when it starts it; the live table reads it
            trial.init_local_path()

    def _place(self, trial_id: str, config: dict) -> tuple[Any, Any]:
        if trial_id not in self._where:
            group = self._group_of(config) if self._group_of else None
            unit = self._unit_of(config) if self._unit_of else trial_id
            self._where[trial_id] = (group, unit)
        return self._where[trial_id]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self.judge(trial.trial_id, trial.config, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._end(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._end(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._end(trial.trial_id)

    def judge(self, trial_id: str, config: dict, result: dict) -> str:
        """Record the report at the rungs it reached; CONTINUE or STOP the trial."""
        clock, score = result.get(REPORT_KEY[self.clock]), result.get(self.score)
        if score is not None and "_last" in self.__dict__:
            self._last[trial_id] = float(score)
        if clock is None or score is None:
            return TrialScheduler.CONTINUE
        group, unit = self._place(trial_id, config)
        newest = None
        for rung in self.rungs:
            if clock >= rung * (1 - 1e-9):  # float products of steps and batch sizes
                units = self._records.setdefault((group, rung), {})
                if trial_id not in units.setdefault(unit, {}):
                    units[unit][trial_id] = float(score)
                    newest = rung
        if result.get("status", "running") != "running":
            self._end(trial_id)
            return TrialScheduler.CONTINUE  # it ended on its own: recorded, not judged
        screen = self.__dict__.get("_screen")
        if screen and not screen[1](config):
            # a seed at the rate its config's first seed ended best at: never stopped (a
            # slow seed below the floor at a rung is that rate's spread, not a bad rate)
            return TrialScheduler.CONTINUE
        passed = [r for r in self.rungs if clock >= r * (1 - 1e-9)]
        to_judge = passed[::-1] if self.catch_up else ([newest] if newest is not None else [])
        for rung in to_judge:
            verdict = self._below_cutoff(group, unit, rung)
            if verdict is not None:
                self._notes[trial_id] = (f"stopped at {show_budget(clock, self.clock)}: "
                                         f"{verdict}")
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _below_cutoff(self, group: Any, unit: Any, rung: float) -> str | None:
        """Why ``unit`` is outside the best 1/rf of the units recorded at ``rung`` in
        its group, or None if it is not."""
        units = self._records.get((group, rung), {})
        means = {u: float(np.mean(list(s.values()))) for u, s in units.items() if s}
        if unit not in means:
            return None
        ended = self._ended if "_ended" in self.__dict__ else set()
        # with a screen, a setting's other seeds start only after its first: only those
        # started are waited for
        started = self.__dict__.get("_started") if self.__dict__.get("_screen") else None
        if any(w == (group, unit) and t not in units[unit] and t not in ended
               and (started is None or t in started) for t, w in self._where.items()):
            # a seed of this setting still on its way to the rung: the setting is judged
            # on all its seeds' mean, once they are there (catch-up judges it then), never
            # one seed alone (the laptop study pruned seed 0 of phase1_2k's lr 1e-2 alone, at
            # 0.71%; its seed 1 went on to 25.4%, the config's second best)
            return None
        if self.__dict__.get("floor") is not None:
            mine = means[unit]
            if not mine < self.floor:
                return None
            return (f"at the {show_budget(rung, self.clock)} rung it scored {mine:.4f}, below "
                    f"the floor {self.floor:g} (not yet learning)")
        others = [v for u, v in means.items() if u != unit]
        if len(others) < self.reduction_factor - 1:
            # "the best 1/rf" needs rf units: against fewer, one close rival would decide
            # (a later report judges again once more have arrived)
            return None
        cutoff = float(np.nanpercentile(others, (1 - 1 / self.reduction_factor) * 100))
        mine = means[unit]
        if not mine < cutoff:
            return None
        # enough digits to tell them apart (ties at 0% differ by the tie-break only)
        d = next((d for d in range(4, 12) if f"{mine:.{d}f}" != f"{cutoff:.{d}f}"), 12)
        n = len(others)
        noun, _, rest = self.unit_label.partition(" ")  # "setting of this config"
        label = " ".join(filter(None, [noun + ("s" if n != 1 else ""), rest]))
        return (f"at the {show_budget(rung, self.clock)} rung it scored {mine:.{d}f}, below "
                f"the cutoff {cutoff:.{d}f} of the {n} other {label} there")

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """As FIFO, except with ``screen``: first seeds first; a config's other seeds
        (held PAUSED since they were added) once its first seeds have all ended, and only
        at the rate that ended best (the others are stopped here, with the reason)."""
        if not self.__dict__.get("_screen"):
            return super().choose_trial_to_run(tune_controller)
        config_of, first = self._screen
        trials = tune_controller.get_trials()
        best = self._screen_best(trials)
        waiting = ("PENDING", "PAUSED")
        for trial in trials:
            if trial.status not in waiting or first(trial.config):
                continue
            name = config_of(trial.config)
            top = best.get(name, (None, ""))[0]
            if top is not None and self._unit_of_trial(trial) != top:
                self._notes[trial.trial_id] = best[name][1]
                tune_controller.stop_trial(trial)
        for trial in trials:
            if trial.status in waiting and (first(trial.config)
                                            or config_of(trial.config) in best):
                self._started.add(trial.trial_id)
                return trial
        return None

    def _unit_of_trial(self, trial: Any) -> Any:
        return self._place(trial.trial_id, trial.config)[1]

    def _screen_best(self, trials: list) -> dict[Any, tuple[Any, str]]:
        """Configs whose first seeds have all ended -> (the unit of the best, the reason
        the others' seeds do not run)."""
        config_of, first = self._screen
        screens: dict[Any, list] = {}
        for trial in trials:
            if first(trial.config):
                screens.setdefault(config_of(trial.config), []).append(trial)
        best = {}
        for name, group in screens.items():
            if any(t.status not in ("TERMINATED", "ERROR") for t in group):
                continue
            scores = {self._unit_of_trial(t): self._last.get(t.trial_id, -math.inf)
                      for t in group}
            if all(v == -math.inf for v in scores.values()):
                best[name] = (None, "")  # no first seed reported a score: every seed runs
                continue
            top = max(scores, key=lambda u: scores[u])
            shown = ", ".join(f"{_rate(u)} {v:.4f}" for u, v in scores.items())
            best[name] = (top, f"not run: the first seed of this config ended best at "
                               f"lr {_rate(top)} (its final score by rate: {shown})")
        return best

    def debug_string(self) -> str:
        return (f"RungScheduler: {self.score} on {self.clock} at rungs "
                f"{[show_budget(r, self.clock) for r in self.rungs]}")
