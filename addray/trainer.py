"""The one training function that every run and every sweep trial calls.

Nothing here knows about Ray: a caller that wants progress passes ``report``, which
is called after every evaluation with a dict of metrics (and a fresh checkpoint on
disk when ``checkpoint_dir`` is given). An exception raised by ``report`` stops
training; the last checkpoint stays, and ``resume_from`` continues from it with the
same step count and the same data order.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from addray import checkpoint as ckpt
from addray import data as data_lib
from addray.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    SchedulerConfig,
    TrainingConfig,
)
from addray.decode import greedy_decode
from addray.model import Transformer, count_parameters

Report = Callable[[dict[str, Any]], Any]


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and cgroups' cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device = 'cuda': CUDA is not available on this machine "
                          "(use cpu or auto)")
    return torch.device(name)


def lr_at(step: int, t: TrainingConfig, s: SchedulerConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    # 1) linear warmup from lr/warmup to lr over warmup_steps
    if step < t.warmup_steps:
        return t.learning_rate * (step + 1) / t.warmup_steps
    # 2) cosine decay from lr to eta_min over the remaining steps, then flat
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
    return s.eta_min + 0.5 * (t.learning_rate - s.eta_min) * (1 + math.cos(math.pi * progress))


def load_data(d: DataConfig) -> tuple[list[dict], list[dict]]:
    """Examples from the configured JSONL files, or generated in memory."""
    if (d.train_file is None) != (d.test_file is None):
        raise ConfigError("data.train_file / data.test_file: give both files or neither")
    if d.train_file is None:
        return data_lib.make_datasets(d.n_train, d.n_test, d.operand_max, d.base, d.seed)
    train = data_lib.read_jsonl(d.train_file, d.base)
    test = data_lib.read_jsonl(d.test_file, d.base)
    seen = {tuple(ex["input"]) for ex in train}
    overlap = sum(tuple(ex["input"]) in seen for ex in test)
    if overlap:
        raise data_lib.DataError(f"{d.test_file}: {overlap} of {len(test)} held-out prompts "
                                 f"also occur in {d.train_file}; test must be disjoint")
    return train, test


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


def make_optimizer(model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    # weight decay on matrices and embeddings only, not on biases and norms (as nanoGPT)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optimizer.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.training.learning_rate, betas=cfg.optimizer.betas)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: Transformer, test: data_lib.TokenizedSet, max_new_tokens: int,
             batch_size: int, device: torch.device) -> dict[str, float]:
    """Held-out metrics. exact_match comes from greedy decoding, never teacher forcing."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for start in range(0, len(test), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(test)))
        x, y = (z.to(device) for z in test.batch(idx))
        with _autocast(device):
            logits = model(x)
        mask = y != -100
        loss_sum += float(F.cross_entropy(logits[mask].float(), y[mask], reduction="sum"))
        correct += int((logits[mask].argmax(-1) == y[mask]).sum())
        count += int(mask.sum())
    with _autocast(device):
        generated = greedy_decode(model, test.prompts, max_new_tokens, test.vocab.pad,
                                  batch_size, device)
    exact = sum(g == t for g, t in zip(generated, test.targets, strict=True))
    model.train(was_training)
    return {"eval_loss": loss_sum / count, "token_accuracy": correct / count,
            "exact_match": exact / len(test)}


