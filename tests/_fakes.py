"""Small offline stand-ins for the feature networks of the world-model metrics (no weights to download)."""

import torch
from torch import nn


class TinyFeatures(nn.Module):
    """A fixed random projection of the flattened input, standing in for Inception (frames) or I3D (clips)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.proj(x.flatten(1))


class TinyLPIPS(nn.Module):
    """Per-pair mean squared error, shaped like LPIPS's output."""

    def forward(self, x, y):
        return ((x - y) ** 2).mean(dim=(1, 2, 3))


def fake_slurm_commands(tmp_path, monkeypatch, sinfo_rc: int):
    """`sbatch` (exit 0) and `sinfo` (exit `sinfo_rc`) scripts first on PATH: a machine with Slurm's packages,
    whose controller answers (0) or not (1). Returns their folder."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, rc in (("sbatch", 0), ("sinfo", sinfo_rc)):
        (bin_dir / name).write_text(f"#!/bin/sh\nexit {rc}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir
