// Structured random fuzzing of the C API on the SIMT backend (run under AddressSanitizer + UBSan in CI).
//
// Each case draws valid random params for a random entry point (tests/common/entry_points.h), then either runs
// the call as it is or breaks one thing about it, and checks the answer:
//   valid            SUCCESS, an empty error detail, read-only inputs unchanged, no SIMT error report;
//   null             a required pointer NULL: KDF_STATUS_NULL_POINTER naming it;
//   misaligned       a pointer one byte off: KDF_STATUS_MISALIGNED_POINTER naming it;
//   overlap          a written buffer at another buffer's address: KDF_STATUS_INVALID_VALUE "overlaps";
//   short workspace  one byte to a few bytes short: KDF_STATUS_WORKSPACE_TOO_SMALL;
//   struct_size      wrong: KDF_STATUS_INVALID_VALUE from the call and the size query;
//   handle           NULL: KDF_STATUS_NULL_POINTER; destroyed: KDF_STATUS_INVALID_VALUE;
//   grad_scale       NaN or infinite: KDF_STATUS_INVALID_VALUE;
//   library          the handle and library-wide entry points (kdfCreate, kdfDestroy, the mode setters and getters,
//                    the version, backend and status strings) with random arguments: every status as documented;
//   fields           one to three params fields set to extreme values (negative, 0, 2^31, INT64_MAX, NaN, out-of-range
//                    enums...), run in count-only mode with stand-in pointers that are never dereferenced: the size
//                    query and the call must agree on a params error; when the query accepts the params the call
//                    may only refuse a pointer (NULL, alignment, overlap): a CUDA, cuBLAS or internal error, or a
//                    shape error the query missed, means validation let through what a launch then refused.
// In every refusal the detail names the function, and no written buffer changes. Valid calls run with a random
// math mode (FP32 or TF32) and determinism mode on the handle. Sanitizer reports abort the run.
//
// Usage: kdfuse_fuzz [--seconds S] [--seed N] [--case I]   (KDFUSE_FUZZ_SECONDS, KDFUSE_FUZZ_SEED as defaults).
// Case i of seed s draws from its own generator, so `--seed s --case i` replays exactly one failing case.
#include "../common/entry_points.h"

#include <kdfuse/simt/runtime.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using kdftest::Buffer;
using kdftest::Entry;
using kdftest::Field;
using kdftest::Pointers;
using kdftest::Rng;

std::vector<std::string> g_simt_errors;

void on_simt_error(const char* message, void*) { g_simt_errors.push_back(message); }

enum class Mutation { Valid, Null, Misaligned, Overlap, ShortWorkspace, StructSize, Handle, GradScale, Fields, Library, Count };
const char* kMutationNames[] = {"valid", "null", "misaligned", "overlap", "short-workspace", "struct_size", "handle",
                                "grad_scale", "fields", "library"};

// Device allocations of one case, freed at its end.
struct Allocations {
    std::vector<void*> owned;
    ~Allocations()
    {
        for (void* p : owned) cudaFree(p);
    }
    unsigned char* get(size_t bytes)
    {
        void* p = nullptr;
        if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) return nullptr;
        owned.push_back(p);
        return static_cast<unsigned char*>(p);
    }
};

std::vector<unsigned char> download(const void* p, size_t bytes)
{
    std::vector<unsigned char> h(bytes);
    if (bytes) cudaMemcpy(h.data(), p, bytes, cudaMemcpyDeviceToHost);
    return h;
}

struct Case {
    uint64_t seed;
    uint64_t index;
    kdfHandle_t handle;
    cudaStream_t stream;
    std::string failure;  // empty: passed
    std::string what;     // the entry point and the mutation, for the report
    kdfStatus_t status = KDF_STATUS_SUCCESS;

    void fail(const std::string& why)
    {
        if (failure.empty()) failure = why;
    }
    void expect_status(kdfStatus_t got, kdfStatus_t want, const std::string& needle, const std::string& fn)
    {
        status = got;
        const std::string detail = kdfGetLastErrorString();
        if (got != want)
            fail(std::string("status ") + kdfGetStatusName(got) + " (" + detail + "), expected " + kdfGetStatusName(want));
        else if (want != KDF_STATUS_SUCCESS && detail.rfind(fn + ": ", 0) != 0)
            fail("detail '" + detail + "' does not start with '" + fn + ": '");
        else if (want != KDF_STATUS_SUCCESS && detail.find(needle) == std::string::npos)
            fail("detail '" + detail + "' does not mention '" + needle + "'");
        else if (want == KDF_STATUS_SUCCESS && !detail.empty())
            fail("success with a non-empty detail '" + detail + "'");
    }
};

