"""The trial checkpoints a resume will read, checked before Tune reads them.

Tune restores an unfinished trial from the checkpoint its saved state names; a file
there that cannot be used fails the trial in its worker, where Tune retries it
(``--max-failures`` times, with a RayTaskError traceback each time) and then marks it
(every run of a fused trial) errored, naming the worker's temporary copy. Checked here
first, on the driver, such a file is one line naming the study's own file, and no
trial is started. A fused trial's ``fused.pt`` must be its own group's (the members in
the trial's params.json) with every field the restore reads in agreement
(``fused.check_group``); a single run's ``checkpoint.pt`` must be a whole addray
checkpoint (the trainer checks the rest against its config, as for any resume).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from addray.core import checkpoint as ckpt
from addray.core import fused
from addray.core.config import ExperimentConfig, from_dict
from addray.errors import CheckpointError
from addray.sweep import tune_state


def check(tune_dir: Path) -> int:
    """Check every checkpoint that Tune's newest saved state in ``tune_dir`` will restore
    a trial from; return how many were checked. Raises CheckpointError naming the
    first that cannot be used."""
    state = tune_state.newest(tune_dir).get(tune_state.KINDS[0])
    if state is None:
        return 0
    checked = 0
    for trial, names in sorted(tune_state.checkpoints_named(state).items()):
        grouped, members = _members(tune_dir / trial)
        for name in sorted(names):
            folder = tune_dir / trial / name
            if not folder.is_dir():
                continue  # tune_state.check has already stopped on a named one that is gone
            if not grouped:
                ckpt.load_checkpoint(folder / ckpt.FILENAME)
            else:
                path = folder / fused.FILENAME
                fused.check_group(ckpt.load_checkpoint(path), members, str(path))
            checked += 1
    return checked


def _members(trial_dir: Path) -> tuple[bool, list[ExperimentConfig] | None]:
    """Whether a trial is fused, and its members' configs from the params.json Tune
    wrote for it. Without a readable params.json a fused trial is known by its
    ``fused.pt``, and its members are left to the checkpoint's own configs (None)."""
    try:
        spec: Any = json.loads((trial_dir / "params.json").read_text())["trial"]
    except (OSError, ValueError, KeyError, TypeError):
        spec = None
    if not isinstance(spec, dict) or "members" not in spec:
        return any(trial_dir.glob(f"checkpoint_*/{fused.FILENAME}")), None
    try:
        return True, [from_dict(m["config"], source=f"{trial_dir / 'params.json'}")
                for m in spec["members"]]
    except Exception as exc:  # noqa: BLE001 - a file Tune wrote, edited by hand
        raise CheckpointError(f"{trial_dir / 'params.json'}: its members cannot be read "
                              f"({str(exc)[:160]})") from None
