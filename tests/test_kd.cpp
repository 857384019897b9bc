// KD through the C API of libkdfuse_sim: golden data from python_ref, fusion (launch count), no hidden
// synchronisation, accumulate, NULL outputs, strides and misalignment, determinism, every bad input.
#include <kdfuse/kdfuse.h>

#include "common/device_test.h"
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "common/golden.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <kdfuse/simt/fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class KD : public ::testing::Test {
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

struct Loaded {
    kdfKDParams_t params = KDF_KD_PARAMS_INIT;
    std::vector<float> y_s, y_t, weight, grad_loss;
    std::vector<double> loss, grad_s, grad_t;
    float grad_scale = 1.0f;
};

Loaded load(const GoldenCase& c)
{
    Loaded l;
    const auto ys = c.load("y_s");
    l.params.rows = ys.dim(0);
    l.params.classes = ys.dim(1);
    l.params.temperature = static_cast<float>(c.number("temperature"));
    l.params.reduction = c.params.at("reduction") == "none" ? KDF_REDUCTION_NONE : KDF_REDUCTION_BATCHMEAN;
    l.grad_scale = static_cast<float>(c.number("grad_scale"));
    l.y_s = ys.as_float();
    l.y_t = c.load("y_t").as_float();
    if (c.has("weight")) l.weight = c.load("weight").as_float();
    if (c.has("grad_loss")) l.grad_loss = c.load("grad_loss").as_float();
    l.loss = c.load("loss").values;
    l.grad_s = c.load("grad_s").values;
    if (c.has("grad_t")) l.grad_t = c.load("grad_t").values;
    return l;
}

size_t workspace_size(const kdfKDParams_t& p) { return kdftest::workspace_size(kdfKDWorkspaceSize, p); }

TEST_F(KD, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("kd");
    ASSERT_GE(cases.size(), 8u) << "golden data missing under " << kdftest::golden_root() << "/kd";
    for (const auto& c : cases) {
        SCOPED_TRACE("case " + c.name);
        const Loaded l = load(c);
        const int64_t n = l.params.rows, elems = n * l.params.classes;
        const size_t loss_count = l.loss.size();
        DeviceBuffer<float> ys(l.y_s), yt(l.y_t), loss(loss_count), gs(elems), gt(elems);
        DeviceBuffer<float> weight(l.weight.empty() ? std::vector<float>{0.0f} : l.weight);
        DeviceBuffer<float> grad_loss(l.grad_loss.empty() ? std::vector<float>{0.0f} : l.grad_loss);
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace_size(l.params)));
        const float* w = l.weight.empty() ? nullptr : weight.get();
        const float* gl = l.grad_loss.empty() ? nullptr : grad_loss.get();
        float* gt_ptr = l.grad_t.empty() ? nullptr : gt.get();

        // Loss and gradients in one fused call.
        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), w, loss.get(), gs.get(), gt_ptr, gl, l.grad_scale, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(loss.download(), l.loss, "loss");
        EXPECT_CLOSE(gs.download(), l.grad_s, "grad_s");
        if (gt_ptr) EXPECT_CLOSE(gt.download(), l.grad_t, "grad_t");

        // Accumulate: outputs are added to what is there.
        std::vector<double> loss_plus(l.loss), gs_plus(l.grad_s);
        for (auto& v : loss_plus) v += 2.0;
        for (auto& v : gs_plus) v -= 0.5;
        ASSERT_EQ(cudaMemcpy(loss.get(), std::vector<float>(loss_count, 2.0f).data(), loss_count * 4, cudaMemcpyHostToDevice),
                  cudaSuccess);
        ASSERT_EQ(cudaMemcpy(gs.get(), std::vector<float>(elems, -0.5f).data(), elems * 4, cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), w, loss.get(), gs.get(), nullptr, gl, l.grad_scale, 1,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(loss.download(), loss_plus, "accumulated loss");
        EXPECT_CLOSE(gs.download(), gs_plus, "accumulated grad_s");

        // Loss only, then gradient only: NULL outputs are not computed and not touched.
        ASSERT_EQ(cudaMemset(gs.get(), 0x7f, elems * 4), cudaSuccess);
        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), w, loss.get(), nullptr, nullptr, gl, l.grad_scale, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(loss.download(), l.loss, "loss only");
        const auto untouched = gs.download();
        EXPECT_TRUE(std::all_of(untouched.begin(), untouched.end(), [&](float v) { return std::memcmp(&v, &untouched[0], 4) == 0; }));
        ASSERT_EQ(cudaMemset(loss.get(), 0x7f, loss_count * 4), cudaSuccess);
        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), w, nullptr, gs.get(), nullptr, gl, l.grad_scale, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(gs.download(), l.grad_s, "grad_s only");
    }
}

