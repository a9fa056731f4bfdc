"""What the reference experiment claims (../shared/reference/addition-task-reference.md).

Quoted as published, so the report can set measured numbers beside them. None of
these values is used for training.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    phase: int
    d_model: int
    n_layers: int
    params: int  # as the reference states it (the real counts differ, AUDIT item 3)
    exact_match: float  # fraction; "~0%" is recorded as 0.0
    gpu_hours: float  # A100-80GB hours


CLAIMS: dict[str, Claim] = {
    "phase1_upper": Claim(1, 256, 6, 3_180_000, 0.915, 8.0),
    "phase1_middle": Claim(1, 192, 4, 1_400_000, 0.7931, 5.0),
    "phase1_lower": Claim(1, 64, 3, 253_000, 0.376, 2.0),
    "phase1_tiny": Claim(1, 32, 2, 77_000, 0.0, 1.0),
    "phase2_wide": Claim(2, 512, 2, 1_050_000, 0.872, 4.0),
    "phase2_balanced": Claim(2, 256, 4, 1_310_000, 0.7931, 5.0),
    "phase2_deep": Claim(2, 128, 8, 1_020_000, 0.718, 4.0),
}
TOTAL_GPU_HOURS = 29.0
MINIMUM_VIABLE_PARAMS = 250_000  # "Minimum viable size is ~250K params"
WIDTH_BEATS_DEPTH = ("phase2_wide", "phase2_deep", 0.154)  # "512d-2L beats 128d-8L by 15.4%"
