"""Checkpoint files: written atomically, checked on load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from addray.config import ConfigError, ExperimentConfig, from_dict
from addray.errors import UserError
from addray.model import Transformer

FORMAT = "addray-checkpoint-1"
FILENAME = "checkpoint.pt"


class CheckpointError(UserError, ValueError):
    """A file that is missing or is not an addray checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` via a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**payload, "format": FORMAT}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
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
    try:
        return from_dict(payload["config"], source=f"{source} (saved config)")
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{source}: saved config is unusable: {exc}") from None


def load_model(path: str | Path,
               device: str | torch.device = "cpu") -> tuple[Transformer, ExperimentConfig]:
    """Rebuild the model saved in a checkpoint, in eval mode, on ``device``."""
    payload = load_checkpoint(path, map_location=device)
    cfg = config_of(payload, str(path))
    model = Transformer(cfg.model)
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), cfg
