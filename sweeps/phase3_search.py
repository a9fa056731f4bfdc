"""Phase 3: search for the smallest transformer that adds (Optuna TPE + ASHA).

    python sweeps/phase3_search.py --help
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "configs" / "phase3_search.yaml"


def main(argv: list[str]) -> int:
    from addray import sweep_cli
    from addray.search import DEFAULT_TRIALS, SMOKE_TRIALS, SearchOptions, run_search

    p = sweep_cli.parser("phase3", "Phase 3: Optuna (TPE) proposes architectures and "
                         "training settings within the bounds of a search-space YAML file; "
                         "ASHA prunes; the objective prefers any model at >= the exact-match "
                         "threshold to any below, and among those the fewest parameters. "
                         "The best config is then trained again with more seeds.",
                         grid=False)
    g = p.add_argument_group("search")
    g.add_argument("--space", default=str(SPACE), help="search-space YAML file")
    g.add_argument("--trials", type=int, help=f"trials to run (default {DEFAULT_TRIALS}, or "
                   f"unlimited with --time-budget; {SMOKE_TRIALS} with --smoke-test)")
    g.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop starting trials after this many seconds of searching")
    g.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as "
                   "the resources allow; fewer let TPE learn from more finished trials)")
    g.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler")
    g.add_argument("--confirm-seeds", type=int, default=2, help="train the best config "
                   "again with this many more seeds (study STUDY-seeds; 0: skip)")
    g.add_argument("--finish", action="store_true", help="end an interrupted search where "
                   "it stands: no new trials; save the best trial so far and confirm it")
    args = p.parse_args(argv)
    opts = SearchOptions(space=args.space, trials=args.trials, time_budget_s=args.time_budget,
                         max_concurrent=args.max_concurrent, sampler_seed=args.sampler_seed,
                         confirm_seeds=args.confirm_seeds, finish=args.finish,
                         **sweep_cli.common_options(args))
    rows = run_search(opts)
    return 0 if rows else 1


if __name__ == "__main__":
    from addray import cli

    cli.run(lambda: main(sys.argv[1:]))
