"""The report: report.md (and report.html) with PNG plots, from a results folder.

Sections: studies; results against the reference; exact match vs parameters (the fit);
per-stratum exact match; learning curves; width vs depth; learning rates; the smallest
model that adds (phase 3); compute; the reference audit. Reads files only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from addray import study_files as sf  # noqa: E402
from addray.analysis import compare as cmp  # noqa: E402
from addray.analysis.doc import Doc, count, pct  # noqa: E402
from addray.analysis.fits import FitError, LogisticFit, fit_logistic  # noqa: E402
from addray.analysis.reference import (  # noqa: E402
    CLAIMS,
    FACTS,
    MINIMUM_VIABLE_PARAMS,
    TOTAL_GPU_HOURS,
    WIDTH_BEATS_DEPTH,
)
from addray.analysis.results import Results, load_results  # noqa: E402

SECTIONS = ["Studies", "Results against the reference", "Exact match vs parameters",
            "Exact match per stratum", "Learning curves", "Width vs depth", "Learning rates",
            "Smallest model that adds", "Compute", "Reference audit"]


def smoke_studies(res: Results) -> set[str]:
    """Studies run with --smoke-test (a few steps at a small batch): a check that the
    machinery runs, never a result to hold against the reference."""
    return {name for name, info in res.studies.items()
            if isinstance(info.get("options"), dict) and info["options"].get("smoke_test")}


def without_smoke(res: Results) -> Results:
    smoke = smoke_studies(res)
    if not smoke:
        return res
    return dataclasses.replace(res, trials=res.trials[~res.trials["study"].isin(smoke)],
                               curves=res.curves[~res.curves["study"].isin(smoke)]
                               if not res.curves.empty else res.curves)


def studies_section(doc: Doc, res: Results) -> None:
    doc.h("Studies")
    rows = []
    smoke = smoke_studies(res)
    for name, info in sorted(res.studies.items()):
        t = res.trials[res.trials["study"] == name]
        state = info.get("state", "unknown") + (" (partial)" if info.get("partial") else "")
        state += " (smoke test)" if name in smoke else ""
        errored = int((t["status"] == "errored").sum())
        rows.append([name, state + (f", {errored} errored" if errored else ""), len(t),
                     pct(t["best_exact_match"].max()), f"`{info.get('command', '') or '-'}`"])
    doc.table(["study", "state", "trials", "best exact match", "command"], rows)


def reference_section(doc: Doc, res: Results) -> None:
    doc.h("Results against the reference")
    doc.p("Measured: final exact match on uniform held-out pairs, mean ± std across seeds "
          "(n), at each config's best learning rate among those whose trials ran their "
          "budget; the weakest stratum and the edge cases are means over the same trials. "
          "Reference: as published (its test set overlaps its training set and its answers "
          "sit in the inputs).")
    best = cmp.best_lrs(cmp.terminal_trials(cmp.grid_trials(res)))
    smoke = smoke_studies(res)
    for study, g in best.groupby("study"):
        rows = []
        for r in g.sort_values("params", ascending=False).to_dict("records"):
            c = None if study in smoke else CLAIMS.get(r["config"])
            t = res.trials[(res.trials["study"] == study) & (res.trials["config"] == r["config"])
                           & (res.trials["lr"] == r["lr"])]
            statuses = ", ".join(f"{k} {v}" for k, v in t["status"].value_counts().items())
            std = "" if math.isnan(r["exact_match_std"]) else f" ± {r['exact_match_std']:.2%}"
            rows.append([r["config"], f"{r['d_model']:.0f}d-{r['n_layers']:.0f}L",
                         count(c.params) if c else "-", count(r["params"]),
                         pct(c.exact_match) if c else "-",
                         f"{r['exact_match']:.2%}{std} (n={r['seeds']})"
                         + (" lower bound" if r["censored"] else ""),
                         pct(r["worst_stratum"]), pct(r["edge_cases"]), f"{r['lr']:g}",
                         statuses, f"{c.gpu_hours:g}" if c else "-",
                         f"{t['wall_seconds'].sum() / 3600:.2f}"])
        doc.p(f"**{study}**" + (" (smoke test: a few steps, not compared with the "
                                "reference)" if study in smoke else ""))
        doc.table(["config", "shape", "ref params", "real params", "ref exact match",
                   "measured exact match", "worst stratum", "edge cases", "lr", "trials",
                   "ref GPU h", "measured h"], rows)


def _interval(fit: LogisticFit, name: str) -> tuple[float, float, bool, bool]:
    """The 95% interval of N50 or N99 within the measured sizes, and whether each end was
    cut there: the bootstrap extrapolates past them (an N50 "as low as 8 parameters"),
    which no measurement supports."""
    low, high = fit.ci.get(name.lower(), (math.nan, math.nan))
    smallest, largest = min(fit.sizes), max(fit.sizes)
    return max(low, smallest), min(high, largest), low < smallest, high > largest


def _level(fit: LogisticFit, name: str, level: float) -> str:
    reason = fit.why_not(level)
    if reason is not None:
        return f"{name}: not determined ({reason})"
    low, high, cut_low, cut_high = _interval(fit, name)
    span = math.log10(high / low) if low > 0 and math.isfinite(high) else math.inf
    note = "" if span <= 1 else "; its interval spans more than a decade"
    if cut_low or cut_high:
        note += "; the bootstrap reaches past the measured sizes, cut there"
    return (f"{name} = {count(fit.params_for(level))} (95% CI {'<' if cut_low else ''}"
            f"{count(low)}–{count(high)}{'+' if cut_high else ''}{note})")


MIN_SPAN = 2.0  # a size curve needs sizes at least this far apart (largest / smallest)


def fit_section(doc: Doc, res: Results, out: Path) -> LogisticFit | None:
    doc.h("Exact match vs parameters")
    t = cmp.at_best_lr(cmp.terminal_trials(cmp.grid_trials(res)).dropna(
        subset=["params", "final_exact_match"]))
    # in one order whatever order the trials ended in, so that the bootstrap's resamples,
    # and the interval, are the same for the same trials
    t = t.sort_values(["study", "config", "lr", "seed"], kind="stable")
    if t.empty:
        doc.p("No fixed-config study (phase 1, phase 2) in these results.")
        return None
    cut = cmp.censored(t).to_numpy()
    fit = None
    span = t["params"].max() / t["params"].min()
    if span < MIN_SPAN:
        doc.p(f"No size curve: the sizes here span {span:.2f}x in parameters (less than "
              f"{MIN_SPAN:g}x), too narrow for a fit across sizes; a study of shapes at one "
              f"size is read in \"Width vs depth\".")
        return None
    try:
        fit = fit_logistic(t["params"], t["final_exact_match"], censored=cut)
    except FitError as exc:
        doc.p(f"No fit: {exc}.")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for study, g in t.groupby("study"):
        mask = cmp.censored(g)
        pts = ax.scatter(g.loc[~mask, "params"], g.loc[~mask, "final_exact_match"],
                         label=study)
        ax.scatter(g.loc[mask, "params"], g.loc[mask, "final_exact_match"], marker="^",
                   facecolors="none", edgecolors=pts.get_facecolor(),
                   label=f"{study} (stopped early: lower bound)" if mask.any() else None)
    if fit is not None:
        # the curve is drawn only over the measured sizes, and only when it fits them
        xs = np.logspace(np.log10(t["params"].min()), np.log10(t["params"].max()))
        ax.plot(xs, fit.predict(xs), "k--", label="logistic fit")
        low, high = fit.band(xs)
        ax.fill_between(xs, low, high, color="k", alpha=0.12, lw=0,
                        label="95% band (bootstrap)")
        _level_markers(ax, fit)
        doc.p(f"Logistic fit in log10(parameters) over {fit.n_points} trials, each config "
              f"at its best learning rate ({fit.n_censored} stopped early, counted as lower "
              f"bounds): slope k = {fit.k:.2f}, RMS residual {fit.rms:.3f}. "
              f"{_level(fit, 'N50', 0.5)}; {_level(fit, 'N99', 0.99)}. Intervals: bootstrap "
              f"over trials and seeds; N50/N99 are the parameters needed for 50% and 99% "
              f"uniform exact match at these budgets.")
    _save_size_plot(fig, ax, out / "fit.png", "held-out exact match")
    doc.image("fit.png", "exact match vs parameters")
    return fit


def _level_markers(ax: plt.Axes, fit: LogisticFit) -> None:
    """N50 and N99 where the measured sizes bracket them: a point on the curve with its
    95% interval as a horizontal bar, named in the legend."""
    for name, level, color in (("N50", 0.5, "tab:red"), ("N99", 0.99, "tab:purple")):
        if fit.why_not(level) is not None:
            continue
        n = fit.params_for(level)
        low, high, cut_low, cut_high = _interval(fit, name)
        if not (math.isfinite(n) and math.isfinite(low) and math.isfinite(high)):
            continue
        ax.errorbar([n], [level], xerr=[[max(n - low, 0)], [max(high - n, 0)]], fmt="D",
                    color=color, capsize=4, ms=6, zorder=5,
                    label=f"{name} = {count(n)} (95% CI {'<' if cut_low else ''}{count(low)}"
                          f"–{count(high)}{'+' if cut_high else ''})")
        for cut, x, marker in ((cut_low, low, "<"), (cut_high, high, ">")):
            if cut:  # the interval goes on past the measured sizes
                ax.plot([x], [level], marker=marker, color=color, ms=8, zorder=5)


def _save_size_plot(fig: plt.Figure, ax: plt.Axes, path: Path, ylabel: str) -> None:
    """Exact match against log-scaled parameters, written as a PNG."""
    ax.set_xscale("log")
    ax.set_xlabel("parameters (counted on the model)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    # beside the axes, so that a search with many stages does not cover its points
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def strata_section(doc: Doc, res: Results) -> None:
    doc.h("Exact match per stratum")
    best = cmp.strata_of_best(res.trials)
    if not best:
        doc.p("No trial recorded per-stratum results (studies made before strata existed).")
        return
    names = sorted({s for _, _, per in best for s in per})
    doc.p("Each config's best finished trial, on its held-out pairs: operand lengths in "
          "tokens x whether the lowest tokens carry. A uniform test set holds few pairs of "
          "two one-token operands; the held-out set is topped up to at least "
          "`data.min_per_stratum` pairs in every stratum.")
    doc.table(["study", "config", *names],
              [[study, config, *(f"{per[s][0] / per[s][1]:.2%} (n={per[s][1]})" if s in per
                                 else "-" for s in names)]
               for study, config, per in best])


CENSORED_NOTE = "open circle: stopped early (pruned or out of time), its last value a lower bound"


def _config_colors(frame: pd.DataFrame) -> dict[str, object]:
    """One colour per config, smallest first (tab10, then tab20 for more)."""
    order = (frame.groupby("config")["params"].max().sort_values().index.tolist()
             if "params" in frame.columns else sorted(frame["config"].unique()))
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(order)}


def curves_section(doc: Doc, res: Results, out: Path) -> None:
    doc.h("Learning curves")
    if res.curves.empty:
        doc.p("No learning curves recorded (curves.csv missing).")
        return
    status = res.trials.set_index(["study", "trial_id"])["status"].to_dict()
    params = res.trials.groupby("config")["params"].max().to_dict()
    for study, g in res.curves.groupby("study"):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        colors = _config_colors(g.assign(params=g["config"].map(params)))
        # one config of a few runs: a colour per run (its seed and rate) instead
        per_run = len(colors) == 1 and g["trial_id"].nunique() <= 10
        cut_any = False
        for i, (trial_id, c) in enumerate(g.groupby("trial_id")):
            c = c.sort_values("step")
            color = plt.get_cmap("tab10")(i) if per_run else colors[c["config"].iloc[0]]
            if per_run:
                ax.plot([], [], color=color, label=f"seed {c['seed'].iloc[0]:.0f}, "
                                                   f"lr {c['lr'].iloc[0]:.3g}")
            cut = status.get((study, trial_id)) in ("pruned", "time_limit")
            ax.plot(c["step"], c["exact_match"], color=color, lw=1.2, alpha=0.45 if cut else 0.9)
            if cut:  # ended where it was stopped: its last value is a lower bound
                cut_any = True
                ax.plot(c["step"].iloc[-1], c["exact_match"].iloc[-1], "o", ms=6,
                        mfc="white", mec=color, mew=1.5, zorder=4)
        for config, color in colors.items():
            n = g[g["config"] == config]["trial_id"].nunique()
            size = f", {count(params[config])}" if config in params else ""
            ax.plot([], [], color="none" if per_run else color,
                    label=f"{config}{size} ({n} runs)")
        if cut_any:
            ax.plot([], [], "o", mfc="white", mec="grey", label="stopped early (lower bound)")
        ax.set_xlabel("training step")
        ax.set_ylabel("held-out exact match")
        ax.set_title(f"{study}: every run" + ("" if per_run else ", coloured by config"))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        name = f"curves_{re.sub(r'[^A-Za-z0-9._-]', '_', study)}.png"  # inside out/
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        doc.image(name, f"learning curves of {study}")
    doc.p(f"Curves by training step, one colour per config; {CENSORED_NOTE}.")


def width_depth_section(doc: Doc, res: Results, out: Path | None = None) -> pd.DataFrame:
    doc.h("Width vs depth")
    wd = cmp.width_vs_depth(cmp.grid_trials(res))
    if wd.empty:
        doc.p("No study holds a wider-and-shallower / narrower-and-deeper pair of configs.")
        return wd
    doc.table(["study", "wide", "deep", "params ratio", "wide", "deep", "difference",
               "Welch p", "verdict"],
              [[r["study"], r["wide"], r["deep"], f"{r['param_ratio']:.2f}x",
                pct(r["wide_exact_match"]), pct(r["deep_exact_match"]),
                f"{r['difference']:+.2%} ± {r['std_error']:.2%}",
                "-" if math.isnan(r["p_value"]) else f"{r['p_value']:.3f}", r["verdict"]]
               for r in wd.to_dict("records")])
    doc.p("Each config at its best learning rate; the verdict is Welch's t-test over seeds "
          "(p < 0.05), and \"no clear difference\" otherwise. A params ratio far from 1 "
          "confounds width with size: the reference's phase-2 models are not the same size "
          "when counted.")
    if out is not None:
        _depth_plot(res, wd, out)
        doc.image("width_depth.png", "exact match against depth, every seed")
    return wd


def _depth_plot(res: Results, wd: pd.DataFrame, out: Path) -> None:
    """Exact match against the number of layers, one point per seed and the mean with
    its spread, per study: the variable a width-vs-depth study varies."""
    t = cmp.at_best_lr(cmp.terminal_trials(cmp.grid_trials(res)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (study, pairs) in enumerate(wd.groupby("study")):
        configs = set(pairs["wide"]) | set(pairs["deep"])
        g = t[(t["study"] == study) & t["config"].isin(configs)]
        color = plt.get_cmap("tab10")(k % 10)
        by = g.groupby("n_layers")
        ax.scatter(g["n_layers"], g["final_exact_match"], s=18, color=color, alpha=0.5)
        mean, std = by["final_exact_match"].mean(), by["final_exact_match"].std()
        ax.errorbar(mean.index, mean, yerr=std.fillna(0), fmt="o-", color=color, capsize=4,
                    label=f"{study}: mean ± sd over seeds")
        for layers, row in by.agg(config=("config", "first"), params=("params", "max"),
                                  em=("final_exact_match", "mean")).iterrows():
            ax.annotate(f"{row['config']}\n{count(row['params'])}", (layers, row["em"]),
                        textcoords="offset points", xytext=(6, 6), fontsize=7, color=color)
    ax.set_xscale("log", base=2)
    layers = sorted(t["n_layers"].dropna().unique())
    ax.set_xticks(layers, [f"{x:.0f}" for x in layers])
    ax.set_xlabel("layers (width shrinks as depth grows: about the same parameters)")
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(-0.03, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(out / "width_depth.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def lr_section(doc: Doc, res: Results, out: Path) -> None:
    doc.h("Learning rates")
    lr = cmp.learning_rates(cmp.grid_trials(res))
    if lr.empty:
        doc.p("No study swept more than one learning rate for a config.")
        return
    rows = []
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    configs = list(dict.fromkeys(lr["config"]))
    cmap = plt.get_cmap("tab10" if len(configs) <= 10 else "tab20")
    styles = {study: ("-", "--", ":", "-.")[i % 4] for i, study in enumerate(lr["study"].unique())}
    for r in lr.to_dict("records"):
        most = max(n for _, _, n in r["by_lr"].values())
        cells = [f"{rate:g}: {em:.2%}" + (f" ({cut} of {n} cut)" if cut else "")
                 + (f" ({n} of {most} seeds)" if n < most else "")
                 for rate, (em, cut, n) in sorted(r["by_lr"].items())]
        rows.append([r["study"], r["config"], "; ".join(cells), f"{r['best_lr']:g}",
                     r["why"], "best at the edge of the grid: widen it" if r["at_edge"] else ""])
        rates = sorted(r["by_lr"])
        color = cmap(configs.index(r["config"]) % cmap.N)
        ax.plot(rates, [r["by_lr"][x][0] for x in rates], styles[r["study"]], color=color,
                alpha=0.6, label=f"{r['config']} ({r['study']})")
        best = r["best_lr"]  # ringed: the rate chosen (on the seeds every rate ran)
        ax.plot(best, r["by_lr"][best][0], "o", ms=13, mfc="none", mec="k", mew=1, zorder=3)
        for x in rates:  # filled: every seed ran its budget; open: fewer seeds, or cut
            em, cut, n = r["by_lr"][x]
            full = n == most and not cut
            ax.plot(x, em, "o", ms=7, color=color, mec=color, mew=1.5,
                    mfc=color if full else "white", zorder=4)
            if not full:
                last = x == rates[-1]  # its label left of the marker, inside the axes
                ax.annotate(f"{n} seed{'s' if n > 1 else ''}{', cut' if cut else ''}",
                            (x, em), textcoords="offset points",
                            xytext=(-5 if last else 5, -10), ha="right" if last else "left",
                            fontsize=6, color=color)
    doc.table(["study", "config", "exact match by learning rate (mean over seeds)",
               "best lr", "why", "warning"], rows)
    doc.p("A rate whose trials were cut (pruned or out of time) shows a lower bound. In the "
          "plot a filled marker is a mean over all the config's seeds; an open one is over "
          "fewer (a screened rate runs its first seed only) or includes cut trials: compare "
          "rates on the seeds they share (the table's best lr does).")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("held-out exact match (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.plot([], [], "o", color="grey", label="all seeds ran their budget")
    ax.plot([], [], "o", mfc="white", mec="grey", label="fewer seeds, or cut (lower bound)")
    ax.plot([], [], "o", ms=10, mfc="none", mec="k", label="chosen (the table says why)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(out / "learning_rates.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    doc.image("learning_rates.png", "exact match by learning rate per config")


def search_section(doc: Doc, res: Results, out: Path) -> list[str]:
    """Phase 3: every trial of every stage (the search, its confirmation and the other
    stages kept in its folder) by size and accuracy, the Pareto frontier over all of
    them, the smallest model at the threshold with its seeds, each other stage's seeds
    learned, against the reference's minimum viable size."""
    doc.h("Smallest model that adds")
    searches = cmp.search_studies(res)
    if not searches:
        doc.p("No search study in these results (`python sweeps/phase3_search.py`).")
        return []
    stages = {name: cmp.stages_of(res, name) for name in searches}
    names = [n for search in sorted(stages) for n in [search, *stages[search]]]
    everything = cmp.terminal_trials(res.trials[res.trials["study"].isin(names)])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # one colour per search (its confirmation seeds as diamonds of that colour); the
    # later stages kept in a search's folder share grey, so the legend stays short
    groups = []
    for i, search in enumerate(sorted(stages)):
        color = plt.get_cmap("tab10")(i % 10)
        confirm = searches[search]
        later = [s for s in stages[search] if s != confirm]
        groups.append(([search], color, "o", f"{search} (search)"))
        if confirm:
            groups.append(([confirm], color, "D", f"{confirm} (its seeds)"))
        if later:
            groups.append((later, "grey", "o", f"{len(later)} later stage(s) of {search}"))
    for members, color, marker, label in groups:
        g = everything[everything["study"].isin(members)]
        if g.empty:
            continue
        cut = cmp.censored(g)
        ax.scatter(g.loc[~cut, "params"], g.loc[~cut, "final_exact_match"], alpha=0.6,
                   color=color, marker=marker, s=28, label=label)
        ax.scatter(g.loc[cut, "params"], g.loc[cut, "final_exact_match"], marker="^",
                   facecolors="none", edgecolors=color)
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="grey",
               label="pruned or cut (lower bound)")
    if "learned" in everything:
        won = everything[everything["learned"].astype(str) == "True"]
        ax.scatter(won["params"], won["final_exact_match"], marker="*", s=90,
                   facecolors="none", edgecolors="k", label="learned (edges, strata)")
    front = cmp.pareto_frontier(everything)
    ax.step(front["params"], front["final_exact_match"], where="post", color="k",
            label="Pareto frontier (all stages)")
    lower = CLAIMS["phase1_lower"]
    ax.scatter([lower.params], [lower.exact_match], marker="s", color="k",
               label=f"reference 'minimum viable' ({count(lower.params)}, "
                     f"{lower.exact_match:.1%})")
    ax.axvline(MINIMUM_VIABLE_PARAMS, color="k", ls=":", lw=1)
    ax.axhline(0.99, color="C2", ls="--", lw=1, label="99%")
    _save_size_plot(fig, ax, out / "search.png", "held-out exact match (final)")
    doc.p(f"{len(everything)} trials over {len(names)} stage(s) of {len(searches)} "
          f"search(es) (each later stage's trials are in the table below and its own "
          f"line); triangles were pruned or cut (lower bounds), stars learned "
          f"(every edge case and stratum of the trial's held-out set too, and its carry "
          f"boundary in studies that record one).")
    doc.image("search.png", "parameters vs exact match, every stage")
    doc.table(["study", "config", "params", "exact match", "worst stratum", "carry boundary",
               "edge cases", "lr", "status"],
              [[r["study"], r["config"], f"{r['params']:,.0f}", pct(r["final_exact_match"]),
                pct(r.get("worst_stratum")), pct(r.get("carry_boundary")),
                pct(r.get("edge_cases")), f"{r['lr']:.2g}", r["status"]]
               for r in front.to_dict("records")])
    everywhere = cmp.smallest_learned_on_every_seed(everything)
    lines = [(f"Smallest config learned on every seed of a stage (3 or more seeds, each "
              f"learned on its held-out set): {everywhere['config']} in "
              f"{everywhere['study']}, {everywhere['params']:,.0f} parameters, "
              f"{everywhere['seeds']} of {everywhere['seeds']} seeds.") if everywhere else
             "No config was learned on every seed of a stage (3 or more seeds)."]
    for study, confirm in sorted(searches.items()):
        lines.append(_search_line(res, study, confirm))
        lines += [_stage_line(res, stage) for stage in stages[study] if stage != confirm]
    for line in lines:
        doc.p("- " + line)
    return lines


