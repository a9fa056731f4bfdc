"""How the addition task is written in tokens. Pure Python: no torch, no numpy.

A number is written in base-``base`` tokens, most significant first (0 is ``[0]``).
With base 100 the vocabulary is 0-99, '+' = 100, '=' = 101, PAD = 102.

An example is ``input`` = the prompt ``a + b =`` and ``target`` = the answer's tokens
followed by PAD, which doubles as the end marker so the model learns when to stop.
(The reference generator pads before it slices, so its ``target`` is only PAD and its
``input`` contains the answer; see the report's reference audit.)
"""

from __future__ import annotations

from dataclasses import dataclass


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


def answer_text(tokens: list[int], vocab: Vocab) -> str:
    """A generated answer (tokens and end marker) as a decimal string; '?' when it is not
    a well-formed number followed by the end marker."""
    if len(tokens) < 2 or tokens[-1] != vocab.pad:
        return "?"
    try:
        return str(from_tokens(tokens[:-1], vocab.base))
    except ValueError:
        return "?"
