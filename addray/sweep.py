"""The Ray Tune sweep driver: configs x seeds x learning rates, one trial each.

Every trial runs the shared trainer through ``addray.trainable.run_trial``. ASHA
prunes on exact match (ties, common early when every model is at 0%, broken by
token accuracy) with one report = ``check_every`` training steps as its time unit;
the trainer's own early stopping ends hopeless or finished trials sooner.

Results of a study go to ``RESULTS/<study>/`` (see ``addray.study_files``).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from addray import study_files as sf
from addray.config import ConfigError, load_config
from addray.errors import UserError

# a study small enough to run end to end in about a minute on 2 CPU cores
SMOKE_OVERRIDES: dict[str, Any] = {
    "data.n_train": 2000, "data.n_test": 200, "training.batch_size": 32,
    "training.max_steps": 60, "training.check_every": 10, "training.warmup_steps": 5,
}


class SweepError(UserError):
    """A sweep cannot start or continue; the message is one line for the user."""


@dataclass
class SweepOptions:
    study: str
    configs: list[str]
    seeds: int = 1
    lrs: list[float] | None = None  # None: each config's own learning rate
    results: str = "results"
    gpus: float | None = None  # None: every GPU the cluster has
    gpus_per_trial: float | None = None  # None: 1 when GPUs are used, else 0
    cpus_per_trial: float | None = None  # None: CPUs shared evenly between trials, >= 1
    address: str | None = None  # None: start a local Ray for this sweep
    max_steps: int | None = None
    check_every: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grace_period: int = 2  # ASHA: reports before a trial can be pruned
    reduction_factor: int = 3  # ASHA: keep the top 1/rf at each rung
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    resume: bool = False
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    smoke_test: bool = False
    num_cpus: int | None = None  # local Ray only: CPUs to declare (default: all)
    num_gpus: int | None = None  # local Ray only: GPUs to declare (default: detected)
    command: str = ""
    trainable: Any = None  # None: addray.trainable.run_trial (tests pass a wrapper)


def command_overrides(opts: SweepOptions) -> dict[str, Any]:
    """Config overrides from --smoke-test, --max-steps, --check-every and --set."""
    overrides = dict(SMOKE_OVERRIDES) if opts.smoke_test else {}
    if opts.max_steps is not None:
        overrides["training.max_steps"] = opts.max_steps
    if opts.check_every is not None:
        overrides["training.check_every"] = opts.check_every
    overrides.update(opts.overrides)
    return overrides


def build_trials(opts: SweepOptions) -> list[dict[str, Any]]:
    """One spec per (config, seed, lr): label, name, seed and resolved config dict."""
    if opts.seeds < 1:
        raise SweepError(f"--seeds = {opts.seeds}: must be >= 1")
    overrides = command_overrides(opts)
    trials = []
    for path in opts.configs:
        base = load_config(path, overrides)
        for lr in opts.lrs or [base.training.learning_rate]:
            for i in range(opts.seeds):
                cfg = load_config(path, {**overrides, "training.learning_rate": lr,
                                         "training.seed": base.training.seed + i})
                seed = cfg.training.seed
                trials.append({"label": f"{cfg.name}-s{seed}-lr{lr:g}", "name": cfg.name,
                               "seed": seed, "config": cfg.to_dict()})
    return trials


def run_sweep(opts: SweepOptions) -> list[dict[str, str]]:
    """Run (or resume) a study; return its trials.csv rows."""
    trials = build_trials(opts)
    check_every = trials[0]["config"]["training"]["check_every"]
    max_steps = max(t["config"]["training"]["max_steps"] for t in trials)

    from addray.scheduler import asha

    def make_tuner(tune: Any, trainable: Any, study_dir: Path, max_concurrent: int | None,
                   recorder: Any, slots: int) -> Any:
        return tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                # a grid's trials are all known: judge each at every rung it passed
                scheduler=asha("asha_score", max_steps, check_every, opts.grace_period,
                               opts.reduction_factor, catch_up=True),
                reuse_actors=True,
                max_concurrent_trials=max_concurrent, trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_dirname),
            run_config=run_config(tune, opts, study_dir, recorder))

    return run_study(opts, len(trials), max_steps, check_every, make_tuner)


def check_study_dir(opts: SweepOptions) -> Path:
    """The study's folder, refusing a file as --results and a mix of two studies."""
    results = Path(opts.results).expanduser().resolve()
    if results.exists() and not results.is_dir():
        raise SweepError(f"--results {opts.results}: is a file, not a folder")
    if opts.cpus_per_trial is not None and opts.cpus_per_trial <= 0:
        raise SweepError(f"--cpus-per-trial = {opts.cpus_per_trial:g}: must be > 0")
    study_dir = results / opts.study
    if opts.resume and not (study_dir / "study.json").exists():
        raise SweepError(f"{study_dir}: no study to resume (run without --resume first)")
    if not opts.resume and (study_dir / "study.json").exists():
        raise SweepError(f"{study_dir}: already holds study '{opts.study}'; pass --resume to "
                         f"continue it or --study NAME for a new one")
    return study_dir