def _search_line(res: Results, study: str, confirm: str | None) -> str:
    info = res.studies[study]
    threshold = float(info.get("threshold", 0.99))
    strict = info.get("metric") == "worst_stratum"
    t = cmp.terminal_trials(res.trials[res.trials["study"] == study])
    best = cmp.smallest_above(t, threshold, learned_only=strict)
    if "score" in t.columns and t["score"].notna().any():
        # the trial the search itself saved and confirmed: its objective decides
        pick = sf.best_search_row(res.trials[res.trials["study"] == study].to_dict("records"))
        best = pd.Series(pick) if pick is not None and float(pick["score"]) > 1 else None
    what = ("learned (every edge case and stratum too, and the carry boundary where recorded)"
            if strict else f">= {threshold:.0%}")
    if best is None:
        return f"{study}: no trial {what}."
    seeds = [best]
    if confirm:
        c = cmp.terminal_trials(res.trials[res.trials["study"] == confirm])
        seeds += [r for _, r in c.iterrows()]
    ems = [float(r["final_exact_match"]) for r in seeds]
    held = sum(em >= threshold for em in ems)
    return (f"{study}: {best['config']} with {best['params']:,.0f} parameters, {what}, at "
            f"{best['final_exact_match']:.2%}; {held} of {len(ems)} seeds at >= "
            f"{threshold:.0%} uniform exact match (min {min(ems):.2%}). The reference's "
            f"minimum viable size (~{count(MINIMUM_VIABLE_PARAMS)}) is "
            f"{MINIMUM_VIABLE_PARAMS / best['params']:.0f}x this.")


