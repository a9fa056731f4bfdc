"""What a sweep or a search is asked to do, and the one place where it is checked.

No Ray here: every option is validated before Ray starts (``validate``), and the study
folder's state (a study already there, nothing to resume) is checked under the study's
lock (``check_state``), so that two drivers can never both pass it.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from addray import names
from addray import study_files as sf
from addray.core.clock import CLOCKS
from addray.core.config import ExperimentConfig
from addray.errors import ConfigError, StudyError

MAX_TRIALS = 2_000  # trials in one study: more is a typo, and would take minutes to plan
MAX_SEEDS = 100
METRICS = ("exact_match", "worst_stratum")
COMPARE = ("all", "config")
FUSE = ("auto", "on", "off")

# a study small enough to run end to end in about a minute on 2 CPU cores
SMOKE_OVERRIDES: dict[str, Any] = {
    "data.n_train": 2000, "data.n_test": 200, "data.min_per_stratum": 20,
    "training.batch_size": 32, "training.max_steps": 60, "training.check_every": 10,
    "training.warmup_steps": 5,
}


@dataclass
class SweepOptions:
    study: str
    configs: list[str] = field(default_factory=list)
    seeds: int = 1
    lrs: list[float] | None = None  # None: each config's own learning rate
    # a named set's grid per config (file name without .yaml -> rates), where --lr is not
    # given; configs it does not name use ``lrs``
    config_lrs: dict[str, list[float]] = field(default_factory=dict)
    # a named set's seeds per config (file name without .yaml -> count), where --seeds is
    # not given; configs it does not name run ``seeds``
    config_seeds: dict[str, int] = field(default_factory=dict)
    # each config's rates on its first seed only, its other seeds at the rate that ended
    # best there (the rest pruned before they start: addray.sweep.scheduler)
    screen: bool = False
    # a rung stops only settings whose mean score there is below this (None: ASHA's
    # comparison with the other settings)
    floor: float | None = None
    # each config's learning rates and seeds trained as one stacked model in one trial
    # (addray.core.fused): "on" (every config, or an error), "auto" (the configs that can
    # be fused; the CLI leaves auto only for GPU studies that compare within configs)
    fuse: str = "off"
    results: str = "results"
    gpus: float | None = None  # None: every GPU the cluster has
    gpus_per_trial: float | None = None  # None: the packing rule (addray.sweep.resources)
    cpus_per_trial: float | None = None  # None: a node's CPUs shared among its trials
    address: str | None = None  # None: start a local Ray (on loopback) for this study
    max_steps: int | None = None
    check_every: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set
    recipe: dict[str, Any] = field(default_factory=dict)  # a named set's overrides
    metric: str = "exact_match"  # what pruning compares: exact_match | worst_stratum
    clock: str | None = None  # pruning clock: steps | examples | flops (None: automatic)
    compare: str = "all"  # prune against all trials, or only trials of the same config
    prune: bool = True  # False: every trial runs its whole budget
    grace_period: int = 2  # evaluations before a trial may be pruned
    reduction_factor: int = 3  # keep the best 1/reduction_factor at each rung
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    resume: bool = False
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    mlflow: str | None = None  # an MLflow tracking URI: every trial logged as a run there
    smoke_test: bool = False
    num_cpus: int | None = None  # local Ray only: CPUs to declare (default: all)
    num_gpus: int | None = None  # local Ray only: GPUs to declare (default: detected)
    command: str = ""


@dataclass
class SearchOptions(SweepOptions):
    space: str = "configs/phase3_search.yaml"
    trials: int | None = None  # None with no time budget: DEFAULT_TRIALS
    time_budget_s: float | None = None  # stop suggesting new trials after this long
    max_concurrent: int | None = None  # None: as many as the resources allow
    sampler_seed: int = 0
    confirm_seeds: int = 2  # more seeds for the best config afterwards (0: none)
    finish: bool = False  # end an existing search where it stands: save the best, confirm


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def command_overrides(opts: SweepOptions) -> dict[str, Any]:
    """Config overrides, later ones winning: a named set's recipe, --smoke-test,
    --max-steps and --check-every, --set."""
    overrides = {**opts.recipe, **(SMOKE_OVERRIDES if opts.smoke_test else {})}
    if opts.max_steps is not None:
        overrides["training.max_steps"] = opts.max_steps
    if opts.check_every is not None:
        overrides["training.check_every"] = opts.check_every
    overrides.update(opts.overrides)
    return overrides


def no_select(cfg: ExperimentConfig, source: Any) -> ExperimentConfig:
    """A sweep runs each seed as its own trial, reported step by step to the scheduler;
    training.select's screens (several runs in one) would confuse both."""
    sel = cfg.training.select
    if sel is not None:
        raise ConfigError(f"{source}: training.select = {{candidates: {sel.candidates}, "
                          f"steps: {sel.steps}}}: must be null in a sweep (its seeds are "
                          f"trials); screen starts with python -m addray.train")
    return cfg


def grid_of(opts: SweepOptions, config: str) -> list[float] | None:
    """The learning rates a config file runs at (None: the config's own rate)."""
    return opts.config_lrs.get(Path(config).stem, opts.lrs)


