"""Tune's saved state checked before a resume: a file cut short by a killed driver is
replaced by Tune's whole staging copy, or the resume stops in one line; never a silent
restart of the study."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from addray import study_files as sf
from addray.errors import StudyError
from addray.sweep import tune_state
from tests.conftest import ROOT

SESSION = "2026-12-01_10-00-00"
NAMES = [kind.replace("*", SESSION) for kind in tune_state.KINDS]


def _state(step: int) -> dict[str, bytes]:
    """One start's three state files as Tune writes them (search_gen_state is a pickle
    despite its .json name)."""
    return {NAMES[0]: json.dumps({"trial_data": ["t"] * step, "step": step}).encode(),
            NAMES[1]: pickle.dumps({"counter": step, "finished": False}),
            NAMES[2]: pickle.dumps({"trials": list(range(step)), "name": "x" * 200})}


def _write(folder: Path, contents: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder


def _staging(ray_tmp: Path, contents: dict[str, bytes], session: str = "session_1") -> Path:
    return _write(ray_tmp / session / "artifacts" / SESSION / "tune" / "driver_artifacts",
                  contents)


@pytest.mark.parametrize("name", NAMES)
def test_readable_tells_whole_files_from_cut_ones(tmp_path, name):
    data = _state(3)[name]
    whole = tmp_path / name
    whole.write_bytes(data)
    assert tune_state.readable(whole)
    for cut in (0, 1, len(data) // 2, len(data) - 1):  # 0: what a kill left in CI
        whole.write_bytes(data[:cut])
        assert not tune_state.readable(whole), cut


def test_readable_state_is_left_alone(tmp_path):
    tune = _write(tmp_path / "study" / "tune", _state(3))
    before = {p.name: p.read_bytes() for p in tune.iterdir()}
    assert tune_state.check(tune, ray_tmp=tmp_path / "ray") == []
    assert {p.name: p.read_bytes() for p in tune.iterdir()} == before


def test_cut_file_is_replaced_with_the_whole_staging_set(tmp_path):
    # the kill landed while copying the searcher's state: the experiment state already
    # held step 5, the searcher's file is half of step 5's, nothing newer was copied yet
    old, new = _state(4), _state(5)
    tune = _write(tmp_path / "study" / "tune", {NAMES[0]: new[NAMES[0]],
                                                 NAMES[1]: old[NAMES[1]],
                                                 NAMES[2]: new[NAMES[2]][:40]})
    _staging(tmp_path / "ray", {"tuner.pkl": b"other", **new})
    other = tmp_path / "ray" / "session_0" / "artifacts" / SESSION / "tune"
    _write(other / "driver_artifacts", _state(9))  # another study's files, same names
    repairs = tune_state.check(tune, ray_tmp=tmp_path / "ray")
    assert {(tune / n).read_bytes() for n in NAMES} == set(new.values())  # one start's set
    assert len(repairs) == 2  # the cut file and the older one beside it; not the third
    assert all("replaced by Tune's whole staging copy" in r for r in repairs)
    assert any(NAMES[2] in r for r in repairs) and any(NAMES[1] in r for r in repairs)
    assert not (tune / "tuner.pkl").exists()  # only state files are copied


def test_newest_start_is_the_one_checked(tmp_path):
    tune = _write(tmp_path / "tune", _state(2))
    later = "2026-12-01_11-00-00"
    (tune / f"searcher-state-{later}.pkl").write_bytes(b"")  # the resumed run's, cut
    with pytest.raises(StudyError, match=f"searcher-state-{later}.pkl"):
        tune_state.check(tune, ray_tmp=tmp_path / "ray")


@pytest.mark.parametrize("staged", ["none", "another study's", "cut too"])
def test_no_whole_copy_stops_the_resume_in_one_line(tmp_path, staged):
    data = _state(5)
    tune = _write(tmp_path / "study" / "tune", {**data, NAMES[2]: data[NAMES[2]][:40]})
    if staged == "another study's":  # a whole file of that name that the cut one does not begin
        _staging(tmp_path / "ray", _state(7))
    elif staged == "cut too":
        _staging(tmp_path / "ray", {**data, NAMES[0]: data[NAMES[0]][:10]})
    with pytest.raises(StudyError) as err:
        tune_state.check(tune, ray_tmp=tmp_path / "ray")
    message = str(err.value)
    assert "\n" not in message and "cannot resume" in message
    assert (NAMES[0] if staged == "cut too" else NAMES[2]) in message
    assert (tune / NAMES[2]).read_bytes() == data[NAMES[2]][:40]  # nothing replaced


def _trial_entry(trial: str, status: str, checkpoint: str, storage: str = "/old/study") -> list:
    """One trial of Tune's experiment state: its JSON state and its run metadata, whose
    checkpoint manager is a pickle holding the checkpoint's path (and the bare name)."""
    manager = {"results": [{"path": f"{storage}/tune/{trial}/{checkpoint}",
                            "metrics": {"checkpoint_dir_name": checkpoint}}]}
    return [json.dumps({"trial_id": trial[-5:], "status": status}),
            json.dumps({"checkpoint_manager": {"_type": "CLOUDPICKLE_FALLBACK",
                                               "value": pickle.dumps(manager).hex()}})]


