"""Fused training: K runs of one shape trained as one stacked model (horizontal fusion,
as HFTA), so that one process steps K models with one launch per layer instead of K.

Members may differ in what keeps shapes equal: ``training.seed`` (initial weights and
data order), ``training.learning_rate`` and ``optimizer.weight_decay``; everything else
(model, data, batch size, schedule's steps, clipping) is shared (``fusable`` says why
not). Member k starts from the weights ``trainer.run`` builds for its config (each
member's model is made under its own seed and the weights stacked), sees the batches
``trainer.run`` gives its seed, and steps with AdamW of its own learning rate and weight
decay, its gradient clipped by its own norm: with dropout 0 its losses and exact match
are those of ``python -m addray.train`` of its config, within float32 rounding (the
test). With dropout, masks come from one stream for the group: same weights and batches,
other masks.

The forward pass is ``torch.func.vmap`` over ``functional_call``; attention inside it is
written out as matrix products (``math_attention``): torch has no batching rule for the
CPU's fused attention and would run it once per member. A member that stops (early
stopping, a caller's pruning, exact match 1.0) is dropped from the stack, its results
frozen. One checkpoint holds the group and resumes it exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from addray.core import checkpoint as ckpt
from addray.core import trainer
from addray.core.clock import Clock
from addray.core.config import ExperimentConfig, from_dict
from addray.core.device import autocast, available_cpus, loss_precision, resolve_device
from addray.core.evaluate import evaluate
from addray.core.model import CausalSelfAttention, Transformer, count_parameters
from addray.core.strata import learned
from addray.errors import CheckpointError, ConfigError

# called after each evaluation of member k with its metrics; True stops that member
MemberReport = Callable[[int, dict[str, Any]], Any]
FILENAME = "fused.pt"


def shape_key(config: ExperimentConfig) -> str:
    """What members of one group share: the config with seed, learning rate, weight
    decay and name left out (two configs with the same key can be fused)."""
    t = dataclasses.replace(config.training, seed=0, learning_rate=1.0)
    o = dataclasses.replace(config.optimizer, weight_decay=0.0)
    c = dataclasses.replace(config, name="", training=t, optimizer=o)
    return repr(c.to_dict())


def fusable(configs: Sequence[ExperimentConfig]) -> str | None:
    """None when ``configs`` can train as one group, else why not (one line)."""
    if not configs:
        return "no members"
    first = configs[0]
    if first.training.select is not None:
        return "training.select (the best of several starts) is not fused"
    if first.training.fine_tune is not None:
        return "training.fine_tune (a second stage on other data) is not fused"
    for c in configs[1:]:
        if shape_key(c) != shape_key(first):
            return (f"{c.name} differs from {first.name} in more than seed, learning rate "
                    "and weight decay")
    return None


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = True,
                   dropout_p: float = 0.0) -> torch.Tensor:
    """Attention as matrix products: the same function as
    ``F.scaled_dot_product_attention`` (without its fused kernel), which vmap batches."""
    t = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    if is_causal:
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    if dropout_p:
        weights = F.dropout(weights, dropout_p)
    return weights @ v


class FusedModel:
    """Stacked parameters of K members of one ``Transformer`` shape, as leaf tensors
    (K, ...) in ``params``; ``logits(x)`` runs member k on x[k]."""

    def __init__(self, configs: Sequence[ExperimentConfig], device: torch.device):
        members = []
        for c in configs:
            torch.manual_seed(c.training.seed)  # as trainer.run: the seed, then the model
            members.append(Transformer(c.model))
        self.template = members[0]
        stacked, _ = stack_module_state(members)
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in stacked.items()}
        # the module vmap calls with each member's weights; its buffers (RoPE's tables, a
        # digit basis) are the same for every member
        self.base = copy.deepcopy(self.template).to(device)
        for m in self.base.modules():
            if isinstance(m, CausalSelfAttention):
                m.attend = math_attention
        self.randomness = "different" if configs[0].model.dropout else "error"

    def _one(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, p, (x,))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._one, randomness=self.randomness)(self.params, x)

    def member(self, k: int, into: Transformer) -> Transformer:
        """``into`` with member k's weights (for evaluation and checkpoints)."""
        into.load_state_dict({n: p[k].detach() for n, p in self.params.items()}, strict=False)
        return into

    def keep(self, rows: torch.Tensor) -> None:
        self.params = {n: p.detach()[rows].requires_grad_() for n, p in self.params.items()}


