"""Nothing escapes, nothing is trusted that addray did not write: links, planted files,
unbounded reads, damaged checkpoints and state, ambiguous YAML, stop signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from addray import files, yamlfile
from addray import study_files as sf
from addray.analysis.results import load_results
from addray.core.checkpoint import load_checkpoint
from addray.core.config import load_config
from addray.errors import CheckpointError, ConfigError, DataError, StudyError
from addray.sweep import tune_state
from tests.conftest import ROOT


def test_a_planted_link_for_the_lock_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    study = tmp_path / "study"
    study.mkdir()
    (study / ".lock").symlink_to(victim)
    with pytest.raises(StudyError, match="symbolic link"):
        files.FolderLock(study / ".lock", "the study").acquire()
    assert victim.read_text() == "precious"


def test_a_linked_study_folder_is_refused_dangling_or_not(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "evil").symlink_to(elsewhere)
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    for name in ("evil", "gone"):
        with pytest.raises(StudyError, match="is a symbolic link"):
            sf.study_folder(tmp_path, name)
    with pytest.raises(ConfigError, match="reserved"):
        sf.study_folder(tmp_path, "reference")


def test_writes_never_follow_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.txt"
    (tmp_path / f".out.txt.{os.getpid()}.tmp").symlink_to(victim)  # the temp file's name
    files.write_text(target, "mine")
    assert target.read_text() == "mine" and victim.read_text() == "precious"
    (tmp_path / "trials.csv").symlink_to(victim)
    with pytest.raises(StudyError, match="symbolic link"):
        files.append_csv(tmp_path / "trials.csv", ["a"], {"a": 1})
    assert victim.read_text() == "precious"


_BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from addray import yamlfile
from addray.errors import ConfigError
try:
    yamlfile.load("/dev/zero", "config file", ConfigError)
except ConfigError as exc:
    print(exc)
"""


def test_a_device_is_read_only_up_to_the_limit():
    # /dev/zero reports size 0: the bound must be on the bytes read (2 GiB address cap)
    out = subprocess.run([sys.executable, "-c", _BOUNDED], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert "/dev/zero: config file is larger than 1 MiB" in out.stdout, out.stderr


def test_a_compressed_checkpoint_is_refused_before_unpacking(tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (8 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="compressed entries"):
        load_checkpoint(bomb)


@pytest.mark.parametrize("value, shown", [("010", "010"), ("1:30", "1:30")])
def test_yaml_numbers_that_read_differently_across_versions_are_refused(tmp_path, value,
                                                                       shown):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\ntraining:\n  max_steps: {value}\n")
    with pytest.raises(ConfigError, match=f"training.max_steps.*{shown}.*plain decimal"):
        load_config(path)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="empty"):
        yamlfile.load(path, "config file", ConfigError)


def test_a_resume_without_tuners_state_is_refused(tmp_path):
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    tune_state.check_restorable(tune_dir, started=False)  # nothing ran yet: a fresh start
    with pytest.raises(StudyError, match="tuner.pkl: missing"):
        tune_state.check_restorable(tune_dir, started=True)
    (tune_dir / "tuner.pkl").write_bytes(b"\x80\x05\x95cut")
    with pytest.raises(StudyError, match="cut short or damaged"):
        tune_state.check_restorable(tune_dir, started=True)


def test_a_crafted_study_json_names_no_file_and_bad_numbers_are_one_line(tmp_path):
    study = tmp_path / "s"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"study": "../../escape", "state": "x"}))
    row = {"trial_id": "t", "config": "c", "params": 5, "status": "completed"}
    files.write_csv(sf.trials_csv(study), sf.TRIAL_COLUMNS, [row])
    assert list(load_results(tmp_path).studies) == ["s"]
    files.write_csv(sf.trials_csv(study), sf.TRIAL_COLUMNS, [{**row, "params": -5}])
    with pytest.raises(DataError, match=r"trials.csv:2: column params = '-5'"):
        load_results(tmp_path)


def test_sigterm_stops_a_command_like_ctrl_c_with_its_exit_status(tmp_path):
    code = ("import time; from addray import cli\n"
            "def main():\n    print('ready', flush=True); time.sleep(60)\n"
            "cli.run(main)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "interrupted (signal SIGTERM)" in err, err


def test_an_unwritable_file_is_one_line_not_a_traceback(tmp_path):
    code = ("from addray import cli\n"
            "def main():\n    open('/no-such-folder/x.csv', 'w')\n"
            "cli.run(main)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: /no-such-folder/x.csv:"), out.stderr


def _probe():
    """benchmarks/probe_escapes.py, whose wrapper makes writes under a folder fail."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe_escapes",
                                                  ROOT / "benchmarks" / "probe_escapes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("err,text", [("EROFS", "Read-only file system"),
                                      ("EACCES", "Permission denied"),
                                      ("ENOSPC", "No space left on device")])
def test_a_disk_that_refuses_writes_is_one_line_naming_the_path(tmp_path, err, text):
    # EROFS, EACCES, ENOSPC raised for every write under out/ (no real disk is touched)
    probe = _probe()
    (tmp_path / "c.yaml").write_text(probe.SMALL)
    (tmp_path / "out").mkdir()
    cmd = [sys.executable, "-c", probe.FAULTY, str(tmp_path / "out"), err, "addray.train",
           "c.yaml", "--out", str(tmp_path / "out" / "run")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"error: {tmp_path / 'out' / 'run'}: {text}"
    assert not any((tmp_path / "out").iterdir())  # nothing half-written
