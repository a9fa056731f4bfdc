"""Overhead of the Ray Tune driver against a plain loop over the trainer, and the
effect of packing several trials onto one node.

    python benchmarks/sweep_overhead.py [--trials 4] [--steps 1200] [--config ...]

Runs the same N trials (one config, N seeds, no early stopping, no pruning) three ways:
  plain   one process calls train() N times, each with all CPUs;
  sweep   the sweep driver, one trial at a time with all CPUs (Ray start-up included);
  packed  the sweep driver, all CPUs split into 1-CPU trials running side by side.
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
from addray.config import load_config
from addray.sweep import SweepOptions, run_sweep
from addray.trainer import available_cpus, train

OVERRIDES = {"training.early_stopping": None, "data.n_test": 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=1200, help="training steps per trial")
    p.add_argument("--config", default="configs/tuned/phase1_lower.yaml")
    args = p.parse_args(argv)
    cpus = available_cpus()
    overrides = {**OVERRIDES, "training.max_steps": args.steps,
                 "training.check_every": max(1, args.steps // 4)}
    print(f"# sweep overhead, {cpus} CPUs, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/sweep_overhead.py {' '.join(argv or sys.argv[1:])}")

    start = time.time()
    for seed in range(args.trials):
        cfg = load_config(args.config, {**overrides, "training.seed": seed})
        train(cfg, num_threads=cpus)
    plain = time.time() - start
    print(f"plain loop : {plain:7.1f} s for {args.trials} trials "
          f"({plain / args.trials:.1f} s each, {cpus} threads)", flush=True)

    results = {}
    for mode, per_trial in (("sweep", cpus), ("packed", 1)):
        with tempfile.TemporaryDirectory() as tmp:
            opts = SweepOptions(study=mode, configs=[os.path.abspath(args.config)],
                                seeds=args.trials, results=tmp, overrides=overrides,
                                cpus_per_trial=per_trial, gpus=0, num_cpus=cpus,
                                grace_period=10**6)  # no pruning: same work as the loop
            start = time.time()
            rows = run_sweep(opts)
            results[mode] = time.time() - start
            assert len(rows) == args.trials
    print(f"sweep      : {results['sweep']:7.1f} s  = {results['sweep'] / plain:.3f} x plain "
          f"(one {cpus}-CPU trial at a time, Ray start-up included)")
    print(f"packed     : {results['packed']:7.1f} s  = {results['packed'] / plain:.3f} x plain "
          f"({cpus} one-CPU trials side by side)")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
