"""TensorBoard event files by training step and by stratum, replacing Tune's own.

Tune's logger plots every result against ``training_iteration`` (the count of reports:
1, 2, 3), so runs with another ``check_every``, or resumed ones, do not line up; it
writes the per-stratum ``[correct, total]`` pairs as histograms under mangled names,
and its HParams tab lists every nested config key (all constant) instead of what
varies. This callback writes, in each trial's folder under ``RESULTS/STUDY/tune/``:

- scalars against the **training step**: exact match, token accuracy, worst stratum,
  carry boundary, edge cases, losses, learning rate, examples/s, the pruning score;
- one scalar per stratum, ``strata/2+2 tokens, carry``, and per boundary sum,
  ``boundary/low tokens sum to 99`` (the fraction right), under the names the report
  uses;
- at a trial's end, HParams with the settings that vary (``addray.sweep.flat``: config,
  lr, seed, params, d_model, n_layers) and how the run ended, beside its last metrics.

A fused trial writes one run folder per member (``<trial folder>/<member label>``).
Being a ``TBXLoggerCallback``, it keeps Tune from adding its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from addray import tb_events
from addray.sweep.flat import flat_of


class StepTensorBoard(TBXLoggerCallback):
    """Event files by training step (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._writers: dict[tuple[str, int], Any] = {}
        self._ends: dict[tuple[str, int], dict[str, Any]] = {}

    def _writer(self, trial: Any, k: int) -> Any:
        key = (trial.trial_id, k)
        if key not in self._writers:
            trial.init_local_path()
            spec = trial.config["trial"]
            path = Path(trial.local_path)
            if "members" in spec:
                path = path / spec["members"][k]["label"]
            self._writers[key] = tb_events.writer(str(path))
        return self._writers[key]

    def log_trial_start(self, trial: Any) -> None:
        pass  # writers open at the first result (a fused trial's are per member)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        spec = trial.config["trial"]
        if "members" in spec:
            runs = [(k, m) for k, m in enumerate(result.get("members") or [])
                    if m and m.get("fresh") == result.get("step")]
        else:
            runs = [(0, result)]
        for k, metrics in runs:
            w = self._writer(trial, k)
            tb_events.write_step(w, tb_events.scalars(metrics), int(metrics.get("step", 0)))
            w.flush()
            self._ends[(trial.trial_id, k)] = metrics

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        spec = trial.config["trial"]
        for key in [key for key in self._writers if key[0] == trial.trial_id]:
            member = spec["members"][key[1]] if "members" in spec else spec
            last = self._ends.pop(key, {})
            status = "errored" if failed else last.get("status", "")
            if status == "running":
                status = "pruned"  # stopped by the scheduler before its trainer ended
            params = {k: v for k, v in flat_of(member).items() if k != "study"}
            w = self._writers.pop(key)
            tb_events.write_hparams(w, {**params, "status": status}, last)
            w.close()
