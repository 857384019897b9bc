#!/usr/bin/env bash
# The benchmark suite in one command (docs/benchmarking.md): builds the Google Benchmark executables
# (bench/), runs every family with JSON output into build/bench-results/ and writes
# build/bench-results/report.md. With a GPU visible (nvidia-smi) the CUDA executables time the calls;
# without one the SIMT executables run the emulated smoke and full-size count-only calls and the traffic
# measurements of the roofline model (bench/roofline.py: build/bench-results/model.json), and the report holds
# launch counts and the modelled times, no timings. Then the PyTorch baseline (bench/torch_baseline.py,
# in the project's .venv): with a GPU, eager PyTorch, torch.compile and the kdfuse binding timed on the same
# presets, with peak memory, merged into the report, and the speedup chart build/bench-results/torch_speedup.png;
# without one its --smoke run (CPU, smoke scale, no timing: the eager and kdfuse losses compared).
#
# Environment: KDFUSE_JOBS (parallel build jobs, default: nproc); KDFUSE_BASELINE_ARGS (extra arguments of
# the baseline, e.g. "--loss kd,at --iters 20"); arguments are passed to every benchmark executable
# (e.g. --benchmark_filter=kd/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

jobs=${KDFUSE_JOBS:-$(nproc)}
kdfuse_install_debian_packages
py=$(kdfuse_setup_venv | tail -n 1)
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
# The PyTorch baseline needs the presets (as JSON) and the library its binding loads.
library=kdfuse_sim
lib_path=build/simt/libkdfuse_sim.so
if [ "$gpu" = 1 ]; then
    library=kdfuse
    lib_path=build/libkdfuse.so
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cuda_args[@]}" >/dev/null
cmake --build build -j "$jobs" --target "${targets[@]}" kdfuse_bench_presets "$library" >/dev/null

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

baseline_args=(--presets-exe build/bench/kdfuse_bench_presets --out "$out/torch_baseline.json")
if [ "$gpu" = 1 ]; then
    baseline_args+=(--chart "$out/torch_speedup.png")
else
    echo "kdfuse: PyTorch baseline in --smoke mode (CPU, smoke scale): no timings"
    baseline_args+=(--smoke)
fi
# A failing baseline still leaves the report of the C++ suites; the script then exits with its status.
baseline_status=0
# shellcheck disable=SC2086 # KDFUSE_BASELINE_ARGS is a list of arguments
KDFUSE_LIB="$lib_path" "$py" bench/torch_baseline.py "${baseline_args[@]}" ${KDFUSE_BASELINE_ARGS:-} ||
    baseline_status=$?

report_inputs=()
for family in "${families[@]}"; do report_inputs+=("$out/$family.json"); done
if [ -f "$out/torch_baseline.json" ]; then report_inputs+=(--torch "$out/torch_baseline.json"); fi
python3 bench/report.py "$out/report.md" "${report_inputs[@]}"
if [ "$gpu" = 0 ]; then
    family_outputs=()
    for family in "${families[@]}"; do family_outputs+=("$out/$family.json"); done
    PYTHONPATH=python:python_ref "$py" bench/eager_model.py --presets-exe build/bench/kdfuse_bench_presets \
        --out "$out/eager.json" >"$out/eager.log"
    python3 bench/roofline.py --out "$out/model.json" --markdown "$out/model.md" --eager "$out/eager.json" \
        "${family_outputs[@]}"
    { echo; echo "## Roofline model"; echo; cat "$out/model.md"; } >>"$out/report.md"
fi
echo "kdfuse: report written to $out/report.md"
if [ -f "$out/torch_speedup.png" ]; then
    echo "kdfuse: speedup chart written to $out/torch_speedup.png"
fi
if [ "$baseline_status" != 0 ]; then
    echo "kdfuse: the PyTorch baseline failed (status $baseline_status)" >&2
    exit "$baseline_status"
fi
