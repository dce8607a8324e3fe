#!/usr/bin/env bash
# Download here what the GPU machine's image lacks for scripts/gpu_check.sh, to travel with the working tree.
#
#   scripts/fetch_gpu_wheels.sh            # wheels into .whl/, EGL/GL loader packages into .gl/
#   scripts/fetch_gpu_wheels.sh --no-gl    # wheels only
#
# The GPU image (offline; Python 3.12 x86-64, PyTorch 2.11 + CUDA 13, numpy, pillow, pyarrow, tokenizers,
# safetensors, einops, msgpack, huggingface-hub, tensorboard, ...; see the device README's package list)
# lacks, of what the checks import:
#   transformers==5.23.0  the parity oracle (the image has 5.17; every parity claim names 5.23.0)
#   torchdata             StatefulDataLoader, used by the trainer
#   av                    imported by the data pipeline the trainer loads (torchtitan_vla/data/video.py)
#   mujoco, PyOpenGL      the rendering check (MUJOCO_GL=egl goes through PyOpenGL's EGL)
#   torchao==0.18.0       the float8 training row (3.3 MB; its pure-Python float8 path runs on the image's torch)
# Meta-World (+ gymnasium, 37 MB) does not fit beside av in the 64 MiB that travel; without it the
# rendering check measures its plain MuJoCo scene and records the Meta-World scene as skipped.
# The project itself travels as source. Dependencies are pinned here one version each, --no-deps, as
# the device README asks (two versions of one package stop the whole install); the rest of their needs
# is in the image. .whl/ and .gl/ are git-ignored; name them in `carry` of the device call.
# Fails when wheels + debs + the working tree would exceed the 64 MiB a device call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LIMIT_MIB=64
WHEELS=(transformers==5.23.0 torchdata==0.11.0 av==18.1.0 mujoco==3.3.0 PyOpenGL==3.1.10 torchao==0.18.0)
GL_DEBS=(libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${WHEELS[@]}"

if [[ ${1:-} != --no-gl ]]; then
    # The device README's recipe: amd64 packages whatever this machine's processor, unpacked there with dpkg -x.
    rm -rf .gl && mkdir -p .gl /tmp/amd64/partial
    apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${apt_opts[@]}" update -qq
    (cd .gl && apt-get "${apt_opts[@]}" download -qq "${GL_DEBS[@]}")
fi

tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried_bytes=$(du -cb .whl $( [[ -d .gl ]] && echo .gl ) | tail -1 | cut -f1)
total_mib=$(( (tree_bytes + carried_bytes) / 1048576 ))
ls -l .whl $( [[ -d .gl ]] && echo .gl )
echo "carried: $((carried_bytes / 1048576)) MiB, working tree: $((tree_bytes / 1048576)) MiB, total: ${total_mib} MiB (limit ${LIMIT_MIB})"
if (( total_mib > LIMIT_MIB )); then
    echo "fetch_gpu_wheels.sh: ${total_mib} MiB exceeds the ${LIMIT_MIB} MiB a device call carries" >&2
    exit 1
fi
