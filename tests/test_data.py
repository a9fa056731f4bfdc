import json
import re

import pytest

from addray import data
from addray.data import DataError, Vocab


def test_tokens_round_trip_every_sum():
    for n in range(0, 1999):
        tokens = data.to_tokens(n)
        assert all(0 <= t < 100 for t in tokens)
        assert data.from_tokens(tokens) == n


@pytest.mark.parametrize("n,base,tokens", [(0, 100, [0]), (7, 100, [7]), (100, 100, [1, 0]),
                                           (1998, 100, [19, 98]), (1998, 10, [1, 9, 9, 8])])
def test_tokens_most_significant_first(n, base, tokens):
    assert data.to_tokens(n, base) == tokens


def test_vocab_special_tokens():
    v = Vocab(100)
    assert (v.plus, v.equals, v.pad, v.size) == (100, 101, 102, 103)


def test_answer_only_in_target():
    ex = data.make_example(123, 877)
    assert ex == {"input": [1, 23, 100, 8, 77, 101], "target": [10, 0, 102], "answer": 1000}
    train, _ = data.make_datasets(2000, 10, seed=3)
    for ex in train:
        # the prompt ends at '=' and holds exactly a and b; the answer follows only in target
        assert ex["input"][-1] == 101 and 102 not in ex["input"]
        plus = ex["input"].index(100)
        a = data.from_tokens(ex["input"][:plus])
        b = data.from_tokens(ex["input"][plus + 1:-1])
        assert ex["target"] == data.to_tokens(a + b) + [102]
        assert ex["answer"] == a + b


def test_train_and_test_disjoint_and_distinct():
    train, test = data.make_datasets(100_000, 10_000, seed=11)
    train_prompts = {tuple(ex["input"]) for ex in train}
    test_prompts = {tuple(ex["input"]) for ex in test}
    assert len(train_prompts) == 100_000 and len(test_prompts) == 10_000
    assert not train_prompts & test_prompts


def test_generation_is_deterministic_per_seed():
    assert data.make_datasets(500, 50, seed=5) == data.make_datasets(500, 50, seed=5)
    assert data.make_datasets(500, 50, seed=5) != data.make_datasets(500, 50, seed=6)


def test_operand_range_and_base_are_settings():
    train, test = data.make_datasets(300, 50, operand_max=20, base=10, seed=1)
    for ex in train + test:
        plus = ex["input"].index(10)
        assert data.from_tokens(ex["input"][:plus], 10) <= 20
    with pytest.raises(DataError, match="exceeds the 441 distinct pairs"):
        data.split_pairs(400, 50, operand_max=20, seed=1)


def test_max_example_length():
    # 2 + 1 + 2 + 1 + 2 + end marker (AUDIT item 6)
    assert data.max_example_length(999, 100) == 9
    longest = max(len(ex["input"]) + len(ex["target"]) for ex in data.make_datasets(5000, 1)[0])
    assert longest == 9


def test_jsonl_round_trip(tmp_path):
    train, _ = data.make_datasets(100, 10, seed=2)
    data.write_jsonl(tmp_path / "t.jsonl", train)
    assert data.read_jsonl(tmp_path / "t.jsonl") == train


def _reference_buggy_example(a, b):
    # the reference generator: pad to 32 first, then slice
    c = a + b
    tokens = data.to_tokens(a) + [100] + data.to_tokens(b) + [101] + data.to_tokens(c)
    tokens = tokens + [102] * (32 - len(tokens))
    n = len(data.to_tokens(c))
    return {"input": tokens[:-n], "target": tokens[-n:], "answer": c}


@pytest.mark.parametrize("line,message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [3, 102]}), "keys input, target, answer"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [4, 102], "answer": 4}),
     "1 + 2 != target 4"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [3], "answer": 3}), "followed by one PAD"),
    (json.dumps({"input": [1, 100, 2, 101], "target": [300, 102], "answer": 3}), "integers in"),
    (json.dumps(_reference_buggy_example(12, 34)), "reference generator's bug"),
])
def test_corrupt_line_names_file_and_line(tmp_path, line, message):
    good = json.dumps(data.make_example(1, 2))
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        data.read_jsonl(path)
    assert str(err.value).startswith(f"{path}:2:")


def test_batches_trimmed_to_longest_example():
    examples = [data.make_example(1, 2), data.make_example(99, 99), data.make_example(5, 995)]
    ts = data.TokenizedSet(examples, Vocab(100))
    import torch
    x, y = ts.batch(torch.tensor([0, 1]))
    # 1+2=3 is 5 tokens (1 + 2 = 3 PAD), 99+99=198 is 7 (198 is two base-100 tokens);
    # inputs drop the last token, so the batch is 6 wide, not 32
    assert x.shape == (2, 6)
    # labels count only the answer and end marker: for 1+2=3 predict 3 then PAD
    assert y[0].tolist() == [-100, -100, -100, 3, 102, -100]
    x32, y32 = ts.batch(torch.tensor([0, 1]), pad_to=32)
    assert x32.shape == (2, 31) and int((y32 != -100).sum()) == int((y != -100).sum())


def test_cli_writes_files(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--train", "200", "--test", "20", "--seed", "4"]
    assert data.main(args) == 0
    train = data.read_jsonl(tmp_path / "train.jsonl")
    test = data.read_jsonl(tmp_path / "test.jsonl")
    assert len(train) == 200 and len(test) == 20
    assert not {tuple(e["input"]) for e in train} & {tuple(e["input"]) for e in test}


def test_cli_rejects_impossible_request(tmp_path, capsys):
    code = data.main(["--out", str(tmp_path), "--train", "100", "--test", "10",
                      "--operand-max", "5"])
    assert code == 2
    assert "exceeds the 36 distinct pairs" in capsys.readouterr().err