def _stage_line(res: Results, stage: str) -> str:
    """A stage: per config, how many of its seeds were learned."""
    t = cmp.terminal_trials(res.trials[res.trials["study"] == stage])
    if t.empty:
        return f"{stage}: no finished trial."
    won = t["learned"].astype(str) == "True" if "learned" in t else pd.Series(False, t.index)
    if t["config"].nunique() > 3:  # a search: its range, not every config
        above = t[t["final_exact_match"].astype(float) >= 0.99]
        best = (f"the smallest at >= 99% uniform: {above['params'].min():,.0f} parameters"
                if len(above) else "none at >= 99% uniform")
        return (f"{stage} (stage): {len(t)} trials of {t['config'].nunique()} configs, "
                f"{t['params'].min():,.0f}-{t['params'].max():,.0f} parameters; {best}; "
                f"{int(won.sum())} learned.")
    parts = []
    for (config, params), g in t.groupby(["config", "params"]):
        ems = g["final_exact_match"].astype(float)
        parts.append(f"{config} ({params:,.0f} parameters) learned on its held-out set on "
                     f"{int(won[g.index].sum())} of {len(g)} seeds, uniform "
                     f"{ems.min():.2%}-{ems.max():.2%}")
    return f"{stage} (stage): " + "; ".join(parts) + "."


