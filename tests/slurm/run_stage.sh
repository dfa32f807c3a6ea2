#!/usr/bin/env bash
# The real-Slurm stage: install Slurm if it is missing (root, Debian/Ubuntu), then run tests/slurm against
# throw-away one-node clusters (tests/slurm/cluster.py), without and with accounting.
#   tests/slurm/run_stage.sh [--required] [pytest args...]
# Where Slurm cannot be set up it skips with one line; with --required (or CI=true) it fails instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
required=0
if [ "${1:-}" = "--required" ]; then required=1; shift; fi
if [ "${CI:-}" = "true" ]; then required=1; fi

skip() {
    if [ "$required" = 1 ]; then echo "real-Slurm stage FAILED: it could not run: $1" >&2; exit 1; fi
    echo "real-Slurm stage skipped: $1"; exit 0
}

[ "$(id -u)" = 0 ] || skip "it needs root (it installs Slurm and starts munged, slurmctld, slurmd)"
packages="slurm-wlm munge slurmdbd mariadb-server"
missing=0
for bin in slurmctld slurmd munged slurmdbd mariadbd sbatch; do command -v "$bin" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
    command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install $packages"
    # no service may start during the install: our daemons run from a temp folder
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
    fi
    t0=$(date +%s)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages; } \
            > /tmp/diamond-slurm-apt.log 2>&1; then
        [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        skip "apt-get could not install $packages (see /tmp/diamond-slurm-apt.log)"
    fi
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    echo "real-Slurm stage: installed $packages in $(( $(date +%s) - t0 )) s"
fi

export DIAMOND_SLURM_TESTS=1
if [ "$required" = 1 ]; then export DIAMOND_SLURM_TESTS=required; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
t0=$(date +%s)
set +e
python -m pytest tests/slurm -v -rs -p no:cacheprovider --durations=0 "$@"
rc=$?
set -e
echo "real-Slurm stage: $(slurmctld -V), pytest exit $rc, $(( $(date +%s) - t0 )) s"
if [ "$rc" -eq 5 ]; then echo "real-Slurm stage: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
