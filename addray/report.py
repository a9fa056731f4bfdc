"""``python -m addray.report RESULTS [--out DIR] [--format md|html]``

Writes report.md (and report.html if asked) with PNG plots, and prints a short
summary. Reads files only; never imports Ray.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from addray import analysis as an  # noqa: E402
from addray import cli  # noqa: E402
from addray import study_files as sf  # noqa: E402
from addray.reference import CLAIMS, MINIMUM_VIABLE_PARAMS, WIDTH_BEATS_DEPTH  # noqa: E402

SECTIONS = ["Studies", "Results against the reference", "Exact match vs parameters",
            "Learning curves", "Width vs depth", "Learning rates", "Smallest model that adds",
            "Compute", "Reference audit"]


@dataclass
class Doc:
    """A report as blocks, rendered to Markdown or HTML."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", (name, alt)))

    def markdown(self) -> str:
        out = ["# addray report", ""]
        for kind, val in self.blocks:
            if kind == "h":
                out += [f"## {val}", ""]
            elif kind == "p":
                out += [str(val), ""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
            else:
                header, rows = val
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
                out.append("")
        return "\n".join(out)

    def html(self) -> str:
        out = ["<!doctype html><meta charset='utf-8'><title>addray report</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
               "</style><h1>addray report</h1>"]
        for kind, val in self.blocks:
            if kind == "h":
                out.append(f"<h2>{html.escape(str(val))}</h2>")
            elif kind == "p":
                out.append(f"<p>{html.escape(str(val))}</p>")
            elif kind == "img":
                out.append(f"<img src='{html.escape(val[0])}' alt='{html.escape(val[1])}' "
                           f"width='800'>")
            else:
                header, rows = val
                cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r)
                               + "</tr>" for r in rows)
                out.append(f"<table><tr>{cells}</tr>{body}</table>")
        return "\n".join(out)


def pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"


def count(n: float) -> str:
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "not reached" if n == math.inf else "-"
    if n >= 1e9:  # only an extrapolated fit bound gets here
        return f"{n:.1e}"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


# ----------------------------------------------------------------------- sections

def studies_section(doc: Doc, res: an.Results) -> None:
    doc.h("Studies")
    rows = []
    for name, info in sorted(res.studies.items()):
        t = res.trials[res.trials["study"] == name]
        state = info.get("state", "unknown") + (" (partial)" if info.get("partial") else "")
        rows.append([name, state, len(t), pct(t["best_exact_match"].max()),
                     f"`{info.get('command', '') or '-'}`"])
    doc.table(["study", "state", "trials", "best exact match", "command"], rows)


def reference_section(doc: Doc, res: an.Results) -> None:
    doc.h("Results against the reference")
    doc.p("Measured: final exact match on held-out pairs, mean ± std across seeds, at the "
          "best learning rate of each config. Reference: as published (its test set "
          "overlaps its training set and its answers sit in the inputs).")
    stats = an.per_config(an.grid_trials(res))
    best = stats.sort_values("exact_match").groupby(["study", "config"]).tail(1)
    for study, g in best.groupby("study"):
        rows = []
        for r in g.sort_values("params", ascending=False).to_dict("records"):
            c = CLAIMS.get(r["config"])
            t = res.trials[(res.trials["study"] == study) & (res.trials["config"] == r["config"])
                           & (res.trials["lr"] == r["lr"])]
            statuses = ", ".join(f"{k} {v}" for k, v in t["status"].value_counts().items())
            std = "" if math.isnan(r["exact_match_std"]) else f" ± {r['exact_match_std']:.2%}"
            rows.append([r["config"], f"{r['d_model']:.0f}d-{r['n_layers']:.0f}L",
                         count(c.params) if c else "-", count(r["params"]),
                         pct(c.exact_match) if c else "-",
                         f"{r['exact_match']:.2%}{std} (n={r['seeds']})", f"{r['lr']:g}",
                         statuses, f"{c.gpu_hours:g}" if c else "-",
                         f"{t['wall_seconds'].sum() / 3600:.2f}"])
        doc.p(f"**{study}**")
        doc.table(["config", "shape", "ref params", "real params", "ref exact match",
                   "measured exact match", "lr", "trials", "ref GPU h", "measured h"], rows)