def compute_section(doc: Doc, res: Results) -> pd.DataFrame:
    doc.h("Compute")
    c = cmp.compute(res.trials)
    doc.table(["study", "trials", "wall h (sum over trials)", "GPU h", "CPU-core h"],
              [[r["study"], r["trials"], f"{r['wall_seconds'] / 3600:.2f}",
                f"{r['gpu_seconds'] / 3600:.2f}", f"{r['cpu_seconds'] / 3600:.2f}"]
               for r in c.to_dict("records")])
    return c


def _claim_line(name: str, em: float, claim: float, where: str, cut: bool) -> str:
    """A measured exact match against a claimed one. A lower bound (a trial stopped
    early) can only show that a claim is too low, whatever the claim."""
    if cut:
        if em > claim + 0.05:
            return (f"{name}: {em:.2%} ({where}, stopped early: a lower bound) is above the "
                    f"claimed {claim:.2%}, so the claim is too low.")
        return (f"{name}: {em:.2%} ({where}, stopped early: a lower bound) neither confirms "
                f"nor refutes the claimed {claim:.2%}.")
    cmp_ = ("matches" if abs(em - claim) <= 0.05 else
            "is above" if em > claim else "is below")
    return f"{name}: measured exact match {em:.2%} ({where}) {cmp_} the claimed {claim:.2%}."


