// The tests AT and FT share (FT runs AT's kernels, kernels/common/attention_map.cuh): golden data with
// the output contract, strided and misaligned layouts, launch counts and determinism, the workspace at
// RepDistiller's shapes, three layers summed into one loss, bad inputs. A typed test suite over a traits
// struct per loss (tests/test_at.cpp, tests/test_ft.cpp) that names its params, INIT, entry points, golden
// directory and power parameters.
#pragma once

#include "common/loss_test.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace kdftest {

template <typename Traits>
class AttentionLoss : public LossTest {
protected:
    using Params = typename Traits::Params;

    struct Case : PairCase<Params> {
        Case() { this->params = Traits::init(); }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s"), ft = g.load("f_t");
        c.params.student = dense_map(fs);
        c.params.teacher = dense_map(ft);
        Traits::load_powers(c.params, g);
        c.params.weight = static_cast<float>(g.number("weight"));
        c.f_s = fs.as_float();
        c.f_t = ft.as_float();
        load_expected(c, g);
        return c;
    }

    size_t workspace(const Params& p) { return workspace_size(Traits::size, p); }

    // The loss call with this fixture's handle and stream.
    kdfStatus_t call(const Params* p, const void* f_s, const void* f_t, float* loss, void* grad, const float* grad_loss,
                     float grad_scale, int accumulate, void* ws, size_t bytes)
    {
        return Traits::call(this->handle, p, f_s, f_t, loss, grad, grad_loss, grad_scale, accumulate, ws, bytes, this->stream);
    }

    kdfStatus_t run(const Case& c, const Params& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return call(&p, f_s, f_t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate, ws.get(),
                    ws.size());
    }
};

TYPED_TEST_SUITE_P(AttentionLoss);

TYPED_TEST_P(AttentionLoss, GoldenCasesFromTheReference)
{
    const auto cases = golden_cases(TypeParam::kName);
    ASSERT_GE(cases.size(), TypeParam::kMinGoldenCases) << "golden data missing under " << golden_root();
    for (const auto& g : cases) {
        if (!g.has("f_s")) continue;  // the multi-layer case (MultiLayerSumIntoOneLoss)
        SCOPED_TRACE("case " + g.name);
        const typename TestFixture::Case c = TestFixture::load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return this->run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, acc);
        };
        check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TYPED_TEST_P(AttentionLoss, StridedMisalignedAndMixedLayouts)
{
    // Teacher pooled (non-square, 14x18 -> 7x9), then student pooled (14x18 -> 7x9).
    for (const char* name : {"3x5x7x9_vs_3x6x14x18", "3x6x14x18_vs_3x5x7x9"}) {
        const typename TestFixture::Case c = TestFixture::load(find_case(TypeParam::kName, name));
        // Student strided and misaligned, teacher dense; then both strided (aligned).
        for (int64_t offset : {1, 0}) {
            SCOPED_TRACE(std::string(name) + ", offset " + std::to_string(offset));
            Strided s(c.f_s, c.params.student, 3, 5, offset);
            Strided t(c.f_t, c.params.teacher, offset ? 0 : 2, offset ? 0 : 1, 0);
            typename TestFixture::Params p = c.params;
            p.student = s.map;
            p.teacher = offset ? c.params.teacher : t.map;
            DeviceBuffer<float> fs(s.buffer), ft(offset ? c.f_t : t.buffer), loss(1), grad(s.buffer.size());
            ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
            ASSERT_EQ(this->run(c, p, fs.get() + s.offset, ft.get(), loss.get(), grad.get() + s.offset, 0), KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), c.loss, "loss");
            const auto g = grad.download();
            EXPECT_CLOSE(s.extract(g), c.grad, "grad_s");
            EXPECT_EQ(g[s.offset + s.map.h * s.map.w], 0.0f) << "channel padding of grad_s untouched";
            EXPECT_EQ(g[s.offset + s.map.stride_n - 1], 0.0f) << "sample padding of grad_s untouched";
        }
    }
}

