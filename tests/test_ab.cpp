// AB through the C API of libkdfuse_sim: golden data, one launch, accumulate/weights, NULL outputs, strided and
// misaligned layouts (bitwise the same results), determinism, multi-layer sums with the seed's weights, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <cmath>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class AB : public kdftest::LossTest {
protected:
    struct Case {
        kdfABParams_t params = KDF_AB_PARAMS_INIT;
        std::vector<float> s, t;
        float grad_loss = 1.0f;
        bool has_grad_loss = false;
        float grad_scale = 1.0f;
        std::vector<double> loss, grad;
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto s = g.load("s");
        c.params.student = kdftest::dense_map(s);
        c.params.teacher = c.params.student;
        c.params.weight = static_cast<float>(g.number("weight"));
        c.params.margin = static_cast<float>(g.number("margin"));
        c.params.seed_scaling = static_cast<int>(g.number("seed_scaling"));
        c.s = s.as_float();
        c.t = g.load("t").as_float();
        kdftest::load_expected(c, g, "grad_s");
        return c;
    }

    size_t workspace(const kdfABParams_t& p) { return kdftest::workspace_size(kdfABWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfABParams_t& p, const float* s, const float* t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfAB(handle, &p, s, t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate, ws.get(),
                     ws.size(), stream);
    }
};

