import json
import re
from collections import Counter

import numpy as np
import pytest

from addray.core import data, strata
from addray.core.config import DataConfig
from addray.core.tokens import make_example, to_tokens
from addray.errors import DataError


def _pairs(examples, base=100):
    return [data.operands(ex, base) for ex in examples]


def test_prompt_and_target_hold_a_b_and_the_answer():
    ds = data.make_dataset(DataConfig(n_train=2000, n_test=10, seed=3))
    for ex in ds.train:
        # the prompt ends at '=' and holds exactly a and b; the answer follows only in target
        assert ex["input"][-1] == 101 and 102 not in ex["input"]
        a, b = data.operands(ex, 100)
        assert ex["target"] == to_tokens(a + b) + [102] and ex["answer"] == a + b


@pytest.mark.parametrize("sampling", ["uniform", "balanced"])
def test_train_and_test_disjoint(sampling):
    ds = data.make_dataset(DataConfig(n_train=100_000, n_test=10_000, seed=11,
                                      sampling=sampling))
    train, test = set(_pairs(ds.train)), _pairs(ds.test)
    assert len(test) == len(set(test)) and not train & set(test)
    assert ds.n_uniform == 10_000 and len(ds.test) > 10_000  # strata topped up


def test_uniform_sampling_is_the_plain_disjoint_draw():
    # the uniform part of the held-out set and the uniform training set are one draw of
    # distinct pair indices (the same as before strata existed)
    d = DataConfig(n_train=5000, n_test=500, seed=5, sampling="uniform")
    ds = data.make_dataset(d)
    train, test = data.split_pairs(5000, 500, 999, 5)
    assert _pairs(ds.train) == [tuple(p) for p in train.tolist()]
    assert _pairs(ds.test[:500]) == [tuple(p) for p in test.tolist()]


def test_every_stratum_gets_enough_held_out_pairs():
    d = DataConfig(n_train=100_000, n_test=10_000, seed=1234, min_per_stratum=200)
    ds = data.make_dataset(d)
    have = Counter(strata.stratum_of(a, b, 100) for a, b in _pairs(ds.test))
    assert set(have) == set(strata.all_strata(999, 100))
    assert min(have.values()) >= 200
    # the uniform part alone holds ~100 pairs with two one-token operands: too few
    uniform = Counter(strata.stratum_of(a, b, 100) for a, b in _pairs(ds.test[:ds.n_uniform]))
    assert uniform[strata.Stratum(1, 1, False)] < 200


def test_balanced_sampling_draws_operand_lengths_evenly():
    d = DataConfig(n_train=40_000, n_test=2000, seed=9, sampling="balanced")
    ds = data.make_dataset(d)
    lengths = Counter((len(to_tokens(a)), len(to_tokens(b))) for a, b in _pairs(ds.train))
    assert set(lengths) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert all(v == 10_000 for v in lengths.values())
    # carries well represented in the short+short part (about half, as for uniform values)
    short = [(a, b) for a, b in _pairs(ds.train) if a < 100 and b < 100]
    carry = sum(a + b >= 100 for a, b in short) / len(short)
    assert 0.4 < carry < 0.6
    # the one-token rectangle has 10,000 pairs, fewer than its share after the held-out
    # ones are removed: they repeat, never a held-out one
    assert len(set(short)) < len(short)
    assert not set(short) & set(_pairs(ds.test))


@pytest.mark.parametrize("sampling", ["uniform", "balanced"])
def test_generation_is_deterministic_per_seed(sampling):
    a = data.make_dataset(DataConfig(n_train=500, n_test=50, seed=5, sampling=sampling))
    b = data.make_dataset(DataConfig(n_train=500, n_test=50, seed=5, sampling=sampling))
    c = data.make_dataset(DataConfig(n_train=500, n_test=50, seed=6, sampling=sampling))
    assert (a.train, a.test) == (b.train, b.test) and a.train != c.train