TYPED_TEST_P(AttentionLoss, LaunchesNoSyncAndBitwiseReproducible)
{
    // Unpooled student (teacher with more channels) and pooled student.
    for (const char* name : {"8x64x16x16_vs_8x128x16x16", "3x6x14x18_vs_3x5x7x9"}) {
        SCOPED_TRACE(name);
        const typename TestFixture::Case c = TestFixture::load(find_case(TypeParam::kName, name));
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        DeviceBuffer<unsigned char> ws(this->workspace(c.params));
        std::vector<std::vector<float>> runs;
        const auto saved = kdfuse::simt::schedule();
        for (auto schedule : {kdfuse::simt::Schedule::Forward, kdfuse::simt::Schedule::Reverse, kdfuse::simt::Schedule::Random}) {
            kdfuse::simt::set_schedule(schedule, 3);
            kdfuse::simt::reset_counters();
            ASSERT_EQ(this->call(&c.params, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(),
                            ws.size()),
                      KDF_STATUS_SUCCESS);
            const auto counters = kdfuse::simt::counters();
            EXPECT_EQ(counters.kernel_launches, 2u) << "attention maps and loss, then the gradient";
            EXPECT_EQ(counters.memsets, 1u) << "the tickets";
            EXPECT_EQ(counters.synchronizations, 0u);
            EXPECT_EQ(counters.null_stream_ops, 0u);
            EXPECT_EQ(counters.cub_calls + counters.cublas_calls, 0u);
            auto r = loss.download();
            auto g = grad.download();
            r.insert(r.end(), g.begin(), g.end());
            runs.push_back(r);
        }
        kdfuse::simt::set_schedule(saved, 1);
        EXPECT_TRUE(bitwise_equal(runs[0], runs[1]));
        EXPECT_TRUE(bitwise_equal(runs[0], runs[2]));

        // Loss only: the map kernel alone; gradient only: both kernels; the same bits.
        kdfuse::simt::reset_counters();
        ASSERT_EQ(this->call(&c.params, fs.get(), ft.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size()),
                  KDF_STATUS_SUCCESS);
        EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 1u);
        EXPECT_EQ(kdfuse::simt::counters().synchronizations, 0u);
        EXPECT_TRUE(bitwise_equal(loss.download(), {runs[0][0]}));
        ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
        kdfuse::simt::reset_counters();
        ASSERT_EQ(this->call(&c.params, fs.get(), ft.get(), nullptr, grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
                  KDF_STATUS_SUCCESS);
        EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 2u);
        EXPECT_EQ(kdfuse::simt::counters().synchronizations, 0u);
        EXPECT_TRUE(bitwise_equal(grad.download(), std::vector<float>(runs[0].begin() + 1, runs[0].end())));

        // Neither output: nothing to do, nothing launched.
        kdfuse::simt::reset_counters();
        ASSERT_EQ(this->call(&c.params, fs.get(), ft.get(), nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size()),
                  KDF_STATUS_SUCCESS);
        EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
    }
}

TYPED_TEST_P(AttentionLoss, WorkspaceAtResnet32x4Shapes)
{
    // resnet32x4 -> resnet8x4 at N = 64, the four feature maps (equal sizes for student and teacher): the
    // workspace holds v_s, v_t and G (N x h*w floats each), one loss term per sample and N + 1 tickets:
    // O(N * h * w), independent of C.
    const size_t per_sample = 256 + 512;  // 64 terms; 65 tickets (260 bytes, rounded up to a multiple of 256)
    for (const int64_t c : {32, 64, 128, 256}) {
        for (const int64_t hw : {32, 16, 8}) {
            typename TestFixture::Params p = TypeParam::init();
            p.student = {64, c, hw, hw, 0, 0};
            p.teacher = p.student;
            EXPECT_EQ(this->workspace(p), 3 * 64 * static_cast<size_t>(hw * hw) * 4 + per_sample) << c << "x" << hw << "x" << hw;
        }
    }
    // A pooled pair (student 64x32x32 against teacher 128x16x16): maps of the teacher's 16x16.
    typename TestFixture::Params p = TypeParam::init();
    p.student = {64, 64, 32, 32, 0, 0};
    p.teacher = {64, 128, 16, 16, 0, 0};
    EXPECT_EQ(this->workspace(p), 3u * 64 * 256 * 4 + per_sample);
}

