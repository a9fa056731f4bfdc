"""Phase 3's search space: what the searcher may vary. No Ray here.

A search-space YAML file names a base experiment config, settings every trial shares,
the objective's threshold and the bounds of each searched setting::

    base: phase1_tiny.yaml          # experiment config the search starts from
    objective: {threshold: 0.99}    # exact match a model must reach on held-out pairs
    fixed: {training.max_steps: 20000, model.dropout: 0.0}   # dotted keys, as --set
    space:
      d_model: {choices: [8, 16, 24, 32]}
      n_layers: {low: 1, high: 3}
      tie_embeddings: {choices: [true, false]}
      learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}

Searchable: the model's shape and options (d_model, n_layers, n_heads, d_ff or d_ff_mult,
tie_embeddings, bias, head_bias, norm, dropout, digit_basis: an integer, or null among its
choices for a free embedding table), learning_rate, batch_size, warmup_steps,
weight_decay, and the training pairs' mix (carry_share, boundary_share); any other key,
such as training.fine_tune, can be set for every trial under ``fixed``.

Every combination of the searched model settings is validated against the config
rules when the file is loaded, so a bad bound fails before any trial starts.
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from addray import yamlfile
from addray.core.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    apply_overrides,
    fail,
    load_config,
    number,
)
from addray.errors import ConfigError
from addray.sweep.flat import flat_of
from addray.sweep.options import no_select

# searched name -> config key (its kind is the config field's type); d_ff_mult sets
# model.d_ff = d_ff_mult * d_model
_SETTINGS = {
    "model": ["d_model", "n_layers", "n_heads", "d_ff", "tie_embeddings", "bias", "norm",
              "dropout"],
    "training": ["learning_rate", "batch_size", "warmup_steps"], "optimizer": ["weight_decay"],
    "data": ["carry_share", "boundary_share"],
}
KEYS: dict[str, tuple[str, type]] = {
    name: (f"{section}.{name}", typing.get_type_hints(cls)[name])
    for section, cls in (("model", ModelConfig), ("training", TrainingConfig),
                         ("optimizer", OptimizerConfig), ("data", DataConfig))
    for name in _SETTINGS[section]}
KEYS["d_ff_mult"] = ("model.d_ff", int)
KEYS["head_bias"] = ("model.head_bias", bool)  # searched as true/false, never null
# an integer K, or null among its choices (a free embedding table)
KEYS["digit_basis"] = ("model.digit_basis", int)
NULLABLE = {"digit_basis"}
MODEL_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "d_ff_mult", "tie_embeddings", "bias",
              "head_bias", "norm", "digit_basis")
MAX_SHAPES = 100_000  # model shapes a space may reach (each is validated at load)


@dataclass(frozen=True)
class Dimension:
    name: str
    choices: tuple | None = None  # categorical
    low: float | None = None  # or a range
    high: float | None = None
    log: bool = False

    @property
    def kind(self) -> type:
        return KEYS[self.name][1]

    def corners(self) -> list[Any]:
        """Values that bound what this dimension can produce (every value of a model
        setting, so that every reachable shape is checked)."""
        if self.choices is not None:
            return list(self.choices)
        if self.kind is int and self.name in MODEL_KEYS:
            return list(range(int(self.low), int(self.high) + 1))
        return [self.low, self.high]


@dataclass
class SearchSpace:
    source: str
    base: str  # path of the base experiment config
    threshold: float = 0.99
    fixed: dict[str, Any] = field(default_factory=dict)
    dimensions: list[Dimension] = field(default_factory=list)
    _base: ExperimentConfig | None = field(default=None, repr=False)

    def overrides(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Dotted-key overrides for one sample of the searched settings."""
        out = dict(self.fixed)
        for name, value in sample.items():
            key, kind = KEYS[name]
            out[key] = None if value is None and name in NULLABLE else kind(value)
        if "d_ff_mult" in sample:
            d_model = sample.get("d_model", self.fixed.get("model.d_model",
                                                           self.base_config().model.d_model))
            out["model.d_ff"] = int(sample["d_ff_mult"]) * int(d_model)
        return out

    def model_corners(self) -> list[dict[str, Any]]:
        """Every combination of the searched model settings' values."""
        model = [(d.name, d.corners()) for d in self.dimensions if d.name in MODEL_KEYS]
        names = [n for n, _ in model]
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(c for _, c in model))]

    def validate(self) -> None:
        """The base with the fixed settings, and every model shape and every bound the
        searcher can reach, must be valid configs: a broken rule names the file, the
        sample, the key and the rule."""
        apply_overrides(self.base_config(), self.fixed, source=f"{self.source} (fixed)")
        shapes = 1
        for d in self.dimensions:
            if d.name in MODEL_KEYS:
                shapes *= len(d.corners())
        if shapes > MAX_SHAPES:
            raise ConfigError(f"{self.source}: space: its model settings reach {shapes:,} "
                              f"shapes, more than {MAX_SHAPES:,}; narrow the bounds or use "
                              f"choices")
        for corner in self.model_corners():
            self.config_for(corner)
        for d in self.dimensions:
            if d.name not in MODEL_KEYS:
                for v in d.corners():
                    self.config_for({d.name: v})

    def base_config(self) -> ExperimentConfig:
        if self._base is None:  # read once: the searcher must not depend on the file later
            self._base = load_config(self.base)
        return self._base

    def config_for(self, sample: dict[str, Any]) -> ExperimentConfig:
        source = f"{self.source} (space allows {sample})"
        cfg = no_select(apply_overrides(self.base_config(), self.overrides(sample),
                                        source=source), source)
        cfg.name = arch_name(cfg)
        return cfg


