"""Training throughput per reference config: batches trimmed to the longest example
(addray) against batches padded to 32 tokens (the reference).

    python benchmarks/trainer_throughput.py [--steps 30] [--device auto] [--configs ...]

Prints one row per config with steps/s and examples/s for both, and their ratio.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys

import torch

from addray import cli
from addray.config import load_config
from addray.trainer import available_cpus, train

CONFIGS = ["phase1_upper", "phase1_middle", "phase1_lower", "phase1_tiny",
           "phase2_wide", "phase2_balanced", "phase2_deep"]


def machine() -> str:
    """The GPU's name, or the processor's, and the CPUs this process may use."""
    cpus = f"{available_cpus()} CPUs"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cpus}"
    return f"{platform.processor() or platform.machine()}, {cpus}"


def measure(name: str, steps: int, device: str, pad_to: int | None) -> float:
    """Training steps per second, excluding data generation and evaluation."""
    cfg = load_config(f"configs/{name}.yaml", {
        "training.max_steps": steps, "training.check_every": steps, "training.device": device,
        "training.pad_to": pad_to, "training.early_stopping": None,
        # a small held-out set: this measures training steps, not evaluation
        "data.n_test": 256, "data.n_train": 20_000})
    result = train(cfg)
    return steps / result["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per config and mode")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    args = p.parse_args(argv)
    print(f"# trainer throughput, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# {args.steps} steps per measurement; command: python "
          f"benchmarks/trainer_throughput.py {' '.join(argv or sys.argv[1:])}")
    print("| config | batch | trimmed steps/s | trimmed ex/s | padded-32 steps/s "
          "| padded-32 ex/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        batch = load_config(f"configs/{name}.yaml").training.batch_size
        trimmed = measure(name, args.steps, args.device, None)
        padded = measure(name, args.steps, args.device, 32)
        print(f"| {name} | {batch} | {trimmed:.2f} | {trimmed * batch:,.0f} | {padded:.2f} "
              f"| {padded * batch:,.0f} | {trimmed / padded:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