TEST_F(KD, OneLaunchNoSyncNoDefaultStream)
{
    const auto cases = kdftest::golden_cases("kd");
    ASSERT_FALSE(cases.empty());
    for (const auto& c : cases) {
        SCOPED_TRACE("case " + c.name);
        const Loaded l = load(c);
        const int64_t elems = l.params.rows * l.params.classes;
        DeviceBuffer<float> ys(l.y_s), yt(l.y_t), loss(l.loss.size()), gs(elems), gt(elems);
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace_size(l.params)));
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CALL_WORK(1u, 0u);  // loss, grad_s and grad_t come from one fused kernel
        EXPECT_EQ(kdfuse::simt::counters().cub_calls, 0u);
    }
}

TEST_F(KD, BitwiseReproducibleUnderEverySchedule)
{
    const auto cases = kdftest::golden_cases("kd");
    auto it = std::find_if(cases.begin(), cases.end(), [](const GoldenCase& c) { return c.name == "37x1031_grad_loss_scale_teacher"; });
    ASSERT_NE(it, cases.end());
    const Loaded l = load(*it);
    const int64_t elems = l.params.rows * l.params.classes;
    DeviceBuffer<float> ys(l.y_s), yt(l.y_t), loss(1), gs(elems), gt(elems);
    DeviceBuffer<unsigned char> ws(workspace_size(l.params));
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule(
        [&] {
            ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0,
                            ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            runs.push_back(kdftest::concat({loss.download(), gs.download(), gt.download()}));
        },
        {{kdfuse::simt::Schedule::Forward, 1}, {kdfuse::simt::Schedule::Reverse, 1}, {kdfuse::simt::Schedule::Random, 5},
         {kdfuse::simt::Schedule::Forward, 1}});
    ASSERT_EQ(runs.size(), 4u);
    for (size_t i = 1; i < runs.size(); ++i)
        EXPECT_EQ(std::memcmp(runs[i].data(), runs[0].data(), runs[0].size() * 4), 0) << "run " << i;
}

