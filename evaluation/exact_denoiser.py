"""Samplers driven by the exact denoiser of Gaussian data, on a paradigm's own σ grid and initial noise.

For data x0 ~ N(mu, s^2) (per pixel) the denoiser is known in closed form, D(x; σ) = mu + s^2 / (s^2 + σ^2)
(x - mu), so what a sampler does at n steps is a fact about the sampler and the grid, free of any network:
it is what an agent's world model would do with a perfect D_θ. Every sampler of diamond/models/diffusion/samplers.py
is then affine in its initial noise and in the noise it injects, so its output is Gaussian:
- deterministic samplers (Euler, Heun) are measured exactly: the real sampler code is run on x = 0 and x = 1,
  which gives the affine map, and the moments of the initial noise are pushed through it (float64; the
  initial noise scale is read off the paradigm to float32 precision);
- stochastic samplers are measured by Monte Carlo over `samples` draws (the relative standard error of the
  variance is sqrt(2 / samples), stated in the table).
The error of a sampler is the 2-Wasserstein distance between its output and the data distribution (closed form
between Gaussians), in units of the data's std; the variance ratio says whether it over- or under-disperses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from diamond.models.diffusion.paradigms import Paradigm
from diamond.models.diffusion.samplers import DenoiseFn, get_sampler, nfe

DETERMINISTIC = ("euler", "heun", "ddim")
INITS = {"paradigm": "the paradigm's initial noise", "marginal": "the exact marginal at the first σ"}


@dataclass(frozen=True)
class GaussianData:
    """Per-pixel data distribution N(mean, std^2); std = σ_data (0.5) matches EDM's preconditioning."""

    mean: float = 0.0
    std: float = 0.5

    def denoiser(self) -> DenoiseFn:
        """The exact posterior mean E[x0 | x0 + σ n = x]."""
        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            shrink = self.std**2 / (self.std**2 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2)
            return self.mean + shrink * (x - self.mean)

        return denoise

    def w2(self, mean: float, var: float) -> float:
        """2-Wasserstein distance between N(mean, var) and the data, in units of the data's std."""
        return math.sqrt((mean - self.mean) ** 2 + (math.sqrt(max(var, 0.0)) - self.std) ** 2) / self.std


def initial_std(paradigm: Paradigm, n_steps: int) -> float:
    """Std of the paradigm's initial noise at n steps; it must be a scaled standard normal (checked)."""
    probe = paradigm.initial_noise((64,), n_steps=n_steps, generator=torch.Generator().manual_seed(0))
    unit = torch.randn(64, generator=torch.Generator().manual_seed(0))
    ratio = (probe.double() / unit.double())
    if not torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5):
        raise ValueError(f"{type(paradigm).__name__}.initial_noise is not a scaled standard normal; the exact-denoiser "
                         "evaluation needs one.")
    return float(ratio[0].abs())


