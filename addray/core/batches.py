"""Examples as tensors, and batches trimmed to their longest example (or padded to a
fixed length, which compiled and graph-captured steps need)."""

from __future__ import annotations

import torch

from addray.core.tokens import Vocab


class TokenizedSet:
    """Examples as padded tensors; ``batch`` cuts them to the longest in the batch."""

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

    @property
    def longest(self) -> int:
        """Tokens in the longest example."""
        return int(self.lengths.max())

    def batch(self, idx: torch.Tensor, pad_to: int | None = None) -> tuple[torch.Tensor, ...]:
        """(inputs, labels), each (B, T) with T the longest example in the batch minus one,
        or ``pad_to`` minus one; ``idx`` of shape (K, B) gives (K, B, T), a batch per row.
        Padding is PAD in the inputs and ignored (-100) in the labels, so it changes no
        loss."""
        width = int(self.lengths[idx].max()) if pad_to is None else pad_to
        x = self.tokens[idx]
        y = self.labels[idx]
        if width > x.size(1):
            extra = width - x.size(1)
            x = torch.nn.functional.pad(x, (0, extra), value=self.vocab.pad)
            y = torch.nn.functional.pad(y, (0, extra), value=-100)
        return x[..., : width - 1].contiguous(), y[..., : width - 1].contiguous()
