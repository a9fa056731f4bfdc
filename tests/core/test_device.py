import torch

from addray.core.device import autocast, available_cpus, cpu_model, machine


def _matmul_dtype(device: torch.device, precision: str) -> torch.dtype:
    a = torch.randn(4, 4)
    with autocast(device, precision):
        return (a @ a).dtype


def test_autocast_follows_the_precision_setting():
    cpu = torch.device("cpu")
    assert _matmul_dtype(cpu, "auto") == torch.float32  # auto: bf16 on CUDA only
    assert _matmul_dtype(cpu, "float32") == torch.float32
    assert _matmul_dtype(cpu, "bfloat16") == torch.bfloat16


def test_float32_turns_off_bf16_on_cuda_too():
    # only the choice is tested here (no GPU): float32 never enters autocast
    cuda = torch.device("cuda")
    assert isinstance(autocast(cuda, "float32"), type(autocast(torch.device("cpu"), "auto")))
    assert not isinstance(autocast(cuda, "float32"), torch.autocast)


def test_machine_names_the_cpu_its_kernels_and_the_cpus_given():
    # the same seed trains to other weights on a CPU whose kernels round otherwise:
    # every trial row says which machine its numbers came from
    name = machine()
    assert cpu_model() and cpu_model() in name
    assert f"({torch.backends.cpu.get_cpu_capability()})" in name
    assert name.endswith(f"{available_cpus()} CPUs")
