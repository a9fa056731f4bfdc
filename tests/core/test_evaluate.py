import torch

from addray.core import decode, evaluate, strata, verify
from addray.core.config import DataConfig, ModelConfig
from addray.core.data import make_dataset, operands
from addray.core.evaluate import HeldOut
from addray.core.model import Transformer


class Oracle(torch.nn.Module):
    """A 'model' whose next token is the right one for every held-out prompt: greedy
    decoding of it answers everything."""

    def __init__(self, base: int, wrong: set[tuple[int, int]] = frozenset()):
        super().__init__()
        self.base, self.wrong = base, wrong

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        from addray.core.tokens import from_tokens, to_tokens

        b = self.base
        logits = torch.full((idx.size(0), idx.size(1), b + 3), -1e9)
        for i, row in enumerate(idx.tolist()):
            eq = row.index(b + 1)
            plus = row.index(b)
            x, y = from_tokens(row[:plus], b), from_tokens(row[plus + 1:eq], b)
            answer = to_tokens(x + y + ((x, y) in self.wrong), b) + [b + 2]
            done = len(row) - eq - 1
            logits[i, -1, answer[min(done, len(answer) - 1)]] = 0.0
        return logits


def test_evaluate_reports_uniform_strata_and_edge_cases():
    d = DataConfig(base=10, operand_max=99, n_train=2000, n_test=300, seed=3,
                   min_per_stratum=30)
    ds = make_dataset(d)
    held = HeldOut(ds.test, ds.n_uniform, 99, 10)
    m = evaluate.evaluate(Oracle(10), held, 256, torch.device("cpu"))
    assert m["exact_match"] == 1.0 and m["worst_stratum"] == 1.0 and m["edge_cases"] == 1.0
    assert sum(n for _, n in m["strata"].values()) == len(ds.test)
    # one wrong edge case (0 + 0): the suite says so, the uniform pairs may not
    wrong = Oracle(10, wrong={(0, 0)})
    m = evaluate.evaluate(wrong, held, 256, torch.device("cpu"))
    assert m["edge_cases"] == 1 - 1 / len(strata.edge_cases(99, 10))


def test_evaluate_reports_the_carry_boundary_on_held_out_pairs():
    d = DataConfig(base=10, operand_max=99, n_train=2000, n_test=300, seed=3,
                   min_per_stratum=30)
    ds = make_dataset(d)
    held = HeldOut(ds.test, ds.n_uniform, 99, 10)
    pairs = [operands(ex, 10) for ex in ds.test]
    at = {s: [p for p in pairs if p[0] % 10 + p[1] % 10 == s] for s in (9, 10)}
    assert all(at.values())
    # every held-out pair whose low digits sum to 9 or 10 is in its group, and no other
    assert {s: [pairs[i] for i in idx] for s, idx in held.boundary.items()} == at
    assert evaluate.evaluate(Oracle(10), held, 256, torch.device("cpu"))["carry_boundary"] == 1
    # two wrong answers at sum 10: the boundary is their rate, the strata barely move
    wrong = Oracle(10, wrong=set(at[10][:2]))
    m = evaluate.evaluate(wrong, held, 256, torch.device("cpu"))
    assert m["carry_boundary"] == 1 - 2 / len(at[10])
    # wrong answers elsewhere leave the boundary alone
    elsewhere = [p for p in pairs if p[0] % 10 + p[1] % 10 not in (9, 10)][:5]
    m = evaluate.evaluate(Oracle(10, wrong=set(elsewhere)), held, 256, torch.device("cpu"))
    assert m["carry_boundary"] == 1.0 and m["exact_match"] < 1.0


def test_the_edge_case_suite_goes_through_the_one_greedy_decoder(monkeypatch):
    # evaluation, verification and prediction share decode.greedy_decode: no second path
    seen = []
    original = decode.greedy_decode

    def spy(model, prompts, *args, **kwargs):
        seen.extend(map(tuple, prompts))
        return original(model, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluate, "greedy_decode", spy)
    assert verify.greedy_decode is original
    d = DataConfig(base=10, operand_max=99, n_train=500, n_test=50, seed=1)
    ds = make_dataset(d)
    held = HeldOut(ds.test, ds.n_uniform, 99, 10)
    model = Transformer(ModelConfig(vocab_size=13, d_model=8, n_layers=1, n_heads=2, d_ff=8,
                                    max_seq_len=16))
    evaluate.evaluate(model, held, 64, torch.device("cpu"))
    from addray.core.tokens import make_example

    assert {tuple(make_example(a, b, 10)["input"]) for a, b in strata.edge_cases(99, 10)} \
        <= set(seen)


def test_evaluation_runs_at_the_precision_asked_for():
    # the same weights: bf16 autocast moves the held-out loss, float32 equals auto on a CPU
    d = DataConfig(base=10, operand_max=99, n_train=500, n_test=50, seed=1)
    ds = make_dataset(d)
    held = HeldOut(ds.test, ds.n_uniform, 99, 10)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=13, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                    max_seq_len=16))
    loss = {p: evaluate.evaluate(model, held, 64, torch.device("cpu"), p)["eval_loss"]
            for p in ("auto", "float32", "bfloat16")}
    assert loss["auto"] == loss["float32"]
    assert loss["bfloat16"] != loss["float32"]
