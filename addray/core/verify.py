"""The verification protocol: has a trained model learned addition?

For a checkpoint trained on operands 0..M in base B, ``verify`` answers, with the same
greedy decoder as evaluation and prediction:

1. the edge-case suite (``addray.core.strata.edge_cases``: zeros, the largest
   operands, sums at token and decimal boundaries, one-token pairs with and without
   a carry);
2. ``n_uniform`` distinct pairs drawn uniformly from 0..M x 0..M with a fixed seed
   (default 10,000, seed 0);
3. every pair of one-token operands (B x B pairs, within 0..M);
4. the carry boundary: ``n_boundary`` pairs (default 2,000, same seed) whose lowest
   tokens sum to B-1, and as many summing to B (``strata.carry_boundary_pairs``);

and reports exact match on the uniform pairs, in every stratum (operand lengths in
tokens x low-token carry, over the pairs of 2 and 3) and at each of the two carry
boundary sums, each with a 95% Wilson interval. The verdict is **learned** only if
every edge case is right and the uniform pairs, every stratum and both carry boundary
sums are at or above 99%. It also counts how many of the
tested pairs are in the model's training set (regenerated from its saved data
settings) and the exact match on the others.

Why more than uniform pairs: with operands uniform in 0..999, 1% of pairs have two
one-token operands and 2% sit at the carry boundary, so a model can score 99.7% on
uniform pairs and still get one boundary pair in eight wrong (a committed
2,000-parameter model does), or answer ``0 + 0 = 100``. Training data is therefore
balanced across operand lengths by default (``data.sampling: balanced``), and every
evaluation during training reports ``worst_stratum``, ``carry_boundary`` and
``edge_cases``; the trainer's held-out set is smaller than verify's, so a phase 3 search
still runs verify on every model it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from addray.core import strata
from addray.core.checkpoint import load_model
from addray.core.config import DataConfig
from addray.core.data import load_data, operands
from addray.core.decode import greedy_decode
from addray.core.model import count_parameters
from addray.core.tokens import Vocab, answer_text, make_example

THRESHOLD = 0.99
DEFAULT_UNIFORM = 10_000
DEFAULT_SEED = 0
DEFAULT_BOUNDARY = 2_000


@dataclass
class Row:
    name: str
    right: int
    n: int

    @property
    def rate(self) -> float:
        return self.right / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the rate."""
        if not self.n:
            return (float("nan"), float("nan"))
        ci = binomtest(self.right, self.n).proportion_ci(confidence_level=0.95,
                                                          method="wilson")
        return (float(ci.low), float(ci.high))


@dataclass
class Verdict:
    checkpoint: str
    params: int
    operand_max: int
    base: int
    edge: list[tuple[int, int, str, bool]]  # a, b, the model's answer, right
    uniform: Row
    one_token: Row
    strata: list[Row]
    in_training: int  # tested pairs that are also training pairs
    unseen: Row  # exact match on the tested pairs not in the training set
    boundary: list[Row] = field(default_factory=list)  # low tokens summing to B-1, to B
    learned: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def row(r: Row) -> dict:
            low, high = r.interval
            return {"name": r.name, "right": r.right, "n": r.n, "exact_match": r.rate,
                    "ci95": [low, high]}

        return {"checkpoint": self.checkpoint, "params": self.params,
                "operand_max": self.operand_max, "base": self.base,
                "verdict": "learned" if self.learned else "not learned",
                "reasons": self.reasons, "threshold": THRESHOLD,
                "edge_cases": [{"a": a, "b": b, "answer": got, "right": ok}
                               for a, b, got, ok in self.edge],
                "uniform": row(self.uniform), "one_token": row(self.one_token),
                "strata": [row(r) for r in self.strata],
                "carry_boundary": [row(r) for r in self.boundary],
                "in_training": self.in_training, "unseen": row(self.unseen)}