def fit_section(doc: Doc, res: an.Results, out: Path) -> an.LogisticFit | None:
    doc.h("Exact match vs parameters")
    t = an.at_best_lr(an.terminal_trials(an.grid_trials(res)).dropna(
        subset=["params", "final_exact_match"]))
    if t.empty:
        doc.p("No fixed-config study (phase 1, phase 2) in these results.")
        return None
    pruned = t["status"].isin(sf.CENSORED_STATUSES).to_numpy()
    fit = None
    try:
        fit = an.fit_logistic(t["params"], t["final_exact_match"], censored=pruned)
    except an.AnalysisError as exc:
        doc.p(f"No fit: {exc}.")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for study, g in t.groupby("study"):
        mask = g["status"].isin(sf.CENSORED_STATUSES)
        pts = ax.scatter(g.loc[~mask, "params"], g.loc[~mask, "final_exact_match"],
                         label=study)
        ax.scatter(g.loc[mask, "params"], g.loc[mask, "final_exact_match"], marker="^",
                   facecolors="none", edgecolors=pts.get_facecolor(),
                   label=f"{study} (stopped early: lower bound)" if mask.any() else None)
    if fit is not None and len(t):
        xs = np.logspace(np.log10(t["params"].min()) - 0.3, np.log10(t["params"].max()) + 0.3)
        ax.plot(xs, fit.predict(xs), "k--", label="logistic fit")
        ci = fit.ci
        doc.p(f"Logistic fit in log10(parameters) over {fit.n_points} trials, each config "
              f"at its best learning rate ({fit.n_censored} pruned or out of time, counted "
              f"as lower bounds): slope k = {fit.k:.2f}, "
              f"N50 = {count(fit.n50)} (95% CI {count(ci.get('n50', (math.nan,))[0])}–"
              f"{count(ci.get('n50', (0, math.nan))[1])}), N99 = {count(fit.n99)} (95% CI "
              f"{count(ci.get('n99', (math.nan,))[0])}–{count(ci.get('n99', (0, math.nan))[1])}"
              f"). Bootstrap over trials and seeds; N50/N99 are the parameters needed for "
              f"50% and 99% exact match at these budgets."
              + "".join(f" {name} lies outside the measured sizes ({count(fit.measured[0])}"
                        f"–{count(fit.measured[1])}): an extrapolation."
                        for name, n in (("N50", fit.n50), ("N99", fit.n99))
                        if fit.extrapolated(n)))
    _save_size_plot(fig, ax, out / "fit.png", "held-out exact match")
    doc.image("fit.png", "exact match vs parameters")
    return fit