// Every layout gives the dense call's bits: a thread visits its columns in the same order with vector or scalar
// loads (the uncached case too).
TEST_F(KD, StridedAndMisalignedRowsGiveTheDenseBits)
{
    const auto cases = kdftest::golden_cases("kd");
    for (const char* name : {"3x7", "64x100", "2x8193_uncached"}) {
        auto it = std::find_if(cases.begin(), cases.end(), [&](const GoldenCase& c) { return c.name == name; });
        ASSERT_NE(it, cases.end()) << name;
        SCOPED_TRACE(name);
        const Loaded l = load(*it);
        const int64_t n = l.params.rows, C = l.params.classes;
        DeviceBuffer<float> dense_ys(l.y_s), dense_yt(l.y_t), dense_loss(1), dense_gs(n * C);
        DeviceBuffer<unsigned char> dense_ws(workspace_size(l.params));
        ASSERT_EQ(kdfKD(handle, &l.params, dense_ys.get(), dense_yt.get(), nullptr, dense_loss.get(), dense_gs.get(), nullptr,
                        nullptr, l.grad_scale, 0, dense_ws.get(), dense_ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        // ld = C + 5 with a one-float offset: rows are 4-byte aligned only (scalar loads and stores); ld = round
        // up to 8: 16-byte aligned rows with a scalar tail (vector loads and stores); the same with the gradient
        // one float off (vector loads, scalar stores).
        struct Layout {
            int64_t offset, grad_offset;
        };
        for (const auto& [offset, goffset] : {Layout{1, 1}, Layout{0, 0}, Layout{0, 1}}) {
            SCOPED_TRACE("offsets " + std::to_string(offset) + ", " + std::to_string(goffset));
            const int64_t ld = offset ? C + 5 : (C + 7) / 8 * 8;
            std::vector<float> ys(offset + n * ld, NAN), yt(offset + n * ld, NAN);
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < C; ++j) {
                    ys[offset + i * ld + j] = l.y_s[i * C + j];
                    yt[offset + i * ld + j] = l.y_t[i * C + j];
                }
            DeviceBuffer<float> dys(ys), dyt(yt), loss(1), gs(goffset + n * ld);
            kdfKDParams_t p = l.params;
            p.ld_student = ld;
            p.ld_teacher = ld;
            DeviceBuffer<unsigned char> ws(workspace_size(p));
            ASSERT_EQ(kdfKD(handle, &p, dys.get() + offset, dyt.get() + offset, nullptr, loss.get(), gs.get() + goffset,
                            nullptr, nullptr, l.grad_scale, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), l.loss, "loss");
            auto g = gs.download();
            std::vector<float> dense;
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < C; ++j) dense.push_back(g[goffset + i * ld + j]);
            EXPECT_CLOSE(dense, l.grad_s, "grad_s");
            EXPECT_TRUE(kdftest::bitwise_equal(loss.download(), dense_loss.download())) << "loss";
            EXPECT_TRUE(kdftest::bitwise_equal(dense, dense_gs.download())) << "grad_s";
        }
    }
}

