import math

import pytest
import torch

from addray.core import strata, trainer
from addray.core.batches import TokenizedSet
from addray.core.checkpoint import load_checkpoint
from addray.core.config import FineTuneConfig, SchedulerConfig, TrainingConfig
from addray.core.data import make_dataset
from addray.core.model import Transformer
from addray.core.tokens import Vocab
from addray.core.trainer import lr_at, train
from addray.errors import ConfigError, DeviceError
from tests.conftest import small_config


def test_lr_schedule_phases():
    t = TrainingConfig(learning_rate=1e-3, warmup_steps=100, max_steps=1100)
    s = SchedulerConfig(eta_min=1e-5)
    assert lr_at(0, t, s) == pytest.approx(1e-5)  # 1) warmup starts at lr / warmup
    assert lr_at(49, t, s) == pytest.approx(0.5e-3)
    assert lr_at(100, t, s) == pytest.approx(1e-3)  # 2) cosine starts at the peak
    assert lr_at(600, t, s) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(1100, t, s) == pytest.approx(1e-5)  # and ends at eta_min
    assert lr_at(5000, t, s) == pytest.approx(1e-5)


def test_fine_tune_restarts_the_schedule_for_its_last_steps():
    s = SchedulerConfig(eta_min=1e-5)
    plain = TrainingConfig(learning_rate=1e-2, warmup_steps=100, max_steps=1000)
    tuned = TrainingConfig(learning_rate=1e-2, warmup_steps=100, max_steps=1500,
                           fine_tune=FineTuneConfig(steps=500, learning_rate=1e-3))
    assert trainer.fine_tune_start(tuned) == 1000 and trainer.fine_tune_start(plain) is None
    # before it: the schedule of a run of max_steps - steps steps, step for step
    assert [lr_at(i, tuned, s) for i in range(1000)] == [lr_at(i, plain, s) for i in range(1000)]
    assert lr_at(999, tuned, s) == pytest.approx(1e-5, rel=0.01)  # the first stage ends
    assert lr_at(1000, tuned, s) == pytest.approx(1e-5)  # warms up again: 1e-3 / 100
    assert lr_at(1049, tuned, s) == pytest.approx(0.5e-3)
    assert lr_at(1100, tuned, s) == pytest.approx(1e-3)  # to its own peak
    assert lr_at(1300, tuned, s) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(1500, tuned, s) == pytest.approx(1e-5)


@pytest.mark.slow
def test_fine_tune_continues_a_finished_run_as_if_trained_through(tmp_path):
    steps = {"max_steps": 30, "check_every": 10, "compile": "off"}
    first = small_config(training=steps, data={"carry_share": 0.0})
    tuned = small_config(training={**steps, "max_steps": 50,
                                   "fine_tune": {"steps": 20, "learning_rate": 3e-3,
                                                 "carry_share": 0.5}},
                         data={"carry_share": 0.0})
    through = train(tuned, checkpoint_dir=tmp_path / "through", num_threads=1)
    train(first, checkpoint_dir=tmp_path / "part", num_threads=1)
    resumed = train(tuned, checkpoint_dir=tmp_path / "part", resume_from=tmp_path / "part",
                    num_threads=1)
    assert [m["step"] for m in resumed["history"]] == [10, 20, 30, 40, 50]
    losses = [[m["train_loss"] for m in r["history"]] for r in (through, resumed)]
    assert losses[0] == losses[1]
    a = load_checkpoint(tmp_path / "through")["model"]
    b = load_checkpoint(tmp_path / "part")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the stage trains on other pairs (carry_share 0.5) with Adam's moments reset: without
    # those the same schedule ends elsewhere
    same_data = small_config(training={**steps, "max_steps": 50,
                                       "fine_tune": {"steps": 20, "learning_rate": 3e-3}},
                             data={"carry_share": 0.0})
    other = train(same_data, num_threads=1)["history"]
    assert [m["train_loss"] for m in other][:3] == losses[0][:3]
    assert [m["train_loss"] for m in other][3:] != losses[0][3:]


