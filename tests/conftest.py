"""Shared fixtures: small configs on a reduced problem, and one model trained for real."""

from __future__ import annotations

from typing import Any

import pytest

from addray.config import ExperimentConfig, from_dict
from addray.trainer import train

# Operands 0..99 in base 10: 10^4 distinct pairs, 3-token answers with carries.
SMALL_PROBLEM = {"base": 10, "operand_max": 99, "n_train": 8000, "n_test": 1000, "seed": 7}


def small_config(**sections: dict[str, Any]) -> ExperimentConfig:
    """A small model on the reduced problem; keyword sections override the defaults."""
    raw: dict[str, Any] = {
        "model": {"vocab_size": 13, "d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 128,
                  "max_seq_len": 16, "dropout": 0.0},
        "training": {"batch_size": 128, "learning_rate": 1e-2, "warmup_steps": 50,
                     "max_steps": 20, "check_every": 10, "early_stopping": None,
                     "device": "cpu"},
        "data": dict(SMALL_PROBLEM),
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if values is not None else None
    return from_dict(raw, source="test", name="small")


@pytest.fixture(scope="session")
def trained_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 32d-2L model trained on the reduced problem; its summary and checkpoint folder."""
    out = tmp_path_factory.mktemp("trained_small")
    # measured: ~98% held-out exact match after 3000 steps, about 20 s on 2 cores
    cfg = small_config(training={"max_steps": 3000, "check_every": 1000, "learning_rate": 5e-3,
                                 "warmup_steps": 100})
    result = train(cfg, checkpoint_dir=out, num_threads=2)
    return {"result": result, "dir": out, "config": cfg}


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory: pytest.TempPathFactory):
    """A results folder holding real phase1 and phase2 smoke studies (about 40 s)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("smoke_results")
    logs = {}
    for script in ("phase1.py", "phase2.py"):
        proc = subprocess.run([sys.executable, str(root / "sweeps" / script), "--smoke-test",
                               "--results", str(out)], capture_output=True, text=True,
                              timeout=300, cwd=root)
        logs[script] = proc
    return out, logs
