"""training.select: the best of several starts, then one run on from the chosen one.

Candidate i trains from seed training.seed + SEED_STRIDE x i (initialisation and batch
order) for select.steps steps, on the schedule of the whole run; each is scored by its
mean held-out exact match over its evaluations from select.steps / 2 on (one evaluation
at a high learning rate swings by tens of points); the highest goes on, so the result is
exactly the run of the chosen seed. The run's folder holds one checkpoint.pt at a time,
whose saved state records the selection ("selection": the recipe's seed, the candidates'
seeds, the scores so far and the chosen seed), so an interrupted run resumes where it
was: inside a candidate, between candidates, or after the choice. Finished candidates
are kept as candidates/seed<N>.pt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from addray import files
from addray.core import checkpoint as ckpt
from addray.core.config import SEED_STRIDE, ExperimentConfig
from addray.core.run_io import Report, RunIO
from addray.errors import StudyError

CANDIDATES = "candidates"  # the folder of finished candidates inside the run's folder


def candidate_seeds(config: ExperimentConfig) -> list[int]:
    t = config.training
    return [t.seed + SEED_STRIDE * i for i in range(t.select.candidates)]


def screen_score(history: list[dict[str, Any]], steps: int) -> float:
    """Mean held-out exact match of the evaluations at step >= steps / 2."""
    late = [m["exact_match"] for m in history if 2 * m["step"] >= steps]
    return sum(late) / len(late)


def with_seed(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training,
                                                                    seed=seed))


def chosen_seed(scores: dict[str, float], seeds: Sequence[int]) -> int:
    """The highest score; on a tie the earlier candidate."""
    return max(seeds, key=lambda s: (scores[str(s)], -seeds.index(s)))


def train_selected(config: ExperimentConfig, run: Callable[..., dict[str, Any]],
                   io: RunIO) -> dict[str, Any]:
    """``trainer.train`` for a config with training.select (same arguments, ``io``, and
    summary, plus "selection"; the summary's config is the recipe's, with its own seed).
    ``run`` is ``trainer.run``, passed in so that this module does not import the
    trainer."""
    report, resume_from = io.report, io.resume_from
    sel = config.training.select
    seeds = candidate_seeds(config)
    record: dict[str, Any] = {"seed": config.training.seed, "steps": sel.steps,
                              "candidates": seeds, "scores": {}, "current": None,
                              "chosen": None}
    if resume_from is not None:
        saved = ckpt.load_checkpoint(resume_from)["state"].get("selection")
        if saved is None or saved["candidates"] != seeds or saved["steps"] != sel.steps:
            raise StudyError(f"{resume_from}: not a run of this training.select (seed "
                             f"{config.training.seed}, candidates {seeds}, steps "
                             f"{sel.steps}); resume with the config it was started with")
        record = dict(saved)
    wall = 0.0
    with contextlib.ExitStack() as stack:
        folder = Path(io.checkpoint_dir) if io.checkpoint_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="addray-select-")))
        main = folder / ckpt.FILENAME
        resume = resume_from
        for seed in seeds:
            if record["chosen"] is not None or str(seed) in record["scores"]:
                continue
            record["current"] = seed
            tagged = None if report is None else _tagged(report, seed, "candidate")
            result = run(with_seed(config, seed),
                         dataclasses.replace(io, report=tagged, checkpoint_dir=folder,
                                             resume_from=resume),
                         stop_at=sel.steps, selection=dict(record))
            resume = None  # only the candidate the saved state was inside resumes
            wall += result["wall_seconds"]
            record["scores"][str(seed)] = screen_score(result["history"], sel.steps)
            kept = folder / CANDIDATES / f"seed{seed}.pt"
            kept.parent.mkdir(parents=True, exist_ok=True)
            with files.atomic_path(kept) as tmp:
                shutil.copyfile(main, tmp)
        if record["chosen"] is None:
            record["chosen"] = chosen_seed(record["scores"], seeds)
            record["current"] = record["chosen"]
            payload = ckpt.load_checkpoint(folder / CANDIDATES / f"seed{record['chosen']}.pt")
            payload["state"]["selection"] = dict(record)
            ckpt.save_checkpoint(main, payload)
            resume = main
        chosen = None if report is None else _tagged(report, record["chosen"], "chosen")
        result = run(with_seed(config, record["chosen"]),
                     dataclasses.replace(io, report=chosen, checkpoint_dir=folder,
                                         resume_from=resume))
    result["wall_seconds"] += wall
    result["config"] = config.to_dict()
    result["selection"] = record
    return result


def _tagged(report: Report, seed: int, role: str) -> Report:
    """Each evaluation names its seed: as ``candidate`` in a screen, ``chosen`` after."""
    return lambda metrics: report({**metrics, role: seed})
