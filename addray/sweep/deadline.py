"""A search algorithm wrapper for open-ended searches: Tune's ConcurrencyLimiter that
stops suggesting once a time budget has passed."""

from __future__ import annotations

import time
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher


class DeadlineLimiter(ConcurrencyLimiter):
    """A ConcurrencyLimiter that stops suggesting once ``budget_s`` seconds have passed
    since its first suggestion: running trials then finish normally and are recorded
    (Tune's own time_budget_s cuts them off without a trials.csv row)."""

    def __init__(self, searcher: Any, max_concurrent: int, budget_s: float | None):
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.budget_s = budget_s
        self.started: float | None = None

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.started = None  # the budget counts per run: a resumed search gets it anew

    def suggest(self, trial_id: str) -> Any:
        if self.started is None:
            self.started = time.time()
        if self.budget_s is not None and time.time() - self.started >= self.budget_s:
            return Searcher.FINISHED
        return super().suggest(trial_id)