def _study_with_checkpoints(tmp_path: Path, trials: dict[str, tuple[str, str, list[str]]]):
    """A tune/ folder whose state names, for each trial, (status, checkpoint) and whose
    trial folders hold the listed checkpoints (each a file saying its own name)."""
    tune = _write(tmp_path / "study" / "tune", _state(1))
    entries = [_trial_entry(t, status, named) for t, (status, named, _) in trials.items()]
    (tune / NAMES[0]).write_text(json.dumps({"trial_data": entries}))
    for trial, (_, _, present) in trials.items():
        for name in present:
            _write(tune / trial / name, {"state.pt": name.encode()})
    return tune


def test_a_checkpoint_deleted_before_the_state_naming_its_successor_is_replaced(tmp_path):
    # Tune kept one checkpoint: it deleted checkpoint_000003 for checkpoint_000004 and the
    # driver died before saving a state naming 000004; every restore would then fail
    tune = _study_with_checkpoints(tmp_path, {
        "a_00000": ("RUNNING", "checkpoint_000003", ["checkpoint_000004"]),
        "b_00001": ("PAUSED", "checkpoint_000002", ["checkpoint_000002"]),   # as saved
        "c_00002": ("TERMINATED", "checkpoint_000001", []),                  # not restored
        "d_00003": ("PENDING", "checkpoint_000000", [])})                    # never started
    [line] = tune_state.check(tune, ray_tmp=tmp_path / "ray")
    restored = tune / "a_00000" / "checkpoint_000003"
    assert line.startswith(f"{restored}: ") and "a_00000 resumes from its newest" in line
    assert (restored / "state.pt").read_bytes() == b"checkpoint_000004"  # the newest one
    assert (tune / "a_00000" / "checkpoint_000004" / "state.pt").exists()
    assert sorted(p.name for p in (tune / "a_00000").iterdir()) == ["checkpoint_000003",
                                                                     "checkpoint_000004"]
    assert tune_state.check(tune, ray_tmp=tmp_path / "ray") == []  # nothing left to do


def test_a_named_checkpoint_gone_with_nothing_later_stops_the_resume(tmp_path):
    tune = _study_with_checkpoints(tmp_path, {
        "a_00000": ("ERROR", "checkpoint_000003", ["checkpoint_000001"])})
    with pytest.raises(StudyError) as err:
        tune_state.check(tune, ray_tmp=tmp_path / "ray")
    message = str(err.value)
    assert "\n" not in message and "cannot resume" in message
    assert str(tune / "a_00000" / "checkpoint_000003") in message


def _search(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "sweeps" / "phase3_search.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, **(env or {})})


@pytest.mark.ray
def test_resume_after_a_cut_searcher_state(tmp_path):
    """A real search whose searcher state a kill cut to nothing (as in CI, where Tune then
    logged "Failed to restore the run state" and started the study again): the resume
    takes the staging copy and keeps every trial; with no copy left it stops in one line."""
    args = ["--smoke-test", "--results", str(tmp_path), "--trials", "2", "--max-concurrent",
            "1", "--no-prune", "--confirm-seeds", "0"]
    first = _search(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = tmp_path / "phase3"
    before = sf.read_trials(study)
    [searcher] = (study / "tune").glob("searcher-state-*.pkl")
    whole = searcher.read_bytes()
    searcher.write_bytes(b"")
    stopped = _search(*args, "--resume", env={"RAY_TMPDIR": str(tmp_path / "elsewhere")})
    assert stopped.returncode == 2
    assert stopped.stderr.strip().splitlines()[-1].endswith(
        "the study cannot resume: its finished trials stay in trials.csv, start the rest "
        "under a new --study name")
    assert searcher.read_bytes() == b"" and sf.read_trials(study) == before
    resumed = _search(*args, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{searcher}: replaced by Tune's whole staging copy" in resumed.stdout
    assert "Failed to restore" not in resumed.stdout + resumed.stderr
    assert sf.read_trials(study) == before  # no trial started again
    assert searcher.read_bytes() == whole
