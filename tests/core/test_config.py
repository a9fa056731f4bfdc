import dataclasses
import re
import subprocess
import sys

import pytest

from addray.core.config import apply_overrides, from_dict, load_config, parse_setting
from addray.errors import ConfigError

REFERENCE_CONFIGS = ["phase1_upper", "phase1_middle", "phase1_lower", "phase1_tiny",
                     "phase2_wide", "phase2_balanced", "phase2_deep"]


@pytest.mark.parametrize("name", REFERENCE_CONFIGS)
def test_reference_yaml_loads_with_1e_minus_4(name):
    cfg = load_config(f"configs/{name}.yaml")
    # PyYAML reads '1e-4' as a string; it must arrive as the number 0.0001
    assert cfg.training.learning_rate == pytest.approx(1e-4)
    assert isinstance(cfg.training.learning_rate, float)
    assert cfg.name == name and cfg.model.vocab_size == 103


def test_omitted_sections_take_reference_defaults():
    tiny = load_config("configs/phase1_tiny.yaml")
    assert tiny.optimizer.betas == (0.9, 0.95) and tiny.optimizer.weight_decay == 0.1
    assert tiny.scheduler.eta_min == pytest.approx(1e-5)
    assert tiny.training.early_stopping.patience == 3


def test_balanced_config_follows_the_results_table():
    b = load_config("configs/phase2_balanced.yaml")
    assert (b.model.d_model, b.model.n_layers, b.model.n_heads, b.model.d_ff,
            b.training.batch_size) == (256, 4, 8, 1024, 512)


def test_every_shipped_config_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    shipped = [p for p in root.rglob("*.yaml") if not p.name.startswith("phase3_")]
    assert len(shipped) >= 18
    for path in shipped:
        load_config(path)


def test_smallest_config_is_under_2000_parameters():
    from addray.core.model import Transformer, count_parameters

    cfg = load_config("configs/history/smallest_nobias.yaml")
    assert cfg.data.boundary_share == 0.25 and cfg.model.tie_embeddings
    assert count_parameters(Transformer(cfg.model)) == 1888
    # the same with biases in its blocks and none in the head: the goal's limit exactly
    with_bias = load_config("configs/history/smallest_blockbias.yaml")
    assert with_bias.model.bias and not with_bias.model.has_head_bias
    assert count_parameters(Transformer(with_bias.model)) == 2000
    carry = load_config("configs/history/smallest_carry.yaml")
    assert carry.model == with_bias.model and carry.data.carry_share == 0.1
    assert carry.training.max_steps == 300_000
    # that run, then a fine-tune of 30,000 steps with more pairs at the carry
    smallest = load_config("configs/history/smallest_finetune.yaml")
    assert smallest.model == with_bias.model and smallest.data == carry.data
    ft = smallest.training.fine_tune
    assert smallest.training.max_steps - ft.steps == carry.training.max_steps
    assert (ft.learning_rate, ft.carry_share) == (1e-3, 0.3)
    # tried after it: the first stage stretched to 400,000 steps, then 120,000 steps with
    # half the pairs at the carry
    longer = load_config("configs/history/smallest_400k.yaml")
    assert longer.model == with_bias.model and longer.data == carry.data
    ft = longer.training.fine_tune
    assert (longer.training.max_steps - ft.steps, ft.steps) == (400_000, 120_000)
    assert (ft.learning_rate, ft.carry_share) == (1e-3, 0.5)
    # digits on a basis of 4 circles, the freed parameters in the MLPs, the same training
    basis = load_config("configs/history/smallest_basis.yaml")
    assert dataclasses.replace(basis.model, digit_basis=None, d_ff=16) == smallest.model
    assert (basis.model.digit_basis, basis.model.d_ff) == (4, 36)
    assert (basis.data, basis.training, basis.optimizer) == (
        smallest.data, smallest.training, smallest.optimizer)
    assert count_parameters(Transformer(basis.model)) == 1952
    # the same with the ramp beside the circles: one more row of 8
    ramp = load_config("configs/history/smallest_ramp.yaml")
    assert dataclasses.replace(ramp.model, digit_ramp=False) == basis.model
    assert (ramp.data, ramp.training, ramp.optimizer) == (
        basis.data, basis.training, basis.optimizer)
    assert count_parameters(Transformer(ramp.model)) == 1960
    # the same with a first stage of 400,000 steps, the same fine-tune after it
    slow = load_config("configs/history/smallest_ramp_400k.yaml")
    assert (slow.model, slow.data, slow.optimizer) == (ramp.model, ramp.data, ramp.optimizer)
    assert dataclasses.replace(slow.training, max_steps=330_000) == ramp.training
    assert slow.training.max_steps - slow.training.fine_tune.steps == 400_000
    # the smallest: the ramp with the best of two starts, screened over its first 60,000
    # steps, under the goal's 2,000 parameters
    best = load_config("configs/smallest.yaml")
    assert (best.model, best.data, best.optimizer) == (ramp.model, ramp.data, ramp.optimizer)
    assert dataclasses.replace(best.training, select=None) == ramp.training
    assert (best.training.select.candidates, best.training.select.steps) == (2, 60_000)
    assert count_parameters(Transformer(best.model)) == 1960 <= 2000


