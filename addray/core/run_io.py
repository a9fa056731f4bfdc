"""How one training run meets its caller: the progress callback, where it saves and
resumes, its CPU threads and the pruning rungs at which it also evaluates. One bundle,
passed from ``trainer.train`` through ``select.train_selected`` to ``trainer.run``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Report = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class RunIO:
    """report: called after each evaluation with its metrics (the checkpoint in
    ``checkpoint_dir`` already written); an exception it raises stops the run.
    checkpoint_dir: folder for ``checkpoint.pt``. resume_from: a checkpoint file or
    folder to continue from. num_threads: torch CPU threads (default: every CPU this
    process may use). rungs: (clock, budgets): also evaluate where the clock first
    reaches each budget (a sweep's pruning rungs; these evaluations do not count
    towards early stopping's patience)."""

    report: Report | None = None
    checkpoint_dir: str | Path | None = None
    resume_from: str | Path | None = None
    num_threads: int | None = None
    rungs: tuple[str, Sequence[float]] = ("steps", ())
