"""Hard pairs for the fine-tune (``training.fine_tune.hard_share``).

Near the end of training a small model gets about one training pair in a hundred wrong,
so a plain batch of 128 spends one or two examples on them. ``HardPairs`` keeps every
training pair's loss under the weights it was last measured with and draws a share of
each batch with probability proportional to it. Draws are a pure function of (seed,
step) and the measured losses, and the losses are measured at the stage's start and
after every evaluation, when a checkpoint is written: a resumed run measures them again
from the same weights and draws the same batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from addray.core.batches import TokenizedSet
from addray.core.device import autocast


@torch.no_grad()
def example_losses(model: torch.nn.Module, data: TokenizedSet, batch_size: int,
                   device: torch.device, precision: str = "auto") -> torch.Tensor:
    """Each example's cross-entropy summed over its answer tokens, (N,) on the CPU.
    Switches to eval mode and back."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(data))
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        x, y = (z.to(device) for z in data.batch(idx))
        with autocast(device, precision):
            logits = model(x)
        ce = F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=-100,
                             reduction="none")  # (B, T), 0 where ignored
        out[start : start + len(idx)] = ce.sum(dim=1).cpu()
    model.train(was_training)
    return out


class HardPairs:
    """Draws example indices with probability proportional to their measured losses."""

    def __init__(self, seed: int):
        self.seed = seed
        self.cdf: torch.Tensor | None = None

    def measure(self, losses: torch.Tensor) -> None:
        weights = losses.double().clamp_min(0.0)
        if not float(weights.sum()) > 0.0:  # a model right on every pair: draw evenly
            weights = torch.ones_like(weights)
        self.cdf = weights.cumsum(0)

    def draw(self, step: int, n: int) -> torch.Tensor:
        """``n`` indices (with replacement) for batch ``step``."""
        if self.cdf is None:
            raise RuntimeError("HardPairs.draw before measure")
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + step + 7)
        u = torch.rand(n, generator=g, dtype=torch.float64) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u, right=True).clamp_max(len(self.cdf) - 1)
