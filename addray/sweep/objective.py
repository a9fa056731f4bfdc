"""What pruning and the phase 3 search compare. No Ray here.

Pruning compares one metric (``--metric``): the uniform held-out ``exact_match``, or
``worst_stratum``, the exact match of the weakest stratum. Ties, common while every
model is still at 0%, are broken by token accuracy; the tie-break is below one example
in a million, so it never reorders real gains.
"""

from __future__ import annotations

import math
from typing import Any

from addray.core.strata import learned


def pruning_score(metrics: dict[str, Any], metric: str) -> float:
    return metrics[metric] + 1e-6 * metrics["token_accuracy"]


def above_threshold(metrics: dict[str, Any], threshold: float, metric: str) -> bool:
    """With --metric worst_stratum a model counts only if it would pass verification on
    its held-out set: every edge case right, exact match >= threshold on uniform pairs,
    in every stratum and at the carry boundary. With exact_match, the uniform exact
    match alone decides. A result from before the carry boundary was measured (a trial
    restored from an older checkpoint) does not count: its boundary is unknown."""
    if metric == "worst_stratum":
        return learned(metrics["exact_match"], metrics["worst_stratum"],
                       metrics["edge_cases"], metrics.get("carry_boundary", 0.0), threshold)
    return metrics["exact_match"] >= threshold


def search_score(metrics: dict[str, Any], threshold: float, metric: str) -> float:
    """The phase 3 objective (higher is better).

    A model above the threshold scores in (1, 2], fewer parameters scoring higher; a
    model below scores its metric (with the tie-break), below 1. So any model above the
    threshold beats any below, and among those above, the smaller wins.
    """
    if above_threshold(metrics, threshold, metric):
        return 1.0 + 1.0 / (1.0 + math.log10(1.0 + metrics["params"]))
    return min(pruning_score(metrics, metric), threshold)