@pytest.mark.slow
def test_fine_tune_hard_share_resumes_inside_the_stage_as_if_trained_through(tmp_path):
    steps = {"max_steps": 50, "check_every": 10, "compile": "off"}
    tuned = small_config(training={**steps, "fine_tune": {"steps": 30, "hard_share": 0.5}})
    through = train(tuned, checkpoint_dir=tmp_path / "through", num_threads=1)

    class Stop(Exception):
        pass

    def stop_at_40(m):  # a crash after the stage's second evaluation
        if m["step"] == 40:
            raise Stop

    with pytest.raises(Stop):
        train(tuned, checkpoint_dir=tmp_path / "part", num_threads=1, report=stop_at_40)
    resumed = train(tuned, checkpoint_dir=tmp_path / "part", resume_from=tmp_path / "part",
                    num_threads=1)
    losses = [[m["train_loss"] for m in r["history"]] for r in (through, resumed)]
    assert [m["step"] for m in resumed["history"]] == [10, 20, 30, 40, 50]
    assert losses[0] == losses[1]
    a = load_checkpoint(tmp_path / "through")["model"]
    b = load_checkpoint(tmp_path / "part")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the stage's batches are other batches than without hard pairs; the steps before it
    # are the same
    plain = small_config(training={**steps, "fine_tune": {"steps": 30}})
    other = [m["train_loss"] for m in train(plain, num_threads=1)["history"]]
    assert other[:2] == losses[0][:2] and other[2:] != losses[0][2:]


def test_fine_tune_starts_adam_afresh(tmp_path):
    cfg = small_config(training={"max_steps": 30, "check_every": 10, "compile": "off",
                                 "fine_tune": {"steps": 10}})
    train(cfg, checkpoint_dir=tmp_path, num_threads=1)
    steps = {float(v["step"]) for v in load_checkpoint(tmp_path)["optimizer"]["state"].values()}
    assert steps == {10.0}  # the moments count the stage's 10 steps, not the run's 30


def test_fine_tune_carry_share_changes_only_the_training_pairs():
    cfg = small_config(training={"max_steps": 20, "fine_tune": {"steps": 5,
                                                                "carry_share": 0.5}})
    base = TokenizedSet(make_dataset(cfg.data).train, Vocab(cfg.data.base))
    tuned = trainer._fine_tune_set(cfg, base)
    assert len(tuned) == len(base) and tuned is not base
    changed = sum(not torch.equal(tuned.batch(torch.tensor([i]))[0],
                                  base.batch(torch.tensor([i]))[0]) for i in range(len(base)))
    # about half the pairs (those carry_edge may change within operands 0..99)
    assert 0.2 * len(base) < changed < 0.6 * len(base)
    unchanged = small_config(training={"max_steps": 20, "fine_tune": {"steps": 5}})
    assert trainer._fine_tune_set(unchanged, base) is base


def test_batch_order_is_a_function_of_step():
    a = trainer.batch_indices(7, 1000, 64, seed=3)
    b = trainer.batch_indices(20, 1000, 64, seed=3)  # another epoch in between
    assert torch.equal(trainer.batch_indices(7, 1000, 64, seed=3), a)
    assert len(set(a.tolist())) == 64 and not torch.equal(a, b)
    # one epoch (15 full batches) covers distinct examples
    epoch = torch.cat([trainer.batch_indices(s, 1000, 64, seed=3) for s in range(15)])
    assert len(set(epoch.tolist())) == 15 * 64


@pytest.mark.slow
def test_learns_addition_on_held_out_pairs(trained_small):
    result = trained_small["result"]
    # greedy exact match on 1,000 pairs never seen in training
    assert result["final_exact_match"] >= 0.95, result["history"]
    assert result["status"] == "completed"
    # exact match must have grown from the untrained model's near-zero
    assert result["history"][0]["exact_match"] < result["final_exact_match"]


