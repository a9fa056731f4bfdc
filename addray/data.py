"""The addition task: tokenization, disjoint train/test examples, JSONL files, batches.

A number is written in base-``base`` tokens, most significant first (0 is ``[0]``).
With base 100 the vocabulary is 0-99, '+' = 100, '=' = 101, PAD = 102.

An example is ``input`` = the prompt ``a + b =`` and ``target`` = the answer's tokens
followed by PAD, which doubles as the end marker so the model learns when to stop.
(The reference generator pads before slicing, so its ``target`` is only PAD and its
``input`` contains the answer; see ../shared/reference/AUDIT.md item 1.)

``python -m addray.data --out DIR`` writes train.jsonl and test.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from addray.errors import UserError


class DataError(UserError, ValueError):
    """Bad data file or data setting; the message is one line for the user."""


@dataclass(frozen=True)
class Vocab:
    base: int = 100

    @property
    def plus(self) -> int:
        return self.base

    @property
    def equals(self) -> int:
        return self.base + 1

    @property
    def pad(self) -> int:
        return self.base + 2

    @property
    def size(self) -> int:
        return self.base + 3


def to_tokens(n: int, base: int = 100) -> list[int]:
    """Base-``base`` digits of a non-negative integer, most significant first."""
    if n < 0:
        raise ValueError(f"cannot tokenize negative number {n}")
    if n == 0:
        return [0]
    digits = []
    while n > 0:
        digits.append(n % base)
        n //= base
    return digits[::-1]


def from_tokens(tokens: list[int], base: int = 100) -> int:
    value = 0
    for t in tokens:
        if not 0 <= t < base:
            raise ValueError(f"token {t} is not a base-{base} digit")
        value = value * base + t
    return value


def make_example(a: int, b: int, base: int = 100) -> dict:
    vocab = Vocab(base)
    prompt = to_tokens(a, base) + [vocab.plus] + to_tokens(b, base) + [vocab.equals]
    return {"input": prompt, "target": to_tokens(a + b, base) + [vocab.pad], "answer": a + b}


def max_example_length(operand_max: int, base: int = 100) -> int:
    """Tokens in the longest example (prompt + answer + end marker)."""
    n = len(to_tokens(operand_max, base))
    return n + 1 + n + 1 + len(to_tokens(2 * operand_max, base)) + 1


def max_answer_tokens(operand_max: int, base: int = 100) -> int:
    """Longest target: answer digits plus the end marker."""
    return len(to_tokens(2 * operand_max, base)) + 1


def split_pairs(n_train: int, n_test: int, operand_max: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs for train and test, disjoint, deterministic for a seed.

    Returns two int64 arrays of shape (n, 2).
    """
    side = operand_max + 1
    total = side * side
    if n_train + n_test > total:
        raise DataError(f"n_train + n_test = {n_train + n_test} exceeds the {total} distinct "
                        f"pairs of operands 0..{operand_max}")
    rng = np.random.default_rng(seed)
    # sampling distinct pair indices makes test and train disjoint by construction
    idx = rng.choice(total, size=n_train + n_test, replace=False)
    pairs = np.stack([idx // side, idx % side], axis=1).astype(np.int64)
    return pairs[n_test:], pairs[:n_test]


def make_datasets(n_train: int, n_test: int, operand_max: int = 999, base: int = 100,
                  seed: int = 1234) -> tuple[list[dict], list[dict]]:
    train_pairs, test_pairs = split_pairs(n_train, n_test, operand_max, seed)
    train = [make_example(int(a), int(b), base) for a, b in train_pairs]
    test = [make_example(int(a), int(b), base) for a, b in test_pairs]
    return train, test


def write_jsonl(path: str | Path, examples: list[dict]) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for ex in examples:
            f.write(json.dumps(ex) + "\n")
    tmp.replace(path)


def read_jsonl(path: str | Path, base: int = 100) -> list[dict]:
    """Read and check examples; a bad line raises DataError naming file and line."""
    path = Path(path)
    vocab = Vocab(base)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    examples = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        examples.append(_check_example(ex, vocab, where))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def _check_example(ex: object, vocab: Vocab, where: str) -> dict:
    if not isinstance(ex, dict) or set(ex) != {"input", "target", "answer"}:
        raise DataError(f"{where}: must be an object with keys input, target, answer")
    prompt, target, answer = ex["input"], ex["target"], ex["answer"]
    ok_tokens = all(isinstance(t, int) and 0 <= t < vocab.size for t in prompt + target)
    if not ok_tokens or not isinstance(answer, int):
        raise DataError(f"{where}: tokens must be integers in 0..{vocab.size - 1} "
                        f"and answer an integer")
    if not target or target[-1] != vocab.pad or vocab.pad in target[:-1] or len(target) < 2:
        raise DataError(f"{where}: target must be the answer's tokens followed by one PAD "
                        f"({vocab.pad}); got {target} (the reference generator's bug puts only "
                        f"PAD here and the answer in the input)")
    if prompt.count(vocab.plus) != 1 or not prompt or prompt[-1] != vocab.equals:
        raise DataError(f"{where}: input must be a + b = ; got {prompt}")
    plus = prompt.index(vocab.plus)
    try:
        a = from_tokens(prompt[:plus], vocab.base)
        b = from_tokens(prompt[plus + 1:-1], vocab.base)
        c = from_tokens(target[:-1], vocab.base)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None
    if a + b != c or c != answer:
        raise DataError(f"{where}: {a} + {b} != target {c} / answer {answer}")
    return ex


class TokenizedSet:
    """Examples as padded tensors; batches are trimmed to their longest example."""

    def __init__(self, examples: list[dict], vocab: Vocab):
        self.vocab = vocab
        seqs = [ex["input"] + ex["target"] for ex in examples]
        self.lengths = torch.tensor([len(s) for s in seqs])
        self.prompt_lens = torch.tensor([len(ex["input"]) for ex in examples])
        width = int(self.lengths.max())
        self.tokens = torch.full((len(seqs), width), vocab.pad, dtype=torch.long)
        for i, s in enumerate(seqs):
            self.tokens[i, : len(s)] = torch.tensor(s)
        # labels[i, j] is the token to predict after position j: only target tokens count
        labels = torch.full_like(self.tokens, -100)
        labels[:, :-1] = self.tokens[:, 1:]
        pos = torch.arange(width)
        keep = (pos[None, :] >= self.prompt_lens[:, None] - 1) & (
            pos[None, :] < self.lengths[:, None] - 1)
        self.labels = torch.where(keep, labels, torch.full_like(labels, -100))
        self.prompts = [ex["input"] for ex in examples]
        self.targets = [ex["target"] for ex in examples]

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, idx: torch.Tensor, pad_to: int | None = None) -> tuple[torch.Tensor, ...]:
        """(inputs, labels), each (B, T) with T the longest example in the batch minus one."""
        width = int(self.lengths[idx].max()) if pad_to is None else pad_to
        x = self.tokens[idx]
        y = self.labels[idx]
        if width > x.size(1):  # padding to a fixed length, as the reference does
            extra = width - x.size(1)
            x = torch.nn.functional.pad(x, (0, extra), value=self.vocab.pad)
            y = torch.nn.functional.pad(y, (0, extra), value=-100)
        return x[:, : width - 1].contiguous(), y[:, : width - 1].contiguous()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m addray.data",
        description="Write disjoint train.jsonl and test.jsonl for the addition task.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--train", type=int, default=100_000, help="training examples (100000)")
    p.add_argument("--test", type=int, default=10_000, help="held-out examples (10000)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed (1234)")
    p.add_argument("--operand-max", type=int, default=999, help="operands are 0..N (999)")
    p.add_argument("--base", type=int, default=100, help="token base (100)")
    args = p.parse_args(argv)
    try:
        for flag, value, low in (("--train", args.train, 1), ("--test", args.test, 1),
                                 ("--operand-max", args.operand_max, 1), ("--base", args.base, 2)):
            if value < low:
                raise DataError(f"{flag} = {value}: must be >= {low}")
        train, test = make_datasets(args.train, args.test, args.operand_max, args.base, args.seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(train)} training and {len(test)} held-out examples to {out}/ "
          f"(operands 0..{args.operand_max}, base {args.base}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
