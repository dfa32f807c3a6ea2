"""Checkpoints: atomic round trip, RNG streams continue exactly, bad files and other configs are one clear error."""

from pathlib import Path

import numpy as np
import pytest
import torch

from diamond.run.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from diamond.run.io import CorruptFileError


def test_roundtrip_restores_random_streams(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    save_checkpoint(path, {"step": 7, "rng": rng_state(rng)}, "abc")
    expected = (torch.rand(3), rng.random(3))
    state = load_checkpoint(path, "abc", torch.device("cpu"))
    assert state is not None and state["step"] == 7
    other = np.random.default_rng(99)
    restore_rng(state["rng"], other)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(other.random(3), expected[1])


def test_absent_corrupt_and_foreign_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    assert load_checkpoint(path, "abc", torch.device("cpu")) is None
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match=r"last.pt: not a readable checkpoint \(truncated or corrupt"):
        load_checkpoint(path, "abc", torch.device("cpu"))
    save_checkpoint(path, {"step": 1}, "abc")
    with pytest.raises(CorruptFileError, match="different config"):
        load_checkpoint(path, "xyz", torch.device("cpu"))