def test_report_gets_every_evaluation(trained_small):
    history = trained_small["result"]["history"]
    steps = trained_small["config"].training.max_steps
    assert [m["step"] for m in history] == list(range(1000, steps + 1, 1000))
    for key in ("step", "examples", "flops", "train_loss", "eval_loss", "exact_match",
                "token_accuracy", "worst_stratum", "carry_boundary", "edge_cases", "lr",
                "examples_per_s"):
        assert all(math.isfinite(m[key]) for m in history), key
    last = history[-1]
    assert last["examples"] == steps * 128
    assert last["flops"] > 6 * last["params"] * last["examples"]
    # every stratum of operands 0..99 in base 10 is reported, and the worst is their minimum
    assert len(last["strata"]) == 8
    assert last["worst_stratum"] == min(r / n for r, n in last["strata"].values())
    assert 0 <= last["edge_cases"] <= 1 and isinstance(last["learned"], bool)
    assert 0 <= last["carry_boundary"] <= 1
    assert last["learned"] == strata.learned(last["exact_match"], last["worst_stratum"],
                                             last["edge_cases"], last["carry_boundary"])


def test_checkpoint_holds_everything_to_resume(trained_small):
    payload = load_checkpoint(trained_small["dir"])
    assert {"model", "optimizer", "scheduler", "rng", "state", "config"} <= set(payload)
    assert payload["state"]["step"] == trained_small["config"].training.max_steps
    assert payload["config"] == trained_small["config"].to_dict()


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path):
    # dropout on, so that restoring the RNG state matters
    cfg = small_config(model={"dropout": 0.1}, training={"max_steps": 40, "check_every": 10})
    full = train(cfg, checkpoint_dir=tmp_path / "full", num_threads=1)

    def crash_at_20(metrics):
        if metrics["step"] == 20:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, checkpoint_dir=tmp_path / "part", report=crash_at_20, num_threads=1)
    assert load_checkpoint(tmp_path / "part")["state"]["step"] == 20
    resumed = train(cfg, checkpoint_dir=tmp_path / "part", resume_from=tmp_path / "part",
                    num_threads=1)
    assert resumed["steps"] == 40
    strip = [{k: v for k, v in m.items() if k not in ("examples_per_s", "elapsed_s")}
             for m in full["history"]]
    assert [{k: v for k, v in m.items() if k not in ("examples_per_s", "elapsed_s")}
            for m in resumed["history"]] == strip
    a = load_checkpoint(tmp_path / "full")["model"]
    b = load_checkpoint(tmp_path / "part")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_rejects_other_architecture(tmp_path):
    train(small_config(training={"max_steps": 10}), checkpoint_dir=tmp_path, num_threads=1)
    other = small_config(model={"d_model": 64}, training={"max_steps": 10})
    with pytest.raises(ConfigError, match="saved model settings differ"):
        train(other, resume_from=tmp_path, num_threads=1)


def test_early_stopping_on_patience():
    # min_delta 1.0 can never be met after the first evaluation: stop at the second
    cfg = small_config(training={"max_steps": 100, "check_every": 10,
                                 "early_stopping": {"patience": 1, "min_delta": 1.0}})
    result = train(cfg, num_threads=1)
    assert result["status"] == "early_stopped" and result["steps"] == 20
    assert "no gain" in result["stop_reason"]


def test_a_perfect_held_out_score_does_not_skip_the_fine_tune(monkeypatch):
    real = trainer.evaluate

    def perfect(*args, **kwargs):
        return {**real(*args, **kwargs), "exact_match": 1.0}

    monkeypatch.setattr(trainer, "evaluate", perfect)
    steps = {"max_steps": 40, "check_every": 10, "compile": "off"}
    plain = train(small_config(training=steps), num_threads=1)
    assert plain["status"] == "early_stopped" and plain["steps"] == 10
    # the first stage ends at step 20; 1.0 there and before it does not stop the run,
    # the first evaluation inside the fine-tune does
    tuned = train(small_config(training={**steps, "fine_tune": {"steps": 20}}), num_threads=1)
    assert [m["step"] for m in tuned["history"]] == [10, 20, 30]
    assert tuned["status"] == "early_stopped" and tuned["stop_reason"] == (
        "exact_match reached 1.0")


