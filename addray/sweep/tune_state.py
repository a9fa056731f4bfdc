"""Tune's saved experiment state in a study folder, checked before a resume.

Tune writes its state (trial statuses, the search generator's and the searcher's state)
to a staging folder on the driver's machine (under Ray's temporary folder, ``.../
session_*/artifacts/<start>/tune/driver_artifacts/``) and then copies it into the
study's ``tune/`` folder, not atomically. A driver killed during that copy leaves a file
cut short there, and ``Tuner.restore`` then logs "Failed to restore the run state" and
starts the experiment again from nothing, which a resume must never do.

``check(tune_dir)`` reads the newest file of each kind, as Tune picks them. If one is cut
short, it takes the whole set of that start's state files from the staging copy that the
cut file is the beginning of (the staging copy is written first and complete), and says
so; with no such copy it raises a StudyError naming the file. No Ray or torch here.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import shutil
import sys
from pathlib import Path

from addray import files
from addray.errors import StudyError

# the state files Tune reads back on a restore, one of each kind per start ("session")
KINDS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def readable(path: Path) -> bool:
    """Whether a state file is whole: a pickle whose opcodes run to its end (checked
    without unpickling anything), or else JSON that parses (Tune pickles
    ``search_gen_state-*.json`` despite its name)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data:
        return False
    try:
        if data[0] == pickle.PROTO[0]:  # pickles of protocol 2 and later open with PROTO
            ops = list(pickletools.genops(data))
            return ops[-1][0].name == "STOP"
        json.loads(data)
    except Exception:  # noqa: BLE001 - any parse failure means the file is not whole
        return False
    return True


def newest(tune_dir: Path) -> dict[str, Path]:
    """The newest file of each kind, by name (names end in the start's time), as Tune
    picks them on a restore."""
    found = {}
    for kind in KINDS:
        candidates = sorted(tune_dir.glob(kind))
        if candidates:
            found[kind] = candidates[-1]
    return found


def ray_temp_dir() -> Path:
    """Where Ray keeps its sessions on this machine (Ray's own rule: RAY_TMPDIR, else
    TMPDIR on Linux, else /tmp; then ``ray``)."""
    root = os.environ.get("RAY_TMPDIR")
    if not root and sys.platform.startswith("linux"):
        root = os.environ.get("TMPDIR")
    return Path(root or "/tmp") / "ray"


def staging_copies(name: str, experiment: str, ray_tmp: Path) -> list[Path]:
    """Files called ``name`` in the staging folders of Tune experiments called
    ``experiment`` under ``ray_tmp``."""
    pattern = f"session_*/artifacts/*/{experiment}/driver_artifacts/{name}"
    return sorted(ray_tmp.glob(pattern))


def check(tune_dir: str | Path, ray_tmp: str | Path | None = None) -> list[str]:
    """Make sure the newest state files in ``tune_dir`` are whole before Tune restores
    them; return one line per repair made. Raises StudyError when a file is cut short
    and no whole copy of it is left on this machine."""
    tune_dir = Path(tune_dir)
    ray_tmp = Path(ray_tmp) if ray_tmp is not None else ray_temp_dir()
    repairs = []
    for kind, path in newest(tune_dir).items():
        if readable(path):
            continue
        source = _whole_copy(path, tune_dir.name, ray_tmp)
        if source is None:
            raise StudyError(
                f"{path}: Tune's saved state is cut short (the driver was stopped while "
                f"copying it) and no whole copy is left under {ray_tmp}; the study cannot "
                f"resume: its finished trials stay in trials.csv, start the rest under a "
                f"new --study name")
        repairs += [f"{copied}: replaced by Tune's whole staging copy in {source.parent}"
                    for copied in _restore_set(source.parent, tune_dir,
                                                 session_of(path, kind))]
    return repairs


def session_of(path: Path, kind: str) -> str:
    """The start time a state file of ``kind`` is named by (``experiment_state-<start>.json``
    for ``experiment_state-*.json``)."""
    head, tail = kind.split("*")
    return path.name[len(head):len(path.name) - len(tail)]


def _whole_copy(path: Path, experiment: str, ray_tmp: Path) -> Path | None:
    """A whole staging copy that the cut-short ``path`` is the beginning of."""
    cut = path.read_bytes() if path.exists() else b""
    for candidate in staging_copies(path.name, experiment, ray_tmp):
        if readable(candidate) and candidate.read_bytes().startswith(cut):
            return candidate
    return None


def _restore_set(staging: Path, tune_dir: Path, session: str) -> list[Path]:
    """Copy every state file of one start from its staging folder (written together, so
    they agree with each other); return the files replaced. A file of the set that is
    not whole in staging either stops the repair."""
    names = [kind.replace("*", session) for kind in KINDS]
    sources = [staging / n for n in names if (staging / n).exists()]
    broken = [s for s in sources if not readable(s)]
    if broken:
        raise StudyError(f"{broken[0]}: Tune's staging copy is cut short too; the study "
                         f"cannot resume: start the rest under a new --study name")
    replaced = []
    for source in sources:
        target = tune_dir / source.name
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        with files.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        replaced.append(target)
    return replaced
