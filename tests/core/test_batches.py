import torch

from addray.core.batches import TokenizedSet
from addray.core.tokens import Vocab, make_example


def test_batches_trimmed_to_longest_example():
    examples = [make_example(1, 2), make_example(99, 99), make_example(5, 995)]
    ts = TokenizedSet(examples, Vocab(100))
    x, y = ts.batch(torch.tensor([0, 1]))
    # 1+2=3 is 5 tokens (1 + 2 = 3 PAD), 99+99=198 is 7 (198 is two base-100 tokens);
    # inputs drop the last token, so the batch is 6 wide, not 32
    assert x.shape == (2, 6)
    # labels count only the answer and end marker: for 1+2=3 predict 3 then PAD
    assert y[0].tolist() == [-100, -100, -100, 3, 102, -100]
    x32, y32 = ts.batch(torch.tensor([0, 1]), pad_to=32)
    assert x32.shape == (2, 31) and int((y32 != -100).sum()) == int((y != -100).sum())
    assert ts.longest == 8  # 5 + 995 = 1000: 1 + 1 + 2 + 1 + 2 + end marker