def sampler_moments(paradigm: Paradigm, sampler: str, n_steps: int, data: GaussianData, init: str = "paradigm",
                    samples: int = 2**18, seed: int = 0) -> tuple[float, float]:
    """(mean, variance) per pixel of `sampler`'s output at n steps on the paradigm's grid, starting from
    `init` ('paradigm': its initial noise; 'marginal': N(mean, std^2 + σ_0^2), the exact marginal)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}.")
    sigmas = paradigm.sigmas(n_steps).double()
    if init == "paradigm":
        mean_in, std_in = 0.0, initial_std(paradigm, n_steps)
    else:
        mean_in, std_in = data.mean, math.sqrt(data.std**2 + float(sigmas[0]) ** 2)
    fn, denoise = get_sampler(sampler), data.denoiser()
    if sampler in DETERMINISTIC:
        out = fn(denoise, torch.tensor([[0.0], [1.0]], dtype=torch.float64), sigmas)
        offset, slope = float(out[0, 0]), float(out[1, 0] - out[0, 0])
        return slope * mean_in + offset, slope**2 * std_in**2
    gen = torch.Generator().manual_seed(seed)
    x = mean_in + std_in * torch.randn(samples, 1, generator=gen, dtype=torch.float64)
    out = fn(denoise, x, sigmas, generator=gen)
    return float(out.mean()), float(out.var())


def exact_denoiser_table(paradigm: Paradigm, samplers: Sequence[str], num_steps: Sequence[int],
                         data: GaussianData = GaussianData(), inits: Sequence[str] = tuple(INITS),
                         samples: int = 2**18, seed: int = 0) -> pd.DataFrame:
    """One row per (init, sampler, n): NFE, output mean, variance / data variance, W2 / data std, and how it
    was measured ('exact' or the Monte Carlo relative standard error of the variance)."""
    rows = []
    for init in inits:
        for sampler in samplers:
            for n in num_steps:
                mean, var = sampler_moments(paradigm, sampler, n, data, init, samples, seed)
                rows.append({"init": init, "sampler": sampler, "num_steps": n, "nfe": nfe(sampler, n),
                             "mean": mean, "var_ratio": var / data.std**2, "w2": data.w2(mean, var),
                             "measured": "exact" if sampler in DETERMINISTIC else
                             f"Monte Carlo, {samples} draws (variance ±{100 * math.sqrt(2 / samples):.1f} %)"})
    return pd.DataFrame(rows)


def crossover(table: pd.DataFrame, better: str, worse: str, init: str, by: str = "num_steps") -> int | None:
    """The smallest n (by='num_steps') or NFE (by='nfe') from which `better` has a lower W2 than `worse` at every
    larger value both were measured at; None when it does not at the largest one."""
    t = table[table["init"] == init]
    a = t[t["sampler"] == better].set_index(by)["w2"]
    b = t[t["sampler"] == worse].set_index(by)["w2"]
    common = sorted(set(a.index) & set(b.index))
    start = None
    for x in reversed(common):
        if a[x] >= b[x]:
            break
        start = int(x)
    return start


def _ratio(value: float) -> str:
    return f"{100 * value:.1f} %" if value < 0.1 else f"{value:.2f}×"


def summary(table: pd.DataFrame, init: str, reference_n: int, labels: Mapping[str, str] | None = None) -> str:
    """The measured facts of one starting distribution, as sentences: the reference n's variance per sampler,
    where Heun overtakes Euler (per step and at equal NFE), and how each sampler's variance moves with n."""
    labels = dict(labels or {})
    t = table[table["init"] == init]
    name = lambda s: labels.get(s, s)  # noqa: E731
    max_n, parts = int(t["num_steps"].max()), []
    at = t.set_index(["sampler", "num_steps"])
    samplers = list(pd.unique(t["sampler"]))
    if "euler" in samplers and (("euler", reference_n) in at.index):
        r = at.loc[("euler", reference_n)]
        of = " of" if r["var_ratio"] < 0.1 else ""
        parts.append(f"{name('euler')} at n = {reference_n} gives a sample variance of {_ratio(r['var_ratio'])}{of} "
                     f"the data's (W2 {r['w2']:.2f} data stds).")
    if {"euler", "heun"} <= set(samplers):
        steps, cost = crossover(table, "heun", "euler", init), crossover(table, "heun", "euler", init, by="nfe")
        nfes = [set(t[t["sampler"] == x]["nfe"]) for x in ("euler", "heun")]
        max_nfe = int(max(nfes[0] & nfes[1]))
        parts.append(f"{name('heun')} has a lower W2 than {name('euler')} "
                     + (f"from n = {steps} on" if steps is not None else "at no n")
                     + f" (n ≤ {max_n}); at equal NFE "
                     + (f"from NFE {cost} on" if cost is not None else "never")
                     + f" (NFE ≤ {max_nfe}).")
    shown = sorted({reference_n, max(n for n in t["num_steps"] if n <= 10)})
    moves = []
    for sampler in samplers:
        values = [f"{_ratio(at.loc[(sampler, n), 'var_ratio'])} at n = {n}" for n in shown if (sampler, n) in at.index]
        moves.append(f"{name(sampler)} {', '.join(values)}")
    parts.append("Sample variance relative to the data's: " + "; ".join(moves) + ".")
    return " ".join(parts)
