// FitNet through the C API of libkdfuse_sim: golden data, one launch, accumulate/weights, NULL outputs,
// strided and misaligned layouts, determinism, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class FitNet : public kdftest::LossTest {
protected:
    struct Case : kdftest::PairCase<kdfFitNetParams_t> {
        Case() { params = KDF_FITNET_PARAMS_INIT; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s");
        c.params.student = kdftest::dense_map(fs);
        c.params.teacher = c.params.student;
        c.params.weight = static_cast<float>(g.number("weight"));
        c.f_s = fs.as_float();
        c.f_t = g.load("f_t").as_float();
        kdftest::load_expected(c, g);
        return c;
    }

    size_t workspace(const kdfFitNetParams_t& p) { return kdftest::workspace_size(kdfFitNetWorkspaceSize, p); }

    // Runs the call; returns {loss, grad_s} downloaded (grad in the f_s layout's buffer).
    kdfStatus_t run(const Case& c, const kdfFitNetParams_t& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfFitNet(handle, &p, f_s, f_t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate,
                         ws.get(), ws.size(), stream);
    }
};

TEST_F(FitNet, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("fitnet");
    ASSERT_GE(cases.size(), 5u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TEST_F(FitNet, StridedMisalignedAndMixedLayouts)
{
    const Case c = load(kdftest::find_case("fitnet", "2x3x5x7"));
    // Student strided and misaligned, teacher dense; then both strided (aligned).
    for (int64_t offset : {1, 0}) {
        SCOPED_TRACE("offset " + std::to_string(offset));
        kdftest::Strided s(c.f_s, c.params.student, 3, 5, offset);
        kdftest::Strided t(c.f_t, c.params.teacher, offset ? 0 : 2, offset ? 0 : 1, 0);
        kdfFitNetParams_t p = c.params;
        p.student = s.map;
        p.teacher = offset ? c.params.teacher : t.map;
        DeviceBuffer<float> fs(s.buffer), ft(offset ? c.f_t : t.buffer), loss(1), grad(s.buffer.size());
        ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
        ASSERT_EQ(run(c, p, fs.get() + s.offset, ft.get(), loss.get(), grad.get() + s.offset, 0), KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(loss.download(), c.loss, "loss");
        const auto g = grad.download();
        EXPECT_CLOSE(s.extract(g), c.grad, "grad_s");
        EXPECT_EQ(g[s.offset + s.map.h * s.map.w], 0.0f) << "channel padding of grad_s untouched";
    }
}

TEST_F(FitNet, OneLaunchNoSyncAndBitwiseReproducible)
{
    const Case c = load(kdftest::find_case("fitnet", "8x64x16x16"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        ASSERT_EQ(kdfFitNet(handle, &c.params, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(),
                            ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CALL_WORK(1u, 0u);
        runs.push_back(kdftest::concat({loss.download(), grad.download()}));
    });
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
}

TEST_F(FitNet, WorkspaceAtResnet32x4Shapes)
{
    // The regressor output at resnet8x4's last stage, 64 x 256 x 8 x 8 (4 MiB): the workspace is one
    // float per block (2048 elements a block, at most 1024 blocks) plus the ticket.
    kdfFitNetParams_t p = KDF_FITNET_PARAMS_INIT;
    p.student = {64, 256, 8, 8, 0, 0};
    p.teacher = p.student;
    EXPECT_EQ(workspace(p), 512u * 4u + 256u);
    p.student = {256, 512, 7, 7, 0, 0};  // ImageNet ResNet34 -> ResNet18 last stage: capped at 1024 blocks
    p.teacher = p.student;
    EXPECT_EQ(workspace(p), 1024u * 4u + 256u);
}

TEST_F(FitNet, BadInputs)
{
    kdfFitNetParams_t good = KDF_FITNET_PARAMS_INIT;
    good.student = {2, 3, 4, 5, 0, 0};
    good.teacher = good.student;
    DeviceBuffer<float> fs(120), ft(120), loss(1), grad(120);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfFitNetParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfFitNet(handle, &p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                         bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfFitNetParams_t p = good;
    p.teacher.w = 6;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student.w (5) != params->teacher.w (6)");
    p = good, p.student.c = 0, p.teacher.c = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.c");
    p = good, p.student.stride_c = 19;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.stride_c");
    p = good, p.teacher.stride_n = 50;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.stride_n");
    p = good, p.weight = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.struct_size = 4;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_FITNET_PARAMS_INIT");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(ft.get())), KDF_STATUS_INVALID_VALUE, " overlaps");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfFitNet(handle, &good, nullptr, ft.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_s");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS);
}

}  // namespace