def test_tuned_config_loads():
    cfg = load_config("configs/tuned/phase1_lower.yaml")
    assert (cfg.model.d_model, cfg.model.n_layers) == (64, 3)


@pytest.mark.parametrize("section,key,value,message", [
    ("model", "d_modle", 64, "unknown key"),
    ("model", "d_model", "wide", "must be an integer"),
    ("model", "d_model", 64.5, "must be an integer"),
    ("model", "n_layers", 0, "must be >= 1 and <= 256"),
    ("model", "d_model", 100, "must be divisible by model.n_heads"),
    ("model", "n_heads", 256, "must be even"),
    ("model", "max_seq_len", 8, "must be >= 9"),
    ("model", "vocab_size", 100, "must equal data.base + 3 = 103"),
    ("model", "dropout", 1.5, "must be >= 0 and < 1"),
    ("model", "rope_scaling", "linear", "only null is supported"),
    ("training", "learning_rate", 0, "must be > 0 and <= 1"),
    ("training", "learning_rate", "fast", "must be a finite number"),
    ("training", "learning_rate", 3.0, "must be > 0 and <= 1"),
    ("training", "batch_size", -4, "must be >= 1 and <= 1000000"),
    ("training", "device", "tpu", "must be one of auto, cpu, cuda"),
    ("training", "early_stopping", {"patience": 0}, "must be >= 1"),
    ("optimizer", "betas", [0.9], "must be a list of 2 numbers"),
    ("optimizer", "betas", [0.9, 1.5], "must be >= 0 and < 1"),
    ("optimizer", "type", "sgd", "only adamw"),
    ("scheduler", "eta_min", 1.0, "must be >= 0 and <= training.learning_rate"),
    ("data", "n_train", 1_000_000, "distinct pairs"),
    ("data", "n_train", 999_999_999, "must be >= 1 and <= 2000000"),
    ("data", "operand_max", 10**12, "must be >= 1 and <= 999999"),
    ("data", "seed", -1, "must be >= 0"),
    ("data", "seed", 2**40, "must be >= 0 and <= 4294967295"),
    ("data", "sampling", "stratified", "must be one of uniform, balanced"),
    ("model", "norm", "batchnorm", "must be one of layernorm, rmsnorm"),
    ("model", "tie_embeddings", "yes", "must be true or false"),
    ("model", "bias", 1, "must be true or false"),
    ("model", "head_bias", "no", "must be true or false"),
    ("model", "embed_init", "uniform", "must be one of normal, fourier"),
    ("model", "embed_init", 1, "must be a string"),
    ("model", "digit_basis", 0, "must be >= 1 and <= 49"),
    ("model", "digit_basis", 50, "must be >= 1 and <= 49"),
    ("model", "digit_basis", 2.5, "must be an integer"),
    ("model", "d_model", float("inf"), "must be an integer"),
    ("model", "d_model", "1e400", "must be an integer"),
    ("model", "n_layers", float("nan"), "must be an integer"),
    ("model", "rope_theta", float("inf"), "must be a finite number"),
    ("optimizer", "weight_decay", float("inf"), "must be a finite number"),
    ("training", "grad_clip", "1e400", "must be a finite number"),
    ("training", "early_stopping", {"min_delta": float("inf")}, "must be a finite number"),
    ("training", "compile", "maybe", "must be one of auto, on, off"),
    ("training", "precision", "half", "must be one of auto, float32, bfloat16"),
    ("optimizer", "decay_embeddings", "no", "must be true or false"),
    ("optimizer", "weight_decay_from", 1.0,
     "must be >= 0 and < 1 (a fraction of training.max_steps)"),
    ("data", "boundary_share", 1.5, "must be >= 0 and <= 1"),
    ("data", "boundary_share", -0.1, "must be >= 0 and <= 1"),
    ("data", "boundary_share", "some", "must be a finite number"),
    ("data", "carry_share", 1.5, "must be >= 0 and <= 1"),
    ("data", "carry_share", -0.1, "must be >= 0 and <= 1"),
    ("training", "threads", 4, "unknown key"),
    ("training", "fine_tune", {"steps": 10_000}, "must be >= 1 and < training.max_steps"),
    ("training", "fine_tune", {"steps": 0}, "must be >= 1 and < training.max_steps"),
    ("training", "fine_tune", {"steps": 10, "learning_rate": 0}, "must be > 0 and <= 1"),
    ("training", "fine_tune", {"steps": 10, "learning_rate": 1e-6},
     "must be >= scheduler.eta_min"),
    ("training", "fine_tune", {"steps": 10, "carry_share": 1.5},
     "must be null, or >= 0 and <= 1"),
    ("training", "fine_tune", {"steps": 10, "carry_shar": 0.3}, "unknown key"),
    ("training", "fine_tune", {"steps": 10, "hard_share": 1.5},
     "must be >= 0 and <= 1 (a share of each batch)"),
    ("training", "fine_tune", {"steps": 10, "hard_share": "most"}, "must be a finite number"),
    ("training", "fine_tune", 3, "must be a mapping"),
])
def test_validation_names_source_key_value_and_rule(section, key, value, message):
    raw = {section: {key: value}}
    with pytest.raises(ConfigError) as err:
        from_dict(raw, source="exp.yaml")
    text = str(err.value)
    assert text.startswith("exp.yaml: ") and key in text and message in text
    assert "\n" not in text