def seeds_of(opts: SweepOptions, config: str) -> int:
    """How many seeds a config file runs at each of its learning rates."""
    return opts.config_seeds.get(Path(config).stem, opts.seeds)


def _check(ok: bool, flag: str, value: Any, rule: str) -> None:
    if not ok:
        shown = f"{value:g}" if isinstance(value, float) else value
        raise ConfigError(f"{flag} = {shown}: {rule}")


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def validate(opts: SweepOptions) -> Path:
    """Check every option; return the study's folder. Raises ConfigError in one line."""
    study_dir = sf.study_folder(opts.results, opts.study)
    _check(opts.metric in METRICS, "--metric", opts.metric, f"must be one of {', '.join(METRICS)}")
    _check(opts.clock is None or opts.clock in CLOCKS, "--clock", opts.clock,
           f"must be one of {', '.join(CLOCKS)}")
    _check(opts.compare in COMPARE, "--compare", opts.compare,
           f"must be one of {', '.join(COMPARE)}")
    _check(1 <= opts.grace_period <= 1_000_000, "--grace-period", opts.grace_period,
           "must be >= 1 and <= 1000000")
    _check(2 <= opts.reduction_factor <= 100, "--reduction-factor", opts.reduction_factor,
           "must be >= 2 and <= 100")
    _check(opts.floor is None or 0 <= opts.floor < 1, "--floor", opts.floor,
           "must be >= 0 and < 1 (a score: exact match)")
    _check(0 <= opts.max_failures <= 100, "--max-failures", opts.max_failures,
           "must be >= 0 and <= 100")
    for flag, value in (("--gpus", opts.gpus), ("--gpus-per-trial", opts.gpus_per_trial),
                        ("--cpus-per-trial", opts.cpus_per_trial)):
        _check(_finite(value), flag, value, "must be a finite number")
    _check(opts.gpus is None or 0 <= opts.gpus <= 1024, "--gpus", opts.gpus,
           "must be >= 0 and <= 1024")
    g = opts.gpus_per_trial
    _check(g is None or (0 < g <= 1 or (g > 1 and g == int(g) and g <= 64)), "--gpus-per-trial",
           g, "must be a fraction in (0, 1] or a whole number of GPUs")
    _check(opts.cpus_per_trial is None or 0 < opts.cpus_per_trial <= 4096, "--cpus-per-trial",
           opts.cpus_per_trial, "must be > 0 and <= 4096")
    for flag, value in (("--max-steps", opts.max_steps), ("--check-every", opts.check_every)):
        _check(value is None or value >= 1, flag, value, "must be >= 1")
    _check(opts.fuse in FUSE, "--fuse", opts.fuse, f"must be one of {', '.join(FUSE)}")
    if opts.fuse != "off":
        _check(opts.compare == "config" or not opts.prune, "--fuse", "on", "needs --compare "
               "config (a fused trial holds one config's runs and prunes among them alone)")
        _check(not opts.screen, "--fuse", "on", "cannot go with --screen (a screen holds a "
               "config's other seeds back; fused members train side by side)")
    if opts.mlflow is not None:
        _check_mlflow(opts.mlflow)
    if isinstance(opts, SearchOptions):
        _validate_search(opts)
    else:
        _check(1 <= opts.seeds <= MAX_SEEDS, "--seeds", opts.seeds,
               f"must be >= 1 and <= {MAX_SEEDS}")
        _check(bool(opts.configs), "configs", opts.configs, "at least one config is needed")
        for name, count in opts.config_seeds.items():
            _check(1 <= count <= MAX_SEEDS, "seeds of " + name, count,
                   f"must be >= 1 and <= {MAX_SEEDS}")
        rates = [len(grid_of(opts, c) or [None]) for c in opts.configs]
        n = sum(r * seeds_of(opts, c) for r, c in zip(rates, opts.configs, strict=True))
        _check(n <= MAX_TRIALS, "--seeds", opts.seeds,
               f"{len(opts.configs)} configs x {max(rates)} learning rates x "
               f"{opts.seeds} seeds = {n} trials, more than {MAX_TRIALS} in one study")
    return study_dir


def _check_mlflow(uri: str) -> None:
    """MLflow installed, and a tracking server that answers (checked before Ray starts:
    MLflow's client retries for minutes)."""
    import importlib.util
    import socket
    from urllib.parse import urlparse

    _check(bool(uri.strip()), "--mlflow", uri, "must be a tracking URI, e.g. "
           "http://127.0.0.1:5000 or file:./mlruns")
    _check(importlib.util.find_spec("mlflow") is not None, "--mlflow", uri,
           "needs MLflow: pip install -e '.[mlflow]'")
    url = urlparse(uri)
    if url.scheme in ("http", "https"):
        try:
            socket.create_connection((url.hostname or "", url.port or
                                      (443 if url.scheme == "https" else 80)),
                                     timeout=5).close()
        except (OSError, ValueError) as exc:
            _check(False, "--mlflow", uri, f"no tracking server answers there "
                   f"({getattr(exc, 'strerror', None) or exc}); start one with "
                   f"`mlflow server --host 127.0.0.1 --port 5000`")
    try:  # the store itself: MLflow 3 refuses a file store (./mlruns), for one
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many kinds for a store it cannot use
        first = (str(exc).split(". ")[0].splitlines() or [type(exc).__name__])[0][:200]
        _check(False, "--mlflow", uri, f"the tracking store refused: {first}; e.g. "
               f"sqlite:///mlflow.db or http://127.0.0.1:5000")


