"""Phase 1 and phase 2 studies timed end to end (10,000 steps a config).

    python benchmarks/reference_budgets.py [--results DIR] [--phases 1 2]
        [--sets reference|default] [-- SWEEP ARGS]

Runs `sweeps/phase1.py` and then `sweeps/phase2.py` as a user would (each starts and
stops its own local Ray): with `--sets reference` (the default here) the reference's
configs as published, with `--sets default` the scripts' default sets (the scaling
study: eight sizes and the matched width-vs-depth shapes, three learning rates, three
seeds on a GPU). The arguments after `--` go to both, e.g. `-- --gpus 1
--gpus-per-trial 0.25` to pack four trials onto one GPU. Prints the
machine, the date, each study's wall time (Ray start-up included) and one row per trial
from its trials.csv: status, steps, best exact match and the trial's own wall seconds.
"""

from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from addray import cli
from addray.core.device import machine
from addray.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def run_phase(phase: int, results: Path, study: str, sets: str, extra: list[str]) -> float:
    configs = ["--configs", "reference"] if sets == "reference" else []
    cmd = [sys.executable, str(ROOT / "sweeps" / f"phase{phase}.py"), "--results",
           str(results), "--study", study, *configs, *extra]
    print(f"# {shlex.join(cmd)}", flush=True)
    start = time.time()
    code = subprocess.call(cmd)
    seconds = time.time() - start
    if code != 0:
        raise UserError(f"phase {phase}: {shlex.join(cmd)} exited with {code} (its own "
                        f"message is above)")
    return seconds


def trial_table(csv: Path) -> str:
    df = pd.read_csv(csv).sort_values("params", ascending=False)
    lines = ["| config | params | batch | status | steps | best exact match | trial s "
             "| device |", "|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.config} | {r.params:,} | {r.batch_size} | {r.status} | "
                     f"{r.steps:,} | {r.best_exact_match:.2%} | {r.wall_seconds:.1f} | "
                     f"{r.device} |")
    lines.append(f"\nsum of trial seconds {df.wall_seconds.sum():.1f}, longest trial "
                 f"{df.wall_seconds.max():.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results/benchmark",
                   help="results folder for the two studies (default: results/benchmark)")
    p.add_argument("--phases", nargs="+", type=int, choices=[1, 2], default=[1, 2])
    p.add_argument("--tag", default="ref", help="study names are phaseN-TAG (default: ref)")
    p.add_argument("--sets", choices=["reference", "default"], default="reference",
                   help="the reference's configs, or the scripts' default sets")
    args = p.parse_args(argv)
    results = Path(args.results).resolve()
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {args.results}: is a file, not a folder")
    print(f"# reference budgets, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/reference_budgets.py {shlex.join(sys.argv[1:])}",
          flush=True)
    walls: dict[str, float] = {}
    for phase in args.phases:
        study = f"phase{phase}-{args.tag}"
        walls[study] = run_phase(phase, results, study, args.sets, extra)
    for study, seconds in walls.items():
        print(f"\n## {study}: {seconds:.1f} s wall for the study\n")
        print(trial_table(results / study / "trials.csv"))
    print(f"\ntotal wall time, all studies: {sum(walls.values()):.1f} s")
    return 0


if __name__ == "__main__":
    cli.run(main)
