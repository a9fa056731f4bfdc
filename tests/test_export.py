"""addray.export: a committed study (trials.csv and curves.csv only) opens in
TensorBoard, checked with TensorBoard's own event reader."""

import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from addray import files
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


def test_run_folders_are_plain_names_whatever_the_csv_says(tmp_path):
    study = tmp_path / "results" / "s"
    study.mkdir(parents=True)
    sf.write_study(study, {"study": "s", "state": "finished"})
    row = {"trial_id": "t1", "config": "../../escaped", "seed": 0, "lr": 0.01, "step": 10,
           "exact_match": 0.5}
    files.write_csv(sf.trials_csv(study), sf.TRIAL_COLUMNS,
                    [{**row, "params": 10, "status": "completed", "final_exact_match": 0.5}])
    files.write_csv(sf.curves_csv(study), sf.CURVE_COLUMNS, [row])
    runs = export_tensorboard(tmp_path / "results", tmp_path / "out")
    assert len(runs) == 1 and runs[0].parent == tmp_path / "out" / "s"
    assert not (tmp_path / "escaped").exists() and "/" not in runs[0].name