def _save_size_plot(fig: plt.Figure, ax: plt.Axes, path: Path, ylabel: str) -> None:
    """Exact match against log-scaled parameters, written as a PNG."""
    ax.set_xscale("log")
    ax.set_xlabel("parameters (counted on the model)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves_section(doc: Doc, res: an.Results, out: Path) -> None:
    doc.h("Learning curves")
    if res.curves.empty:
        doc.p("No learning curves recorded (curves.csv missing).")
        return
    status = res.trials.set_index(["study", "trial_id"])["status"].to_dict()
    for study, g in res.curves.groupby("study"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for trial_id, c in g.groupby("trial_id"):
            c = c.sort_values("step")
            label = f"{c['config'].iloc[0]} s{c['seed'].iloc[0]:.0f} lr{c['lr'].iloc[0]:g}"
            (line,) = ax.plot(c["step"], c["exact_match"], label=label)
            if status.get((study, trial_id)) in sf.CENSORED_STATUSES:
                ax.plot(c["step"].iloc[-1], c["exact_match"].iloc[-1], "x", ms=10,
                        color=line.get_color())
        ax.set_xlabel("training step")
        ax.set_ylabel("held-out exact match")
        ax.set_title(f"{study} (x = pruned by ASHA or out of time)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"curves_{study}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        doc.image(name, f"learning curves of {study}")


def width_depth_section(doc: Doc, res: an.Results) -> pd.DataFrame:
    doc.h("Width vs depth")
    wd = an.width_vs_depth(an.grid_trials(res))
    if wd.empty:
        doc.p("No study holds a wider-and-shallower / narrower-and-deeper pair of configs.")
        return wd
    doc.table(["study", "wide", "deep", "params ratio", "wide", "deep", "difference",
               "verdict"],
              [[r["study"], r["wide"], r["deep"], f"{r['param_ratio']:.1f}x",
                pct(r["wide_exact_match"]), pct(r["deep_exact_match"]),
                f"{r['difference']:+.2%} ± {r['std_error']:.2%}", r["verdict"]]
               for r in wd.to_dict("records")])
    doc.p("A params ratio far from 1 confounds width with size: the reference's phase-2 "
          "models are not the same size when counted.")
    return wd


def lr_section(doc: Doc, res: an.Results) -> None:
    doc.h("Learning rates")
    lr = an.learning_rates(an.grid_trials(res))
    if lr.empty:
        doc.p("No study swept more than one learning rate for a config.")
        return
    doc.table(["study", "config", "grid", "best lr", "exact match", "warning"],
              [[r["study"], r["config"], ", ".join(f"{v:g}" for v in r["grid"]),
                f"{r['best_lr']:g}", pct(r["exact_match"]),
                "best at the edge of the grid: widen it" if r["at_edge"] else ""]
               for r in lr.to_dict("records")])


def search_section(doc: Doc, res: an.Results, out: Path) -> list[str]:
    """Phase 3: every search trial by size and accuracy, the Pareto frontier, the smallest
    model at the threshold with its extra seeds, against the reference's minimum size."""
    doc.h("Smallest model that adds")
    searches = an.search_studies(res)
    if not searches:
        doc.p("No search study in these results (`python sweeps/phase3_search.py`).")
        return []
    lines = []
    for study, confirm in sorted(searches.items()):
        info = res.studies[study]
        threshold = float(info.get("threshold", 0.99))
        t = an.terminal_trials(res.trials[res.trials["study"] == study])
        front = an.pareto_frontier(t)
        best = an.smallest_above(t, threshold)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        cut = t["status"].isin(sf.CENSORED_STATUSES)
        ax.scatter(t.loc[~cut, "params"], t.loc[~cut, "final_exact_match"], alpha=0.7,
                   label=f"{study} trials")
        ax.scatter(t.loc[cut, "params"], t.loc[cut, "final_exact_match"], marker="^",
                   facecolors="none", edgecolors="C0", label="pruned / out of time")
        ax.step(front["params"], front["final_exact_match"], where="post", color="C3",
                label="Pareto frontier")
        lower = CLAIMS["phase1_lower"]
        ax.scatter([lower.params], [lower.exact_match], marker="s", color="k",
                   label=f"reference 'minimum viable' ({count(lower.params)}, "
                         f"{lower.exact_match:.1%})")
        ax.axvline(MINIMUM_VIABLE_PARAMS, color="k", ls=":", lw=1)
        ax.axhline(threshold, color="C2", ls="--", lw=1, label=f"{threshold:.0%}")
        name = f"search_{study}.png"
        _save_size_plot(fig, ax, out / name, "held-out exact match (final)")
        doc.p(f"**{study}**: {len(t)} trials ({info.get('state', 'unknown')}); objective: "
              f"fewest parameters at >= {threshold:.0%} held-out exact match.")
        doc.image(name, f"parameters vs exact match in {study}")
        doc.table(["config", "params", "exact match", "lr", "batch", "status"],
                  [[r["config"], f"{r['params']:,.0f}", pct(r["final_exact_match"]),
                    f"{r['lr']:.2g}", f"{r['batch_size']:.0f}", r["status"]]
                   for r in front.to_dict("records")])
        if best is None:
            lines.append(f"{study}: no trial reached {threshold:.0%} exact match.")
            continue
        seeds = [best]
        if confirm:
            c = an.terminal_trials(res.trials[res.trials["study"] == confirm])
            seeds += [r for _, r in c.iterrows()]
        ems = [float(r["final_exact_match"]) for r in seeds]
        doc.table(["study", "seed", "params", "exact match", "steps", "status"],
                  [[r["study"], f"{r['seed']:.0f}", f"{r['params']:,.0f}",
                    pct(r["final_exact_match"]), f"{r['steps']:.0f}", r["status"]]
                   for r in seeds])
        doc.p(f"Smallest at >= {threshold:.0%}: {best['config']} (settings: "
              f"`{best.get('suggestion', '') or '-'}`).")
        held = sum(em >= threshold for em in ems)
        lines.append(
            f"{study}: {best['config']} with {best['params']:,.0f} parameters reached "
            f"{best['final_exact_match']:.2%}; {held} of {len(ems)} seeds at >= {threshold:.0%} "
            f"(min {min(ems):.2%}). The reference's minimum viable size "
            f"(~{count(MINIMUM_VIABLE_PARAMS)}; its {count(lower.params)} model at "
            f"{lower.exact_match:.1%}) is {MINIMUM_VIABLE_PARAMS / best['params']:.0f}x this.")
    for line in lines:
        doc.p("- " + line)
    return lines


def compute_section(doc: Doc, res: an.Results) -> pd.DataFrame:
    doc.h("Compute")
    c = an.compute(res.trials)
    doc.table(["study", "trials", "wall h (sum over trials)", "GPU h", "CPU-core h"],
              [[r["study"], r["trials"], f"{r['wall_seconds'] / 3600:.2f}",
                f"{r['gpu_seconds'] / 3600:.2f}", f"{r['cpu_seconds'] / 3600:.2f}"]
               for r in c.to_dict("records")])
    return c


def audit_section(doc: Doc, res: an.Results, wd: pd.DataFrame) -> list[str]:
    """Statements computed from the data: where the reference's claims hold or not."""
    doc.h("Reference audit")
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
        done = an.at_best_lr(an.terminal_trials(rows))
        if not done.empty:
            em, lr = done["final_exact_match"].mean(), done["lr"].iloc[0]
            steps = done["steps"].max()
            cut = done["status"].isin(sf.CENSORED_STATUSES).any()
            where = f"lr {lr:g}, {steps:.0f} of {done['max_steps'].max():.0f} steps"
            if cut and em < claim.exact_match - 0.05:
                # stopped early: a lower bound cannot show that a claim is too high
                lines.append(f"{name}: {em:.2%} ({where}, stopped early: a lower bound) "
                             f"neither confirms nor refutes the claimed "
                             f"{claim.exact_match:.2%}.")
            else:
                cmp = ("matches" if abs(em - claim.exact_match) <= 0.05 else
                       "is above" if em > claim.exact_match else "is below")
                lines.append(f"{name}: measured exact match {em:.2%} ({where}) {cmp} the "
                             f"claimed {claim.exact_match:.2%}.")
    small = an.terminal_trials(t)
    small = small[(small["params"] < MINIMUM_VIABLE_PARAMS) & (small["final_exact_match"] >= 0.9)]
    if not small.empty:
        r = small.sort_values("params").iloc[0]
        lines.append(f"Minimum viable size (~{count(MINIMUM_VIABLE_PARAMS)}) does not hold: "
                     f"{r['config']} with {r['params']:,.0f} parameters reached "
                     f"{r['final_exact_match']:.2%} at lr {r['lr']:g}.")
    if not wd.empty:
        wide, deep, claimed = WIDTH_BEATS_DEPTH
        hit = wd[(wd["wide"] == wide) & (wd["deep"] == deep)]
        for r in hit.to_dict("records"):
            lines.append(f"Width beats depth ({wide} over {deep} by {claimed:.1%}): measured "
                         f"{r['difference']:+.2%} ± {r['std_error']:.2%} ({r['verdict']}), "
                         f"but {wide} has {r['param_ratio']:.1f}x the parameters of {deep}.")
    gpu = an.compute(t)
    for r in gpu.to_dict("records"):
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


# ------------------------------------------------------------------------- command

def build(results_dir: str | Path, out: str | Path | None = None,
          fmt: str = "md") -> tuple[Path, list[str]]:
    res = an.load_results(results_dir)
    out = Path(out) if out else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    studies_section(doc, res)
    reference_section(doc, res)
    fit = fit_section(doc, res, out)
    curves_section(doc, res, out)
    wd = width_depth_section(doc, res)
    lr_section(doc, res)
    search = search_section(doc, res, out)
    compute_section(doc, res)
    audit = audit_section(doc, res, wd)
    (out / "report.md").write_text(doc.markdown())
    if fmt == "html":
        (out / "report.html").write_text(doc.html())
    summary = [f"{name}: {len(res.trials[res.trials['study'] == name])} trials, best exact match "
               f"{pct(res.trials[res.trials['study'] == name]['best_exact_match'].max())}"
               f"{' (partial)' if info['partial'] else ''}"
               for name, info in sorted(res.studies.items())]
    if fit is not None:
        summary.append(f"fit: N50 = {count(fit.n50)}, N99 = {count(fit.n99)}")
    summary += audit[:3] + search
    return out / "report.md", summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m addray.report", description=__doc__.split(
        "\n\n")[1].replace("\n", " "))
    p.add_argument("results", help="results folder (holding study folders) or one study")
    p.add_argument("--out", help="output folder (default: the results folder)")
    p.add_argument("--format", choices=["md", "html"], default="md",
                   help="md writes report.md; html writes report.html too")
    args = p.parse_args(argv)
    path, summary = build(args.results, args.out, args.format)
    print("\n".join(summary))
    print(f"wrote {path}" + (f" and {path.with_suffix('.html')}" if args.format == "html"
                              else ""))
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