TEST_F(AB, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("ab");
    ASSERT_GE(cases.size(), 7u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.has("s0")) continue;  // the multi-layer case: MultiLayerSumWithTheSeedsWeights
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> s(c.s), t(c.t), loss(1), grad(c.s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, s.get(), t.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TEST_F(AB, HandCheckedMaskCases)
{
    // The reference's hand-checked row (python_ref/tests/test_ab.py), m = 1, raw sum: per element
    // 0, 0, 0.25, 2.25, 1 (t == 0 counts as inactive), 0, 0, 0.25, 4 -> 7.75; gradient 2 (s + m) / 2 (s - m).
    const std::vector<float> s{-2.0f, -1.0f, -0.5f, 0.5f, 0.0f, 2.0f, 1.0f, 0.5f, -1.0f};
    const std::vector<float> t{-1.0f, -1.0f, -3.0f, -0.1f, 0.0f, 1.0f, 0.2f, 5.0f, 1e-9f};
    kdfABParams_t p = KDF_AB_PARAMS_INIT;
    p.student = {1, 9, 1, 1, 0, 0};
    p.teacher = p.student;
    p.seed_scaling = 0;
    DeviceBuffer<float> ds(s), dt(t), loss(1), grad(9);
    DeviceBuffer<unsigned char> ws(workspace(p));
    ASSERT_EQ(kdfAB(handle, &p, ds.get(), dt.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(loss.download()[0], 7.75f);
    EXPECT_EQ(grad.download(), (std::vector<float>{0.0f, 0.0f, 1.0f, 3.0f, 2.0f, 0.0f, 0.0f, -1.0f, -4.0f}));
    // Seed scaling: / N / 1000 * 3 with N = 1.
    p.seed_scaling = 1;
    ASSERT_EQ(kdfAB(handle, &p, ds.get(), dt.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_FLOAT_EQ(loss.download()[0], 7.75f * 3.0f / 1000.0f);
}

TEST_F(AB, StridedMisalignedAndMixedLayoutsGiveBitwiseTheSameResults)
{
    // 2x3x5x7: H*W odd (dense: 16-byte loads with a partial last group; strided: scalar loads);
    // 4x32x8x8: H*W a multiple of 4 (strided with 4-aligned strides: 16-byte loads inside planes).
    for (const char* name : {"2x3x5x7", "4x32x8x8_margin0"}) {
        SCOPED_TRACE(name);
        const Case c = load(kdftest::find_case("ab", name));
        kdftest::check_pair_layouts(c.s, c.params.student, c.t, c.params.teacher, c.loss, c.grad,
                                    [&](const kdfFeatureMap_t& ms, const kdfFeatureMap_t& mt, const float* s, const float* t,
                                        float* loss, float* grad) {
                                        kdfABParams_t p = c.params;
                                        p.student = ms;
                                        p.teacher = mt;
                                        return run(c, p, s, t, loss, grad, 0);
                                    });
    }
}

TEST_F(AB, OneLaunchNoSyncAndBitwiseReproducible)
{
    const Case c = load(kdftest::find_case("ab", "8x64x16x16"));
    DeviceBuffer<float> s(c.s), t(c.t), loss(1), grad(c.s.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        for (int outputs = 0; outputs < 3; ++outputs) {  // both, loss only, gradient only
            kdfuse::simt::reset_counters();
            ASSERT_EQ(kdfAB(handle, &c.params, s.get(), t.get(), outputs == 2 ? nullptr : loss.get(),
                            outputs == 1 ? nullptr : grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_CALL_WORK(1u, 0u);
        }
        runs.push_back(kdftest::concat({loss.download(), grad.download()}));
    });
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
}

TEST_F(AB, WorkspaceAtResnet32x4Shapes)
{
    // RepDistiller's resnet32x4 -> resnet8x4 feature maps at N = 64 (the connector maps the student to the
    // teacher's channels): one float per block (2048 elements a block, at most 1024 blocks) plus the ticket.
    const int64_t shapes[][4] = {{64, 32, 32, 32}, {64, 64, 32, 32}, {64, 128, 16, 16}, {64, 256, 8, 8}};
    const size_t expected[] = {1024 * 4 + 256, 1024 * 4 + 256, 1024 * 4 + 256, 512 * 4 + 256};
    for (int i = 0; i < 4; ++i) {
        kdfABParams_t p = KDF_AB_PARAMS_INIT;
        p.student = {shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 0, 0};
        p.teacher = p.student;
        EXPECT_EQ(workspace(p), expected[i]) << "layer " << i;
        p.seed_scaling = 0;  // the size depends on the shape only
        p.margin = 0.5f;
        EXPECT_EQ(workspace(p), expected[i]) << "layer " << i;
    }
}

TEST_F(AB, MultiLayerSumWithTheSeedsWeights)
{
    // Three layers at the resnet8x4 shapes (N = 2) summed into one loss buffer with accumulate and the seed's
    // weights 2^(i - L + 1) = 1/4, 1/2, 1, against the seed module's sum(ABLoss(3)(g_s, g_t)).
    const GoldenCase g = kdftest::find_case("ab", "resnet8x4_3layers_n2");
    const float weights[] = {0.25f, 0.5f, 1.0f};
    DeviceBuffer<float> loss(std::vector<float>{0.0f});
    for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("layer " + std::to_string(i));
        const auto s = g.load("s" + std::to_string(i));
        kdfABParams_t p = KDF_AB_PARAMS_INIT;
        p.student = kdftest::dense_map(s);
        p.teacher = p.student;
        p.weight = weights[i];
        DeviceBuffer<float> ds(s.as_float()), dt(g.load("t" + std::to_string(i)).as_float()),
            grad(std::vector<float>(ds.size(), 0.0f));  // accumulate adds into it too
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfAB(handle, &p, ds.get(), dt.get(), loss.get(), grad.get(), nullptr, 1.0f, 1, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(grad.download(), g.load("grad_s" + std::to_string(i)).values, "grad_s");
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum of the weighted layer losses");
}

TEST_F(AB, BadInputs)
{
    kdfABParams_t good = KDF_AB_PARAMS_INIT;
    good.student = {2, 3, 4, 5, 0, 0};
    good.teacher = good.student;
    DeviceBuffer<float> s(120), t(120), loss(1), grad(120);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfABParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfAB(handle, &p, a ? a : s.get(), t.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                     bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfABParams_t p = good;
    p.teacher.w = 6;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "kdfAB: params->student.w (5) != params->teacher.w (6)");
    p = good, p.teacher.n = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student.n (2) != params->teacher.n (3)");
    p = good, p.student.c = 0, p.teacher.c = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.c");
    p = good, p.student.stride_c = 19;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.stride_c");
    p = good, p.teacher.stride_n = 50;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.stride_n");
    p = good, p.weight = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.margin = INFINITY;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->margin must be finite");
    p = good, p.margin = -1.0f;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->margin must be >= 0");
    p = good, p.seed_scaling = 2;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->seed_scaling must be 0 or 1 (got 2)");
    p = good, p.dtype = KDF_DTYPE_BF16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "bf16");
    p = good, p.dtype = static_cast<kdfDataType_t>(7);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dtype");
    p = good, p.struct_size = 4;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_AB_PARAMS_INIT");
    EXPECT_STATUS(kdfAB(handle, nullptr, s.get(), t.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "params");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(s.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "kdfAB: s is not 4-byte");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(grad.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "grad_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(t.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps t");
    EXPECT_STATUS(call(good, nullptr, s.get()), KDF_STATUS_INVALID_VALUE, "grad_s overlaps s");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfAB(handle, &good, s.get(), t.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    DeviceBuffer<unsigned char> ws_big(ws.size() + 16);
    EXPECT_STATUS(kdfAB(handle, &good, s.get(), t.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws_big.get() + 8, ws.size(), stream),
           KDF_STATUS_MISALIGNED_POINTER, "workspace is not 16-byte aligned");
    EXPECT_STATUS(kdfAB(handle, &good, nullptr, t.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "kdfAB: s is NULL");
    EXPECT_STATUS(kdfAB(handle, &good, s.get(), nullptr, loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "kdfAB: t is NULL");
    EXPECT_STATUS(kdfAB(handle, &good, s.get(), t.get(), loss.get(), grad.get(), nullptr, NAN, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_STATUS(kdfAB(nullptr, &good, s.get(), t.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    size_t bytes = 0;
    EXPECT_STATUS(kdfABWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "kdfABWorkspaceSize: bytes");
    p = good, p.seed_scaling = -1;
    EXPECT_STATUS(kdfABWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "kdfABWorkspaceSize: params->seed_scaling");
    for (int outputs = 0; outputs < 2; ++outputs) {
        // A launch (or the ticket's memset) the runtime rejects (an invalid stream) is a CUDA error, not a crash.
        kdftest::ExpectSimtError simt_error;
        EXPECT_EQ(kdfAB(handle, &good, s.get(), t.get(), outputs ? nullptr : loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(),
                        ws.size(), reinterpret_cast<cudaStream_t>(0x4321)),
                  KDF_STATUS_CUDA_ERROR);
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("kdfAB"));
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("cudaErrorInvalidResourceHandle"));
        EXPECT_EQ(simt_error.messages().size(), 1u);
    }
    // All outputs NULL: a successful no-op.
    EXPECT_EQ(kdfAB(handle, &good, s.get(), t.get(), nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_STREQ(kdfGetLastErrorString(), "");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS);
}

}  // namespace
