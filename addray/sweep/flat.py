"""A trial's settings as flat columns, for the tools that read Tune's experiment.

Tune keeps a trial's config as given: addray's is nested (``trial/config/training/
learning_rate``), which is what the trainer needs and what no client can show by name.
Beside it every trial carries ``config``, ``lr``, ``seed``, ``params``, ``d_model``,
``n_layers`` and ``study`` as top-level values, so ``ExperimentAnalysis.dataframe()`` has
``config/lr`` and the others, TensorBoard's HParams lists what varies, and the Ray
dashboard's metrics carry them as tags. A fused trial's ``lr`` and ``seed`` list its
runs' values ("0.001,0.003").
"""

from __future__ import annotations

from typing import Any

FLAT = ("study", "config", "lr", "seed", "params", "d_model", "n_layers")


def _joined(values: list[Any]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in dict.fromkeys(values))


def flat_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The flat values of one trial spec (``config["trial"]``)."""
    model = spec["config"]["model"]
    if "members" in spec:
        lr: Any = _joined([m["config"]["training"]["learning_rate"] for m in spec["members"]])
        seed: Any = _joined([m["seed"] for m in spec["members"]])
    else:
        lr, seed = spec["config"]["training"]["learning_rate"], spec["seed"]
    return {"study": spec.get("study", ""), "config": spec["name"], "lr": lr, "seed": seed,
            "params": spec.get("params", 0), "d_model": model["d_model"],
            "n_layers": model["n_layers"]}


class FlatValue:
    """``tune.sample_from`` of one flat value, read off the trial's resolved spec (a
    module-level class, so that Tune can pickle the parameter space)."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, config: Any) -> Any:
        return flat_of(config["trial"])[self.key]


def grid_space(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """A grid study's parameter space: one trial per spec, with its flat values."""
    from ray import tune

    return {"trial": tune.grid_search(trials),
            **{key: tune.sample_from(FlatValue(key)) for key in FLAT}}
