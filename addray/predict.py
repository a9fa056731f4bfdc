"""``python -m addray.predict CHECKPOINT A B``: a trained model's answer to A + B."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from addray import cli
from addray.checkpoint import load_model
from addray.data import DataError, Vocab, from_tokens, make_example
from addray.decode import greedy_decode


def parse_pairs(path: str) -> list[tuple[int, int]]:
    pairs = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise DataError(f"{path}:{lineno}: expected two non-negative integers 'A B', "
                            f"got {line.strip()!r}")
        pairs.append((int(parts[0]), int(parts[1])))
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
    out = []
    for tokens in generated:
        if len(tokens) < 2 or tokens[-1] != vocab.pad:
            out.append("?")
            continue
        try:
            out.append(str(from_tokens(tokens[:-1], vocab.base)))
        except ValueError:
            out.append("?")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m addray.predict",
        description="Print a trained model's answer to A + B (greedy decoding). With --file, "
                    "read lines 'A B' and print one answer per line; '?' marks output that "
                    "is not a well-formed number.")
    p.add_argument("checkpoint", help="checkpoint.pt (or the folder holding it)")
    p.add_argument("operands", nargs="*", type=int, metavar="A B")
    p.add_argument("--file", help="file of lines 'A B'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    if args.file is None and len(args.operands) != 2:
        p.error("give two operands A B, or --file PAIRS")
    if args.file is not None and args.operands:
        p.error("give either A B or --file, not both")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device = 'cuda': CUDA is not available on this machine")
    pairs = parse_pairs(args.file) if args.file else [tuple(args.operands)]
    results = answers(args.checkpoint, pairs, args.device)
    print("\n".join(results))
    if "?" in results:
        print(f"warning: {results.count('?')} of {len(results)} answers were malformed",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
