"""Batched greedy decoding: the one generation loop used for evaluation and prediction."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn as nn


@torch.no_grad()
def greedy_decode(model: nn.Module, prompts: list[list[int]], max_new_tokens: int,
                  stop_token: int, batch_size: int = 2048,
                  device: torch.device | str = "cpu") -> list[list[int]]:
    """Extend each prompt greedily until ``stop_token`` or ``max_new_tokens``.

    Returns the generated tokens for each prompt, in input order, including the stop
    token when one was produced. Prompts of equal length are decoded together, so no
    padding or attention mask is needed. Switches the model to eval mode and back.
    """
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    try:
        for _, members in sorted(by_len.items()):
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                seq = torch.tensor([prompts[i] for i in chunk], device=device)  # (B, T)
                done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
                for _ in range(max_new_tokens):
                    nxt = model(seq)[:, -1].argmax(dim=-1)  # (B,)
                    seq = torch.cat([seq, nxt[:, None]], dim=1)
                    done |= nxt == stop_token
                    if bool(done.all()):
                        break
                gen = seq[:, len(prompts[chunk[0]]) :].tolist()
                for i, tokens in zip(chunk, gen, strict=True):
                    if stop_token in tokens:
                        tokens = tokens[: tokens.index(stop_token) + 1]
                    out[i] = tokens
    finally:
        model.train(was_training)
    return out
