"""Held-out evaluation: what a model is judged on while it trains.

exact match comes from greedy decoding of the whole answer and its end marker, never
from teacher forcing; it is measured on the uniform held-out pairs (``exact_match``),
in every stratum (``strata``, ``worst_stratum``), on the held-out pairs at the carry
boundary (``carry_boundary``: the lower of the rates for pairs whose lowest tokens sum to
B-1 and to B, as ``addray.verify`` tests them; 1.0 when the held-out set has none) and
on the edge-case suite (``edge_cases``), all through the one decoder that prediction and
verification use.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from addray.core import strata
from addray.core.batches import TokenizedSet
from addray.core.data import operands
from addray.core.decode import greedy_decode
from addray.core.device import autocast, loss_precision
from addray.core.tokens import Vocab, make_example


class HeldOut:
    """The held-out examples (the uniform sample first, then the strata's extra pairs),
    their strata, which of them sit at the carry boundary, and the edge-case suite for
    operands 0..operand_max."""

    def __init__(self, test: list[dict], n_uniform: int, operand_max: int, base: int):
        self.vocab = Vocab(base)
        self.n_uniform = n_uniform
        self.uniform = TokenizedSet(test[:n_uniform], self.vocab)
        pairs = [operands(ex, base) for ex in test]
        self.strata = [strata.stratum_of(a, b, base) for a, b in pairs]
        low_sums = [a % base + b % base for a, b in pairs]
        self.boundary = {s: [i for i, x in enumerate(low_sums) if x == s]
                         for s in (base - 1, base)}
        edge = [make_example(a, b, base) for a, b in strata.edge_cases(operand_max, base)]
        self.n_edge = len(edge)
        self.prompts = [ex["input"] for ex in test + edge]
        self.targets = [ex["target"] for ex in test + edge]
        self.max_new = max(len(t) for t in self.targets)


@torch.no_grad()
def evaluate(model: torch.nn.Module, held: HeldOut, batch_size: int,
             device: torch.device, precision: str = "auto") -> dict[str, Any]:
    """Held-out metrics (module docstring); switches to eval mode and back."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    data = held.uniform
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        x, y = (z.to(device) for z in data.batch(idx))
        with autocast(device, precision):
            logits = model(x)
        mask = y != -100
        loss_sum += float(F.cross_entropy(loss_precision(logits[mask]), y[mask], reduction="sum"))
        correct += int((logits[mask].argmax(-1) == y[mask]).sum())
        count += int(mask.sum())
    with autocast(device, precision):
        generated = greedy_decode(model, held.prompts, held.max_new, held.vocab.pad,
                                  batch_size, device)
    model.train(was_training)
    right = [g == t for g, t in zip(generated, held.targets, strict=True)]
    n_test = len(right) - held.n_edge
    per = strata.tally(held.strata, right[:n_test])
    at_boundary = [sum(right[i] for i in idx) / len(idx)
                   for idx in held.boundary.values() if idx]
    return {"eval_loss": loss_sum / count, "token_accuracy": correct / count,
            "exact_match": sum(right[: held.n_uniform]) / held.n_uniform,
            "worst_stratum": min(r / n for r, n in per.values()),
            "carry_boundary": min(at_boundary, default=1.0),
            "edge_cases": sum(right[n_test:]) / held.n_edge,
            "strata": {s.name: [r, n] for s, (r, n) in per.items()},
            "boundary": {f"low tokens sum to {s}": [sum(right[i] for i in idx), len(idx)]
                         for s, idx in held.boundary.items() if idx}}
