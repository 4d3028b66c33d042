#!/usr/bin/env bash
# The GPU checks, as one call on a CUDA machine:
#   1. `bench` on the whole card;
#   2. the CUDA-only tests (pytest -m cuda: fast fp16 encoder eager and compiled, each
#      attention, within its error bound; streaming; default settings fitting an 8 GB card);
#   3. with PROFILE=1, where embed's main thread spends its CPU (scripts/profile_embed.py);
#   4. `bench` acting as an 8 GB laptop GPU (7.5 GiB free): default batch sizes and peaks.
# The call that times embed against the encoder alone:
#   LIMIT=560 VIEWS=640 SKIP_8GB=1 SCALING=0 PROFILE=1 BENCH_ARGS="--embed-views 2560
#   --reference-views 4 --skip eager-encoders --skip mask-encoders --skip compression
#   --skip writing --resize pil --resize torch" bash scripts/device_check.sh
# Usage: bash scripts/device_check.sh [OUT], from anywhere. Results go under OUT (default: $OUT,
# else /tmp/floodcache-device). Without a CUDA GPU it stops at once, saying so.
# Python packages a machine without internet lacks come as wheels put in .whl/, installed to
# /tmp/site; fetch them beforehand where pip reaches PyPI, for that machine's Python and the
# versions installed here, e.g. `python3 -m pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux2014_x86_64 -d .whl segment-anything==1.0`.
# polars is not needed: bench does not import it (tests/commands/test_cli.py checks).
# Each step has its own time limit, so one that hangs or fails still leaves the others.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${1:-${OUT:-/tmp/floodcache-device}}
# Every step below measures or tests the GPU: on a CPU it would only time the wrong device.
if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "scripts/device_check.sh needs a CUDA GPU, and torch sees none here;" \
        "on a CPU, \`python cli.py bench --device cpu --views 2\` measures what a CPU can" >&2
    exit 1
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
VIEWS=${VIEWS:-320}
{
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    # The CPU the readers get: embed was bound by it (~4 cores' worth of work on 16 cores).
    echo "nproc $(nproc); cgroup cpu.max $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo -)"
    grep -m1 "model name" /proc/cpuinfo
    # The cache and its parts go to $TMPDIR (the readers' memory is an anonymous mapping).
    # embed writes each view twice (its part, then the cache), fsynced: ~4 MB a view, 1.2 GB/s
    # at 300 views/s. How fast this disk takes 1 GiB, synced:
    df -h "${TMPDIR:-/tmp}"
    dd if=/dev/zero of="${TMPDIR:-/tmp}/floodcache-dd" bs=16M count=64 conv=fdatasync 2>&1 \
        | tail -1
    # embed removes its parts (~2 MiB a view) in the background once the cache is in place;
    # bench waits for that between stages. On a disk mounted with discard it can take a while.
    # How fast here:
    mount | grep -E " (/|${TMPDIR:-/tmp}) " || true
    python3 -c "import os, sys, time; t = time.perf_counter(); os.unlink(sys.argv[1]);
print(f'removing 1 GiB took {time.perf_counter() - t:.3f} s')" "${TMPDIR:-/tmp}/floodcache-dd"
    # Whether N busy processes get N cores' worth of work (the readers are N processes).
    [ "${SCALING:-1}" = 1 ] && timeout 60 python3 scripts/cpu_scaling.py 1.5
} 2>&1 | tee "$OUT/gpu.txt"
# bench first: it is the measurement; then the CUDA tests; the 8 GB card only if time is left
# (LIMIT: the call's seconds). BENCH_ARGS adds options (e.g. --skip compression), TESTS picks
# among the CUDA tests (pytest -k), SECOND_BENCH_ARGS runs a second bench in the 8 GB one's place,
# SKIP_8GB=1 leaves the 8 GB one out.
LIMIT=${LIMIT:-590}
left() { echo $((LIMIT - SECONDS - ${1:-0})); }
timeout "$(left 70)" python3 cli.py bench --views "$VIEWS" ${BENCH_ARGS:-} \
    --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench-gpu.txt" | grep -v RANDOM | tail -24
timeout "$(left 5)" python3 -m pytest -q -p no:cacheprovider -m cuda tests ${TESTS:+-k "$TESTS"} \
    2>&1 | tee "$OUT/tests.txt" | tail -4
# PROFILE=1: where embed's main thread spends its CPU, per resize (uncompiled; ~1 minute).
if [ "${PROFILE:-0}" = 1 ] && [ "$(left)" -gt 90 ]; then
    timeout "$(left 5)" python3 scripts/profile_embed.py --views "$VIEWS" --top 30 \
        ${PROFILE_ARGS:-} 2>&1 \
        | grep -v RANDOM > "$OUT/profile.txt"
    grep -A12 "===" "$OUT/profile.txt" | head -40
fi
# SECOND_BENCH_ARGS: a second bench instead of the 8 GB card's, e.g. the same run with
# "--resize torch" to compare embed's two resizes on one machine.
if [ -n "${SECOND_BENCH_ARGS:-}" ] && [ "$(left)" -gt 120 ]; then
    timeout "$(left 5)" python3 cli.py bench --views "$VIEWS" $SECOND_BENCH_ARGS \
        --json "$OUT/bench-gpu-2.json" 2>&1 | tee "$OUT/bench-gpu-2.txt" | grep -v RANDOM \
        | tail -24
elif [ -z "${SECOND_BENCH_ARGS:-}" ] && [ "${SKIP_8GB:-0}" != 1 ] && [ "$(left)" -gt 100 ]; then
    timeout "$(left 5)" python3 cli.py bench --views 96 --reference-views 16 \
        --free-gpu-memory 7.5 --json "$OUT/bench-8gb.json" 2>&1 | tee "$OUT/bench-8gb.txt" \
        | grep -v RANDOM | tail -20
elif [ "${SKIP_8GB:-0}" != 1 ]; then
    echo "no time left for the last bench ($SECONDS s used of $LIMIT)"
fi
