"""Checkpoint files: written atomically, checked on load."""

from __future__ import annotations

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
        torch.save({**payload, "format": FORMAT}, tmp)
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
    """The config a checkpoint was trained with. Checkpoints saved before data.sampling
    existed were trained on uniform pairs (today's default is balanced)."""
    try:
        raw = dict(payload["config"])
        raw["data"] = {"sampling": "uniform", **(raw.get("data") or {})}
        return from_dict(raw, source=f"{source} (saved config)")
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source}: saved config is unusable: {exc}") from None


def load_weights(model: torch.nn.Module, payload: dict[str, Any], source: str) -> None:
    """Load the saved weights; a state dict that does not fit the config is one line."""
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
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
