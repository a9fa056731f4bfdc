"""Trials packed onto one GPU: the same set of trials run 4, 8 and 16 to a GPU.

    python benchmarks/packing.py [--pack 4 8 16] [--configs ...] [--steps 2000]

For each packing density, runs one grid study of the given configs (seeds 0..N-1 each,
so that there are at least as many trials as slots) with --gpus 1 --gpus-per-trial
1/pack, no pruning, and prints the study's wall time and trials per minute. Needs a
GPU; the default packing rule (addray/sweep/resources.py) should follow what it
measures.
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import time
from pathlib import Path

import torch

from addray import cli
from addray.core.device import machine
from addray.errors import UserError
from addray.sweep import cluster

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", nargs="+", type=cli.bounded(int, 1, 64), default=[4, 8, 16])
    p.add_argument("--configs", nargs="+", default=["configs/phase1_upper.yaml",
                                                    "configs/phase1_tiny.yaml",
                                                    "configs/history/smallest_nobias.yaml"])
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**6), default=2000)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise UserError("benchmarks/packing.py measures trials packed on a GPU: this "
                        "machine has none")
    cluster.prefer_loopback(None)
    from addray.sweep.grid import run_grid
    from addray.sweep.options import SweepOptions

    print(f"# packing, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/packing.py {' '.join(argv or sys.argv[1:])}")
    print("| config | trials per GPU | trials | wall s | trials per minute | mean trial s |")
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        for pack in args.pack:
            with tempfile.TemporaryDirectory() as tmp:
                opts = SweepOptions(
                    study="pack", configs=[str(ROOT / config)], seeds=pack, results=tmp,
                    gpus=1, gpus_per_trial=1 / pack, prune=False,
                    overrides={"training.max_steps": args.steps,
                               "training.check_every": max(1, args.steps // 2),
                               "training.early_stopping": None})
                start = time.time()
                rows = run_grid(opts)
                wall = time.time() - start
            mean = sum(float(r["wall_seconds"]) for r in rows) / len(rows)
            print(f"| {Path(config).stem} | {pack} | {len(rows)} | {wall:.1f} | "
                  f"{60 * len(rows) / wall:.1f} | {mean:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