// a + b with two's-complement wrap-around (the fuzzer's own arithmetic must not overflow).
int64_t wrap(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }

int64_t extreme_i64(Rng& r, int64_t current)
{
    const int64_t values[] = {-1, 0, 1, 2, INT64_MIN, INT64_MAX, INT64_MAX / 2, INT64_MAX / 16 + 1, (int64_t(1) << 31) - 1,
                              int64_t(1) << 31, (int64_t(1) << 32) + 1, int64_t(1) << 40, 46340, 46341, 1025, 65536,
                              wrap(current, -1), wrap(current, 1), wrap(current, current), static_cast<int64_t>(r() % 100)};
    return values[r() % (sizeof(values) / sizeof(values[0]))];
}

float extreme_f32(Rng& r)
{
    const float values[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -1.0f, 1e-30f, 1e30f, 1e-8f, 1.0f / 64.0f, 0.0156f, 2.0f, 0.5f};
    return values[r() % (sizeof(values) / sizeof(values[0]))];
}

void mutate_field(Rng& r, const Entry& e, const Field& f)
{
    unsigned char* base = static_cast<unsigned char*>(e.params.get()) + f.offset;
    switch (f.type) {
    case Field::I64: {
        int64_t v;
        std::memcpy(&v, base, 8);
        v = extreme_i64(r, v);
        std::memcpy(base, &v, 8);
        break;
    }
    case Field::F32: {
        const float v = extreme_f32(r);
        std::memcpy(base, &v, 4);
        break;
    }
    case Field::I32:
    case Field::Enum:
    case Field::Flag: {
        const int values[] = {-1, 0, 1, 2, 3, 1000, INT_MIN, INT_MAX};
        std::memcpy(base, &values[r() % 8], 4);
        break;
    }
    case Field::U64: {
        const uint64_t values[] = {0, 8, r(), UINT64_MAX};
        std::memcpy(base, &values[r() % 4], 8);
        break;
    }
    }
}

// The buffers of a valid call: exact-size allocations holding valid values; absent ones NULL. `extra` bytes of
// slack after each allocation let a shifted (misaligned) pointer stay inside it.
Pointers allocate(Allocations& a, const Entry& e, Rng& r, std::vector<std::vector<unsigned char>>& values, size_t extra = 0)
{
    Pointers p;
    values.clear();
    for (const Buffer& b : e.buffers) {
        values.push_back(kdftest::host_values(b, r));
        if (!b.present || (b.bytes == 0 && b.name == "workspace")) {
            p.push_back(nullptr);
            continue;
        }
        unsigned char* d = a.get(b.bytes + extra);
        if (b.bytes) cudaMemcpy(d, values.back().data(), b.bytes, cudaMemcpyHostToDevice);
        p.push_back(d);
    }
    return p;
}

size_t workspace_bytes(const Entry& e)
{
    const int w = e.workspace_index();
    return w < 0 ? 0 : e.buffers[w].bytes;
}

// Every written buffer still in its own allocation holds what it held before a refused call.
void expect_untouched(Case& c, const Entry& e, const Pointers& p, const Pointers& own,
                      const std::vector<std::vector<unsigned char>>& values)
{
    for (size_t i = 0; i < e.buffers.size(); ++i)
        if (p[i] != nullptr && p[i] == own[i] && e.buffers[i].written && e.buffers[i].name != "workspace" &&
            download(p[i], e.buffers[i].bytes) != values[i])
            c.fail("refused call changed " + e.buffers[i].name);
}

void run_valid(Case& c, Entry& e, Rng& r)
{
    Allocations a;
    std::vector<std::vector<unsigned char>> values;
    const Pointers p = allocate(a, e, r, values);
    c.expect_status(e.call(c.handle, p, workspace_bytes(e), 1.0f, c.stream), KDF_STATUS_SUCCESS, "", e.name);
    for (size_t i = 0; i < e.buffers.size(); ++i)
        if (p[i] != nullptr && !e.buffers[i].written && download(p[i], e.buffers[i].bytes) != values[i])
            c.fail("the call wrote into its input " + e.buffers[i].name);
}

// Indices of the present buffers satisfying `pred`.
template <typename Pred>
std::vector<size_t> pick(const Entry& e, Pred pred)
{
    std::vector<size_t> out;
    for (size_t i = 0; i < e.buffers.size(); ++i)
        if (e.buffers[i].present && e.buffers[i].bytes > 0 && pred(e.buffers[i])) out.push_back(i);
    return out;
}

