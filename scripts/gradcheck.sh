#!/usr/bin/env bash
# The README's main-job command: the gradient check of every implemented loss against the PyTorch
# reference (python/kdfuse/gradcheck/). Installs what is missing, builds the SIMT library (and the
# CUDA library when nvcc is found), checks the SIMT build on the CPU and, when a GPU is visible, the
# CUDA build on the GPU. Exits non-zero if any check fails.
#
# Environment: KDFUSE_JOBS (parallel build jobs, default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

jobs=${KDFUSE_JOBS:-$(nproc)}

# Runs a command with its output in build/$1.log; shows the log's tail only when it fails.
quiet() {
    local log="build/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "kdfuse: failed: $* (full output in $log)" >&2
        return 1
    fi
}

step "dependencies"
kdfuse_install_debian_packages
py=$(kdfuse_setup_venv | tail -n 1)
echo "Python: $py"
nvcc=$(kdfuse_find_nvcc)
cuda_args=(-DKDFUSE_BUILD_CUDA=OFF)
targets=(kdfuse_sim)
if [ -n "$nvcc" ]; then
    cuda_args=(-DKDFUSE_BUILD_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
    targets+=(kdfuse)
    echo "CUDA compiler: $nvcc"
else
    echo "nvcc not found: building the SIMT library only"
fi

step "configure and build (${targets[*]})"
mkdir -p build
quiet gradcheck-configure cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKDFUSE_SIMT_CONTRACT="$(kdfuse_contract_option)" \
    "${cuda_args[@]}"
target_args=()
for t in "${targets[@]}"; do target_args+=(--target "$t"); done
quiet gradcheck-build cmake --build build -j "$jobs" "${target_args[@]}"
echo "built: ${targets[*]}"

export PYTHONPATH=python:python_ref
status=0

step "gradient check, SIMT library on the CPU"
"$py" -m kdfuse.gradcheck --backend simt --lib build/simt/libkdfuse_sim.so || status=1

if [ -n "$nvcc" ] && [ -f build/libkdfuse.so ] && nvidia-smi -L >/dev/null 2>&1; then
    step "gradient check, CUDA library on the GPU"
    "$py" -m kdfuse.gradcheck --backend cuda --lib build/libkdfuse.so || status=1
elif [ -n "$nvcc" ]; then
    echo
    echo "no GPU (nvidia-smi -L failed): CUDA gradient check skipped"
fi

if [ "$status" -eq 0 ]; then
    step "gradient check passed"
else
    step "gradient check FAILED"
fi
exit "$status"
