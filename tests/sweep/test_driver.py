"""The driver's summary: a trial cut by its time budget is named loudly."""

from addray.sweep.driver import print_summary
from tests.conftest import trial_row


def test_a_time_budget_cut_is_reported_loudly(tmp_path, capsys):
    rows = [trial_row(0), trial_row(1, status="time_limit", seed=2, lr=0.02)]
    rows = [{k: str(v) for k, v in r.items()} | {"worst_stratum": "", "edge_cases": ""}
            for r in rows]
    print_summary(rows, tmp_path)
    out = capsys.readouterr().out
    assert "WARNING: 1 trial(s) ran out of training.time_budget_s" in out
    assert "phase1_lower seed 2 lr 0.02" in out and "lower bound" in out


def test_no_warning_when_every_trial_ran_its_steps(tmp_path, capsys):
    rows = [{k: str(v) for k, v in trial_row(0).items()}]
    print_summary(rows, tmp_path)
    assert "WARNING" not in capsys.readouterr().out
