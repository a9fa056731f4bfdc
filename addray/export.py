"""``python -m addray.export RESULTS --to tensorboard [--out DIR]``

Turns the studies under RESULTS (a results folder, one study, or the committed evidence
in results/reference/) into TensorBoard event files, from their trials.csv and
curves.csv alone: the evidence folders hold no Ray experiment, and a study copied off a
cluster keeps its two CSV files. Each run becomes one TensorBoard run,
OUT/STUDY/CONFIG-sSEED-lrLR-TRIAL, with the scalars a live study writes (exact match,
worst stratum, carry boundary, losses, every stratum) against the training step, and
HParams (config, lr, seed, params, d_model, n_layers, status) with its last metrics.
Then: ``tensorboard --logdir OUT``. No Ray, no torch here.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from addray import cli
from addray.errors import StudyError

FLAT = ("config", "lr", "seed", "params", "d_model", "n_layers", "status")


def _value(v: Any) -> Any:
    """A CSV cell as a number where it is one (pandas may hand NaN for an empty cell)."""
    if isinstance(v, float) and v != v:
        return None
    return v


def export_tensorboard(results: str | Path, out: str | Path) -> list[Path]:
    """Write one TensorBoard run per trial of every study under ``results``; return the
    run folders written."""
    from addray import tb_events
    from addray.analysis.results import load_results

    res = load_results(results)
    out = Path(out)
    for study in res.studies:
        if (out / study).exists():
            raise StudyError(f"--out {out}: already holds an export of study {study} "
                             f"({out / study}); remove it or choose another --out")
    trials = {(r["study"], r["trial_id"]): r for r in res.trials.to_dict("records")}
    written = []
    for (study, trial_id), curve in res.curves.groupby(["study", "trial_id"]):
        curve = curve.sort_values("step")
        first = curve.iloc[0]
        row = trials.get((study, trial_id), {})
        name = f"{first['config']}-s{int(first['seed'])}-lr{float(first['lr']):g}-{trial_id}"
        # made from CSV cells: only a plain name, so no run folder lands outside OUT/STUDY
        run = out / study / re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
        w = tb_events.writer(str(run))
        last: dict[str, Any] = {}
        for rec in curve.to_dict("records"):
            metrics = {k: _value(v) for k, v in rec.items()}
            if isinstance(metrics.get("strata"), str) and metrics["strata"]:
                metrics["strata"] = json.loads(metrics["strata"])
            else:
                metrics["strata"] = {}
            metrics["lr"] = _value(rec.get("lr_now"))  # the schedule's rate at that step
            tb_events.write_step(w, tb_events.scalars(metrics), int(metrics["step"]))
            last = metrics
        params = {"config": first["config"], "lr": float(first["lr"]), "seed": int(first["seed"]),
                  **{k: _value(row.get(k)) for k in ("params", "d_model", "n_layers")},
                  "status": row.get("status") or "running"}
        params = {k: (int(v) if isinstance(v, float) and v.is_integer() and k != "lr" else v)
                  for k, v in params.items() if v is not None}
        tb_events.write_hparams(w, params, last)
        w.close()
        written.append(run)
    return written


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m addray.export", description=__doc__.split("\n\n")[1])
    p.add_argument("results", help="results folder (holding study folders) or one study")
    p.add_argument("--to", choices=["tensorboard"], required=True,
                   help="the tool to export to: tensorboard (event files)")
    p.add_argument("--out", help="output folder (default: RESULTS/tensorboard)")
    args = p.parse_args(argv)
    out = cli.output_folder(args.out or Path(args.results) / "tensorboard")
    runs = export_tensorboard(args.results, out)
    print(f"wrote {len(runs)} runs to {out}; view them with: tensorboard --logdir {out}")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
