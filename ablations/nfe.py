"""Suite `ablation_nfe` (§5.2): the number of denoising steps n ∈ {1, 2, 3, 5, 10} of EDM's Euler sampler.

The paper's argument: EDM is stable even at n = 1 (Breakout, Figure 3b), but a single step predicts the
posterior mean, which is blurry where the next frame is uncertain (Boxing's opponent, Figure 4), so the
paper uses n = 3. This suite measures both sides of that choice: agent score and world-model quality
(Table 6 protocol, plus the sharpness of generated frames relative to the real ones) against sampling cost
(frames per second). Same stages as `ablation_sampler` (see ablations/sampler.py), with n as the arm.
"""

from __future__ import annotations

from pathlib import Path

from ablations import atari100k
from ablations.arms import SamplingArm
from ablations.sampler import DEFAULT_SEEDS, VISUAL_GAMES, SamplingSuite
from ablations.suite import Suite, SuiteOptions

NAME = "ablation_nfe"
NUM_STEPS = (1, 2, 3, 5, 10)  # the values of Figure 3
REFERENCE_STEPS = 3  # the paper's choice (§5.2)
ARMS = tuple(SamplingArm("euler", n) for n in NUM_STEPS)
GRID = SamplingSuite(NAME, ARMS, reference=next(a for a in ARMS if a.num_steps == REFERENCE_STEPS))


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    return GRID.report(opts, title="Ablation: number of denoising steps n (§5.2)", focus="nfe")


SUITE = Suite(
    name=NAME,
    description=("EDM Euler with n = 1, 2, 3, 5, 10 denoising steps (reference n = 3): agent score and world-model "
                 "quality (Table 6 protocol, sharpness) against frames per second, on the Breakout expert's data "
                 "and on data played by each game's reference agent (Boxing: §5.2, Figure 4). GPU-hours per agent "
                 f"run: the atari100k figure ({atari100k.PAPER_GPU_HOURS:.1f} at paper scale, projected for n=3; "
                 "imagination time grows with n)."),
    paper_artefact="§5.2 and Figure 4 (Boxing, n = 1 vs n = 3); n grid of Figure 3",
    stages=GRID.stages,
    report=report,
    default_games=VISUAL_GAMES,
    default_seeds=DEFAULT_SEEDS,
)