def test_the_held_out_set_does_not_depend_on_sampling():
    u = data.make_dataset(DataConfig(n_train=5000, n_test=500, seed=2, sampling="uniform"))
    b = data.make_dataset(DataConfig(n_train=5000, n_test=500, seed=2, sampling="balanced"))
    assert u.test == b.test


def test_operand_range_and_base_are_settings():
    ds = data.make_dataset(DataConfig(base=10, operand_max=20, n_train=300, n_test=50, seed=1))
    assert all(a <= 20 and b <= 20 for a, b in _pairs(ds.train + ds.test, 10))
    with pytest.raises(DataError, match="exceeds the 441 distinct pairs"):
        data.split_pairs(400, 50, operand_max=20, seed=1)


def test_boundary_share_redraws_low_tokens_next_to_the_carry_boundary():
    d = DataConfig(n_train=40_000, n_test=2000, seed=9)
    plain = data.make_dataset(d)
    mixed = data.make_dataset(DataConfig(n_train=40_000, n_test=2000, seed=9,
                                         boundary_share=0.3))
    assert mixed.test == plain.test  # the held-out set is untouched
    edge = {0, 1, 2, 97, 98, 99}

    def share_at_edge(examples):
        lows = [x % 100 for pair in _pairs(examples) for x in pair]
        return sum(low in edge for low in lows) / len(lows)

    # uniform low tokens: 6 of 100 values; with p = 0.3: 0.7 * 0.06 + 0.3 = 0.342
    assert 0.05 < share_at_edge(plain.train) < 0.07
    assert 0.32 < share_at_edge(mixed.train) < 0.37
    # lengths in tokens kept (still balanced), operands in range, no held-out pair
    lengths = Counter((len(to_tokens(a)), len(to_tokens(b))) for a, b in _pairs(mixed.train))
    assert all(v == 10_000 for v in lengths.values())
    assert all(0 <= x <= 999 for pair in _pairs(mixed.train) for x in pair)
    assert not set(_pairs(mixed.train)) & set(_pairs(mixed.test))
    # the answers are recomputed for the new operands
    assert all(ex["answer"] == sum(data.operands(ex, 100)) for ex in mixed.train)


def test_boundary_tokens_keep_operand_max_and_exclusions():
    side, values = 451, (0, 1, 2, 97, 98, 99)
    # every pair that (100, 3) could become is excluded: it must stay (100, 3)
    excluded = np.sort(np.array([(100 + u) * side + v for u in values for v in values]))
    pairs = np.array([[450, 3]] * 50 + [[100, 3]] * 5, dtype=np.int64)
    out = data.boundary_tokens(pairs, 1.0, operand_max=450, base=100, exclude=excluded,
                               seed=0)
    assert (out[50:] == [100, 3]).all()
    # 450's low token redrawn: 400-402 kept, 497-499 beyond operand_max fall back to 450
    assert set(out[:50, 0].tolist()) == {400, 401, 402, 450}
    assert set(out[:50, 1].tolist()) <= set(values) | {3}
    assert (data.boundary_tokens(pairs, 0.0, 450, 100, excluded, 0) == pairs).all()


def test_carry_share_sets_low_tokens_either_side_of_the_carry_decision():
    plain = data.make_dataset(DataConfig(n_train=40_000, n_test=2000, seed=9))
    mixed = data.make_dataset(DataConfig(n_train=40_000, n_test=2000, seed=9,
                                         carry_share=0.3))
    assert mixed.test == plain.test  # the held-out set is untouched

    def share_at_edge(examples):
        sums = [a % 100 + b % 100 for a, b in _pairs(examples)]
        return sum(s in (98, 99, 100) for s in sums) / len(sums)

    # uniform low tokens: about 3 in 100 pairs; with q = 0.3: 0.7 * 0.03 + 0.3 = 0.321
    assert 0.025 < share_at_edge(plain.train) < 0.035
    assert 0.30 < share_at_edge(mixed.train) < 0.34
    # the three sums about equally often among the changed pairs
    sums = Counter(a % 100 + b % 100 for a, b in _pairs(mixed.train))
    assert all(3000 < sums[s] < 5000 for s in (98, 99, 100))
    # only the second operand's low token changes: first operands and lengths are kept
    assert [p[0] for p in _pairs(mixed.train)] == [p[0] for p in _pairs(plain.train)]
    assert [len(to_tokens(b)) for _, b in _pairs(mixed.train)] == \
        [len(to_tokens(b)) for _, b in _pairs(plain.train)]
    assert not set(_pairs(mixed.train)) & set(_pairs(mixed.test))
    assert all(ex["answer"] == sum(data.operands(ex, 100)) for ex in mixed.train)


