"""Experiment configuration: YAML -> dict -> validated dataclasses. No torch here.

Precedence is dataclass defaults < YAML file < overrides (command line). Every
problem raises one `ConfigError` whose message names the source, the key, the
value and the rule, e.g. ``configs/x.yaml: training.learning_rate = -1: must be > 0``.

The defaults are the reference experiment's values, so a reference YAML file
that omits a section (``optimizer``, ``scheduler``, ``early_stopping``) gets what
the reference used there. Settings the reference does not have (model.norm,
data.sampling, training.compile, ...) default to what reproduces it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from addray import names, yamlfile
from addray.core.tokens import Vocab, max_example_length
from addray.errors import ConfigError

# sane upper bounds: past these a setting would exhaust memory or never finish
MAX_SEED = 2**32 - 1
MAX_CANDIDATES = 16
MAX_OPERAND = 999_999
MAX_BASE = 10_000
MAX_TRAIN = 2_000_000
MAX_TEST = 200_000
PRECISIONS = ("auto", "float32", "bfloat16")


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
    tie_embeddings: bool = False  # the output head reuses the embedding matrix
    bias: bool = True  # biases in the linear layers (and LayerNorm shifts)
    head_bias: bool | None = None  # a bias in the output head; null: as model.bias
    norm: str = "layernorm"  # layernorm | rmsnorm
    # normal: every embedding row N(0, 0.02); fourier: digit n starts on circles,
    # (cos, sin)(2 pi k n / base) for k = 1..d_model/2 (addray.core.model.fourier_digits)
    embed_init: str = "normal"
    # null: one free row per token. K: each digit's row is a learned linear map of 2K + 1
    # fixed features, 1 and (cos, sin)(2 pi k n / base) for k = 1..K; '+', '=' and PAD keep
    # free rows (addray.core.model.DigitBasis): d_model x (2K + 4) parameters, not
    # d_model x vocab_size
    digit_basis: int | None = None
    # with digit_basis: one more fixed feature, the ramp 2n / (base - 1) - 1 (from -1 at
    # digit 0 to 1 at base-1), so a digit's value is one linear read-out away; K circles
    # alone approximate it worst next to 0 and base-1, where the carry is decided
    digit_ramp: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def has_head_bias(self) -> bool:
        return self.bias if self.head_bias is None else self.head_bias


@dataclass
class EarlyStoppingConfig:
    patience: int = 3  # evaluations without an improvement of at least min_delta
    min_delta: float = 0.001


@dataclass
class FineTuneConfig:
    """The last ``steps`` of training.max_steps as a fine-tune of the weights reached so
    far: Adam's moments start afresh, the learning rate warms up again (over
    training.warmup_steps) to ``learning_rate`` and falls by cosine to scheduler.eta_min,
    and the training pairs are drawn with data.carry_share replaced by ``carry_share``
    (null: unchanged). The steps before it follow the same schedule as a run of
    max_steps - steps steps without it.

    ``hard_share`` h > 0: that share of every batch of the stage is drawn (with
    replacement) from its training pairs with probability proportional to each pair's
    loss under the current weights, measured afresh at the stage's start and after every
    evaluation; the rest of the batch is drawn as before. The pairs a model still gets
    wrong near the end are few (one in a hundred at 99%), so a plain batch spends almost
    nothing on them."""
    steps: int = 30_000
    learning_rate: float = 1e-3
    carry_share: float | None = None
    hard_share: float = 0.0


@dataclass
class SelectConfig:
    """The best of ``candidates`` starts: candidate i trains from the initialisation and
    batch order of seed training.seed + SEED_STRIDE x i (candidate 0: the run's own) on
    the run's schedule for its first ``steps`` steps; the one with the highest mean
    held-out exact match over its evaluations from ``steps`` / 2 on goes on to
    training.max_steps, the others are kept as candidates/seed<N>.pt. Seeds differ most
    in how long they stay on early plateaus; this pays ``steps`` x (candidates - 1)
    more steps to leave the slowest start behind."""
    candidates: int = 2
    steps: int = 60_000


SEED_STRIDE = 1000  # training.select: the seeds of a run's candidates lie this far apart


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
    compile: str = "auto"  # auto | on | off: torch.compile the training step (auto: on CUDA)
    precision: str = "auto"  # auto | float32 | bfloat16: matmul precision (auto: bf16 on CUDA)
    fine_tune: FineTuneConfig | None = None  # a last stage (FineTuneConfig); null: none
    select: SelectConfig | None = None  # best of several starts (SelectConfig); null: one


@dataclass
class OptimizerConfig:
    type: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    # weight decay applies from this fraction of training.max_steps on, and is 0 before
    # (0: from the first step)
    weight_decay_from: float = 0.0
    # false keeps the token embedding (and an output head tied to it) out of weight decay
    decay_embeddings: bool = True


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
    # balanced (operand lengths drawn evenly) made tuned 64d-3L pass verification at step
    # 9,000 where uniform pairs left it at 78.5% in its weakest stratum (docs/LOG.md)
    sampling: str = "balanced"  # balanced | uniform (the reference's)
    min_per_stratum: int = 200  # held-out pairs added to strata the uniform test set lacks
    # share of training operands whose lowest token is redrawn from the values next to the
    # carry boundary, 0, 1, 2 and base-3..base-1 (addray.core.data.boundary_tokens)
    boundary_share: float = 0.0
    # share of training pairs whose low tokens are set to sum to base-2, base-1 or base,
    # either side of the carry decision (addray.core.data.carry_edge)
    carry_share: float = 0.0
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

def fail(source: str, key: str, value: Any, rule: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {key} = {yamlfile.show(value)}: {rule}")


def number(value: Any, source: str, key: str, kind: type = float) -> int | float:
    """``value`` as a finite int or float (``kind``), or a ConfigError naming the key.
    The one number parser of config and search-space files."""
    if yamlfile.ambiguous(value):
        fail(source, key, value, yamlfile.AMBIGUOUS_RULE)
    num = yamlfile.to_number(value)
    if kind is int:
        if num is None or num != int(num):
            fail(source, key, value, "must be an integer")
        return int(num)
    if num is None:
        fail(source, key, value, "must be a finite number")
    return float(num)


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
            fail(source, key, value, "must be a mapping (a YAML section)")
        return _build(tp, value, source, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            fail(source, key, value, "must be true or false")
        return value
    if tp in (int, float):
        return number(value, source, key, tp)
    if tp is str:
        if not isinstance(value, str):
            fail(source, key, value, "must be a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            fail(source, key, value, f"must be a list of {len(args)} numbers")
        return tuple(_coerce(a, v, source, f"{key}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug here, not user input


def _build(cls: type, mapping: dict, source: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in known:
            fail(source, prefix + str(key), mapping[key],
                 f"unknown key (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(hints[k], v, source, prefix + k) for k, v in mapping.items()}
    return cls(**kwargs)


# ------------------------------------------------------------------- validation

def validate(cfg: ExperimentConfig, source: str = "<config>") -> ExperimentConfig:
    """Check every rule; raise ConfigError on the first one broken."""

    def check(ok: bool, key: str, value: Any, rule: str) -> None:
        if not ok:
            fail(source, key, value, rule)

    def within(key: str, value: float, low: float, high: float) -> None:
        check(low <= value <= high, key, value, f"must be >= {low} and <= {high}")

    m, t, o, s, d = cfg.model, cfg.training, cfg.optimizer, cfg.scheduler, cfg.data
    check(names.is_name(cfg.name), "name", cfg.name, names.RULE)
    within("model.d_model", m.d_model, 1, 8192)
    within("model.n_layers", m.n_layers, 1, 256)
    within("model.n_heads", m.n_heads, 1, m.d_model)
    within("model.d_ff", m.d_ff, 1, 65536)
    within("model.max_seq_len", m.max_seq_len, 1, 4096)
    check(m.d_model % m.n_heads == 0, "model.d_model", m.d_model,
          f"must be divisible by model.n_heads ({m.n_heads})")
    check(m.head_dim % 2 == 0, "model.n_heads", m.n_heads,
          f"d_model / n_heads = {m.head_dim} must be even (RoPE rotates pairs of dimensions)")
    check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be >= 0 and < 1")
    within("model.rope_theta", m.rope_theta, 1e-6, 1e12)
    check(m.rope_scaling is None, "model.rope_scaling", m.rope_scaling,
          "only null is supported")
    check(m.norm in ("layernorm", "rmsnorm"), "model.norm", m.norm,
          "must be one of layernorm, rmsnorm")
    check(m.embed_init in ("normal", "fourier"), "model.embed_init", m.embed_init,
          "must be one of normal, fourier")
    if m.digit_basis is not None:
        top = (m.vocab_size - 3 - 1) // 2  # below the Nyquist frequency of the digits
        within("model.digit_basis", m.digit_basis, 1, max(1, top))
        check(m.embed_init == "normal", "model.embed_init", m.embed_init,
              "must be normal when model.digit_basis is set (the basis fixes the circles)")
    check(isinstance(m.digit_ramp, bool), "model.digit_ramp", m.digit_ramp,
          "must be true or false")
    check(not m.digit_ramp or m.digit_basis is not None, "model.digit_ramp", m.digit_ramp,
          "needs model.digit_basis (the ramp is a feature of the digit basis)")

    within("data.base", d.base, 2, MAX_BASE)
    within("data.operand_max", d.operand_max, 1, MAX_OPERAND)
    within("data.n_train", d.n_train, 1, MAX_TRAIN)
    within("data.n_test", d.n_test, 1, MAX_TEST)
    within("data.seed", d.seed, 0, MAX_SEED)
    within("data.min_per_stratum", d.min_per_stratum, 0, MAX_TEST)
    check(d.sampling in ("uniform", "balanced"), "data.sampling", d.sampling,
          "must be one of uniform, balanced")
    check(0.0 <= d.boundary_share <= 1.0, "data.boundary_share", d.boundary_share,
          "must be >= 0 and <= 1")
    check(d.boundary_share == 0.0 or d.train_file is None, "data.boundary_share",
          d.boundary_share, "applies to generated pairs only; must be 0 with data.train_file")
    check(0.0 <= d.carry_share <= 1.0, "data.carry_share", d.carry_share,
          "must be >= 0 and <= 1")
    check(d.carry_share == 0.0 or d.train_file is None, "data.carry_share",
          d.carry_share, "applies to generated pairs only; must be 0 with data.train_file")
    pairs = (d.operand_max + 1) ** 2
    check(d.n_train + d.n_test <= pairs, "data.n_train", d.n_train,
          f"n_train + n_test ({d.n_train + d.n_test}) must be <= the {pairs} distinct pairs "
          f"of operands 0..{d.operand_max} (train and test are disjoint)")
    check((d.train_file is None) == (d.test_file is None), "data.train_file", d.train_file,
          "give data.train_file and data.test_file together, or neither")
    vocab = Vocab(d.base)
    check(m.vocab_size == vocab.size, "model.vocab_size", m.vocab_size,
          f"must equal data.base + 3 = {vocab.size} (digits, '+', '=', PAD)")
    longest = max_example_length(d.operand_max, d.base)
    check(m.max_seq_len >= longest, "model.max_seq_len", m.max_seq_len,
          f"must be >= {longest}, the longest example for operands up to {d.operand_max}")

    within("training.batch_size", t.batch_size, 1, 1_000_000)
    within("training.max_steps", t.max_steps, 1, 1_000_000_000)
    within("training.check_every", t.check_every, 1, 1_000_000_000)
    within("training.eval_batch_size", t.eval_batch_size, 1, 1_000_000)
    within("training.seed", t.seed, 0, MAX_SEED)
    check(0 < t.learning_rate <= 1.0, "training.learning_rate", t.learning_rate,
          "must be > 0 and <= 1")
    within("training.warmup_steps", t.warmup_steps, 0, 1_000_000_000)
    check(t.grad_clip > 0, "training.grad_clip", t.grad_clip, "must be > 0")
    check(t.time_budget_s is None or t.time_budget_s > 0, "training.time_budget_s",
          t.time_budget_s, "must be null or > 0")
    check(t.device in ("auto", "cpu", "cuda"), "training.device", t.device,
          "must be one of auto, cpu, cuda")
    check(t.compile in ("auto", "on", "off"), "training.compile", t.compile,
          "must be one of auto, on, off")
    check(t.precision in PRECISIONS, "training.precision", t.precision,
          "must be one of " + ", ".join(PRECISIONS))
    check(t.pad_to is None or t.pad_to >= longest, "training.pad_to", t.pad_to,
          f"must be null or >= {longest}, the longest example")
    check(t.pad_to is None or t.pad_to <= m.max_seq_len, "training.pad_to", t.pad_to,
          f"must be <= model.max_seq_len ({m.max_seq_len})")
    if t.early_stopping is not None:
        es = t.early_stopping
        check(es.patience >= 1, "training.early_stopping.patience", es.patience, "must be >= 1")
        check(0 <= es.min_delta <= 1, "training.early_stopping.min_delta", es.min_delta,
              "must be >= 0 and <= 1")

    if t.fine_tune is not None:
        ft = t.fine_tune
        check(1 <= ft.steps < t.max_steps, "training.fine_tune.steps", ft.steps,
              f"must be >= 1 and < training.max_steps ({t.max_steps}), of which it is the "
              "last part (training.fine_tune=null drops the stage)")
        check(0 < ft.learning_rate <= 1.0, "training.fine_tune.learning_rate",
              ft.learning_rate, "must be > 0 and <= 1")
        check(s.eta_min <= ft.learning_rate, "training.fine_tune.learning_rate",
              ft.learning_rate, f"must be >= scheduler.eta_min ({s.eta_min})")
        if ft.carry_share is not None:
            check(0.0 <= ft.carry_share <= 1.0, "training.fine_tune.carry_share",
                  ft.carry_share, "must be null, or >= 0 and <= 1")
            check(d.train_file is None, "training.fine_tune.carry_share", ft.carry_share,
                  "applies to generated pairs only; must be null with data.train_file")
        check(0.0 <= ft.hard_share <= 1.0, "training.fine_tune.hard_share", ft.hard_share,
              "must be >= 0 and <= 1 (a share of each batch)")

    if t.select is not None:
        sel = t.select
        within("training.select.candidates", sel.candidates, 2, MAX_CANDIDATES)
        end = t.max_steps if t.fine_tune is None else t.max_steps - t.fine_tune.steps
        check(1 <= sel.steps < end, "training.select.steps", sel.steps,
              f"must be >= 1 and < {end}, the steps before "
              + ("training.fine_tune" if t.fine_tune is not None else "training.max_steps"))
        last = t.seed + SEED_STRIDE * (sel.candidates - 1)
        check(last <= MAX_SEED, "training.select.candidates", sel.candidates,
              f"the last candidate's seed, training.seed + {SEED_STRIDE} x (candidates - 1) "
              f"= {last}, must be <= {MAX_SEED}")
        check(t.early_stopping is None, "training.early_stopping", "set",
              "must be null with training.select (candidates are compared at the same step)")
        check(t.time_budget_s is None, "training.time_budget_s", t.time_budget_s,
              "must be null with training.select (candidates are compared at the same step)")

    check(o.type == "adamw", "optimizer.type", o.type, "only adamw is supported")
    for i, beta in enumerate(o.betas):
        check(0.0 <= beta < 1.0, f"optimizer.betas[{i}]", beta, "must be >= 0 and < 1")
    within("optimizer.weight_decay", o.weight_decay, 0, 10)
    check(0.0 <= o.weight_decay_from < 1.0, "optimizer.weight_decay_from", o.weight_decay_from,
          "must be >= 0 and < 1 (a fraction of training.max_steps)")
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
    # a file's config is named after the file; one built in code is an "experiment"
    default = "experiment" if source.startswith("<") else Path(source).stem
    raw.setdefault("name", name or default)
    cfg = _build(ExperimentConfig, raw, source)
    return validate(cfg, source)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a YAML experiment file, apply dotted-key overrides, validate."""
    path = Path(path)
    raw = yamlfile.load(path, "config file", ConfigError)
    cfg = from_dict(raw, str(path), name=path.stem)
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
                    fail(source, dotted, value, "unknown key")
            node = node[part]
        node[leaf] = value
    return from_dict(raw, source)


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line (``--set``), the value read as strict YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {yamlfile.show(text)}: expected KEY=VALUE, e.g. "
                          f"training.batch_size=128")
    return key.strip(), yamlfile.parse(value, f"--set {key.strip()}", ConfigError)
