"""The driver's summary: a trial cut by its time budget is named loudly, one a screen never
started is said to be screened out."""

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


def test_trials_a_screen_never_started_are_said_to_be_screened_out(tmp_path, capsys):
    never = {"status": "pruned", "steps": 0, "seed": 1, "lr": 0.02, "final_exact_match": "",
             "stop_reason": "not run: the first seed of this config ended best at lr 0.01"}
    pruned = {"status": "pruned", "steps": 1000, "seed": 0, "lr": 0.04,
              "stop_reason": "stopped at 1,000 steps: below the floor 0.002"}
    rows = [{k: str(v) for k, v in trial_row(i, **kw).items()}
            | {"worst_stratum": "", "edge_cases": ""}
            for i, kw in enumerate([{}, never, pruned])]
    print_summary(rows, tmp_path)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert sum("screened out" in ln and ln.startswith("phase1_lower") for ln in lines) == 1
    assert sum(" pruned " in ln for ln in lines) == 1  # the run pruned at a rung stays so
    assert "3 trials recorded" in out and "; 1 screened out, never started" in out


def test_the_time_is_said_with_the_machines_it_ran_on():
    from addray.sweep.driver import took

    rows = [{"machine": "AMD EPYC (AVX2), 2 CPUs", "wall_seconds": "61.5"},
            {"machine": "AMD EPYC (AVX2), 2 CPUs", "wall_seconds": "40"},
            {"machine": "", "wall_seconds": ""}]  # a trial a screen never started
    assert took(344.4, rows) == ("addray: this run took 5 min 44 s; the study's trials "
                                 "trained for 102 trial-seconds on AMD EPYC (AVX2), 2 CPUs")
    assert took(9.6, []) == "addray: this run took 10 s"
