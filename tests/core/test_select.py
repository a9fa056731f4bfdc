"""training.select: the best of several starts (addray.core.select)."""

from __future__ import annotations

import pytest
import torch

from addray.core.checkpoint import load_checkpoint
from addray.core.config import SEED_STRIDE
from addray.core.select import CANDIDATES, candidate_seeds, chosen_seed, screen_score
from addray.core.trainer import train
from addray.errors import ConfigError, StudyError
from tests.conftest import small_config

# two candidates screened for 20 steps of a 40-step run, evaluated every 5 steps
SELECT = {"max_steps": 40, "check_every": 5, "seed": 3,
          "select": {"candidates": 2, "steps": 20}}
VOLATILE = ("examples_per_s", "elapsed_s", "candidate", "chosen")


class Interrupt(Exception):
    pass


def steady(history):
    return [{k: v for k, v in m.items() if k not in VOLATILE} for m in history]


def test_candidate_seeds_step_by_the_stride():
    cfg = small_config(training={**SELECT, "select": {"candidates": 3, "steps": 20}})
    assert candidate_seeds(cfg) == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]


def test_score_is_the_mean_over_the_second_half_of_the_screen():
    history = [{"step": s, "exact_match": em} for s, em in
               [(5, 0.9), (10, 0.1), (15, 0.3), (20, 0.5)]]
    assert screen_score(history, 20) == pytest.approx(0.3)  # steps 10, 15, 20
    assert chosen_seed({"3": 0.4, "1003": 0.4}, [3, 1003]) == 3  # a tie: the earlier
    assert chosen_seed({"3": 0.4, "1003": 0.5}, [3, 1003]) == 1003


@pytest.mark.slow
def test_selected_run_is_the_run_of_the_chosen_seed(tmp_path):
    cfg = small_config(training=SELECT)
    seen = []
    result = train(cfg, checkpoint_dir=tmp_path / "sel", num_threads=1,
                   report=lambda m: seen.append((m.get("candidate"), m.get("chosen"),
                                                 m["step"])))
    sel = result["selection"]
    # each candidate's screen as its own plain run would have it, scored as documented
    plain = {}
    for seed in (3, 3 + SEED_STRIDE):
        alone = small_config(training={**SELECT, "select": None, "seed": seed})
        plain[seed] = train(alone, checkpoint_dir=tmp_path / f"plain{seed}", num_threads=1)
        screen = [m for m in plain[seed]["history"] if m["step"] <= 20]
        assert sel["scores"][str(seed)] == pytest.approx(screen_score(screen, 20))
        kept = load_checkpoint(tmp_path / "sel" / CANDIDATES / f"seed{seed}.pt")
        assert kept["state"]["step"] == 20
        assert steady(kept["state"]["history"]) == steady(screen)
    assert sel["chosen"] == chosen_seed(sel["scores"], [3, 3 + SEED_STRIDE])
    # the run goes on as the chosen seed's: same losses, same final weights
    assert steady(result["history"]) == steady(plain[sel["chosen"]]["history"])
    a = load_checkpoint(tmp_path / "sel")
    b = load_checkpoint(tmp_path / f"plain{sel['chosen']}")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["state"]["selection"]["chosen"] == sel["chosen"]
    assert result["config"]["training"]["seed"] == 3 and result["steps"] == 40
    # progress: both screens tagged with their seed, then the chosen run with its own
    assert seen == ([(3, None, s) for s in (5, 10, 15, 20)]
                    + [(3 + SEED_STRIDE, None, s) for s in (5, 10, 15, 20)]
                    + [(None, sel["chosen"], s) for s in (25, 30, 35, 40)])


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [("candidate", 3 + SEED_STRIDE, 10),
                                      ("chosen", None, 30)])
def test_interrupted_selection_resumes_where_it_was(tmp_path, crash_at):
    cfg = small_config(model={"dropout": 0.1}, training=SELECT)
    full = train(cfg, checkpoint_dir=tmp_path / "full", num_threads=1)
    _, candidate, step = crash_at

    def crash(metrics):
        if metrics.get("candidate") == candidate and metrics["step"] == step:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, checkpoint_dir=tmp_path / "part", report=crash, num_threads=1)
    resumed = train(cfg, checkpoint_dir=tmp_path / "part", resume_from=tmp_path / "part",
                    num_threads=1)
    assert resumed["selection"] == full["selection"]
    assert steady(resumed["history"]) == steady(full["history"])
    a = load_checkpoint(tmp_path / "full")["model"]
    b = load_checkpoint(tmp_path / "part")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_another_run_is_refused(tmp_path):
    plain = small_config(training={**SELECT, "select": None})
    train(plain, checkpoint_dir=tmp_path, num_threads=1)
    with pytest.raises(StudyError, match="not a run of this training.select"):
        train(small_config(training=SELECT), resume_from=tmp_path, num_threads=1)


@pytest.mark.parametrize("training, key", [
    ({"select": {"candidates": 1, "steps": 20}}, "training.select.candidates"),
    ({"select": {"candidates": 17, "steps": 20}}, "training.select.candidates"),
    ({"select": {"candidates": 2, "steps": 40}}, "training.select.steps"),
    ({"select": {"candidates": 2, "steps": 0}}, "training.select.steps"),
    ({"fine_tune": {"steps": 25}}, "training.select.steps"),  # screen must end before it
    ({"early_stopping": {"patience": 3}}, "training.early_stopping"),
    ({"time_budget_s": 60}, "training.time_budget_s"),
    ({"seed": 2**32 - 1000}, "training.select.candidates"),
])
def test_bad_select_settings_name_key_and_rule(training, key):
    with pytest.raises(ConfigError, match=rf"{key} = .*: .*must") as err:
        small_config(training={**SELECT, **training})
    assert "\n" not in str(err.value)
