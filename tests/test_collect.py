"""`python -m addray.collect`: runs of addray.train as a study the report reads."""

import json
import subprocess
import sys

import pytest

from addray import files
from addray import study_files as sf
from addray.analysis import report
from addray.analysis.results import load_results
from tests.test_train import _small_yaml


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of a tiny config (seeds 0 and 1, 20 steps, evaluations at 10 and 20);
    seed 1 stopped at 10 steps and resumed to 20."""
    tmp = tmp_path_factory.mktemp("runs")
    config = str(_small_yaml(tmp))
    a, b = tmp / "seed0", tmp / "seed1"
    assert _cli("addray.train", config, "--out", str(a), "--threads", "1").returncode == 0
    assert _cli("addray.train", config, "--out", str(b), "--seed", "1", "--threads", "1",
                "--max-steps", "10").returncode == 0
    proc = _cli("addray.train", config, "--out", str(b), "--seed", "1", "--threads", "1",
                "--resume")
    assert proc.returncode == 0, proc.stderr
    return a, b


@pytest.mark.slow
def test_runs_become_a_study_the_report_reads(runs, tmp_path):
    results = tmp_path / "results"
    proc = _cli("addray.collect", *map(str, runs), "--study", "tiny-runs",
                "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    study = results / "tiny-runs"
    info = sf.read_study(study)
    assert info["kind"] == "runs" and info["state"] == "finished" and info["trials"] == 2
    assert info["command"].startswith("python -m addray.collect ")
    trials = {r["trial_id"]: r for r in sf.read_trials(study)}
    assert set(trials) == {"seed0", "seed1"}
    for run, seed in zip(runs, (0, 1), strict=True):
        m = json.loads((run / "metrics.json").read_text())
        row = trials[run.name]
        assert (int(row["seed"]), int(row["params"]), int(row["steps"])) == (seed, m["params"], 20)
        assert float(row["final_exact_match"]) == pytest.approx(m["final_exact_match"])
        assert row["learned"] == str(m["learned"]) and row["machine"] == m["machine"] != ""
        assert json.loads(row["resolved_config"]) == m["config"]
        assert row["finished_at"] == m["finished_at"]
    # the resumed run keeps the evaluation from before its resume
    curves = sf.read_curves(study)
    assert sorted((c["trial_id"], int(c["step"])) for c in curves) == [
        ("seed0", 10), ("seed0", 20), ("seed1", 10), ("seed1", 20)]
    assert {c["config"] for c in curves} == {"small"}  # the runs' config name
    loaded = load_results(results)
    assert set(loaded.trials["trial_id"]) == {"seed0", "seed1"}
    md = report.build(results, out=tmp_path / "out")[0].read_text()
    assert "tiny-runs" in md


@pytest.mark.slow
def test_collected_runs_in_a_search_folder_are_a_stage_of_it(runs, tmp_path):
    from tests.analysis.test_report import _search_study, _synthetic_study

    root = _synthetic_study(tmp_path / "results")
    _search_study(root)
    proc = _cli("addray.collect", *map(str, runs), "--study", "tiny-runs",
                "--results", str(root / "search" / "verification"))
    assert proc.returncode == 0, proc.stderr
    md = report.build(root, out=tmp_path / "out")[0].read_text()
    section = md.split("## Smallest model that adds")[1].split("\n## ")[0]
    assert "tiny-runs (stage): " in section and "of 2 seeds" in section
    assert "over 3 stage(s) of 1 search(es)" in section


def test_runs_of_one_recipe_under_two_names_get_one_label(runs, tmp_path):
    proc = _cli("addray.collect", *map(str, runs), "--study", "s", "--config", "recipe",
                "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert {r["config"] for r in sf.read_trials(tmp_path / "s")} == {"recipe"}
    assert {r["config"] for r in sf.read_curves(tmp_path / "s")} == {"recipe"}


def test_an_existing_study_is_never_replaced(runs, tmp_path):
    study = tmp_path / "tiny-runs"
    study.mkdir()
    files.write_text(study / "trials.csv", "kept\n")
    proc = _cli("addray.collect", str(runs[0]), "--study", "tiny-runs",
                "--results", str(tmp_path))
    assert proc.returncode == 2 and "already holds a study" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (study / "trials.csv").read_text() == "kept\n"


@pytest.mark.parametrize("setup,args,message", [
    (lambda d: d.mkdir(), ["--study", "s"], "metrics.json: no such file"),
    (lambda d: (d.mkdir(), (d / "metrics.json").write_text("{")), ["--study", "s"],
     "metrics.json: not valid JSON"),
    (lambda d: (d.mkdir(), (d / "metrics.json").write_text('{"name": "x"}')), ["--study", "s"],
     "metrics.json: status = None: must be a str"),
    (lambda d: d.mkdir(), ["--study", "../escape"], "--study '../escape'"),
])
def test_bad_input_is_one_line(tmp_path, setup, args, message):
    run = tmp_path / "run"
    setup(run)
    proc = _cli("addray.collect", str(run), *args, "--results", str(tmp_path / "results"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results" / "s").exists()


def test_two_runs_with_one_folder_name_are_refused(runs, tmp_path):
    twin = tmp_path / "elsewhere" / runs[0].name
    twin.parent.mkdir()
    twin.mkdir()
    (twin / "metrics.json").write_text((runs[0] / "metrics.json").read_text())
    proc = _cli("addray.collect", str(runs[0]), str(twin), "--study", "s",
                "--results", str(tmp_path / "results"))
    assert proc.returncode == 2 and "the same folder name" in proc.stderr
    assert not (tmp_path / "results" / "s").exists()
