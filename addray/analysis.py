"""Load sweep results and analyse them. Reads files only and never imports Ray, so a
report can be made on a laptop from results copied off a cluster.

    results = load_results("results/")
    fit = fit_logistic(params, exact_match, censored=pruned)
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from addray import study_files as sf
from addray.errors import UserError


class AnalysisError(UserError, ValueError):
    """Unusable results or too little data; the message is one line for the user."""


# ------------------------------------------------------------------------- loading

NUMERIC = ["d_model", "n_layers", "n_heads", "d_ff", "params", "seed", "lr", "batch_size",
           "steps", "max_steps", "best_exact_match", "final_exact_match",
           "final_token_accuracy", "wall_seconds", "gpus", "cpus", "retries"]


@dataclass
class Results:
    root: Path
    studies: dict[str, dict] = field(default_factory=dict)  # study.json, plus "partial"
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)


def _read_rows(path: Path, required: list[str]) -> list[dict[str, str]]:
    """CSV rows, refusing a file whose header or any row is cut short."""
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise AnalysisError(f"{path}: empty file (no header)")
            missing = [c for c in required if c not in header]
            if missing:
                raise AnalysisError(f"{path}: not an addray results file (no column "
                                    f"{', '.join(missing)})")
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise AnalysisError(f"{path}:{lineno}: {len(row)} fields where the header "
                                        f"has {len(header)} (truncated or corrupt)")
                rows.append(dict(zip(header, row, strict=True)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnalysisError(f"{path}: cannot read ({exc})") from None
    return rows


def _study_dirs(root: Path) -> list[Path]:
    if (root / "trials.csv").exists() or (root / "study.json").exists():
        return [root]
    # shallow first: a study keeps its name, a copy deeper down is renamed after its path
    return sorted({p.parent for pattern in ("*/trials.csv", "*/study.json", "*/*/trials.csv")
                   for p in root.glob(pattern)}, key=lambda d: (len(d.parts), d))


def load_results(root: str | Path) -> Results:
    """Every study under ``root`` (or ``root`` itself if it is a study) as DataFrames."""
    root = Path(root)
    if not root.is_dir():
        raise AnalysisError(f"{root}: no such folder")
    dirs = _study_dirs(root)
    if not dirs:
        raise AnalysisError(f"{root}: no studies found (a study is a folder with study.json "
                            f"and trials.csv, as sweeps/*.py write them)")
    results = Results(root=root)
    trial_rows, curve_rows = [], []
    for d in dirs:
        info = _read_study_json(d)
        name = info.get("study", d.name)
        if name in results.studies:  # a copy of a study (results/reference/...): keep apart
            name = str(d.relative_to(root)).replace("/", "-")
            info["study"] = name
        trials = _read_rows(d / "trials.csv", ["trial_id", "config", "status", "params"]) \
            if (d / "trials.csv").exists() else []
        curves = _read_rows(d / "curves.csv", ["trial_id", "step", "exact_match"]) \
            if (d / "curves.csv").exists() else []
        for row in trials + curves:
            row["study"] = name
        known = {r["trial_id"] for r in trials}
        running = _running_trials(curves, known, name)
        state = info.get("state", "unknown")
        info["partial"] = state != "finished" or bool(running)
        info["path"] = str(d)
        results.studies[name] = info
        trial_rows += trials + running
        curve_rows += curves
    results.trials = _numeric(pd.DataFrame(trial_rows), NUMERIC)
    results.curves = _numeric(pd.DataFrame(curve_rows),
                              ["seed", "lr", "step", "train_loss", "eval_loss", "exact_match",
                               "token_accuracy", "elapsed_s", "params"])
    if not results.curves.empty:
        # a trial resumed from a checkpoint may report a step twice: keep the last report
        results.curves = results.curves.drop_duplicates(["study", "trial_id", "step"],
                                                        keep="last")
    if results.trials.empty:
        raise AnalysisError(f"{root}: studies found but no trial has reported yet")
    return results


def _read_study_json(d: Path) -> dict:
    path = d / "study.json"
    if not path.exists():
        return {"study": d.name, "state": "unknown"}
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AnalysisError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise AnalysisError(f"{path}: expected a JSON object")
    return info


def _running_trials(curves: list[dict], known: set[str], study: str) -> list[dict]:
    """Rows for trials that reported but have no trials.csv row yet (still running)."""
    last: dict[str, dict] = {}
    for c in curves:
        if c["trial_id"] not in known:
            if c["trial_id"] not in last or int(c["step"]) >= int(last[c["trial_id"]]["step"]):
                last[c["trial_id"]] = c
    return [{"study": study, "trial_id": t, "config": c.get("config", ""),
             "seed": c.get("seed", ""), "lr": c.get("lr", ""), "params": c.get("params", ""),
             "status": "running", "steps": c["step"], "final_exact_match": c["exact_match"],
             "best_exact_match": c["exact_match"], "node": c.get("node", "")}
            for t, c in last.items()]


def _numeric(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for c in columns:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


# ------------------------------------------------------------------------- fitting

def logistic(x: np.ndarray, k: float, x50: float, ceiling: float = 1.0) -> np.ndarray:
    """Exact match at x = log10(parameters): ceiling / (1 + exp(-k (x - x50)))."""
    return ceiling / (1.0 + np.exp(-k * (x - x50)))


@dataclass
class LogisticFit:
    k: float
    log10_n50: float
    ceiling: float
    n_points: int
    n_censored: int
    ci: dict[str, tuple[float, float]]  # 95% bootstrap intervals: k, n50, n99
    measured: tuple[float, float] = (0.0, math.inf)  # smallest and largest model fitted

    def extrapolated(self, n: float) -> bool:
        return not self.measured[0] <= n <= self.measured[1]

    def params_for(self, level: float) -> float:
        """Parameters at which the curve reaches ``level`` (inf if it never does)."""
        if self.ceiling <= level:
            return math.inf
        return 10 ** (self.log10_n50 - math.log(self.ceiling / level - 1) / self.k)

    @property
    def n50(self) -> float:
        return self.params_for(0.5)

    @property
    def n99(self) -> float:
        return self.params_for(0.99)

    def predict(self, params: np.ndarray) -> np.ndarray:
        return logistic(np.log10(params), self.k, self.log10_n50, self.ceiling)


def _fit_once(x: np.ndarray, y: np.ndarray, censored: np.ndarray,
              ceiling: bool) -> np.ndarray:
    def residuals(p: np.ndarray) -> np.ndarray:
        r = logistic(x, *p) - y
        # a pruned trial's accuracy is a lower bound: only a prediction below it is wrong
        return np.where(censored, np.minimum(r, 0.0), r)

    lo = [0.05, x.min() - 3.0] + ([0.05] if ceiling else [])
    hi = [50.0, x.max() + 3.0] + ([1.0] if ceiling else [])
    best = None
    for x50 in np.linspace(x.min(), x.max(), 5):
        for k in (0.5, 2.0, 8.0):
            start = [k, x50] + ([0.9] if ceiling else [])
            sol = least_squares(residuals, start, bounds=(lo, hi))
            if best is None or sol.cost < best.cost:
                best = sol
    return best.x


def fit_logistic(params: np.ndarray, accuracy: np.ndarray, censored: np.ndarray | None = None,
                 ceiling: bool = False, n_boot: int = 200, seed: int = 0) -> LogisticFit:
    """Fit exact match vs log10(parameters), with bootstrap CIs over trials.

    censored marks trials stopped before their budget (pruned): their accuracy counts
    as a lower bound. A fit needs 3 distinct model sizes (4 with a free ceiling).
    """
    params = np.asarray(params, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    cens = np.zeros_like(y, dtype=bool) if censored is None else np.asarray(censored, bool)
    ok = np.isfinite(params) & np.isfinite(y) & (params > 0)
    params, y, cens = params[ok], y[ok], cens[ok]
    need = 4 if ceiling else 3
    distinct = len(np.unique(params))
    if distinct < need:
        raise AnalysisError(f"a logistic fit{' with a ceiling' if ceiling else ''} needs at "
                            f"least {need} distinct model sizes; got {distinct}")
    if np.nanmax(y) < 0.05:
        raise AnalysisError(f"no model reached 5% exact match (best {np.nanmax(y):.2%}), so "
                            f"there is no curve to fit")
    x = np.log10(params)
    p = _fit_once(x, y, cens, ceiling)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(params[idx])) < need:
            continue
        samples.append(_fit_once(x[idx], y[idx], cens[idx], ceiling))
    fit = LogisticFit(k=float(p[0]), log10_n50=float(p[1]),
                      ceiling=float(p[2]) if ceiling else 1.0, n_points=len(y),
                      n_censored=int(cens.sum()), ci={},
                      measured=(float(params.min()), float(params.max())))
    if samples:
        boots = [LogisticFit(float(s[0]), float(s[1]), float(s[2]) if ceiling else 1.0,
                             0, 0, {}) for s in samples]
        for name in ("k", "n50", "n99"):
            values = np.array([getattr(b, name) for b in boots], dtype=float)
            # no interpolation at the bounds: N99 may be inf (never reached) in some samples
            fit.ci[name] = (float(np.percentile(values, 2.5, method="lower")),
                            float(np.percentile(values, 97.5, method="higher")))
    return fit


# ------------------------------------------------------------- comparisons, compute

def per_config(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of final exact match across seeds, per study, config and lr."""
    g = trials.groupby(["study", "config", "lr"], dropna=False)
    out = g.agg(params=("params", "max"), d_model=("d_model", "max"),
                n_layers=("n_layers", "max"), seeds=("trial_id", "count"),
                exact_match=("final_exact_match", "mean"),
                exact_match_std=("final_exact_match", "std"),
                best_exact_match=("best_exact_match", "max"),
                wall_seconds=("wall_seconds", "sum")).reset_index()
    return out


