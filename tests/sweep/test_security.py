"""A local study stays local: every Ray process listens on loopback only, and the token
that guards them is readable by its owner only."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys

import psutil
import pytest

from addray.sweep import cluster
from tests.conftest import ROOT, SWEEPS, kill_tree, rows, wait_for


def _listening(pid: int) -> set[tuple[str, str]]:
    """(address, process name) of every listening socket of a process tree."""
    procs = {pid} | {p.pid for p in psutil.Process(pid).children(recursive=True)}
    found = set()
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs:
            try:
                name = psutil.Process(c.pid).name()
            except psutil.NoSuchProcess:
                continue
            found.add((c.laddr.ip, name))
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.ray
def test_a_local_study_listens_on_loopback_only_and_keeps_its_token_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)  # a fresh ~/.ray: the study creates the token
    args = ["--smoke-test", "--configs", "reference", "--results", str(tmp_path), "--dashboard",
            "--cpus-per-trial", "1",
            "--max-steps", "400", "--set", "training.early_stopping=null", "--no-prune"]
    driver = subprocess.Popen([sys.executable, str(SWEEPS / "phase1.py"), *args], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    study = tmp_path / "phase1"
    try:
        wait_for(lambda: len(rows(study / "curves.csv")) >= 2, 240, "trials running")
        sockets = _listening(driver.pid)
        token = home / ".ray" / "auth_token"
        mode = stat.S_IMODE(token.stat().st_mode)
    finally:
        kill_tree(driver.pid)
    names = {name for _, name in sockets}
    # the GCS, the raylet, the workers and the dashboard and its agents were all found ...
    assert {"gcs_server", "raylet"} <= names, sockets
    # ... and not one of them listens beyond loopback
    assert {(a, n) for a, n in sockets if not _loopback(a)} == set(), sockets
    assert mode == 0o600, oct(mode)


def test_an_existing_token_file_is_made_private(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("secret")
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    cluster.private_token(create=False)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_a_new_token_is_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cluster.private_token(create=True)
    token = tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