def arch_name(cfg: ExperimentConfig) -> str:
    """A readable name for a searched shape, e.g. 16d-2L-4h-32ff (-tied, -nobias, -rms)."""
    m = cfg.model
    extra = (("-tied" if m.tie_embeddings else "") + ("" if m.bias else "-nobias")
             + ("" if m.has_head_bias == m.bias else
                "-headbias" if m.has_head_bias else "-noheadbias")
             + ("-rms" if m.norm == "rmsnorm" else "")
             + ("" if m.digit_basis is None else f"-basis{m.digit_basis}"))
    return f"{m.d_model}d-{m.n_layers}L-{m.n_heads}h-{m.d_ff}ff{extra}"


def _value(source: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            fail(source, key, value, "must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            fail(source, key, value, "must be a string")
        return value
    return number(value, source, key, kind)


def _dimension(source: str, name: str, spec: Any) -> Dimension:
    key = f"space.{name}"
    if name not in KEYS:
        fail(source, key, spec, f"unknown setting (searchable: {', '.join(KEYS)})")
    kind = KEYS[name][1]
    if not isinstance(spec, dict):
        fail(source, key, spec, "must be a mapping: {choices: [...]} or {low: .., high: ..}")
    unknown = sorted(set(spec) - {"choices", "low", "high", "log"}, key=str)
    if unknown:
        fail(source, f"{key}.{unknown[0]}", spec[unknown[0]],
             "unknown key (known: choices, low, high, log)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            fail(source, key, spec, "give either choices or low/high, not both")
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            fail(source, f"{key}.choices", values, "must be a non-empty list")
        values = [None if v is None and name in NULLABLE
                  else _value(source, f"{key}.choices", v, kind) for v in values]
        if len(set(values)) != len(values):
            fail(source, f"{key}.choices", values, "must not repeat a value")
        return Dimension(name, choices=tuple(values))
    if kind in (bool, str):
        fail(source, key, spec, "must be given as choices: [...]")
    if "low" not in spec or "high" not in spec:
        fail(source, key, spec, "needs both low and high (or choices)")
    low = number(spec["low"], source, f"{key}.low", kind)
    high = number(spec["high"], source, f"{key}.high", kind)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        fail(source, f"{key}.log", log, "must be true or false")
    if not low < high:
        fail(source, f"{key}.high", high, f"must be > low ({low})")
    if log and low <= 0:
        fail(source, f"{key}.low", low, "must be > 0 on a log scale")
    return Dimension(name, low=low, high=high, log=log)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (see the module docstring)."""
    path = Path(path)
    source = str(path)
    raw = yamlfile.load(path, "search-space file", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping with base, objective, "
                          f"fixed, space")
    for key in sorted(set(raw) - {"base", "objective", "fixed", "space"}, key=str):
        fail(source, str(key), raw[key], "unknown key (known: base, objective, fixed, space)")
    base = raw.get("base")
    if not isinstance(base, str):
        fail(source, "base", base, "must name the base experiment config (a YAML path)")
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        fail(source, "base", base, f"no such file ({base_path})")
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"threshold"}:
        fail(source, "objective", objective, "must be a mapping with only threshold")
    threshold = number(objective.get("threshold", 0.99), source, "objective.threshold")
    if not 0 < threshold <= 1:
        fail(source, "objective.threshold", threshold, "must be > 0 and <= 1")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        fail(source, "fixed", fixed, "must be a mapping of dotted config keys to values")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        fail(source, "space", space_raw, "must map at least one setting to its bounds")
    dims = [_dimension(source, str(name), spec) for name, spec in space_raw.items()]
    if {"d_ff", "d_ff_mult"} <= {d.name for d in dims}:
        fail(source, "space.d_ff_mult", space_raw["d_ff_mult"],
             "search d_ff or d_ff_mult, not both")
    space = SearchSpace(source=source, base=str(base_path), threshold=threshold,
                        fixed=dict(fixed), dimensions=dims)
    space.validate()
    return space


class OptunaSpace:
    """Optuna define-by-run space: samples each dimension, returns the trial's spec.

    A module-level class (not a closure) so that Tune can pickle the searcher's state.
    """

    def __init__(self, space: SearchSpace, prune: dict[str, Any], study: str = ""):
        self.space = space
        self.prune = prune
        self.study = study

    def __call__(self, trial: Any) -> dict[str, Any]:
        sample: dict[str, Any] = {}
        for d in self.space.dimensions:
            if d.choices is not None:
                sample[d.name] = trial.suggest_categorical(d.name, list(d.choices))
            elif d.kind is int:
                sample[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
            else:
                sample[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
        from addray.core.model import Transformer, count_parameters  # torch: only here

        cfg = self.space.config_for(sample)
        lr = cfg.training.learning_rate
        spec = {"label": f"{cfg.name}-lr{lr:.2g}-bs{cfg.training.batch_size}", "name": cfg.name,
                "study": getattr(self, "study", ""), "seed": 0, "config": cfg.to_dict(),
                "params": count_parameters(Transformer(cfg.model)), "sample": sample,
                "clock": "steps", "prune": self.prune,
                "objective": {"threshold": self.space.threshold}}
        return {"trial": spec, **flat_of(spec)}