def run_study(opts: SweepOptions, n_trials: int, max_steps: int, check_every: int,
              make_tuner: Any, extra_info: dict[str, Any] | None = None,
              time_budget_s: float | None = None) -> list[dict[str, str]]:
    """Connect to Ray, plan resources, run (or restore) the tuner ``make_tuner`` builds,
    keep study.json's state (finished: ``n_trials`` trials finished, or the time budget
    ran out), shut down what was started; return trials.csv's rows."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows our columns
    # one kept checkpoint per trial forces an experiment snapshot at every report, which
    # is what makes a killed driver resumable; Ray warns about it on every report
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune

    from addray import cluster
    from addray.scheduler import asha_rungs
    from addray.trainable import run_trial
    from addray.tune_callback import StudyRecorder

    study_dir = check_study_dir(opts)
    tune_dir = study_dir / "tune"
    handle = cluster.connect(opts.address, dashboard=opts.dashboard,
                             dashboard_host=opts.dashboard_host,
                             num_cpus=opts.num_cpus, num_gpus=opts.num_gpus)
    try:
        cpt = opts.cpus_per_trial
        gpus, gpt, max_concurrent = cluster.plan_resources(opts.gpus, opts.gpus_per_trial,
                                                           cpt if cpt is not None else 1)
        if cpt is None:
            cpt = _default_cpus_per_trial(n_trials, gpt, max_concurrent)
            cluster.plan_resources(gpus, gpt, cpt)
        study_dir.mkdir(parents=True, exist_ok=True)
        options = {k: v for k, v in asdict(opts).items() if k != "trainable"}
        info = {"study": opts.study, "command": opts.command, "state": "running",
                "trials": n_trials, "options": options, **(extra_info or {}),
                "resources": {"gpus": gpus, "gpus_per_trial": gpt, "cpus_per_trial": cpt,
                              "max_concurrent": max_concurrent},
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if opts.resume:
            info = {**sf.read_study(study_dir), "state": "running",
                    "resumed_with": opts.command}
        sf.write_study(study_dir, info)
        _announce(opts, handle, study_dir, n_trials, gpt, cpt, max_concurrent,
                  asha_rungs(max_steps, opts.grace_period * check_every, opts.reduction_factor))

        trainable = tune.with_resources(opts.trainable or run_trial, {"cpu": cpt, "gpu": gpt})
        if opts.resume and tune.Tuner.can_restore(str(tune_dir)):
            # the searcher's state (phase 3) is restored with the experiment
            tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable,
                                       resume_unfinished=True, resume_errored=True)
        else:
            # trials that fit at once: the GPU cap, else CPUs / CPUs per trial
            slots = max_concurrent or max(1, math.floor(_cluster_cpus() / cpt + 1e-9))
            tuner = make_tuner(tune, trainable, study_dir, max_concurrent,
                               StudyRecorder(str(study_dir), opts.study), slots)
        t_fit = time.time()
        try:
            grid = tuner.fit()
        except KeyboardInterrupt:
            sf.write_study(study_dir, {**info, "state": "interrupted"})
            raise
        # Tune answers Ctrl-C by stopping and returning: count what trials.csv holds as
        # finished (a searcher's grid only knows the trials it has started so far)
        finished = [r for r in sf.read_csv(study_dir / "trials.csv")
                    if r["status"] in (*sf.FINAL_STATUSES, "errored")]
        budget = time_budget_s is not None and time.time() - t_fit >= time_budget_s
        done = (grid.num_terminated + grid.num_errors == len(grid)
                and ((n_trials and len(finished) >= n_trials) or budget))
        sf.write_study(study_dir, {**info, "state": "finished" if done else "interrupted"})
        if not done:
            print("addray: study interrupted; continue it with the same command and --resume")
    finally:
        cluster.shutdown(handle)
    rows = sf.read_csv(study_dir / "trials.csv")
    print_summary(rows, study_dir)
    return rows


def _cluster_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 1.0)


def _default_cpus_per_trial(n_trials: int, gpus_per_trial: float,
                            max_concurrent: int | None) -> float:
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return default_cpus_per_trial(nodes, n_trials, gpus_per_trial, max_concurrent)


def default_cpus_per_trial(nodes: list[dict[str, float]], n_trials: int,
                           gpus_per_trial: float, max_concurrent: int | None = None) -> float:
    """CPUs per trial when --cpus-per-trial is not given: a node's CPUs shared evenly among
    the trials it runs at once, so concurrent trials never hold more threads than cores.
    CPU trials: the cluster's CPUs over the trials, at most one node's. GPU trials: each
    GPU node's CPUs over the trials its GPUs hold at once (the tightest GPU node): on one
    H100, two GPU trials in turn took 93.1 s with 1 CPU each and 83.1 s with 16
    (benchmarks/RESULTS.md)."""
    n = max(1, min(n_trials or 1, max_concurrent or n_trials or 1))
    if gpus_per_trial > 0:
        shares = [r.get("CPU", 0.0) / min(n, math.floor(r["GPU"] / gpus_per_trial + 1e-9))
                  for r in nodes if r.get("GPU", 0.0) >= gpus_per_trial]
        return float(max(1, math.floor(min(shares, default=1.0))))
    cpus = sum(r.get("CPU", 0.0) for r in nodes)
    largest = max((r.get("CPU", 0.0) for r in nodes), default=1.0)
    return float(max(1, min(largest, math.floor(cpus / n))))


def run_config(tune: Any, opts: SweepOptions, study_dir: Path, recorder: Any,
               extra_columns: dict[str, str] | None = None) -> Any:
    """Storage in the study folder, the live table, retries, one checkpoint per trial."""
    from ray.tune import CLIReporter

    reporter = CLIReporter(
        parameter_columns={"trial/seed": "seed"},
        metric_columns={"step": "step", "exact_match": "exact_match",
                        "best_exact_match": "best", **(extra_columns or {}),
                        "status": "trainer"},
        max_report_frequency=15, print_intermediate_tables=True)
    return tune.RunConfig(
        name="tune", storage_path=str(study_dir), callbacks=[recorder],
        progress_reporter=reporter, verbose=1,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))


def _trial_name(trial: Any) -> str:
    return trial.config["trial"]["label"]


def _trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial']['label']}_{trial.trial_id}"


def _announce(opts: SweepOptions, handle: Any, study_dir: Path, n: int, gpt: float,
              cpt: float, max_concurrent: int | None, rungs: list[int]) -> None:
    where = "local Ray started for this sweep" if handle.started_here else handle.address
    count = f"{n} trials" if n else "trials until the time budget ends"
    print(f"addray: study '{opts.study}', {count} on {where}; {cpt:g} CPU"
          f"{f' + {gpt:g} GPU' if gpt else ''} per trial"
          f"{f', at most {max_concurrent} at once' if max_concurrent else ''}")
    print(f"addray: results in {study_dir}/ (trials.csv, curves.csv, tune/)")
    print(f"addray: ASHA compares trials at steps {rungs or 'none (budget below grace)'}")
    if handle.dashboard_url:
        print(f"addray: Ray dashboard at {handle.dashboard_url} (token from "
              f"`ray get-auth-token`; see README)")
    sys.stdout.flush()


def print_summary(rows: list[dict[str, str]], study_dir: Path) -> None:
    if not rows:
        print(f"addray: no trial finished; results in {study_dir}")
        return
    print(f"\n{'trial config':<18} {'seed':>4} {'lr':>8} {'params':>9} {'status':<14} "
          f"{'steps':>6} {'exact':>7} {'best':>7}")
    for r in sorted(rows, key=lambda r: (r["config"], r["seed"], float(r["lr"]))):
        em = f"{float(r['final_exact_match']):.2%}" if r["final_exact_match"] else "-"
        best = f"{float(r['best_exact_match']):.2%}" if r["best_exact_match"] else "-"
        print(f"{r['config']:<18} {r['seed']:>4} {float(r['lr']):>8.1e} {r['params']:>9} "
              f"{r['status']:<14} {r['steps']:>6} {em:>7} {best:>7}")
    print(f"addray: {len(rows)} trials recorded in {study_dir / 'trials.csv'}")


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


__all__ = ["ConfigError", "SweepError", "SweepOptions", "build_trials", "run_sweep"]
