"""Comparisons over a results folder's trials: per config and learning rate, width vs
depth, compute, and a search's frontier. Pure pandas/scipy on loaded DataFrames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from addray import study_files as sf
from addray.analysis.results import Results


def terminal_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials usable as results: finished or stopped early (those are censored)."""
    return trials[trials["status"].isin(sf.FINAL_STATUSES)]


def censored(trials: pd.DataFrame) -> pd.Series:
    """Trials stopped before their budget: their accuracy is a lower bound."""
    return trials["status"].isin(sf.CENSORED_STATUSES)


def per_config(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of final exact match across seeds, per study, config and lr, with how
    many of those trials were censored."""
    t = trials.assign(cut=censored(trials))
    for column in ("worst_stratum", "edge_cases"):  # studies made before strata existed
        if column not in t:
            t[column] = np.nan
    g = t.groupby(["study", "config", "lr"], dropna=False)
    return g.agg(params=("params", "max"), d_model=("d_model", "max"),
                 n_layers=("n_layers", "max"), seeds=("trial_id", "count"),
                 exact_match=("final_exact_match", "mean"),
                 exact_match_std=("final_exact_match", "std"),
                 worst_stratum=("worst_stratum", "mean"), edge_cases=("edge_cases", "mean"),
                 best_exact_match=("best_exact_match", "max"), censored=("cut", "sum"),
                 wall_seconds=("wall_seconds", "sum")).reset_index()


def best_lrs(trials: pd.DataFrame) -> pd.DataFrame:
    """Each (study, config)'s best learning rate: the highest mean final exact match among
    the learning rates whose trials all ran their budget (or stopped on their own), so a
    reported point is never a lower bound; only when every rate was cut short, the best
    of those (flagged by its ``censored`` count). Rates are compared on the seeds they all
    have, so that a rate screened on one seed (``--screen``) is not preferred for lacking
    the others; the returned row holds every seed of the chosen rate. Trials without a
    result (never run) are left out."""
    trials = trials[trials["final_exact_match"].notna()]
    stats_ = per_config(trials)
    rows = []
    for (study, config), g in stats_.groupby(["study", "config"]):
        g = g[g["exact_match"].notna()]
        whole = g[g["censored"] == 0]
        pick = whole if not whole.empty else g
        if pick.empty:
            continue
        mine = trials[(trials["study"] == study) & (trials["config"] == config)
                      & trials["lr"].isin(pick["lr"])]
        seeds = [set(s) for _, s in mine.groupby("lr")["seed"]]
        shared = set.intersection(*seeds) if seeds else set()
        if shared and len(seeds) > 1:
            on_shared = (mine[mine["seed"].isin(shared)]
                         .groupby("lr")["final_exact_match"].mean())
            rows.append(pick[pick["lr"] == on_shared.idxmax()].iloc[0])
        else:
            rows.append(pick.loc[pick["exact_match"].idxmax()])
    return pd.DataFrame(rows, columns=stats_.columns).reset_index(drop=True)


def at_best_lr(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of each (study, config) at its best learning rate (``best_lrs``), so
    architectures are compared at their best nuisance setting, not at one shared rate."""
    if trials.empty:
        return trials
    best = best_lrs(trials)
    keys = set(zip(best["study"], best["config"], best["lr"], strict=True))
    mask = [k in keys for k in zip(trials["study"], trials["config"], trials["lr"], strict=True)]
    return trials[mask]


def learning_rates(trials: pd.DataFrame) -> pd.DataFrame:
    """Exact match at every learning rate of every config that swept more than one, the
    best one, why (``why``: where the rates ran different seeds, the comparison on the
    seeds they share, which decided), and a warning when the best sits at the edge of a
    grid of three or more rates (of two, one always does)."""
    trials = trials[trials["final_exact_match"].notna()]  # a trial never run has no result
    stats_ = per_config(trials)
    best = {(r["study"], r["config"]): r["lr"] for r in best_lrs(trials).to_dict("records")}
    rows = []
    for (study, config), g in stats_.groupby(["study", "config"]):
        if g["lr"].nunique() < 2:
            continue
        grid = sorted(g["lr"].unique())
        pick = best[(study, config)]
        mine = trials[(trials["study"] == study) & (trials["config"] == config)]
        rows.append({"study": study, "config": config, "grid": grid, "best_lr": pick,
                     "at_edge": len(grid) >= 3 and pick in (grid[0], grid[-1]),
                     "why": _why(mine, g, pick),
                     "by_lr": {r["lr"]: (r["exact_match"], int(r["censored"]), int(r["seeds"]))
                               for r in g.to_dict("records")}})
    return pd.DataFrame(rows)


def _why(mine: pd.DataFrame, stats_: pd.DataFrame, pick: float) -> str:
    """The comparison that chose ``pick`` when the rates ran different seeds (a screen):
    each rate on the seeds every compared rate ran; empty when all ran the same seeds."""
    whole = stats_[stats_["censored"] == 0]
    rates = set((whole if not whole.empty else stats_)["lr"])
    mine = mine[mine["lr"].isin(rates)]
    seeds = [set(s) for _, s in mine.groupby("lr")["seed"]]
    shared = set.intersection(*seeds)
    if not shared or all(s == shared for s in seeds):
        return ""
    on = mine[mine["seed"].isin(shared)].groupby("lr")["final_exact_match"].mean()
    names = ", ".join(f"{s:g}" for s in sorted(shared))
    others = "; ".join(f"{lr:g}: {em:.2%}" for lr, em in on.items() if lr != pick)
    return (f"on seed{'s' if len(shared) > 1 else ''} {names}, run at every rate: "
            f"{pick:g}: {on[pick]:.2%} against {others}")


def width_vs_depth(trials: pd.DataFrame) -> pd.DataFrame:
    """Pairs of configs in one study where one is wider and shallower than the other, each
    at its best learning rate: the exact-match difference (wide minus deep), Welch's
    t-test over seeds, the parameter ratio, and a verdict that says "no clear
    difference" unless the test finds one at p < 0.05."""
    t = at_best_lr(terminal_trials(trials))
    best = per_config(t)
    rows = []
    for study, group in best.groupby("study"):
        recs = group.to_dict("records")
        for w in recs:
            for d in recs:
                if not (w["d_model"] > d["d_model"] and w["n_layers"] < d["n_layers"]):
                    continue
                a = t[(t["study"] == study) & (t["config"] == w["config"])]["final_exact_match"]
                b = t[(t["study"] == study) & (t["config"] == d["config"])]["final_exact_match"]
                diff = w["exact_match"] - d["exact_match"]
                se = math.sqrt(np.nan_to_num(a.var()) / len(a) + np.nan_to_num(b.var()) / len(b))
                p = math.nan
                if min(len(a), len(b)) < 2:
                    verdict = "one seed: spread unknown"
                else:
                    if se > 0:
                        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
                    else:  # identical seeds on both sides
                        p = 1.0 if diff == 0 else 0.0
                    verdict = (("wider" if diff > 0 else "deeper") + " better"
                               if p < 0.05 else "no clear difference")
                cut = int(w["censored"] + d["censored"])
                rows.append({"study": study, "wide": w["config"], "deep": d["config"],
                             "wide_params": w["params"], "deep_params": d["params"],
                             "param_ratio": w["params"] / d["params"],
                             "wide_exact_match": w["exact_match"],
                             "deep_exact_match": d["exact_match"], "difference": diff,
                             "std_error": se, "p_value": p, "seeds": (len(a), len(b)),
                             "verdict": verdict + (" (lower bounds)" if cut else "")})
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


def strata_of_best(trials: pd.DataFrame) -> list[tuple[str, str, dict[str, list[int]]]]:
    """(study, config, {stratum: [right, n]}) of each config's best finished trial."""
    out = []
    t = terminal_trials(trials)
    if "strata" not in t.columns:
        return out
    t = t[t["strata"].fillna("").astype(str) != ""]
    for (study, config), g in t.groupby(["study", "config"]):
        best = g.loc[g["final_exact_match"].idxmax()]
        out.append((study, config, json.loads(best["strata"])))
    return out


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


def stages_of(res: Results, search: str) -> list[str]:
    """A search's other stages: its confirmation study, and every study kept in a folder
    inside the search's own (earlier searches, ``verification/<stage>/``: its best
    models trained again longer, on other data or with more seeds)."""
    here = Path(res.studies[search].get("path", ""))
    confirm = res.studies[search].get("confirm_study")
    out = [confirm] if confirm in res.studies else []
    for name, info in sorted(res.studies.items()):
        if name not in out and here in Path(info.get("path", "")).parents:
            out.append(name)
    return out


def grid_trials(res: Results) -> pd.DataFrame:
    """Trials of the fixed-config studies only: a search's trials each use their own
    settings and budget, so they stay out of the size fits and per-config tables, and
    so do its other stages."""
    searches = search_studies(res)
    skip = set(searches) | {s for name in searches for s in stages_of(res, name)}
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


def smallest_learned_on_every_seed(trials: pd.DataFrame,
                                   min_seeds: int = 3) -> dict[str, object] | None:
    """The fewest parameters at which one study trained one config at one learning rate
    on at least ``min_seeds`` seeds and every one of them was learned (its held-out
    set's edge cases and strata too): {study, config, params, seeds}. None if none was."""
    t = terminal_trials(trials)
    if "learned" not in t.columns or t.empty:
        return None
    best = None
    keys = ["study", "config", "params"] + (["lr"] if "lr" in t.columns else [])
    for (study, config, params, *_), g in t.groupby(keys):  # one setting's seeds
        won = g["learned"].astype(str) == "True"
        if len(g) >= min_seeds and won.all() and (best is None or params < best["params"]):
            best = {"study": study, "config": config, "params": params, "seeds": len(g)}
    return best


def smallest_above(trials: pd.DataFrame, threshold: float,
                   learned_only: bool = False) -> pd.Series | None:
    """The trial with the fewest parameters whose final exact match is >= threshold (and,
    with ``learned_only``, that was learned: every edge case and stratum too, and the
    carry boundary in studies that record one)."""
    t = terminal_trials(trials)
    t = t[t["final_exact_match"] >= threshold]
    if learned_only and "learned" in t.columns:
        t = t[t["learned"].astype(str) == "True"]
    if t.empty:
        return None
    return t.sort_values(["params", "final_exact_match"], ascending=[True, False]).iloc[0]
