import math

import pytest
import torch

from addray.core.config import ModelConfig, load_config
from addray.core.model import Rotary, Transformer, count_parameters

REFERENCE_CONFIGS = ["phase1_upper", "phase1_middle", "phase1_lower", "phase1_tiny",
                     "phase2_wide", "phase2_balanced", "phase2_deep"]


def textbook_rope(x: torch.Tensor, theta: float = 100.0) -> torch.Tensor:
    """RoPE as usually written, on (B, H, T, hd), from nothing of the model's:
    x * cos + rotate_half(x) * sin, each pair's frequency written for both halves."""
    hd, t = x.size(-1), x.size(-2)
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(t).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()


@pytest.mark.parametrize("head_dim", [2, 8, 16, 32, 64])
def test_rope_shapes(head_dim):
    rot = Rotary(head_dim, max_seq_len=32, theta=100.0)
    x = torch.randn(3, 9, 4, head_dim)  # (B, T, H, hd)
    xr = rot(x)
    assert xr.shape == x.shape
    # a rotation keeps the length of every vector
    torch.testing.assert_close(xr.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("head_dim,theta", [(8, 100.0), (32, 100.0), (16, 10000.0)])
def test_rope_score_depends_only_on_offset(head_dim, theta):
    torch.manual_seed(0)
    t = 12
    rot = Rotary(head_dim, max_seq_len=t, theta=theta)
    # the same query and key vector at every position: scores differ only by position
    qr = rot(torch.randn(head_dim).expand(1, t, 1, head_dim))[0, :, 0]  # (T, hd)
    kr = rot(torch.randn(head_dim).expand(1, t, 1, head_dim))[0, :, 0]
    scores = qr @ kr.T  # (T, T): scores[i, j] = <q at i, k at j>
    for shift in range(1, 5):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift],
                                   atol=1e-5, rtol=1e-5)
    # and it really depends on the offset (not a constant)
    assert not torch.allclose(scores[0, 0], scores[5, 0])


@pytest.mark.parametrize("head_dim", [2, 4, 6, 16])
def test_rope_is_the_textbook_formula_bit_for_bit(head_dim):
    # the model rotates (B, T, H, hd) as it comes out of the qkv projection, with roll and
    # a signed sin table; the usual formula on (B, H, T, hd) must give the same bits, so
    # the faster layout changes no trained model
    torch.manual_seed(0)
    rot = Rotary(head_dim, max_seq_len=32, theta=100.0)
    x = torch.randn(5, 7, 3, head_dim)  # (B, T, H, hd)
    assert torch.equal(rot(x).transpose(1, 2), textbook_rope(x.transpose(1, 2)))


def test_attention_is_the_textbook_formula():
    # the attention block against RoPE + causal softmax attention written out in full
    torch.manual_seed(0)
    cfg = load_config("configs/sizes/phase1_8k.yaml").model
    block = Transformer(cfg).blocks[0].attn.eval()
    x = torch.randn(4, 7, cfg.d_model)
    b, t, c = x.shape
    h = cfg.n_heads
    q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in block.qkv(x).split(c, 2))
    q, k = textbook_rope(q, cfg.rope_theta), textbook_rope(k, cfg.rope_theta)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(c // h)
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
    torch.testing.assert_close(block(x), block.proj(y))


def _formula(c: ModelConfig) -> int:
    d, ff, v = c.d_model, c.d_ff, c.vocab_size
    b = 1 if c.bias else 0
    attn = 4 * d * d + b * 4 * d  # qkv and output projections (and their biases)
    mlp = 2 * d * ff + b * (ff + d)
    norm = d if c.norm == "rmsnorm" else d + b * d  # scale (and shift)
    head = (0 if c.tie_embeddings else d * v) + (1 if c.has_head_bias else 0) * v
    return v * d + c.n_layers * (attn + mlp + 2 * norm) + norm + head


@pytest.mark.parametrize("name", REFERENCE_CONFIGS)
def test_parameter_count_matches_formula(name):
    cfg = load_config(f"configs/{name}.yaml")
    assert count_parameters(Transformer(cfg.model)) == _formula(cfg.model)


def test_parameter_counts_against_the_audit():
    # the reference says 3.18M for 256d-6L and 77K for 32d-2L; counted: 4.8M and 32K
    upper = count_parameters(Transformer(load_config("configs/phase1_upper.yaml").model))
    tiny = count_parameters(Transformer(load_config("configs/phase1_tiny.yaml").model))
    assert round(upper / 1e5) == 48 and round(tiny / 1e3) == 32


@pytest.mark.parametrize("tie,bias,norm", [(t, b, n) for t in (False, True) for b in (False, True)
                                           for n in ("layernorm", "rmsnorm")])
def test_small_model_options_count_each_tensor_once(tie, bias, norm):
    cfg = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=4, tie_embeddings=tie,
                      bias=bias, norm=norm)
    model = Transformer(cfg)
    assert count_parameters(model) == _formula(cfg)
    if tie:  # one matrix, used twice
        assert model.head.weight is model.embed.weight


