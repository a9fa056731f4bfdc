"""Results on S3-compatible object storage, against a real S3 server on loopback (moto's
server mode, as Ray's own storage tests use): a smoke study runs into a bucket with no
shared local folder, a second driver is refused by the study's lock, the driver is
killed, the study resumes from another working directory that holds nothing of it, and
the report is read from the bucket. A store that cannot be reached is one line."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from addray import store
from tests.conftest import ROOT, kill_tree, wait_for

PHASE1 = ROOT / "sweeps" / "phase1.py"
BUCKET = "addray-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A moto S3 server on 127.0.0.1 with an empty bucket; its URI prefix and client."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)],
                              stdout=(tmp_path / "moto.log").open("w"),
                              stderr=subprocess.STDOUT)
    try:
        uri = f"s3://{BUCKET}/results?endpoint_override=127.0.0.1:{port}&scheme=http"
        location = store.Location.parse(uri)

        def up() -> bool:
            try:
                store.client(location).create_bucket(Bucket=BUCKET)
                return True
            except Exception:  # noqa: BLE001 (not listening yet)
                return False

        wait_for(up, 60, f"moto server on port {port}")
        yield uri, store.client(location)
    finally:
        kill_tree(server.pid)


def _object(client, key: str) -> bytes | None:
    try:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def _rows(client, key: str) -> list[dict[str, str]]:
    body = _object(client, key)
    return list(csv.DictReader(io.StringIO(body.decode()))) if body else []


def _study(uri: str, cwd: Path, *extra: str, **kw) -> subprocess.Popen:
    args = [sys.executable, str(PHASE1), "--smoke-test", "--configs", "reference",
            "--results", uri, "--cpus-per-trial", "1", "--set",
            "training.early_stopping=null", "--max-steps", "200", "--no-prune", *extra]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            text=True, **kw)


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_runs_is_killed_resumes_and_reports_from_object_storage(s3, tmp_path):
    uri, client = s3
    first = _study(uri, tmp_path / "a", stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        # killed once a trial has finished and another has reported, with Tune's
        # experiment on the store
        def one_done_one_running() -> bool:
            done = {r["trial_id"] for r in _rows(client, "results/phase1/trials.csv")}
            curves = _rows(client, "results/phase1/curves.csv")
            return bool(done) and any(c["trial_id"] not in done for c in curves) \
                and _object(client, "results/phase1/tune/tuner.pkl") is not None

        wait_for(one_done_one_running, 300, "a finished trial and a running one on S3")
        # one driver per study: a second one is refused by the lock, in one line
        second = _study(uri, tmp_path / "b", "--resume", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, out[-2000:] + err[-2000:]
        last = err.strip().splitlines()[-1]
        assert "another driver runs it" in last and ".addray-lock.json" in last, last
    finally:
        kill_tree(first.pid)  # the driver and the Ray it started, by pid: no goodbye
    lock = json.loads(_object(client, "results/phase1/.addray-lock.json"))
    assert lock["pid"] == first.pid  # left behind by the killed driver
    before = {r["trial_id"]: r for r in _rows(client, "results/phase1/trials.csv")}
    assert 0 < len(before) < 4

    # another working directory, nothing local: the same URI and --resume
    resumed = _study(uri, tmp_path / "c", "--resume", stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-4000:]
    assert f"results in {uri.split('?')[0]}/phase1/" in out
    info = json.loads(_object(client, "results/phase1/study.json"))
    assert info["state"] == "finished" and info["folder"] == f"{uri.split('?')[0]}/phase1" \
        + f"?{uri.split('?')[1]}"
    after = _rows(client, "results/phase1/trials.csv")
    assert len(after) == 4 and len({r["trial_id"] for r in after}) == 4
    for r in after:
        if r["trial_id"] in before:  # finished before the kill: kept as it was
            assert r == before[r["trial_id"]]
        assert r["status"] == "completed" and r["steps"] == "200", r
    # every evaluation of every trial is on record (a resumed trial repeats the steps
    # after its checkpoint; the report keeps the last of each)
    curves = _rows(client, "results/phase1/curves.csv")
    for r in after:
        steps = {int(c["step"]) for c in curves if c["trial_id"] == r["trial_id"]}
        assert steps == set(range(10, 201, 10)), (r["trial_id"], sorted(steps))  # smoke: every 10
    assert _object(client, "results/phase1/.addray-lock.json") is None  # released
    assert not any(p.name != "ray" for p in (tmp_path / "c").iterdir()), \
        list((tmp_path / "c").iterdir())  # nothing of the study written locally

    report = subprocess.run([sys.executable, "-m", "addray.report", uri, "--out",
                             str(tmp_path / "report")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert report.returncode == 0, report.stderr[-2000:]
    assert "phase1: 4 trials" in report.stdout
    assert (tmp_path / "report" / "report.md").is_file()


def test_a_store_that_cannot_be_reached_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = _free_port()  # nothing listens there
    uri = f"s3://{BUCKET}/r?endpoint_override=127.0.0.1:{port}&scheme=http"
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(PHASE1), "--smoke-test", "--configs",
                           "reference", "--results", uri], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cannot reach the store" in last, last
    assert "Traceback" not in proc.stderr and time.time() - t0 < 240
    bad = subprocess.run([sys.executable, "-m", "addray.report", "gs://bucket/x"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "only s3:// URIs" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("uri, rule", [
    ("s3:///prefix", "no bucket"),
    ("s3://b/p?endpoint=x", "unknown query option 'endpoint'"),
    ("s3://b/p?scheme=ftp", "scheme=ftp: must be http or https"),
    ("gs://b/p", "only s3:// URIs"),
])
def test_a_bad_uri_is_one_line(uri, rule):
    with pytest.raises(Exception, match=rule):
        store.Location.parse(uri)


def test_a_location_names_its_folders():
    loc = store.Location.parse("s3://b/a/?endpoint_override=h:9&scheme=http").child("s1")
    assert (loc.bucket, loc.key, loc.path, loc.plain) == ("b", "a/s1", "b/a/s1", "s3://b/a/s1")
    assert loc.endpoint_url() == "http://h:9"


@pytest.mark.ray
@pytest.mark.slow
def test_a_store_lost_mid_study_stops_it_in_one_line(tmp_path, monkeypatch):
    """The S3 server goes away while trials run: the driver stops with one line naming
    the object it could not write (boto3's retries spent), exit 2."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"s3://{BUCKET}/r?endpoint_override=127.0.0.1:{port}&scheme=http"
    client = store.client(store.Location.parse(uri))
    try:
        wait_for(lambda: _created(client), 60, "moto server")
        driver = _study(uri, tmp_path / "a", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: bool(_rows(client, "r/phase1/curves.csv")), 300, "a first curve row")
    finally:
        kill_tree(server.pid)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 2, out[-2000:] + err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"s3://{BUCKET}/r/phase1/" in last, last
    assert "cannot write it" in last, last
    # a trial whose checkpoint upload failed is in Tune's log with its traceback, as a
    # crashed trial always is; the driver itself ends in the one line, not a traceback
    assert f'File "{ROOT / "addray" / "sweep" / "driver.py"}' not in err, err[-3000:]


def _created(client) -> bool:
    try:
        client.create_bucket(Bucket=BUCKET)
        return True
    except Exception:  # noqa: BLE001 (not listening yet)
        return False


def _upload(client, folder: Path, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(folder)}",
                              Body=path.read_bytes())