def test_carry_edge_keeps_operand_max_exclusions_and_token_range():
    side = 451
    # (5, 94), (5, 95) excluded: a pair (5, b) may only become (5, 93)
    excluded = np.sort(np.array([5 * side + 94, 5 * side + 95]))
    pairs = np.array([[5, 7]] * 60 + [[0, 420]] * 60 + [[99, 3]] * 60, dtype=np.int64)
    out = data.carry_edge(pairs, 1.0, operand_max=450, base=100, exclude=excluded, seed=0)
    assert set(map(tuple, out[:60].tolist())) == {(5, 7), (5, 93)}
    # 0 + 4xx: low token 98 or 99 fits; 100 would leave the token range, 498/499 exceed 450
    assert set(map(tuple, out[60:120].tolist())) == {(0, 420)}
    # 99 + b: low tokens 0 and 1 (sums 99, 100); -1 would leave the token range
    assert set(map(tuple, out[120:].tolist())) == {(99, 3), (99, 0), (99, 1)}
    assert (data.carry_edge(pairs, 0.0, 450, 100, excluded, 0) == pairs).all()


def test_sample_rect_repeats_only_when_asked():
    rng = np.random.default_rng(0)
    exclude = np.array([0, 1, 10], dtype=np.int64)  # (0, 0), (0, 1), (1, 0)
    few = data.sample_rect(rng, (0, 1), (0, 1), 10, side=10, exclude=exclude)
    assert {tuple(p) for p in few.tolist()} == {(1, 1)}
    many = data.sample_rect(rng, (0, 1), (0, 1), 10, side=10, exclude=exclude, repeat=True)
    assert len(many) == 10 and {tuple(p) for p in many.tolist()} == {(1, 1)}


def test_jsonl_round_trip(tmp_path):
    ds = data.make_dataset(DataConfig(n_train=100, n_test=10, seed=2))
    data.write_jsonl(tmp_path / "t.jsonl", ds.train)
    assert data.read_jsonl(tmp_path / "t.jsonl") == ds.train


def _reference_buggy_example(a, b):
    # the reference generator: pad to 32 first, then slice
    c = a + b
    t = to_tokens(a) + [100] + to_tokens(b) + [101] + to_tokens(c)
    t = t + [102] * (32 - len(t))
    n = len(to_tokens(c))
    return {"input": t[:-n], "target": t[-n:], "answer": c}


@pytest.mark.parametrize("line,message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [3, 102]}), "keys input, target, answer"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [4, 102], "answer": 4}),
     "1 + 2 != target 4"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [3], "answer": 3}), "followed by one PAD"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [300, 102], "answer": 3}), "integers in"),
    (json.dumps({"input": "1+2=", "target": [3, 102], "answer": 3}), "lists of tokens"),
    (json.dumps(_reference_buggy_example(12, 34)), "reference generator's bug"),
])
def test_corrupt_line_names_file_and_line(tmp_path, line, message):
    good = json.dumps(make_example(1, 2))
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        data.read_jsonl(path)
    assert str(err.value).startswith(f"{path}:2:")


def test_binary_jsonl_is_one_line(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b"\xff\xfe\x00bin")
    with pytest.raises(DataError, match="cannot read"):
        data.read_jsonl(path)
