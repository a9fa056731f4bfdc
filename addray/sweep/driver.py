"""The study driver: one function runs (or resumes) any study, grid or search.

``run_study(opts, plan)`` takes what differs between a grid study and a search as
values (``StudyPlan``: scheduler, search algorithm, parameter space, number of
trials), holds the study's lock while it runs, starts or joins Ray, checks the
resources, builds the Tuner, keeps study.json's state and returns trials.csv's rows.
A study's files are described in ``addray.study_files``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from addray import files, stops, store
from addray import study_files as sf
from addray.errors import CheckpointError, ClusterError, StudyError
from addray.sweep import cluster, resources, tune_state
from addray.sweep.options import SweepOptions, check_state, command_overrides


@dataclass
class StudyPlan:
    """What a study runs, as values."""

    n_trials: int  # 0: open-ended (a search that runs until its time budget ends)
    scheduler: Any  # a Tune TrialScheduler (RungScheduler, or FIFOScheduler: no pruning)
    pruning: str  # how the study prunes, as the start-up message says it
    param_space: dict[str, Any] | None = None  # a grid study's trials
    searcher: Any = None  # a search study's Tune Searcher
    max_concurrent: int | None = None  # a searcher's cap on trials at once
    time_budget_s: float | None = None  # a searcher stops suggesting after this long
    columns: dict[str, str] = field(default_factory=dict)  # more columns for the live table
    info: dict[str, Any] = field(default_factory=dict)  # more keys for study.json
    callbacks: list[Any] = field(default_factory=list)  # more Tune callbacks (a search's log)
    largest_model: int = 0  # parameters of the largest model (for the GPU packing rule)
    # the Tuner's metric (higher is better): Tune's clients (``get_best_result()``,
    # ``ExperimentAnalysis``) compare trials on it without being told
    objective: str = "exact_match"
    # trials.csv rows a finished study has: a row per run, so a fused trial has several
    # (its pruned runs are on record before the trial ends); 0: one per trial
    n_runs: int = 0
    runs_per_trial: list[int] = field(default_factory=list)  # a grid's, when some are fused
    cuda_only: list[str] = field(default_factory=list)  # configs with training.device cuda


def run_study(opts: SweepOptions, plan: StudyPlan, trainable: Any = None) -> list[dict[str, str]]:
    """Run (or resume) a study whose options ``validate`` passed; return trials.csv's
    rows. ``trainable`` replaces the trial function (tests inject crashes with it)."""
    study_dir = sf.study_folder(opts.results, opts.study)
    t0 = time.time()
    with study_lock(opts, study_dir):
        previous = check_state(opts, study_dir)
        rows = _run_locked(opts, plan, trainable, study_dir, previous)
    print(took(time.time() - t0, rows))
    return rows


def took(seconds: float, rows: list[dict[str, str]]) -> str:
    """How long the driver ran, and on which machines its trials trained (the CPU or GPU
    is half of what a time means: docs/results.md)."""
    m, s = divmod(round(seconds), 60)
    machines = sorted({r["machine"] for r in rows if r.get("machine")})
    trained = sum(float(r.get("wall_seconds") or 0) for r in rows)
    return (f"addray: this run took {f'{m} min ' if m else ''}{s} s"
            + (f"; the study's trials trained for {trained:,.0f} trial-seconds on "
               f"{'; '.join(machines)}" if machines else ""))


@contextlib.contextmanager
def study_lock(opts: SweepOptions, study_dir: Path) -> Iterator[None]:
    """One driver per study: a lock file in its folder, or on object storage a lock
    object (the local copy is then refreshed from the store under it)."""
    if store.is_uri(opts.results):  # object storage: a local copy, put back file by file
        location = store.Location.parse(opts.results).child(opts.study)
        with store.ObjectLock(location, f"study '{opts.study}' ({location.plain})"):
            store.Store(location).pull(study_dir)
            yield
        return
    with files.FolderLock(study_dir, f"study '{opts.study}' ({study_dir})"):
        yield


def shown_location(opts: SweepOptions, study_dir: Path) -> str:
    """Where the study's results are, as printed: its folder, or its URI (no query)."""
    if store.is_uri(opts.results):
        return store.Location.parse(opts.results).child(opts.study).plain
    return str(study_dir)


def write_study(opts: SweepOptions, study_dir: Path, info: dict[str, Any]) -> None:
    """study.json, put to object storage too when the study is there."""
    sf.write_study(study_dir, info)
    store.push_file(opts.results, opts.study, study_dir / "study.json")


