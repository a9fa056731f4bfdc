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
so; with no such copy it raises a StudyError naming the file. Ray's temporary folder is
shared by every user of the machine (its session folders are world-writable), so a
staging copy is used only if this user wrote it and nobody else could have changed it:
the file and its folders below the session folder are this user's, none a link, none
writable by others. A missing or damaged ``tuner.pkl`` (without it Tune would start the
study over) is a StudyError too.

It then checks the checkpoints that state names. With one checkpoint kept per trial, Tune
deletes a trial's previous checkpoint as soon as the trial reports a new one and saves
the state naming the new one a moment later; a driver killed in between leaves a state
naming a checkpoint that is gone, and every restore of that trial then fails ("Could not
recover from checkpoint as it does not exist on storage anymore"). The newer checkpoint
is in the trial's folder: ``check`` copies it to the name the state expects, so the trial
resumes from its newest checkpoint (its curves already hold the steps up to it). No Ray
or torch here: Tune's pickles are read as opcodes, never unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import shutil
import stat
import sys
from pathlib import Path, PurePosixPath

from addray import files
from addray.errors import StudyError

# the state files Tune reads back on a restore, one of each kind per start ("session")
KINDS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")
CHECKPOINT = re.compile(r"checkpoint_(\d+)")  # Tune's name for a trial's checkpoint folder


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
    ``experiment`` under ``ray_tmp`` that this user wrote (``trusted``)."""
    pattern = f"session_*/artifacts/*/{experiment}/driver_artifacts/{name}"
    return [p for p in sorted(ray_tmp.glob(pattern)) if trusted(p, ray_tmp)]


def trusted(path: Path, ray_tmp: Path) -> bool:
    """Whether ``path`` (under a session folder of ``ray_tmp``) and every folder between
    it and the session folder belong to this user, are no links and are writable by
    nobody else: only then did this user's Tune write it, and nobody changed it since."""
    try:
        parts = path.relative_to(ray_tmp).parts
        node = ray_tmp / parts[0]
        for part in parts[1:]:
            node = node / part
            st = os.lstat(node)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
    except (OSError, ValueError, IndexError):
        return False
    return True


RESTART = ("the study cannot resume: its finished trials stay in trials.csv, start the "
           "rest under a new --study name")


def check_restorable(tune_dir: Path, started: bool) -> None:
    """Refuse a resume that Tune would turn into a new study: ``tuner.pkl`` missing from a
    study that had ``started`` (trials on record, or Tune state beside it), or damaged."""
    pkl = tune_dir / "tuner.pkl"
    if not pkl.exists():
        if started or any(tune_dir.glob(KINDS[0])):
            raise StudyError(f"{pkl}: missing, so Tune cannot restore the study's trials "
                             f"(a resume would start them all over); {RESTART}")
        return
    if not readable(pkl):
        raise StudyError(f"{pkl}: cut short or damaged (not a whole pickle); {RESTART}")


def check(tune_dir: str | Path, ray_tmp: str | Path | None = None) -> list[str]:
    """Make sure the newest state files in ``tune_dir`` are whole before Tune restores
    them; return one line per repair made. Raises StudyError when a file is cut short
    and no whole copy of it that this user wrote is left on this machine."""
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
                f"copying it) and no whole copy of it that you wrote is left under "
                f"{ray_tmp}; {RESTART}")
        repairs += [f"{copied}: replaced by Tune's whole staging copy in {source.parent}"
                    for copied in _restore_set(source.parent, tune_dir,
                                                 session_of(path, kind))]
    state = newest(tune_dir).get(KINDS[0])
    if state is not None:
        repairs += restore_checkpoints(tune_dir, checkpoints_named(state))
    return repairs


def checkpoints_named(state: Path) -> dict[str, set[str]]:
    """Trial folder -> the checkpoint folders that Tune's experiment state ``state`` will
    restore it from, for every trial not finished there. A state Tune wrote differently
    (another Ray version) names none: it is then left to Tune."""
    try:
        entries = json.loads(state.read_bytes())["trial_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    named: dict[str, set[str]] = {}
    for entry in entries:
        try:
            trial, metadata = (json.loads(part) for part in entry)
            if trial["status"] == "TERMINATED":
                continue
            blob = bytes.fromhex(metadata["checkpoint_manager"]["value"])
            strings = [arg for _, arg, _ in pickletools.genops(blob) if isinstance(arg, str)]
        except Exception:  # noqa: BLE001 - not a trial entry as this Ray writes them
            continue
        for text in strings:  # the checkpoints' paths: <storage>/tune/<trial>/checkpoint_N
            path = PurePosixPath(text)
            if CHECKPOINT.fullmatch(path.name) and path.parent.name:
                named.setdefault(path.parent.name, set()).add(path.name)
    return named


def restore_checkpoints(tune_dir: Path, named: dict[str, set[str]]) -> list[str]:
    """Give every checkpoint in ``named`` that is gone from its trial's folder the
    contents of the newest later checkpoint there; return one line per copy. A named
    checkpoint that is gone with nothing later beside it stops the resume."""
    repairs = []
    for trial, names in sorted(named.items()):
        folder = tune_dir / trial
        if not folder.is_dir():
            continue  # a trial Tune had not started yet when the state was saved
        for name in sorted(names):
            target = folder / name
            if target.exists():
                continue
            later = [p for p in folder.iterdir()
                     if p.is_dir() and CHECKPOINT.fullmatch(p.name)
                     and index(p.name) > index(name)]
            if not later:
                raise StudyError(
                    f"{target}: Tune's saved state resumes trial {trial} from this "
                    f"checkpoint, which is gone, and no later checkpoint is beside it; "
                    f"{RESTART}")
            source = max(later, key=lambda p: index(p.name))
            partial = folder / f".{name}.copying"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(source, partial)
            os.replace(partial, target)
            repairs.append(f"{target}: Tune had deleted it for {source.name} when the "
                           f"driver stopped, before saving a state naming {source.name}; "
                           f"{source.name} copied there, so trial {trial} resumes from "
                           f"its newest checkpoint")
    return repairs


def index(name: str) -> int:
    """A checkpoint folder's number (``checkpoint_000003``: 3)."""
    return int(CHECKPOINT.fullmatch(name).group(1))


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
        raise StudyError(f"{broken[0]}: Tune's staging copy is cut short too; {RESTART}")
    replaced = []
    for source in sources:
        target = tune_dir / source.name
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        with files.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        replaced.append(target)
    return replaced
