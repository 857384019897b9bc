// Shared pieces of the per-loss C API tests: a fixture with a handle and a stream, feature-map layouts
// from golden arrays, strided copies, and the workspace size query wrapper.
#pragma once

#include <kdfuse/kdfuse.h>

#include "device_test.h"
#include "golden.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

// A call that must fail with `want` and a kdfGetLastErrorString() containing `needle` (the argument name).
// A macro, so a failure points at the test's line.
#define EXPECT_STATUS(got, want, needle)                                                             \
    do {                                                                                             \
        const kdfStatus_t kdf_got_ = (got);                                                          \
        EXPECT_EQ(kdf_got_, (want)) << kdfGetStatusName(kdf_got_) << ": " << kdfGetLastErrorString(); \
        EXPECT_THAT(kdfGetLastErrorString(), ::testing::HasSubstr(needle));                         \
    } while (0)

namespace kdftest {

class LossTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_EQ(kdfCreate(&handle), KDF_STATUS_SUCCESS);
        ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    }
    void TearDown() override
    {
        EXPECT_EQ(kdfDestroy(handle), KDF_STATUS_SUCCESS);
        EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    }
    kdfHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
};

// The workspace a loss's size query (kdf<Loss>WorkspaceSize) gives for valid params `p`; a failing query
// fails the test.
template <typename Params>
size_t workspace_size(kdfStatus_t (*query)(const Params*, size_t*), const Params& p)
{
    size_t bytes = 0;
    EXPECT_EQ(query(&p, &bytes), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    return bytes;
}

// The dense NCHW layout of a golden array (a 2-D N x D array is N x D x 1 x 1).
inline kdfFeatureMap_t dense_map(const Array& a)
{
    kdfFeatureMap_t m = KDF_FEATURE_MAP_INIT;
    m.n = a.dim(0);
    m.c = a.dim(1);
    m.h = a.shape.size() > 2 ? a.dim(2) : 1;
    m.w = a.shape.size() > 3 ? a.dim(3) : 1;
    return m;
}

// A dense NCHW tensor embedded in a larger buffer: channels `pad_c` and samples `pad_n` elements apart
// beyond dense, starting `offset` floats in (offset 1 makes every row only 4-byte aligned). Padding
// holds NaN, so any read of it shows up in the results.
struct Strided {
    std::vector<float> buffer;
    kdfFeatureMap_t map;
    int64_t offset;

    Strided(const std::vector<float>& dense, kdfFeatureMap_t dense_layout, int64_t pad_c, int64_t pad_n, int64_t offset_)
        : map(dense_layout), offset(offset_)
    {
        const int64_t hw = map.h * map.w;
        map.stride_c = hw + pad_c;
        map.stride_n = map.c * map.stride_c + pad_n;
        buffer.assign(static_cast<size_t>(offset + map.n * map.stride_n), NAN);
        for (int64_t n = 0; n < map.n; ++n)
            for (int64_t c = 0; c < map.c; ++c)
                std::copy_n(dense.begin() + (n * map.c + c) * hw, hw, buffer.begin() + offset + n * map.stride_n + c * map.stride_c);
    }

    // The dense tensor back out of a buffer of this layout.
    std::vector<float> extract(const std::vector<float>& from) const
    {
        const int64_t hw = map.h * map.w;
        std::vector<float> dense(static_cast<size_t>(map.n * map.c * hw));
        for (int64_t n = 0; n < map.n; ++n)
            for (int64_t c = 0; c < map.c; ++c)
                std::copy_n(from.begin() + offset + n * map.stride_n + c * map.stride_c, hw, dense.begin() + (n * map.c + c) * hw);
        return dense;
    }
};

// An N x D row-major matrix with rows `ld` floats apart, `offset` floats into a NaN-filled buffer: the Strided
// layout of an N x D x 1 x 1 map.
struct Rows : Strided {
    Rows(const std::vector<float>& dense, int64_t n, int64_t d, int64_t ld, int64_t offset)
        : Strided(dense, kdfFeatureMap_t{n, d, 1, 1, 0, 0}, 0, ld - d, offset)
    {
    }
    int64_t ld() const { return map.stride_n; }
};

// The width of a golden array flattened per sample (N x D, or N x C x H x W as N x CHW).
inline int64_t width(const Array& a)
{
    int64_t w = 1;
    for (size_t i = 1; i < a.shape.size(); ++i) w *= a.shape[i];
    return w;
}

// A golden case of a loss with two inputs: its params, the inputs, the call settings and the expected
// outputs (load_expected fills the last two groups). Tests derive their Case and set params to the INIT.
template <typename Params>
struct PairCase {
    Params params;
    std::vector<float> f_s, f_t;
    float grad_loss = 1.0f;
    bool has_grad_loss = false;
    float grad_scale = 1.0f;
    std::vector<double> loss, grad;
};

// The call settings and expected outputs of a golden case into c: grad_scale, the optional grad_loss
// (then c.has_grad_loss), the loss and the gradient named `grad`.
template <typename Case>
void load_expected(Case& c, const GoldenCase& g, const char* grad = "grad_f_s")
{
    c.grad_scale = static_cast<float>(g.number("grad_scale"));
    if (g.has("grad_loss")) {
        c.grad_loss = g.load("grad_loss").as_float()[0];
        c.has_grad_loss = true;
    }
    c.loss = g.load("loss").values;
    c.grad = g.load(grad).values;
}

// The params checks of the row-matrix losses (SP, CC, PKT, RKD: an N x D_s and an N x D_t matrix of rows),
// through `call(params)`, the loss called with valid buffers: rows, dimensions, leading dimensions (also past
// cuBLAS's int), weight, dtype and struct_size (`init_macro` named in the detail). `good` must be valid with
// dim_student >= 2.
template <typename Params, typename Call>
void expect_row_params_checked(const Params& good, const char* init_macro, Call&& call)
{
    Params p = good;
    p.rows = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->rows must be >= 1");
    p = good, p.dim_student = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dim_student");
    p = good, p.dim_teacher = -1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dim_teacher");
    p = good, p.ld_student = good.dim_student - 1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE,
                  "params->ld_student must be >= " + std::to_string(good.dim_student));
    p = good, p.ld_teacher = -2;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->ld_teacher");
    p = good, p.ld_student = int64_t(1) << 32;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "cuBLAS int");
    p = good, p.ld_teacher = int64_t(1) << 31;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "2^31");
    p = good, p.weight = INFINITY;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.weight = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_BF16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "bf16");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.dtype = static_cast<kdfDataType_t>(7);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dtype");
    p = good, p.struct_size = 8;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, init_macro);
}

