"""Phase 1, size scaling: the reference's upper, middle, lower and tiny configs.

    python sweeps/phase1.py --help
"""

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PHASE1 = [str(CONFIGS / f"phase1_{name}.yaml") for name in ("upper", "middle", "lower", "tiny")]

if __name__ == "__main__":
    from addray.sweep_cli import run

    run("phase1", PHASE1, "Phase 1 (size scaling): one Ray Tune trial per config x seed x "
        "learning rate, pruned by ASHA and early stopping.")
