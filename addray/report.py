"""``python -m addray.report RESULTS [--out DIR] [--format md|html]``

Writes report.md (and report.html if asked) with PNG plots from every study under
RESULTS: tables against the reference, the fit of exact match against parameters,
per-stratum results, width vs depth, learning rates, the phase 3 search and the
reference audit; prints a short summary. Reads files only: imports neither Ray nor
torch, so results copied off a cluster can be reported on a laptop.
"""

from __future__ import annotations

import sys
from pathlib import Path

from addray import cli, store


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m addray.report", description=__doc__.split("\n\n")[1])
    p.add_argument("results", help="results folder (holding study folders) or one study; "
                   "or its s3:// URI (its files are fetched first)")
    p.add_argument("--out", help="output folder (default: the results folder; for an "
                   "s3:// URI, ./report)")
    p.add_argument("--format", choices=["md", "html"], default="md",
                   help="md writes report.md; html writes report.html too")
    args = p.parse_args(argv)
    if args.out is not None:
        cli.output_folder(args.out)
    from addray.analysis.report import build  # after the options: --help stays fast

    results = args.results
    if store.is_uri(results):  # object storage: its studies' files into a local folder
        import tempfile

        fetched = Path(tempfile.mkdtemp(prefix="addray-report-"))
        store.fetch_studies(store.Location.parse(results, "results"), fetched)
        results = str(fetched)
        args.out = args.out or str(cli.output_folder("report"))
    path, summary = build(results, args.out, args.format)
    print("\n".join(summary))
    print(f"wrote {path}" + (f" and {path.with_suffix('.html')}" if args.format == "html"
                              else ""))
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
