"""``python -m addray.verify CHECKPOINT``: has this model learned addition?

Answers the edge-case suite, uniform pairs from a fixed seed, every pair of one-token
operands and pairs at the carry boundary (lowest tokens summing to base-1 or base), and
prints exact match per stratum and per boundary sum with 95% intervals. The verdict is
"learned" (exit 0) only if every edge case is right and the uniform pairs, every
stratum and both boundary sums are at >= 99%; otherwise exit 1. A bad input is one line
on stderr, exit 2. The protocol is in ``addray/core/verify.py`` and the README.
"""

from __future__ import annotations

import json
import sys

from addray import cli, store
from addray.core.device import resolve_device
from addray.core.verify import DEFAULT_BOUNDARY, DEFAULT_SEED, DEFAULT_UNIFORM, render, verify


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m addray.verify", description=__doc__.split("\n\n")[1])
    p.add_argument("checkpoint", help="checkpoint.pt (or the folder holding it), "
                   "also as an s3:// URI")
    p.add_argument("--uniform", type=cli.bounded(int, 1, 1_000_000), default=DEFAULT_UNIFORM,
                   help="uniform pairs to test")
    p.add_argument("--seed", type=cli.bounded(int, 0, 2**32 - 1), default=DEFAULT_SEED,
                   help="seed of the uniform and carry boundary pairs")
    p.add_argument("--boundary", type=cli.bounded(int, 1, 1_000_000), default=DEFAULT_BOUNDARY,
                   help="pairs to test at each carry boundary sum (base-1, base)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    args.checkpoint = store.local_checkpoint(args.checkpoint)  # s3://: fetched first
    resolve_device(args.device, "--device")
    verdict = verify(args.checkpoint, args.uniform, args.seed, args.device, args.boundary)
    print(json.dumps(verdict.to_dict(), indent=2) if args.json else render(verdict))
    return 0 if verdict.learned else 1


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
