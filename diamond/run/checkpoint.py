"""Checkpoints shared by every resumable run (atomic torch.save, safe loading, RNG capture and restore), and the
safe loader of plain weight files that every feature network reads."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diamond.run.io import CorruptFileError, atomic_write


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """torch (CPU and CUDA) and the run's numpy generator: what makes a resumed run continue its random streams."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    rng.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: Path, state: dict[str, Any], config_hash: str) -> None:
    """Serialise in memory, then write atomically: a kill mid-save leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save({**state, "config_hash": config_hash}, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_checkpoint(path: Path, config_hash: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at `path` (weights_only), None if absent; a bad file or another config is one clear error."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CorruptFileError(f"{path}: not a readable checkpoint (truncated or corrupt: {type(e).__name__}); move "
                               "the run folder away to start the run again, or restore the file") from e
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path}: holds a {type(state).__name__}, not a checkpoint; move the run folder away "
                               "to start the run again, or restore the file")
    if state.get("config_hash") != config_hash:
        raise CorruptFileError(f"{path}: checkpoint was written by a different config; use another run folder")
    return state


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True; anything but a flat name->tensor dict is a corrupt file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorruptFileError(f"{path}: not a readable PyTorch weights file ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state