def uniform_pairs(n: int, operand_max: int, seed: int) -> list[tuple[int, int]]:
    side = operand_max + 1
    idx = np.random.default_rng(seed).choice(side * side, size=min(n, side * side),
                                             replace=False)
    return [(int(i // side), int(i % side)) for i in idx]


def training_pairs(d: DataConfig) -> set[tuple[int, int]]:
    """The pairs a model with these data settings was trained on."""
    return {operands(ex, d.base) for ex in load_data(d).train}


def verify(checkpoint: str | Path, n_uniform: int = DEFAULT_UNIFORM,
           seed: int = DEFAULT_SEED, device: str = "cpu",
           n_boundary: int = DEFAULT_BOUNDARY) -> Verdict:
    model, cfg = load_model(checkpoint, device)
    m, base = cfg.data.operand_max, cfg.data.base
    vocab = Vocab(base)
    edge = strata.edge_cases(m, base)
    uniform = uniform_pairs(n_uniform, m, seed)
    one_token = [(a, b) for a in range(min(base, m + 1)) for b in range(min(base, m + 1))]
    boundary = {s: strata.carry_boundary_pairs(s, m, base, n_boundary, seed)
                for s in (base - 1, base)}
    tested = list(dict.fromkeys(edge + uniform + one_token
                                + boundary[base - 1] + boundary[base]))  # each decoded once
    examples = [make_example(a, b, base) for a, b in tested]
    max_new = len(make_example(m, m, base)["target"])
    with torch.no_grad():
        generated = greedy_decode(model, [ex["input"] for ex in examples], max_new, vocab.pad,
                                  device=device)
    right = {p: g == ex["target"] for p, g, ex in zip(tested, generated, examples, strict=True)}
    answer = {p: answer_text(g, vocab) for p, g in zip(tested, generated, strict=True)}

    def row(name: str, pairs: list[tuple[int, int]]) -> Row:
        return Row(name, sum(right[p] for p in pairs), len(pairs))

    stratified = list(dict.fromkeys(uniform + one_token))
    per = strata.tally([strata.stratum_of(a, b, base) for a, b in stratified],
                       [right[p] for p in stratified])
    seen = training_pairs(cfg.data)
    unseen = [p for p in tested if p not in seen]
    v = Verdict(checkpoint=str(checkpoint), params=count_parameters(model), operand_max=m,
                base=base,
                edge=[(a, b, answer[(a, b)], right[(a, b)]) for a, b in edge],
                uniform=row(f"uniform ({len(uniform):,} pairs, seed {seed})", uniform),
                one_token=row("every one-token pair", one_token),
                strata=[Row(s.name, r, n) for s, (r, n) in per.items()],
                in_training=len(tested) - len(unseen), unseen=row("not in training", unseen),
                boundary=[row(f"low tokens sum to {s}" + (" (carry)" if s >= base else ""),
                              pairs) for s, pairs in boundary.items() if pairs])
    wrong_edges = [f"{a}+{b}" for a, b, _, ok in v.edge if not ok]
    if wrong_edges:
        more = f" and {len(wrong_edges) - 8} more" if len(wrong_edges) > 8 else ""
        v.reasons.append(f"{len(wrong_edges)} edge case(s) wrong: "
                         f"{', '.join(wrong_edges[:8])}{more}")
    v.reasons += [f"stratum {r.name}: {r.rate:.2%} < {THRESHOLD:.0%}"
                  for r in v.strata if r.rate < THRESHOLD]
    v.reasons += [f"carry boundary, {r.name}: {r.rate:.2%} < {THRESHOLD:.0%}"
                  for r in v.boundary if r.rate < THRESHOLD]
    if v.uniform.rate < THRESHOLD:
        v.reasons.append(f"uniform pairs: {v.uniform.rate:.2%} < {THRESHOLD:.0%}")
    v.learned = not v.reasons
    return v


def render(v: Verdict) -> str:
    """The verdict as a text table for the terminal."""

    def line(r: Row) -> str:
        low, high = r.interval
        return (f"  {r.name:<34} {r.right:>6}/{r.n:<6} {r.rate:8.2%}   "
                f"[{low:6.2%}, {high:6.2%}]")

    wrong = [(a, b, got) for a, b, got, ok in v.edge if not ok]
    out = [f"{v.checkpoint}: {v.params:,} parameters, operands 0..{v.operand_max}, "
           f"base {v.base}",
           f"edge cases: {len(v.edge) - len(wrong)}/{len(v.edge)} right"
           + "".join(f"\n  {a} + {b} = {a + b}, model says {got}" for a, b, got in wrong),
           f"{'':2}{'pairs':<34} {'right/n':>13} {'exact':>8}   95% interval",
           line(v.uniform), line(v.one_token), "per stratum (uniform and one-token pairs):"]
    out += [line(r) for r in v.strata]
    if v.boundary:
        out.append("carry boundary (pairs whose lowest tokens sum to base-1 or base):")
        out += [line(r) for r in v.boundary]
    out.append(f"{v.in_training:,} of the tested pairs are in the training set; "
               f"on the other {v.unseen.n:,}: {v.unseen.rate:.2%}")
    verdict = "LEARNED" if v.learned else "NOT LEARNED"
    out.append(f"verdict: {verdict}" + (f" ({'; '.join(v.reasons)})" if v.reasons else
                                        f" (every edge case, every stratum, the carry "
                                        f"boundary and the uniform pairs at "
                                        f">= {THRESHOLD:.0%})"))
    return "\n".join(out)
