"""`python -m addray.verify`: exit 0 learned, 1 not learned, 2 bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from addray.core.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# the live committed models, which must pass verify (superseded ones were verified when
# they were archived: docs/LOG.md); the deliberate misses below must fail it
COMMITTED = ["results/reference/tuned_phase1_lower/checkpoint.pt",
             # configs/smallest.yaml (1,960 parameters), seeds 0-4
             *[f"results/reference/smallest/seed{s}.pt" for s in range(5)]]

BOUNDARY_MISS = "results/reference/phase3/verification/smallest-blockbias/seed2.pt"
# configs/history/smallest_400k.yaml's seed 2: 99.92% of uniform pairs, and 0 + 0 = 1
EDGE_MISS = "results/reference/phase3/verification/smallest-400k-finetune/seed2.pt"


def _verify(*args):
    return subprocess.run([sys.executable, "-m", "addray.verify", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", COMMITTED)
def test_committed_models_have_learned_addition(checkpoint):
    proc = _verify(checkpoint, "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 0, out["reasons"]
    assert out["verdict"] == "learned" and all(e["right"] for e in out["edge_cases"])
    assert out["uniform"]["n"] == 10_000 and out["one_token"]["n"] == 10_000
    assert min(r["exact_match"] for r in out["strata"]) >= 0.99


@pytest.mark.slow
def test_a_model_that_misses_the_carry_boundary_is_not_learned():
    # 2,000 parameters, committed: at >= 99% on uniform pairs and in every stratum, every
    # edge case right, yet about one in eight pairs whose low tokens sum to 99 or 100 wrong
    proc = _verify(BOUNDARY_MISS, "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["verdict"] == "not learned"
    assert out["uniform"]["exact_match"] >= 0.99 and all(e["right"] for e in out["edge_cases"])
    assert min(r["exact_match"] for r in out["strata"]) >= 0.99
    assert [r["n"] for r in out["carry_boundary"]] == [2000, 2000]
    assert all(r["exact_match"] < 0.95 for r in out["carry_boundary"])
    assert len(out["reasons"]) == 2 and all(r.startswith("carry boundary, low tokens sum to")
                                            for r in out["reasons"])


@pytest.mark.slow
def test_a_model_right_on_uniform_pairs_that_says_0_plus_0_is_1_is_not_learned():
    # the uniform number alone would call it learned; an edge case and the one-token
    # stratum it belongs to say otherwise
    proc = _verify(EDGE_MISS, "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["verdict"] == "not learned"
    assert out["uniform"]["exact_match"] >= 0.999
    assert [(e["a"], e["b"], e["answer"]) for e in out["edge_cases"] if not e["right"]] == [
        (0, 0, "1")]
    short = {r["name"]: r["exact_match"] for r in out["strata"]}["1+1 tokens, no carry"]
    assert short < 0.99 and out["reasons"][0] == "1 edge case(s) wrong: 0+0"


@pytest.mark.slow
def test_a_damaged_copy_is_not_learned(tmp_path):
    payload = load_checkpoint(ROOT / COMMITTED[0])
    g = torch.Generator().manual_seed(0)
    payload["model"] = {k: t[torch.randperm(t.shape[0], generator=g)] if t.dim() else t
                        for k, t in payload["model"].items()}  # rows shuffled
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    proc = _verify(str(tmp_path / "checkpoint.pt"), "--uniform", "500")
    assert proc.returncode == 1, proc.stderr
    assert "verdict: NOT LEARNED" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("make,message", [
    (lambda p: None, "no such checkpoint file"),
    (lambda p: p.write_text("hello"), "not an addray checkpoint"),
    (lambda p: p.write_bytes(b"\x00" * 64), "not an addray checkpoint"),
])
def test_missing_or_corrupt_checkpoint_is_one_line(tmp_path, make, message):
    path = tmp_path / "x.pt"
    make(path)
    proc = _verify(str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_weights_that_do_not_fit_the_config_are_one_line(tmp_path):
    payload = load_checkpoint(ROOT / COMMITTED[0])
    payload["config"]["model"]["d_model"] = 128
    payload["config"]["model"]["d_ff"] = 512
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    proc = _verify(str(tmp_path / "checkpoint.pt"))
    assert proc.returncode == 2 and "saved weights do not match its saved config" in proc.stderr
    assert "Traceback" not in proc.stderr
