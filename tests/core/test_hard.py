import torch
import torch.nn.functional as F

from addray.core.batches import TokenizedSet
from addray.core.data import make_dataset
from addray.core.hard import HardPairs, example_losses
from addray.core.model import Transformer
from addray.core.tokens import Vocab
from tests.conftest import small_config


def test_draws_follow_the_measured_losses():
    hard = HardPairs(seed=3)
    losses = torch.zeros(1000)
    losses[[5, 17, 400]] = torch.tensor([1.0, 2.0, 5.0])
    hard.measure(losses)
    drawn = torch.cat([hard.draw(step, 64) for step in range(200)])
    assert set(drawn.tolist()) == {5, 17, 400}  # pairs the model gets right: never
    share = [(drawn == i).float().mean().item() for i in (5, 17, 400)]
    assert abs(share[0] - 1 / 8) < 0.02 and abs(share[1] - 2 / 8) < 0.02
    assert abs(share[2] - 5 / 8) < 0.02
    # a pure function of the step and the losses
    assert torch.equal(hard.draw(7, 64), hard.draw(7, 64))
    assert not torch.equal(hard.draw(7, 64), hard.draw(8, 64))


def test_a_model_right_everywhere_draws_evenly():
    hard = HardPairs(seed=0)
    hard.measure(torch.zeros(50))
    drawn = torch.cat([hard.draw(step, 100) for step in range(100)])
    counts = torch.bincount(drawn, minlength=50)
    assert counts.min() > 100 and counts.max() < 300  # 200 each on average


def test_example_losses_are_each_examples_answer_loss():
    cfg = small_config()
    data = TokenizedSet(make_dataset(cfg.data).train[:300], Vocab(cfg.data.base))
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    got = example_losses(model, data, 128, torch.device("cpu"))
    assert got.shape == (300,) and model.training  # mode restored
    model.eval()
    for i in (0, 129, 299):
        x, y = data.batch(torch.tensor([i]))
        keep = y[0] != -100
        want = F.cross_entropy(model(x)[0][keep], y[0][keep], reduction="sum")
        torch.testing.assert_close(got[i], want)