def _validate_search(opts: SearchOptions) -> None:
    _check(opts.trials is None or 1 <= opts.trials <= MAX_TRIALS, "--trials", opts.trials,
           f"must be >= 1 and <= {MAX_TRIALS}")
    t = opts.time_budget_s
    _check(t is None or (math.isfinite(t) and 0 < t <= 30 * 86400), "--time-budget", t,
           "must be a finite number of seconds > 0 and <= 30 days")
    _check(opts.max_concurrent is None or 1 <= opts.max_concurrent <= 1024, "--max-concurrent",
           opts.max_concurrent, "must be >= 1 and <= 1024")
    _check(0 <= opts.confirm_seeds <= MAX_SEEDS, "--confirm-seeds", opts.confirm_seeds,
           f"must be >= 0 and <= {MAX_SEEDS}")
    _check(0 <= opts.sampler_seed <= 2**32 - 1, "--sampler-seed", opts.sampler_seed,
           "must be >= 0 and < 2**32")
    confirm = opts.study + CONFIRM_SUFFIX
    _check(not opts.confirm_seeds or names.is_name(confirm), "--study", opts.study,
           f"its confirmation study {confirm!r} (run after the search) {names.RULE}; "
           f"choose a shorter name or --confirm-seeds 0")


CONFIRM_SUFFIX = "-seeds"  # a search's confirmation study: <study>-seeds


def check_state(opts: SweepOptions, study_dir: Path) -> dict[str, Any]:
    """Whether the study folder can be used as asked (called under the study's lock);
    returns its study.json ({} for a new study)."""
    info = sf.read_study(study_dir)
    finish = isinstance(opts, SearchOptions) and opts.finish
    if (opts.resume or finish) and not info:
        what = "search to finish" if finish else "study to resume"
        flag = "--finish" if finish else "--resume"
        raise StudyError(f"{study_dir}: no {what} (run without {flag} first)")
    if finish and info.get("kind") != "search":
        raise StudyError(f"{study_dir}: study '{opts.study}' is not a search")
    if not (opts.resume or finish) and info:
        raise StudyError(f"{study_dir}: already holds study '{opts.study}'; pass --resume to "
                         f"continue it or --study NAME for a new one")
    if opts.resume:
        _check_same_study(opts, study_dir, info)
        _check_same_folder(study_dir, sf.study_location(opts.results, opts.study), info)
    return info


def _check_same_folder(study_dir: Path, location: str, info: dict[str, Any]) -> None:
    """A study resumes only in the folder it was started in: Tune's saved state and the
    study's recorder hold that folder's path, so a copy resumed elsewhere would write
    into the original (without holding its lock). On object storage: its URI."""
    folder = info.get("folder")
    if isinstance(folder, str) and folder != location:
        raise StudyError(
            f"{study_dir / 'study.json'}: this study was started in {folder} and copied or "
            f"moved here; resume it there (move it back), or start a new --study here")


# options that define a study's trials and how they are judged: a resume must repeat them
# (resources, retries, the dashboard, a search's trial count and time budget may change)
_DEFINING = {"configs": "--configs", "recipe": "--configs", "seeds": "--seeds", "lrs": "--lr",
             "config_lrs": "--lr", "config_seeds": "--seeds", "screen": "--screen",
             "floor": "--floor", "fuse": "--fuse",
             "max_steps": "--max-steps", "check_every": "--check-every", "overrides": "--set",
             "smoke_test": "--smoke-test", "metric": "--metric", "clock": "--clock",
             "compare": "--compare", "prune": "--no-prune", "grace_period": "--grace-period",
             "reduction_factor": "--reduction-factor", "space": "--space",
             "sampler_seed": "--sampler-seed", "confirm_seeds": "--confirm-seeds",
             "mlflow": "--mlflow"}


def _check_same_study(opts: SweepOptions, study_dir: Path, info: dict[str, Any]) -> None:
    """A resume continues the study that was started: the same configs, seeds, budgets and
    pruning, else the restored trials would be judged by a different plan."""
    stored = info.get("options")
    if not isinstance(stored, dict):
        return  # written by an older addray: nothing to compare against
    if "budget" in stored and "clock" not in stored:  # the clock's name before 2026-12-06
        stored = {**stored, "clock": stored["budget"]}
    given = json.loads(json.dumps(asdict(opts)))
    for key, flag in _DEFINING.items():
        if key in stored and key in given and stored[key] != given[key]:
            raise StudyError(
                f"{study_dir / 'study.json'}: --resume with {flag} different from the study's "
                f"({key}: {json.dumps(stored[key])} when started, {json.dumps(given[key])} now); "
                f"resume with the command that started it plus --resume: {info.get('command')}")
