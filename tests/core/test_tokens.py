import pytest

from addray.core import tokens
from addray.core.tokens import Vocab


def test_tokens_round_trip_every_sum():
    for n in range(0, 1999):
        t = tokens.to_tokens(n)
        assert all(0 <= x < 100 for x in t)
        assert tokens.from_tokens(t) == n


@pytest.mark.parametrize("n,base,expected", [(0, 100, [0]), (7, 100, [7]), (100, 100, [1, 0]),
                                             (1998, 100, [19, 98]), (1998, 10, [1, 9, 9, 8])])
def test_tokens_most_significant_first(n, base, expected):
    assert tokens.to_tokens(n, base) == expected


def test_vocab_special_tokens():
    v = Vocab(100)
    assert (v.plus, v.equals, v.pad, v.size) == (100, 101, 102, 103)


def test_answer_only_in_target():
    assert tokens.make_example(123, 877) == {"input": [1, 23, 100, 8, 77, 101],
                                             "target": [10, 0, 102], "answer": 1000}


def test_max_example_length():
    # 2 + 1 + 2 + 1 + 2 + end marker: the reference's padding to 32 is 3x too long
    assert tokens.max_example_length(999, 100) == 9


@pytest.mark.parametrize("generated,text", [([10, 0, 102], "1000"), ([7, 102], "7"),
                                            ([10, 0], "?"), ([102], "?"), ([100, 102], "?")])
def test_answer_text(generated, text):
    assert tokens.answer_text(generated, Vocab(100)) == text
