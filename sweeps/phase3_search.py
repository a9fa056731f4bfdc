"""Phase 3: search for the smallest transformer that adds (Optuna TPE + ASHA).

    python sweeps/phase3_search.py --help
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "configs" / "phase3_search.yaml"


def main(argv: list[str]) -> int:
    from addray import cli
    from addray.sweep import cli as sweep_cli
    from addray.sweep import cluster
    from addray.sweep.options import SearchOptions

    p = sweep_cli.parser("phase3", "Phase 3: Optuna (TPE) proposes architectures and "
                         "training settings within the bounds of a search-space YAML file; "
                         "ASHA prunes; the objective prefers any model above the threshold "
                         "to any below, and among those the fewest parameters. The best "
                         "config is then trained again with more seeds.")
    g = p.add_argument_group("search")
    g.add_argument("--space", default=str(SPACE), help="search-space YAML file")
    g.add_argument("--trials", type=cli.bounded(int, 1, 2000), help="trials to run (default "
                   "30, or unlimited with --time-budget; 4 with --smoke-test)")
    g.add_argument("--time-budget", type=cli.bounded(float, 1e-3, 30 * 86400),
                   metavar="SECONDS", help="stop starting trials after this many seconds")
    g.add_argument("--max-concurrent", type=cli.bounded(int, 1, 1024), help="trials at once "
                   "(default: as many as the resources allow; fewer let TPE learn from more "
                   "finished trials)")
    g.add_argument("--sampler-seed", type=cli.bounded(int, 0, 2**32 - 1), default=0,
                   help="seed of the TPE sampler")
    g.add_argument("--confirm-seeds", type=cli.bounded(int, 0, 100), default=2,
                   help="train the best config again with this many more seeds "
                   "(study STUDY-seeds; 0: skip)")
    g.add_argument("--finish", action="store_true", help="end an interrupted search where "
                   "it stands: no new trials; save the best trial so far and confirm it")
    args = p.parse_args(argv)
    args.address = args.address or cluster.job_address()  # a Ray job joins its cluster
    opts = SearchOptions(space=args.space, trials=args.trials, time_budget_s=args.time_budget,
                         max_concurrent=args.max_concurrent, sampler_seed=args.sampler_seed,
                         confirm_seeds=args.confirm_seeds, finish=args.finish,
                         **sweep_cli.common_options(args))
    cluster.prefer_loopback(opts.address)
    if args.dry_run:
        from addray.sweep.search import search_space

        def describe(o: SearchOptions) -> str:
            space = search_space(o)
            return f"a search over {space.source}, {len(space.dimensions)} searched settings"

        return sweep_cli.dry_run(opts, describe)
    from addray.sweep.search import run_search  # imports Ray

    return sweep_cli.study_exit_code(opts, run_search(opts))


if __name__ == "__main__":
    from addray import cli

    cli.run(lambda: main(sys.argv[1:]))