def test_yaml_number_strings_and_integral_ints():
    cfg = from_dict({"training": {"max_steps": "1e4", "learning_rate": "3e-3"}})
    assert cfg.training.max_steps == 10_000 and cfg.training.learning_rate == 0.003


def test_on_off_yes_no_are_strings_only_true_false_are_booleans(tmp_path):
    # YAML 1.1 would read a bare on/off as true/false: `compile: on` must arrive as "on"
    path = tmp_path / "c.yaml"
    path.write_text("training: {compile: on}\n")
    assert load_config(path).training.compile == "on"
    path.write_text("training: {compile: off}\nmodel: {bias: False, tie_embeddings: true}\n")
    cfg = load_config(path)
    assert cfg.training.compile == "off" and cfg.model.bias is False
    assert cfg.model.tie_embeddings is True
    assert parse_setting("training.compile=on") == ("training.compile", "on")
    path.write_text("model: {bias: no}\n")
    with pytest.raises(ConfigError, match="model.bias = 'no': must be true or false"):
        load_config(path)


def test_carry_share_needs_generated_pairs():
    with pytest.raises(ConfigError, match="data.carry_share = 0.1: applies to generated"):
        from_dict({"data": {"carry_share": 0.1, "train_file": "a.jsonl",
                            "test_file": "b.jsonl"}})


def test_fine_tune_carry_share_needs_generated_pairs():
    with pytest.raises(ConfigError, match="training.fine_tune.carry_share = 0.3: applies to"):
        from_dict({"training": {"fine_tune": {"steps": 10, "carry_share": 0.3}},
                   "data": {"train_file": "a.jsonl", "test_file": "b.jsonl"}})


def test_boundary_share_needs_generated_pairs():
    with pytest.raises(ConfigError, match="data.boundary_share = 0.2: applies to generated"):
        from_dict({"data": {"boundary_share": 0.2, "train_file": "a.jsonl",
                            "test_file": "b.jsonl"}})


