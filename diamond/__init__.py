"""DIAMOND: an RL agent trained in a diffusion world model (Alonso et al., NeurIPS 2024)."""

__version__ = "0.1.0"
