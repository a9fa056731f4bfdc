"""Loading results folders: studies, running trials, bad files."""

import pytest

from addray import files
from addray import study_files as sf
from addray.analysis.results import load_results
from addray.errors import DataError
from tests.conftest import trial_row as row


def _write_study(d, rows, state="finished", curves=()):
    d.mkdir(parents=True)
    sf.write_study(d, {"study": d.name, "state": state, "command": "python sweeps/x.py"})
    files.write_csv(sf.trials_csv(d), sf.TRIAL_COLUMNS, rows)
    files.write_csv(sf.curves_csv(d), sf.CURVE_COLUMNS, list(curves))


def test_load_marks_partial_studies_and_running_trials(tmp_path):
    curves = [{"trial_id": "t9", "config": "phase1_tiny", "seed": 0, "lr": 1e-3, "step": s,
               "exact_match": 0.1 * s / 10, "params": 32167} for s in (10, 20)]
    _write_study(tmp_path / "a", [row(1)], state="interrupted", curves=curves)
    _write_study(tmp_path / "b", [row(2)])
    res = load_results(tmp_path)
    assert res.studies["a"]["partial"] and not res.studies["b"]["partial"]
    running = res.trials[res.trials["status"] == "running"]
    assert running["trial_id"].tolist() == ["t9"] and running["steps"].item() == 20


def test_a_study_being_written_loads_without_its_half_written_row(tmp_path):
    _write_study(tmp_path / "a", [row(1)], state="running")
    with sf.curves_csv(tmp_path / "a").open("a") as f:
        f.write("a,t2,phase1_tiny,0,0.001,32167,1")  # a report still being appended
    assert len(load_results(tmp_path).trials) == 1


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "no studies found"),
    (lambda d: (d / "notes.txt").write_text("hello"), "no studies found"),
    (lambda d: (d / "s").mkdir() or (d / "s" / "trials.csv").write_text("a,b\n1,2\n"),
     "not an addray results file"),
    (lambda d: _write_study(d / "s", [row(1), row(2)]) or (d / "s" / "trials.csv").write_text(
        "\n".join((d / "s" / "trials.csv").read_text().splitlines()[:-1])[:-40] + "\n"
        + (d / "s" / "trials.csv").read_text().splitlines()[-1] + "\n"),
     "truncated or corrupt"),
    (lambda d: (d / "s").mkdir() or (d / "s" / "study.json").write_text("{oops"),
     "not valid JSON"),
])
def test_bad_results_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        load_results(tmp_path)


def test_missing_folder():
    with pytest.raises(DataError, match="no such folder"):
        load_results("/nonexistent/results")


def _study(where, name="s"):
    where.mkdir(parents=True)
    sf.write_study(where, {"study": name, "state": "finished"})
    files.write_csv(sf.trials_csv(where), sf.TRIAL_COLUMNS,
                    [{"study": name, "trial_id": "t1", "config": "c", "status": "completed",
                      "params": 10}])


def test_a_copied_study_is_kept_apart(tmp_path):
    for where in (tmp_path / "s", tmp_path / "backup" / "s"):
        _study(where)
    res = load_results(tmp_path)
    assert sorted(res.studies) == ["backup-s", "s"]
    assert res.trials.groupby("study").size().to_dict() == {"backup-s": 1, "s": 1}


def test_committed_evidence_is_reported_on_its_own(tmp_path):
    # results/reference/ holds copies of studies: never mixed into the user's own
    _study(tmp_path / "reference" / "laptop", name="phase1")
    with pytest.raises(DataError, match=r"no studies found .*python -m addray.report "
                                        r".*reference$"):
        load_results(tmp_path)
    _study(tmp_path / "phase1", name="phase1")
    assert list(load_results(tmp_path).studies) == ["phase1"]
    assert len(load_results(tmp_path).trials) == 1
    assert list(load_results(tmp_path / "reference").studies) == ["phase1"]