def _check_remote_tune(opts: SweepOptions, study_dir: Path) -> None:
    """A resume from object storage: Tune's tuner.pkl there, whole (else Tune would start
    the study's trials over). The experiment's other state Tune reads and checks itself;
    a damaged checkpoint fails its trial, named."""
    location = store.Location.parse(opts.results).child(opts.study).child("tune")
    local = study_dir / ".tune-check" / "tuner.pkl"
    found = store.Store(location).get("tuner.pkl", local)
    started = bool(sf.read_trials(study_dir) or sf.read_curves(study_dir))
    if not found and started:
        raise StudyError(f"{location.plain}/tuner.pkl: missing, so Tune cannot restore the "
                         f"study's trials (a resume would start them all over); "
                         f"{tune_state.RESTART}")
    if found and not tune_state.readable(local):
        raise StudyError(f"{location.plain}/tuner.pkl: cut short or damaged (not a whole "
                         f"pickle); {tune_state.RESTART}")
    for line in _repoint_remote_checkpoints(store.Store(location), local.parent):
        print(f"addray: {line}")


def _repoint_remote_checkpoints(tune: store.Store, scratch: Path) -> list[str]:
    """``tune_state.restore_checkpoints`` on object storage: a checkpoint the newest
    experiment state names but Tune had deleted for a later one when the driver died
    gets that later one's objects, so the trial resumes from its newest checkpoint."""
    keys = tune.listing()
    prefix = f"{tune.location.key}/"
    names = sorted(k[len(prefix):] for k in keys if k.startswith(prefix))
    states = [n for n in names if "/" not in n and n.startswith("experiment_state-")]
    if not states or not tune.get(states[-1], scratch / states[-1]):
        return []
    repairs = []
    for trial, wanted in sorted(tune_state.checkpoints_named(scratch / states[-1]).items()):
        held = {n.split("/")[1] for n in names if n.startswith(f"{trial}/")
                and n.count("/") >= 2 and tune_state.CHECKPOINT.fullmatch(n.split("/")[1])}
        if not any(n.startswith(f"{trial}/") for n in names):
            continue  # a trial Tune had not started yet when the state was saved
        for name in sorted(wanted - held):
            later = [h for h in held if tune_state.index(h) > tune_state.index(name)]
            if not later:
                raise StudyError(
                    f"{tune.location.plain}/{trial}/{name}: Tune's saved state resumes "
                    f"trial {trial} from this checkpoint, which is gone, and no later "
                    f"checkpoint is beside it; {tune_state.RESTART}")
            source = max(later, key=tune_state.index)
            tune.copy_folder(f"{trial}/{source}", f"{trial}/{name}")
            repairs.append(f"{tune.location.plain}/{trial}/{name}: Tune had deleted it for "
                           f"{source} when the driver stopped; {source} copied there, so "
                           f"trial {trial} resumes from its newest checkpoint")
    return repairs


def tune_storage(opts: SweepOptions, study_dir: Path) -> tuple[str, Any]:
    """Where Tune keeps the experiment's parent folder, and the filesystem (None: the
    local disk): on object storage, the study's folder there."""
    if store.is_uri(opts.results):
        location = store.Location.parse(opts.results).child(opts.study)
        return location.path, location.filesystem()
    return str(study_dir), None


