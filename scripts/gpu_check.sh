#!/usr/bin/env bash
# One prepared GPU check (issue 22): training sweep, action-sampling latency, native-vs-transformers parity
# in bf16, real-time chunking in bf16 and MuJoCo EGL rendering speed, each part under its own time cap
# (wheel install 40 s + parts 480 s): the whole within 9 minutes (a device call allows 10).
#
#   scripts/gpu_check.sh [--dry-run] [OUT_DIR]     # OUT_DIR defaults to $OUT, else outputs/gpu_check
#
# Every part writes JSON into OUT_DIR (env, bench_train, bench_infer, parity_sdpa, parity_flex, render,
# rtc_bf16) plus gpu_check.log: 8 files, the most the device machine returns. A part that fails or runs past its cap
# gets checks.<part> = {status, rc, error} in its JSON and the script goes on. Idempotent: each run
# starts from an empty set of results and reinstalls nothing that is already in place.
#
# On the GPU machine (bare, offline image with PyTorch): the wheels fetched by scripts/fetch_gpu_wheels.sh
# into .whl/ are installed into /tmp/gpu_check_site; EGL/GL loader packages in .gl/*.deb (see the device
# README) are unpacked when running as root. --dry-run runs the same parts on the CPU with the debug
# flavor and tiny sizes, in under a minute (tests/scripts/test_gpu_check.py), skipping what needs CUDA.
# PYTHON selects the interpreter (default python3); caps scale with CAP_SCALE (default 1).
set -u -o pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ ${1:-} == --dry-run ]]; then DRY=1; shift; fi
OUT_DIR=${1:-${OUT:-outputs/gpu_check}}
PY=${PYTHON:-python3}
CAP_SCALE=${CAP_SCALE:-1}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG=$OUT_DIR/gpu_check.log
rm -f "$OUT_DIR"/{env,bench_train,bench_infer,parity_sdpa,parity_flex,render,rtc_bf16}.json "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$SECONDS
say() { echo "[gpu_check $((SECONDS - START))s] $*" | tee -a "$LOG"; }

# part NAME JSON CAP_S COMMAND...: run under `timeout`, log, record the outcome in JSON.
part() {
    local name=$1 json=$2 cap rc t0=$SECONDS
    cap=$(awk -v c="$3" -v s="$CAP_SCALE" 'BEGIN { printf "%d", c * s }')
    shift 3
    say "$name: start (cap ${cap}s)"
    timeout -k 10 "$cap" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    cat "$WORK/$name.log" >>"$LOG"
    "$PY" scripts/gpu_check_part.py finish "$name" "$OUT_DIR/$json" "$rc" "$((SECONDS - t0))" "$cap" "$WORK/$name.log"
    say "$name: rc=$rc after $((SECONDS - t0))s"
}
skip() {
    "$PY" scripts/gpu_check_part.py skip "$1" "$OUT_DIR/$2" "$3"
    say "$1: skipped ($3)"
}

