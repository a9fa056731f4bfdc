"""Every study option is checked in one place, before Ray starts (no Ray here)."""

import json
from dataclasses import asdict, replace

import pytest

from addray import study_files as sf
from addray.errors import ConfigError, StudyError
from addray.sweep.options import SearchOptions, SweepOptions, check_state, validate
from tests.conftest import CONFIGS

TINY = [str(CONFIGS / "phase1_tiny.yaml")]


@pytest.mark.parametrize("kw,message", [
    ({"study": "../x"}, "--study '../x': must be a plain name"),
    ({"study": "/abs/path"}, "--study '/abs/path': must be a plain name"),
    ({"study": "a/b"}, "must be a plain name"),
    ({"seeds": 0}, "--seeds = 0: must be >= 1"),
    ({"seeds": 100_000}, "--seeds = 100000: must be >= 1 and <= 100"),
    ({"lrs": [1e-3] * 20, "configs": TINY * 7, "seeds": 20},
     "7 configs x 20 learning rates x 20 seeds = 2800 trials, more than 2000"),
    ({"grace_period": 0}, "--grace-period = 0: must be >= 1"),
    ({"reduction_factor": 1}, "--reduction-factor = 1: must be >= 2"),
    ({"max_failures": -1}, "--max-failures = -1: must be >= 0"),
    ({"cpus_per_trial": 0.0}, "--cpus-per-trial = 0: must be > 0"),
    ({"cpus_per_trial": float("nan")}, "--cpus-per-trial = nan: must be a finite number"),
    ({"gpus_per_trial": 1.5}, "--gpus-per-trial = 1.5: must be a fraction in (0, 1] or a whole"),
    ({"gpus": -1.0}, "--gpus = -1: must be >= 0"),
    ({"metric": "loss"}, "--metric = loss: must be one of exact_match, worst_stratum"),
    ({"clock": "hours"}, "--clock = hours: must be one of steps, examples, flops"),
    ({"configs": []}, "at least one config is needed"),
    ({"mlflow": " "}, "--mlflow =  : must be a tracking URI"),
    ({"mlflow": "http://127.0.0.1:9"}, "--mlflow = http://127.0.0.1:9: no tracking server "
                                        "answers there"),
    ({"mlflow": "file:./mlruns"}, "--mlflow = file:./mlruns: the tracking store refused"),
])
def test_bad_grid_options(tmp_path, kw, message):
    opts = SweepOptions(**{"study": "s", "configs": TINY, "results": str(tmp_path), **kw})
    with pytest.raises(ConfigError) as err:
        validate(opts)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("kw,message", [
    ({"trials": 0}, "--trials = 0: must be >= 1"),
    ({"trials": 10**6}, "--trials = 1000000: must be >= 1 and <= 2000"),
    ({"time_budget_s": float("nan")}, "--time-budget = nan: must be a finite number"),
    ({"time_budget_s": float("inf")}, "--time-budget = inf: must be a finite number"),
    ({"time_budget_s": 0.0}, "--time-budget = 0: must be a finite number of seconds > 0"),
    ({"max_concurrent": 0}, "--max-concurrent = 0: must be >= 1"),
    ({"confirm_seeds": -1}, "--confirm-seeds = -1: must be >= 0"),
])
def test_bad_search_options(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(SearchOptions(**{"study": "s", "results": str(tmp_path), **kw}))


def test_results_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="--results .*: is a file, not a folder"):
        validate(SweepOptions(study="s", configs=TINY, results=str(tmp_path / "f")))


def test_the_study_folder_stays_inside_results(tmp_path):
    assert validate(SweepOptions(study="s", configs=TINY, results=str(tmp_path))) == \
        (tmp_path / "s").resolve()


def test_study_state(tmp_path):
    new = SweepOptions(study="s", configs=TINY, results=str(tmp_path))
    assert check_state(new, tmp_path / "s") == {}
    with pytest.raises(StudyError, match="no study to resume"):
        check_state(SweepOptions(study="s", configs=TINY, resume=True), tmp_path / "s")
    (tmp_path / "s").mkdir()
    sf.write_study(tmp_path / "s", {"study": "s", "state": "finished"})
    with pytest.raises(StudyError, match="already holds study 's'; pass --resume"):
        check_state(new, tmp_path / "s")
    with pytest.raises(StudyError, match="study 's' is not a search"):
        check_state(SearchOptions(study="s", finish=True), tmp_path / "s")


