"""How a study shares out a node's CPUs and GPUs: pure functions, no Ray here."""

from __future__ import annotations

import math

# GPUs per trial when --gpus-per-trial is not given. The one setting measured so far:
# four trials of phase1_lower packed on one H100 took 0.63x the time of the same four
# run one after another in a plain loop (benchmarks/RESULTS.md, "Driver overhead and
# packing on the GPU"). 8 and 16 trials per GPU are not measured yet
# (benchmarks/packing.py measures them), so every model size gets a quarter GPU.
PACKING_RULE: list[tuple[int, float]] = [(10**12, 0.25)]  # (up to N parameters, GPUs)


def default_gpus_per_trial(params: int) -> float:
    """GPUs per trial for a model of ``params`` parameters (``PACKING_RULE``)."""
    for up_to, share in PACKING_RULE:
        if params <= up_to:
            return share
    return 1.0


def default_cpus_per_trial(nodes: list[dict[str, float]], n_trials: int,
                           gpus_per_trial: float, max_concurrent: int | None = None) -> float:
    """CPUs per trial when --cpus-per-trial is not given: a node's CPUs shared evenly among
    the trials it runs at once, so concurrent trials never hold more threads than cores
    (two 2-thread trainings on 2 cores ran 15x slower). CPU trials: the cluster's CPUs
    over the trials, at most one node's. GPU trials: each GPU node's CPUs over the
    trials its GPUs hold at once (the tightest GPU node): on one H100, two GPU trials in
    turn took 93.1 s with 1 CPU each and 83.1 s with 16 (benchmarks/RESULTS.md)."""
    n = max(1, min(n_trials or 1, max_concurrent or n_trials or 1))
    if gpus_per_trial > 0:
        shares = [r.get("CPU", 0.0) / min(n, math.floor(r["GPU"] / gpus_per_trial + 1e-9))
                  for r in nodes if r.get("GPU", 0.0) >= gpus_per_trial]
        return float(max(1, math.floor(min(shares, default=1.0))))
    cpus = sum(r.get("CPU", 0.0) for r in nodes)
    largest = max((r.get("CPU", 0.0) for r in nodes), default=1.0)
    return float(max(1, min(largest, math.floor(cpus / n))))


def cpus_by_runs(nodes: list[dict[str, float]], runs: list[int]) -> dict[int, float]:
    """CPUs of a CPU trial by the runs it holds (a fused trial trains several), when
    --cpus-per-trial is not given: the cluster's CPUs shared among the runs, so that a
    trial of k runs out of R gets k/R of them (at least 1, at most one node's). A
    fused study has fewer trials than runs: shared by trials, a lone fused trial of 3
    runs and a plain trial would each take half the CPUs."""
    cpus = sum(r.get("CPU", 0.0) for r in nodes)
    largest = max((r.get("CPU", 0.0) for r in nodes), default=1.0)
    total = sum(runs) or 1
    return {k: float(max(1, min(largest, math.floor(cpus * k / total + 1e-9))))
            for k in sorted(set(runs))}
