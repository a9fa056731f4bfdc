"""Where a trial of the README's first study (``--configs laptop``) spends its time on a
CPU: data generation, training steps, evaluations and checkpoints, for one 3,000-step
trial of each size, run as the study runs them (one torch thread a trial, ``--parallel``
trials at once, each in its own process, so two trials share a 2-core machine as in the
study).

    python benchmarks/where_time_goes.py [--sizes phase1_2k ...] [--parallel 2]
        [--steps 3000] [--set KEY=VALUE ...]

Prints the machine, the date and one row per size: seconds in each part and their
share of the trial. ``--set`` changes every trial's config (a variant to compare: run
both in one go on one machine, as ratios).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from addray import cli
from addray.core.device import machine

ROOT = Path(__file__).resolve().parent.parent
SIZES = ["phase1_tiny", "phase1_8k", "phase1_5k", "phase1_3k", "phase1_2k"]
# each size at the rate the recorded laptop studies chose most often (2 or 3 of 3)
RATES = {"phase1_tiny": 1e-2, "phase1_8k": 4e-2, "phase1_5k": 8e-2, "phase1_3k": 2e-2,
         "phase1_2k": 8e-2}


def recipe(size: str, steps: int, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The config file and overrides of a laptop trial of ``size`` at its usual rate."""
    sys.path.insert(0, str(ROOT / "sweeps"))
    import phase1  # noqa: PLC0415 - the study's own recipe, read where it is defined

    path = next(p for p in phase1.LAPTOP_CONFIGS if Path(p).stem == size)
    return path, {**phase1.LAPTOP, "training.learning_rate": RATES[size],
                  "training.max_steps": steps, "training.time_budget_s": None,
                  "training.early_stopping": None, **extra}


def one_trial(path: str, overrides: dict[str, Any]) -> dict[str, float]:
    """Train one run with its parts timed (in this process, one thread)."""
    from addray.core import checkpoint, trainer
    from addray.core.config import load_config

    parts = {"data": 0.0, "evaluate": 0.0, "checkpoint": 0.0}

    def timed(part: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[part] += time.perf_counter() - t0
        return wrapper

    trainer.prepared_data = timed("data", trainer.prepared_data)
    trainer.evaluate = timed("evaluate", trainer.evaluate)
    checkpoint.save_checkpoint = timed("checkpoint", checkpoint.save_checkpoint)
    import tempfile

    cfg = load_config(path, overrides)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        result = trainer.train(cfg, checkpoint_dir=work, num_threads=1)
    total = time.perf_counter() - t0
    return {**parts, "steps": result["train_seconds"], "total": total,
            "exact_match": result["final_exact_match"], "params": result["params"],
            "n_steps": result["steps"]}


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=SIZES, choices=SIZES)
    p.add_argument("--parallel", type=cli.bounded(int, 1, 64), default=2,
                   help="trials at once, one process and one thread each (default 2)")
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**6), default=3000)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   type=cli.setting, metavar="KEY=VALUE")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one trial, print its JSON
    args = p.parse_args(argv)
    extra = dict(args.overrides)
    if args.one:
        print(json.dumps(one_trial(*recipe(args.one, args.steps, extra))))
        return 0
    print(f"# where a laptop trial's time goes, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# {args.parallel} trials at once, one thread each; command: python "
          f"benchmarks/where_time_goes.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print("| size | params | steps | total s | training steps s | ms/step | evaluations s "
          "| data s | checkpoints s | other s | exact match |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", size, "--steps", str(args.steps),
               *[f"--set={k}={json.dumps(v)}" for k, v in extra.items()]]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(args.parallel)]
        outs = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
        r = {k: sum(o[k] for o in outs) / len(outs) for k in outs[0]}
        other = r["total"] - r["steps"] - r["evaluate"] - r["data"] - r["checkpoint"]
        print(f"| {size} | {int(r['params']):,} | {int(r['n_steps'])} | {r['total']:.1f} | "
              f"{r['steps']:.1f} | {1000 * r['steps'] / r['n_steps']:.2f} | "
              f"{r['evaluate']:.1f} | {r['data']:.1f} | {r['checkpoint']:.2f} | "
              f"{other:.1f} | {r['exact_match']:.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
