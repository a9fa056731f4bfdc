"""Member-steps per second: K runs of one shape fused into one stacked model
(``addray.core.fused``) against one run at a time (the trainer), per config.

    python benchmarks/fused_throughput.py [--configs phase1_2k phase1_tiny ...]
        [--members 1 8 16 32] [--steps 30] [--device auto] [--compile off|on|both]
        [--csv FILE]

Every run uses the phase 1 scaling recipe (batch 256, dropout 0); member k of a group
has seed k and one of the rates 1e-3, 3e-3, 1e-2. Steady state: the first ``--steps``
steps (start-up, compilation) are timed apart as the warm-up, the next ``--steps``
measured; evaluation excluded. Prints the machine, the date and one row per config and
variant: ms per group step, member-steps per second, and the ratio to one separate run
of the same mode.
"""

from __future__ import annotations

import csv
import datetime
import sys
from pathlib import Path

import torch

from addray import cli
from addray.core.config import load_config
from addray.core.device import machine
from addray.core.fused import train_fused
from addray.core.trainer import train

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"smallest": "configs/smallest.yaml", "phase1_2k": "configs/sizes/phase1_2k.yaml",
           "phase1_3k": "configs/sizes/phase1_3k.yaml",
           "phase1_5k": "configs/sizes/phase1_5k.yaml",
           "phase1_8k": "configs/sizes/phase1_8k.yaml",
           "phase1_67k": "configs/sizes/phase1_67k.yaml",
           "phase1_tiny": "configs/phase1_tiny.yaml", "phase1_lower": "configs/phase1_lower.yaml",
           "phase1_middle": "configs/phase1_middle.yaml",
           "phase1_upper": "configs/phase1_upper.yaml"}
RATES = [1e-3, 3e-3, 1e-2]


def configs_for(name: str, k: int, steps: int, device: str, compiled: bool) -> list:
    over = {"training.max_steps": 2 * steps, "training.check_every": steps,
            "training.warmup_steps": 10, "training.batch_size": 256, "model.dropout": 0.0,
            "training.device": device, "training.early_stopping": None,
            "training.compile": "on" if compiled else "off", "training.select": None,
            "training.fine_tune": None,
            "data.n_test": 256, "data.n_train": 20_000, "data.min_per_stratum": 0}
    return [load_config(ROOT / CONFIGS[name], {**over, "training.seed": i,
                                               "training.learning_rate": RATES[i % 3]})
            for i in range(k)]


def steady_ms(history: list[dict], batch: int) -> tuple[float, float]:
    """(ms per step of the second interval, seconds of the first)."""
    first, last = history[0], history[-1]
    return 1000 * batch / last["examples_per_s"], first["step"] * batch / first["examples_per_s"]


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["phase1_2k", "phase1_8k", "phase1_tiny",
                                                    "phase1_lower", "phase1_upper"],
                   choices=list(CONFIGS))
    p.add_argument("--members", nargs="+", type=cli.bounded(int, 1, 256),
                   default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--compiled-members", nargs="+", type=cli.bounded(int, 1, 256),
                   default=None, help="group sizes of the compiled mode (default: --members; "
                   "each compiles apart, some 20 s on a GPU)")
    p.add_argument("--compiled-configs", nargs="+", default=None, choices=list(CONFIGS),
                   help="configs of the compiled mode (default: --configs)")
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**5), default=30)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", default="off", choices=["off", "on", "both"])
    p.add_argument("--threads", type=cli.bounded(int, 1, 1024), default=None,
                   help="CPU threads (default: all this process may use)")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    args = p.parse_args(argv)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    print(f"# fused throughput, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/fused_throughput.py {' '.join(argv or sys.argv[1:])}")
    print("| config | params | mode | members | ms per step | member-steps/s | "
          "vs one separate run | warm-up s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for name in args.configs:
        for compiled in modes:
            if compiled and args.compiled_configs and name not in args.compiled_configs:
                continue
            mode = "compiled" if compiled else "eager"
            sizes = args.compiled_members if compiled and args.compiled_members else args.members
            alone = train(configs_for(name, 1, args.steps, args.device, compiled)[0],
                          num_threads=args.threads)
            ms1, warm1 = steady_ms(alone["history"], 256)
            got = [("separate", 1, ms1, warm1, alone["params"])]
            for k in sizes:
                group = train_fused(configs_for(name, k, args.steps, args.device, compiled),
                                    num_threads=args.threads, compile_step=compiled)
                ms, warm = steady_ms(group[0]["history"], 256)
                got.append(("fused", k, ms, warm, group[0]["params"]))
            for kind, k, ms, warm, params in got:
                rate = k * 1000 / ms
                row = {"config": name, "params": params, "mode": f"{mode} {kind}",
                       "members": k, "ms_per_step": round(ms, 3),
                       "member_steps_per_s": round(rate, 1),
                       "vs_separate": round(rate / (1000 / ms1), 2),
                       "warmup_s": round(warm, 1)}
                rows.append(row)
                print(f"| {name} | {params:,} | {mode} {kind} | {k} | {ms:.2f} | {rate:,.0f} | "
                      f"{row['vs_separate']:.2f}x | {warm:.1f} |", flush=True)
                if args.csv:
                    with open(args.csv, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(row))
                        w.writeheader()
                        w.writerows(rows)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
