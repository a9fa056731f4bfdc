"""Phase 3's search space file and objective (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from addray.errors import ConfigError
from addray.sweep.search_space import OptunaSpace, load_space
from tests.conftest import ROOT

SPACE = ROOT / "configs" / "phase3_search.yaml"
PRUNE = {"metric": "exact_match", "clock": "steps", "rungs": [1000]}


def test_shipped_space_loads_and_maps_to_configs():
    space = load_space(SPACE)
    assert space.threshold == 0.99
    cfg = space.config_for({"d_model": 24, "n_layers": 1, "n_heads": 2, "d_ff_mult": 2,
                            "learning_rate": 0.01, "batch_size": 256, "warmup_steps": 300,
                            "weight_decay": 0.01, "dropout": 0.0})
    assert (cfg.model.d_model, cfg.model.n_layers, cfg.model.n_heads, cfg.model.d_ff) == (
        24, 1, 2, 48)
    assert (cfg.training.learning_rate, cfg.training.batch_size, cfg.training.warmup_steps) == (
        0.01, 256, 300)
    assert cfg.optimizer.weight_decay == 0.01 and cfg.model.dropout == 0.0
    assert cfg.training.max_steps == 30000  # from fixed:
    assert cfg.name == "24d-1L-2h-48ff"


class _FakeTrial:
    """Stands in for Optuna's trial: always the lowest choice or bound."""

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_int(self, name, low, high, log=False):
        return low

    def suggest_float(self, name, low, high, log=False):
        return low


def test_optuna_space_returns_a_trial_spec():
    spec = OptunaSpace(load_space(SPACE), PRUNE)(_FakeTrial())["trial"]
    assert spec["sample"]["d_model"] == 8 and spec["config"]["model"]["d_ff"] == 8
    assert spec["objective"] == {"threshold": 0.99} and spec["prune"] == PRUNE
    assert spec["label"].startswith("8d-1L-1h-8ff")