def member_losses(fused: FusedModel, x: torch.Tensor, y: torch.Tensor,
                  device: torch.device, precision: str) -> torch.Tensor:
    """(K,) mean cross entropy of each member over its target tokens (as
    ``trainer.LossModule``)."""
    with autocast(device, precision):
        logits = fused.logits(x)  # (K, B, T, V)
    k = logits.size(0)
    flat = F.cross_entropy(loss_precision(logits).reshape(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=-100, reduction="none").view(k, -1)
    counts = (y.view(k, -1) != -100).sum(1)
    return flat.sum(1) / counts


class StackedAdamW:
    """AdamW over stacked tensors with a learning rate and weight decay per member
    (torch's AdamW arithmetic, member by member), gradients clipped per member by the
    norm over all of its tensors (as ``clip_grad_norm_``)."""

    def __init__(self, fused: FusedModel, config: ExperimentConfig):
        o = config.optimizer
        self.beta1, self.beta2 = o.betas
        self.eps = 1e-8  # torch's AdamW default, which trainer.make_optimizer keeps
        kept = set() if o.decay_embeddings else {
            n for n, _ in fused.template.named_parameters() if n.startswith("embed.")}
        # decay on matrices and embeddings, as make_optimizer (a member's dim >= 2)
        self.decayed = {n for n, p in fused.params.items() if p.dim() >= 3 and n not in kept}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in fused.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in fused.params.items()}
        self.steps = 0

    def keep(self, rows: torch.Tensor) -> None:
        self.exp_avg = {n: m[rows] for n, m in self.exp_avg.items()}
        self.exp_avg_sq = {n: m[rows] for n, m in self.exp_avg_sq.items()}

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], lr: torch.Tensor, wd: torch.Tensor,
             max_norm: float) -> None:
        self.steps += 1
        dev = lr.device
        bc1 = torch.tensor(1 - self.beta1 ** self.steps, device=dev)
        bc2_sqrt = torch.tensor(math.sqrt(1 - self.beta2 ** self.steps), device=dev)
        self.update(params, self.exp_avg, self.exp_avg_sq, lr, wd, bc1, bc2_sqrt, max_norm)
        for p in params.values():
            p.grad = None

    def update(self, params: dict[str, torch.Tensor], exp_avg: dict[str, torch.Tensor],
               exp_avg_sq: dict[str, torch.Tensor], lr: torch.Tensor, wd: torch.Tensor,
               bc1: torch.Tensor, bc2_sqrt: torch.Tensor, max_norm: float) -> None:
        """One clipped AdamW update of every stacked tensor in place (all tensors, so
        that torch.compile can fuse it into a few kernels without recompiling)."""
        k = lr.numel()
        sq = torch.zeros(k, device=lr.device)
        for p in params.values():
            sq = sq + p.grad.pow(2).reshape(k, -1).sum(1)
        clip = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for n, p in params.items():
            shape = (k,) + (1,) * (p.dim() - 1)
            g = p.grad * clip.view(shape)
            if n in self.decayed:
                p.mul_(1 - (lr * wd).view(shape))
            m, v = exp_avg[n], exp_avg_sq[n]
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.sub_((lr / bc1).view(shape) * m / denom)

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.exp_avg, self.exp_avg_sq, self.steps = s["exp_avg"], s["exp_avg_sq"], s["steps"]


