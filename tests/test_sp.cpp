// SP through the C API of libkdfuse_sim: golden data (N = 1, 2, 3, 5, 17, 64; D not a multiple of 4,
// D_s != D_t, duplicated and zero rows), grad_loss / grad_scale / weight, accumulate and NULL outputs,
// strided and misaligned rows, kernel-launch and cuBLAS-call counts, determinism, three resnet8x4 layers
// summed into one loss, the workspace at the resnet32x4 shapes, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "../kernels/common/gram_split.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using kdftest::Rows;
using kdftest::width;
using ::testing::HasSubstr;

class SP : public kdftest::LossTest {
protected:
    struct Case : kdftest::PairCase<kdfSPParams_t> {
        Case() { params = KDF_SP_PARAMS_INIT; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s"), ft = g.load("f_t");
        c.params.rows = fs.dim(0);
        c.params.dim_student = width(fs);
        c.params.dim_teacher = width(ft);
        c.params.weight = static_cast<float>(g.number("weight"));
        c.f_s = fs.as_float();
        c.f_t = ft.as_float();
        kdftest::load_expected(c, g);
        return c;
    }

    size_t workspace(const kdfSPParams_t& p) { return kdftest::workspace_size(kdfSPWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfSPParams_t& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(workspace(p));
        return kdfSP(handle, &p, f_s, f_t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate,
                     ws.get(), ws.size(), stream);
    }
};

TEST_F(SP, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("sp");
    ASSERT_GE(cases.size(), 8u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.name.rfind("resnet", 0) == 0) continue;  // the multi-layer case (MultiLayerSumIntoOneLoss)
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TEST_F(SP, StridedMisalignedRows)
{
    const Case c = load(kdftest::find_case("sp", "17x13_vs_17x30_weighted"));
    kdftest::check_strided_rows(c, [&](const kdfSPParams_t& p, const float* fs, const float* ft, float* loss, float* grad) {
        return run(c, p, fs, ft, loss, grad, 0);
    });
}

TEST_F(SP, KernelAndGemmCountsNoSyncAndBitwiseReproducible)
{
    // (loss, grad) -> kernels, GEMMs: the centring kernel; the partial-Gram kernel for every slice of both Grams
    // of [c; m] (common/gram_split.h: 64 x 256 is 4 slices of 64 columns, 5 x 130 and 5 x 67 are 3 and 2 slices)
    // and the slice reduction; the row kernel; with the gradient the symmetrising kernel and the gradient GEMM
    // (the only cuBLAS call).
    struct Want {
        const char* name;
        bool loss, grad;
        uint64_t kernels, gemms;
    };
    for (const Want w : {Want{"64x256", true, true, 5, 1}, Want{"64x256", true, false, 4, 0},
                         Want{"64x256", false, true, 5, 1}, Want{"5x130_vs_5x67_split", true, true, 5, 1},
                         Want{"5x130_vs_5x67_split", true, false, 4, 0}}) {
        SCOPED_TRACE(std::string(w.name) + ": loss " + (w.loss ? "on" : "off") + ", grad " + (w.grad ? "on" : "off"));
        const Case c = load(kdftest::find_case("sp", w.name));
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        DeviceBuffer<unsigned char> ws(workspace(c.params));
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule([&] {
            ASSERT_EQ(kdfSP(handle, &c.params, fs.get(), ft.get(), w.loss ? loss.get() : nullptr, w.grad ? grad.get() : nullptr,
                            nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_CALL_WORK(w.kernels, w.gemms);
            runs.push_back(kdftest::concat({loss.download(), grad.download()}));
        });
        ASSERT_EQ(runs.size(), 3u);
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
    }
}

TEST(GramSplit, SlicesCoverEveryColumnOnce)
{
    // The column slices of the N x N losses' Gram matrices (SP, CC, RKD, PKT): one GEMM up to 64 columns,
    // then at most 64 slices of at least 64 columns (the last one shorter, never empty).
    for (int64_t dim = 1; dim <= 70000; dim += dim < 600 ? 1 : 997) {
        const kdf::GramSplit s = kdf::GramSplit::of(dim);
        SCOPED_TRACE("dim " + std::to_string(dim));
        ASSERT_EQ(s.full * s.columns + s.rest, dim);
        EXPECT_EQ(s.split(), dim > 64);
        EXPECT_LE(s.slices(), 64);
        EXPECT_LT(s.rest, s.columns);
        if (s.split()) EXPECT_GE(s.columns, 33) << "slices of about dim / ceil(dim / 64) columns";
    }
    EXPECT_EQ(kdf::GramSplit::of(65536).columns, 1024);
    EXPECT_EQ(kdf::GramSplit::of(65536).slices(), 64);
    EXPECT_EQ(kdf::GramSplit::of(130).rest, 42);
}

TEST_F(SP, MultiLayerSumIntoOneLoss)
{
    // Three resnet8x4 layer pairs (64x32x32, 128x16x16, 256x8x8) at N = 2, each with its own weight,
    // summed into one loss buffer with accumulate; each layer's gradient in its own buffer.
    const GoldenCase g = kdftest::find_case("sp", "resnet8x4_3_layers_n2");
    DeviceBuffer<float> loss(1);
    std::vector<std::unique_ptr<DeviceBuffer<float>>> keep;
    std::vector<std::pair<DeviceBuffer<float>*, std::vector<double>>> grads;
    for (int i = 0; i < 3; ++i) {
        const auto fs = g.load("f_s" + std::to_string(i)), ft = g.load("f_t" + std::to_string(i));
        kdfSPParams_t p = KDF_SP_PARAMS_INIT;
        p.rows = fs.dim(0);
        p.dim_student = width(fs);
        p.dim_teacher = width(ft);
        p.weight = static_cast<float>(g.number("weight" + std::to_string(i)));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(fs.as_float()));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(ft.as_float()));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(fs.values.size()));
        ASSERT_EQ(cudaMemset(keep.back()->get(), 0, fs.values.size() * sizeof(float)), cudaSuccess);  // accumulated into
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfSP(handle, &p, keep[3 * i]->get(), keep[3 * i + 1]->get(), loss.get(), keep[3 * i + 2]->get(), nullptr,
                        1.0f, i > 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        grads.emplace_back(keep[3 * i + 2].get(), g.load("grad_f_s" + std::to_string(i)).values);
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "summed loss");
    for (auto& [buf, want] : grads) EXPECT_CLOSE(buf->download(), want, "grad_s of a layer");
}

TEST_F(SP, WorkspaceAtResnet32x4Shapes)
{
    // RepDistiller's SP layer at resnet32x4 -> resnet8x4, N = 64 (and wider maps): as CC's seed variant, the
    // cuBLAS slice, two 65 x 65 Gram matrices (of the centred rows and the mean), the statistics, two grid sums
    // of 64 partials (one block per row), the 64 slices of each split Gram matrix (common/gram_split.h: 64 x 65^2
    // doubles each) and the centred copies, 65 x D floats per network.
    kdfSPParams_t p = KDF_SP_PARAMS_INIT;
    p.rows = 64;
    for (const auto& [ds, dt] : {std::pair<int64_t, int64_t>{256 * 8 * 8, 256 * 8 * 8}, {32 * 32 * 32, 64 * 32 * 32},
                                 {128 * 16 * 16, 128 * 16 * 16}}) {
        p.dim_student = ds;
        p.dim_teacher = dt;
        const auto round_up = [](size_t x) { return (x + 255) / 256 * 256; };
        EXPECT_EQ(workspace(p), (size_t(4) << 20) + 2 * round_up(65 * 65 * 4) + 256 + 2 * 256 + 256 + 2 * 64 * 65 * 65 * 8 +
                                    round_up(65 * size_t(ds) * 4) + round_up(65 * size_t(dt) * 4));
    }
}

TEST_F(SP, BadInputs)
{
    kdfSPParams_t good = KDF_SP_PARAMS_INIT;
    good.rows = 4;
    good.dim_student = 5;
    good.dim_teacher = 6;
    DeviceBuffer<float> fs(20), ft(24), loss(1), grad(20);
    DeviceBuffer<unsigned char> ws(workspace(good) + 16);
    auto call = [&](const kdfSPParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfSP(handle, &p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                     bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdftest::expect_row_params_checked(good, "KDF_SP_PARAMS_INIT", call);
    kdfSPParams_t p = good;
    p.rows = 46340;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->rows must be <= 46339");
    EXPECT_STATUS(kdfSP(handle, nullptr, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "params is NULL");
    EXPECT_STATUS(kdfSP(nullptr, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(grad.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "grad_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(fs.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps f_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(ft.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps f_t");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfSP(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    EXPECT_STATUS(kdfSP(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0,
                 static_cast<unsigned char*>(ws.get()) + 4, ws.size() - 4, stream),
           KDF_STATUS_MISALIGNED_POINTER, "workspace");
    EXPECT_STATUS(kdfSP(handle, &good, nullptr, ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_s is NULL");
    EXPECT_STATUS(kdfSP(handle, &good, fs.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_t is NULL");
    EXPECT_STATUS(kdfSP(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, NAN, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    size_t bytes = 0;
    EXPECT_STATUS(kdfSPWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    p = good, p.rows = -3;
    EXPECT_STATUS(kdfSPWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "params->rows");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
