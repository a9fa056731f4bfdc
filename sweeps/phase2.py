"""Phase 2, width vs depth: 512d-2L, 256d-4L and 128d-8L.

    python sweeps/phase2.py --help
"""

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PHASE2 = [str(CONFIGS / f"phase2_{name}.yaml") for name in ("wide", "balanced", "deep")]

if __name__ == "__main__":
    from addray.sweep_cli import run

    run("phase2", PHASE2, "Phase 2 (width vs depth): one Ray Tune trial per config x seed x "
        "learning rate, pruned by ASHA and early stopping.")
