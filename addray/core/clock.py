"""The clock a run's progress is measured on: optimizer steps, training examples
(steps x batch size) or FLOPs. One object, used by the trainer and the fused trainer to
say where they are, and by a sweep to place its pruning rungs, so that a rung the grid
places in FLOPs is reached at the step the trainer evaluates.

FLOPs are 6 x parameters x tokens of a batch padded to the data's longest example
(forward and backward; the model computes every position of the padded batch), a
formula of the config alone: no data needs to be generated to place a rung.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from addray.core.config import ExperimentConfig
from addray.core.tokens import max_example_length

CLOCKS = ("steps", "examples", "flops")
UNITS = {"steps": "steps", "examples": "examples", "flops": "FLOPs"}
REPORT_KEY = {"steps": "step", "examples": "examples", "flops": "flops"}  # in each report


@dataclass(frozen=True)
class Clock:
    """How far a run of ``batch_size`` examples a step, ``flops_per_example`` each, has
    gone after a number of steps, on the clock ``name``."""

    name: str
    batch_size: int
    flops_per_example: float

    def __post_init__(self) -> None:
        if self.name not in CLOCKS:
            raise ValueError(f"clock = {self.name!r}: must be one of {', '.join(CLOCKS)}")

    @classmethod
    def of(cls, config: ExperimentConfig, params: int, name: str = "steps") -> Clock:
        """The clock of a run of ``config`` with ``params`` parameters."""
        fed = max_example_length(config.data.operand_max, config.data.base) - 1
        return cls(name, config.training.batch_size, 6.0 * params * fed)

    @property
    def per_step(self) -> float:
        """How far one optimizer step moves this clock."""
        return {"steps": 1.0, "examples": float(self.batch_size),
                "flops": self.batch_size * self.flops_per_example}[self.name]

    def readings(self, step: int) -> dict[str, float]:
        """Examples and FLOPs after ``step`` steps (a report's ``examples``, ``flops``)."""
        return {"examples": step * self.batch_size,
                "flops": step * self.batch_size * self.flops_per_example}

    def steps_reaching(self, budgets: Iterable[float]) -> set[int]:
        """The first step at which this clock reaches each budget (a pruning rung)."""
        return {math.ceil(b / self.per_step - 1e-9) for b in budgets}


def show_budget(value: float, clock: str) -> str:
    """A budget (a rung) on ``clock`` as a reader wants it: "1,000 steps", "64K examples"."""
    if clock == "steps":
        return f"{value:,.0f} steps"
    if clock == "examples":
        return f"{value / 1e3:,.0f}K examples" if value >= 1e4 else f"{value:,.0f} examples"
    return f"{value:.3g} FLOPs"