def width_vs_depth(trials: pd.DataFrame) -> pd.DataFrame:
    """Pairs of configs in one study where one is wider and shallower than the other.

    For each pair: exact-match difference (wide minus deep) with its standard error
    across seeds, the parameter ratio, and whether the difference exceeds the
    seed-to-seed spread.
    """
    rows = []
    stats = per_config(trials)
    best = stats.sort_values("exact_match").groupby(["study", "config"]).tail(1)
    for study, group in best.groupby("study"):
        recs = group.to_dict("records")
        for w in recs:
            for d in recs:
                if not (w["d_model"] > d["d_model"] and w["n_layers"] < d["n_layers"]):
                    continue
                sw, sd = (np.nan_to_num(r["exact_match_std"]) for r in (w, d))
                se = math.sqrt(sw**2 / w["seeds"] + sd**2 / d["seeds"])
                diff = w["exact_match"] - d["exact_match"]
                if min(w["seeds"], d["seeds"]) < 2:
                    verdict = "one seed each: spread unknown"
                elif abs(diff) > max(2 * se, sw, sd):
                    verdict = ("wider" if diff > 0 else "deeper") + " better, beyond seed spread"
                else:
                    verdict = "within seed-to-seed spread"
                rows.append({"study": study, "wide": w["config"], "deep": d["config"],
                             "wide_params": w["params"], "deep_params": d["params"],
                             "param_ratio": w["params"] / d["params"],
                             "wide_exact_match": w["exact_match"],
                             "deep_exact_match": d["exact_match"], "difference": diff,
                             "std_error": se, "verdict": verdict})
    return pd.DataFrame(rows)