if [[ $DRY == 0 ]]; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        # --no-deps: fetch_gpu_wheels.sh carries exactly the missing set, one version each.
        timeout 40 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/gpu_check_site .whl/*.whl >"$WORK/wheels.log" 2>&1 &&
            echo "installed: $(ls .whl | tr '\n' ' ')" >>"$WORK/wheels.log"
        export PYTHONPATH=$PYTHONPATH:/tmp/gpu_check_site
    else
        echo "no .whl/*.whl: nothing installed" >"$WORK/wheels.log"
    fi
    if compgen -G ".gl/*.deb" >/dev/null && [[ $EUID == 0 ]]; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    [[ -e /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]] &&
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    cat "$WORK/wheels.log" >>"$LOG"
fi
touch "$WORK/wheels.log"

if [[ $DRY == 1 ]]; then
    FLAVOR=debug DEVICE=cpu GL=osmesa
    # One thread per process: the dry run shares small CPU machines (CI, dev VMs) with other work.
    export OMP_NUM_THREADS=1
    TRAIN=(--flavor debug --steps 2 --warmup 1 --local-batch-size 1 --max-seq-len 512 --horizon 4 --image-px 64 64)
    TRAIN_ACS=(full)
    INFER=(--flavor debug --device cpu --dtype bfloat16 --modes cached uncached --cameras 1 3 --iters 2 --warmup 1 --threads 1)
    PARITY=(--flavor debug --device cpu --batch 1 --seq-len 64 --image-grid 1 4 4 --steps 1 --warmup 0 --threads 1)
    RENDER=(--sizes 32 --frames 3 --warmup 1)
    RTC=(--flavor debug --device cpu --batch 2 --image-size 64 --horizon 8 --steps 2 --delays 2 4 --iters 1 --threads 1)
else
    FLAVOR=2B DEVICE=cuda GL=egl
    TRAIN=(--flavor 2B --steps 6 --warmup 2 --local-batch-size 64 --max-seq-len 2048 --horizon 50 --image-px 224 224)
    TRAIN_ACS=(none selective full)
    INFER=(--flavor 2B --device cuda --dtype bfloat16 --modes cached uncached compiled cudagraphs --cameras 1 3
           --iters 20 --warmup 3)
    PARITY=(--flavor 2B --device cuda --batch 2 --seq-len 512 --image-grid 1 16 16 --steps 5 --warmup 2)
    RENDER=(--sizes 224 480 --frames 200 --warmup 10)
    RTC=(--flavor 2B --device cuda --batch 4 --image-size 224 --horizon 50 --steps 10 --delays 2 4 6 8
         --execution-horizon 10 --iters 10)
fi
MODE=$([[ $DRY == 1 ]] && echo dry-run || echo gpu)
say "mode: $MODE, flavor $FLAVOR, out $OUT_DIR"

part env env.json 20 "$PY" scripts/gpu_check_part.py env "$OUT_DIR/env.json" "$WORK/wheels.log" "$MODE"
part parity_sdpa parity_sdpa.json 55 "$PY" scripts/bench_model.py "${PARITY[@]}" --dtype bfloat16 \
    --attention-backend sdpa --out "$OUT_DIR/parity_sdpa.json"
if [[ $DEVICE == cuda ]]; then
    part parity_flex parity_flex.json 40 "$PY" scripts/bench_model.py "${PARITY[@]}" --dtype bfloat16 \
        --attention-backend flex --modes forward --out "$OUT_DIR/parity_flex.json"
else
    skip parity_flex parity_flex.json "flex attention needs CUDA"
fi
part bench_infer bench_infer.json 100 "$PY" scripts/bench_infer.py "${INFER[@]}" --output "$OUT_DIR/bench_infer.json"
part rtc_bf16 rtc_bf16.json 40 "$PY" scripts/check_rtc_bf16.py "${RTC[@]}" --output "$OUT_DIR/rtc_bf16.json"
part render render.json 25 env MUJOCO_GL=$GL PYOPENGL_PLATFORM=$GL "$PY" scripts/bench_render.py "${RENDER[@]}" \
    --output "$OUT_DIR/render.json"
part train_eager bench_train.json 90 "$PY" scripts/bench_train.py "${TRAIN[@]}" --ac "${TRAIN_ACS[@]}" \
    --output "$OUT_DIR/bench_train.json" --append
part train_web bench_train.json 30 "$PY" scripts/bench_train.py "${TRAIN[@]}" --batch web --ac selective \
    --output "$OUT_DIR/bench_train.json" --append
if [[ $DEVICE == cuda ]]; then
    part train_compile bench_train.json 80 "$PY" scripts/bench_train.py "${TRAIN[@]}" --ac none selective --compile \
        --output "$OUT_DIR/bench_train.json" --append
else
    skip train_compile bench_train.json "compiling on the CPU would take the dry run past a minute"
fi
if [[ $DEVICE == cuda ]]; then
    part train_float8 bench_train.json 45 "$PY" scripts/bench_train.py "${TRAIN[@]}" --ac selective --float8 tensorwise \
        --output "$OUT_DIR/bench_train.json" --append
else
    skip train_float8 bench_train.json "float8 matmuls are emulated on the CPU: a step time there means nothing"
fi
say "done in $((SECONDS - START))s; results in $OUT_DIR"
