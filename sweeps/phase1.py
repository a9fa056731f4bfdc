"""Phase 1, size scaling: how exact match grows with the number of parameters.

    python sweeps/phase1.py --help
    python sweeps/phase1.py --gpus 1                  # the scaling study on one GPU
    python sweeps/phase1.py --configs laptop          # its CPU version, ~6 min on 2 AVX-512 cores
    python sweeps/phase1.py --configs laptop-long     # a longer CPU study, 20-60 min
    python sweeps/phase1.py --configs reference       # the reference's four, as published
"""

from pathlib import Path

from addray.sweep.cli import Preset

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
REFERENCE = [str(CONFIGS / f"phase1_{n}.yaml") for n in ("upper", "middle", "lower", "tiny")]
SIZES = [str(CONFIGS / "sizes" / f"phase1_{n}.yaml") for n in ("2k", "8k", "15k", "67k")]
# one recipe for every size (the reference's batch sizes differ 8-fold): batch 256,
# 10,000 steps (2.56M examples), no dropout; the learning rate is swept per size
RECIPE = {"training.batch_size": 256, "training.max_steps": 10_000,
          "training.check_every": 500, "training.warmup_steps": 500, "model.dropout": 0.0}
# the grid: upper was best at 1e-3 and unstable above, middle and lower best at 3e-3,
# tiny at 1e-2 (one H100, reference batch sizes); the small sizes of phase 3 near 1e-2
LRS = [1e-3, 3e-3, 1e-2]
# the CPU version (the README's main job): five sizes from 2.4K to 32K parameters, four
# of them across the rise (2.4K-7.9K), 3,000 steps (768K examples), three seeds (32K: one). Each
# size's rates are screened on its first seed and its other two seeds run at the rate
# that ended best there (a rate's curve under a cosine schedule rises late, so no rate is
# judged before its end); a rung at 1,000 steps stops only runs still below 0.2%. The
# 300 s time budget is a safety net that the summary reports when it fires.
# largest first: its seeds, the longest trials, do not wait at the end for a free core
LAPTOP_CONFIGS = [REFERENCE[3]] + [str(CONFIGS / "sizes" / f"phase1_{n}.yaml")
                                   for n in ("8k", "5k", "3k", "2k")]
LAPTOP = {**RECIPE, "training.max_steps": 3000, "training.check_every": 1000,
          "training.warmup_steps": 300, "training.time_budget_s": 300}
# each size's two rates: of the three around its best in the pilot runs (seed 0,
# results/reference/laptop_pilot/; docs/LOG.md, 2026-12-03; small sizes want large rates),
# the two that ended best in three laptop studies (two seed sets, two CPUs); the third
# never did, and leaving it out gave each study the same N50 and interval with 0.8x the
# training (benchmarks/RESULTS.md, "Where a laptop trial's time goes")
# 32K (the reference's tiny model) sits on the plateau, far above N50: one run at the rate
# that ended best in two of the three studies; the recorded studies give the same N50 and
# nearly the same interval without its other three runs, a fifth of the training
# (benchmarks/RESULTS.md, "The laptop study made cheaper")
LAPTOP_LRS = {"phase1_2k": [4e-2, 8e-2], "phase1_3k": [2e-2, 4e-2], "phase1_5k": [4e-2, 8e-2],
              "phase1_8k": [4e-2, 8e-2], "phase1_tiny": [1e-2]}
LAPTOP_SEEDS = {"phase1_tiny": 1}

# the earlier CPU version, for those with time: the five sizes up to 163K, 4,000 steps,
# two seeds, lr 1e-3 to 3e-2 (a pilot with 3e-3, 1e-2 and 3e-2 put lower, tiny and 8k at
# the grid's lower edge, so 1e-3 was added), ASHA within each config
LAPTOP_LONG = {**RECIPE, "training.max_steps": 4000, "training.check_every": 500,
               "training.warmup_steps": 300, "training.time_budget_s": 900}
LAPTOP_LONG_LRS = [1e-3, 3e-3, 1e-2, 3e-2]

PRESETS = {
    "sizes": Preset(REFERENCE + SIZES, "eight sizes, 2.4K to 4.8M parameters (the "
                    "reference's four and four below), at lr 1e-3, 3e-3, 1e-2, one recipe",
                    lrs=LRS, overrides=RECIPE, compare="config", seeds_gpu=3),
    "laptop": Preset(LAPTOP_CONFIGS, "five sizes, 2.4K to 32K parameters, 3,000 steps, two "
                     "rates a size and 3 seeds at its best (32K: one run): the CPU version "
                     "(about 6 minutes on 2 AVX-512 cores)", config_lrs=LAPTOP_LRS,
                     overrides=LAPTOP, compare="config", seeds_gpu=3, seeds_cpu=3,
                     config_seeds_cpu=LAPTOP_SEEDS, screen=True, floor=0.002, grace_period=1),
    "laptop-long": Preset(SIZES[:3] + REFERENCE[2:], "the five sizes up to 163K, 4,000 "
                          "steps, lr 1e-3 to 3e-2, 2 seeds: the longer CPU study",
                          lrs=LAPTOP_LONG_LRS, overrides=LAPTOP_LONG, compare="config",
                          seeds_gpu=2, seeds_cpu=2),
    "reference": Preset(REFERENCE, "the reference's four configs as published (lr 1e-4, "
                        "batch 256 to 2048, dropout 0.1)"),
}

if __name__ == "__main__":
    from addray.sweep.cli import run

    run("phase1", PRESETS, "Phase 1 (size scaling): one Ray Tune trial per config x "
        "learning rate x seed; weak learning rates of each config pruned on a fair clock.")