void run_broken(Case& c, Entry& e, Rng& r, Mutation m)
{
    Allocations a;
    std::vector<std::vector<unsigned char>> values;
    Pointers p = allocate(a, e, r, values, 16);
    const Pointers own = p;
    size_t ws = workspace_bytes(e);
    float scale = 1.0f;
    kdfHandle_t handle = c.handle;
    kdfStatus_t want = KDF_STATUS_INVALID_VALUE;
    std::string needle;
    switch (m) {
    case Mutation::Null: {
        const auto cand = pick(e, [](const Buffer& b) { return b.required; });
        if (cand.empty()) return run_valid(c, e, r);
        const size_t i = cand[r() % cand.size()];
        p[i] = nullptr, want = KDF_STATUS_NULL_POINTER, needle = e.buffers[i].name;
        break;
    }
    case Mutation::Misaligned: {
        const auto cand = pick(e, [](const Buffer& b) { return b.alignment > 1; });
        if (cand.empty()) return run_valid(c, e, r);
        const size_t i = cand[r() % cand.size()];
        p[i] = static_cast<unsigned char*>(p[i]) + 1 + r() % (e.buffers[i].alignment - 1);
        want = KDF_STATUS_MISALIGNED_POINTER, needle = e.buffers[i].name;
        break;
    }
    case Mutation::Overlap: {
        const auto written = pick(e, [](const Buffer& b) { return b.written; });
        if (written.empty()) return run_valid(c, e, r);
        const size_t w = written[r() % written.size()];
        auto others = pick(e, [](const Buffer&) { return true; });
        std::erase(others, w);
        if (others.empty()) return run_valid(c, e, r);
        const size_t o = others[r() % others.size()];
        const bool in_place = e.name == "kdfOFDMarginFromBN" && e.buffers[w].name == "margin";
        p[w] = p[o], want = in_place ? KDF_STATUS_SUCCESS : KDF_STATUS_INVALID_VALUE, needle = "overlaps";
        break;
    }
    case Mutation::ShortWorkspace:
        if (ws == 0) return run_valid(c, e, r);
        ws -= 1 + r() % ws, want = KDF_STATUS_WORKSPACE_TOO_SMALL, needle = "workspace_bytes";
        break;
    case Mutation::StructSize: {
        if (!e.query) return run_valid(c, e, r);
        const size_t bad[] = {0, e.params_size - 8, e.params_size + 8, SIZE_MAX};
        std::memcpy(e.params.get(), &bad[r() % 4], sizeof(size_t));
        size_t bytes = 0;
        c.expect_status(e.query(&bytes), KDF_STATUS_INVALID_VALUE, "struct_size", e.name + "WorkspaceSize");
        if (!c.failure.empty()) return;
        needle = "struct_size";
        break;
    }
    case Mutation::Handle:
        if (r() & 1) {
            handle = nullptr, want = KDF_STATUS_NULL_POINTER, needle = "handle";
        } else {
            kdfCreate(&handle);
            kdfDestroy(handle);
            needle = "not a live kdfHandle_t";
        }
        break;
    case Mutation::GradScale:
        if (!e.has_grad_scale) return run_valid(c, e, r);
        scale = (r() & 1) ? NAN : ((r() & 1) ? INFINITY : -INFINITY), needle = "grad_scale";
        break;
    default: break;
    }
    c.expect_status(e.call(handle, p, ws, scale, c.stream), want, needle, e.name);
    if (want != KDF_STATUS_SUCCESS) expect_untouched(c, e, p, own, values);
}