def test_non_finite_loss_ends_as_diverged(monkeypatch):
    class Exploding(trainer.Transformer):
        def forward(self, idx):
            return super().forward(idx) * float("inf")

    monkeypatch.setattr(trainer, "Transformer", Exploding)
    result = train(small_config(training={"max_steps": 30, "check_every": 10}), num_threads=1)
    assert result["status"] == "diverged" and result["steps"] == 10


def test_threads_follow_the_cpus_given():
    result = train(small_config(training={"max_steps": 2, "check_every": 2}), num_threads=1)
    assert result["threads"] == 1 and result["device"] == "cpu"


def test_cuda_request_without_cuda_is_a_device_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        train(small_config(training={"device": "cuda"}))


def test_rung_evaluations_are_reported_but_leave_patience_alone():
    # a 100-example rung falls inside step 1 (batch 128): evaluated at steps 1 and 8 too
    cfg = small_config(training={"max_steps": 30, "check_every": 10,
                                 "early_stopping": {"patience": 1, "min_delta": 1.0}})
    result = train(cfg, num_threads=1, rungs=("examples", [100, 1000]))
    assert [m["step"] for m in result["history"]] == [1, 8, 10, 20]
    # patience 1 with an unreachable min_delta: stops at the 2nd regular evaluation (20),
    # not at the 2nd evaluation overall (8)
    assert result["status"] == "early_stopped" and result["steps"] == 20


def _plain_loop(cfg, steps):
    """Today's training step written out by hand: eager, AdamW, clip, cosine."""
    torch.manual_seed(cfg.training.seed)
    ds = make_dataset(cfg.data)
    train_set = TokenizedSet(ds.train, Vocab(cfg.data.base))
    model = Transformer(cfg.model)
    opt = trainer.make_optimizer(model, cfg, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_at(s, cfg.training, cfg.scheduler) / cfg.training.learning_rate)
    losses = []
    for step in range(steps):
        idx = trainer.batch_indices(step, len(train_set), cfg.training.batch_size,
                                    cfg.training.seed)
        x, y = train_set.batch(idx)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                 y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses, model.state_dict()


def test_compile_off_is_bit_identical_to_the_plain_eager_step(tmp_path):
    cfg = small_config(model={"dropout": 0.1}, training={"max_steps": 6, "check_every": 1,
                                                         "compile": "off"})
    losses, weights = _plain_loop(cfg, 6)
    result = train(cfg, checkpoint_dir=tmp_path, num_threads=1)
    assert [m["train_loss"] for m in result["history"]] == losses
    saved = load_checkpoint(tmp_path)["model"]
    assert all(torch.equal(saved[k], weights[k]) for k in weights)


def test_padding_to_a_fixed_length_changes_no_loss_or_exact_match():
    # padding is PAD in the inputs and ignored in the labels; attention is causal
    a = train(small_config(training={"max_steps": 20, "check_every": 10}), num_threads=1)
    b = train(small_config(training={"max_steps": 20, "check_every": 10, "pad_to": 16}),
              num_threads=1)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
        assert x["exact_match"] == y["exact_match"]
        assert x["eval_loss"] == pytest.approx(y["eval_loss"], rel=1e-5)


@pytest.mark.slow
def test_compiled_step_matches_the_eager_step_and_resumes(tmp_path):
    # torch.compile on the CPU (as on CUDA, without CUDA graphs): same losses as eager
    # within float tolerance, and a resumed compiled run keeps its step count and data
    eager = train(small_config(training={"max_steps": 8, "check_every": 2, "compile": "off"}),
                  num_threads=1)
    cfg = small_config(training={"max_steps": 8, "check_every": 2, "compile": "on"})

    def stop_at_4(metrics):
        if metrics["step"] == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, checkpoint_dir=tmp_path, report=stop_at_4, num_threads=1)
    resumed = train(cfg, checkpoint_dir=tmp_path, resume_from=tmp_path, num_threads=1)
    assert resumed["compiled"] and resumed["steps"] == 8
    got = [m["train_loss"] for m in resumed["history"]]
    want = [m["train_loss"] for m in eager["history"]]
    assert [m["step"] for m in resumed["history"]] == [2, 4, 6, 8]
    assert got == pytest.approx(want, rel=2e-3)


