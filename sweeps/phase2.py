"""Phase 2, width vs depth at equal size: four shapes of ~1.6M parameters, 2 to 16 layers.

    python sweeps/phase2.py --help
    python sweeps/phase2.py --gpus 1                  # the matched study on one GPU
    python sweeps/phase2.py --configs laptop          # a ~44K-parameter version for a CPU
    python sweeps/phase2.py --configs reference       # 512d-2L, 256d-4L, 128d-8L as published
"""

from pathlib import Path

from addray.sweep.cli import Preset

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
REFERENCE = [str(CONFIGS / f"phase2_{n}.yaml") for n in ("wide", "balanced", "deep")]
MATCHED = [str(CONFIGS / "matched" / f"phase2_{n}.yaml") for n in ("2l", "4l", "8l", "16l")]
SMALL = [str(CONFIGS / "matched_small" / f"phase2_small_{n}.yaml")
         for n in ("2l", "4l", "8l", "16l")]
RECIPE = {"training.batch_size": 256, "training.max_steps": 10_000,
          "training.check_every": 500, "training.warmup_steps": 500, "model.dropout": 0.0}
# at 4,000 steps 2L and 4L did better at 1e-2 than at 3e-3 on every seed (a first run
# with those two rates, stopped after them): 3e-2 brackets the grid from above
# (docs/LOG.md)
LAPTOP = {**RECIPE, "training.max_steps": 4000, "training.warmup_steps": 300,
          "training.time_budget_s": 1200}

PRESETS = {
    "matched": Preset(MATCHED, "256d-2L, 180d-4L, 128d-8L, 90d-16L, 1.59M-1.63M parameters, "
                      "at lr 1e-3, 3e-3, 1e-2, one recipe", lrs=[1e-3, 3e-3, 1e-2],
                      overrides=RECIPE, compare="config", seeds_gpu=3),
    "laptop": Preset(SMALL, "38d-2L, 28d-4L, 20d-8L, 14d-16L (one head), 43.6K-45.0K "
                     "parameters, 4,000 steps, lr 3e-3, 1e-2, 3e-2, 3 seeds: the CPU version",
                     lrs=[3e-3, 1e-2, 3e-2], overrides=LAPTOP, compare="config", seeds_gpu=3,
                     seeds_cpu=3),
    "reference": Preset(REFERENCE, "the reference's three configs as published (6.41M, "
                        "3.21M, 1.61M parameters)"),
}

if __name__ == "__main__":
    from addray.sweep.cli import run

    run("phase2", PRESETS, "Phase 2 (width vs depth): one Ray Tune trial per config x "
        "learning rate x seed; each shape compared at its best learning rate, over seeds.")