@pytest.mark.parametrize("bias,head_bias", [(True, False), (False, True), (True, None),
                                            (False, None)])
def test_head_bias_sets_the_heads_bias_apart_from_the_blocks(bias, head_bias):
    cfg = ModelConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, tie_embeddings=True,
                      bias=bias, head_bias=head_bias, norm="rmsnorm")
    model = Transformer(cfg)
    names = {n for n, _ in model.named_parameters()}
    want_head = bias if head_bias is None else head_bias
    assert ("head.bias" in names) is want_head
    assert ("blocks.1.mlp.fc.bias" in names) is bias
    assert count_parameters(model) == _formula(cfg)
    # the 1,888-parameter smallest model plus biases in both blocks, none over the vocabulary
    if (bias, head_bias) == (True, False):
        assert count_parameters(model) == 1888 + 2 * (4 * 8 + 16 + 8)


def test_tied_model_saves_loads_and_predicts_through_the_same_code(tmp_path):
    from addray.core.checkpoint import load_model, save_checkpoint
    from addray.core.config import ExperimentConfig

    cfg = ExperimentConfig(name="tied")
    cfg.model = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=4, tie_embeddings=True,
                            bias=False, norm="rmsnorm")
    model = Transformer(cfg.model)
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": cfg.to_dict(),
                                                 "model": model.state_dict()})
    loaded, _ = load_model(tmp_path)
    assert loaded.head.weight is loaded.embed.weight
    assert count_parameters(loaded) == count_parameters(model)
    x = torch.randint(0, 103, (2, 7))
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_count_parameters_counts_shared_tensors_once():
    m = Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64))
    before = count_parameters(m)
    m.head.weight = m.embed.weight  # tie
    assert count_parameters(m) == before - 32 * 103


def test_forward_is_causal():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, dropout=0.0)).eval()
    x = torch.randint(0, 103, (2, 9))
    y = x.clone()
    y[:, 6:] = 5  # change the future
    with torch.no_grad():
        torch.testing.assert_close(m(x)[:, :6], m(y)[:, :6])
    assert m(x).shape == (2, 9, 103)


def test_forward_rejects_too_long_sequence():
    m = Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=8))
    with pytest.raises(ValueError, match="exceeds max_seq_len 8"):
        m(torch.zeros(1, 9, dtype=torch.long))


def test_fourier_embed_init_puts_digits_on_circles_and_changes_nothing_else():
    small = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, tie_embeddings=True,
                 bias=True, head_bias=False, norm="rmsnorm")
    torch.manual_seed(3)
    plain = Transformer(ModelConfig(**small))
    torch.manual_seed(3)
    fourier = Transformer(ModelConfig(**small, embed_init="fourier"))
    e = fourier.embed.weight.detach()
    # digit n on circle k: the pair (2k-2, 2k-1) is (cos, sin)(2 pi k n / 100), each row
    # of the norm that a normal init's rows have on average (0.02 x sqrt(8))
    n, k = 37, 3
    angle = torch.tensor(2 * math.pi * k * n / 100)
    want = torch.stack([angle.cos(), angle.sin()]) * 0.02 * math.sqrt(2)
    torch.testing.assert_close(e[n, 2 * k - 2 : 2 * k], want)
    torch.testing.assert_close(e[:100].norm(dim=1), torch.full((100,), 0.02 * math.sqrt(8)))
    # one step round every circle apart: distinct, evenly spaced digits
    gaps = (e[:100] - e[:100].roll(1, dims=0)).norm(dim=1)
    torch.testing.assert_close(gaps, gaps[0].expand(100))
    # '+', '=', PAD and every other tensor as the normal init of the same seed draws them
    torch.testing.assert_close(e[100:], plain.embed.weight.detach()[100:])
    for (name, a), (_, b) in zip(plain.named_parameters(), fourier.named_parameters(),
                                 strict=True):
        if name != "embed.weight":
            torch.testing.assert_close(a, b, msg=name)
    assert fourier.head.weight is fourier.embed.weight
    assert count_parameters(fourier) == count_parameters(plain) == 2000



