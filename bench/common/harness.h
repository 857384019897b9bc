// The benchmark harness shared by every bench/bench_<family>.cpp (docs/benchmarking.md has the method).
//
// One source, two builds:
//   - kdfuse_bench_<family> (CUDA library): times one fused call with CUDA events around it and
//     UseManualTime(), warm (repeated calls, data in L2 as it happens to be) and cold (an L2-sized memset
//     before each call), and per call from the replay of a CUDA graph of kGraphCalls captured calls (launch
//     gaps removed). Counters: the analytic minimum bytes and FLOPs of the call, GB/s and FLOP/s against
//     the device's peaks, and the kernels / memsets a call issues (counted from a captured graph).
//   - kdfuse_bench_<family>_sim (SIMT library), labelled "emulated", no time reported (the iteration time
//     is 0): per preset one "smoke" call executed at the preset's smoke scale, and one "counts" call at full
//     scale in the SIMT backend's count-only mode (launches and GEMMs validated and counted, not run), whose
//     kernel-launch and cuBLAS-call counts are exact for the GPU build too. The test suite runs these so
//     the benchmarks cannot rot on machines without a GPU.
#pragma once

#include <kdfuse/kdfuse.h>

#include "../../kernels/common/cuda_api.h"
#include "../../kernels/common/float16.h"
#include "presets.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kdfbench {

#if defined(KDFUSE_SIMT)
inline constexpr bool kEmulated = true;
#else
inline constexpr bool kEmulated = false;
#endif

// Calls per CUDA graph replayed in the "graph" variant.
inline constexpr int kGraphCalls = 20;

struct DeviceInfo {
    std::string name;
    double peak_bytes_per_s;  // memory clock x bus width x 2 (DDR) / 8
    double peak_fp32_flops;   // SMs x FP32 lanes per SM x 2 x SM clock
    size_t l2_bytes;
};
const DeviceInfo& device();

// Analytic minimum of one call: bytes that must cross the memory bus (fp32 inputs read once, outputs
// written once) and FLOPs of its GEMMs (0 for the elementwise losses).
struct Model {
    double bytes = 0.0;
    double flops = 0.0;
};

// Throws std::runtime_error naming `what` when e is not cudaSuccess.
void check_cuda(cudaError_t e, const char* what);

// Device memory of n T's, freed on destruction.
template <typename T>
class Array {
public:
    explicit Array(size_t n) : n_(n) { check_cuda(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
    ~Array() { cudaFree(p_); }
    Array(const Array&) = delete;
    Array& operator=(const Array&) = delete;
    T* get() const { return p_; }
    size_t size() const { return n_; }
    void upload(const std::vector<T>& host)
    {
        check_cuda(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    }

private:
    T* p_ = nullptr;
    size_t n_;
};

// n floats uniform in [lo, hi) (a fixed-seed generator), uploaded.
std::unique_ptr<Array<float>> uniform(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f);
// The same values rounded to bf16, uploaded.
std::unique_ptr<Array<__nv_bfloat16>> uniform_bf16(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f);
std::unique_ptr<Array<unsigned char>> workspace(size_t bytes);

// One loss call of one preset, ready to run: owns its buffers; `call` issues the fused forward+backward
// on `stream` and returns its status.
struct Case {
    Model model;
    std::function<kdfStatus_t(kdfHandle_t, cudaStream_t)> call;
    std::vector<std::shared_ptr<void>> keep;  // the buffers `call` uses

    template <typename T>
    T* hold(std::unique_ptr<Array<T>> a)
    {
        T* p = a->get();
        keep.emplace_back(std::shared_ptr<Array<T>>(std::move(a)));
        return p;
    }
};

// A preset's case at a scale (presets.h): full (GPU, and count-only on the SIMT backend), smoke, or another batch.
using CaseFactory = std::function<Case(const Scale&)>;

// Registers "<loss>/<preset>/{warm,cold,graph}" (GPU) or "<loss>/<preset>/{smoke,counts}" (SIMT), and with the
// traffic-instrumented SIMT library (KDFUSE_BENCH_TRAFFIC) "<loss>/<preset>/model": the inputs of the roofline
// model (bench/roofline.py). `batch` is the preset's batch; the traffic of a call, every other dimension fixed,
// is a polynomial of degree `batch_degree` in the batch (the model measures it at batch_degree + 2 small batches,
// fits it through all but the last and checks the fit on the last), or 0: not a polynomial (iterations that
// depend on the data), measured at full size.
void register_case(const std::string& loss, const std::string& preset, int64_t batch, CaseFactory make,
                   int batch_degree = 1);

}  // namespace kdfbench
