"""Checkpoint files: written atomically, checked on load."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from addray.core.config import ExperimentConfig, from_dict
from addray.core.model import Transformer
from addray.errors import CheckpointError, ConfigError
from addray.files import atomic_path

FORMAT = "addray-checkpoint-1"
FILENAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        try:
            torch.save({**payload, "format": FORMAT}, tmp)
        except RuntimeError as exc:  # torch's zip writer says "file write failed", no errno
            raise write_failed(tmp, exc) from None
    return path


def write_failed(path: Path, exc: Exception) -> OSError:
    """torch.save's failure as the OSError it is: a full disk when the disk is full."""
    try:
        full = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize < 1 << 20
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, f"{os.strerror(code)} (torch.save: "
                         f"{(str(exc).splitlines() or [''])[0][-80:]})", str(path))


# torch.save stores a checkpoint's entries uncompressed, so they fit in the file; a
# compressed entry is not its file and could unpack to far more (a zip bomb)


def _check_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        return  # not torch's zip format: torch.load refuses it (or reads a legacy file)
    try:
        entries = zipfile.ZipFile(path).infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not an addray checkpoint ({exc})") from None
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries):
        raise CheckpointError(f"{path}: not an addray checkpoint (compressed entries: "
                              f"torch.save stores them uncompressed)")
    if sum(e.file_size for e in entries) > path.stat().st_size:
        raise CheckpointError(f"{path}: not an addray checkpoint (its entries claim more "
                              f"bytes than the file holds)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    _check_archive(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not its format
        first = (str(exc).splitlines() or [""])[0][:120]
        raise CheckpointError(f"{path}: not an addray checkpoint "
                              f"({type(exc).__name__}: {first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an addray checkpoint (no '{FORMAT}' marker)")
    return payload


def config_of(payload: dict[str, Any], source: str) -> ExperimentConfig:
    """The config a checkpoint was trained with. Checkpoints saved before data.sampling
    existed were trained on uniform pairs (today's default is balanced)."""
    try:
        raw = dict(payload["config"])
        raw["data"] = {"sampling": "uniform", **(raw.get("data") or {})}
        return from_dict(raw, source=f"{source} (saved config)")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{source}: saved config is unusable: "
                              f"{str(exc)[:200]}") from None


def load_weights(model: torch.nn.Module, payload: dict[str, Any], source: str) -> None:
    """Load the saved weights; a state dict that does not fit the config is one line."""
    try:
        if not isinstance(payload["model"], dict):
            raise TypeError(f"weights saved as a {type(payload['model']).__name__}, "
                            f"not a state dict")
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        first = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(f"{source}: saved weights do not match its saved config "
                              f"({first})") from None


def load_model(path: str | Path,
               device: str | torch.device = "cpu") -> tuple[Transformer, ExperimentConfig]:
    """Rebuild the model saved in a checkpoint, in eval mode, on ``device``."""
    payload = load_checkpoint(path, map_location=device)
    cfg = config_of(payload, str(path))
    model = Transformer(cfg.model)
    load_weights(model, payload, str(path))
    return model.to(device).eval(), cfg