class GroupStep:
    """One optimizer step of the whole group: forward and loss of every member, backward,
    clipping and AdamW; with ``compiled``, the forward-and-loss and the update each run
    under torch.compile (fixed shapes: batches padded to the longest example)."""

    def __init__(self, fused: FusedModel, opt: StackedAdamW, config: ExperimentConfig,
                 device: torch.device, compiled: bool):
        self.fused, self.opt, self.device = fused, opt, device
        self.precision, self.grad_clip = config.training.precision, config.training.grad_clip
        self.loss_fn = member_losses
        if compiled:
            self.loss_fn = torch.compile(member_losses, dynamic=False)
            opt.update = torch.compile(opt.update, dynamic=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
                 wd: torch.Tensor) -> torch.Tensor:
        """x, y (K, B, T); lr, wd (K,): the members' losses (K,) before the step."""
        losses = self.loss_fn(self.fused, x, y, self.device, self.precision)
        losses.sum().backward()  # members are independent: each gets its own gradient
        self.opt.step(self.fused.params, lr, wd, self.grad_clip)
        return losses


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "best_exact_match": 0.0, "best_step": 0, "es_best": -math.inf,
            "bad_evals": 0, "history": [], "train_seconds": 0.0, "status": "running",
            "reason": ""}


def train_fused(configs: Sequence[ExperimentConfig], *, report: MemberReport | None = None,
                checkpoint_dir: str | Path | None = None,
                resume_from: str | Path | None = None, num_threads: int | None = None,
                rungs: tuple[str, Sequence[float]] = ("steps", ()),
                prune: Callable[[dict[int, dict[str, Any]]], dict[int, str]] | None = None,
                on_checkpoint: Callable[[int, dict[int, dict[str, Any]]], Any] | None = None,
                on_restore: Callable[[dict[int, dict[str, Any]]], Any] | None = None,
                compile_step: bool | None = None) -> list[dict[str, Any]]:
    """Train ``configs`` (``fusable``) as one group; one summary per member, as
    ``trainer.train`` returns. ``report(k, metrics)`` is called after each evaluation of
    member k (metrics as the trainer's, plus ``member``); a true return stops it (status
    "stopped"). ``prune``, called with every member evaluated at a step (member -> its
    metrics, already reported), returns the members to stop there with why (status
    "pruned"). ``on_checkpoint(step, evaluated)`` is called once the group's checkpoint
    holds that step and those decisions, with the members' metrics as they ended there.
    ``on_restore(last)``, after a resume, gets every member's last evaluation as the
    checkpoint kept it (a member stopped before the checkpoint: its final metrics, status
    and stop reason), so that a caller shows the whole group from its first report.
    ``rungs`` as ``trainer.train``'s. ``compile_step``: torch.compile the fused forward
    and loss (default: as training.compile of the first config). An exception raised by a
    callback stops training; the last checkpoint stays."""
    why = fusable(configs)
    if why is not None:
        raise ConfigError(f"cannot fuse these runs: {why}")
    t_start = time.time()
    first = configs[0]
    t, d = first.training, first.data
    device = resolve_device(t.device)
    if device.type == "cpu":
        torch.set_num_threads(num_threads or available_cpus())
    train_set, held = trainer.prepared_data(d)
    if t.batch_size > len(train_set):
        raise ConfigError(f"training.batch_size = {t.batch_size}: must be <= the "
                          f"{len(train_set)} training examples")
    k_all = len(configs)
    fused = FusedModel(configs, device)
    opt = StackedAdamW(fused, first)
    states = [_fresh_state() for _ in configs]
    active = list(range(k_all))
    if resume_from is not None:
        active, states = _restore(resume_from, configs, fused, opt, device)
        if on_restore is not None:
            on_restore({k: dict(s["history"][-1]) for k, s in enumerate(states)
                        if s["history"]})
    params = count_parameters(fused.template)
    clock = Clock.of(first, params, rungs[0])  # the members share batch size and data
    compiled = trainer.use_compile(t.compile, device) if compile_step is None else compile_step
    step_group = GroupStep(fused, opt, first, device, compiled)
    pad_to = t.pad_to or (train_set.longest if compiled else None)
    caches: list[dict] = [{} for _ in configs]  # one permutation cache per member's seed
    extra_evals = clock.steps_reaching(rungs[1])
    eval_model = Transformer(first.model).to(device)
    step = states[active[0]]["step"] if active else t.max_steps
    loss_sum = torch.zeros(len(active), device=device)  # per row of the stack
    steps_since, t_interval = 0, time.time()
    while active and step < t.max_steps:
        losses = step_group(*_inputs(step, [configs[k] for k in active],
                                     [caches[k] for k in active], train_set, pad_to, device))
        step += 1
        steps_since += 1
        loss_sum += losses.detach()
        out_of_time = t.time_budget_s is not None and time.time() - t_start >= t.time_budget_s
        regular = step % t.check_every == 0 or step == t.max_steps or out_of_time
        if not regular and step not in extra_evals:
            continue
        mean_losses = dict(zip(active, (loss_sum / steps_since).tolist(), strict=True))
        seconds = time.time() - t_interval
        evaluated: dict[int, dict[str, Any]] = {}
        for k in active:
            s = states[k]
            s["step"], s["train_seconds"] = step, s["train_seconds"] + seconds
            metrics = _evaluate_member(k, configs[k], fused, active, eval_model, held, s,
                                       mean_losses[k], steps_since,
                                       seconds, clock, params, regular,
                                       out_of_time, device, t_start)
            evaluated[k] = metrics
            if report is not None and report(k, dict(metrics)) and s["status"] == "running":
                s["status"], s["reason"] = "stopped", "stopped by the caller"
                metrics.update(status="stopped", stop_reason=s["reason"])
        for k, why in (prune(evaluated) if prune is not None else {}).items():
            if states[k]["status"] == "running":
                states[k]["status"], states[k]["reason"] = "pruned", why
                evaluated[k].update(status="pruned", stop_reason=why)
        active = _drop_stopped(active, states, fused, opt, device)
        if checkpoint_dir is not None:
            _save(Path(checkpoint_dir) / FILENAME, configs, fused, opt, active, states)
        if on_checkpoint is not None:
            on_checkpoint(step, evaluated)
        loss_sum = torch.zeros(len(active), device=device)
        steps_since, t_interval = 0, time.time()
    return [_summary(configs[k], states[k], params, device, compiled, t_start)
            for k in range(k_all)]


