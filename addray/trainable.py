"""The Ray Tune trainable: a thin wrapper that runs the shared trainer in a trial.

It turns the trainer's ``report`` callback into ``tune.report(metrics, checkpoint)``,
resumes from Tune's checkpoint when a trial is restored or retried, and gives torch
as many threads as the trial was given CPUs (Ray sets OMP_NUM_THREADS=1 in workers).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from addray.checkpoint import FILENAME
from addray.config import from_dict
from addray.search_space import search_score
from addray.trainer import train


def trial_cpus(default: int = 1) -> int:
    """CPUs Tune reserved for the current trial."""
    try:
        resources = tune.get_context().get_trial_resources().required_resources
    except Exception:  # outside a Tune session
        return default
    return max(1, math.floor(resources.get("CPU", default)))


def run_trial(params: dict[str, Any]) -> None:
    """Train one sweep combination; ``params["trial"]`` holds its config and labels."""
    for name in ("ray.train", "ray.tune"):  # no "Checkpoint successfully created" per report
        logging.getLogger(name).setLevel(logging.WARNING)
    spec = params["trial"]
    cfg = from_dict(spec["config"], source=f"trial {spec['label']}")
    work = Path(tempfile.mkdtemp(prefix="addray-trial-"))
    resume = None
    restored = tune.get_checkpoint()
    if restored is not None:
        resume = Path(restored.to_directory(str(work / "restored")))
    node_id = ray.get_runtime_context().get_node_id()
    labels = {"node": f"{socket.gethostname()}/{node_id[:8]}",
              "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()), "pid": os.getpid()}
    reported = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics["step"])
        # ASHA's metric: exact match, ties (all at 0% early on) broken by token accuracy;
        # the tie-break is below one example in a million, so it never reorders real gains
        score = metrics["exact_match"] + 1e-6 * metrics["token_accuracy"]
        extra = {}
        if "objective" in spec:  # a phase 3 search trial: the searcher's objective too
            extra["search_score"] = search_score(metrics["exact_match"], metrics["params"],
                                                 spec["objective"]["threshold"],
                                                 metrics["token_accuracy"])
        # a diverged model is not saved: report its metrics without a checkpoint
        saved = metrics["status"] != "diverged" and (work / "ckpt" / FILENAME).exists()
        checkpoint = tune.Checkpoint.from_directory(str(work / "ckpt")) if saved else None
        tune.report({**metrics, **labels, "asha_score": score, **extra}, checkpoint=checkpoint)

    try:
        result = train(cfg, report=report, checkpoint_dir=work / "ckpt", resume_from=resume,
                       num_threads=trial_cpus())
        if not reported and result["history"]:
            # restored from a checkpoint that had already finished: report its last state
            report({**result["history"][-1], "status": result["status"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