def test_overrides_take_precedence_and_are_validated():
    cfg = load_config("configs/phase1_lower.yaml", {"training.max_steps": 50})
    assert cfg.training.max_steps == 50
    cfg2 = apply_overrides(cfg, {"training.early_stopping.patience": 9})
    assert cfg2.training.early_stopping.patience == 9
    with pytest.raises(ConfigError, match="command line: training.learning_rate = -1"):
        load_config("configs/phase1_lower.yaml", {"training.learning_rate": -1})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


@pytest.mark.parametrize("name", ["../../../somewhere", "/abs/path", "a/b", "..", "", ".hidden",
                                  "x" * 101])
def test_config_name_is_a_plain_name(name):
    # a config's name becomes a folder name: it must not reach outside its folder
    with pytest.raises(ConfigError, match="name = .*must be a plain name"):
        from_dict({"name": name}, source="exp.yaml")


@pytest.mark.parametrize("text,message", [
    ("model:\n  d_model: 16\nmodel:\n  d_model: 256\n",
     "line 3: not valid YAML: duplicate key 'model'"),
    ("training: {batch_size: 64, batch_size: 128}\n", "duplicate key 'batch_size'"),
    ("a: &x [1, 2]\nb: *x\n", "anchors and aliases (*name) are not supported"),
    ("model:\n  dropout: .nan\n", "model.dropout = nan: must be a finite number"),
    ("optimizer:\n  weight_decay: .inf\n", "optimizer.weight_decay = inf: must be a finite"),
    ("training:\n  max_steps: 1e400\n", "training.max_steps = '1e400': must be an integer"),
    ("x: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
])
def test_strict_yaml(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value), err.value
    assert "\n" not in str(err.value)


def test_billion_laughs_is_refused_in_one_short_line(tmp_path):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="anchors and aliases") as err:
        load_config(path)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a text (UTF-8) config file"),
    (b"model: {d_model: 64}\n# caf\xe9\n", "not a text (UTF-8) config file"),
])
def test_binary_config_is_one_line(tmp_path, content, message):
    path = tmp_path / "bin.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_large_values_are_shown_short():
    with pytest.raises(ConfigError) as err:
        from_dict({"model": {"d_model": "x" * 10_000}}, source="exp.yaml")
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("text,key,value", [
    ("training.batch_size=128", "training.batch_size", 128), ("name=run-2", "name", "run-2"),
    ("training.early_stopping=null", "training.early_stopping", None)])
def test_parse_setting(text, key, value):
    assert parse_setting(text) == (key, value)


@pytest.mark.parametrize("text,message", [("k=[x", "--set k: line 1: not valid YAML"),
                                          ("novalue", "expected KEY=VALUE"),
                                          ("=3", "expected KEY=VALUE")])
def test_bad_setting_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_setting(text)


def test_config_round_trips_through_dict():
    cfg = load_config("configs/phase1_upper.yaml")
    assert from_dict(cfg.to_dict()) == cfg


def test_cli_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 100\n")
    proc = subprocess.run([sys.executable, "-m", "addray.train", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"{bad}: model.d_model = 100: must be divisible by model.n_heads" in proc.stderr


def test_digit_basis_fixes_the_circles_so_a_fourier_start_is_refused():
    with pytest.raises(ConfigError) as err:
        from_dict({"model": {"digit_basis": 4, "embed_init": "fourier"}}, source="exp.yaml")
    assert str(err.value).startswith("exp.yaml: model.embed_init = 'fourier': must be normal "
                                     "when model.digit_basis is set")
    assert from_dict({"model": {"digit_basis": 4}}).model.digit_basis == 4


def test_digit_ramp_needs_a_digit_basis_and_a_boolean():
    for model, rule in (({"digit_ramp": True}, "needs model.digit_basis"),
                        ({"digit_basis": 4, "digit_ramp": "yes"}, "must be true or false")):
        with pytest.raises(ConfigError) as err:
            from_dict({"model": model}, source="exp.yaml")
        assert str(err.value).startswith("exp.yaml: model.digit_ramp = ")
        assert rule in str(err.value) and "\n" not in str(err.value)
    assert from_dict({"model": {"digit_basis": 4, "digit_ramp": True}}).model.digit_ramp
