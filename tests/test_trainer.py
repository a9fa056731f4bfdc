import math

import pytest
import torch

from addray import trainer
from addray.checkpoint import load_checkpoint
from addray.config import ConfigError, SchedulerConfig, TrainingConfig
from addray.trainer import lr_at, train
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


def test_batch_order_is_a_function_of_step():
    a = trainer.batch_indices(7, 1000, 64, seed=3)
    b = trainer.batch_indices(20, 1000, 64, seed=3)  # another epoch in between
    assert torch.equal(trainer.batch_indices(7, 1000, 64, seed=3), a)
    assert len(set(a.tolist())) == 64 and not torch.equal(a, b)
    # one epoch (15 full batches) covers distinct examples
    epoch = torch.cat([trainer.batch_indices(s, 1000, 64, seed=3) for s in range(15)])
    assert len(set(epoch.tolist())) == 15 * 64


def test_learns_addition_on_held_out_pairs(trained_small):
    result = trained_small["result"]
    # greedy exact match on 1,000 pairs never seen in training
    assert result["final_exact_match"] >= 0.95, result["history"]
    assert result["steps"] == 3000 and result["status"] == "completed"
    # exact match must have grown from the untrained model's near-zero
    assert result["history"][0]["exact_match"] < result["final_exact_match"]


def test_report_gets_every_evaluation(trained_small):
    history = trained_small["result"]["history"]
    assert [m["step"] for m in history] == [1000, 2000, 3000]
    for key in ("step", "train_loss", "eval_loss", "exact_match", "token_accuracy", "lr",
                "examples_per_s"):
        assert all(math.isfinite(m[key]) for m in history), key


def test_checkpoint_holds_everything_to_resume(trained_small):
    payload = load_checkpoint(trained_small["dir"])
    assert {"model", "optimizer", "scheduler", "rng", "state", "config"} <= set(payload)
    assert payload["state"]["step"] == 3000
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


def test_cuda_request_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(small_config(training={"device": "cuda"}))


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
    assert result["train_seconds"] < 10