def _inputs(step: int, configs: list[ExperimentConfig], caches: list[dict],
            train_set: Any, pad_to: int | None, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(x, y, lr, wd) of optimizer step ``step`` for the members still in the stack, in
    its order: each member's batch of its seed (K, B, T), its learning rate and weight
    decay (K,)."""
    rows = [batch_indices_for(step, len(train_set), c.training.batch_size, c, cache)
            for c, cache in zip(configs, caches, strict=True)]
    x, y = (z.to(device, non_blocking=True) for z in train_set.batch(torch.stack(rows), pad_to))
    lr = torch.tensor([trainer.lr_at(step, c.training, c.scheduler) for c in configs],
                      device=device)
    wd = torch.tensor([trainer.weight_decay_at(step, c) for c in configs], device=device)
    return x, y, lr, wd


def _drop_stopped(active: list[int], states: list[dict[str, Any]], fused: FusedModel,
                  opt: StackedAdamW, device: torch.device) -> list[int]:
    """The members still running; the others' rows leave the stack (and the optimizer's
    moments), so that they cost nothing more."""
    keep = [i for i, k in enumerate(active) if states[k]["status"] == "running"]
    if len(keep) < len(active):
        rows = torch.tensor(keep, dtype=torch.long, device=device)
        fused.keep(rows)
        opt.keep(rows)
    return [active[i] for i in keep]


def batch_indices_for(step: int, n: int, batch_size: int, config: ExperimentConfig,
                      cache: dict) -> torch.Tensor:
    """Member's batch ``step``: ``trainer.batch_indices`` of its seed, with a cache of its
    own (the trainer's holds one seed's permutation at a time)."""
    return trainer.batch_indices(step, n, batch_size, config.training.seed, cache)


def _evaluate_member(k: int, config: ExperimentConfig, fused: FusedModel, active: list[int],
                     eval_model: Transformer, held: Any, s: dict[str, Any], train_loss: float,
                     steps: int, seconds: float, clock: Clock, params: int,
                     regular: bool, out_of_time: bool, device: torch.device,
                     t_start: float) -> dict[str, Any]:
    t = config.training
    step = s["step"]
    row = active.index(k)
    metrics: dict[str, Any] = {"step": step, **clock.readings(step),
                               "train_loss": train_loss,
                               "lr": trainer.lr_at(step, t, config.scheduler),
                               "examples_per_s": steps * t.batch_size / seconds}
    if not math.isfinite(train_loss):
        s["status"], s["reason"] = "diverged", "non-finite training loss"
        metrics.update(trainer.diverged_metrics())
    else:
        model = fused.member(row, eval_model)
        metrics.update(evaluate(model, held, t.eval_batch_size, device, t.precision))
        status, reason = trainer.early_stop(s, metrics, t, counts=regular)
        if status == "running" and step >= t.max_steps:
            status, reason = "completed", "max_steps"
        elif status == "running" and out_of_time:
            status, reason = "time_limit", f"time budget of {t.time_budget_s:g} s"
        s["status"], s["reason"] = status, reason
    metrics.update(params=params, best_exact_match=s["best_exact_match"],
                   learned=learned(metrics["exact_match"], metrics["worst_stratum"],
                                   metrics["edge_cases"], metrics["carry_boundary"]),
                   elapsed_s=time.time() - t_start, status=s["status"],
                   stop_reason=s["reason"], device=str(device), member=k)
    s["history"].append(metrics)
    return metrics


def _summary(config: ExperimentConfig, s: dict[str, Any], params: int, device: torch.device,
             compiled: bool, t_start: float) -> dict[str, Any]:
    return {**trainer.run_summary(config, s, params, device, compiled, t_start), "fused": True}


def _save(path: Path, configs: Sequence[ExperimentConfig], fused: FusedModel,
          opt: StackedAdamW, active: list[int], states: list[dict[str, Any]]) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    ckpt.save_checkpoint(path, {
        "configs": [c.to_dict() for c in configs], "active": active,
        "params": {n: p.detach() for n, p in fused.params.items()},
        "optimizer": opt.state_dict(), "states": states, "rng": rng})


STATUSES = ("running", "completed", "early_stopped", "pruned", "time_limit", "diverged",
            "stopped")
STATE_KEYS = {"step": int, "best_exact_match": float, "best_step": int, "es_best": float,
              "bad_evals": int, "history": list, "train_seconds": float, "status": str,
              "reason": str}


def check_group(payload: Any, configs: Sequence[ExperimentConfig] | None,
                name: str) -> None:
    """Raise CheckpointError (one line naming ``name``, the file as the user knows it)
    unless ``payload`` is a group checkpoint that ``train_fused`` can resume: of
    ``configs`` (None: of the configs it names, which must load), its members, steps,
    parameters and optimizer moments agreeing with each other and with the model."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{name}: not a usable group checkpoint ({why}); a group "
                               "resumes only from its own fused.pt as the trial saved it")

    if not isinstance(payload, dict):
        raise bad("not a dictionary of entries")
    missing = [k for k in ("configs", "active", "params", "optimizer", "states", "rng")
               if k not in payload]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    saved = payload["configs"]
    if configs is None:
        if not isinstance(saved, list) or not saved:
            raise bad("its configs are not a list of members")
        try:
            configs = [from_dict(c, source=f"{name} (saved config)") for c in saved]
        except (ConfigError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"a saved config is unusable: {str(exc)[:160]}") from None
    elif saved != [c.to_dict() for c in configs]:
        raise ConfigError(f"{name}: saved for other members; resume with the same configs "
                          "in the same order")
    k_all, active, states = len(configs), payload["active"], payload["states"]
    if (not isinstance(active, list) or not all(isinstance(k, int) for k in active)
            or active != sorted(set(active)) or any(not 0 <= k < k_all for k in active)):
        raise bad(f"its running members {str(active)[:80]} are not distinct members "
                  f"0-{k_all - 1} in order")
    if not isinstance(states, list) or len(states) != k_all:
        raise bad(f"{len(states) if isinstance(states, list) else 'no'} member states for "
                  f"{k_all} members")
    for k, state in enumerate(states):
        if not isinstance(state, dict) or not all(_typed(state.get(key), kind)
                                                  for key, kind in STATE_KEYS.items()):
            raise bad(f"member {k}'s state lacks a field or has one of the wrong type")
        if state["status"] not in STATUSES:
            raise bad(f"member {k}'s status {state['status']!r} is not one of "
                      f"{', '.join(STATUSES)}")
        if (state["status"] == "running") != (k in active):
            raise bad(f"member {k} is {state['status']} but "
                      f"{'' if k in active else 'not '}among the running members")
        if not 0 <= state["step"] <= configs[k].training.max_steps:
            raise bad(f"member {k}'s step {state['step']} is outside 0-"
                      f"{configs[k].training.max_steps}")
    if len({states[k]["step"] for k in active}) > 1:
        raise bad("its running members are at different steps")
    shapes = {n: (len(active), *p.shape) for n, p in Transformer(configs[0].model)
              .named_parameters()}
    _check_tensors(payload["params"], shapes, "parameters", bad)
    opt = payload["optimizer"]
    if not isinstance(opt, dict) or not isinstance(opt.get("steps"), int) or opt["steps"] < 0:
        raise bad("its optimizer state has no step count")
    for moment in ("exp_avg", "exp_avg_sq"):
        _check_tensors(opt.get(moment), shapes, f"optimizer's {moment}", bad)
    rng = payload["rng"]
    if not isinstance(rng, dict) or not isinstance(rng.get("cpu"), torch.Tensor) \
            or rng["cpu"].dtype != torch.uint8:
        raise bad("its random state is not a byte tensor")


