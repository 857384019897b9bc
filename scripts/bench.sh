#!/usr/bin/env bash
# The benchmark suite in one command (docs/benchmarking.md): builds the Google Benchmark executables
# (bench/), runs every family with JSON output into build/bench-results/ and writes
# build/bench-results/report.md. With a GPU visible (nvidia-smi) the CUDA executables time the calls;
# without one the SIMT executables run the emulated smoke and full-size count-only calls, and the report
# holds launch counts and the traffic model, no timings.
#
# Environment: KDFUSE_JOBS (parallel build jobs, default: nproc); arguments are passed to every benchmark
# executable (e.g. --benchmark_filter=kd/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

jobs=${KDFUSE_JOBS:-$(nproc)}
kdfuse_install_debian_packages
nvcc=$(kdfuse_find_nvcc)
cuda_args=(-DKDFUSE_BUILD_CUDA=OFF)
if [ -n "$nvcc" ]; then
    cuda_args=(-DKDFUSE_BUILD_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
fi
gpu=0
if [ -n "$nvcc" ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    gpu=1
fi

families=()
for source in bench/bench_*.cpp; do
    name=$(basename "$source" .cpp)
    families+=("${name#bench_}")
done
targets=()
for family in "${families[@]}"; do
    if [ "$gpu" = 1 ]; then targets+=("kdfuse_bench_$family"); else targets+=("kdfuse_bench_${family}_sim"); fi
done

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cuda_args[@]}" >/dev/null
cmake --build build -j "$jobs" --target "${targets[@]}" >/dev/null

out=build/bench-results
rm -rf "$out"
mkdir -p "$out"
if [ "$gpu" = 0 ]; then
    echo "kdfuse: no GPU visible: running the emulated (SIMT) benchmarks; the report has counts, no timings"
fi
for i in "${!families[@]}"; do
    "build/bench/${targets[$i]}" --benchmark_format=console --benchmark_out_format=json \
        --benchmark_out="$out/${families[$i]}.json" "$@"
done
python3 bench/report.py "$out/report.md" "$out"/*.json
echo "kdfuse: report written to $out/report.md"
