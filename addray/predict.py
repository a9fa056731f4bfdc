"""``python -m addray.predict CHECKPOINT A B``: a trained model's answer to A + B."""

from __future__ import annotations

import sys

from addray import cli, files, store
from addray.core.checkpoint import load_model
from addray.core.decode import greedy_decode
from addray.core.device import resolve_device
from addray.core.tokens import Vocab, answer_text, make_example
from addray.errors import DataError

MAX_PAIRS = 1_000_000
MAX_DIGITS = 30
PAIRS_LIMIT = 64 << 20  # a million pairs of 30-digit operands


def parse_pairs(path: str) -> list[tuple[int, int]]:
    """Lines 'A B' of a text file; a bad line is one error naming the file and line."""
    try:
        lines = files.read_bounded(path, PAIRS_LIMIT, "pairs file").decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) file of lines 'A B'") from None
    pairs = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
            raise DataError(f"{path}:{lineno}: expected two non-negative integers 'A B', "
                            f"got {line.strip()[:60]!r}")
        if max(len(p) for p in parts) > MAX_DIGITS:
            raise DataError(f"{path}:{lineno}: an operand of more than {MAX_DIGITS} digits; "
                            f"the models here add numbers of a few tokens")
        pairs.append((int(parts[0]), int(parts[1])))
        if len(pairs) > MAX_PAIRS:
            raise DataError(f"{path}: more than {MAX_PAIRS:,} pairs; split the file")
    if not pairs:
        raise DataError(f"{path}: no pairs (expected lines 'A B')")
    return pairs


def answers(checkpoint: str, pairs: list[tuple[int, int]], device: str = "cpu") -> list[str]:
    """The model's answer to each pair as a decimal string, or '?' for malformed output."""
    model, cfg = load_model(checkpoint, device)
    top = cfg.data.operand_max
    for a, b in pairs:
        if not (0 <= a <= top and 0 <= b <= top):
            raise DataError(f"operands {a} and {b}: this model was trained on operands "
                            f"0..{top}; answers outside that range are not meaningful")
    vocab = Vocab(cfg.data.base)
    prompts = [make_example(a, b, vocab.base)["input"] for a, b in pairs]
    max_new = len(make_example(top, top, vocab.base)["target"])
    generated = greedy_decode(model, prompts, max_new, vocab.pad, device=device)
    return [answer_text(tokens, vocab) for tokens in generated]


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(
        prog="python -m addray.predict",
        description="Print a trained model's answer to A + B (greedy decoding). With --file, "
                    "read lines 'A B' and print one answer per line; '?' marks output that "
                    "is not a well-formed number.")
    p.add_argument("checkpoint", help="checkpoint.pt (or the folder holding it), "
                   "also as an s3:// URI")
    p.add_argument("operands", nargs="*", type=int, metavar="A B")
    p.add_argument("--file", help="file of lines 'A B'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    args.checkpoint = store.local_checkpoint(args.checkpoint)  # s3://: fetched first
    if args.file is None and len(args.operands) != 2:
        p.error("give two operands A B, or --file PAIRS")
    if args.file is not None and args.operands:
        p.error("give either A B or --file, not both")
    resolve_device(args.device, "--device")
    pairs = parse_pairs(args.file) if args.file else [tuple(args.operands)]
    results = answers(args.checkpoint, pairs, args.device)
    print("\n".join(results))
    if "?" in results:
        print(f"warning: {results.count('?')} of {len(results)} answers were malformed",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