def train(config: ExperimentConfig, *, report: Report | None = None,
          checkpoint_dir: str | Path | None = None, resume_from: str | Path | None = None,
          num_threads: int | None = None) -> dict[str, Any]:
    """Train ``config`` and return a summary (status, exact match, parameters, history).

    report: called after each evaluation (every ``check_every`` steps and at the end)
        with step, train_loss, eval_loss, exact_match, token_accuracy, lr, examples_per_s
        and more. The checkpoint in ``checkpoint_dir`` is already written at that point.
    checkpoint_dir: folder for ``checkpoint.pt`` (model, optimizer, scheduler, step,
        RNG state, early-stopping state and the resolved config).
    resume_from: a checkpoint file or folder to continue from.
    num_threads: torch CPU threads; default all CPUs this process may use.
    """
    t_start = time.time()
    t, d = config.training, config.data
    device = resolve_device(t.device)
    if device.type == "cpu":
        torch.set_num_threads(num_threads or available_cpus())
    torch.manual_seed(t.seed)

    train_ex, test_ex = load_data(d)
    if t.batch_size > len(train_ex):
        raise ConfigError(f"training.batch_size = {t.batch_size}: must be <= the "
                          f"{len(train_ex)} training examples")
    vocab = data_lib.Vocab(d.base)
    train_set = data_lib.TokenizedSet(train_ex, vocab)
    test_set = data_lib.TokenizedSet(test_ex, vocab)
    max_new = max(len(tg) for tg in test_set.targets)

    model = Transformer(config.model).to(device)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, t, config.scheduler) / t.learning_rate)
    state: dict[str, Any] = {"step": 0, "best_exact_match": 0.0, "best_step": 0,
                             "es_best": -math.inf, "bad_evals": 0, "history": [],
                             "train_seconds": 0.0, "status": "running", "reason": ""}
    if resume_from is not None:
        state = _restore(resume_from, config, model, optimizer, scheduler, device)

    params = count_parameters(model)
    status, reason = state["status"], state["reason"]
    model.train()
    loss_sum = torch.zeros((), device=device)
    steps_since, t_interval = 0, time.time()
    while state["step"] < t.max_steps and status == "running":
        idx = batch_indices(state["step"], len(train_set), t.batch_size, t.seed)
        x, y = (z.to(device, non_blocking=True) for z in train_set.batch(idx, t.pad_to))
        with _autocast(device):
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                               ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        steps_since += 1
        loss_sum += loss.detach()
        out_of_time = t.time_budget_s is not None and time.time() - t_start >= t.time_budget_s
        if state["step"] % t.check_every and state["step"] != t.max_steps and not out_of_time:
            continue

        # ---- evaluation, early stopping, checkpoint, report
        train_loss = float(loss_sum) / steps_since
        seconds = time.time() - t_interval
        state["train_seconds"] += seconds
        metrics: dict[str, Any] = {"step": state["step"], "train_loss": train_loss,
                                   "lr": scheduler.get_last_lr()[0],
                                   "examples_per_s": steps_since * t.batch_size / seconds}
        if not math.isfinite(train_loss):
            status, reason = "diverged", "non-finite training loss"
            metrics.update(eval_loss=math.nan, token_accuracy=0.0, exact_match=0.0)
        else:
            metrics.update(evaluate(model, test_set, max_new, t.eval_batch_size, device))
            status, reason = _early_stop(state, metrics, t)
            if status == "running" and state["step"] >= t.max_steps:
                status, reason = "completed", "max_steps"
            elif status == "running" and out_of_time:
                status, reason = "time_limit", f"time budget of {t.time_budget_s:g} s"
        metrics.update(params=params, best_exact_match=state["best_exact_match"],
                       elapsed_s=time.time() - t_start, status=status, stop_reason=reason,
                       device=str(device))
        state["history"].append(metrics)
        state["status"], state["reason"] = status, reason
        if checkpoint_dir is not None and status != "diverged":
            _save(Path(checkpoint_dir) / ckpt.FILENAME, config, model, optimizer, scheduler,
                  state)
        if report is not None:
            report(dict(metrics))
        if status != "running":
            break
        loss_sum.zero_()
        steps_since, t_interval = 0, time.time()
    if status == "running":
        status, reason = "completed", "max_steps"

    last = state["history"][-1] if state["history"] else {}
    return {
        "name": config.name, "status": status, "stop_reason": reason,
        "steps": state["step"], "final_exact_match": last.get("exact_match", 0.0),
        "best_exact_match": state["best_exact_match"], "best_step": state["best_step"],
        "final_token_accuracy": last.get("token_accuracy", 0.0), "params": params,
        "wall_seconds": time.time() - t_start, "train_seconds": state["train_seconds"],
        "device": str(device), "threads": torch.get_num_threads() if device.type == "cpu" else 0,
        "config": config.to_dict(), "history": state["history"],
    }


def _early_stop(state: dict[str, Any], metrics: dict[str, Any],
                t: TrainingConfig) -> tuple[str, str]:
    """Update best/patience counters; return (status, reason)."""
    em = metrics["exact_match"]
    if em > state["best_exact_match"]:
        state["best_exact_match"], state["best_step"] = em, metrics["step"]
    if em >= 1.0:
        return "early_stopped", "exact_match reached 1.0"
    es = t.early_stopping
    if es is None:
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
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["cpu"].cpu())
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng"]["cuda"]])
    state = dict(payload["state"])
    if state["status"] == "completed" and state["step"] < config.training.max_steps:
        state["status"], state["reason"] = "running", ""  # a larger budget: keep training
    return state