void run_fields(Case& c, Entry& e, Rng& r)
{
    const int n = 1 + static_cast<int>(r() % 3);
    for (int i = 0; i < n && !e.fields.empty(); ++i) {
        const Field& f = e.fields[r() % e.fields.size()];
        mutate_field(r, e, f);
        c.what += " " + f.name;
    }
    kdfStatus_t query = KDF_STATUS_SUCCESS;
    size_t bytes = workspace_bytes(e);
    if (e.query) query = e.query(&bytes);
    const std::string query_detail = kdfGetLastErrorString();
    if (query != KDF_STATUS_SUCCESS && query_detail.empty()) c.fail("failed size query without a detail");

    // Count-only: nothing runs, so stand-in pointers far apart (never dereferenced) take the inputs' places; the
    // workspace is real (its tickets are zeroed by a memset) when the query gives a size worth allocating.
    Allocations a;
    Pointers p;
    for (size_t i = 0; i < e.buffers.size(); ++i)
        p.push_back(e.buffers[i].present ? reinterpret_cast<void*>((uintptr_t(i) + 1) << 40) : nullptr);
    const int w = e.workspace_index();
    if (w >= 0) {
        if (query == KDF_STATUS_SUCCESS && bytes > (size_t(256) << 20)) return;  // the query answered; no call
        p[w] = query == KDF_STATUS_SUCCESS && bytes > 0 ? a.get(bytes) : nullptr;
        if (query == KDF_STATUS_SUCCESS && bytes > 0 && p[w] == nullptr) return;
    }
    kdfuse::simt::set_count_only(true);
    const kdfStatus_t got = e.call(c.handle, p, bytes, 1.0f, c.stream);
    kdfuse::simt::set_count_only(false);
    c.status = got;
    const std::string detail = kdfGetLastErrorString();
    if (got != KDF_STATUS_SUCCESS && detail.rfind(e.name + ": ", 0) != 0)
        c.fail(std::string("status ") + kdfGetStatusName(got) + " with detail '" + detail + "'");
    if (!e.query) {
        if (got == KDF_STATUS_CUDA_ERROR || got == KDF_STATUS_CUBLAS_ERROR || got == KDF_STATUS_INTERNAL_ERROR)
            c.fail(std::string("call failed with ") + kdfGetStatusName(got) + ": " + detail);
        return;
    }
    if (query != KDF_STATUS_SUCCESS) {
        if (got != query)
            c.fail(std::string("the size query said ") + kdfGetStatusName(query) + " (" + query_detail + "), the call " +
                   kdfGetStatusName(got) + " (" + detail + ")");
        return;
    }
    if (got != KDF_STATUS_SUCCESS && got != KDF_STATUS_INVALID_VALUE && got != KDF_STATUS_NULL_POINTER &&
        got != KDF_STATUS_MISALIGNED_POINTER)
        c.fail(std::string("the size query accepted the params, the call failed with ") + kdfGetStatusName(got) + ": " + detail);
}

// An int a C caller might store in an enum field: valid values and garbage.
int random_enum(Rng& r)
{
    const int values[] = {0, 1, 2, -1, 3, 1000, INT_MIN, INT_MAX};
    return values[r() % 8];
}

// An int as a C enum argument: converted as a prvalue (never stored in and loaded from an enum object, which
// UBSan rejects for values outside the enum's range), as a C caller's int reaches the library.
template <typename E>
E as_enum(int v)
{
    return static_cast<E>(v);
}

// The library-wide and handle entry points with random arguments.
void run_library(Case& c, Rng& r)
{
    const int v = random_enum(r);
    switch (r() % 7) {
    case 0: {  // names and strings of any int: never NULL, never empty
        const kdfStatus_t s = as_enum<kdfStatus_t>(v);
        if (kdfGetStatusName(s) == nullptr || *kdfGetStatusName(s) == '\0' || kdfGetStatusString(s) == nullptr ||
            *kdfGetStatusString(s) == '\0')
            c.fail("a status name or string is NULL or empty for " + std::to_string(v));
        if (kdfGetVersion() != KDFUSE_VERSION || std::strcmp(kdfGetBackendName(), "simt") != 0)
            c.fail("version or backend name");
        break;
    }
    case 1: {
        const bool valid = v == KDF_MATH_FP32 || v == KDF_MATH_TF32;
        c.expect_status(kdfSetMathMode(c.handle, as_enum<kdfMathMode_t>(v)), valid ? KDF_STATUS_SUCCESS : KDF_STATUS_INVALID_VALUE,
                        "mode", "kdfSetMathMode");
        kdfMathMode_t got = KDF_MATH_FP32;
        if (valid && (kdfGetMathMode(c.handle, &got) != KDF_STATUS_SUCCESS || static_cast<int>(got) != v))
            c.fail("kdfGetMathMode does not return the mode just set");
        break;
    }
    case 2: {
        const bool valid = v == KDF_DETERMINISTIC || v == KDF_FAST;
        c.expect_status(kdfSetDeterminism(c.handle, as_enum<kdfDeterminism_t>(v)),
                        valid ? KDF_STATUS_SUCCESS : KDF_STATUS_INVALID_VALUE, "mode", "kdfSetDeterminism");
        kdfDeterminism_t got = KDF_DETERMINISTIC;
        if (valid && (kdfGetDeterminism(c.handle, &got) != KDF_STATUS_SUCCESS || static_cast<int>(got) != v))
            c.fail("kdfGetDeterminism does not return the mode just set");
        break;
    }
    case 3:
        c.expect_status(kdfGetMathMode(c.handle, nullptr), KDF_STATUS_NULL_POINTER, "mode", "kdfGetMathMode");
        break;
    case 4:
        c.expect_status(kdfGetDeterminism(nullptr, nullptr), KDF_STATUS_NULL_POINTER, "handle", "kdfGetDeterminism");
        break;
    case 5:
        c.expect_status(kdfCreate(nullptr), KDF_STATUS_NULL_POINTER, "handle", "kdfCreate");
        break;
    default: {  // a fresh handle lives until destroyed once; NULL destroys nothing
        kdfHandle_t h = nullptr;
        c.expect_status(kdfCreate(&h), KDF_STATUS_SUCCESS, "", "kdfCreate");
        c.expect_status(kdfDestroy(h), KDF_STATUS_SUCCESS, "", "kdfDestroy");
        c.expect_status(kdfDestroy(nullptr), KDF_STATUS_SUCCESS, "", "kdfDestroy");
        break;
    }
    }
}

