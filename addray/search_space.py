"""Phase 3's search space and objective: what the searcher may vary, and how a trial scores.

No Ray here. A search-space YAML file names a base experiment config, settings every
trial shares, the objective's threshold and the bounds of each searched setting::

    base: phase1_tiny.yaml          # experiment config the search starts from
    objective: {threshold: 0.99}    # exact match a model must reach on held-out pairs
    fixed: {training.max_steps: 20000, model.dropout: 0.0}   # dotted keys, as --set
    space:
      d_model: {choices: [8, 16, 24, 32]}
      n_layers: {low: 1, high: 3}
      learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}

Every combination of the searched model settings is validated against the config
rules when the file is loaded, so a bad bound fails before any trial starts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from addray.config import ConfigError, ExperimentConfig, apply_overrides, load_config

# searched name -> (config key, kind); d_ff_mult sets model.d_ff = d_ff_mult * d_model
KEYS: dict[str, tuple[str, type]] = {
    "d_model": ("model.d_model", int),
    "n_layers": ("model.n_layers", int),
    "n_heads": ("model.n_heads", int),
    "d_ff_mult": ("model.d_ff", int),
    "learning_rate": ("training.learning_rate", float),
    "batch_size": ("training.batch_size", int),
    "warmup_steps": ("training.warmup_steps", int),
    "weight_decay": ("optimizer.weight_decay", float),
    "dropout": ("model.dropout", float),
}
MODEL_KEYS = ("d_model", "n_layers", "n_heads", "d_ff_mult")


def search_score(exact_match: float, params: int, threshold: float,
                 token_accuracy: float = 0.0) -> float:
    """The objective (higher is better).

    A model at or above ``threshold`` scores in (1, 2], fewer parameters scoring higher;
    a model below scores its exact match (ties broken by token accuracy), below 1. So
    any model above the threshold beats any below, and among those above, the smaller
    wins.
    """
    if exact_match >= threshold:
        return 1.0 + 1.0 / (1.0 + math.log10(1.0 + params))
    return min(exact_match + 1e-6 * token_accuracy, threshold)


@dataclass(frozen=True)
class Dimension:
    name: str
    choices: tuple | None = None  # categorical
    low: float | None = None  # or a range
    high: float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return KEYS[self.name][1] is int

    def corners(self) -> list[Any]:
        """Values that bound what this dimension can produce."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int and self.name in MODEL_KEYS:
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
            out[key] = kind(value)
        if "d_ff_mult" in sample:
            d_model = sample.get("d_model", self.fixed.get("model.d_model",
                                                           self.base_config().model.d_model))
            out["model.d_ff"] = int(sample["d_ff_mult"]) * int(d_model)
        return out

    def validate(self) -> None:
        """The base with the fixed settings, and every model shape and every bound the
        searcher can reach, must be valid configs: a broken rule names the file, the
        sample, the key and the rule."""
        apply_overrides(self.base_config(), self.fixed, source=f"{self.source} (fixed)")
        corners = [(d.name, d.corners()) for d in self.dimensions]
        model = [(n, c) for n, c in corners if n in MODEL_KEYS]
        names = [n for n, _ in model]
        for values in itertools.product(*(c for _, c in model)):
            self.config_for(dict(zip(names, values, strict=True)))
        for name, values in corners:
            if name not in MODEL_KEYS:
                for v in values:
                    self.config_for({name: v})

    def base_config(self) -> ExperimentConfig:
        if self._base is None:  # read once: the searcher must not depend on the file later
            self._base = load_config(self.base)
        return self._base

    def config_for(self, sample: dict[str, Any]) -> ExperimentConfig:
        cfg = apply_overrides(self.base_config(), self.overrides(sample),
                              source=f"{self.source} (space allows {sample})")
        cfg.name = arch_name(cfg)
        return cfg


def arch_name(cfg: ExperimentConfig) -> str:
    m = cfg.model
    return f"{m.d_model}d-{m.n_layers}L-{m.n_heads}h-{m.d_ff}ff"


