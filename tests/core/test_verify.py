import torch

from addray.core import strata, verify
from addray.core.checkpoint import load_checkpoint, save_checkpoint


def test_verify_tables_and_training_overlap(trained_small):
    v = verify.verify(trained_small["dir"], n_uniform=500, seed=0)
    # operands 0..99 in base 10: the one-token pairs are 0..9 x 0..9
    assert v.one_token.n == 100 and v.uniform.n == 500
    assert {r.name for r in v.strata} == {
        f"{a}+{b} tokens, {c}" for a in (1, 2) for b in (1, 2) for c in ("carry", "no carry")}
    assert sum(r.n for r in v.strata) == len(set(verify.uniform_pairs(500, 99, 0))
                                             | {(a, b) for a in range(10) for b in range(10)})
    low, high = v.uniform.interval
    assert low <= v.uniform.rate <= high and high - low < 0.1
    # the carry boundary in base 10: all 1,000 pairs whose low digits sum to 9 (0+9 .. 9+0,
    # tens free) and all 900 summing to 10 (1+9 .. 9+1), fewer than the 2,000 asked for
    assert [(r.name, r.n) for r in v.boundary] == [("low tokens sum to 9", 1000),
                                                   ("low tokens sum to 10 (carry)", 900)]
    tested = (set(verify.uniform_pairs(500, 99, 0))
              | {(a, b) for a in range(10) for b in range(10)}
              | {(a, b) for a, b, _, _ in v.edge}
              | {p for s in (9, 10) for p in strata.carry_boundary_pairs(s, 99, 10, 2000, 0)})
    # 8,000 of the 10,000 pairs are training pairs: most tested pairs were seen
    assert 0 < v.in_training < len(tested)
    assert v.unseen.n + v.in_training == len(tested)
    assert v.to_dict()["carry_boundary"][1]["n"] == 900
    assert v.learned == (not v.reasons)
    assert "verdict:" in verify.render(v)


def test_a_damaged_model_is_not_learned(trained_small, tmp_path):
    payload = load_checkpoint(trained_small["dir"])
    payload["model"] = {k: torch.zeros_like(t) for k, t in payload["model"].items()}
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    v = verify.verify(tmp_path, n_uniform=200)
    assert not v.learned and v.uniform.rate < 0.5
    # the reason lists at most 8 wrong edge cases and says how many more there are
    wrong = [(a, b) for a, b, _, ok in v.edge if not ok]
    reason = next(r for r in v.reasons if "edge case" in r)
    assert len(wrong) > 8 and reason.startswith(f"{len(wrong)} edge case(s) wrong: ")
    assert reason.endswith(f" and {len(wrong) - 8} more") and reason.count("+") == 8