def audit_section(doc: Doc, res: Results, wd: pd.DataFrame) -> list[str]:
    """The reference's known faults, then statements computed from the data."""
    doc.h("Reference audit")
    doc.p("About the reference itself:")
    for fact in FACTS:
        doc.p("- " + fact)
    doc.p("From these results:")
    smoke = smoke_studies(res)
    if smoke:
        doc.p(f"Smoke studies ({', '.join(sorted(smoke))}) are left out: they run a few "
              f"steps to check the machinery.")
        res = without_smoke(res)
        wd = wd[~wd["study"].isin(smoke)] if not wd.empty else wd
    lines = []
    t = res.trials
    for name, claim in CLAIMS.items():
        rows = t[t["config"] == name]
        if rows.empty:
            continue
        real = rows["params"].dropna().max()
        if not math.isnan(real):
            off = real / claim.params - 1
            verdict = "holds" if abs(off) <= 0.1 else "does not hold"
            lines.append(f"{name}: parameter count {count(claim.params)} {verdict}: counted "
                         f"{real:,.0f} ({off:+.0%}).")
        done = cmp.at_best_lr(cmp.terminal_trials(rows))
        if not done.empty:
            em, lr = done["final_exact_match"].mean(), done["lr"].iloc[0]
            where = f"lr {lr:g}, {done['steps'].max():.0f} of {done['max_steps'].max():.0f} steps"
            lines.append(_claim_line(name, em, claim.exact_match, where,
                                     bool(cmp.censored(done).any())))
    small = cmp.terminal_trials(t)
    small = small[(small["params"] < MINIMUM_VIABLE_PARAMS) & (small["final_exact_match"] >= 0.9)]
    if not small.empty:
        r = small.sort_values("params").iloc[0]
        lines.append(f"Minimum viable size (~{count(MINIMUM_VIABLE_PARAMS)}) does not hold: "
                     f"{r['config']} with {r['params']:,.0f} parameters reached "
                     f"{r['final_exact_match']:.2%} at lr {r['lr']:g}.")
    if not wd.empty:
        wide, deep, claimed = WIDTH_BEATS_DEPTH
        for r in wd[(wd["wide"] == wide) & (wd["deep"] == deep)].to_dict("records"):
            lines.append(f"Width beats depth ({wide} over {deep} by {claimed:.1%}): measured "
                         f"{r['difference']:+.2%} ± {r['std_error']:.2%} ({r['verdict']}), "
                         f"but {wide} has {r['param_ratio']:.1f}x the parameters of {deep}.")
    if "strata" in t.columns:
        blind = [(s, c, per) for s, c, per in cmp.strata_of_best(t)
                 if per and min(r / n for r, n in per.values()) < 0.99]
        for study, config, per in blind:
            worst = min(per, key=lambda k: per[k][0] / per[k][1])
            best_row = cmp.terminal_trials(t[(t["study"] == study) & (t["config"] == config)])
            em = best_row["final_exact_match"].max()
            if em >= 0.99:
                lines.append(f"{config} ({study}): {em:.2%} on uniform pairs, but "
                             f"{per[worst][0] / per[worst][1]:.2%} on \"{worst}\": a uniform "
                             f"test set cannot show this.")
    grid = cmp.compute(cmp.grid_trials(res))
    measured = [c for c in CLAIMS if c in set(t["config"])]
    if len(measured) == len(CLAIMS):
        hours = (grid["gpu_seconds"].sum() or grid["cpu_seconds"].sum()) / 3600
        lines.append(f"All seven reference configs: the reference reports {TOTAL_GPU_HOURS:g} "
                     f"A100-hours; these results used {hours:.2f} "
                     f"{'GPU' if grid['gpu_seconds'].sum() else 'CPU-core'}-hours.")
    for r in cmp.compute(t).to_dict("records"):
        claimed_h = sum(CLAIMS[c].gpu_hours for c in t[t["study"] == r["study"]]["config"]
                        .unique() if c in CLAIMS)
        if claimed_h:
            used = (r["gpu_seconds"] or r["cpu_seconds"]) / 3600
            unit = "GPU" if r["gpu_seconds"] else "CPU-core"
            lines.append(f"{r['study']}: the reference spends {claimed_h:g} A100-hours on these "
                         f"configs; this study used {used:.2f} {unit}-hours.")
    if not lines:
        lines.append("No trial of a reference config in these results.")
    for line in lines:
        doc.p("- " + line)
    return lines


def build(results_dir: str | Path, out: str | Path | None = None,
          fmt: str = "md") -> tuple[Path, list[str]]:
    """Write the report; return its path and a few summary lines for the terminal."""
    res = load_results(results_dir)
    out = Path(out) if out else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    studies_section(doc, res)
    reference_section(doc, res)
    fit = fit_section(doc, res, out)
    strata_section(doc, res)
    curves_section(doc, res, out)
    wd = width_depth_section(doc, res, out)
    lr_section(doc, res, out)
    search = search_section(doc, res, out)
    compute_section(doc, res)
    audit = audit_section(doc, res, wd)
    (out / "report.md").write_text(doc.markdown())
    if fmt == "html":
        (out / "report.html").write_text(doc.html())
    summary = [f"{name}: {len(res.trials[res.trials['study'] == name])} trials, best exact "
               f"match {pct(res.trials[res.trials['study'] == name]['best_exact_match'].max())}"
               f"{' (partial)' if info['partial'] else ''}"
               for name, info in sorted(res.studies.items())]
    if fit is not None:
        summary.append(f"fit: {_level(fit, 'N50', 0.5)}; {_level(fit, 'N99', 0.99)}")
    summary += audit[:3] + search
    return out / "report.md", summary

