"""Warm-up of a compiled trial with a cold and with a warm compile cache.

    python benchmarks/compile_cache.py [--config configs/phase1_tiny.yaml] [--steps 40]
        [--device auto]

Trains the config with training.compile on in three fresh processes one after another,
all pointed at one new TORCHINDUCTOR_CACHE_DIR (as the trials of one node are, see
addray/sweep/trainable.py): the first compiles, the later ones should find the compiled
kernels. Prints each process's first-interval seconds (start-up and compilation) and
its steady ms per step.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile

import torch

from addray import cli
from addray.core.device import machine
from addray.errors import UserError

CHILD = """
import json, sys, time
from addray.core.config import load_config
from addray.core.trainer import train
t0 = time.time()
steps, config, device = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = load_config(config, {"training.max_steps": 2 * steps, "training.check_every": steps,
                           "training.compile": "on", "training.device": device,
                           "training.early_stopping": None, "data.n_train": 20000,
                           "data.n_test": 256, "data.min_per_stratum": 0})
h = train(cfg)["history"]
b = cfg.training.batch_size
print(json.dumps({"first_s": steps * b / h[0]["examples_per_s"],
                  "ms_per_step": 1000 * b / h[-1]["examples_per_s"],
                  "process_s": time.time() - t0}))
"""


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/phase1_tiny.yaml")
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**6), default=40)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--runs", type=cli.bounded(int, 2, 10), default=3)
    args = p.parse_args(argv)
    print(f"# compile cache, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/compile_cache.py {' '.join(argv or sys.argv[1:])}")
    print("| run | cache | first interval s (start-up + compile) | steady ms/step | process s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for run in range(args.runs):
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.steps), args.config,
                                  args.device], env=env, capture_output=True, text=True)
            if out.returncode:
                raise UserError(f"run {run + 1} failed: {out.stderr.strip()[-300:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {run + 1} | {'cold' if run == 0 else 'warm'} | {r['first_s']:.1f} | "
                  f"{r['ms_per_step']:.2f} | {r['process_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