TYPED_TEST_P(AttentionLoss, MultiLayerSumIntoOneLoss)
{
    // resnet32x4 -> resnet8x4's layers (64x32x32, 128x16x16, 256x8x8) at N = 2, with per-layer weights, summed
    // into one loss buffer with accumulate (RepDistiller's AT layers; FT is single-layer there, and several
    // factor pairs sum the same way).
    const GoldenCase g = find_case(TypeParam::kName, "multilayer_resnet8x4_n2");
    const int layers = static_cast<int>(g.number("layers"));
    ASSERT_EQ(layers, 3);
    const float grad_scale = static_cast<float>(g.number("grad_scale"));
    DeviceBuffer<float> loss(std::vector<float>{0.0f});
    for (int l = 0; l < layers; ++l) {
        SCOPED_TRACE("layer " + std::to_string(l));
        const auto fs = g.load("f_s" + std::to_string(l)), ft = g.load("f_t" + std::to_string(l));
        typename TestFixture::Params p = TypeParam::init();
        p.student = dense_map(fs);
        p.teacher = dense_map(ft);
        p.weight = static_cast<float>(g.number("weight" + std::to_string(l)));
        DeviceBuffer<float> d_fs(fs.as_float()), d_ft(ft.as_float()), grad(std::vector<float>(fs.values.size(), 0.0f));
        DeviceBuffer<unsigned char> ws(this->workspace(p));
        ASSERT_EQ(this->call(&p, d_fs.get(), d_ft.get(), loss.get(), grad.get(), nullptr, grad_scale, 1, ws.get(), ws.size()),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(grad.download(), g.load("grad_f_s" + std::to_string(l)).values, "grad_s");
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum of the weighted layer losses");
}

TYPED_TEST_P(AttentionLoss, BadInputs)
{
    typename TestFixture::Params good = TypeParam::init();
    good.student = {2, 3, 4, 5, 0, 0};
    good.teacher = {2, 6, 8, 10, 0, 0};
    DeviceBuffer<float> fs(120), ft(960), loss(1), grad(120), gl(std::vector<float>{1.0f});
    DeviceBuffer<unsigned char> ws(this->workspace(good) + 16);
    auto call = [&](const typename TestFixture::Params& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return this->call(&p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                     bytes == SIZE_MAX ? ws.size() : bytes);
    };
    size_t bytes = 0;
    typename TestFixture::Params p = good;
    // Shapes.
    p.teacher.n = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student.n (2) != params->teacher.n (3)");
    EXPECT_STATUS(TypeParam::size(&p, &bytes), KDF_STATUS_SHAPE_MISMATCH, std::string(TypeParam::kSizeName) + ": params->student.n");
    p = good, p.student.h = 16, p.student.w = 2;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "each larger in one dimension");
    p = good, p.student.c = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.c");
    p = good, p.teacher.w = -1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.w");
    p = good, p.student.stride_c = 19;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.stride_c");
    p = good, p.teacher.stride_n = 50;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.stride_n");
    p = good;
    p.student = {1, 1, 1, 4100, 0, 0};
    p.teacher = {1, 1, 1, 2050, 0, 0};
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "pooled to width 2050");
    p.student = {1, 1, 65536, 1, 0, 0};
    p.teacher = {1, 1, 40000, 1, 0, 0};
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "too large");
    // Parameters.
    for (const auto& [field, name] : TypeParam::powers())
        for (float bad : {0.0f, -2.0f, NAN, INFINITY}) {
            p = good, p.*field = bad;
            EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, std::string(name) + " must be finite and > 0");
        }
    p = good, p.weight = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    int bogus = 7;
    std::memcpy(&p.dtype, &bogus, sizeof bogus);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dtype is not a kdfDataType_t");
    p = good, p.struct_size = 4;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, TypeParam::kInit);
    EXPECT_STATUS(TypeParam::size(&p, &bytes), KDF_STATUS_INVALID_VALUE, TypeParam::kInit);
    // Pointers and buffers.
    EXPECT_STATUS(this->call(nullptr, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_NULL_POINTER, "params is NULL");
    EXPECT_STATUS(TypeParam::call(nullptr, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), this->stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(TypeParam::size(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes is NULL");
    EXPECT_STATUS(this->call(&good, nullptr, ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_NULL_POINTER, "f_s is NULL");
    EXPECT_STATUS(this->call(&good, fs.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_NULL_POINTER, "f_t is NULL");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(grad.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "grad_s");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), reinterpret_cast<float*>(reinterpret_cast<char*>(loss.get()) + 1),
                 grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_MISALIGNED_POINTER, "loss");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), loss.get(), grad.get(),
                 reinterpret_cast<const float*>(reinterpret_cast<const char*>(gl.get()) + 3), 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_MISALIGNED_POINTER, "grad_loss");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get() + 4, ws.size() - 4),
           KDF_STATUS_MISALIGNED_POINTER, "workspace");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(ft.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps f_t");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), loss.get(), fs.get(), nullptr, 1.0f, 0, ws.get(), ws.size()),
           KDF_STATUS_INVALID_VALUE, "grad_s overlaps f_s");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, INFINITY, 0, ws.get(), ws.size()),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(this->call(&good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size()),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_STREQ(kdfGetLastErrorString(), "");
}

REGISTER_TYPED_TEST_SUITE_P(AttentionLoss, GoldenCasesFromTheReference, StridedMisalignedAndMixedLayouts,
                            LaunchesNoSyncAndBitwiseReproducible, WorkspaceAtResnet32x4Shapes, MultiLayerSumIntoOneLoss,
                            BadInputs);

}  // namespace kdftest
