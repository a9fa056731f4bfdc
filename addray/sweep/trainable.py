"""The Ray Tune trainable: a thin wrapper that runs the shared trainer in a trial.

It turns the trainer's ``report`` callback into ``tune.report(metrics, checkpoint)``,
resumes from Tune's checkpoint when a trial is restored or retried, gives torch as many
threads as the trial was given CPUs (Ray sets OMP_NUM_THREADS=1 in workers), and
shares compiled kernels between the trials of a node.
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

import psutil
import ray
from ray import tune

from addray.core.checkpoint import FILENAME
from addray.core.config import from_dict
from addray.core.device import machine
from addray.core.trainer import train
from addray.sweep.objective import pruning_score, search_score

WORK_PREFIX = "addray-trial-"
# compiled kernels (training.compile) are cached here and reused by later trials of the
# same shape on this node, instead of being compiled again in every trial
COMPILE_CACHE = Path(tempfile.gettempdir()) / "addray-compile-cache"


def trial_cpus(default: int = 1) -> int:
    """CPUs Tune reserved for the current trial."""
    try:
        resources = tune.get_context().get_trial_resources().required_resources
    except Exception:  # outside a Tune session
        return default
    return max(1, math.floor(resources.get("CPU", default)))


def remove_stale_work_dirs() -> int:
    """Delete trial work folders whose process is gone (a trial killed with SIGKILL never
    runs its own cleanup); return how many. Only this machine's folders are seen."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        pid = path.name[len(WORK_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def run_trial(params: dict[str, Any]) -> None:
    """Train one study combination; ``params["trial"]`` holds its config and labels."""
    for name in ("ray.train", "ray.tune"):  # no "Checkpoint successfully created" per report
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(COMPILE_CACHE))
    spec = params["trial"]
    cfg = from_dict(spec["config"], source=f"trial {spec['label']}")
    prune = spec["prune"]
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
    resume = None
    restored = tune.get_checkpoint()
    if restored is not None:
        resume = Path(restored.to_directory(str(work / "restored")))
    node_id = ray.get_runtime_context().get_node_id()
    labels = {"node": f"{socket.gethostname()}/{node_id[:8]}", "machine": machine(),
              "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()), "pid": os.getpid()}
    reported = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics["step"])
        extra = {"prune_score": pruning_score(metrics, prune["metric"])}
        if "objective" in spec:  # a phase 3 search trial: the searcher's objective too
            extra["search_score"] = search_score(metrics, spec["objective"]["threshold"],
                                                 prune["metric"])
        # a diverged model is not saved: report its metrics without a checkpoint
        saved = metrics["status"] != "diverged" and (work / "ckpt" / FILENAME).exists()
        checkpoint = tune.Checkpoint.from_directory(str(work / "ckpt")) if saved else None
        tune.report({**metrics, **labels, **extra}, checkpoint=checkpoint)

    try:
        result = train(cfg, report=report, checkpoint_dir=work / "ckpt", resume_from=resume,
                       num_threads=trial_cpus(), rungs=(prune["clock"], prune["rungs"]))
        if not reported and result["history"]:
            # restored from a checkpoint that had already finished: report its last state
            report({**result["history"][-1], "status": result["status"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
