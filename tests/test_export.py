"""addray.export: a committed study (trials.csv and curves.csv only) opens in
TensorBoard, checked with TensorBoard's own event reader."""

import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from addray import study_files as sf
from addray.export import export_tensorboard
from tests.conftest import ROOT

EVIDENCE = ROOT / "results" / "reference" / "laptop_phase2"


def test_a_committed_study_opens_in_tensorboard(tmp_path):
    runs = export_tensorboard(EVIDENCE, tmp_path)
    curves = sf.read_curves(EVIDENCE)
    trials = {r["trial_id"]: r for r in sf.read_trials(EVIDENCE)}
    assert len(runs) == len({c["trial_id"] for c in curves}) == 36
    pruned = 0
    for run in runs:
        trial_id = run.name.rsplit("-", 1)[1]
        acc = EventAccumulator(str(run))
        acc.Reload()
        mine = sorted((int(c["step"]), float(c["exact_match"])) for c in curves
                      if c["trial_id"] == trial_id)
        assert [(e.step, round(e.value, 6)) for e in acc.Scalars("exact_match")] == \
            [(s, round(v, 6)) for s, v in mine]
        assert "strata/2+2 tokens, carry" in acc.Tags()["scalars"]
        start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        status = trials[trial_id]["status"]
        assert status.encode() in start and b"n_layers" in start
        pruned += status == "pruned"
    assert pruned > 0  # the study's pruned runs are there, marked as such


def test_a_second_export_into_the_same_folder_is_one_line(tmp_path):
    export_tensorboard(EVIDENCE, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "addray.export", str(EVIDENCE), "--to",
                           "tensorboard", "--out", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "already holds an export of study phase2" in proc.stderr