def _run_locked(opts: SweepOptions, plan: StudyPlan, trainable: Any, study_dir: Path,
                previous: dict[str, Any]) -> list[dict[str, str]]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows our columns
    # one kept checkpoint per trial forces an experiment snapshot at every report, which
    # is what makes a killed driver resumable; Ray warns about it on every report
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from addray.sweep.trainable import remove_stale_work_dirs

    remove_stale_work_dirs()
    tune_dir = study_dir / "tune"
    if opts.resume and store.is_uri(opts.results):
        _check_remote_tune(opts, study_dir)
    elif opts.resume:
        started = bool(sf.read_trials(study_dir) or sf.read_curves(study_dir))
        tune_state.check_restorable(tune_dir, started)
        if tune_dir.is_dir():
            for line in tune_state.check(tune_dir):  # before Tune reads it back
                print(f"addray: {line}")
            from addray.sweep import restore_check  # torch: only for a resume

            try:  # before Ray starts: a damaged one is one line, never retried trials
                restore_check.check(tune_dir)
            except CheckpointError as exc:
                raise StudyError(f"{exc}; {tune_state.RESTART}") from None
    handle = cluster.connect(opts.address, dashboard=opts.dashboard,
                             dashboard_host=opts.dashboard_host,
                             num_cpus=opts.num_cpus, num_gpus=opts.num_gpus,
                             metadata=job_metadata(opts, study_dir))
    stops.as_interrupt()  # again: Ray's start-up installs a SIGTERM handler of its own
    try:
        gpus_per_trial = opts.gpus_per_trial
        if gpus_per_trial is None:
            gpus_per_trial = resources.default_gpus_per_trial(plan.largest_model)
        gpus, gpt, max_concurrent = cluster.plan_resources(opts.gpus, gpus_per_trial,
                                                           opts.gpus_per_trial is not None)
        if not gpt and plan.cuda_only:
            raise ClusterError(
                f"config {plan.cuda_only[0]}: training.device = cuda, but the study's "
                f"trials get no GPU (--gpus 0, or the Ray cluster has none); leave "
                f"training.device at auto (CUDA where a trial has a GPU) or ask for GPUs")
        cpt = opts.cpus_per_trial
        by_runs: dict[int, float] = {}  # CPUs of a trial by its runs (fused trials differ)
        if cpt is None:
            cpt = resources.default_cpus_per_trial(cluster.alive_nodes(), plan.n_trials, gpt,
                                                   max_concurrent)
            if not gpt and any(k > 1 for k in plan.runs_per_trial):
                by_runs = resources.cpus_by_runs(cluster.alive_nodes(), plan.runs_per_trial)
                cpt = min(by_runs.values())
        cluster.check_cpus(max([cpt, *by_runs.values()]))
        study_dir.mkdir(parents=True, exist_ok=True)
        info = {"study": opts.study, "command": opts.command, "state": "running",
                "folder": sf.study_location(opts.results, opts.study),
                "trials": plan.n_trials, "options": asdict(opts),
                # what every trial's config got on top of its file: the set's recipe as
                # --smoke-test, --max-steps, --check-every and --set changed it
                "overrides_applied": command_overrides(opts),
                **plan.info,
                "resources": {"gpus": gpus, "gpus_per_trial": gpt, "cpus_per_trial": cpt,
                              "cpus_by_runs": {str(k): v for k, v in by_runs.items()},
                              "max_concurrent": max_concurrent},
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if opts.resume:
            info = {**previous, "state": "running", "resumed_with": opts.command}
        job = cluster.submitted_job()
        if job is not None:  # the Ray jobs that ran this study, in turn
            info["ray_jobs"] = [*info.get("ray_jobs", []), job]
        write_study(opts, study_dir, info)
        try:
            rows = _fit(opts, plan, trainable, study_dir, info, handle, gpt, cpt,
                        max_concurrent, by_runs)
        except BaseException:
            # whatever ended the driver (Ctrl-C, a signal, a full disk), the study is not
            # left marked running: --resume continues it
            try:
                write_study(opts, study_dir, {**info, "state": "interrupted"})
            except StudyError:
                pass  # the store is gone: the error that ended the study is the one said
            raise
    finally:
        cluster.shutdown(handle)
        remove_stale_work_dirs()
    print_summary(rows, shown_location(opts, study_dir))
    return rows


def _fit(opts: SweepOptions, plan: StudyPlan, trainable: Any, study_dir: Path,
         info: dict[str, Any], handle: cluster.RayHandle, gpt: float, cpt: float,
         max_concurrent: int | None, by_runs: dict[int, float]) -> list[dict[str, str]]:
    """Build the Tuner (or restore it), run it, and write the study's state at its end."""
    from ray import tune

    from addray.sweep.recorder import StudyRecorder
    from addray.sweep.scheduler import RungScheduler
    from addray.sweep.tensorboard import StepTensorBoard
    from addray.sweep.trainable import NamedTrial

    _announce(opts, handle, study_dir, plan, gpt, cpt, max_concurrent, by_runs)

    def by_members(config: dict[str, Any]) -> Any:  # a trial's CPUs by the runs it holds
        runs = len(config["trial"].get("members") or [None])
        return tune.PlacementGroupFactory([{"CPU": by_runs.get(runs, cpt)}])

    fn = tune.with_resources(trainable or NamedTrial,
                             by_members if by_runs else {"cpu": cpt, "gpu": gpt})
    if trainable is None:  # the dashboard's Class column: not "with_resources.<locals>..."
        fn.__name__ = fn.__qualname__ = "AddrayTrial"
    parent, filesystem = tune_storage(opts, study_dir)
    if opts.resume and tune.Tuner.can_restore(f"{parent}/tune", storage_filesystem=filesystem):
        # the scheduler, the recorder and a searcher's state come back with it
        tuner = tune.Tuner.restore(f"{parent}/tune", trainable=fn, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=filesystem)
    else:
        # trials that fit at once: the GPU cap, else CPUs / CPUs per trial
        slots = max_concurrent or max(1, math.floor(cluster.total_cpus() / cpt + 1e-9))
        recorder = StudyRecorder(str(study_dir), opts.study,
                                 plan.scheduler if isinstance(plan.scheduler,
                                                              RungScheduler) else None,
                                 results=opts.results if store.is_uri(opts.results) else None)
        callbacks = [recorder, StepTensorBoard(), *plan.callbacks]
        if opts.mlflow:
            from addray.sweep.mlflow_log import MlflowLog

            callbacks.append(MlflowLog(opts.mlflow, opts.study))
        run_config = make_run_config(tune, opts, study_dir, callbacks, plan.columns)
        # watched (a dashboard, a cluster's): an actor per trial, named after it in the
        # dashboard; else actors are reused between trials (no start-up per trial)
        reuse = not (opts.dashboard or opts.address)
        tuner = make_tuner(tune, fn, plan, run_config, max_concurrent, slots, reuse)
    t_fit = time.time()
    # trials a screen never started have no result file: Tune warns of each one when it
    # builds its result grid, which addray does not read (trials.csv is the record)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # interrupted, Tune advises `Tuner.restore(...)`; addray says how to resume its way
    logging.getLogger("ray.tune.tune").addFilter(_not_tunes_resume_advice)
    try:
        grid = tuner.fit()
    except Exception:
        if store.FAILED is not None:  # a put to object storage failed in a callback
            raise store.FAILED from None
        raise
    # Tune answers Ctrl-C by stopping and returning: count what trials.csv holds as
    # finished (a searcher's grid only knows the trials it has started so far)
    rows = sf.read_trials(study_dir)
    ended = [r for r in rows if r["status"] in (*sf.FINAL_STATUSES, "errored")]
    errored = sum(r["status"] == "errored" for r in rows)
    budget = plan.time_budget_s is not None and time.time() - t_fit >= plan.time_budget_s
    expected = plan.n_runs or plan.n_trials
    done = (grid.num_terminated + grid.num_errors == len(grid)
            and ((expected and len(ended) >= expected) or budget))
    write_study(opts, study_dir, {**info, "state": "finished" if done else "interrupted",
                               "errored": errored})
    if not done:
        print("addray: study interrupted; continue it with the same command and --resume")
    return rows


def _not_tunes_resume_advice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Experiment has been interrupted")


def job_metadata(opts: SweepOptions, study_dir: Path) -> dict[str, str]:
    """What the driver's Ray job says of itself (the job API's ``metadata``;
    ``job_name`` is what the dashboard's Jobs page shows as its Name)."""
    return {"job_name": opts.study, "addray_study": opts.study,
            "addray_command": opts.command, "addray_results": str(study_dir)}


def make_tuner(tune: Any, trainable: Any, plan: StudyPlan, run_config: Any,
               max_concurrent: int | None, slots: int, reuse: bool = True) -> Any:
    """The Tuner for a plan: a grid of known trials, or a searcher's suggestions."""
    if plan.searcher is None:
        return tune.Tuner(
            trainable, param_space=plan.param_space,
            tune_config=tune.TuneConfig(
                metric=plan.objective, mode="max", scheduler=plan.scheduler, reuse_actors=reuse,
                max_concurrent_trials=max_concurrent, trial_name_creator=trial_name,
                trial_dirname_creator=trial_dirname),
            run_config=run_config)
    from addray.sweep.deadline import DeadlineLimiter

    # a searcher learns from finished trials: run no more at once than the resources allow
    limit = min(x for x in (plan.max_concurrent, slots, plan.n_trials or None) if x)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=plan.objective, mode="max",
            search_alg=DeadlineLimiter(plan.searcher, limit, plan.time_budget_s),
            scheduler=plan.scheduler, num_samples=plan.n_trials or -1, reuse_actors=reuse,
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
        run_config=run_config)