def test_small_model_options_are_searchable(tmp_path):
    path = _write(tmp_path, "base: base.yaml\nfixed: {model.dropout: 0.0}\nspace:\n"
                            "  d_model: {choices: [4, 8]}\n  n_heads: {choices: [1, 2]}\n"
                            "  d_ff: {low: 1, high: 4}\n"
                            "  tie_embeddings: {choices: [true, false]}\n"
                            "  bias: {choices: [false]}\n"
                            "  norm: {choices: [rmsnorm, layernorm]}\n")
    space = load_space(path)
    cfg = space.config_for({"d_model": 4, "n_heads": 2, "d_ff": 1, "tie_embeddings": True,
                            "bias": False, "norm": "rmsnorm"})
    assert (cfg.model.d_model, cfg.model.d_ff, cfg.model.tie_embeddings, cfg.model.bias,
            cfg.model.norm) == (4, 1, True, False, "rmsnorm")
    assert cfg.name == "4d-2L-2h-1ff-tied-nobias-rms"  # phase1_tiny has 2 layers
    assert len(space.model_corners()) == 2 * 2 * 4 * 2 * 1 * 2


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "base.yaml").write_text((ROOT / "configs" / "phase1_tiny.yaml").read_text())
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,expected", [
    ("base: base.yaml\nspace: {d_model: {choices: [12, 16]}, n_heads: {choices: [4]}}\n",
     "space allows {'d_model': 12, 'n_heads': 4}"),
    ("base: base.yaml\nspace: {width: {choices: [8]}}\n", "space.width = "),
    ("base: base.yaml\nspace: {learning_rate: {low: 0.1, high: 0.01}}\n",
     "space.learning_rate.high = 0.01: must be > low (0.1)"),
    ("base: base.yaml\nspace: {weight_decay: {low: 0, high: 0.1, log: true}}\n",
     "space.weight_decay.low = 0.0: must be > 0 on a log scale"),
    ("base: base.yaml\nspace: {n_layers: {low: 1.5, high: 3}}\n",
     "space.n_layers.low = 1.5: must be an integer"),
    ("base: base.yaml\nspace: {learning_rate: {low: 1.0e-3, high: 2}}\n",
     "training.learning_rate = 2.0: must be > 0 and <= 1"),
    ("base: missing.yaml\nspace: {n_layers: {low: 1, high: 2}}\n", "base = 'missing.yaml'"),
    ("base: base.yaml\nobjective: {threshold: 1.5}\nspace: {n_layers: {low: 1, high: 2}}\n",
     "objective.threshold = 1.5: must be > 0 and <= 1"),
    ("base: base.yaml\nfixed: {training.max_step: 10}\nspace: {n_layers: {low: 1, high: 2}}\n",
     "training.max_step"),
    ("base: base.yaml\nspace: {}\n", "space = {}"),
    ("base: base.yaml\nspace: {batch_size: {choices: []}}\n",
     "space.batch_size.choices = []: must be a non-empty list"),
    ("base: base.yaml\nspace: {norm: {choices: [groupnorm]}}\n", "must be one of layernorm"),
    ("base: base.yaml\nspace: {bias: {low: 0, high: 1}}\n", "must be given as choices"),
    ("base: base.yaml\nspace: {head_bias: {choices: [null]}}\n",
     "space.head_bias.choices = None: must be true or false"),
    ("base: base.yaml\nspace: {carry_share: {low: 0.0, high: 1.5}}\n",
     "data.carry_share = 1.5: must be >= 0 and <= 1"),
    ("base: base.yaml\nspace: {d_ff: {low: 1, high: 4}, d_ff_mult: {choices: [1]}}\n",
     "search d_ff or d_ff_mult, not both"),
    ("base: base.yaml\nspace: {n_layers: {low: 1, high: 2}, n_layers: {low: 1, high: 3}}\n",
     "duplicate key 'n_layers'"),
    ("base: base.yaml\nspace: {learning_rate: {low: .nan, high: 0.1}}\n",
     "space.learning_rate.low = nan: must be a finite number"),
    ("base: base.yaml\nspace: {d_model: {low: 8, high: 4000}, d_ff: {low: 1, high: 4000}}\n",
     "shapes, more than 100,000"),
    ("base: base.yaml\nfixed: {training.early_stopping: null, training.select: "
     "{candidates: 2, steps: 5}}\nspace: {d_model: {choices: [16]}}\n",
     "training.select = {candidates: 2, steps: 5}: must be null in a sweep"),
])
def test_bad_space_fails_loudly(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message


def test_head_bias_and_the_data_mix_are_searchable(tmp_path):
    # the levers of configs/history/smallest_finetune.yaml: no bias in the tied head, pairs at the
    # carry decision and at the operand boundaries
    path = _write(tmp_path, "base: base.yaml\nspace:\n  bias: {choices: [true]}\n"
                            "  head_bias: {choices: [false, true]}\n"
                            "  carry_share: {low: 0.0, high: 0.3}\n"
                            "  boundary_share: {choices: [0.0, 0.25]}\n")
    space = load_space(path)
    cfg = space.config_for({"bias": True, "head_bias": False, "carry_share": 0.1,
                            "boundary_share": 0.25})
    assert (cfg.model.bias, cfg.model.head_bias, cfg.model.has_head_bias) == (True, False, False)
    assert (cfg.data.carry_share, cfg.data.boundary_share) == (0.1, 0.25)
    assert cfg.name.endswith("-noheadbias")
    assert len(space.model_corners()) == 2  # head_bias is a model setting: both checked


def test_d_ff_mult_follows_a_fixed_d_model(tmp_path):
    # d_model fixed (not searched): d_ff is a multiple of the fixed width, not the base's
    path = _write(tmp_path, "base: base.yaml\nfixed: {model.d_model: 16}\n"
                            "space: {d_ff_mult: {choices: [1, 4]}}\n")
    space = load_space(path)
    assert space.config_for({"d_ff_mult": 4}).model.d_ff == 64
    assert space.config_for({"d_ff_mult": 4, "d_model": 24}).model.d_ff == 96


def test_shipped_spaces_load():
    for name in ("phase3_search.yaml", "history/phase3_focused.yaml",
                 "history/phase3_small.yaml", "history/phase3_long.yaml", "phase3_tiny.yaml"):
        assert load_space(ROOT / "configs" / name).dimensions


def test_unreadable_space_file(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a search-space file") as err:
        load_space(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_arch_name_marks_a_head_bias_set_apart_from_the_blocks():
    from addray.core.config import load_config
    from addray.sweep.search_space import arch_name

    cfg = load_config("configs/history/smallest_blockbias.yaml")  # bias true, head_bias false
    assert arch_name(cfg) == "8d-2L-2h-16ff-tied-noheadbias-rms"
    cfg.model.head_bias = None  # as model.bias: no mark
    assert arch_name(cfg) == "8d-2L-2h-16ff-tied-rms"


def test_digit_basis_is_searchable_with_null_for_a_free_table(tmp_path):
    path = _write(tmp_path, "base: base.yaml\nfixed: {model.d_model: 8, model.n_heads: 2}\n"
                            "space:\n  digit_basis: {choices: [null, 4]}\n")
    space = load_space(path)
    assert space.config_for({"digit_basis": None}).model.digit_basis is None
    cfg = space.config_for({"digit_basis": 4})
    assert cfg.model.digit_basis == 4 and cfg.name.endswith("-basis4")
    assert len(space.model_corners()) == 2  # both shapes validated at load
    spec = OptunaSpace(space, PRUNE)(_FakeTrial())["trial"]
    assert spec["config"]["model"]["digit_basis"] is None  # the first choice
    # a bound the config rules refuse fails when the file loads, naming the rule
    bad = _write(tmp_path, "base: base.yaml\nspace:\n  digit_basis: {low: 1, high: 60}\n")
    with pytest.raises(ConfigError, match=r"model.digit_basis = 50: must be >= 1 and <= 49"):
        load_space(bad)
