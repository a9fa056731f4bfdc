"""The one training function that every run and every sweep trial calls.

Nothing here knows about Ray: a caller that wants progress passes ``report``, which
is called after every evaluation with a dict of metrics (and a fresh checkpoint on
disk when ``checkpoint_dir`` is given). An exception raised by ``report`` stops
training; the last checkpoint stays, and ``resume_from`` continues from it with the
same step count and the same data order.

With ``training.compile`` on (the default on CUDA), the forward pass and loss run
under ``torch.compile`` (on CUDA in mode "reduce-overhead", i.e. CUDA graphs) on
batches padded to the data's longest example, so every step has the same shapes;
AdamW is fused on CUDA and gradient clipping never waits for the host. Evaluation
runs the same weights eagerly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from addray.core import checkpoint as ckpt
from addray.core.batches import TokenizedSet
from addray.core.clock import Clock
from addray.core.config import DataConfig, ExperimentConfig, SchedulerConfig, TrainingConfig
from addray.core.data import load_data
from addray.core.device import autocast, available_cpus, loss_precision, resolve_device
from addray.core.evaluate import HeldOut, evaluate
from addray.core.hard import HardPairs, example_losses
from addray.core.model import Transformer, count_parameters
from addray.core.run_io import Report, RunIO
from addray.core.select import train_selected
from addray.core.strata import learned
from addray.core.tokens import Vocab
from addray.errors import ConfigError


def lr_at(step: int, t: TrainingConfig, s: SchedulerConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based). With training.fine_tune, its
    last ``steps`` steps start the schedule again at its own peak."""
    ft = t.fine_tune
    if ft is None:
        return _warmup_cosine(step, t.learning_rate, t.warmup_steps, t.max_steps, s.eta_min)
    start = fine_tune_start(t)
    if step < start:
        return _warmup_cosine(step, t.learning_rate, t.warmup_steps, start, s.eta_min)
    return _warmup_cosine(step - start, ft.learning_rate, t.warmup_steps, ft.steps, s.eta_min)


def _warmup_cosine(step: int, peak: float, warmup: int, steps: int, floor: float) -> float:
    # 1) linear warmup from peak/warmup to peak over warmup steps
    if step < warmup:
        return peak * (step + 1) / warmup
    # 2) cosine decay from peak to floor over the remaining steps, then flat
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def fine_tune_start(t: TrainingConfig) -> int | None:
    """The step (0-based) at which training.fine_tune begins; None without one."""
    return None if t.fine_tune is None else t.max_steps - t.fine_tune.steps


def batch_indices(step: int, n: int, batch_size: int, seed: int,
                  _cache: dict[tuple[int, int, int], torch.Tensor] = {}) -> torch.Tensor:  # noqa: B006
    """Indices of the examples in batch ``step``: a pure function of (seed, step).

    Each epoch is a fresh permutation seeded by (seed, epoch); the last partial batch
    of an epoch is dropped. A resumed run therefore sees exactly the same batches.
    """
    per_epoch = n // batch_size
    epoch, j = divmod(step, per_epoch)
    key = (seed, epoch, n)
    if key not in _cache:
        _cache.clear()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        _cache[key] = torch.randperm(n, generator=g)
    return _cache[key][j * batch_size : (j + 1) * batch_size]


def weight_decay_at(step: int, cfg: ExperimentConfig) -> float:
    """Weight decay of optimizer step ``step`` (0-based): 0 before
    ``optimizer.weight_decay_from`` x max_steps, ``optimizer.weight_decay`` from there."""
    start = cfg.optimizer.weight_decay_from * cfg.training.max_steps
    return cfg.optimizer.weight_decay if step >= start else 0.0