def test_a_checkpoint_deleted_before_the_state_naming_its_successor_is_replaced_on_s3(
        s3, tmp_path):
    from addray.errors import StudyError
    from addray.sweep.driver import _repoint_remote_checkpoints
    from tests.sweep.test_tune_state import _study_with_checkpoints

    uri, client = s3
    tune = _study_with_checkpoints(tmp_path / "a", {
        "a_00000": ("RUNNING", "checkpoint_000003", ["checkpoint_000004"]),
        "b_00001": ("PAUSED", "checkpoint_000002", ["checkpoint_000002"]),
        "d_00003": ("PENDING", "checkpoint_000000", [])})
    _upload(client, tune, "results/s/tune")
    where = store.Store(store.Location.parse(uri).child("s").child("tune"))
    [line] = _repoint_remote_checkpoints(where, tmp_path / "scratch")
    assert "s3://addray-test/results/s/tune/a_00000/checkpoint_000003: " in line
    assert _object(client, "results/s/tune/a_00000/checkpoint_000003/state.pt") \
        == b"checkpoint_000004"
    assert _repoint_remote_checkpoints(where, tmp_path / "scratch2") == []

    gone = _study_with_checkpoints(tmp_path / "b", {
        "a_00000": ("ERROR", "checkpoint_000003", ["checkpoint_000001"])})
    _upload(client, gone, "results/t/tune")
    with pytest.raises(StudyError, match="checkpoint_000003: Tune's saved state resumes"):
        _repoint_remote_checkpoints(store.Store(store.Location.parse(uri).child("t")
                                                .child("tune")), tmp_path / "scratch3")


def test_verify_and_predict_read_a_checkpoint_in_a_bucket(s3, tmp_path):
    uri, client = s3
    weights = ROOT / "results" / "reference" / "smallest" / "seed0.pt"
    client.put_object(Bucket=BUCKET, Key="results/m/seed0.pt", Body=weights.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base, query = uri.split("?")
    predict = subprocess.run([sys.executable, "-m", "addray.predict",
                              f"{base}/m/seed0.pt?{query}", "123", "877"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert predict.stdout.strip().splitlines()[-1] == "1000"
    verify = subprocess.run([sys.executable, "-m", "addray.verify", f"{base}/m/seed0.pt?{query}",
                             "--uniform", "200", "--boundary", "50"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode in (0, 1) and "edge" in verify.stdout.lower(), verify.stderr
    missing = subprocess.run([sys.executable, "-m", "addray.verify", f"{base}/m?{query}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "no such checkpoint object" in missing.stderr.strip().splitlines()[-1]


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_runs_into_object_storage(s3, tmp_path):
    """phase3_search.py with --results s3://: its trials, its Optuna history, its best
    model and the confirmation seeds' models end up in the bucket."""
    import optuna

    uri, client = s3
    proc = subprocess.run([sys.executable, str(ROOT / "sweeps" / "phase3_search.py"),
                           "--smoke-test", "--results", uri, "--confirm-seeds", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(_object(client, "results/phase3/study.json"))
    assert info["kind"] == "search" and info["state"] == "finished" and "verified" in info
    trials = _rows(client, "results/phase3/trials.csv")
    assert len(trials) == 4 and len({r["trial_id"] for r in trials}) == 4
    for name in ("best.yaml", "best.pt", "seed1.pt"):
        assert _object(client, f"results/phase3/{name}"), name
    db = tmp_path / "optuna.db"
    db.write_bytes(_object(client, "results/phase3/optuna.db"))
    history = optuna.load_study(study_name="phase3", storage=f"sqlite:///{db}").trials
    assert len(history) == 4
    confirmed = _rows(client, "results/phase3-seeds/trials.csv")
    assert len(confirmed) == 1 and confirmed[0]["status"] in ("completed", "early_stopped")
    assert not [p for p in tmp_path.iterdir() if p.name not in ("optuna.db", "ray", "moto.log")]
