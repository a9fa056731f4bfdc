"""TensorBoard event files of addray's metrics, the same for a live study and an
exported one: scalars against the training step, one per stratum and boundary sum under
the names the report uses, and HParams of the settings that vary. Needs tensorboardX
(a Ray Tune dependency); no Ray, no torch here.

Tags are written as protos: tensorboardX's ``add_scalar`` would rewrite
"strata/2+2 tokens, carry" as "strata/2_2_tokens__carry"; TensorBoard itself takes any tag.
"""

from __future__ import annotations

import math
from typing import Any

SCALARS = ("exact_match", "token_accuracy", "worst_stratum", "carry_boundary", "edge_cases",
           "train_loss", "eval_loss", "lr", "examples_per_s", "best_exact_match",
           "prune_score", "search_score", "examples")
FINAL = ("exact_match", "worst_stratum", "carry_boundary", "edge_cases", "best_exact_match")
PAIRS = ("strata", "boundary")  # {name: [correct, total]}


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """One evaluation's values as TensorBoard scalars (tag -> value); NaN, absent and
    empty left out."""
    out = {k: x for k in SCALARS if (x := _number(metrics.get(k))) is not None}
    for group in PAIRS:
        for name, pair in (metrics.get(group) or {}).items():
            right, total = pair
            if total:
                out[f"{group}/{name}"] = right / total
    return out


def writer(path: str) -> Any:
    from tensorboardX import SummaryWriter

    return SummaryWriter(path, flush_secs=30)


def write_step(w: Any, values: dict[str, float], step: int) -> None:
    from tensorboardX.proto.summary_pb2 import Summary

    w.file_writer.add_summary(
        Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()]),
        int(step))


def write_hparams(w: Any, params: dict[str, Any], last: dict[str, Any]) -> None:
    """HParams: ``params`` (str, int or float values; others left out) beside the last
    evaluation's final metrics (which the run's scalars of the same names carry)."""
    from tensorboardX.summary import hparams

    params = {k: v for k, v in params.items() if isinstance(v, (str, int, float))}
    metrics = {m: x for m in FINAL if (x := _number(last.get(m))) is not None}
    if metrics:
        for summary in hparams(hparam_dict=params, metric_dict=metrics):
            w.file_writer.add_summary(summary)
