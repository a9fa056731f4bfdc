"""The addition task's examples: disjoint train/test pairs, sampling, JSONL files.

Pairs are drawn as distinct pair indices ``a * (operand_max + 1) + b``.

- Held-out pairs: ``n_test`` drawn uniformly (the same draw the reference's sampling
  would make, without its overlap), then, for every stratum (``addray.core.strata``)
  with fewer than ``min_per_stratum`` of them, more pairs of that stratum. Exact match
  is measured on the uniform part; strata on all of them.
- Training pairs, ``sampling: uniform``: the ``n_train`` other pairs of the same draw.
  ``sampling: balanced``: each combination of operand lengths in tokens gets an equal
  share of ``n_train``, values drawn uniformly within it (so carries are as common as
  in uniform pairs of those lengths); a combination with fewer pairs than its share
  repeats them. Held-out pairs are never trained on, in either case.
- ``boundary_share`` p > 0: then each training operand, with probability p, has its
  lowest token replaced by one of 0, 1, 2, base-3, base-2, base-1 (its length in tokens
  kept). Low tokens at the carry boundary (1 + 99, 0 + 999, 500 + 500) are what small
  models get wrong by one; uniform values give each of them 1% of operands. A changed
  pair that is held out, or beyond operand_max, keeps its old value.
- ``carry_share`` q > 0: then each training pair, with probability q, has the second
  operand's lowest token set so that the two lowest tokens sum to base-2, base-1 or base
  (one of the three at random): the sums either side of the carry decision, which
  uniform values give 3% of pairs and which small models get wrong most (low tokens
  summing to exactly base-1, as 45 + 54: 12-30% wrong against 0.1-1.3% of other pairs
  for three 2,000-parameter models, docs/LOG.md).
  Lengths kept; a pair that would be held out, beyond operand_max, or whose token would
  leave 0..base-1, keeps its old value. Applied after ``boundary_share``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from addray import files
from addray.core import strata
from addray.core.config import DataConfig
from addray.core.tokens import Vocab, from_tokens, make_example, to_tokens
from addray.errors import DataError


@dataclass
class Dataset:
    train: list[dict]
    test: list[dict]  # the uniform held-out examples first, then the strata's extra ones
    n_uniform: int  # how many of ``test`` are the uniform sample


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


def _index(pairs: np.ndarray, side: int) -> np.ndarray:
    return pairs[:, 0] * side + pairs[:, 1]


def sample_rect(rng: np.random.Generator, a_range: tuple[int, int],
                b_range: tuple[int, int], k: int, side: int, exclude: np.ndarray,
                carry: bool | None = None, base: int = 100,
                repeat: bool = False) -> np.ndarray:
    """``k`` pairs with a in a_range, b in b_range (inclusive), optionally with the given
    low-token carry, none in ``exclude`` (sorted pair indices). Distinct; with ``repeat``
    a rectangle holding fewer than k such pairs gives each at least k // n times.
    Without ``repeat`` it gives all it has. Returns an int64 array (m, 2)."""
    (a0, a1), (b0, b1) = a_range, b_range
    size = (a1 - a0 + 1) * (b1 - b0 + 1)

    def keep(idx: np.ndarray) -> np.ndarray:
        a, b = idx // side, idx % side
        ok = ~np.isin(idx, exclude, assume_unique=False)
        if carry is not None:
            ok &= ((a % base + b % base) >= base) == carry
        return idx[ok]

    if size <= 4 * k + 10_000:  # small: list every pair
        a, b = np.meshgrid(np.arange(a0, a1 + 1), np.arange(b0, b1 + 1), indexing="ij")
        cand = keep((a * side + b).ravel())
        if len(cand) >= k:
            chosen = rng.choice(cand, size=k, replace=False)
        elif repeat and len(cand):
            chosen = np.concatenate([np.tile(cand, k // len(cand)),
                                     rng.choice(cand, size=k % len(cand), replace=False)])
        else:
            chosen = cand
    else:  # large: draw, drop what is excluded or repeated, until there are k
        chosen = np.empty(0, dtype=np.int64)
        for _ in range(50):  # a rectangle this large runs out only if almost all excluded
            if len(chosen) >= k:
                break
            draw = (rng.integers(a0, a1 + 1, 2 * k + 100) * side
                    + rng.integers(b0, b1 + 1, 2 * k + 100))
            merged = np.concatenate([chosen, keep(draw)])
            _, first = np.unique(merged, return_index=True)
            chosen = merged[np.sort(first)]
        chosen = chosen[:k]
    return np.stack([chosen // side, chosen % side], axis=1).astype(np.int64)


def stratum_extra(test: np.ndarray, taken: np.ndarray, operand_max: int, base: int,
                  min_per_stratum: int, seed: int) -> np.ndarray:
    """Held-out pairs added to each stratum that ``test`` holds fewer than
    ``min_per_stratum`` of, none of them in ``taken`` (sorted pair indices)."""
    side = operand_max + 1
    rng = np.random.default_rng([seed, 1])
    have: dict[strata.Stratum, int] = {}
    for a, b in test.tolist():
        s = strata.stratum_of(a, b, base)
        have[s] = have.get(s, 0) + 1
    extra = []
    for s in strata.all_strata(operand_max, base):
        need = min_per_stratum - have.get(s, 0)
        if need > 0:
            extra.append(sample_rect(
                rng, strata.length_range(s.len_a, operand_max, base),
                strata.length_range(s.len_b, operand_max, base), need, side, taken,
                carry=s.carry, base=base))
    return np.concatenate(extra) if extra else np.empty((0, 2), dtype=np.int64)


def balanced_pairs(n: int, operand_max: int, base: int, exclude: np.ndarray,
                   seed: int) -> np.ndarray:
    """``n`` training pairs, operand lengths in tokens drawn evenly (module docstring)."""
    side = operand_max + 1
    rng = np.random.default_rng([seed, 2])
    lengths = range(1, len(to_tokens(operand_max, base)) + 1)
    combos = [(strata.length_range(la, operand_max, base),
               strata.length_range(lb, operand_max, base)) for la in lengths for lb in lengths]
    shares = [n // len(combos) + (i < n % len(combos)) for i in range(len(combos))]
    parts = [sample_rect(rng, ra, rb, k, side, exclude, base=base, repeat=True)
             for (ra, rb), k in zip(combos, shares, strict=True)]
    pairs = np.concatenate(parts)
    return pairs[rng.permutation(len(pairs))]


def boundary_tokens(pairs: np.ndarray, share: float, operand_max: int, base: int,
                    exclude: np.ndarray, seed: int) -> np.ndarray:
    """``pairs`` with each operand's lowest token redrawn, with probability ``share``,
    from the values next to the carry boundary (module docstring). ``exclude``: sorted
    pair indices that must not appear."""
    if share <= 0 or len(pairs) == 0:
        return pairs
    rng = np.random.default_rng([seed, 3])
    values = np.array(sorted({v for v in (0, 1, 2, base - 3, base - 2, base - 1)
                              if 0 <= v < base}), dtype=np.int64)
    hit = rng.random(pairs.shape) < share
    new = np.where(hit, pairs - pairs % base + rng.choice(values, size=pairs.shape), pairs)
    side = operand_max + 1
    ok = (new <= operand_max).all(axis=1) & ~np.isin(_index(new, side), exclude)
    return np.where(ok[:, None], new, pairs)


def carry_edge(pairs: np.ndarray, share: float, operand_max: int, base: int,
               exclude: np.ndarray, seed: int) -> np.ndarray:
    """``pairs`` with, with probability ``share`` each, the second operand's lowest token
    set so that the lowest tokens sum to base-2, base-1 or base (module docstring).
    ``exclude``: sorted pair indices that must not appear."""
    if share <= 0 or len(pairs) == 0:
        return pairs
    rng = np.random.default_rng([seed, 4])
    a, b = pairs[:, 0], pairs[:, 1]
    hit = rng.random(len(pairs)) < share
    low = base - 1 - a % base + rng.integers(-1, 2, size=len(pairs))
    new_b = np.where(hit & (low >= 0) & (low < base), b - b % base + low, b)
    new = np.stack([a, new_b], axis=1)
    ok = (new_b <= operand_max) & ~np.isin(_index(new, operand_max + 1), exclude)
    return np.where(ok[:, None], new, pairs)


def make_dataset(d: DataConfig) -> Dataset:
    """The examples for a data config, generated in memory (deterministic in d.seed)."""
    side = d.operand_max + 1
    train, test = split_pairs(d.n_train, d.n_test, d.operand_max, d.seed)
    taken = np.sort(np.concatenate([_index(train, side), _index(test, side)]))
    extra = stratum_extra(test, taken, d.operand_max, d.base, d.min_per_stratum, d.seed)
    held = np.sort(np.concatenate([_index(test, side), _index(extra, side)]))
    if d.sampling == "balanced":
        train = balanced_pairs(d.n_train, d.operand_max, d.base, held, d.seed)
    train = boundary_tokens(train, d.boundary_share, d.operand_max, d.base, held, d.seed)
    train = carry_edge(train, d.carry_share, d.operand_max, d.base, held, d.seed)

    def examples(pairs: np.ndarray) -> list[dict]:
        return [make_example(a, b, d.base) for a, b in pairs.tolist()]

    return Dataset(examples(train), examples(test) + examples(extra), len(test))


def load_data(d: DataConfig) -> Dataset:
    """Examples from the configured JSONL files (every held-out example counts as
    uniform), or generated in memory."""
    if d.train_file is None:
        return make_dataset(d)
    train = read_jsonl(d.train_file, d.base)
    test = read_jsonl(d.test_file, d.base)
    seen = {tuple(ex["input"]) for ex in train}
    overlap = sum(tuple(ex["input"]) in seen for ex in test)
    if overlap:
        raise DataError(f"{d.test_file}: {overlap} of {len(test)} held-out prompts "
                        f"also occur in {d.train_file}; test must be disjoint")
    return Dataset(train, test, len(test))


def operands(example: dict, base: int) -> tuple[int, int]:
    """(a, b) of an example's prompt ``a + b =``."""
    prompt = example["input"]
    plus = prompt.index(base)
    return from_tokens(prompt[:plus], base), from_tokens(prompt[plus + 1:-1], base)


DATA_LIMIT = 1 << 30  # a data file: 10M examples of the largest operands fit in ~700 MiB


def write_jsonl(path: str | Path, examples: list[dict]) -> None:
    files.write_text(path, "".join(json.dumps(ex) + "\n" for ex in examples))


def read_jsonl(path: str | Path, base: int = 100) -> list[dict]:
    """Read and check examples; a bad line raises DataError naming file and line."""
    path = Path(path)
    vocab = Vocab(base)
    try:
        lines = files.read_bounded(path, DATA_LIMIT, "data file").decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
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
    if not isinstance(prompt, list) or not isinstance(target, list):
        raise DataError(f"{where}: input and target must be lists of tokens")
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
