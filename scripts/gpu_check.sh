#!/usr/bin/env bash
# The one command for the day a GPU is lent (docs/benchmarking.md, "On a GPU"): on a machine with one H100 or H200
# and the CUDA toolkit, in about 8 minutes, builds the CUDA library, the GPU tests, the benchmarks and the PyTorch
# operators with the same CMake settings as CI (scripts/test.sh), then runs
#   1. the GPU test suite (ctest -R '^gpu\.': the portability self-tests against real CUB),
#   2. the gradient check of every loss on the CUDA backend,
#   3. the benchmarks of every loss at the CIFAR preset and one large preset, warm and cold,
#   4. the PyTorch baseline (eager, torch.compile, kdfuse) on a few presets,
#   5. the report, and the measured times beside the modelled ones (docs/model.json, bench/roofline.py),
# and writes every log, JSON file and the report under OUTDIR (default build/gpu-check). Each step has a time
# limit (480 s in all) and a failing step does not stop the later ones; the exit status is that of the first
# failure.
#
#   bash scripts/gpu_check.sh [--dry-run] [OUTDIR]
#
# Without a GPU it stops at once with a message (exit 2); --dry-run prints the steps it would run, GPU or not.
# Offline machines: nothing is installed; what is missing (nvcc, cmake, GoogleTest, Google Benchmark, Boost, a Python
# with torch) is named before anything is built.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
out=build/gpu-check
for arg in "$@"; do
    case "$arg" in
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
    esac
done

gpu_name() { nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1; }
gpu=$(command -v nvidia-smi >/dev/null && gpu_name || true)
if [ -z "$gpu" ] && [ "$dry" = 0 ]; then
    echo "gpu_check: no GPU visible (nvidia-smi finds none): nothing to check here." >&2
    echo "gpu_check: run it on a machine with an H100 or H200; --dry-run shows what it would run." >&2
    exit 2
fi

nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
py=${KDFUSE_GPU_PYTHON:-python3}
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" >/dev/null 2>&1; then py=.venv/bin/python; fi
build=build-gpu
presets='(cifar100_resnet32x4_resnet8x4|imagenet_resnet34_resnet18|llm_8192x128256|llm_8192x128256_bf16|cifar100_n64_k16384)'
families=(kd feature gram crd)
status=0

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND with its output in OUTDIR/NAME.log (printed in --dry-run).
step() {
    local name=$1 limit=$2
    shift 2
    if [ "$dry" = 1 ]; then
        printf '[%s, %ss] %s\n' "$name" "$limit" "$*"
        return 0
    fi
    printf '==== %s\n' "$name"
    local rc=0
    timeout "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
    tail -n 5 "$out/$name.log"
    if [ "$rc" != 0 ]; then
        echo "gpu_check: step $name failed (status $rc; log $out/$name.log)" >&2
        [ "$status" != 0 ] || status=$rc
    fi
    return 0
}

if [ "$dry" = 1 ]; then
    echo "gpu_check --dry-run: GPU ${gpu:-none visible here}; output would go to $out"
else
    mkdir -p "$out"
    missing=()
    [ -x "$nvcc" ] || missing+=("nvcc")
    command -v cmake >/dev/null || missing+=("cmake")
    "$py" -c "import torch" >/dev/null 2>&1 || missing+=("a Python with torch ($py)")
    for header in gtest/gtest.h benchmark/benchmark.h boost/context/fiber.hpp; do
        [ -f "/usr/include/$header" ] || missing+=("/usr/include/$header")
    done
    if [ "${#missing[@]}" != 0 ]; then
        printf 'gpu_check: missing on this machine: %s\n' "${missing[*]}" >&2
        exit 3
    fi
    { echo "gpu: $gpu"; nvidia-smi; "$nvcc" --version; git rev-parse HEAD; } >"$out/machine.txt" 2>&1 || true
fi

targets=(kdfuse kdfuse_gpu_tests kdfuse_bench_presets kdfuse_torch_cuda)
for family in "${families[@]}"; do targets+=("kdfuse_bench_$family"); done
step configure 45 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKDFUSE_BUILD_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DKDFUSE_PYTHON="$py"
step build 150 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
step gpu_tests 30 ctest --test-dir "$build" -R '^gpu\.' --output-on-failure
step gradcheck 60 env PYTHONPATH=python:python_ref "$py" -m kdfuse.gradcheck --backend cuda --lib "$build/libkdfuse.so"
for family in "${families[@]}"; do
    step "bench_$family" 30 "$build/bench/kdfuse_bench_$family" --benchmark_filter="$presets/(warm|cold)" \
        --benchmark_out_format=json --benchmark_out="$out/bench_$family.json"
done
step torch_baseline 50 env PYTHONPATH=python:python_ref KDFUSE_LIB="$build/libkdfuse.so" \
    KDFUSE_TORCH_LIB_DIR="$build/torch" "$py" bench/torch_baseline.py --presets-exe "$build/bench/kdfuse_bench_presets" \
    --preset cifar100_resnet32x4_resnet8x4,imagenet_resnet34_resnet18,llm_8192x32000 --iters 20 \
    --out "$out/torch_baseline.json"
reports=()
for family in "${families[@]}"; do reports+=("$out/bench_$family.json"); done
step report 15 "$py" bench/report.py "$out/report.md" "${reports[@]}" --torch "$out/torch_baseline.json"
step measured_vs_modelled 10 "$py" bench/roofline.py --compare docs/model.json --markdown "$out/measured_vs_modelled.md" \
    "${reports[@]}"

if [ "$dry" = 0 ]; then
    echo "gpu_check: results in $out (status $status)"
fi
exit "$status"
