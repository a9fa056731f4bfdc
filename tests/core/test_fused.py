import dataclasses

import pytest
import torch
import torch.nn.functional as F

from addray.core import checkpoint as ckpt
from addray.core.fused import FILENAME, check_group, fusable, math_attention, train_fused
from addray.core.trainer import train
from addray.errors import CheckpointError, ConfigError
from tests.conftest import small_config

STEPS = {"max_steps": 300, "check_every": 100, "warmup_steps": 30}
# three members that differ in seed, learning rate and weight decay. Adam amplifies
# rounding differences (it divides by tiny second moments): two runs of the trainer
# alone on 1 and 2 threads drift apart by 1e-3 in loss within 60-100 steps at lr 1e-2
# in float32, and even in float64 within 150. The long comparisons run in float64 at
# rates where rounding stays rounding over 300 steps; large rates are compared early.
MEMBERS = [(0, 1e-3, 0.01), (1, 3e-3, 0.1), (2, 2e-3, 0.0)]
FAST = [(0, 1e-2, 0.01), (1, 2e-2, 0.1)]


@pytest.fixture(scope="module", autouse=True)
def float64():
    """The module's runs in float64 (the trainer's and the fused alike)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def member_configs(members=MEMBERS, **training):
    return [small_config(training={**STEPS, **training, "seed": s, "learning_rate": lr},
                         optimizer={"weight_decay": wd}) for s, lr, wd in members]


def assert_same_run(alone: dict, fused: dict, n_test: int, rel: float = 1e-4) -> None:
    assert [h["step"] for h in fused["history"]] == [h["step"] for h in alone["history"]]
    for a, b in zip(alone["history"], fused["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=rel)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=rel)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)
        # float32 rounding may flip a decision on an example or two, no more
        assert abs(b["exact_match"] - a["exact_match"]) <= 2 / n_test
        assert abs(b["token_accuracy"] - a["token_accuracy"]) <= 2 / n_test
    assert fused["status"] == alone["status"] and fused["params"] == alone["params"]


@pytest.fixture(scope="module")
def separate():
    """Each member trained alone by the trainer, as python -m addray.train would."""
    return [train(c, num_threads=2) for c in member_configs()]


@pytest.fixture(scope="module")
def whole():
    """The members trained as one group, uncut."""
    return train_fused(member_configs(), num_threads=2)


@pytest.mark.slow
def test_each_member_trains_as_the_trainer_trains_it_alone(separate, whole):
    configs = member_configs()
    fused = whole
    n_test = configs[0].data.n_test
    for alone, member in zip(separate, fused, strict=True):
        assert_same_run(alone, member, n_test)
    # the comparison means something: the members learn, and learn differently
    assert max(m["final_exact_match"] for m in fused) > 0.005
    assert len({round(m["history"][-1]["eval_loss"], 4) for m in fused}) == 3
    for m in fused:
        assert m["history"][-1]["eval_loss"] < 0.95 * m["history"][0]["eval_loss"]
        assert m["config"]["training"]["seed"] in (0, 1, 2)


def test_large_rates_agree_while_rounding_stays_rounding():
    for dtype, rel in ((torch.float64, 1e-5), (torch.float32, 1e-3)):
        torch.set_default_dtype(dtype)
        configs = member_configs(FAST, max_steps=40, check_every=20)
        fused = train_fused(configs, num_threads=2)
        for c, member in zip(configs, fused, strict=True):
            assert_same_run(train(c, num_threads=2), member, c.data.n_test, rel=rel)
    torch.set_default_dtype(torch.float64)


@pytest.mark.slow
def test_an_interrupted_group_resumes_exactly(tmp_path, separate, whole):
    configs = member_configs()

    def interrupt(k, metrics):
        if metrics["step"] == 200:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(configs, report=interrupt, checkpoint_dir=tmp_path, num_threads=2)
    assert (tmp_path / FILENAME).is_file()
    resumed = train_fused(configs, resume_from=tmp_path, checkpoint_dir=tmp_path,
                          num_threads=2)
    for alone, member, uncut in zip(separate, resumed, whole, strict=True):
        assert_same_run(alone, member, configs[0].data.n_test)
        # the same arithmetic as the run that was never cut: the same numbers
        assert [h["train_loss"] for h in member["history"]] == [
            h["train_loss"] for h in uncut["history"]]


def test_resume_refuses_other_members(tmp_path):
    configs = member_configs(max_steps=100)
    train_fused(configs, checkpoint_dir=tmp_path, num_threads=2)
    with pytest.raises(ConfigError, match="saved for other members"):
        train_fused(configs[:2], resume_from=tmp_path, num_threads=2)


@pytest.mark.slow
def test_a_stopped_member_freezes_and_the_others_run_on(separate):
    seen = []

    def prune_second(k, metrics):
        seen.append((k, metrics["step"]))
        return k == 1 and metrics["step"] == 100

    fused = train_fused(member_configs(), report=prune_second, num_threads=2)
    assert fused[1]["status"] == "stopped" and fused[1]["steps"] == 100
    assert [h["step"] for h in fused[1]["history"]] == [100]
    assert (1, 200) not in seen and (0, 300) in seen and (2, 300) in seen
    n_test = member_configs()[0].data.n_test
    assert_same_run(separate[0], fused[0], n_test)  # dropped from the stack, nothing else
    assert_same_run(separate[2], fused[2], n_test)


@pytest.mark.slow
def test_early_stopping_is_per_member():
    # patience 1, min_delta 1: every member stops at its second evaluation (step 100)
    configs = member_configs(members=MEMBERS[:2], check_every=50,
                             early_stopping={"patience": 1, "min_delta": 1.0})
    fused = train_fused(configs, num_threads=2)
    alone = [train(c, num_threads=2) for c in configs]
    for a, f in zip(alone, fused, strict=True):
        assert f["status"] == a["status"] == "early_stopped"
        assert f["steps"] == a["steps"] == 100


def test_a_tied_digit_basis_model_fuses_too():
    model = {"d_model": 8, "n_heads": 2, "d_ff": 24, "norm": "rmsnorm",
             "tie_embeddings": True, "digit_basis": 2, "digit_ramp": True,
             "head_bias": False}
    torch.set_default_dtype(torch.float32)  # its digit basis is a float32 buffer
    try:
        configs = [small_config(model=model, training={**STEPS, "max_steps": 30,
                                                       "check_every": 10, "seed": s,
                                                       "learning_rate": lr})
                   for s, lr in [(0, 2e-2), (5, 5e-2)]]
        fused = train_fused(configs, num_threads=2)
        for c, member in zip(configs, fused, strict=True):
            # float32 at these rates: compared early, before rounding grows (by step
            # 60 at lr 5e-2 fused and alone differ by 3e-3 in eval loss on an AMD
            # EPYC, 1 and 2 threads alone by 4e-4); at step 30 they agree to 4e-5
            assert_same_run(train(c, num_threads=2), member, c.data.n_test, rel=5e-4)
    finally:
        torch.set_default_dtype(torch.float64)


def test_only_runs_of_one_shape_fuse():
    base = member_configs()[0]
    wider = dataclasses.replace(base, model=dataclasses.replace(base.model, d_model=64))
    assert fusable(member_configs()) is None
    assert "differs" in fusable([base, wider])
    other_batch = small_config(training={**STEPS, "batch_size": 64})
    assert "differs" in fusable([base, other_batch])
    tuned = small_config(training={**STEPS, "fine_tune": {"steps": 100,
                                                          "learning_rate": 1e-3}})
    assert "fine_tune" in fusable([tuned])
    with pytest.raises(ConfigError, match="cannot fuse"):
        train_fused([base, wider])


def test_math_attention_is_the_fused_kernel_s_function():
    torch.manual_seed(7)
    q, k, v = (torch.randn(3, 2, 11, 4) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = math_attention(q, k, v, is_causal=True)
    assert torch.linalg.norm(got - expected) / torch.linalg.norm(expected) < 1e-6


@pytest.fixture(scope="module")
def group_checkpoint(tmp_path_factory):
    """A group checkpoint of three members after 100 steps, one of them stopped."""
    folder = tmp_path_factory.mktemp("group")
    configs = member_configs(max_steps=200)

    def stop_second(k, metrics):
        return k == 1

    def interrupt(step, evaluated):  # once the checkpoint holds step 100
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(configs, report=stop_second, on_checkpoint=interrupt,
                    checkpoint_dir=folder, num_threads=2, compile_step=False)
    return configs, ckpt.load_checkpoint(folder / FILENAME), folder


def _edited(payload, edit):
    copy = {**payload, "optimizer": dict(payload["optimizer"]),
            "states": [dict(s) for s in payload["states"]]}
    edit(copy)
    return copy


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.pop("states"), "no states"),
    (lambda p: p.update(active=[0, 5]), "are not distinct members 0-2"),
    (lambda p: p.update(active=[2, 0]), "are not distinct members 0-2"),
    (lambda p: p["states"].pop(), "2 member states for 3 members"),
    (lambda p: p["states"][1].update(status="running"), "member 1 is running but not among"),
    (lambda p: p["states"][0].update(status="paused"), "member 0's status 'paused'"),
    (lambda p: p["states"][0].update(step="100"), "member 0's state lacks a field"),
    (lambda p: p["states"][2].update(step=150), "at different steps"),
    (lambda p: p["states"][0].update(step=10**6), "outside 0-200"),
    (lambda p: p.update(params={n: t[:1] for n, t in p["params"].items()}),
     "running members x the model's shape"),
    (lambda p: p["optimizer"].update(exp_avg={**p["optimizer"]["exp_avg"],
                                             "embed.weight": torch.zeros(3)}),
     "optimizer's exp_avg embed.weight"),
    (lambda p: p["optimizer"].update(steps=None), "no step count"),
    (lambda p: p.update(rng={"cpu": torch.zeros(3)}), "random state"),
])
def test_a_damaged_group_checkpoint_is_one_line_naming_it(group_checkpoint, edit, message):
    configs, payload, _ = group_checkpoint
    assert payload["active"] == [0, 2]  # the fixture is what the edits assume
    check_group(payload, configs, "study/fused.pt")  # the saved one is fine
    with pytest.raises(CheckpointError) as err:
        check_group(_edited(payload, edit), configs, "study/fused.pt")
    text = str(err.value)
    assert text.startswith("study/fused.pt: not a usable group checkpoint")
    assert message in text and "\n" not in text


def test_a_group_checkpoint_of_other_members_is_refused(group_checkpoint):
    configs, payload, _ = group_checkpoint
    with pytest.raises(ConfigError, match="study/fused.pt: saved for other members"):
        check_group(payload, configs[::-1], "study/fused.pt")
    # with no configs to compare, its own must load
    check_group(payload, None, "study/fused.pt")
    broken = _edited(payload, lambda p: p.update(configs=[{"model": {"d_model": -1}}]))
    with pytest.raises(CheckpointError, match="a saved config is unusable"):
        check_group(broken, None, "study/fused.pt")


def test_a_resumed_group_shows_the_members_it_had_stopped(group_checkpoint, tmp_path):
    configs, _, folder = group_checkpoint
    restored = {}
    results = train_fused(configs, resume_from=folder, on_restore=restored.update,
                          num_threads=2, compile_step=False)
    assert sorted(restored) == [0, 1, 2]
    assert restored[1]["status"] == "stopped" and restored[1]["step"] == 100
    assert restored[1]["stop_reason"] == "stopped by the caller"
    assert restored[0]["status"] == restored[2]["status"] == "running"
    assert [r["status"] for r in results] == ["completed", "stopped", "completed"]
    assert results[1]["steps"] == 100 and results[0]["steps"] == 200