@pytest.mark.parametrize("tie,head_bias", [(True, False), (True, True), (False, False)])
def test_digit_basis_makes_digit_rows_from_circles_and_counts_what_it_learns(tie, head_bias):
    small = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, tie_embeddings=tie, bias=True,
                 head_bias=head_bias, norm="rmsnorm", dropout=0.0)
    plain = Transformer(ModelConfig(**small))
    model = Transformer(ModelConfig(**small, digit_basis=3))
    e = model.embed.weight.detach()
    # each digit's row is coef applied to (1, cos, sin of 2 pi k n / 100 for k = 1..3)
    n = 37
    angles = torch.tensor([2 * math.pi * k * n / 100 for k in (1, 2, 3)])
    feats = torch.cat([torch.ones(1), torch.stack([angles.cos(), angles.sin()], 1).flatten()])
    torch.testing.assert_close(e[n], feats @ model.embed.coef.detach())
    torch.testing.assert_close(e[100:], model.embed.special.detach())  # '+', '=', PAD free
    # the table of 103 x 8 becomes (2 x 3 + 1 + 3) x 8; the head keeps what it had
    # (a tied one only its bias, if any; an untied one its own 103 x 8 and bias)
    assert count_parameters(model) == count_parameters(plain) - 103 * 8 + (2 * 3 + 1 + 3) * 8
    # the head scores against the same matrix: digits that share a code score alike
    x = torch.randint(0, 103, (3, 7))
    logits = model(x)
    assert logits.shape == (3, 7, 103)
    if tie:
        h = model.ln_f(model.blocks[1](model.blocks[0](model.embed(x))))
        want = h @ model.embed.weight.T + (model.head_bias if head_bias else 0)
        torch.testing.assert_close(logits, want)
    # gradients reach the learned coefficients through both the input and a tied head:
    # the same as through the formula above, which uses the matrix on both sides
    if tie:
        grads = torch.autograd.grad(logits.square().sum(), model.embed.coef, retain_graph=True)
        want_grads = torch.autograd.grad(want.square().sum(), model.embed.coef)
        torch.testing.assert_close(grads[0], want_grads[0], rtol=1e-4, atol=1e-4)
    logits.sum().backward()
    assert model.embed.coef.grad.abs().sum() > 0


def test_digit_ramp_adds_the_digit_value_as_one_more_feature():
    small = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, tie_embeddings=True, bias=True,
                 head_bias=False, norm="rmsnorm", dropout=0.0, digit_basis=3)
    circles = Transformer(ModelConfig(**small))
    model = Transformer(ModelConfig(**small, digit_ramp=True))
    assert count_parameters(model) == count_parameters(circles) + 8  # one row of coef
    e, coef = model.embed.weight.detach(), model.embed.coef.detach()
    for n, line in ((0, -1.0), (99, 1.0), (37, 2 * 37 / 99 - 1)):
        angles = torch.tensor([2 * math.pi * k * n / 100 for k in (1, 2, 3)])
        feats = torch.cat([torch.ones(1), torch.stack([angles.cos(), angles.sin()], 1).flatten(),
                           torch.tensor([line])])
        torch.testing.assert_close(e[n], feats @ coef)
    # the ramp's row is what separates digits 99 and 0, neighbours on every circle
    without = e[:100] - model.embed.basis[:, -1:] * coef[-1]
    torch.testing.assert_close(e[99] - e[0] - (without[99] - without[0]), 2 * coef[-1])


def test_digit_basis_model_saves_loads_and_predicts_through_the_same_code(tmp_path):
    from addray.core.checkpoint import load_model, save_checkpoint
    from addray.core.config import ExperimentConfig

    cfg = ExperimentConfig(name="basis")
    cfg.model = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=4, tie_embeddings=True,
                            bias=False, norm="rmsnorm", digit_basis=2)
    model = Transformer(cfg.model)
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": cfg.to_dict(),
                                                 "model": model.state_dict()})
    assert "embed.basis" not in model.state_dict()  # rebuilt from the config, not saved
    loaded, _ = load_model(tmp_path)
    # basis and specials, qkv and proj, the MLP, three RMSNorm scales
    want = (5 + 3) * 8 + (8 * 24 + 8 * 8) + 2 * 8 * 4 + 3 * 8
    assert count_parameters(loaded) == count_parameters(model) == want
    x = torch.randint(0, 103, (2, 7))
    torch.testing.assert_close(loaded(x), model.eval()(x))
