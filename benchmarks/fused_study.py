"""A grid study's runs trained as fused groups, one group per shape (no Ray): how long
the default studies take when every learning rate and seed of a config steps as one
stacked model (``addray.core.fused``).

    python benchmarks/fused_study.py [--phase 1] [--configs sizes] [--parallel 8]
        [--results results] [--study NAME] [--device auto] [--smoke]

Builds the same runs as ``sweeps/phaseN.py --configs SET`` on a GPU (each config x its
rates x the preset's GPU seeds, the preset's overrides), trains each config's runs as one
group, ``--parallel`` groups at a time as separate processes (they share the device),
and writes each member as ``python -m addray.train`` would (RESULTS/STUDY/runs/NAME/
metrics.json), then the study folder with ``addray.collect`` so that ``python -m
addray.report`` reads it. No pruning: every run trains to its end or its own early stop
(the sweep's rungs are not applied). Prints the machine, the date, each group's time and
the study's wall time. ``--smoke``: 60 steps, small data, for a dry run.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import importlib.util
import json
import multiprocessing as mp
import shlex
import sys
import time
from pathlib import Path

import torch

from addray import cli, files
from addray.collect import collect
from addray.core.config import load_config
from addray.core.device import machine
from addray.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SMOKE = {"training.max_steps": 60, "training.check_every": 30, "training.warmup_steps": 10,
         "data.n_train": 4000, "data.n_test": 200, "data.min_per_stratum": 0}


def preset(phase: int, name: str):
    spec = importlib.util.spec_from_file_location(f"phase{phase}",
                                                  ROOT / "sweeps" / f"phase{phase}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PRESETS[name]


def groups(phase: int, name: str, device: str, smoke: bool) -> list[list[dict]]:
    """Per config: the members' override dicts, as the sweep's grid makes them."""
    p = preset(phase, name)
    out = []
    for path in p.configs:
        stem = Path(path).stem
        lrs = p.config_lrs.get(stem, p.lrs) or [None]
        base = load_config(path, p.overrides)
        members = []
        for lr in lrs:
            for i in range(p.seeds_gpu):
                over = {**p.overrides, "training.seed": base.training.seed + i,
                        "training.device": device, **(SMOKE if smoke else {})}
                if lr is not None:
                    over["training.learning_rate"] = lr
                members.append({"path": path, "over": over})
        out.append(members)
    return out


def run_group(members: list[dict], runs: str) -> dict:
    """One group in its own process: trains it and writes each member's metrics.json."""
    from addray.core.fused import train_fused

    configs = [load_config(m["path"], m["over"]) for m in members]
    start = time.time()
    try:
        results = train_fused(configs)
        mode = "compiled" if results[0]["compiled"] else "eager"
    except Exception as e:  # noqa: BLE001 - the compiled path is new on this device: say so
        print(f"# {configs[0].name}: fused compiled run failed ({type(e).__name__}: "
              f"{str(e)[:200]}); again eagerly", flush=True)
        results = train_fused(configs, compile_step=False)
        mode = "eager after a failed compile"
    for cfg, r in zip(configs, results, strict=True):
        r["machine"] = machine()
        r["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        t = cfg.training
        folder = Path(runs) / f"{cfg.name}-s{t.seed}-lr{t.learning_rate:g}"
        folder.mkdir(parents=True, exist_ok=True)
        files.write_text(folder / "metrics.json", json.dumps(r, indent=2))
    return {"config": configs[0].name, "members": len(configs), "mode": mode,
            "seconds": time.time() - start, "params": results[0]["params"],
            "steps": max(r["steps"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", type=int, choices=[1, 2], default=1)
    p.add_argument("--configs", default=None, help="the preset (default: the script's first)")
    p.add_argument("--parallel", type=cli.bounded(int, 1, 64), default=8,
                   help="groups trained at once, each in its own process")
    p.add_argument("--results", default="results")
    p.add_argument("--study", default=None, help="default: phaseN-fused")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--smoke", action="store_true", help="60 steps on small data")
    p.add_argument("--only", nargs="+", default=None, metavar="CONFIG",
                   help="only these configs of the preset (names without .yaml)")
    args = p.parse_args(argv)
    name = args.configs or ("sizes" if args.phase == 1 else "matched")
    study = args.study or f"phase{args.phase}-fused"
    folder = Path(args.results).resolve() / study
    runs = folder / "runs"
    todo = groups(args.phase, name, args.device, args.smoke)
    if args.only:
        todo = [g for g in todo if Path(g[0]["path"]).stem in args.only]
        if not todo:
            raise UserError(f"--only {' '.join(args.only)}: names none of the preset's configs")
    command = shlex.join(["python", "benchmarks/fused_study.py", *(argv or sys.argv[1:])])
    print(f"# fused study, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: {command}")
    print(f"# phase {args.phase} --configs {name}: {len(todo)} groups, "
          f"{sum(map(len, todo))} runs, {args.parallel} groups at a time", flush=True)
    start = time.time()
    done = []
    ctx = mp.get_context("spawn")  # CUDA in each child: never fork a process that holds it
    with cf.ProcessPoolExecutor(args.parallel, mp_context=ctx) as pool:
        futures = [pool.submit(run_group, g, str(runs)) for g in todo]
        for f in cf.as_completed(futures):
            g = f.result()
            done.append(g)
            print(f"| {g['config']} | {g['params']:,} | {g['members']} members | {g['mode']} "
                  f"| {g['steps']:,} steps | {g['seconds']:.1f} s | "
                  f"at {time.time() - start:.0f} s |", flush=True)
    wall = time.time() - start
    collect(sorted(str(r) for r in runs.iterdir()), study, args.results, command)
    print(f"study wall time {wall:.1f} s for {sum(g['members'] for g in done)} runs in "
          f"{len(done)} groups; wrote {folder}/ (python -m addray.report {folder})")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
