"""Launch a toy grid on Slurm in a process of its own, so that a test can kill it like a dead login shell.

    python tests/slurm/_launch.py ARGS.json

ARGS.json: {"specs": [RunSpec fields], "log_dir": ..., "cluster": cluster YAML, "report": where to write the
LaunchReport as JSON}. Prints the launcher's progress and summary.
"""

from __future__ import annotations

import json
import sys

from diamond.run.io import atomic_write_json
from slurm.launcher import RunSpec, launch, load_cluster_config


def main(args_path: str) -> None:
    args = json.loads(open(args_path, encoding="utf-8").read())
    report = launch([RunSpec(**s) for s in args["specs"]], "slurm", log_dir=args["log_dir"],
                    cluster=load_cluster_config(args["cluster"]), progress_every_s=2.0)
    print(report.summary(), flush=True)
    atomic_write_json(args["report"], {"finished": report.finished, "skipped": report.skipped,
                                       "failed": [[n, e, str(log)] for n, e, log in report.failed]})


if __name__ == "__main__":
    main(sys.argv[1])