def make_optimizer(model: torch.nn.Module, cfg: ExperimentConfig,
                   device: torch.device) -> torch.optim.Optimizer:
    # weight decay on matrices and embeddings only, not on biases and norms (as nanoGPT);
    # optimizer.decay_embeddings false leaves the embedding (tied head: the same tensor) out
    kept = set() if cfg.optimizer.decay_embeddings else {id(p) for p in model.embed.parameters()}
    decay = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in kept]
    no_decay = [p for p in model.parameters() if p.dim() < 2 or id(p) in kept]
    groups = [{"params": decay, "weight_decay": cfg.optimizer.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for the whole update instead of several per tensor (CUDA only,
    # so that the CPU path stays as it was)
    return torch.optim.AdamW(groups, lr=cfg.training.learning_rate, betas=cfg.optimizer.betas,
                             fused=True if device.type == "cuda" else None)


def use_compile(setting: str, device: torch.device) -> bool:
    """``auto`` compiles on CUDA, where a step of these small models is bound by kernel
    launches, and not on the CPU, where compiling measured no faster per step and adds
    a warm-up of tens of seconds (benchmarks/RESULTS.md)."""
    if setting == "auto":
        return device.type == "cuda"
    return setting == "on"


class LossModule(torch.nn.Module):
    """Forward pass and loss of one batch: what ``torch.compile`` captures."""

    def __init__(self, model: Transformer, device: torch.device, precision: str = "auto"):
        super().__init__()
        self.model = model
        self.device = device
        self.precision = precision

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            logits = self.model(x)  # (B, T, V)
        return F.cross_entropy(loss_precision(logits).reshape(-1, logits.size(-1)), y.reshape(-1),
                               ignore_index=-100)


def train(config: ExperimentConfig, *, report: Report | None = None,
          checkpoint_dir: str | Path | None = None, resume_from: str | Path | None = None,
          num_threads: int | None = None,
          rungs: tuple[str, Sequence[float]] = ("steps", ())) -> dict[str, Any]:
    """Train ``config`` and return a summary (status, exact match, parameters, history).

    report: called after each evaluation (every ``check_every`` steps, where a rung is
        reached, and at the end) with step, examples, flops, train_loss, eval_loss,
        exact_match, token_accuracy, worst_stratum, edge_cases, strata, lr,
        examples_per_s and more. The checkpoint in ``checkpoint_dir`` is already written.
    checkpoint_dir: folder for ``checkpoint.pt`` (model, optimizer, scheduler, step,
        RNG state, early-stopping state and the resolved config).
    resume_from: a checkpoint file or folder to continue from.
    num_threads: torch CPU threads; default all CPUs this process may use.
    rungs: (clock, budgets): also evaluate at the first step whose steps, examples or
        FLOPs (``addray.core.clock``) reach each budget: a sweep's pruning rungs. These
        evaluations do not count towards early stopping's patience.

    With training.select, the candidates are screened first (``select.train_selected``),
    each evaluation reported with ``candidate`` (its seed), then the chosen one trains on.
    """
    io = RunIO(report, checkpoint_dir, resume_from, num_threads, rungs)
    if config.training.select is not None:
        return train_selected(config, run, io)
    return run(config, io)


def run(config: ExperimentConfig, io: RunIO | None = None, *, stop_at: int | None = None,
        selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training run (``train`` without training.select). ``stop_at``: stop after
    that step (evaluated and saved there) on the schedule of the whole run, status
    still "running"; ``selection``: kept in the saved state of a fresh run."""
    r = _Run(config, io or RunIO(), selection)
    end = config.training.max_steps if stop_at is None else min(stop_at,
                                                                 config.training.max_steps)
    while r.state["step"] < end and r.status == "running":
        r.step()
        if r.evaluation_due(end):
            r.evaluate()
    return r.summary()


class _Run:
    """A run's set-up (data, model, optimizer, schedule, restored state), its optimizer
    step, and its evaluation/early-stop/checkpoint/report block."""

    def __init__(self, config: ExperimentConfig, io: RunIO,
                 selection: dict[str, Any] | None) -> None:
        self.t_start = time.time()
        self.config, self.io = config, io
        t = self.t = config.training
        self.device = device = resolve_device(t.device)
        if device.type == "cpu":
            torch.set_num_threads(io.num_threads or available_cpus())
        torch.manual_seed(t.seed)

        train_set, self.held = prepared_data(config.data)
        if t.batch_size > len(train_set):
            raise ConfigError(f"training.batch_size = {t.batch_size}: must be <= the "
                              f"{len(train_set)} training examples")
        self.stages = [train_set, _fine_tune_set(config, train_set)]
        self.ft_start = fine_tune_start(t)

        self.model = Transformer(config.model).to(device)
        self.optimizer = make_optimizer(self.model, config, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_at(s, t, config.scheduler) / t.learning_rate)
        self.state: dict[str, Any] = {
            "step": 0, "best_exact_match": 0.0, "best_step": 0, "es_best": -math.inf,
            "bad_evals": 0, "history": [], "train_seconds": 0.0, "status": "running",
            "reason": ""}
        if selection is not None:
            self.state["selection"] = selection
        if io.resume_from is not None:
            self.state = _restore(io.resume_from, config, self.model, self.optimizer,
                                  self.scheduler, device)
        self.status, self.reason = self.state["status"], self.state["reason"]

        self.params = count_parameters(self.model)
        self.clock = Clock.of(config, self.params, io.rungs[0])
        self.extra_evals = self.clock.steps_reaching(io.rungs[1])
        self.compiled = use_compile(t.compile, device)
        self.step_loss: Callable[..., torch.Tensor] = LossModule(self.model, device,
                                                                 t.precision)
        self.pad_to = t.pad_to
        if self.compiled:
            self.step_loss = torch.compile(
                self.step_loss, dynamic=False,
                mode="reduce-overhead" if device.type == "cuda" else None)
            self.pad_to = self.pad_to or max(st.longest for st in self.stages)  # one shape
        ft = t.fine_tune
        self.n_hard = 0 if ft is None else round(ft.hard_share * t.batch_size)
        self.hard = HardPairs(t.seed)
        if (self.n_hard and self.ft_start is not None
                and self.ft_start < self.state["step"] < t.max_steps):
            self.measure_hard()  # resumed inside the stage: as its last evaluation measured
        self.model.train()
        self.loss_sum = torch.zeros((), device=device)
        self.steps_since, self.t_interval = 0, time.time()
        self.out_of_time = self.regular = False

    def measure_hard(self) -> None:
        """The fine-tune's pairs' losses under the weights as they are now."""
        self.hard.measure(example_losses(self.model, self.stages[1], self.t.eval_batch_size,
                                         self.device, self.t.precision))

    def step(self) -> None:
        """One optimizer step on the batch of this step (the fine-tune's, with its
        hardest pairs, from its first step)."""
        t, step = self.t, self.state["step"]
        in_fine_tune = self.ft_start is not None and step >= self.ft_start
        if in_fine_tune and step == self.ft_start:
            self.optimizer.state.clear()  # the fine-tune's Adam moments start afresh
            if self.n_hard:
                self.measure_hard()
        source = self.stages[in_fine_tune]
        idx = batch_indices(step, len(source), t.batch_size, t.seed)
        if in_fine_tune and self.n_hard:
            idx = torch.cat([idx[: t.batch_size - self.n_hard],
                             self.hard.draw(step, self.n_hard)])
        x, y = (z.to(self.device, non_blocking=True) for z in source.batch(idx, self.pad_to))
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        loss = self.step_loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        # group 0 holds the decayed tensors (make_optimizer)
        self.optimizer.param_groups[0]["weight_decay"] = weight_decay_at(step, self.config)
        self.optimizer.step()
        self.scheduler.step()
        self.state["step"] += 1
        self.steps_since += 1
        self.loss_sum += loss.detach()

    def evaluation_due(self, end: int) -> bool:
        """Whether the step just taken is evaluated: every check_every steps, at the end,
        when the time budget has run out, or at a pruning rung."""
        t, step = self.t, self.state["step"]
        self.out_of_time = (t.time_budget_s is not None
                            and time.time() - self.t_start >= t.time_budget_s)
        self.regular = (step % t.check_every == 0 or step in (t.max_steps, end)
                        or self.out_of_time)
        return self.regular or step in self.extra_evals

    def evaluate(self) -> None:
        """Evaluate on the held-out set, decide early stopping, save the checkpoint and
        report; then start the next interval."""
        t, step = self.t, self.state["step"]
        train_loss = float(self.loss_sum) / self.steps_since
        seconds = time.time() - self.t_interval
        self.state["train_seconds"] += seconds
        metrics: dict[str, Any] = {"step": step, **self.clock.readings(step),
                                   "train_loss": train_loss,
                                   "lr": self.scheduler.get_last_lr()[0],
                                   "examples_per_s": self.steps_since * t.batch_size / seconds}
        if not math.isfinite(train_loss):
            status, reason = "diverged", "non-finite training loss"
            metrics.update(diverged_metrics())
        else:
            metrics.update(evaluate(self.model, self.held, t.eval_batch_size, self.device,
                                    t.precision))
            # held-out exact match 1.0 ends a run only in its last stage: the fine-tune
            # settles what a held-out set of this size barely tests (the carry boundary)
            last_stage = self.ft_start is None or step > self.ft_start
            status, reason = early_stop(self.state, metrics, t, counts=self.regular,
                                        perfect_stops=last_stage)
            if status == "running" and step >= t.max_steps:
                status, reason = "completed", "max_steps"
            elif status == "running" and self.out_of_time:
                status, reason = "time_limit", f"time budget of {t.time_budget_s:g} s"
        metrics.update(params=self.params, best_exact_match=self.state["best_exact_match"],
                       learned=learned(metrics["exact_match"], metrics["worst_stratum"],
                                       metrics["edge_cases"], metrics["carry_boundary"]),
                       elapsed_s=time.time() - self.t_start, status=status,
                       stop_reason=reason, device=str(self.device))
        self.state["history"].append(metrics)
        self.state["status"], self.state["reason"] = self.status, self.reason = status, reason
        if self.io.checkpoint_dir is not None and status != "diverged":
            _save(Path(self.io.checkpoint_dir) / ckpt.FILENAME, self.config, self.model,
                  self.optimizer, self.scheduler, self.state)
        if self.io.report is not None:
            self.io.report(dict(metrics))
        if status != "running":
            return
        if self.n_hard and self.ft_start is not None and step > self.ft_start:
            self.measure_hard()
        self.loss_sum.zero_()
        self.steps_since, self.t_interval = 0, time.time()

    def summary(self) -> dict[str, Any]:
        if self.status == "running" and self.state["step"] >= self.t.max_steps:
            self.status, self.reason = "completed", "max_steps"
        return run_summary(self.config, {**self.state, "status": self.status,
                                         "reason": self.reason},
                           self.params, self.device, self.compiled, self.t_start)


def diverged_metrics() -> dict[str, Any]:
    """A diverged evaluation's metrics: nothing measured, everything at its worst."""
    return {"eval_loss": math.nan, "token_accuracy": 0.0, "exact_match": 0.0,
            "worst_stratum": 0.0, "carry_boundary": 0.0, "edge_cases": 0.0, "strata": {},
            "boundary": {}}


def run_summary(config: ExperimentConfig, state: dict[str, Any], params: int,
                device: torch.device, compiled: bool, t_start: float) -> dict[str, Any]:
    """What ``train`` returns for a run: its status, final and best metrics, parameters,
    times, device, resolved config and evaluation history (``state`` as the run keeps
    it)."""
    last = state["history"][-1] if state["history"] else {}
    return {
        "name": config.name, "status": state["status"], "stop_reason": state["reason"],
        "steps": state["step"], "final_exact_match": last.get("exact_match", 0.0),
        "best_exact_match": state["best_exact_match"], "best_step": state["best_step"],
        "final_token_accuracy": last.get("token_accuracy", 0.0),
        "worst_stratum": last.get("worst_stratum", 0.0),
        "carry_boundary": last.get("carry_boundary", 0.0),
        "edge_cases": last.get("edge_cases", 0.0), "learned": last.get("learned", False),
        "strata": last.get("strata", {}), "params": params,
        "wall_seconds": time.time() - t_start, "train_seconds": state["train_seconds"],
        "device": str(device), "compiled": compiled,
        "threads": torch.get_num_threads() if device.type == "cpu" else 0,
        "config": config.to_dict(), "history": state["history"],
    }


_PREPARED: dict[str, tuple[TokenizedSet, HeldOut]] = {}


def prepared_data(d: DataConfig) -> tuple[TokenizedSet, HeldOut]:
    """The training pairs as tensors and the held-out set of a data config. Generated
    data is kept for the next run in this process with the same data config (a study's
    trials of one recipe share it: 2 s a trial saved on one CPU core); neither object
    is changed by training. Data read from files is read again every time."""
    key = json.dumps(dataclasses.asdict(d), sort_keys=True)
    if d.train_file is None and key in _PREPARED:
        return _PREPARED[key]
    data = load_data(d)
    out = (TokenizedSet(data.train, Vocab(d.base)),
           HeldOut(data.test, data.n_uniform, d.operand_max, d.base))
    if d.train_file is None:
        _PREPARED.clear()  # one data config at a time: a study uses one
        _PREPARED[key] = out
    return out


def _fine_tune_set(config: ExperimentConfig, train_set: TokenizedSet) -> TokenizedSet:
    """The training pairs of the fine-tuning stage: those of the run unless
    training.fine_tune.carry_share changes them (the held-out pairs stay the same)."""
    ft = config.training.fine_tune
    if ft is None or ft.carry_share is None or ft.carry_share == config.data.carry_share:
        return train_set
    tuned = dataclasses.replace(config.data, carry_share=ft.carry_share)
    return TokenizedSet(load_data(tuned).train, Vocab(tuned.base))


def early_stop(state: dict[str, Any], metrics: dict[str, Any], t: TrainingConfig,
                counts: bool = True, perfect_stops: bool = True) -> tuple[str, str]:
    """Update best/patience counters; return (status, reason). An evaluation that does
    not ``count`` (an extra one at a pruning rung) leaves patience as it is; exact match
    1.0 stops the run only if ``perfect_stops`` (not before a fine-tune)."""
    em = metrics["exact_match"]
    if em > state["best_exact_match"]:
        state["best_exact_match"], state["best_step"] = em, metrics["step"]
    if em >= 1.0 and perfect_stops:
        return "early_stopped", "exact_match reached 1.0"
    es = t.early_stopping
    if es is None or not counts:
        return "running", ""
    if em > state["es_best"] + es.min_delta:
        state["es_best"], state["bad_evals"] = em, 0
        return "running", ""
    state["bad_evals"] += 1
    if state["bad_evals"] >= es.patience:
        return "early_stopped", f"no gain > {es.min_delta} in {es.patience} evaluations"
    return "running", ""


def _save(path: Path, config: ExperimentConfig, model: Transformer,
          optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    ckpt.save_checkpoint(path, {
        "config": config.to_dict(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng, "state": state,
    })


def _restore(source: str | Path, config: ExperimentConfig, model: Transformer,
             optimizer: torch.optim.Optimizer, scheduler: Any,
             device: torch.device) -> dict[str, Any]:
    payload = ckpt.load_checkpoint(source, map_location=device)
    saved = ckpt.config_of(payload, str(source))
    for section in ("model", "data"):
        if getattr(saved, section) != getattr(config, section):
            raise ConfigError(f"{source}: saved {section} settings differ from the config "
                              f"being resumed; resume with the same {section} section")
    ckpt.load_weights(model, payload, str(source))
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["cpu"].cpu())
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng"]["cuda"]])
    state = dict(payload["state"])
    # the learning rate of the next step as this config's schedule has it (the saved one
    # follows the saved config's, which a larger budget or a fine-tune stage changes)
    scheduler.base_lrs = [config.training.learning_rate for _ in optimizer.param_groups]
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * scheduler.lr_lambdas[0](state["step"])
    if state["status"] == "completed" and state["step"] < config.training.max_steps:
        state["status"], state["reason"] = "running", ""  # a larger budget: keep training
    return state
