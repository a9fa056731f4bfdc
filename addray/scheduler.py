"""ASHA for the sweeps: its clock is the training step, and a grid sweep's trials are
judged again at the rungs they passed before the other trials got there.

Tune's ASHA judges a trial once, when it reaches a rung, against the trials recorded
there so far, so the first trial to reach a rung always passes it. In a small sweep of
models of different speeds the fastest model reaches every rung first and is never
compared: on one H100, phase1_tiny (batch 2048, the fastest per step) ran all 10,000
steps to 24% while better models were pruned (benchmarks/RESULTS.md). With
``catch_up`` a trial is also checked at each later report against everything recorded
since at the rungs it passed, as if it had arrived there last, and stopped when it is
outside the top 1/reduction_factor there: what synchronous successive halving would
have decided, without making the fast trials wait.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

# the explanation of a stop, kept on Tune's trial object for the StudyRecorder
NOTE_ATTR = "addray_asha_note"


def asha_rungs(max_steps: int, grace_steps: int, rf: int) -> list[int]:
    """Training steps at which ASHA compares trials (for the start-up message)."""
    rungs, t = [], grace_steps
    while t < max_steps:
        rungs.append(t)
        t *= rf
    return rungs


class StepASHA(AsyncHyperBandScheduler):
    """ASHA on ``time_attr`` = training step that says why it stopped a trial and, with
    ``catch_up``, re-judges trials at the rungs they passed early (module docstring)."""

    def __init__(self, *, catch_up: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self._catch_up = catch_up

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if self._time_attr not in result or self._metric not in result:
            return action
        step = result[self._time_attr]
        if action == TrialScheduler.STOP:
            if step < self._max_t:  # stopped at the rung it just reached
                _note(trial, step, self._judge(trial, newest=True))
            return action
        if self._catch_up:
            verdict = self._judge(trial, newest=False)
            if verdict is not None:
                _note(trial, step, verdict)
                self._num_stopped += 1
                return TrialScheduler.STOP
        return action

    def _judge(self, trial: Any, *, newest: bool) -> str | None:
        """Why the trial is outside the top 1/rf at a rung it reached (the newest one, or
        any), judged against the other trials recorded there; None if it is not."""
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:
            return None
        for milestone, recorded in bracket._rungs:  # highest rung first
            if trial.trial_id not in recorded:
                continue
            others = {k: v for k, v in recorded.items() if k != trial.trial_id}
            cutoff = bracket.cutoff(others)
            mine = recorded[trial.trial_id]
            if cutoff is not None and mine < cutoff:
                # enough digits to tell them apart (ties at 0% differ by the tie-break)
                d = next((d for d in range(4, 12) if f"{mine:.{d}f}" != f"{cutoff:.{d}f}"), 12)
                return (f"at the {milestone:g}-step rung it scored {mine:.{d}f}, below the "
                        f"cutoff {cutoff:.{d}f} of the {len(others)} other trial"
                        f"{'s' if len(others) != 1 else ''} there")
            if newest:
                return None
        return None


def _note(trial: Any, step: int, verdict: str | None) -> None:
    if verdict is not None:
        setattr(trial, NOTE_ATTR, f"ASHA stopped it at step {step:g}: {verdict}")


def asha(metric: str, max_steps: int, check_every: int, grace_period: int,
         reduction_factor: int, *, catch_up: bool) -> StepASHA:
    """ASHA whose clock is the training step itself (one report = check_every steps), not
    the report count: a trial's extra final report (time budget) must not count as a rung.
    A trial can be pruned after grace_period reports, then at grace * rf**k reports."""
    return StepASHA(catch_up=catch_up, time_attr="step", metric=metric, mode="max",
                    max_t=max_steps, grace_period=min(grace_period * check_every, max_steps),
                    reduction_factor=reduction_factor)