// Both rows are cached in shared memory when 2 C sizeof(T) bytes fit in 162 KiB (sm_80's opt-in maximum of 163 KiB
// less 1 KiB for the kernel's static shared memory): up to 20736 fp32 classes; above 48 KiB the launch opts in (the
// SIMT backend refuses it otherwise). Longer rows are read twice. Across the boundary the result must not change:
// a row of C classes plus a -inf logit (p = q = 0: no loss, zero gradient) gives the C-class result. (6144 classes,
// once cached without opting in, failed to launch on a GPU: tests/simt/test_simt_launch_rules.cpp.)
TEST_F(KD, RowsAtTheSharedMemoryCacheBoundary)
{
    const int64_t C = 20736;
    const std::vector<float> ys = kdftest::uniform(C, 31, -4.0f, 4.0f), yt = kdftest::uniform(C, 32, -4.0f, 4.0f);
    auto run = [&](int64_t classes) {
        std::vector<float> s(ys), t(yt);
        s.resize(classes, -INFINITY);
        t.resize(classes, -INFINITY);
        kdfKDParams_t p = KDF_KD_PARAMS_INIT;
        p.rows = 1;
        p.classes = classes;
        p.temperature = 4.0f;
        DeviceBuffer<float> ds(s), dt(t), loss(1), gs(classes);
        DeviceBuffer<unsigned char> ws(workspace_size(p));
        EXPECT_EQ(kdfKD(handle, &p, ds.get(), dt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << classes << " classes: " << kdfGetLastErrorString();
        std::vector<float> out = gs.download();
        out.insert(out.begin(), loss.download()[0]);
        return out;
    };
    const std::vector<float> cached = run(C);
    const std::vector<float> longer = run(C + 1);
    EXPECT_NEAR(longer[0], cached[0], 1e-6 * std::fabs(cached[0]));
    for (int64_t j = 0; j < C; ++j) ASSERT_NEAR(longer[1 + j], cached[1 + j], 1e-6f * 4.0f / C) << j;
    EXPECT_EQ(longer[1 + C], 0.0f);
}

TEST_F(KD, NothingRequestedIsANoOp)
{
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = 2;
    p.classes = 3;
    DeviceBuffer<float> ys(6), yt(6);
    DeviceBuffer<unsigned char> ws(workspace_size(p));
    kdfuse::simt::reset_counters();
    EXPECT_EQ(kdfKD(handle, &p, ys.get(), yt.get(), nullptr, nullptr, nullptr, nullptr, nullptr, 1.0f, 0, ws.get(),
                    ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
}

TEST_F(KD, WorkspaceDependsOnlyOnParams)
{
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = 1000;
    p.classes = 7;
    EXPECT_EQ(workspace_size(p), 4096u + 256u);
    p.classes = 50000;
    EXPECT_EQ(workspace_size(p), 4096u + 256u) << "independent of the class count";
    p.reduction = KDF_REDUCTION_NONE;
    EXPECT_EQ(workspace_size(p), 0u);
}

// The 16-bit element types of the API: values in and out of uint16_t storage (round to nearest even).
struct Bits16 {
    kdfDataType_t dtype;
    uint16_t from_float(float x) const
    {
        return dtype == KDF_DTYPE_FP16 ? __float2half_rn(x).bits : __float2bfloat16_rn(x).bits;
    }
    float to_float(uint16_t b) const { return dtype == KDF_DTYPE_FP16 ? __half2float({b}) : __bfloat162float({b}); }
    std::vector<uint16_t> from_floats(const std::vector<float>& v) const
    {
        std::vector<uint16_t> out(v.size());
        std::transform(v.begin(), v.end(), out.begin(), [&](float x) { return from_float(x); });
        return out;
    }
    std::vector<float> to_floats(const std::vector<uint16_t>& v) const
    {
        std::vector<float> out(v.size());
        std::transform(v.begin(), v.end(), out.begin(), [&](uint16_t b) { return to_float(b); });
        return out;
    }
};

// fp16 / bf16 logits (the golden cases with a dtype; their values are exact in that type). The kernel computes
// in fp32 whatever the storage, so the 16-bit call must give exactly the fp32 call's loss and, bit for bit, its
// gradients rounded to the 16-bit type (accumulating: the fp32 sum of the stored and the new value, rounded);
// and both must match the float64 reference within the fp32 rule plus that rounding.
TEST_F(KD, SixteenBitLogitsAreTheFp32ResultRoundedOnce)
{
    size_t n_cases = 0;
    for (const auto& c : kdftest::golden_cases("kd")) {
        if (c.params.count("dtype") == 0) continue;
        SCOPED_TRACE("case " + c.name);
        ++n_cases;
        const Loaded l = load(c);
        const Bits16 bits{c.params.at("dtype") == "fp16" ? KDF_DTYPE_FP16 : KDF_DTYPE_BF16};
        kdfKDParams_t p16 = l.params;
        p16.dtype = bits.dtype;
        const int64_t elems = l.params.rows * l.params.classes;
        const size_t loss_count = l.loss.size();
        const bool teacher = !l.grad_t.empty();
        DeviceBuffer<float> ys(l.y_s), yt(l.y_t), loss32(loss_count), gs32(elems), gt32(elems), loss16(loss_count);
        DeviceBuffer<uint16_t> ys16(bits.from_floats(l.y_s)), yt16(bits.from_floats(l.y_t)), gs16(elems), gt16(elems);
        DeviceBuffer<float> grad_loss(l.grad_loss.empty() ? std::vector<float>{0.0f} : l.grad_loss);
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace_size(l.params)));
        const float* gl = l.grad_loss.empty() ? nullptr : grad_loss.get();
        ASSERT_EQ(workspace_size(p16), workspace_size(l.params)) << "the workspace does not depend on the dtype";
        ASSERT_EQ(bits.to_floats(ys16.download()), l.y_s) << "the golden logits are exact in the 16-bit type";

        ASSERT_EQ(kdfKD(handle, &l.params, ys.get(), yt.get(), nullptr, loss32.get(), gs32.get(), teacher ? gt32.get() : nullptr,
                        gl, l.grad_scale, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfKD(handle, &p16, ys16.get(), yt16.get(), nullptr, loss16.get(), gs16.get(), teacher ? gt16.get() : nullptr,
                        gl, l.grad_scale, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CALL_WORK(1u, 0u);  // the same single fused kernel as fp32
        EXPECT_EQ(loss16.download(), loss32.download());
        EXPECT_EQ(gs16.download(), bits.from_floats(gs32.download()));
        if (teacher) EXPECT_EQ(gt16.download(), bits.from_floats(gt32.download()));

        // Against the reference: the loss by the fp32 rule, the gradients within the roundings as well.
        const double rtol = 1e-4 + (bits.dtype == KDF_DTYPE_FP16 ? 0x1p-10 : 0x1p-7);
        const double subnormal = bits.dtype == KDF_DTYPE_FP16 ? 0x1p-24 : 0.0;
        const auto atol = [&](const std::vector<double>& want) {
            double m = 0.0;
            for (double v : want) m = std::max(m, std::abs(v));
            return 1e-6 * m + 1e-30 + subnormal;
        };
        EXPECT_CLOSE(loss16.download(), l.loss, "loss");
        EXPECT_EQ(kdftest::compare(bits.to_floats(gs16.download()), l.grad_s, rtol, atol(l.grad_s)), "") << "grad_s";
        if (teacher)
            EXPECT_EQ(kdftest::compare(bits.to_floats(gt16.download()), l.grad_t, rtol, atol(l.grad_t)), "") << "grad_t";

        // Accumulate into 16-bit gradients holding -0.5: each element is round(-0.5 + g32).
        gs16.upload(std::vector<uint16_t>(elems, bits.from_float(-0.5f)));
        ASSERT_EQ(kdfKD(handle, &p16, ys16.get(), yt16.get(), nullptr, nullptr, gs16.get(), nullptr, gl, l.grad_scale, 1,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        std::vector<float> sum = gs32.download();
        for (float& v : sum) v = -0.5f + v;
        EXPECT_EQ(gs16.download(), bits.from_floats(sum)) << "accumulated grad_s";

        // Loss only: the 16-bit gradient is not touched.
        const auto before = gs16.download();
        ASSERT_EQ(kdfKD(handle, &p16, ys16.get(), yt16.get(), nullptr, loss16.get(), nullptr, nullptr, gl, l.grad_scale, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_EQ(gs16.download(), before);
        EXPECT_EQ(loss16.download(), loss32.download());
    }
    EXPECT_GE(n_cases, 6u) << "16-bit golden data missing under " << kdftest::golden_root() << "/kd";
}

// 16-bit rows are cached in 16 bits: up to 41472 classes (2 x 81 KiB), twice the fp32 limit. Cached or not, a 16-bit
// call gives the fp32 call's bits on the same values (which, at these sizes, reads its rows twice); the traffic test
// shows which sizes are read once.
TEST_F(KD, SixteenBitRowsAreCachedInSixteenBits)
{
    const Bits16 bits{KDF_DTYPE_BF16};
    for (const int64_t classes : {int64_t(41472), int64_t(41473)}) {
        SCOPED_TRACE(classes);
        const int64_t n = 2;
        std::vector<float> ys = kdftest::uniform(n * classes, 41, -6.0f, 6.0f), yt = kdftest::uniform(n * classes, 42, -6.0f, 6.0f);
        ys = bits.to_floats(bits.from_floats(ys)), yt = bits.to_floats(bits.from_floats(yt));  // exact in bf16
        kdfKDParams_t p32 = KDF_KD_PARAMS_INIT;
        p32.rows = n;
        p32.classes = classes;
        p32.temperature = 2.0f;
        kdfKDParams_t p16 = p32;
        p16.dtype = bits.dtype;
        DeviceBuffer<float> ys32(ys), yt32(yt), loss32(1), gs32(n * classes), loss16(1);
        DeviceBuffer<uint16_t> ys16(bits.from_floats(ys)), yt16(bits.from_floats(yt)), gs16(n * classes);
        DeviceBuffer<unsigned char> ws(workspace_size(p32));
        ASSERT_EQ(kdfKD(handle, &p32, ys32.get(), yt32.get(), nullptr, loss32.get(), gs32.get(), nullptr, nullptr, 1.0f, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        ASSERT_EQ(kdfKD(handle, &p16, ys16.get(), yt16.get(), nullptr, loss16.get(), gs16.get(), nullptr, nullptr, 1.0f, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_EQ(loss16.download(), loss32.download());
        EXPECT_EQ(gs16.download(), bits.from_floats(gs32.download()));
    }
}

// Minus-infinite logits (a masked vocabulary entry, fp16 saturating) as PyTorch's DistillKL treats them: a
// teacher -inf is p = 0 and adds exactly 0; a student -inf where p > 0 makes that row's KL +inf with finite
// gradients (q = 0 there); -inf in both adds 0. Checked per row against a double-precision evaluation.
TEST_F(KD, MinusInfiniteLogitsFollowPyTorch)
{
    const float inf = INFINITY;
    const int64_t n = 3, c = 6;
    const float T = 2.0f;
    const std::vector<float> ys = {0.5f, -1.0f, 2.0f, 0.25f, -0.5f, 1.5f,   //
                                   1.0f, 0.0f, -inf, 2.0f, -3.0f, 0.5f,     //
                                   0.0f, 1.0f, 2.0f, -inf, 0.5f, -1.0f};
    const std::vector<float> yt = {1.0f, -inf, 0.5f, 2.0f, -inf, -1.0f,     //
                                   0.5f, 1.5f, 0.25f, -2.0f, 1.0f, 0.0f,    //
                                   -0.5f, 2.5f, 1.0f, -inf, 0.0f, 0.75f};
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = n, p.classes = c, p.temperature = T, p.reduction = KDF_REDUCTION_NONE;
    DeviceBuffer<float> d_ys(ys), d_yt(yt), loss(n), gs(n * c), gt(n * c);
    ASSERT_EQ(kdfKD(handle, &p, d_ys.get(), d_yt.get(), nullptr, loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, nullptr, 0, stream),
              KDF_STATUS_SUCCESS)
        << kdfGetLastErrorString();
    const auto l = loss.download(), g_s = gs.download(), g_t = gt.download();
    for (int64_t i = 0; i < n; ++i) {
        SCOPED_TRACE("row " + std::to_string(i));
        const auto lse = [&](const std::vector<float>& y) {
            double m = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < c; ++j) m = std::max(m, double(y[i * c + j]) / T);
            for (int64_t j = 0; j < c; ++j) sum += std::exp(double(y[i * c + j]) / T - m);
            return m + std::log(sum);
        };
        const double lse_s = lse(ys), lse_t = lse(yt);
        double kl = 0.0;
        for (int64_t j = 0; j < c; ++j) {
            const double log_q = ys[i * c + j] / T - lse_s, log_p = yt[i * c + j] / T - lse_t, p_j = std::exp(log_p);
            if (p_j > 0.0) kl += p_j * (log_p - log_q);
            const double want_gs = T * (std::exp(log_q) - p_j);
            EXPECT_TRUE(std::isfinite(g_s[i * c + j])) << j;
            EXPECT_NEAR(g_s[i * c + j], want_gs, 1e-6 * T) << j;
            if (p_j == 0.0) EXPECT_EQ(g_t[i * c + j], 0.0f) << "p = 0: no teacher gradient " << j;
        }
        if (i == 1) {
            EXPECT_EQ(l[i], inf) << "a student -inf where p > 0: KL = +inf, as PyTorch";
        } else {
            EXPECT_TRUE(std::isfinite(l[i]));
            EXPECT_NEAR(l[i], T * T * kl, 4e-6 * std::abs(T * T * kl));
            for (int64_t j = 0; j < c; ++j) EXPECT_TRUE(std::isfinite(g_t[i * c + j])) << j;
        }
    }
    // Batch mean: the +inf row makes the loss +inf (not NaN).
    p.reduction = KDF_REDUCTION_BATCHMEAN;
    DeviceBuffer<unsigned char> ws(workspace_size(p));
    ASSERT_EQ(kdfKD(handle, &p, d_ys.get(), d_yt.get(), nullptr, loss.get(), nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(),
                    stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(loss.download()[0], inf);
}

// A +inf or NaN logit: PyTorch's softmax of that row is NaN somewhere, and its log_softmax backward spreads the
// NaN over the row's gradients; a NaN teacher probability adds nothing to kl_div's sum. Other rows are untouched.
TEST_F(KD, PlusInfiniteOrNaNLogitsMakeTheirRowsGradientNaN)
{
    const int64_t n = 3, c = 5;
    std::vector<float> ys = kdftest::uniform(n * c, 3), yt = kdftest::uniform(n * c, 4);
    ys[0 * c + 2] = INFINITY;  // row 0: student +inf
    yt[1 * c + 4] = NAN;       // row 1: teacher NaN
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = n, p.classes = c, p.reduction = KDF_REDUCTION_NONE;
    DeviceBuffer<float> d_ys(ys), d_yt(yt), loss(n), gs(n * c), gt(n * c);
    ASSERT_EQ(kdfKD(handle, &p, d_ys.get(), d_yt.get(), nullptr, loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, nullptr, 0, stream),
              KDF_STATUS_SUCCESS);
    const auto l = loss.download(), g_s = gs.download(), g_t = gt.download();
    EXPECT_TRUE(std::isnan(l[0])) << "student +inf: the student softmax is NaN";
    EXPECT_TRUE(std::isfinite(l[1])) << "a NaN teacher probability adds nothing, as kl_div";
    EXPECT_TRUE(std::isfinite(l[2]));
    for (int64_t j = 0; j < c; ++j) {
        EXPECT_TRUE(std::isnan(g_s[0 * c + j]) && std::isnan(g_s[1 * c + j])) << j;
        EXPECT_TRUE(std::isnan(g_t[0 * c + j]) && std::isnan(g_t[1 * c + j])) << j;
        EXPECT_TRUE(std::isfinite(g_s[2 * c + j]) && std::isfinite(g_t[2 * c + j])) << j;
    }
}

TEST_F(KD, BadInputsGetAStatusAndANamedArgument)
{
    kdfKDParams_t good = KDF_KD_PARAMS_INIT;
    good.rows = 4;
    good.classes = 5;
    DeviceBuffer<float> ys(20), yt(20), loss(4), gs(20);
    DeviceBuffer<unsigned char> ws(workspace_size(good));
    auto call = [&](const kdfKDParams_t* p, const void* a = nullptr, const void* b = nullptr, void* g = nullptr,
                    size_t wsb = SIZE_MAX, void* wsp = nullptr, float scale = 1.0f, kdfHandle_t h = nullptr) {
        return kdfKD(h ? h : handle, p, a ? a : ys.get(), b ? b : yt.get(), nullptr, loss.get(), g ? g : gs.get(), nullptr,
                     nullptr, scale, 0, wsp ? wsp : ws.get(), wsb == SIZE_MAX ? ws.size() : wsb, stream);
    };
    kdfKDParams_t p = good;
    EXPECT_STATUS(kdfKD(nullptr, &p, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0, ws.get(),
                 ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(call(nullptr), KDF_STATUS_NULL_POINTER, "params");
    p.struct_size = 8;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "struct_size");
    p = good, p.rows = 0;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->rows");
    p = good, p.classes = 0;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->classes");
    p = good, p.ld_student = 3;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->ld_student");
    p = good, p.ld_teacher = -1;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->ld_teacher");
    p = good, p.temperature = 0.0f;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->temperature");
    p = good, p.temperature = NAN;
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "params->temperature");
    p = good, p.dtype = static_cast<kdfDataType_t>(9);
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "dtype");
    p = good, p.reduction = static_cast<kdfReduction_t>(5);
    EXPECT_STATUS(call(&p), KDF_STATUS_INVALID_VALUE, "reduction");
    p = good;
    EXPECT_STATUS(kdfKD(handle, &p, nullptr, yt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0, ws.get(),
                 ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "y_s");
    EXPECT_STATUS(call(&p, reinterpret_cast<const char*>(ys.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "y_s");
    // 16-bit logits and gradients need 2-byte alignment (2 bytes in is fine, 1 is not).
    for (kdfDataType_t dtype : {KDF_DTYPE_FP16, KDF_DTYPE_BF16}) {
        p = good, p.dtype = dtype;
        EXPECT_EQ(call(&p, reinterpret_cast<const char*>(ys.get()) + 2, nullptr, reinterpret_cast<char*>(gs.get()) + 2),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_STATUS(call(&p, nullptr, reinterpret_cast<const char*>(yt.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "y_t");
        EXPECT_STATUS(call(&p, nullptr, nullptr, reinterpret_cast<char*>(gs.get()) + 1), KDF_STATUS_MISALIGNED_POINTER,
                      "grad_s");
    }
    p = good;
    EXPECT_STATUS(call(&p, nullptr, nullptr, const_cast<float*>(ys.get())), KDF_STATUS_INVALID_VALUE, " overlaps");
    EXPECT_STATUS(call(&p, nullptr, nullptr, nullptr, ws.size() - 1), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfKD(handle, &p, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0, nullptr,
                 ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace");
    EXPECT_STATUS(call(&p, nullptr, nullptr, nullptr, SIZE_MAX, ws.get() + 4), KDF_STATUS_MISALIGNED_POINTER, "workspace");
    EXPECT_STATUS(call(&p, nullptr, nullptr, nullptr, SIZE_MAX, nullptr, INFINITY), KDF_STATUS_INVALID_VALUE, "grad_scale");
    size_t bytes = 0;
    p = good, p.rows = -3;
    EXPECT_STATUS(kdfKDWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "kdfKDWorkspaceSize: params->rows");
    EXPECT_STATUS(kdfKDWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    {
        // A launch the runtime rejects (an invalid stream) is a CUDA error, not a crash.
        kdftest::ExpectSimtError simt_error;
        EXPECT_EQ(kdfKD(handle, &good, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0,
                        ws.get(), ws.size(), reinterpret_cast<cudaStream_t>(0x4321)),
                  KDF_STATUS_CUDA_ERROR);
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("cudaErrorInvalidResourceHandle"));
        EXPECT_EQ(simt_error.messages().size(), 1u);
    }
    // Success clears the detail.
    EXPECT_EQ(call(&good), KDF_STATUS_SUCCESS);
    EXPECT_STREQ(kdfGetLastErrorString(), "");
}

TEST(KDHandle, ModesAndLifetime)
{
    kdfHandle_t h = nullptr;
    ASSERT_EQ(kdfCreate(&h), KDF_STATUS_SUCCESS);
    kdfMathMode_t math;
    kdfDeterminism_t det;
    ASSERT_EQ(kdfGetMathMode(h, &math), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfGetDeterminism(h, &det), KDF_STATUS_SUCCESS);
    EXPECT_EQ(math, KDF_MATH_FP32);
    EXPECT_EQ(det, KDF_DETERMINISTIC);
    EXPECT_EQ(kdfSetMathMode(h, KDF_MATH_TF32), KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfSetMathMode(h, static_cast<kdfMathMode_t>(3)), KDF_STATUS_INVALID_VALUE);
    EXPECT_EQ(kdfSetDeterminism(h, static_cast<kdfDeterminism_t>(-1)), KDF_STATUS_INVALID_VALUE);
    EXPECT_EQ(kdfGetMathMode(h, nullptr), KDF_STATUS_NULL_POINTER);
    EXPECT_EQ(kdfCreate(nullptr), KDF_STATUS_NULL_POINTER);
    EXPECT_EQ(kdfDestroy(h), KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfDestroy(nullptr), KDF_STATUS_SUCCESS);
}

}  // namespace
