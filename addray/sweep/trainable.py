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
from ray.tune.trainable.function_trainable import wrap_function

from addray.core.checkpoint import FILENAME
from addray.core.clock import REPORT_KEY
from addray.core.config import from_dict
from addray.core.device import machine
from addray.core.trainer import train
from addray.errors import UserError
from addray.sweep import live
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
    if "members" in spec:
        return run_fused_trial(spec)
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
        live.export(metrics, live.tags_of(spec, spec.get("study", "")))
        tune.report({**metrics, **labels, **extra}, checkpoint=checkpoint)

    try:
        result = train(cfg, report=report, checkpoint_dir=work / "ckpt", resume_from=resume,
                       num_threads=trial_cpus(), rungs=(prune["clock"], prune["rungs"]))
        if not reported and result["history"]:
            # restored from a checkpoint that had already finished: report its last state
            report({**result["history"][-1], "status": result["status"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _setting(member: dict[str, Any]) -> float:
    """A fused trial's runs are one config's: a setting is a learning rate (its seeds are
    judged together, as the grid's ``unit_by_setting``)."""
    return member["trial"]["config"]["training"]["learning_rate"]


def member_pruner(spec: dict[str, Any]) -> Any:
    """The grid's rung rule among a fused trial's own runs (``prune`` of the trial spec:
    its clock, rungs, floor and reduction factor; a setting's seeds judged together), as
    ``fused.train_fused`` takes it; None without pruning."""
    from addray.sweep.scheduler import RungScheduler

    prune = spec["prune"]
    if not prune.get("on", True) or not prune["rungs"]:
        return None
    rule = RungScheduler(score="prune_score", clock=prune["clock"], rungs=prune["rungs"],
                         reduction_factor=prune["reduction_factor"], catch_up=True,
                         group=None, unit=_setting, unit_label="setting of this config",
                         floor=prune["floor"])
    members = [{"trial": m} for m in spec["members"]]
    for k, m in enumerate(members):
        rule.place(str(k), m)

    def decide(evaluated: dict[int, dict[str, Any]]) -> dict[int, str]:
        stops: dict[int, str] = {}
        for _ in range(2):  # the first pass records every member, the second judges all
            for k, metrics in evaluated.items():
                result = {REPORT_KEY[prune["clock"]]: metrics[REPORT_KEY[prune["clock"]]],
                          "prune_score": pruning_score(metrics, prune["metric"]),
                          "status": metrics["status"]}
                if rule.judge(str(k), members[k], result) == "STOP" and k not in stops:
                    stops[k] = rule.stop_note(str(k)) or "stopped at a rung"
                    rule.ended(str(k))
        return stops

    return decide


def run_fused_trial(spec: dict[str, Any]) -> None:
    """Train a fused trial's runs (``spec["members"]``) as one group; every report holds
    each run's latest metrics under ``members`` (the recorder writes a row for each)."""
    from addray.core.fused import FILENAME as FUSED
    from addray.core.fused import train_fused

    configs = [from_dict(m["config"], source=f"trial {m['label']}") for m in spec["members"]]
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-"))
    restored = tune.get_checkpoint()
    resume = (Path(restored.to_directory(str(work / "restored"))) / FUSED
              if restored is not None else None)
    labels = {"node": socket.gethostname(), "machine": machine(),
              "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()), "pid": os.getpid()}
    latest: dict[int, dict[str, Any]] = {}
    reported: list[int] = []
    prune = spec["prune"]

    def restored_members(last: dict[int, dict[str, Any]]) -> None:
        # a resumed group: every run as the checkpoint kept it (those stopped before it
        # keep their status, step and metrics; "fresh" is their own last step, so no
        # curve row is written for them again)
        for k, metrics in last.items():
            latest[k] = {**metrics, "label": spec["members"][k]["label"],
                         "fresh": metrics["step"]}

    def report(step: int, evaluated: dict[int, dict[str, Any]]) -> None:
        reported.append(step)
        for k, metrics in evaluated.items():
            latest[k] = {**metrics, "label": spec["members"][k]["label"], "fresh": step}
            live.export(metrics, live.tags_of(spec["members"][k], spec.get("study", "")))
        members = [latest.get(k, {}) for k in range(len(configs))]
        running = [m for m in members if m.get("status") == "running"]
        best = max((m.get("exact_match", 0.0) for m in members), default=0.0)
        top = {"step": step, "examples": step * configs[0].training.batch_size,
               "exact_match": best, "members": members, "members_running": len(running),
               "status": "running" if running else "completed", **labels}
        saved = (work / "ckpt" / FUSED).exists()  # none yet: a finished group restored
        checkpoint = tune.Checkpoint.from_directory(str(work / "ckpt")) if saved else None
        tune.report(top, checkpoint=checkpoint)

    try:
        try:
            results = train_fused(configs, prune=member_pruner(spec), on_checkpoint=report,
                                  on_restore=restored_members, checkpoint_dir=work / "ckpt",
                                  resume_from=resume, num_threads=trial_cpus(),
                                  rungs=(prune["clock"], prune["rungs"]))
        except UserError as exc:  # name the study's checkpoint, not this worker's copy
            if resume is None or str(resume) not in str(exc):
                raise
            raise type(exc)(str(exc).replace(str(resume),
                                             f"{restored.path}/{FUSED}")) from None
        if not reported:  # restored from a group that had already finished
            report(max(r["steps"] for r in results), {})
    finally:
        shutil.rmtree(work, ignore_errors=True)


class NamedTrial(wrap_function(run_trial)):
    """``run_trial`` as Tune runs it, named after its trial: the Ray dashboard's Actors
    page shows an actor by its repr (taken once, after it starts) and prefixes the
    actor's log lines with it, and Tune's wrapper of a function names every trial
    ``run_trial``. Tune still knows it as ``run_trial`` (a study started with the plain
    function resumes with this class, and the other way round). An actor reused for
    later trials keeps its first name, so a watched study starts an actor per trial
    (``driver.make_tuner``)."""

    def __repr__(self) -> str:
        spec = (getattr(self, "config", None) or {}).get("trial") or {}
        study = spec.get("study") or "addray"
        return f"{study}:{spec.get('label', 'trial')}"