def _typed(value: Any, kind: type) -> bool:
    """Whether a saved state's field is of ``kind`` (an int counts as a float; a bool
    is neither)."""
    kinds = (int, float) if kind is float else (kind,)
    return isinstance(value, kinds) and not isinstance(value, bool)


def _check_tensors(tensors: Any, shapes: dict[str, tuple[int, ...]], what: str,
                   bad: Callable[[str], CheckpointError]) -> None:
    if not isinstance(tensors, dict) or set(tensors) != set(shapes):
        raise bad(f"its {what} are not the model's tensors")
    for n, shape in shapes.items():
        t = tensors[n]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape \
                or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise bad(f"its {what} {n} is {got}, not {shape} (running members x the "
                      f"model's shape)")


def _restore(source: str | Path, configs: Sequence[ExperimentConfig], fused: FusedModel,
             opt: StackedAdamW, device: torch.device) -> tuple[list[int], list[dict]]:
    path = Path(source)
    if path.is_dir():
        path = path / FILENAME
    payload = ckpt.load_checkpoint(path, map_location=device)
    check_group(payload, configs, str(path))
    active = list(payload["active"])
    fused.params = {n: p.to(device).requires_grad_() for n, p in payload["params"].items()}
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"]["cpu"].cpu())
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng"]["cuda"]])
    return active, [dict(s) for s in payload["states"]]