def test_a_resume_must_repeat_the_study_it_continues(tmp_path):
    started = SweepOptions(study="s", configs=TINY, seeds=3, max_steps=500, prune=False,
                           results=str(tmp_path), command="python sweeps/phase1.py --seeds 3")
    (tmp_path / "s").mkdir()
    sf.write_study(tmp_path / "s", {"study": "s", "state": "interrupted",
                                    "command": started.command,
                                    "options": json.loads(json.dumps(asdict(started)))})
    # resources and retries may change
    same = replace(started, resume=True, cpus_per_trial=1.0, max_failures=5)
    assert check_state(same, tmp_path / "s")["state"] == "interrupted"
    for changed, flag in ((dict(seeds=1), "--seeds"), (dict(max_steps=None), "--max-steps"),
                          (dict(prune=True), "--no-prune"), (dict(configs=["other.yaml"]),
                                                              "--configs")):
        with pytest.raises(StudyError, match=f"--resume with {flag} different from the study's"
                                             r".*python sweeps/phase1.py --seeds 3$"):
            check_state(replace(same, **changed), tmp_path / "s")


def _laptop(*argv):
    import importlib.util

    from addray.sweep.cli import grid_options, parser

    path = CONFIGS.parent / "sweeps" / "phase1.py"
    spec = importlib.util.spec_from_file_location("phase1", path)
    phase1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(phase1)
    args = parser("phase1", "", phase1.PRESETS).parse_args(["--configs", "laptop", "--gpus", "0",
                                                             *argv])
    return grid_options(args, phase1.PRESETS)


def test_the_laptop_set_screens_rates_per_size_with_a_floor(tmp_path):
    opts = _laptop()
    assert opts.screen and opts.floor == 0.002 and opts.seeds == 3 and opts.grace_period == 1
    # every config has its own grid of two rates, and --lr replaces them all
    names = {p.rsplit("/", 1)[-1].removesuffix(".yaml") for p in opts.configs}
    assert set(opts.config_lrs) == names
    assert [len(opts.config_lrs[n]) for n in sorted(names)] == [2, 2, 2, 2, 1]  # 32K: one
    assert _laptop("--lr", "1e-2").config_lrs == {}
    smoke = _laptop("--smoke-test")
    assert smoke.floor is None and all(len(v) == 1 for v in smoke.config_lrs.values())
    # 32K, on the plateau, runs one seed on a CPU; --seeds, a GPU study and a smoke run
    # give every size the same count
    assert opts.config_seeds == {"phase1_tiny": 1}
    assert _laptop("--seeds", "2").config_seeds == {} and smoke.config_seeds == {}
    assert _laptop("--no-screen").screen is False
    validate(replace(opts, results=str(tmp_path)))  # the set passes its own checks


def test_seeds_per_config_make_the_trials(tmp_path):
    from addray.sweep.grid import build_configs

    two = [str(CONFIGS / "sizes" / "phase1_2k.yaml"), str(CONFIGS / "sizes" / "phase1_3k.yaml")]
    opts = SweepOptions(study="s", configs=two, seeds=3, lrs=[1e-2, 2e-2],
                        config_seeds={"phase1_3k": 1}, results=str(tmp_path))
    validate(opts)
    runs = [(c.name, lr, seed) for c, lr, seed in build_configs(opts)]
    assert runs == [("phase1_2k", lr, s) for lr in (1e-2, 2e-2) for s in (0, 1, 2)
                    ] + [("phase1_3k", 1e-2, 0), ("phase1_3k", 2e-2, 0)]
    with pytest.raises(ConfigError, match=r"^seeds of phase1_3k = 0: must be >= 1"):
        validate(replace(opts, config_seeds={"phase1_3k": 0}))


@pytest.mark.parametrize("argv,flag", [(["--no-prune", "--screen"], "--screen"),
                                       (["--no-prune", "--floor", "0.01"], "--floor 0.01")])
def test_no_prune_with_a_pruning_rule_is_refused(argv, flag):
    with pytest.raises(ConfigError, match=f"--no-prune with {flag}: the screen and the floor "
                                          "are pruning rules"):
        _laptop(*argv)
    assert _laptop("--no-prune").prune is False  # the set's own screen: not an explicit one
