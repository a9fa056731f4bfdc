"""``python -m addray.data --out DIR``: write train.jsonl and test.jsonl for the task."""

from __future__ import annotations

import sys

from addray import cli
from addray.core.config import from_dict
from addray.core.data import make_dataset, write_jsonl
from addray.core.tokens import max_example_length
from addray.errors import StudyError


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(
        prog="python -m addray.data",
        description="Write disjoint train.jsonl and test.jsonl (the uniform held-out pairs) "
                    "for the addition task.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--train", type=int, default=100_000, help="training examples (100000)")
    p.add_argument("--test", type=int, default=10_000, help="held-out examples (10000)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed (1234)")
    p.add_argument("--operand-max", type=int, default=999, help="operands are 0..N (999)")
    p.add_argument("--base", type=int, default=100, help="token base (100)")
    p.add_argument("--sampling", choices=["uniform", "balanced"], default="uniform",
                   help="training pairs: uniform, or operand lengths drawn evenly")
    p.add_argument("--overwrite", action="store_true",
                   help="replace train.jsonl and test.jsonl if OUT already holds them")
    args = p.parse_args(argv)
    data = {"base": args.base, "operand_max": args.operand_max, "n_train": args.train,
            "n_test": args.test, "seed": args.seed, "sampling": args.sampling}
    # the config's own rules check the options (one line naming the setting)
    longest = max_example_length(min(args.operand_max, 10**9), max(args.base, 2))
    cfg = from_dict({"data": data, "model": {"vocab_size": args.base + 3,
                                             "max_seq_len": max(longest, 1)}},
                    source="command line", name="data")
    out = cli.output_folder(args.out)
    held = [f for f in ("train.jsonl", "test.jsonl") if (out / f).exists()]
    if held and not args.overwrite:
        raise StudyError(f"--out {out}: already holds {' and '.join(held)}; pass --overwrite "
                         f"to replace them, or another --out")
    dataset = make_dataset(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", dataset.train)
    write_jsonl(out / "test.jsonl", dataset.test[: dataset.n_uniform])
    print(f"wrote {len(dataset.train)} training and {dataset.n_uniform} held-out examples to "
          f"{out}/ (operands 0..{args.operand_max}, base {args.base}, seed {args.seed}, "
          f"{args.sampling} sampling)")
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
