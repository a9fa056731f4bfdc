"""``python -m addray.train CONFIG``: train one configuration with progress, save results."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from addray import cli
from addray.checkpoint import FILENAME, CheckpointError
from addray.config import ConfigError, load_config
from addray.trainer import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m addray.train",
        description="Train one addition-task transformer from a YAML config. Prints a line "
                    "per evaluation and writes OUT/metrics.json and OUT/checkpoint.pt.")
    p.add_argument("config", help="YAML experiment file, e.g. configs/phase1_lower.yaml")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--lr", type=float, help="override training.learning_rate")
    p.add_argument("--batch-size", type=int, help="override training.batch_size")
    p.add_argument("--check-every", type=int, help="override training.check_every")
    p.add_argument("--seed", type=int, help="override training.seed")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override training.device")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all CPUs given)")
    p.add_argument("--out", help="output folder (default results/runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt instead of starting over")
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {"training.max_steps": args.max_steps, "training.learning_rate": args.lr,
             "training.batch_size": args.batch_size, "training.check_every": args.check_every,
             "training.seed": args.seed, "training.device": args.device}
    return {k: v for k, v in pairs.items() if v is not None}


def print_progress(m: dict[str, Any]) -> None:
    print(f"step {m['step']:>6}  loss {m['train_loss']:.4f}  eval_loss {m['eval_loss']:.4f}  "
          f"exact_match {m['exact_match']:7.2%}  token_acc {m['token_accuracy']:7.2%}  "
          f"lr {m['lr']:.2e}  {m['examples_per_s']:>8.0f} ex/s  {m['elapsed_s']:6.1f}s",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, overrides(args))
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads = {args.threads}: must be >= 1")
    out = Path(args.out or Path("results") / "runs" / cfg.name)
    resume = out / FILENAME if args.resume else None
    if resume is not None and not resume.is_file():
        raise CheckpointError(f"{resume}: no checkpoint to resume from")
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {cfg.name} -> {out}/\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    result = train(cfg, report=print_progress, checkpoint_dir=out, resume_from=resume,
                   num_threads=args.threads)
    summary = {k: v for k, v in result.items() if k != "history"}
    (out / "metrics.json").write_text(json.dumps({**summary, "history": result["history"]},
                                                 indent=2))
    print(f"{result['status']} ({result['stop_reason']}) after {result['steps']} steps: "
          f"exact match {result['final_exact_match']:.2%} (best {result['best_exact_match']:.2%}"
          f"), {result['params']:,} parameters, {result['wall_seconds']:.0f}s on "
          f"{result['device']}; wrote {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