def test_batch_larger_than_training_set_is_an_error():
    cfg = small_config(training={"batch_size": 9000})
    with pytest.raises(ConfigError, match="training.batch_size = 9000"):
        train(cfg, num_threads=1)


def test_time_budget_stops_with_a_final_evaluation():
    cfg = small_config(training={"max_steps": 100_000, "check_every": 100_000,
                                 "time_budget_s": 2.0})
    result = train(cfg, num_threads=1)
    assert result["status"] == "time_limit" and 0 < result["steps"] < 100_000
    # the stop is evaluated and reported like any other evaluation
    assert result["history"][-1]["step"] == result["steps"]
    assert result["history"][-1]["stop_reason"] == "time budget of 2 s"


def test_precision_reaches_the_training_step_and_evaluation():
    # bfloat16 asked for on the CPU runs the step and the evaluation under bf16
    # autocast: losses move off the float32 run's, which auto (on the CPU) equals
    cfg = {"max_steps": 4, "check_every": 2}
    runs = {p: train(small_config(training={**cfg, "precision": p}), num_threads=1)["history"]
            for p in ("auto", "float32", "bfloat16")}
    assert [m["train_loss"] for m in runs["auto"]] == [m["train_loss"] for m in runs["float32"]]
    assert [m["eval_loss"] for m in runs["auto"]] == [m["eval_loss"] for m in runs["float32"]]
    assert runs["bfloat16"][0]["train_loss"] != runs["float32"][0]["train_loss"]
    assert runs["bfloat16"][-1]["eval_loss"] != runs["float32"][-1]["eval_loss"]


def test_weight_decay_from_turns_decay_on_at_its_fraction_of_the_steps():
    cfg = small_config(optimizer={"weight_decay": 0.5, "weight_decay_from": 0.5},
                       training={"max_steps": 8})
    assert [trainer.weight_decay_at(s, cfg) for s in (0, 3, 4, 7)] == [0.0, 0.0, 0.5, 0.5]
    # the first four updates equal a run without decay; from the fifth on they differ
    steps = {"max_steps": 8, "check_every": 1, "compile": "off"}
    late = train(small_config(optimizer={"weight_decay": 0.5, "weight_decay_from": 0.5},
                              training=steps), num_threads=1)["history"]
    none = train(small_config(optimizer={"weight_decay": 0.0}, training=steps),
                 num_threads=1)["history"]
    losses = [[m["train_loss"] for m in h] for h in (late, none)]
    assert losses[0][:5] == losses[1][:5]  # the loss of step 5 comes before its update
    assert losses[0][5:] != losses[1][5:]
    assert all(a != b for a, b in zip(losses[0][5:], losses[1][5:], strict=True))


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("decay_embeddings", [True, False])
def test_decay_embeddings_false_keeps_the_embedding_out_of_weight_decay(tied, decay_embeddings):
    cfg = small_config(optimizer={"weight_decay": 0.5, "decay_embeddings": decay_embeddings},
                       model={"tie_embeddings": tied})
    model = Transformer(cfg.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = trainer.make_optimizer(model, cfg, torch.device("cpu"))
    # a zero gradient on every tensor: AdamW's step is then its decay alone
    (sum(p.sum() for p in model.parameters()) * 0.0).backward()
    opt.step()
    shrink = 1 - cfg.training.learning_rate * 0.5
    for name, p in model.named_parameters():
        embedding = name == "embed.weight"
        decayed = p.dim() >= 2 and (decay_embeddings or not embedding)
        torch.testing.assert_close(p.detach(), before[name] * (shrink if decayed else 1.0),
                                   msg=name)
    assert tied == (model.head.weight is model.embed.weight)