def make_run_config(tune: Any, opts: SweepOptions, study_dir: Path, callbacks: list[Any],
               columns: dict[str, str]) -> Any:
    """Storage in the study folder, the live table, retries, one checkpoint per trial."""
    from ray.tune import CLIReporter

    reporter = CLIReporter(
        parameter_columns={"lr": "lr", "seed": "seed"},
        metric_columns={"step": "step", "exact_match": "exact match",
                        "worst_stratum": "worst stratum", "best_exact_match": "best so far",
                        **columns, "status": "run status"},
        max_report_frequency=15, print_intermediate_tables=True)
    parent, filesystem = tune_storage(opts, study_dir)
    return tune.RunConfig(
        name="tune", storage_path=parent, storage_filesystem=filesystem, callbacks=callbacks,
        progress_reporter=reporter, verbose=1,
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))


def trial_name(trial: Any) -> str:
    return trial.config["trial"]["label"]


def trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial']['label']}_{trial.trial_id}"


def _announce(opts: SweepOptions, handle: cluster.RayHandle, study_dir: Path, plan: StudyPlan,
              gpt: float, cpt: float, max_concurrent: int | None,
              by_runs: dict[int, float]) -> None:
    token = os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled"
    where = (f"local Ray started for this study (on loopback"
             f"{', token authentication on: README, Security' if token else ''})"
             if handle.started_here else handle.address)
    job = cluster.submitted_job()
    if job is not None:
        where += f" as Ray job {job}"
    count = f"{plan.n_trials} trials" if plan.n_trials else "trials until the time budget ends"
    cpus = f"{cpt:g} CPU{f' + {gpt:g} GPU' if gpt else ''} per trial (its torch threads)"
    if by_runs:
        cpus = "CPUs per trial (its torch threads) by its runs: " + ", ".join(
            f"{c:g} for {k} run{'s' if k > 1 else ''}"
            for k, c in sorted(by_runs.items(), reverse=True))
    print(f"addray: study '{opts.study}', {count} on {where}; {cpus}"
          f"{f', at most {max_concurrent} at once' if max_concurrent else ''}")
    board = ("" if store.is_uri(opts.results)  # the event files are in tune/ there
             else f"; TensorBoard: tensorboard --logdir {study_dir / 'tune'}")
    print(f"addray: results in {shown_location(opts, study_dir)}/ (trials.csv, curves.csv, "
          f"tune/){board}")
    print(f"addray: {plan.pruning}")
    if handle.dashboard_url:
        print(f"addray: Ray dashboard at {handle.dashboard_url} (token from "
              f"`ray get-auth-token`; see README, 'Watching a study')")
    if handle.metrics_url:
        print(f"addray: live metrics (ray_addray_exact_match, ...) at {handle.metrics_url}")
    sys.stdout.flush()


