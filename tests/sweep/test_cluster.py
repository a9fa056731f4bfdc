"""A real multi-node Ray cluster on this machine: a head and two workers started as
separate `ray start` processes through docker/entrypoint.sh (what the containers run),
with token authentication on; a sweep joins it with --address; a worker node is killed
by pid while its trial runs. Every process started here is killed by pid afterwards."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from addray import study_files as sf
from tests.conftest import ROOT, kill_tree, rows, wait_for

pytestmark = pytest.mark.ray  # studies run for real: Ray started, scripts run

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
PHASE1 = ROOT / "sweeps" / "phase1.py"
# every port chosen by Ray itself (0), so that nodes on one host never race for one;
# own temp dirs, since several raylets on one host must not share their sockets
ANY_PORT = ("--node-manager-port=0 --object-manager-port=0 --dashboard-agent-listen-port=0 "
            "--dashboard-agent-grpc-port=0 --metrics-export-port=0 --runtime-env-agent-port=0")


class Cluster:
    def __init__(self, tmp_path: Path):
        self.token = secrets.token_hex(32)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "NUM_"))}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        self.address = ""
        self.nodes: dict[str, subprocess.Popen] = {}
        self.temp_dirs: list[str] = []
        self.logs = tmp_path

    def start(self, name: str, role: str, **env: str) -> str:
        # short paths: Ray's Unix sockets live under the temp dir (108-byte limit)
        temp_dir = tempfile.mkdtemp(prefix="ar", dir="/tmp")
        self.temp_dirs.append(temp_dir)
        log = (self.logs / f"{name}.log").open("w")
        self.nodes[name] = subprocess.Popen(
            ["bash", str(ENTRYPOINT), role], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**self.env, "RAY_EXTRA_ARGS": f"{ANY_PORT} --temp-dir={temp_dir}", **env})
        return temp_dir

    def start_head(self, **env: str) -> None:
        """The head on a port Ray picks (--port=0), read back from its temp dir."""
        temp_dir = self.start("head", "head", **{"RAY_PORT": "0", "RAY_DASHBOARD_PORT": "0",
                                                 **env})
        found = Path(temp_dir) / "ray_current_cluster"
        wait_for(lambda: found.exists() and found.read_text().strip() != "", 90,
                 f"the head's address in {found}\n{self.tail()}")
        self.address = found.read_text().strip()

    def wait(self, nodes: int) -> None:
        proc = subprocess.run([sys.executable, "-m", "addray.sweep.cluster", "wait",
                               self.address, "--nodes", str(nodes), "--timeout", "90"],
                              env=self.env, capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:] + self.tail()

    def tail(self) -> str:
        return "".join(f"\n--- {p.name}\n" + p.read_text()[-1500:]
                       for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        for proc in self.nodes.values():
            kill_tree(proc.pid)
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path, kill_leftovers):
    c = Cluster(tmp_path)
    try:
        # the head schedules only; each worker offers one CPU, so two trials run at once,
        # one per worker. Dead nodes are noticed within seconds, not Ray's default minute.
        c.start_head(NUM_CPUS="0", NUM_GPUS="0", RAY_health_check_period_ms="1000",
                     RAY_health_check_timeout_ms="1000", RAY_health_check_failure_threshold="3")
        c.wait(1)
        for name in ("worker1", "worker2"):
            c.start(name, "worker", RAY_HEAD_ADDRESS=c.address, NUM_CPUS="1")
        c.wait(3)
        yield c
    finally:
        c.stop()


def _sweep_args(results: Path, cluster: Cluster, *extra: str) -> list[str]:
    return [sys.executable, str(PHASE1), "--smoke-test", "--configs", "reference",
            "--address", cluster.address,
            "--results", str(results), "--cpus-per-trial", "1", *extra]


def test_driver_without_the_token_is_refused_in_one_line(cluster, tmp_path):
    env = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
    proc = subprocess.run(_sweep_args(tmp_path, cluster), env=env, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --address") and "RAY_AUTH_TOKEN" in last, last
    assert not (tmp_path / "phase1" / "trials.csv").exists()


def test_sweep_spreads_over_nodes_and_survives_a_killed_worker(cluster, tmp_path):
    # no pruning, no early stopping: every trial must reach step 200; a trial may be
    # retried three times
    args = _sweep_args(tmp_path, cluster, "--max-steps", "200", "--no-prune",
                       "--set", "training.early_stopping=null", "--max-failures", "3")
    study = tmp_path / "phase1"
    driver = subprocess.Popen(args, env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline and killed is None:
            done = {r["trial_id"] for r in rows(study / "trials.csv")}
            for c in rows(study / "curves.csv"):
                if c["trial_id"] in done or int(c["step"]) < 30:
                    continue
                # a running trial with a checkpoint at step >= 30: kill its whole node
                for name in ("worker1", "worker2"):
                    tree = psutil.Process(cluster.nodes[name].pid).children(recursive=True)
                    if int(c["pid"]) in {p.pid for p in tree}:
                        killed = (name, c["trial_id"], c["node"], int(c["step"]))
                        kill_tree(cluster.nodes[name].pid)
                        break
                if killed:
                    break
            time.sleep(0.1)
        assert killed, "no trial ran long enough on a worker to be killed"
        out, _ = driver.communicate(timeout=300)
    finally:
        kill_tree(driver.pid)
    assert driver.returncode == 0, out[-4000:] + cluster.tail()
    name, trial_id, lost_node, step = killed
    trials = sf.read_trials(study)
    assert len(trials) == 4 and len({r["trial_id"] for r in trials}) == 4  # nothing lost
    for r in trials:
        assert r["status"] == "completed" and r["steps"] == "200", r
    nodes = {c["node"] for c in sf.read_curves(study)}
    assert len(nodes) == 2, nodes  # trials ran on both workers (the head has no CPU)
    lost = next(r for r in trials if r["trial_id"] == trial_id)
    assert lost["node"] != lost_node  # finished on the surviving worker
    assert int(lost["retries"]) >= 1
    steps = [int(c["step"]) for c in sf.read_curves(study)
             if c["trial_id"] == trial_id]
    # continued from its checkpoint on the other node: the early steps were not redone
    assert steps.count(10) == 1 and steps.count(20) == 1, steps
    assert max(steps) == 200
