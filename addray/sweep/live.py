"""A running trial's metrics as Ray application metrics, for the Ray dashboard and
Prometheus.

Ray's dashboard has no Tune page (ray#11641, ray#47619): a cluster's users watch jobs,
actors, logs and metrics. Each trial sets these gauges at every evaluation, tagged by
study, trial, config, lr and seed (a fused trial: one series per run):

    ray_addray_step, ray_addray_exact_match, ray_addray_worst_stratum,
    ray_addray_carry_boundary, ray_addray_examples_per_s

Ray exports them on every node's metrics endpoint
(``http://NODE:METRICS_EXPORT_PORT/metrics``, every ``metrics_report_interval_ms``, 10 s
by default), which the Prometheus config Ray writes under its session folder scrapes and
the dashboard's Metrics view shows through Prometheus and Grafana (README, "Watching a
study"). A series keeps its last value until its worker ends.
"""

from __future__ import annotations

import math
from typing import Any

GAUGES = {
    "step": "training step of the run's latest evaluation",
    "exact_match": "held-out exact match on uniform pairs (0-1)",
    "worst_stratum": "exact match in the run's weakest stratum (0-1)",
    "carry_boundary": "exact match at the carry boundary (0-1)",
    "examples_per_s": "training examples per second since the previous evaluation",
}
TAGS = ("study", "trial", "config", "lr", "seed")
PREFIX = "addray_"

_gauges: dict[str, Any] = {}


def tags_of(spec: dict[str, Any], study: str) -> dict[str, str]:
    """The tags of one run: its study, trial label, config, learning rate and seed."""
    return {"study": study, "trial": spec["label"], "config": spec["name"],
            "lr": f"{spec['config']['training']['learning_rate']:g}",
            "seed": str(spec["seed"])}


def export(metrics: dict[str, Any], tags: dict[str, str]) -> None:
    """Set the run's gauges from one evaluation's metrics (absent or NaN values skipped).
    Outside a Ray worker it does nothing."""
    import ray

    if not ray.is_initialized():
        return
    if not _gauges:
        from ray.util.metrics import Gauge

        for name, text in GAUGES.items():
            _gauges[name] = Gauge(PREFIX + name, description=text, tag_keys=TAGS)
    for name, gauge in _gauges.items():
        value = metrics.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            gauge.set(float(value), tags=tags)
