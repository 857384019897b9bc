// PKT through the C API of libkdfuse_sim: golden data (N = 1, 2, 3, 17, 64, D not a multiple of 4,
// D_s != D_t, duplicated and zero rows, large values), accumulate/weights, NULL outputs, strided and
// misaligned rows, kernel-launch and cuBLAS-call counts, determinism, multi-layer sums, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class PKT : public kdftest::LossTest {
protected:
    struct Case : kdftest::PairCase<kdfPKTParams_t> {
        Case() { params = KDF_PKT_PARAMS_INIT; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s"), ft = g.load("f_t");
        c.params.rows = fs.dim(0);
        c.params.dim_student = fs.dim(1);
        c.params.dim_teacher = ft.dim(1);
        c.params.weight = static_cast<float>(g.number("weight"));
        c.f_s = fs.as_float();
        c.f_t = ft.as_float();
        kdftest::load_expected(c, g);
        return c;
    }

    size_t workspace(const kdfPKTParams_t& p) { return kdftest::workspace_size(kdfPKTWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfPKTParams_t& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfPKT(handle, &p, f_s, f_t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate,
                      ws.get(), ws.size(), stream);
    }
};

TEST_F(PKT, GoldenCasesFromTheReference)
{
    size_t n = 0;
    for (const auto& g : kdftest::golden_cases("pkt")) {
        if (g.has("f_s0")) continue;  // the multi-layer case (its own test)
        SCOPED_TRACE("case " + g.name);
        ++n;
        const Case c = load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
    EXPECT_GE(n, 8u) << "golden data missing under " << kdftest::golden_root();
}

TEST_F(PKT, ZeroRowsGetZeroGradientsNotNaN)
{
    const Case c = load(kdftest::find_case("pkt", "5x6_5x9_zero_rows"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    ASSERT_EQ(run(c, c.params, fs.get(), ft.get(), loss.get(), grad.get(), 0), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    const auto g = grad.download();
    for (int64_t j = 0; j < c.params.dim_student; ++j) EXPECT_EQ(g[2 * c.params.dim_student + j], 0.0f);
    for (float v : g) EXPECT_TRUE(std::isfinite(v));
    EXPECT_TRUE(std::isfinite(loss.download()[0]));
}

TEST_F(PKT, StridedMisalignedRows)
{
    const Case c = load(kdftest::find_case("pkt", "17x9_17x5_weighted"));
    kdftest::check_strided_rows(c, [&](const kdfPKTParams_t& p, const float* fs, const float* ft, float* loss, float* grad) {
        return run(c, p, fs, ft, loss, grad, 0);
    });
}

TEST_F(PKT, LaunchAndGemmCountsNoSyncAndBitwiseReproducible)
{
    const Case c = load(kdftest::find_case("pkt", "64x256_64x256"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        ASSERT_EQ(kdfPKT(handle, &c.params, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(),
                         ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        // G_s, G_t: the partial-Gram kernel over 4 slices of 64 columns each (common/gram_split.h), the slice
        // reduction; similarity, rows and coefficient kernels; grad_s = P masked(f_s).
        EXPECT_CALL_WORK(5u, 1u);
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfPKT(handle, &c.params, fs.get(), ft.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(),
                         stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CALL_WORK(4u, 0u);  // loss only: the partial Grams, their reduction, the similarity and rows kernels
        runs.push_back(kdftest::concat({loss.download(), grad.download()}));
    });
    ASSERT_EQ(runs.size(), 3u);
    std::vector<double> want(c.loss);
    want.insert(want.end(), c.grad.begin(), c.grad.end());
    EXPECT_CLOSE(runs[0], want, "loss and grad_s");
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
}

TEST_F(PKT, WorkspaceAtResnet32x4Shapes)
{
    // N = 64: five 64 x 64 float matrices (16 KiB each), the grid sum (64 partials: 256 + 256 bytes) and the
    // 4 MiB cuBLAS slice; flattened feature maps (D >= 16384) add the 64 slices of each split Gram matrix
    // (common/gram_split.h: 64 x 32 KiB per network), the pooled 256-d
    // embeddings 4 slices per network; the gradient GEMM's masked copy of the student, N x D_s.
    kdfPKTParams_t p = KDF_PKT_PARAMS_INIT;
    p.rows = 64;
    const size_t want = 5u * 16384u + 512u + (4u << 20);
    p.dim_student = p.dim_teacher = 256;
    EXPECT_EQ(workspace(p), want + 2 * 4 * 32768 + 64 * 256 * 4);
    for (int64_t d : {32 * 32 * 32, 64 * 32 * 32, 128 * 16 * 16, 256 * 8 * 8}) {
        p.dim_student = p.dim_teacher = d;
        EXPECT_EQ(workspace(p), want + 2 * 64 * 32768 + size_t(64 * d * 4)) << "D = " << d;
    }
}

TEST_F(PKT, MultiLayerSumWithAccumulateAndWeights)
{
    // Layers 1-3 of resnet32x4 -> resnet8x4 (64x32x32, 128x16x16, 256x8x8, flattened) at N = 2, summed into
    // one loss buffer with per-call weights; each layer's gradient into its own buffer.
    const GoldenCase g = kdftest::find_case("pkt", "multilayer_resnet32x4_n2");
    const int layers = static_cast<int>(g.number("layers"));
    ASSERT_EQ(layers, 3);
    DeviceBuffer<float> loss(1);
    for (int l = 0; l < layers; ++l) {
        const std::string k = std::to_string(l);
        const auto fs_a = g.load("f_s" + k), ft_a = g.load("f_t" + k);
        kdfPKTParams_t p = KDF_PKT_PARAMS_INIT;
        p.rows = fs_a.dim(0);
        p.dim_student = fs_a.dim(1);
        p.dim_teacher = ft_a.dim(1);
        p.weight = static_cast<float>(g.number("weight" + k));
        DeviceBuffer<float> fs(fs_a.as_float()), ft(ft_a.as_float()), grad(fs_a.values.size());
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * sizeof(float)), cudaSuccess);  // accumulate adds into it
        ASSERT_EQ(kdfPKT(handle, &p, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, l > 0, ws.get(), ws.size(),
                         stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(grad.download(), g.load("grad_f_s" + k).values, "grad_s of layer " + k);
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "summed loss");
}

TEST_F(PKT, Tf32MathModeRunsCloseToFp32)
{
    const Case c = load(kdftest::find_case("pkt", "64x256_64x256"));
    ASSERT_EQ(kdfSetMathMode(handle, KDF_MATH_TF32), KDF_STATUS_SUCCESS);
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    ASSERT_EQ(run(c, c.params, fs.get(), ft.get(), loss.get(), grad.get(), 0), KDF_STATUS_SUCCESS);
    EXPECT_TRUE(kdftest::compare(loss.download(), c.loss, 2e-2, 0.0).empty()) << kdftest::compare(loss.download(), c.loss, 2e-2, 0.0);
}

TEST_F(PKT, BadInputs)
{
    kdfPKTParams_t good = KDF_PKT_PARAMS_INIT;
    good.rows = 4, good.dim_student = 5, good.dim_teacher = 3;
    DeviceBuffer<float> fs(20), ft(12), loss(1), grad(20);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfPKTParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfPKT(handle, &p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                      bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdftest::expect_row_params_checked(good, "KDF_PKT_PARAMS_INIT", call);
    kdfPKTParams_t p = good;
    p.rows = int64_t(1) << 21;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->rows");
    EXPECT_STATUS(kdfPKT(handle, nullptr, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "params");
    EXPECT_STATUS(kdfPKT(nullptr, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(grad.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "grad_s");
    EXPECT_STATUS(call(good, nullptr, fs.get()), KDF_STATUS_INVALID_VALUE, " overlaps");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfPKT(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace");
    EXPECT_STATUS(kdfPKT(handle, &good, fs.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_t");
    EXPECT_STATUS(kdfPKT(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, NAN, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    size_t bytes = 0;
    EXPECT_STATUS(kdfPKTWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    p = good, p.rows = -3;
    EXPECT_STATUS(kdfPKTWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "params->rows");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
