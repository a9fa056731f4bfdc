"""A study as a Ray job, the way a cluster's users submit one: a head started with
`ray start` on loopback with token authentication (docker/entrypoint.sh), a smoke study
submitted through the job API (JobSubmissionClient), listed, its logs read, stopped with
the job API while its trials run, and continued by a second job with --resume. The
driver of a job joins the job's cluster (never a Ray of its own) and records the job."""

from __future__ import annotations

import json
import socket
import sys
import time

import pytest

from addray import study_files as sf
from tests.conftest import ROOT, rows, wait_for
from tests.sweep.test_cluster import Cluster


def test_a_job_is_told_by_its_supervisors_environment(monkeypatch):
    from addray.sweep import cluster

    monkeypatch.delenv(cluster.JOB_CONFIG_ENV, raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster.submitted_job() is None and cluster.job_address() is None
    monkeypatch.setenv(cluster.JOB_CONFIG_ENV, json.dumps(
        {"runtime_env": {}, "metadata": {"job_submission_id": "phase1-1", "job_name": "x"}}))
    assert cluster.submitted_job() == "phase1-1"
    assert cluster.job_address() == "10.0.0.1:6379"
    monkeypatch.setenv(cluster.JOB_CONFIG_ENV, "not json")
    assert cluster.submitted_job() == "unnamed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_status(client, job: str, wanted: set[str], timeout: float) -> str:
    deadline = time.time() + timeout
    status = ""
    while time.time() < deadline:
        status = str(client.get_job_status(job).value)
        if status in wanted:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job}: {status} after {timeout:g} s, not {wanted}\n"
                         f"{client.get_job_logs(job)[-3000:]}")


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_submitted_as_a_ray_job_is_listed_stopped_and_resumed(tmp_path,
                                                                      kill_leftovers):
    from ray.job_submission import JobSubmissionClient

    cluster = Cluster(tmp_path)
    port = free_port()
    try:
        cluster.start_head(NUM_CPUS="2", NUM_GPUS="0", RAY_DASHBOARD_PORT=str(port))
        cluster.wait(1)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), 60, f"the job API at {url}\n{cluster.tail()}")
        client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {cluster.token}"})
        results = tmp_path / "results"
        study = results / "phase1"
        # as `ray job submit --working-dir . -- python sweeps/phase1.py ...`: the checkout
        # uploaded, the study run from it (its addray first on the job's PYTHONPATH)
        command = (f"{sys.executable} sweeps/phase1.py --smoke-test "
                   f"--configs reference --results {results} --max-steps 200 --no-prune "
                   f"--set training.early_stopping=null --cpus-per-trial 1")
        upload = {"working_dir": str(ROOT)}
        first = client.submit_job(entrypoint=command, submission_id="phase1-first",
                                  runtime_env=upload)
        listed = {j.submission_id: j for j in client.list_jobs()}
        assert listed["phase1-first"].entrypoint == command
        wait_for(lambda: sf.curves_csv(study).exists() and len(rows(sf.curves_csv(study))) > 0,
                 240, f"a trial's first evaluation\n{client.get_job_logs(first)[-3000:]}")
        client.stop_job(first)
        assert wait_status(client, first, {"STOPPED", "FAILED"}, 60) == "STOPPED"
        logs = client.get_job_logs(first)
        # the job's driver joined the job's cluster (not a Ray of its own) and said so
        assert "as Ray job phase1-first" in logs, logs[-3000:]
        uploaded = client.get_job_info(first).runtime_env["working_dir"]
        assert uploaded.startswith("gcs://_ray_pkg_"), uploaded  # run from the upload
        info = sf.read_study(study)
        # ray job stop: SIGTERM, then SIGKILL 3 s later: "interrupted" if the driver wrote
        # it in time, else still "running" (on a loaded machine); resumable either way
        assert info["state"] in ("interrupted", "running"), info
        assert info["ray_jobs"] == ["phase1-first"]
        ended = {r["trial_id"] for r in rows(sf.trials_csv(study))} if sf.trials_csv(
            study).exists() else set()

        second = client.submit_job(entrypoint=command + " --resume",
                                   submission_id="phase1-second", runtime_env=upload)
        assert wait_status(client, second, {"SUCCEEDED", "FAILED", "STOPPED"}, 420) \
            == "SUCCEEDED", client.get_job_logs(second)[-3000:]
        info = sf.read_study(study)
        assert info["state"] == "finished"
        assert info["ray_jobs"] == ["phase1-first", "phase1-second"]
        trials = rows(sf.trials_csv(study))
        ids = [r["trial_id"] for r in trials]
        assert len(ids) == len(set(ids)) == info["trials"] and ended <= set(ids)
        assert {r["status"] for r in trials} == {"completed"}, trials
        assert all(int(r["steps"]) == 200 for r in trials)
        # (drivers that joined without the job API, such as `cluster wait`, have no id)
        statuses = {j.submission_id: str(j.status.value) for j in client.list_jobs()
                    if j.submission_id}
        assert statuses == {"phase1-first": "STOPPED", "phase1-second": "SUCCEEDED"}
    finally:
        cluster.stop()


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=2)
    except urllib.error.HTTPError:
        return True  # it answers (401 without the token)
    except OSError:
        return False
    return True
