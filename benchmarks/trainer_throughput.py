"""Training throughput per config, three ways: batches trimmed to the longest example
(addray's eager step), batches padded to 32 tokens (the reference), and the compiled
step (training.compile on: fixed shapes, torch.compile; CUDA graphs on a GPU).

    python benchmarks/trainer_throughput.py [--steps 30] [--device auto] [--configs ...]
        [--modes trimmed padded compiled]

Prints the machine (GPU or CPU model), the date, and one row per config: ms per step
in each mode (steady state: the first interval, which holds start-up and compilation,
is timed apart as the warm-up) and the speed-up of each against the eager trimmed step.
"""

from __future__ import annotations

import datetime
import sys

import torch

from addray import cli
from addray.core.config import load_config
from addray.core.device import machine
from addray.core.trainer import train

CONFIGS = ["phase1_upper", "phase1_middle", "phase1_lower", "phase1_tiny",
           "phase2_wide", "phase2_balanced", "phase2_deep", "smallest"]
MODES = {"trimmed": {"training.compile": "off"},
         "padded": {"training.compile": "off", "training.pad_to": 32},
         "compiled": {"training.compile": "on"}}


def measure(name: str, steps: int, device: str, mode: str) -> tuple[float, float]:
    """(ms per step in steady state, seconds of the first interval), evaluation excluded."""
    cfg = load_config(f"configs/{name}.yaml", {
        "training.max_steps": 2 * steps, "training.check_every": steps,
        "training.device": device, "training.early_stopping": None, **MODES[mode],
        # a small held-out set: this measures training steps, not evaluation
        "data.n_test": 256, "data.n_train": 20_000, "data.min_per_stratum": 0})
    history = train(cfg)["history"]
    batch = cfg.training.batch_size
    steady = 1000 * batch / history[-1]["examples_per_s"]
    first = steps * batch / history[0]["examples_per_s"]
    return steady, first


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**6), default=30,
                   help="timed steps per config and mode (after as many warm-up steps)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = p.parse_args(argv)
    print(f"# trainer throughput, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# {args.steps} timed steps after {args.steps} warm-up steps; command: python "
          f"benchmarks/trainer_throughput.py {' '.join(argv or sys.argv[1:])}")
    head = " | ".join(f"{m} ms/step | {m} warm-up s" for m in args.modes)
    print(f"| config | batch | {head} | " + " | ".join(f"{m} speed-up" for m in args.modes
                                                      if m != "trimmed") + " |")
    print("|---" * (2 + 2 * len(args.modes) + len(args.modes) - ("trimmed" in args.modes))
          + "|")
    for name in args.configs:
        batch = load_config(f"configs/{name}.yaml").training.batch_size
        got = {m: measure(name, args.steps, args.device, m) for m in args.modes}
        cells = " | ".join(f"{ms:.2f} | {first:.1f}" for ms, first in got.values())
        ups = [f"{got['trimmed'][0] / got[m][0]:.2f}x" if "trimmed" in got else "-"
               for m in args.modes if m != "trimmed"]
        print(f"| {name} | {batch} | {cells} | " + " | ".join(ups) + " |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
