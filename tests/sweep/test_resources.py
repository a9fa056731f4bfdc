"""How a study shares a node's CPUs and GPUs (pure functions)."""

import pytest

from addray.sweep.resources import (
    cpus_by_runs,
    default_cpus_per_trial,
    default_gpus_per_trial,
)

ONE_H100 = [{"CPU": 16.0, "GPU": 1.0}]
GPU_CLUSTER = [{"CPU": 4.0}, {"CPU": 64.0, "GPU": 8.0}, {"CPU": 32.0, "GPU": 8.0}]


@pytest.mark.parametrize("nodes,n,gpt,cap,cpus", [
    ([{"CPU": 2.0}], 4, 0.0, None, 1),       # CPU trials share the cores
    ([{"CPU": 2.0}], 1, 0.0, None, 2),
    ([{"CPU": 8.0}, {"CPU": 8.0}], 2, 0.0, None, 8),  # never more than one node has
    (ONE_H100, 4, 1.0, 1, 16),              # one GPU trial at a time gets the node
    (ONE_H100, 4, 0.25, 4, 4),              # four packed on the GPU share its node
    (ONE_H100, 3, 0.25, 4, 5),              # three trials, four slots
    (GPU_CLUSTER, 16, 1.0, 16, 4),          # the tightest GPU node: 32 CPUs / 8 GPUs
    (GPU_CLUSTER, 16, 1.0, 2, 16),          # --gpus 2: two at once
    ([{"CPU": 2.0, "GPU": 4.0}], 4, 0.5, 8, 1),  # logical GPUs: at least one CPU
])
def test_default_cpus_per_trial(nodes, n, gpt, cap, cpus):
    assert default_cpus_per_trial(nodes, n, gpt, cap) == cpus


@pytest.mark.parametrize("params", [1_000, 32_167, 163_367, 4_791_911, 6_411_367])
def test_packing_rule(params):
    # the one measured setting (four per H100) for every size until 8 and 16 are measured
    assert default_gpus_per_trial(params) == 0.25


@pytest.mark.parametrize("nodes,runs,shares", [
    ([{"CPU": 2}], [3], {3: 2.0}),  # a lone fused trial: every CPU
    ([{"CPU": 8}], [3, 1, 1, 1, 1, 1], {3: 3.0, 1: 1.0}),  # by runs, not 8 / 6 trials
    ([{"CPU": 2}], [4, 4], {4: 1.0}),
    ([{"CPU": 2}], [3, 1, 1, 1], {3: 1.0, 1: 1.0}),  # at least one each
    ([{"CPU": 4}, {"CPU": 4}], [6, 2], {6: 4.0, 2: 2.0}),  # at most one node's
])
def test_a_fused_trial_s_cpus_follow_its_runs(nodes, runs, shares):
    assert cpus_by_runs(nodes, runs) == shares