def compute(trials: pd.DataFrame) -> pd.DataFrame:
    """Wall seconds and device-seconds (GPU-seconds or CPU-seconds) per study."""
    t = trials.copy()
    on_gpu = t.get("gpus", pd.Series(0, index=t.index)).fillna(0) > 0
    t["gpu_seconds"] = np.where(on_gpu, t["wall_seconds"] * t["gpus"], 0.0)
    t["cpu_seconds"] = np.where(on_gpu, 0.0, t["wall_seconds"] * t["cpus"].fillna(1))
    return t.groupby("study").agg(trials=("trial_id", "count"),
                                  wall_seconds=("wall_seconds", "sum"),
                                  gpu_seconds=("gpu_seconds", "sum"),
                                  cpu_seconds=("cpu_seconds", "sum")).reset_index()


def learning_rates(trials: pd.DataFrame) -> pd.DataFrame:
    """Best learning rate per study and config, flagged when it is at the grid's edge."""
    rows = []
    stats = per_config(trials)
    for (study, config), g in stats.groupby(["study", "config"]):
        if g["lr"].nunique() < 2:
            continue
        best = g.loc[g["exact_match"].idxmax()]
        grid = sorted(g["lr"].unique())
        edge = best["lr"] in (grid[0], grid[-1])
        rows.append({"study": study, "config": config, "grid": grid, "best_lr": best["lr"],
                     "exact_match": best["exact_match"], "at_edge": edge})
    return pd.DataFrame(rows)


def at_best_lr(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of each (study, config) at its best learning rate (mean final exact match),
    so architectures are compared at their best nuisance setting, not at one shared rate."""
    if trials.empty:
        return trials
    means = trials.groupby(["study", "config", "lr"])["final_exact_match"].mean().reset_index()
    best = means.loc[means.groupby(["study", "config"])["final_exact_match"].idxmax()]
    keys = set(zip(best["study"], best["config"], best["lr"], strict=True))
    mask = [k in keys for k in zip(trials["study"], trials["config"], trials["lr"], strict=True)]
    return trials[mask]


def terminal_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials usable as results: finished or pruned (pruned ones are censored)."""
    return trials[trials["status"].isin(sf.FINAL_STATUSES)]


# ---------------------------------------------------------------- phase 3 searches

def search_studies(res: Results) -> dict[str, str | None]:
    """Search studies (study.json kind "search") -> the study that re-ran their best
    config with more seeds, if it is in these results."""
    out = {}
    for name, info in res.studies.items():
        if info.get("kind") == "search":
            confirm = info.get("confirm_study")
            out[name] = confirm if confirm in res.studies else None
    return out


def grid_trials(res: Results) -> pd.DataFrame:
    """Trials of the fixed-config studies only: a search's trials each use their own
    settings and budget, so they stay out of the size fits and per-config tables."""
    skip = {s for pair in search_studies(res).items() for s in pair if s}
    return res.trials[~res.trials["study"].isin(skip)]


def pareto_frontier(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials no other trial beats with at most as many parameters and at least as high
    final exact match: sorted by parameters, each more accurate than every smaller one."""
    t = terminal_trials(trials).dropna(subset=["params", "final_exact_match"])
    t = t.sort_values(["params", "final_exact_match"], ascending=[True, False])
    keep, best = [], -1.0
    for idx, r in t.iterrows():
        if r["final_exact_match"] > best:
            keep.append(idx)
            best = r["final_exact_match"]
    return t.loc[keep]


def smallest_above(trials: pd.DataFrame, threshold: float) -> pd.Series | None:
    """The trial with the fewest parameters whose final exact match is >= threshold."""
    t = terminal_trials(trials)
    t = t[t["final_exact_match"] >= threshold]
    if t.empty:
        return None
    return t.sort_values(["params", "final_exact_match"], ascending=[True, False]).iloc[0]
