"""How busy the GPU is during a training step: kernel time over wall time.

    python benchmarks/gpu_busy.py [--config configs/phase1_upper.yaml] [--steps 50]
        [--members K ...]

Runs the trainer's own step (``addray.core.trainer.LossModule`` with its optimizer and
clipping) eagerly and compiled, and with ``--members`` the fused step of K members
(``addray.core.fused.GroupStep``, compiled), profiles ``--steps`` steps after a warm-up
with torch.profiler, and prints per mode: ms per step and the share of wall time in
which the GPU ran kernels (sum of CUDA kernel time / wall time). Needs a GPU.
"""

from __future__ import annotations

import datetime
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from addray import cli
from addray.core.batches import TokenizedSet
from addray.core.config import load_config
from addray.core.data import make_dataset
from addray.core.device import machine
from addray.core.fused import FusedModel, GroupStep, StackedAdamW
from addray.core.model import Transformer
from addray.core.tokens import Vocab
from addray.core.trainer import LossModule, batch_indices, make_optimizer
from addray.errors import UserError


def run(config: str, steps: int, compiled: bool) -> tuple[float, float]:
    cfg = load_config(config, {"data.n_train": 20_000, "data.n_test": 16,
                               "data.min_per_stratum": 0})
    device = torch.device("cuda")
    data = TokenizedSet(make_dataset(cfg.data).train, Vocab(cfg.data.base))
    model = Transformer(cfg.model).to(device)
    opt = make_optimizer(model, cfg, device)
    step_loss = LossModule(model, device)
    if compiled:
        step_loss = torch.compile(step_loss, mode="reduce-overhead", dynamic=False)
    pad = data.longest if compiled else None

    def one(step: int) -> None:
        idx = batch_indices(step, len(data), cfg.training.batch_size, 0)
        x, y = (z.to(device, non_blocking=True) for z in data.batch(idx, pad))
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()
        loss = step_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
        opt.step()

    return profiled(one, steps)


def run_fused(config: str, steps: int, k: int) -> tuple[float, float]:
    """(ms per group step, GPU busy) of K fused members, compiled, batch as the config."""
    cfgs = [load_config(config, {"data.n_train": 20_000, "data.n_test": 16,
                                 "data.min_per_stratum": 0, "training.seed": i,
                                 "model.dropout": 0.0})
            for i in range(k)]
    cfg = cfgs[0]
    device = torch.device("cuda")
    data = TokenizedSet(make_dataset(cfg.data).train, Vocab(cfg.data.base))
    fused = FusedModel(cfgs, device)
    group = GroupStep(fused, StackedAdamW(fused, cfg), cfg, device, compiled=True)
    lr = torch.full((k,), cfg.training.learning_rate, device=device)
    wd = torch.zeros(k, device=device)
    caches: list[dict] = [{} for _ in range(k)]

    def one(step: int) -> None:
        rows = torch.stack([batch_indices(step, len(data), cfg.training.batch_size, i,
                                          caches[i]) for i in range(k)])
        x, y = (z.to(device, non_blocking=True) for z in data.batch(rows, data.longest))
        group(x, y, lr, wd)

    return profiled(one, steps)


def profiled(one, steps: int) -> tuple[float, float]:
    for s in range(20):  # warm-up: compilation, graph capture, cuBLAS start-up
        one(s)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for s in range(steps):
            one(20 + s)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernel_us = sum(e.device_time_total for e in prof.key_averages()
                    if e.device_type == torch.autograd.DeviceType.CUDA)
    return 1000 * wall / steps, kernel_us / 1e6 / wall


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/phase1_upper.yaml")
    p.add_argument("--steps", type=cli.bounded(int, 1, 10**5), default=50)
    p.add_argument("--members", nargs="*", type=cli.bounded(int, 1, 256), default=[],
                   help="also profile the fused step of K members (compiled)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise UserError("benchmarks/gpu_busy.py profiles a GPU: this machine has none")
    print(f"# GPU busy fraction, {machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"# command: python benchmarks/gpu_busy.py {' '.join(argv or sys.argv[1:])}")
    print("| config | mode | ms per step | GPU busy |")
    print("|---|---|---|---|")
    for compiled in (False, True):
        ms, busy = run(args.config, args.steps, compiled)
        print(f"| {args.config} | {'compiled' if compiled else 'eager'} | {ms:.2f} | "
              f"{busy:.0%} |", flush=True)
    for k in args.members:
        ms, busy = run_fused(args.config, args.steps, k)
        print(f"| {args.config} | fused, {k} members | {ms:.2f} | {busy:.0%} |", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
