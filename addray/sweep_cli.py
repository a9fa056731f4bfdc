"""Command line shared by the sweep scripts in sweeps/."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from addray import cli
from addray.sweep import SweepError, SweepOptions, command_line, run_sweep


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, "
                                         f"e.g. 1e-4,1e-3,3e-3") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: learning rates must be > 0 and <= 1")
    return values


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. "
                                         f"training.batch_size=128")
    return key.strip(), yaml.safe_load(value)


def parser(study: str, description: str, grid: bool = True) -> argparse.ArgumentParser:
    """The options every sweep script shares; ``grid`` adds --seeds and --lr."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to run")
    g.add_argument("--study", default=study, help="study name: results go to RESULTS/STUDY/")
    if grid:
        g.add_argument("--seeds", type=int, default=1, help="seeds per config and learning "
                       "rate")
        g.add_argument("--lr", type=_floats, help="learning-rate grid, e.g. 1e-4,1e-3,3e-3 "
                       "(default: each config's own)")
    g.add_argument("--max-steps", type=int, help="override training.max_steps of every config")
    g.add_argument("--check-every", type=int, help="override training.check_every (steps "
                   "between evaluations; one ASHA time unit)")
    g.add_argument("--set", dest="overrides", type=_setting, action="append", default=[],
                   metavar="KEY=VALUE", help="override any config key, e.g. "
                   "training.batch_size=128 (repeatable)")
    g.add_argument("--smoke-test", action="store_true",
                   help="tiny budgets and data: the whole path in about a minute on a CPU")
    r = p.add_argument_group("resources and cluster")
    r.add_argument("--gpus", type=float, help="GPUs the sweep may use (default: all the "
                   "cluster has; 0 runs on CPU)")
    r.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions pack "
                   "several trials on one GPU (default 1 with GPUs)")
    r.add_argument("--cpus-per-trial", type=float, help="CPUs per trial = torch threads "
                   "(default: a node's CPUs shared evenly among the trials it runs at once)")
    r.add_argument("--address", help="join an existing Ray cluster (auto or HOST:PORT); "
                   "default: start a local Ray for this sweep")
    r.add_argument("--dashboard", action="store_true", help="start the Ray dashboard "
                   "(local Ray only) and print its URL")
    r.add_argument("--dashboard-host", default="127.0.0.1", help="interface the dashboard "
                   "binds to; keep 127.0.0.1 and use an SSH tunnel")
    s = p.add_argument_group("pruning, failures, results")
    s.add_argument("--grace-period", type=int, default=2, help="ASHA: evaluations before "
                   "a trial may be pruned")
    s.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep the best "
                   "1/N at each rung")
    s.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial "
                   "from its last checkpoint")
    s.add_argument("--results", default="results", help="results folder")
    s.add_argument("--resume", action="store_true", help="continue an interrupted study: "
                   "finished trials are kept, unfinished ones resume from their checkpoints")
    return p


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    """SweepOptions fields from the shared options, checked."""
    for flag, value, low in (("--grace-period", args.grace_period, 1),
                             ("--reduction-factor", args.reduction_factor, 2),
                             ("--max-failures", args.max_failures, 0)):
        if value < low:
            raise SweepError(f"{flag} = {value}: must be >= {low}")
    return dict(
        study=args.study, results=args.results, gpus=args.gpus,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        address=args.address, max_steps=args.max_steps, check_every=args.check_every,
        overrides=dict(args.overrides), grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, max_failures=args.max_failures,
        resume=args.resume, dashboard=args.dashboard, dashboard_host=args.dashboard_host,
        smoke_test=args.smoke_test, command=command_line())


def main(study: str, configs: list[str], description: str,
         argv: list[str] | None = None) -> int:
    args = parser(study, description).parse_args(argv)
    opts = SweepOptions(configs=configs, seeds=args.seeds, lrs=args.lr,
                        **common_options(args))
    rows = run_sweep(opts)
    return 0 if rows else 1


def run(study: str, configs: list[str], description: str) -> None:
    cli.run(lambda: main(study, configs, description, sys.argv[1:]))
