"""Run several ``python -m addray.train`` runs side by side on one GPU, within a deadline.

    python benchmarks/gpu_pack_runs.py --config configs/history/smallest_nobias.yaml --out DIR \\
        --deadline-s 470 --seeds 0 1 2 \\
        --recipe wd3e-3 optimizer.weight_decay=0.003 --recipe wd1e-2 ...

For a lent GPU with a short lease, where Ray is not installed: each recipe (a name and
``--set`` overrides) runs once per seed, one process each with one CPU thread, all at
once. Recipes are listed in priority order. Every 10 s the runs' printed progress gives
each recipe's projected end (its slowest seed); while one would end after the deadline,
the lowest-priority recipe still running is stopped whole, at most once per evaluation
interval, so that the others speed up. Every run also carries
``training.time_budget_s`` so that it stops on its own, with a checkpoint, before the
deadline. Each finished run is then checked with ``python -m addray.verify``.

Writes DIR/NAME/ (the run's checkpoint.pt and metrics.json), DIR/NAME.log (its printed
lines), DIR/NAME.verify.txt, DIR/gpu_util.csv (nvidia-smi every 5 s) and DIR/summary.txt
(the machine, the date, one line per run: status, steps, ms per step, verdict), and all of
it again as DIR.tar.gz: the device tool returns only so many files from $OUT (on
2026-11-29 it returned 8 of 44), so fetch the archive.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from addray.core.device import machine

LINE = re.compile(r"step\s+(\d+) .* (\d+) ex/s\s+([\d.]+)s")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--deadline-s", type=float, required=True,
                   help="seconds from start by which every training must have stopped")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", nargs="+", action="append", required=True,
                   metavar=("NAME", "KEY=VALUE"), help="a name and its overrides")
    p.add_argument("--set", dest="common", nargs="*", default=[],
                   help="overrides for every run")
    p.add_argument("--max-steps", type=int, required=True)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="where to train and verify (cpu: to try this script without a GPU)")
    return p.parse_args()


def progress(log: Path) -> tuple[int, float]:
    """(last step printed, steps per wall-clock second between the last two lines,
    evaluation included); the rate is 0.0 until two lines are there (the first interval
    holds the start-up and compilation)."""
    points = []
    if log.exists():
        points = [(int(m.group(1)), float(m.group(3))) for m in map(LINE.search,
                  log.read_text().splitlines()) if m]
    if len(points) < 2:
        return (points[-1][0] if points else 0), 0.0
    (s1, t1), (s2, t2) = points[-2:]
    return s2, (s2 - s1) / max(t2 - t1, 1e-9)


def main() -> int:
    a = parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    smi = None if a.device == "cpu" else subprocess.Popen(
        ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv",
         "-l", "5"], stdout=open(out / "gpu_util.csv", "w"), stderr=subprocess.DEVNULL)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    runs: dict[str, dict] = {}
    for rank, (name, *sets) in enumerate(a.recipe):
        for seed in a.seeds:
            run = f"{name}-s{seed}"
            budget = a.deadline_s - (time.time() - t0)
            cmd = [sys.executable, "-m", "addray.train", a.config, "--seed", str(seed),
                   "--max-steps", str(a.max_steps), "--device", a.device,
                   "--out", str(out / run), "--overwrite",
                   "--set", f"training.time_budget_s={budget:.0f}"]
            for s in [*a.common, *sets]:
                cmd += ["--set", s]
            runs[run] = {"recipe": name, "rank": rank, "log": out / f"{run}.log",
                         "proc": subprocess.Popen(cmd, stdout=open(out / f"{run}.log", "w"),
                                                  stderr=subprocess.STDOUT, env=env)}
    print(f"{len(runs)} runs started", flush=True)
    stopped: list[str] = []
    last_kill_step: dict[str, int] = {}
    while any(r["proc"].poll() is None for r in runs.values()):
        time.sleep(10)
        now = time.time() - t0
        ends: dict[str, float] = {}
        for r in runs.values():
            if r["proc"].poll() is not None or r["recipe"] in stopped:
                continue
            step, rate = progress(r["log"])
            r["step"] = step
            if rate > 0:
                end = now + (a.max_steps - step) / rate
                ends[r["recipe"]] = max(ends.get(r["recipe"], 0), end)
        line = "  ".join(f"{k} {v:.0f}s" for k, v in ends.items())
        print(f"[{now:5.0f}s] projected ends: {line or '-'}", flush=True)
        late = [k for k, v in ends.items() if v > a.deadline_s]
        alive = sorted({r["recipe"] for r in runs.values()
                        if r["proc"].poll() is None and r["recipe"] not in stopped},
                       key=lambda k: next(r["rank"] for r in runs.values() if r["recipe"] == k))
        steps_now = {run: r.get("step", 0) for run, r in runs.items()}
        fresh = all(steps_now[run] > last_kill_step.get(run, -1) for run in steps_now
                    if runs[run]["proc"].poll() is None and runs[run]["recipe"] in alive)
        if late and len(alive) > 1 and fresh:
            victim = alive[-1]
            stopped.append(victim)
            last_kill_step = dict(steps_now)
            print(f"[{now:5.0f}s] stopping recipe {victim} (projected past the deadline)",
                  flush=True)
            for r in runs.values():
                if r["recipe"] == victim:
                    r["proc"].terminate()
    print(f"[{time.time() - t0:5.0f}s] training done; verifying", flush=True)
    checks = {}
    for run in runs:
        ck = out / run / "checkpoint.pt"
        if runs[run]["recipe"] not in stopped and ck.exists():
            checks[run] = subprocess.Popen(
                [sys.executable, "-m", "addray.verify", str(ck), "--device", a.device],
                stdout=open(out / f"{run}.verify.txt", "w"), stderr=subprocess.STDOUT, env=env)
    for p in checks.values():
        p.wait()
    if smi is not None:
        smi.terminate()
    rows = [f"# {machine()}; {datetime.datetime.now():%Y-%m-%d %H:%M}; "
            f"{len(runs)} runs started at once; {time.time() - t0:.0f} s in all"]
    for run, r in runs.items():
        text = r["log"].read_text()
        last = [ln for ln in text.splitlines() if LINE.search(ln)]
        end = [ln for ln in text.splitlines() if " after " in ln and "steps:" in ln]
        verdict = ""
        v = out / f"{run}.verify.txt"
        if v.exists():
            verdict = (v.read_text().strip().splitlines() or [""])[-1]
        rows.append(f"{run}: {'stopped by the deadline rule; ' if r['recipe'] in stopped else ''}"
                    f"{end[-1] if end else (last[-1] if last else text[-300:])} | {verdict}")
    (out / "summary.txt").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    shutil.make_archive(str(out), "gztar", root_dir=out.parent, base_dir=out.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