// A row-matrix loss with one student gradient (SP, PKT, RKD) on strided rows that start off a 16-byte boundary:
// student rows D_s + 3 floats apart, teacher rows D_t + 5 apart, first the student 1 float in, then the
// teacher 2 floats in. `run(params, f_s, f_t, loss, grad_s)` calls the loss (not accumulating) with those
// params (ld_student, ld_teacher set) and device pointers. The golden loss and gradient must come back and
// the row padding of grad_s must stay untouched.
template <typename Case, typename Run>
void check_strided_rows(const Case& c, Run&& run)
{
    const int64_t n = c.params.rows, ds = c.params.dim_student, dt = c.params.dim_teacher;
    for (int64_t offset : {1, 0}) {
        SCOPED_TRACE("student offset " + std::to_string(offset));
        const Rows s(c.f_s, n, ds, ds + 3, offset), t(c.f_t, n, dt, dt + 5, offset ? 0 : 2);
        auto p = c.params;
        p.ld_student = s.ld();
        p.ld_teacher = t.ld();
        DeviceBuffer<float> fs(s.buffer), ft(t.buffer), loss(1), grad(s.buffer.size());
        ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
        ASSERT_EQ(run(p, fs.get() + s.offset, ft.get() + t.offset, loss.get(), grad.get() + s.offset), KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(loss.download(), c.loss, "loss");
        const auto g = grad.download();
        EXPECT_CLOSE(s.extract(g), c.grad, "grad_s");
        EXPECT_EQ(g[s.offset + ds], 0.0f) << "row padding of grad_s untouched";
    }
}

// The named golden case of a loss (fails the test if it is missing).
inline GoldenCase find_case(const std::string& loss, const std::string& name)
{
    for (auto& c : golden_cases(loss))
        if (c.name == name) return c;
    ADD_FAILURE() << "golden case " << loss << "/" << name << " missing under " << golden_root();
    return {};
}

// The output contract every loss is tested on, per golden case: loss and gradient in one call; accumulate
// (the same results added again double both); loss only (the gradient is not touched); gradient only
// (the loss is not touched). `run(loss, grad, accumulate)` calls the entry point with those device
// pointers (either may be NULL) and returns its status.
template <typename Run>
void check_outputs(Run&& run, DeviceBuffer<float>& loss, DeviceBuffer<float>& grad, const std::vector<double>& want_loss,
                   const std::vector<double>& want_grad)
{
    ASSERT_EQ(run(loss.get(), grad.get(), 0), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_CLOSE(loss.download(), want_loss, "loss");
    EXPECT_CLOSE(grad.download(), want_grad, "grad_s");

    std::vector<double> loss2 = want_loss, grad2 = want_grad;
    for (auto& v : loss2) v *= 2.0;
    for (auto& v : grad2) v *= 2.0;
    ASSERT_EQ(run(loss.get(), grad.get(), 1), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(loss.download(), loss2, "accumulated loss");
    EXPECT_CLOSE(grad.download(), grad2, "accumulated grad_s");

    ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(run(loss.get(), nullptr, 0), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(loss.download(), want_loss, "loss only");
    const auto zeros = grad.download();
    EXPECT_TRUE(std::all_of(zeros.begin(), zeros.end(), [](float v) { return v == 0.0f; })) << "grad_s untouched";
    loss.upload(std::vector<float>(loss.size(), -7.0f));
    ASSERT_EQ(run(nullptr, grad.get(), 0), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(grad.download(), want_grad, "grad_s only");
    const auto sentinel = loss.download();
    EXPECT_TRUE(std::all_of(sentinel.begin(), sentinel.end(), [](float v) { return v == -7.0f; })) << "loss untouched";
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}


// Runs a feature-map pair loss with its student and teacher maps in several layouts, dense first, then
// {student pad_c, pad_n, offset, teacher pad_c, pad_n, offset}: 4-byte-aligned starts, padded channels and
// samples, both strided. `run(student map, teacher map, s, t, loss, grad_s)` calls the loss with those device
// pointers and returns its status. Every layout must give the golden loss and gradient, leave the channel
// padding of grad_s untouched and reproduce the dense layout's bits.
template <typename Run>
void check_pair_layouts(const std::vector<float>& s_data, const kdfFeatureMap_t& s_map, const std::vector<float>& t_data,
                        const kdfFeatureMap_t& t_map, const std::vector<double>& want_loss,
                        const std::vector<double>& want_grad, Run&& run)
{
    const int64_t layouts[][6] = {{0, 0, 0, 0, 0, 0}, {0, 0, 1, 0, 0, 1}, {3, 5, 1, 0, 0, 0}, {4, 8, 0, 8, 4, 0}, {0, 0, 0, 2, 1, 3}};
    std::vector<float> dense_loss, dense_grad;
    for (const auto& l : layouts) {
        SCOPED_TRACE("layout " + std::to_string(l[0]) + "," + std::to_string(l[1]) + "," + std::to_string(l[2]) + " / " +
                     std::to_string(l[3]) + "," + std::to_string(l[4]) + "," + std::to_string(l[5]));
        const Strided s(s_data, s_map, l[0], l[1], l[2]);
        const Strided t(t_data, t_map, l[3], l[4], l[5]);
        DeviceBuffer<float> ds(s.buffer), dt(t.buffer), loss(1), grad(s.buffer.size());
        ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
        ASSERT_EQ(run(s.map, t.map, ds.get() + s.offset, dt.get() + t.offset, loss.get(), grad.get() + s.offset),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        const auto got_loss = loss.download();
        const auto g = grad.download();
        const auto got_grad = s.extract(g);
        EXPECT_CLOSE(got_loss, want_loss, "loss");
        EXPECT_CLOSE(got_grad, want_grad, "grad_s");
        if (l[0] > 0) EXPECT_EQ(g[s.offset + s.map.h * s.map.w], 0.0f) << "channel padding of grad_s untouched";
        if (dense_loss.empty()) {
            dense_loss = got_loss;
            dense_grad = got_grad;
        } else {
            EXPECT_TRUE(bitwise_equal(got_loss, dense_loss)) << "loss differs from the dense layout's";
            EXPECT_TRUE(bitwise_equal(got_grad, dense_grad)) << "grad_s differs from the dense layout's";
        }
    }
}

}  // namespace kdftest
