#!/usr/bin/env bash
# GPU evidence in one run (docs/performance.md, "Measured on a GPU"), from the repository root under the image's
# python3: installs the wheels carried in .whl/ (tools/gpu/prepare.sh) into a temporary site directory, then runs
# each step of tools/gpu/gpu_check.py under its own time cap, so that one slow step cannot eat the others' time.
#
#   tools/gpu/run.sh [--cpu-dry] [OUT_DIR]        (OUT_DIR defaults to $OUT)
#
# Writes OUT_DIR/gpu-results.json, gpu-results.md (the files to commit as docs/results/gpu/<date>-h200.*) and
# gpu-run.log. A step that fails or hits its cap is recorded as such, and the next one still runs.
# --cpu-dry: the same steps at tiny sizes on the CPU, torch.compile disabled (TORCH_COMPILE_DISABLE=1), no wheels.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
DRY=0
DIR=""
for arg in "$@"; do
    case "$arg" in
        --cpu-dry) DRY=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "error: unknown option $arg (usage: tools/gpu/run.sh [--cpu-dry] [OUT_DIR])" >&2; exit 2 ;;
        *) DIR=$arg ;;
    esac
done
DIR=${DIR:-${OUT:-}}
if [ -z "$DIR" ]; then
    echo "error: give an output folder or set OUT (usage: tools/gpu/run.sh [--cpu-dry] [OUT_DIR])" >&2
    exit 2
fi
mkdir -p "$DIR"
rm -f "$DIR/gpu-results.json" "$DIR/gpu-results.md" "$DIR/gpu-run.log"
LOG=$DIR/gpu-run.log
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT

# Each step has its own cap; what a step leaves unused goes to the next one (460 s of caps in all, under 8 minutes
# with the wheel install). The fast side by side comes last: its compiles are the least predictable.
STEPS=(setup ladder equivalence side_by_side_plain side_by_side_fast)
if [ "$DRY" = 1 ]; then
    CAPS=(60 120 60 60 60)
    FLAGS=(--cpu-dry)
    export TORCH_COMPILE_DISABLE=1
else
    CAPS=(45 230 45 40 100)
    FLAGS=()
    wheels=(.whl/*.whl)
    if [ -e "${wheels[0]}" ]; then
        if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                "${wheels[@]}" >>"$LOG" 2>&1; then
            echo "error: installing the wheels of .whl/ failed (see $LOG)" >&2
            exit 1
        fi
        export GPU_WHEELS="${wheels[*]#.whl/}"
    fi
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
COMMAND="tools/gpu/run.sh $*"

spare=0
for i in "${!STEPS[@]}"; do
    step=${STEPS[$i]}
    cap=$((CAPS[i] + spare > 10 ? CAPS[i] + spare : 10))
    start=$SECONDS
    echo "=== $step (cap ${cap} s)" >>"$LOG"
    timeout -k 5 "$cap" "$PY" tools/gpu/gpu_check.py "$step" --out "$DIR" --command "$COMMAND" \
        ${FLAGS[@]+"${FLAGS[@]}"} >>"$LOG" 2>&1
    rc=$?
    used=$((SECONDS - start))
    "$PY" tools/gpu/results.py mark "$step" --rc "$rc" --seconds "$used" --cap "$cap" --out "$DIR"
    echo "$step: exit $rc after $used s (cap $cap s)"
    spare=$((cap - used))  # negative after an overrun: the next steps give it back
done
cat "$DIR/gpu-results.md"
