"""Experiment configuration: YAML -> dict -> validated dataclasses.

Precedence is dataclass defaults < YAML file < overrides (command line). Every
problem raises one `ConfigError` whose message names the source, the key, the
value and the rule, e.g. ``configs/x.yaml: training.learning_rate = -1: must be > 0``.

The defaults are the reference experiment's values, so a reference YAML file
that omits a section (``optimizer``, ``scheduler``, ``early_stopping``) gets what
the reference used there.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from addray import data as data_lib
from addray.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration value breaks a rule; the message is one line for the user."""


@dataclass
class ModelConfig:
    vocab_size: int = 103  # base + 3: the base's digits, '+', '=', PAD
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 1024
    max_seq_len: int = 32
    dropout: float = 0.1
    rope_theta: float = 100.0
    rope_scaling: str | None = None  # only null is supported (the reference never sets it)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass
class EarlyStoppingConfig:
    patience: int = 3  # evaluations without an improvement of at least min_delta
    min_delta: float = 0.001


@dataclass
class TrainingConfig:
    batch_size: int = 256
    learning_rate: float = 1e-4
    warmup_steps: int = 500
    max_steps: int = 10_000
    grad_clip: float = 1.0
    check_every: int = 500
    early_stopping: EarlyStoppingConfig | None = field(default_factory=EarlyStoppingConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    pad_to: int | None = None  # pad every batch to this length (the reference pads to 32)
    eval_batch_size: int = 2048
    time_budget_s: float | None = None  # stop (status time_limit) after this many seconds


@dataclass
class OptimizerConfig:
    type: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1


@dataclass
class SchedulerConfig:
    type: str = "cosine"  # linear warmup, then cosine decay to eta_min
    eta_min: float = 1e-5


@dataclass
class DataConfig:
    base: int = 100
    operand_max: int = 999  # operands are drawn from 0..operand_max
    n_train: int = 100_000
    n_test: int = 10_000
    seed: int = 1234
    train_file: str | None = None  # JSONL written by `python -m addray.data`
    test_file: str | None = None


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict of the resolved configuration."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- typed loading

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _fail(source: str, key: str, value: Any, rule: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {key} = {value!r}: {rule}")


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    """Convert a YAML value to the declared field type, or fail naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, source, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(source, key, value, "must be a mapping (a YAML section)")
        return _build(tp, value, source, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, key, value, "must be true or false")
        return value
    if tp is int:
        # 1e4 arrives as the string '1e4' (YAML 1.1); accept it when it is a whole number
        num = _number(value)
        if num is None or num != int(num):
            _fail(source, key, value, "must be an integer")
        return int(num)
    if tp is float:
        # PyYAML reads 1e-4 as the string '1e-4' (YAML 1.1 wants 1.0e-4): accept it
        num = _number(value)
        if num is None:
            _fail(source, key, value, "must be a number")
        return float(num)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, key, value, "must be a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            _fail(source, key, value, f"must be a list of {len(args)} numbers")
        return tuple(_coerce(a, v, source, f"{key}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug here, not user input


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if isinstance(value, float) else value
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return None


def _build(cls: type, mapping: dict, source: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in names:
            _fail(source, prefix + str(key), mapping[key],
                  f"unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, source, prefix + k) for k, v in mapping.items()}
    return cls(**kwargs)


# ------------------------------------------------------------------- validation

def validate(cfg: ExperimentConfig, source: str = "<config>") -> ExperimentConfig:
    """Check every rule; raise ConfigError on the first one broken."""

    def check(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            _fail(source, key, value, rule)

    m, t, o, s, d = cfg.model, cfg.training, cfg.optimizer, cfg.scheduler, cfg.data
    for key in ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
        check(getattr(m, key) > 0, f"model.{key}", getattr(m, key), "must be > 0")
    check(m.d_model % m.n_heads == 0, "model.d_model", m.d_model,
          f"must be divisible by model.n_heads ({m.n_heads})")
    check(m.head_dim % 2 == 0, "model.n_heads", m.n_heads,
          f"d_model / n_heads = {m.head_dim} must be even (RoPE rotates pairs of dimensions)")
    check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be >= 0 and < 1")
    check(m.rope_theta > 0, "model.rope_theta", m.rope_theta, "must be > 0")
    check(m.rope_scaling is None, "model.rope_scaling", m.rope_scaling,
          "only null is supported")

    check(d.base >= 2, "data.base", d.base, "must be >= 2")
    check(d.operand_max >= 1, "data.operand_max", d.operand_max, "must be >= 1")
    check(d.n_train > 0, "data.n_train", d.n_train, "must be > 0")
    check(d.n_test > 0, "data.n_test", d.n_test, "must be > 0")
    pairs = (d.operand_max + 1) ** 2
    check(d.n_train + d.n_test <= pairs, "data.n_train", d.n_train,
          f"n_train + n_test ({d.n_train + d.n_test}) must be <= the {pairs} distinct pairs "
          f"of operands 0..{d.operand_max} (train and test are disjoint)")
    vocab = data_lib.Vocab(d.base)
    check(m.vocab_size == vocab.size, "model.vocab_size", m.vocab_size,
          f"must equal data.base + 3 = {vocab.size} (digits, '+', '=', PAD)")
    longest = data_lib.max_example_length(d.operand_max, d.base)
    check(m.max_seq_len >= longest, "model.max_seq_len", m.max_seq_len,
          f"must be >= {longest}, the longest example for operands up to {d.operand_max}")

    for key in ("batch_size", "max_steps", "check_every", "eval_batch_size"):
        check(getattr(t, key) > 0, f"training.{key}", getattr(t, key), "must be > 0")
    check(0 < t.learning_rate <= 1.0, "training.learning_rate", t.learning_rate,
          "must be > 0 and <= 1")
    check(t.warmup_steps >= 0, "training.warmup_steps", t.warmup_steps, "must be >= 0")
    check(t.grad_clip > 0, "training.grad_clip", t.grad_clip, "must be > 0")
    check(t.time_budget_s is None or t.time_budget_s > 0, "training.time_budget_s",
          t.time_budget_s, "must be null or > 0")
    check(t.device in ("auto", "cpu", "cuda"), "training.device", t.device,
          "must be one of auto, cpu, cuda")
    check(t.pad_to is None or t.pad_to >= longest, "training.pad_to", t.pad_to,
          f"must be null or >= {longest}, the longest example")
    check(t.pad_to is None or t.pad_to <= m.max_seq_len, "training.pad_to", t.pad_to,
          f"must be <= model.max_seq_len ({m.max_seq_len})")
    if t.early_stopping is not None:
        es = t.early_stopping
        check(es.patience >= 1, "training.early_stopping.patience", es.patience, "must be >= 1")
        check(es.min_delta >= 0, "training.early_stopping.min_delta", es.min_delta,
              "must be >= 0")

    check(o.type == "adamw", "optimizer.type", o.type, "only adamw is supported")
    for i, beta in enumerate(o.betas):
        check(0.0 <= beta < 1.0, f"optimizer.betas[{i}]", beta, "must be >= 0 and < 1")
    check(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
    check(s.type == "cosine", "scheduler.type", s.type, "only cosine is supported")
    check(0 <= s.eta_min <= t.learning_rate, "scheduler.eta_min", s.eta_min,
          f"must be >= 0 and <= training.learning_rate ({t.learning_rate})")
    return cfg


# ---------------------------------------------------------------------- loading

def from_dict(raw: Any, source: str = "<config>", name: str | None = None) -> ExperimentConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping with sections "
                          f"model, training, optimizer, scheduler, data; got {type(raw).__name__}")
    raw = dict(raw)
    raw.setdefault("name", name or Path(source).stem)
    cfg = _build(ExperimentConfig, raw, source)
    return validate(cfg, source)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a YAML experiment file, apply dotted-key overrides, validate."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}:{line} not valid YAML: {problem}") from None
    cfg = from_dict(raw, source, name=path.stem)
    return apply_overrides(cfg, overrides or {}, source="command line")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any],
                    source: str = "overrides") -> ExperimentConfig:
    """Return a new config with ``{"training.max_steps": 100, ...}`` applied and validated."""
    if not overrides:
        return cfg
    raw = cfg.to_dict()
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is None:
                    node[part] = {}
                else:
                    _fail(source, dotted, value, "unknown key")
            node = node[part]
        node[leaf] = value
    return from_dict(raw, source)
