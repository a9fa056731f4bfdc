"""Overhead of the Ray Tune driver against a plain loop over the trainer, and the
effect of packing several trials onto one node.

    python benchmarks/sweep_overhead.py [--trials 4] [--steps 1200] [--config ...] [--pack K]

Runs the same N trials (one config, N seeds, no early stopping, no pruning) three ways.
On a CPU machine:
  plain   one process calls train() N times, each with all CPUs;
  sweep   the sweep driver, one trial at a time with all CPUs (Ray start-up included);
  packed  the sweep driver, all CPUs split into 1-CPU trials running side by side.
With a GPU (first GPU only): plain trains on it; sweep runs one 1-GPU trial at a time;
packed runs K trials side by side on it, 1/K GPU each (--pack, default 4).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

import torch

from addray import cli
from addray.core.config import load_config
from addray.core.device import available_cpus, machine
from addray.core.trainer import train
from addray.errors import UserError
from addray.sweep.grid import run_grid
from addray.sweep.options import SweepOptions

OVERRIDES = {"training.early_stopping": None, "data.n_test": 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=1200, help="training steps per trial")
    p.add_argument("--config", default="configs/tuned/phase1_lower.yaml")
    p.add_argument("--pack", type=int, default=None,
                   help="trials side by side (default: one per CPU, or 4 on a GPU)")
    args = p.parse_args(argv)
    for name in ("trials", "steps", "pack"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} = {value}: must be >= 1")
    cpus = available_cpus()
    gpu = torch.cuda.is_available()
    pack = args.pack or (4 if gpu else cpus)
    overrides = {**OVERRIDES, "training.max_steps": args.steps,
                 "training.check_every": max(1, args.steps // 4)}
    print(f"# sweep overhead, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/sweep_overhead.py {' '.join(argv or sys.argv[1:])}")

    start = time.time()
    for seed in range(args.trials):
        cfg = load_config(args.config, {**overrides, "training.seed": seed})
        train(cfg, num_threads=cpus)
    plain = time.time() - start
    print(f"plain loop : {plain:7.1f} s for {args.trials} trials "
          f"({plain / args.trials:.1f} s each, {'GPU' if gpu else f'{cpus} threads'})",
          flush=True)

    if gpu:  # (CPUs, GPUs) per trial
        modes = {"sweep": (1, 1.0), "packed": (max(1, cpus // pack), 1.0 / pack)}
    else:
        modes = {"sweep": (cpus, 0.0), "packed": (max(1, cpus // pack), 0.0)}
    results = {}
    for mode, (per_trial, gpt) in modes.items():
        with tempfile.TemporaryDirectory() as tmp:
            opts = SweepOptions(study=mode, configs=[os.path.abspath(args.config)],
                                seeds=args.trials, results=tmp, overrides=overrides,
                                cpus_per_trial=per_trial, gpus=1 if gpu else 0,
                                gpus_per_trial=gpt if gpu else None, num_cpus=cpus,
                                num_gpus=1 if gpu else 0,
                                prune=False)  # no pruning: the same work as the loop
            start = time.time()
            rows = run_grid(opts)
            results[mode] = time.time() - start
            assert len(rows) == args.trials
    one = "one 1-GPU trial" if gpu else f"one {cpus}-CPU trial"
    side = (f"{pack} trials of 1/{pack} GPU" if gpu
            else f"{pack} {modes['packed'][0]}-CPU trials")
    print(f"sweep      : {results['sweep']:7.1f} s  = {results['sweep'] / plain:.3f} x plain "
          f"({one} at a time, Ray start-up included)")
    print(f"packed     : {results['packed']:7.1f} s  = {results['packed'] / plain:.3f} x plain "
          f"({side} side by side)")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