void run_case(Case& c)
{
    Rng r(c.seed ^ (0x9e3779b97f4a7c15ull * (c.index + 1)));
    std::vector<Entry> entries = kdftest::entry_points(r, true);
    Entry& e = entries[r() % entries.size()];
    // Valid calls a third of the time, each kind of mistake about as often as the others.
    const Mutation m = (r() % 3 == 0) ? Mutation::Valid : static_cast<Mutation>(1 + r() % (int(Mutation::Count) - 1));
    c.what = (m == Mutation::Library ? std::string("library") : e.name) + " " + kMutationNames[int(m)];
    g_simt_errors.clear();
    // The handle's modes for this case (a library case may change them for the next ones).
    kdfSetMathMode(c.handle, (r() & 1) ? KDF_MATH_TF32 : KDF_MATH_FP32);
    kdfSetDeterminism(c.handle, (r() & 1) ? KDF_FAST : KDF_DETERMINISTIC);
    if (m == Mutation::Valid) run_valid(c, e, r);
    else if (m == Mutation::Fields) run_fields(c, e, r);
    else if (m == Mutation::Library) run_library(c, r);
    else run_broken(c, e, r, m);
    if (!g_simt_errors.empty()) c.fail("SIMT backend reported: " + g_simt_errors.front());
}

uint64_t env_or(const char* name, uint64_t fallback)
{
    const char* s = std::getenv(name);
    return s && *s ? std::strtoull(s, nullptr, 10) : fallback;
}

}  // namespace

int main(int argc, char** argv)
{
    double seconds = static_cast<double>(env_or("KDFUSE_FUZZ_SECONDS", 30));
    uint64_t seed = env_or("KDFUSE_FUZZ_SEED", static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
    int64_t only = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
        else if (flag == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
        else if (flag == "--case") only = std::atoll(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: %s [--seconds S] [--seed N] [--case I]\n", argv[0]);
            return 2;
        }
    }
    kdfuse::simt::set_error_hook(on_simt_error, nullptr);
    Case base{seed, 0, nullptr, nullptr};
    if (kdfCreate(&base.handle) != KDF_STATUS_SUCCESS || cudaStreamCreate(&base.stream) != cudaSuccess) {
        std::fprintf(stderr, "fuzz: cannot create a handle and a stream\n");
        return 1;
    }
    std::printf("fuzz: seed %llu, %.0f s (replay a case with --seed %llu --case I)\n", static_cast<unsigned long long>(seed),
                seconds, static_cast<unsigned long long>(seed));
    const auto start = std::chrono::steady_clock::now();
    std::map<std::string, int> per_entry;
    std::map<std::string, int> statuses;
    uint64_t passed = 0, failed = 0;
    for (uint64_t i = only >= 0 ? uint64_t(only) : 0;; ++i) {
        Case c = base;
        c.index = i;
        run_case(c);
        ++per_entry[c.what.substr(0, c.what.find(' '))];
        ++statuses[kdfGetStatusName(c.status)];
        if (c.failure.empty()) {
            ++passed;
        } else {
            ++failed;
            std::printf("FAILED case %llu (%s): %s\n", static_cast<unsigned long long>(i), c.what.c_str(), c.failure.c_str());
        }
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (only >= 0 || elapsed >= seconds || failed >= 20) break;
    }
    std::printf("fuzz: cases per entry point:");
    for (const auto& [name, n] : per_entry) std::printf(" %s %d", name.c_str(), n);
    std::printf("\nfuzz: statuses:");
    for (const auto& [name, n] : statuses) std::printf(" %s %d", name.c_str(), n);
    std::printf("\nfuzz: %llu passed, %llu failed\n", static_cast<unsigned long long>(passed), static_cast<unsigned long long>(failed));
    cudaStreamDestroy(base.stream);
    kdfDestroy(base.handle);
    return failed == 0 ? 0 : 1;
}