def _fail(source: str, key: str, value: Any, rule: str) -> None:
    raise ConfigError(f"{source}: {key} = {value!r}: {rule}")


def _number(source: str, key: str, value: Any, kind: type) -> float:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, key, value, "must be a number")
    if kind is int and value != int(value):
        _fail(source, key, value, "must be an integer")
    return kind(value)


def _dimension(source: str, name: str, spec: Any) -> Dimension:
    key = f"space.{name}"
    if name not in KEYS:
        _fail(source, key, spec, f"unknown setting (searchable: {', '.join(KEYS)})")
    kind = KEYS[name][1]
    if not isinstance(spec, dict):
        _fail(source, key, spec, "must be a mapping: {choices: [...]} or {low: .., high: ..}")
    unknown = set(spec) - {"choices", "low", "high", "log"}
    if unknown:
        _fail(source, f"{key}.{sorted(unknown)[0]}", spec[sorted(unknown)[0]],
              "unknown key (known: choices, low, high, log)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            _fail(source, key, spec, "give either choices or low/high, not both")
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            _fail(source, f"{key}.choices", values, "must be a non-empty list")
        values = [_number(source, f"{key}.choices", v, kind) for v in values]
        if len(set(values)) != len(values):
            _fail(source, f"{key}.choices", values, "must not repeat a value")
        return Dimension(name, choices=tuple(values))
    if "low" not in spec or "high" not in spec:
        _fail(source, key, spec, "needs both low and high (or choices)")
    low = _number(source, f"{key}.low", spec["low"], kind)
    high = _number(source, f"{key}.high", spec["high"], kind)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        _fail(source, f"{key}.log", log, "must be true or false")
    if not low < high:
        _fail(source, f"{key}.high", high, f"must be > low ({low})")
    if log and low <= 0:
        _fail(source, f"{key}.low", low, "must be > 0 on a log scale")
    return Dimension(name, low=low, high=high, log=log)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (see the module docstring)."""
    path = Path(path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such search-space file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the search-space file "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping with base, objective, "
                          f"fixed, space")
    unknown = set(raw) - {"base", "objective", "fixed", "space"}
    for key in sorted(unknown):
        _fail(source, key, raw[key], "unknown key (known: base, objective, fixed, space)")
    base = raw.get("base")
    if not isinstance(base, str):
        _fail(source, "base", base, "must name the base experiment config (a YAML path)")
    base_path = (path.parent / base).resolve()
    if not base_path.exists():
        _fail(source, "base", base, f"no such file ({base_path})")
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"threshold"}:
        _fail(source, "objective", objective, "must be a mapping with only threshold")
    threshold = _number(source, "objective.threshold", objective.get("threshold", 0.99), float)
    if not 0 < threshold <= 1:
        _fail(source, "objective.threshold", threshold, "must be > 0 and <= 1")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        _fail(source, "fixed", fixed, "must be a mapping of dotted config keys to values")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        _fail(source, "space", space_raw, "must map at least one setting to its bounds")
    dims = [_dimension(source, str(name), spec) for name, spec in space_raw.items()]
    space = SearchSpace(source=source, base=str(base_path), threshold=threshold,
                        fixed=dict(fixed), dimensions=dims)
    space.validate()
    return space


class OptunaSpace:
    """Optuna define-by-run space: samples each dimension, returns the trial's spec.

    A module-level class (not a closure) so that Tune can pickle the searcher's state.
    """

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        sample: dict[str, Any] = {}
        for d in self.space.dimensions:
            if d.choices is not None:
                sample[d.name] = trial.suggest_categorical(d.name, list(d.choices))
            elif d.is_int:
                sample[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
            else:
                sample[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
        cfg = self.space.config_for(sample)
        lr = cfg.training.learning_rate
        spec = {"label": f"{cfg.name}-lr{lr:.2g}-bs{cfg.training.batch_size}", "name": cfg.name,
                "seed": 0, "config": cfg.to_dict(), "sample": sample,
                "objective": {"threshold": self.space.threshold}}
        return {"trial": spec}
