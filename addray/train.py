"""``python -m addray.train CONFIG``: train one configuration with progress, save results."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from addray import cli, files
from addray.core.checkpoint import FILENAME
from addray.core.config import load_config
from addray.core.device import available_cpus, machine
from addray.core.select import CANDIDATES
from addray.core.trainer import train
from addray.errors import StudyError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.Parser(
        prog="python -m addray.train",
        description="Train one addition-task transformer from a YAML config. Prints a line "
                    "per evaluation and writes OUT/metrics.json and OUT/checkpoint.pt. An "
                    "existing run in OUT is never replaced silently: pass --resume to "
                    "continue it or --overwrite to start over.")
    p.add_argument("config", help="YAML experiment file, e.g. configs/phase1_lower.yaml")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--lr", type=float, help="override training.learning_rate")
    p.add_argument("--batch-size", type=int, help="override training.batch_size")
    p.add_argument("--check-every", type=int, help="override training.check_every")
    p.add_argument("--seed", type=int, help="override training.seed")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override training.device")
    p.add_argument("--set", dest="settings", type=cli.setting, action="append", default=[],
                   metavar="KEY=VALUE", help="override any config key, e.g. "
                   "data.sampling=balanced (repeatable)")
    p.add_argument("--threads", type=cli.bounded(int, 1, 4096),
                   help="torch CPU threads (default: all CPUs given to this process)")
    p.add_argument("--out", help="output folder (default results/runs/<config name>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt instead of starting over")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in OUT")
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {"training.max_steps": args.max_steps, "training.learning_rate": args.lr,
             "training.batch_size": args.batch_size, "training.check_every": args.check_every,
             "training.seed": args.seed, "training.device": args.device}
    return {**dict(args.settings), **{k: v for k, v in pairs.items() if v is not None}}


def print_progress(m: dict[str, Any]) -> None:
    # training.select: a screened candidate's evaluations name its seed, then the chosen's
    role = next((r for r in ("candidate", "chosen") if r in m), None)
    tag = "" if role is None else f"{role} seed {m[role]}  "
    print(f"{tag}step {m['step']:>6}  loss {m['train_loss']:.4f}  eval_loss {m['eval_loss']:.4f}  "
          f"exact_match {m['exact_match']:7.2%}  worst_stratum {m['worst_stratum']:7.2%}  "
          f"boundary {m['carry_boundary']:7.2%}  edge {m['edge_cases']:7.2%}  lr {m['lr']:.2e}  "
          f"{m['examples_per_s']:>8.0f} ex/s  "
          f"{m['elapsed_s']:6.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, overrides(args))
    if args.threads is not None and args.threads > available_cpus():
        raise StudyError(f"--threads = {args.threads}: must be <= the {available_cpus()} CPUs "
                         f"this process may use (more threads than cores only slow it down)")
    out = cli.output_folder(args.out or Path("results") / "runs" / cfg.name)
    with files.FolderLock(out, f"run folder {out}"):
        checkpoint, metrics = out / FILENAME, out / "metrics.json"
        if args.resume and not checkpoint.is_file():
            raise StudyError(f"{checkpoint}: no checkpoint to resume from")
        for f in (checkpoint, metrics):
            if f.is_symlink() or (f.exists() and not f.is_file()):
                raise StudyError(f"{f}: not a file addray wrote (a folder, a link or a "
                                 f"device); move it away before training in {out}")
        if not args.resume and (checkpoint.exists() or metrics.exists()):
            if not args.overwrite:
                raise StudyError(f"{out}: already holds a run ({FILENAME}); pass --resume to "
                                 f"continue it, --overwrite to replace it, or another --out")
            checkpoint.unlink(missing_ok=True)
            metrics.unlink(missing_ok=True)
            shutil.rmtree(out / CANDIDATES, ignore_errors=True)  # training.select's
        print(f"# {cfg.name} -> {out}/\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False),
              end="")
        result = train(cfg, report=print_progress, checkpoint_dir=out,
                       resume_from=checkpoint if args.resume else None,
                       num_threads=args.threads)
        result["machine"] = machine()
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        files.write_text(metrics, json.dumps(result, indent=2))
    print(f"{result['status']} ({result['stop_reason']}) after {result['steps']} steps: "
          f"exact match {result['final_exact_match']:.2%} (best {result['best_exact_match']:.2%}"
          f"), worst stratum {result['worst_stratum']:.2%}, carry boundary "
          f"{result['carry_boundary']:.2%}, edge cases "
          f"{result['edge_cases']:.2%}, {result['params']:,} parameters, "
          f"{result['wall_seconds']:.0f}s on {result['device']}; wrote {metrics}")
    if "selection" in result:
        sel = result["selection"]
        scores = ", ".join(f"seed {s} {v:.2%}" for s, v in sel["scores"].items())
        print(f"training.select: chose seed {sel['chosen']} of {scores} (mean held-out exact "
              f"match from step {sel['steps'] // 2} to {sel['steps']})")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
