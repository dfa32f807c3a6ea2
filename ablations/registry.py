"""Suites are data: which runs (in dependent stages), at which profile, and how their report is built.

`run_suite.py` looks suites up here; each suite module registers one `Suite`."""

from __future__ import annotations

import importlib

from ablations.suite import Suite, SuiteOptions

__all__ = ["SUITE_MODULES", "Suite", "SuiteOptions", "get_suite"]

# suite name -> module that defines SUITE
SUITE_MODULES: dict[str, str] = {
    "atari100k": "ablations.atari100k",
    "ablation_ddpm_vs_edm": "ablations.ddpm_vs_edm",
    "ablation_sampler": "ablations.sampler",
    "ablation_nfe": "ablations.nfe",
    "ablation_conditioning": "ablations.conditioning",
    "ablation_memory": "ablations.memory",
    "benchmark": "ablations.benchmark",
}


def get_suite(name: str) -> Suite:
    """The registered suite; an unknown name fails with the valid choices."""
    if name not in SUITE_MODULES:
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(SUITE_MODULES)}")
    return importlib.import_module(SUITE_MODULES[name]).SUITE
