"""What a suite is (`Suite`: its runs in dependent stages, its profile, how its report is built) and what the user
chose for it on the command line (`SuiteOptions`). Every suite module builds one `Suite` from these; the registry
(ablations/registry.py) finds them by name, so this base sits below both."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ablations.entrants import Entrant, suite_entrants
from reports.common import ReportContext
from slurm.launcher import RunSpec


@dataclass(frozen=True)
class SuiteOptions:
    """What the user chose on the command line."""

    profile: str = "paper"
    out: Path = Path("runs")
    games: tuple[str, ...] | None = None  # None = the suite's default games
    seeds: int | None = None  # None = the suite's default number of seeds
    overrides: tuple[str, ...] = ()
    report_root: Path = Path("reports")
    controls: bool = False  # also train the reward-blind twin of each agent run (suites that train agents)
    models: tuple[Entrant, ...] = ()  # --models: world models entered beside the suite's own
    only_models: bool = False  # --only-models: run only those

    def entrants(self) -> list[Entrant]:
        """The world models this suite runs its arms on, the suite's own first (ablations/entrants.py)."""
        return suite_entrants(self.profile, self.overrides, self.models, self.only_models)

    def suite_dir(self, suite: str) -> Path:
        """runs/<suite>/<profile>/: profiles never share run folders."""
        return self.out / suite / self.profile

    def report_dir(self, suite: str) -> Path:
        return self.report_root / suite

    def report_context(self, suite: str) -> ReportContext:
        """What the suite's report builder needs from the command line (reports never see SuiteOptions)."""
        return ReportContext(suite, self.profile, self.suite_dir(suite), self.report_dir(suite))


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    paper_artefact: str
    stages: Callable[[SuiteOptions], list[list[RunSpec]]]  # in order; runs within a stage are independent
    # builds report.md + report.pdf: the suite module calls its reports/ builder with opts.report_context(name)
    # and its own constants (stages, arms, labels); reports/ never imports ablations/
    report: Callable[[SuiteOptions], tuple[Path, Path]]
    default_games: tuple[str, ...] = field(default_factory=tuple)
    default_seeds: int = 1
