#!/usr/bin/env bash
# On a development machine with network: fetch into .whl/ the wheels that the GPU image lacks for run.sh, and,
# given a checkout of the authors' released code (eloialonso/diamond), copy its src/ and config/ into .official/
# for the side by side. Both folders are git-ignored; carry them to the GPU machine with the working tree.
#
#   tools/gpu/prepare.sh [PATH_TO_RELEASED_CHECKOUT]
#
# The image (Python 3.12, torch 2.11, numpy, opencv, pyyaml, typing-extensions, cloudpickle, ...) lacks the Atari
# environment that diamond.bench collects real frames with (gymnasium, ale-py and its one dependency
# farama-notifications) and two packages that the released code's measured modules import (omegaconf: config;
# torcheval: the reward/end model's confusion matrix). .whl/ is emptied first: pip refuses two versions of one
# package, and one stale wheel would stop the whole install there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHEELS=(gymnasium==1.4.0 ale-py==0.12.1 farama-notifications==0.0.6 omegaconf==2.4.0 torcheval==0.0.7)
LIMIT=$((40 * 1024 * 1024))

if [ $# -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -gt 1 ] && exit 2 || exit 0
fi
if [ $# -eq 1 ] && { [ ! -f "$1/src/agent.py" ] || [ ! -f "$1/config/trainer.yaml" ]; }; then
    echo "error: $1 is not a checkout of eloialonso/diamond (no src/agent.py or config/trainer.yaml)" >&2
    exit 2
fi

mkdir -p .whl
rm -f .whl/*.whl
"$PY" -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 -d .whl "${WHEELS[@]}"
count=$(find .whl -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
    echo "error: expected ${#WHEELS[@]} wheels in .whl/, found $count" >&2
    exit 1
fi
size=$(cat .whl/*.whl | wc -c)
if [ "$size" -gt "$LIMIT" ]; then
    echo "error: the wheels in .whl/ take $size bytes, over the 40 MiB limit" >&2
    exit 1
fi
ls -l .whl/*.whl
echo "wheels: $count files, $((size / 1024)) KiB in all (limit 40 MiB)"

if [ $# -eq 1 ]; then
    rm -rf .official
    mkdir .official
    cp -r "$1/src" "$1/config" .official/
    echo "released code: $1/src and $1/config copied into .official/"
fi
