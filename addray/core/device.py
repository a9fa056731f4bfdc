"""Which device and how many CPU threads a run uses, and its mixed precision."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

from addray.errors import DeviceError


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and cgroups' cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC`` or ``Intel(R) Xeon(R) Processor``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The machine a run's numbers belong to: the GPU's name when there is one, the CPU
    model with the vector instructions torch's CPU kernels use (AVX2, AVX512: they round
    differently, so the same seed trains to slightly different weights on two CPUs) and
    the CPUs this process may use."""
    cpus = (f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), "
            f"{available_cpus()} CPUs")
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}; {cpus}"
    return cpus


def resolve_device(name: str, what: str = "training.device") -> torch.device:
    """``auto`` is CUDA when there is one, else the CPU; ``cuda`` without CUDA fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{what} = 'cuda': CUDA is not available on this machine "
                          f"(use cpu or auto)")
    return torch.device(name)


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision`` bfloat16, and for auto on CUDA; float32 (and auto
    on the CPU, where bf16 measured slower: benchmarks/RESULTS.md) runs as it is. The
    smallest models ask for float32: their few dimensions leave bf16's 8 bits of
    mantissa little room."""
    if precision == "bfloat16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_precision(logits: torch.Tensor) -> torch.Tensor:
    """Logits as the loss takes them: float32 from bf16 or float32, float64 kept (a model
    trained in float64 by tests comparing two ways of computing one run)."""
    return logits if logits.dtype == torch.float64 else logits.float()