def print_summary(rows: list[dict[str, str]], study_dir: Path | str) -> None:
    """The study's table of trials; ``study_dir``: where it is (a folder or a URI)."""
    if not rows:
        print(f"addray: no trial finished; results in {study_dir}")
        return
    print(f"\n{'trial config':<22} {'seed':>4} {'lr':>8} {'params':>9} {'status':<14} "
          f"{'steps':>6} {'exact':>7} {'worst':>7} {'edge':>7}")

    def pct(v: str) -> str:
        return f"{float(v):.2%}" if v not in ("", None) else "-"

    def unrun(r: dict[str, str]) -> bool:  # a screen's seed at another rate: never started
        return r["status"] == "pruned" and r.get("stop_reason", "").startswith("not run:")

    for r in sorted(rows, key=lambda r: (r["config"], r["seed"], float(r["lr"]))):
        status = "screened out" if unrun(r) else r["status"]
        print(f"{r['config']:<22} {r['seed']:>4} {float(r['lr']):>8.1e} {r['params']:>9} "
              f"{status:<14} {r['steps']:>6} {pct(r['final_exact_match']):>7} "
              f"{pct(r.get('worst_stratum', '')):>7} {pct(r.get('edge_cases', '')):>7}")
    errored = sum(r["status"] == "errored" for r in rows)
    screened = sum(unrun(r) for r in rows)
    print(f"addray: {len(rows)} trials recorded in {study_dir}/trials.csv"
          + (f"; {screened} screened out, never started (their config's first seed ended "
             f"best at another rate)" if screened else "")
          + (f"; {errored} errored (see their error column)" if errored else ""))
    cut = [r for r in rows if r["status"] == "time_limit"]
    if cut:
        # the time budget is a safety net: when it fires, a scaling point is a lower bound
        names = ", ".join(f"{r['config']} seed {r['seed']} lr {float(r['lr']):g}"
                          for r in cut)
        print(f"addray: WARNING: {len(cut)} trial(s) ran out of training.time_budget_s "
              f"before their steps ({names}); their exact match is a lower bound, and the "
              f"report shows them as such")
