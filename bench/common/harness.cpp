// The benchmark harness (harness.h): device peaks, buffers, timing, counters, registration.
#include "harness.h"

#include <cmath>
#include <stdexcept>

namespace kdfbench {

void check_cuda(cudaError_t e, const char* what)
{
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

namespace {

void check_kdf(kdfStatus_t s)
{
    if (s != KDF_STATUS_SUCCESS)
        throw std::runtime_error(std::string(kdfGetStatusName(s)) + ": " + kdfGetLastErrorString());
}

int attribute(cudaDeviceAttr a, int dev)
{
    int v = 0;
    check_cuda(cudaDeviceGetAttribute(&v, a, dev), "cudaDeviceGetAttribute");
    return v;
}

// The handle and stream of one benchmark run.
struct Session {
    kdfHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
    Session()
    {
        check_kdf(kdfCreate(&handle));
        check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
    }
    ~Session()
    {
        cudaStreamDestroy(stream);
        kdfDestroy(handle);
    }
};

void set_model_counters(benchmark::State& state, const Model& m)
{
    state.counters["bytes"] = m.bytes;
    if (m.flops > 0) state.counters["flops"] = m.flops;
}

#if defined(KDFUSE_SIMT)

// The SIMT backend's count-only mode for the lifetime of the guard.
struct CountOnly {
    CountOnly() { kdfuse::simt::set_count_only(true); }
    ~CountOnly() { kdfuse::simt::set_count_only(false); }
};

// One call: at smoke scale, executed ("smoke"), or at full scale with launches and GEMMs counted but not
// executed ("counts"). The counts are the SIMT backend's exact counters.
void run_emulated(benchmark::State& state, const CaseFactory& make, bool counts)
{
    std::unique_ptr<CountOnly> guard = counts ? std::make_unique<CountOnly>() : nullptr;
    Session s;
    Case c = make(Scale{counts ? Scale::Full : Scale::Smoke, 0});
    for (auto _ : state) {
        kdfuse::simt::reset_counters();
        check_kdf(c.call(s.handle, s.stream));
        check_cuda(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
        state.SetIterationTime(0.0);
    }
    const auto counters = kdfuse::simt::counters();
    set_model_counters(state, c.model);
    state.counters["kernels"] = static_cast<double>(counters.kernel_launches);
    state.counters["cublas_calls"] = static_cast<double>(counters.cublas_calls);
    state.SetLabel(counts ? "emulated (SIMT backend, full scale, count-only): no timing"
                          : "emulated (SIMT backend, smoke scale): no timing");
}

#if defined(KDFUSE_BENCH_TRAFFIC)

// The operations of one call (kernels, memsets, GEMMs, by name) and the bytes they move: measured for kernel
// code, memsets and copies; the GEMMs' minimum traffic (the cuBLAS shim is not instrumented kernel code).
struct CallTraffic {
    std::vector<std::string> ops;
    double bytes = 0.0;
};

CallTraffic record_call(const Case& c, const Session& s)
{
    kdfuse::simt::reset_counters();
    kdfuse::simt::set_traffic_recording(true);
    const kdfStatus_t status = c.call(s.handle, s.stream);
    kdfuse::simt::set_traffic_recording(false);
    check_kdf(status);
    check_cuda(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
    CallTraffic t;
    for (const kdfuse::simt::LaunchTraffic& r : kdfuse::simt::traffic()) {
        t.ops.push_back(r.name);
        t.bytes += static_cast<double>(r.bytes_loaded + r.bytes_stored);
    }
    return t;
}

// The polynomial through (xs[i], ys[i]) (Lagrange form), at x.
double interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x)
{
    double sum = 0.0;
    for (size_t i = 0; i < xs.size(); ++i) {
        double term = ys[i];
        for (size_t j = 0; j < xs.size(); ++j)
            if (j != i) term *= (x - xs[j]) / (xs[i] - xs[j]);
        sum += term;
    }
    return sum;
}

// Calls whose minimum traffic is at most this are measured at full size, executed; larger ones are fitted.
constexpr double kDirectBytes = 32e6;

// The roofline model's inputs for one case: at full scale in count-only mode the exact operation counts and the
// sequence of operations; and the traffic, measured. A call of at most kDirectBytes, or one whose traffic is not
// a polynomial in the batch (batch_degree 0), is executed at full size; a larger one at batch_degree + 2 small batches (every other dimension as in the preset), fitted through all
// but the last small batch, checked on the last and evaluated at the preset's batch. `same_path` is 1 when every
// executed call issued the same operations (kernel variants included) as the full-size one, so a fit follows
// the preset's code path.
void run_model(benchmark::State& state, const CaseFactory& make, int64_t batch, int degree)
{
    const Session s;
    CallTraffic full;
    kdfuse::simt::Counters counts{};
    Model model;
    {
        const CountOnly guard;
        const Case c = make(Scale{});
        full = record_call(c, s);
        counts = kdfuse::simt::counters();
        model = c.model;
    }
    const bool direct = degree == 0 || model.bytes <= kDirectBytes;
    const int64_t first = direct ? batch : degree == 1 ? 2 : 3;  // 3: the smallest batch with an RKD angle term
    const int points = direct ? 1 : degree + 2;
    std::vector<double> xs, ys;
    bool same_path = true;
    for (int i = 0; i < points; ++i) {
        const int64_t b = first + i;
        const CallTraffic t = record_call(make(direct ? Scale{} : Scale{Scale::Batch, b}), s);
        same_path = same_path && t.ops == full.ops;
        xs.push_back(static_cast<double>(b));
        ys.push_back(t.bytes);
    }
    double measured = ys[0], fit_error = 0.0;
    if (!direct) {
        const std::vector<double> fit_x(xs.begin(), xs.end() - 1), fit_y(ys.begin(), ys.end() - 1);
        const double check = interpolate(fit_x, fit_y, xs.back());
        fit_error = ys.back() > 0 ? std::abs(check - ys.back()) / ys.back() : 0.0;
        measured = interpolate(fit_x, fit_y, static_cast<double>(batch));
    }
    for (auto _ : state) state.SetIterationTime(0.0);
    set_model_counters(state, model);
    state.counters["batch"] = static_cast<double>(batch);
    state.counters["kernels"] = static_cast<double>(counts.kernel_launches);
    state.counters["memsets"] = static_cast<double>(counts.memsets);
    state.counters["cublas_calls"] = static_cast<double>(counts.cublas_calls);
    state.counters["gemm_flops"] = static_cast<double>(counts.gemm_flops);
    state.counters["bytes_measured"] = measured;
    state.counters["fit_error"] = fit_error;
    state.counters["same_path"] = same_path ? 1.0 : 0.0;
    state.counters["direct"] = direct ? 1.0 : 0.0;
    state.SetLabel(direct ? "emulated (SIMT traffic build): counts and bytes measured at full scale; no timing"
                          : "emulated (SIMT traffic build): counts at full scale, bytes measured at batches " +
                                std::to_string(first) + ".." + std::to_string(first + degree + 1) +
                                " and fitted; no timing");
}

#endif  // KDFUSE_BENCH_TRAFFIC

#else

enum class Mode { Warm, Cold, Graph };

// Kernels and memsets of one call, from a captured graph.
void count_nodes(benchmark::State& state, Case& c, const Session& s)
{
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    const kdfStatus_t st = c.call(s.handle, s.stream);
    check_cuda(cudaStreamEndCapture(s.stream, &graph), "cudaStreamEndCapture");
    check_kdf(st);
    size_t n = 0;
    check_cuda(cudaGraphGetNodes(graph, nullptr, &n), "cudaGraphGetNodes");
    std::vector<cudaGraphNode_t> nodes(n);
    check_cuda(cudaGraphGetNodes(graph, nodes.data(), &n), "cudaGraphGetNodes");
    double kernels = 0, memsets = 0;
    for (cudaGraphNode_t node : nodes) {
        cudaGraphNodeType type;
        check_cuda(cudaGraphNodeGetType(node, &type), "cudaGraphNodeGetType");
        kernels += type == cudaGraphNodeTypeKernel;
        memsets += type == cudaGraphNodeTypeMemset;
    }
    cudaGraphDestroy(graph);
    state.counters["kernels"] = kernels;
    state.counters["memsets"] = memsets;
}

cudaGraphExec_t capture_calls(Case& c, const Session& s, int calls)
{
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    kdfStatus_t st = KDF_STATUS_SUCCESS;
    for (int i = 0; i < calls && st == KDF_STATUS_SUCCESS; ++i) st = c.call(s.handle, s.stream);
    check_cuda(cudaStreamEndCapture(s.stream, &graph), "cudaStreamEndCapture");
    check_kdf(st);
    cudaGraphExec_t exec = nullptr;
    check_cuda(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(graph);
    return exec;
}

void run_gpu(benchmark::State& state, const CaseFactory& make, Mode mode)
{
    Session s;
    Case c = make(Scale{});
    const DeviceInfo& d = device();
    std::unique_ptr<Array<unsigned char>> flush;
    if (mode == Mode::Cold) flush = std::make_unique<Array<unsigned char>>(2 * d.l2_bytes);
    cudaGraphExec_t graph = mode == Mode::Graph ? capture_calls(c, s, kGraphCalls) : nullptr;
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    check_kdf(c.call(s.handle, s.stream));  // warm-up (and first-touch of the buffers)
    for (auto _ : state) {
        if (flush) check_cuda(cudaMemsetAsync(flush->get(), 0, flush->size(), s.stream), "cudaMemsetAsync");
        check_cuda(cudaEventRecord(start, s.stream), "cudaEventRecord");
        if (graph)
            check_cuda(cudaGraphLaunch(graph, s.stream), "cudaGraphLaunch");
        else
            check_kdf(c.call(s.handle, s.stream));
        check_cuda(cudaEventRecord(stop, s.stream), "cudaEventRecord");
        check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0;
        check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        state.SetIterationTime(ms * 1e-3 / (graph ? kGraphCalls : 1));
    }
    if (graph) cudaGraphExecDestroy(graph);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    set_model_counters(state, c.model);
    count_nodes(state, c, s);
    // Rates over the manual (per-call) time.
    state.counters["GB/s"] = benchmark::Counter(c.model.bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["%peak_bw"] =
        benchmark::Counter(100.0 * c.model.bytes / d.peak_bytes_per_s, benchmark::Counter::kIsIterationInvariantRate);
    if (c.model.flops > 0) {
        state.counters["GFLOP/s"] = benchmark::Counter(c.model.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
        state.counters["%peak_fp32"] =
            benchmark::Counter(100.0 * c.model.flops / d.peak_fp32_flops, benchmark::Counter::kIsIterationInvariantRate);
    }
    state.SetLabel(d.name);
}

#endif

}  // namespace

const DeviceInfo& device()
{
    static const DeviceInfo info = [] {
        DeviceInfo d{};
        int dev = 0;
        check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
        cudaDeviceProp prop{};
        check_cuda(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
        d.name = prop.name;
        d.l2_bytes = static_cast<size_t>(attribute(cudaDevAttrL2CacheSize, dev));
        d.peak_bytes_per_s = 2.0 * attribute(cudaDevAttrMemoryClockRate, dev) * 1e3 *
                             attribute(cudaDevAttrGlobalMemoryBusWidth, dev) / 8.0;
#if !defined(KDFUSE_SIMT)
        // FP32 lanes per SM: 64 on GA100 (sm_80), 128 on sm_86/89/90.
        const int major = attribute(cudaDevAttrComputeCapabilityMajor, dev);
        const int minor = attribute(cudaDevAttrComputeCapabilityMinor, dev);
        const int lanes = major == 8 && minor == 0 ? 64 : 128;
        d.peak_fp32_flops = 2.0 * lanes * attribute(cudaDevAttrMultiProcessorCount, dev) *
                            attribute(cudaDevAttrClockRate, dev) * 1e3;
#endif
        return d;
    }();
    return info;
}

namespace {

// n floats uniform in [lo, hi) from a fixed-seed xorshift64* generator.
std::vector<float> uniform_values(size_t n, unsigned seed, float lo, float hi)
{
    std::vector<float> host(n);
    uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (float& v : host) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;  // xorshift64*
        const double u = static_cast<double>((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
        v = static_cast<float>(lo + (hi - lo) * u);
    }
    return host;
}

}  // namespace

std::unique_ptr<Array<float>> uniform(size_t n, unsigned seed, float lo, float hi)
{
    auto a = std::make_unique<Array<float>>(n);
#if defined(KDFUSE_SIMT)
    if (kdfuse::simt::count_only()) return a;  // contents unused
#endif
    a->upload(uniform_values(n, seed, lo, hi));
    return a;
}

std::unique_ptr<Array<__nv_bfloat16>> uniform_bf16(size_t n, unsigned seed, float lo, float hi)
{
    auto a = std::make_unique<Array<__nv_bfloat16>>(n);
#if defined(KDFUSE_SIMT)
    if (kdfuse::simt::count_only()) return a;  // contents unused
#endif
    const std::vector<float> values = uniform_values(n, seed, lo, hi);
    std::vector<__nv_bfloat16> host(n);
    std::transform(values.begin(), values.end(), host.begin(), kdf::from_float<__nv_bfloat16>);
    a->upload(host);
    return a;
}

std::unique_ptr<Array<unsigned char>> workspace(size_t bytes) { return std::make_unique<Array<unsigned char>>(bytes); }

namespace {

// Runs f(state), turning an exception (a failed CUDA or kdfuse call) into a reported error.
template <typename F>
void guarded(benchmark::State& state, F&& f)
{
    try {
        f(state);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
}

}  // namespace

void register_case(const std::string& loss, const std::string& preset, int64_t batch, CaseFactory make, int batch_degree)
{
    const std::string base = loss + "/" + preset;
#if defined(KDFUSE_SIMT)
    for (const bool counts : {false, true})
        benchmark::RegisterBenchmark((base + (counts ? "/counts" : "/smoke")).c_str(),
                                     [make, counts](benchmark::State& st) {
                                         guarded(st, [&](auto& s) { run_emulated(s, make, counts); });
                                     })
            ->Iterations(1)
            ->UseManualTime();
#if defined(KDFUSE_BENCH_TRAFFIC)
    benchmark::RegisterBenchmark((base + "/model").c_str(),
                                 [make, batch, batch_degree](benchmark::State& st) {
                                     guarded(st, [&](auto& s) { run_model(s, make, batch, batch_degree); });
                                 })
        ->Iterations(1)
        ->UseManualTime();
#else
    (void)batch, (void)batch_degree;
#endif
#else
    (void)batch, (void)batch_degree;
    for (auto [name, mode] : {std::pair{"warm", Mode::Warm}, std::pair{"cold", Mode::Cold}, std::pair{"graph", Mode::Graph}})
        benchmark::RegisterBenchmark((base + "/" + name).c_str(),
                                     [make, mode](benchmark::State& st) {
                                         guarded(st, [&](auto& s) { run_gpu(s, make, mode); });
                                     })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
#endif
}

}  // namespace kdfbench
