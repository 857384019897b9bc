// CC through the C API of libkdfuse_sim, both variants: golden data (N = 1, 2, 3, 5, 6, 17, 64, 70; D not a
// multiple of 4, D_s != D_t, duplicated and zero rows, zero deltas), grad_loss / grad_scale / weight,
// accumulate and NULL outputs, grad_t of the shipped variant, strided and misaligned rows, kernel-launch and
// cuBLAS-call counts, determinism, three resnet8x4 layers summed into one loss, the workspace at the
// resnet32x4 shapes, the seed's NaN quirks, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <cmath>
#include <memory>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using kdftest::Rows;
using kdftest::width;
using ::testing::HasSubstr;

class CC : public kdftest::LossTest {
protected:
    struct Case : kdftest::PairCase<kdfCCParams_t> {
        std::vector<double> grad_t;
        Case() { params = KDF_CC_PARAMS_INIT; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s"), ft = g.load("f_t");
        c.params.rows = fs.dim(0);
        c.params.dim_student = width(fs);
        c.params.dim_teacher = width(ft);
        c.params.variant = g.params.at("variant") == "repdistiller" ? KDF_CC_REPDISTILLER : KDF_CC_SEED;
        c.params.weight = static_cast<float>(g.number("weight"));
        c.f_s = fs.as_float();
        c.f_t = ft.as_float();
        kdftest::load_expected(c, g);
        if (g.has("grad_f_t")) c.grad_t = g.load("grad_f_t").values;
        return c;
    }

    size_t workspace(const kdfCCParams_t& p) { return kdftest::workspace_size(kdfCCWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfCCParams_t& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    float* grad_t, int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfCC(handle, &p, f_s, f_t, loss, grad, grad_t, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate,
                     ws.get(), ws.size(), stream);
    }
};

TEST_F(CC, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("cc");
    ASSERT_GE(cases.size(), 12u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.name.find("resnet") != std::string::npos) continue;  // MultiLayerSumIntoOneLoss
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, nullptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
        if (c.params.variant != KDF_CC_REPDISTILLER) continue;
        // Both gradients in one call, then the teacher's alone (accumulated onto a copy of itself).
        ASSERT_FALSE(c.grad_t.empty());
        DeviceBuffer<float> gt(c.f_t.size());
        ASSERT_EQ(run(c, c.params, fs.get(), ft.get(), loss.get(), grad.get(), gt.get(), 0), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(loss.download(), c.loss, "loss with grad_t");
        EXPECT_CLOSE(grad.download(), c.grad, "grad_s with grad_t");
        EXPECT_CLOSE(gt.download(), c.grad_t, "grad_t");
        ASSERT_EQ(run(c, c.params, fs.get(), ft.get(), nullptr, nullptr, gt.get(), 1), KDF_STATUS_SUCCESS);
        std::vector<double> twice = c.grad_t;
        for (auto& v : twice) v *= 2.0;
        EXPECT_CLOSE(gt.download(), twice, "grad_t only, accumulated");
    }
}

TEST_F(CC, StridedMisalignedRows)
{
    for (const char* name : {"seed_17x13_vs_17x30_weighted", "ship_17x13_weighted"}) {
        const Case c = load(kdftest::find_case("cc", name));
        const int64_t n = c.params.rows, ds = c.params.dim_student, dt = c.params.dim_teacher;
        const bool ship = c.params.variant == KDF_CC_REPDISTILLER;
        for (int64_t offset : {1, 0}) {
            SCOPED_TRACE(std::string(name) + ", offset " + std::to_string(offset));
            Rows s(c.f_s, n, ds, ds + 3, offset), t(c.f_t, n, dt, dt + 5, offset ? 0 : 2);
            kdfCCParams_t p = c.params;
            p.ld_student = s.ld();
            p.ld_teacher = t.ld();
            DeviceBuffer<float> fs(s.buffer), ft(t.buffer), loss(1), grad(s.buffer.size()), gt(t.buffer.size());
            ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
            ASSERT_EQ(cudaMemset(gt.get(), 0, gt.size() * 4), cudaSuccess);
            ASSERT_EQ(run(c, p, fs.get() + s.offset, ft.get() + t.offset, loss.get(), grad.get() + s.offset,
                          ship ? gt.get() + t.offset : nullptr, 0),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), c.loss, "loss");
            const auto g = grad.download();
            EXPECT_CLOSE(s.extract(g), c.grad, "grad_s");
            EXPECT_EQ(g[s.offset + ds], 0.0f) << "row padding of grad_s untouched";
            if (ship) {
                const auto h = gt.download();
                EXPECT_CLOSE(t.extract(h), c.grad_t, "grad_t");
                EXPECT_EQ(h[t.offset + dt], 0.0f) << "row padding of grad_t untouched";
            }
        }
    }
}

TEST_F(CC, KernelAndGemmCountsNoSyncAndBitwiseReproducible)
{
    struct Want {
        const char* name;
        bool loss, grad;
        uint64_t kernels, gemms;
    };
    // Seed: the centring kernel; G'_s, G'_t (common/gram_split.h: the partial-Gram kernel over 2 slices of 64
    // columns each, then the reduction kernel); norms and diff kernels; with the gradient the symmetrising kernel
    // and one GEMM. Shipped: one kernel, no GEMM, whatever is requested.
    for (const Want w : {Want{"seed_64x128", true, true, 6, 1}, Want{"seed_64x128", true, false, 5, 0},
                         Want{"seed_64x128", false, true, 6, 1}, Want{"ship_64x128", true, true, 1, 0},
                         Want{"ship_64x128", false, true, 1, 0}}) {
        SCOPED_TRACE(std::string(w.name) + ": loss " + (w.loss ? "on" : "off") + ", grad " + (w.grad ? "on" : "off"));
        const Case c = load(kdftest::find_case("cc", w.name));
        const bool ship = c.params.variant == KDF_CC_REPDISTILLER;
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size()), gt(c.f_t.size());
        DeviceBuffer<unsigned char> ws(workspace(c.params));
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule([&] {
            ASSERT_EQ(kdfCC(handle, &c.params, fs.get(), ft.get(), w.loss ? loss.get() : nullptr, w.grad ? grad.get() : nullptr,
                            w.grad && ship ? gt.get() : nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_CALL_WORK(w.kernels, w.gemms);
            runs.push_back(kdftest::concat({loss.download(), grad.download(), ship ? gt.download() : std::vector<float>{}}));
        });
        ASSERT_EQ(runs.size(), 3u);
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
    }
}

TEST_F(CC, MultiLayerSumIntoOneLoss)
{
    const GoldenCase g = kdftest::find_case("cc", "seed_resnet8x4_3_layers_n2");
    DeviceBuffer<float> loss(1);
    std::vector<std::unique_ptr<DeviceBuffer<float>>> keep;
    for (int i = 0; i < 3; ++i) {
        const auto fs = g.load("f_s" + std::to_string(i)), ft = g.load("f_t" + std::to_string(i));
        kdfCCParams_t p = KDF_CC_PARAMS_INIT;
        p.rows = fs.dim(0);
        p.dim_student = width(fs);
        p.dim_teacher = width(ft);
        p.weight = static_cast<float>(g.number("weight" + std::to_string(i)));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(fs.as_float()));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(ft.as_float()));
        keep.push_back(std::make_unique<DeviceBuffer<float>>(fs.values.size()));
        ASSERT_EQ(cudaMemset(keep.back()->get(), 0, fs.values.size() * sizeof(float)), cudaSuccess);  // accumulated into
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfCC(handle, &p, keep[3 * i]->get(), keep[3 * i + 1]->get(), loss.get(), keep[3 * i + 2]->get(), nullptr,
                        nullptr, 1.0f, i > 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "summed loss");
    // The gradients are checked at rtol 1e-4 with a floor of 4e-5 x max (not 1e-6): the seed gradient is a
    // small difference of Gram-sized terms over D up to 65536 (docs/losses/cc.md, Numerics; PyTorch's own
    // fp32 CC is off by up to 1.4e-5 x max at these widths, kdfuse by 2.9e-5 at its worst element: at N = 2
    // the centred Gram's terms |c|^2, |c||m|, |m|^2 are each as large as |f|^2, so their GEMM errors add up).
    for (int i = 0; i < 3; ++i) {
        const auto want = g.load("grad_f_s" + std::to_string(i)).values;
        double scale = 0.0;
        for (double v : want) scale = std::max(scale, std::abs(v));
        EXPECT_EQ(kdftest::compare(keep[3 * i + 2]->download(), want, 1e-4, 4e-5 * scale), "") << "grad_s of layer " << i;
    }
}

TEST_F(CC, SeedAndShippedQuirks)
{
    // Seed: an all-zero student gives ||G_s||_F = 0 and a NaN loss, as the seed. Shipped: N = 1 is the mean
    // of an empty tensor (NaN) with zero gradients.
    kdfCCParams_t p = KDF_CC_PARAMS_INIT;
    p.rows = 3, p.dim_student = 4, p.dim_teacher = 5;
    DeviceBuffer<float> zs(std::vector<float>(12, 0.0f)), ft(kdftest::uniform(15, 1)), loss(1);
    DeviceBuffer<unsigned char> ws(workspace(p));
    ASSERT_EQ(kdfCC(handle, &p, zs.get(), ft.get(), loss.get(), nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_TRUE(std::isnan(loss.download()[0]));

    p.variant = KDF_CC_REPDISTILLER, p.rows = 1, p.dim_teacher = 4;
    DeviceBuffer<float> a(kdftest::uniform(4, 2)), b(kdftest::uniform(4, 3)), gs(4), gt(4);
    DeviceBuffer<unsigned char> ws1(workspace(p));
    ASSERT_EQ(kdfCC(handle, &p, a.get(), b.get(), loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, ws1.get(), ws1.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_TRUE(std::isnan(loss.download()[0]));
    EXPECT_EQ(gs.download(), std::vector<float>(4, 0.0f));
    EXPECT_EQ(gt.download(), std::vector<float>(4, 0.0f));
}

TEST_F(CC, WorkspaceAtResnet32x4Shapes)
{
    // N = 64 (resnet32x4 -> resnet8x4): the seed variant needs the cuBLAS slice, two 65 x 65 Gram matrices (of
    // the centred rows and the mean), the statistics, two grid sums of 16 partials (64^2 / 1024 blocks), the 64
    // slices of each split Gram matrix (common/gram_split.h: 64 x 65^2 doubles each) and the centred copies,
    // 65 x D floats per network.
    kdfCCParams_t p = KDF_CC_PARAMS_INIT;
    p.rows = 64;
    for (const auto& [ds, dt] : {std::pair<int64_t, int64_t>{256 * 8 * 8, 256 * 8 * 8}, {32 * 32 * 32, 64 * 32 * 32},
                                 {128 * 16 * 16, 128 * 16 * 16}}) {
        p.dim_student = ds;
        p.dim_teacher = dt;
        const auto round_up = [](size_t x) { return (x + 255) / 256 * 256; };
        EXPECT_EQ(workspace(p), (size_t(4) << 20) + 2 * round_up(65 * 65 * 4) + 256 + 2 * 256 + 256 + 2 * 64 * 65 * 65 * 8 +
                                    round_up(65 * size_t(ds) * 4) + round_up(65 * size_t(dt) * 4));
    }
    // Shipped variant on RepDistiller's 128-wide CC embeddings: one grid sum of (2 chunks x 128) / 256 = 1 block.
    p.variant = KDF_CC_REPDISTILLER, p.dim_student = 128, p.dim_teacher = 128;
    EXPECT_EQ(workspace(p), 256u + 256u);
}

TEST_F(CC, BadInputs)
{
    kdfCCParams_t good = KDF_CC_PARAMS_INIT;
    good.rows = 4;
    good.dim_student = 5;
    good.dim_teacher = 6;
    DeviceBuffer<float> fs(20), ft(24), loss(1), grad(20), gt(24);
    DeviceBuffer<unsigned char> ws(workspace(good) + 16);
    auto call = [&](const kdfCCParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX,
                    void* g_t = nullptr) {
        return kdfCC(handle, &p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), g_t, nullptr, 1.0f, 0, ws.get(),
                     bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdftest::expect_row_params_checked(good, "KDF_CC_PARAMS_INIT", call);
    kdfCCParams_t p = good;
    p.rows = 46341;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->rows must be <= 46339");
    p = good, p.variant = KDF_CC_REPDISTILLER;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->dim_student (5) != params->dim_teacher (6)");
    p = good, p.variant = static_cast<kdfCCVariant_t>(2);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->variant is not a kdfCCVariant_t");
    EXPECT_STATUS(call(good, nullptr, nullptr, SIZE_MAX, gt.get()), KDF_STATUS_INVALID_VALUE, "grad_t must be NULL for KDF_CC_SEED");
    EXPECT_STATUS(kdfCC(handle, nullptr, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(),
                 stream),
           KDF_STATUS_NULL_POINTER, "params is NULL");
    EXPECT_STATUS(kdfCC(nullptr, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(),
                 stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(ft.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps f_t");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfCC(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, nullptr, 1.0f, 0, nullptr, ws.size(),
                 stream),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    EXPECT_STATUS(kdfCC(handle, &good, fs.get(), nullptr, loss.get(), grad.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(),
                 stream),
           KDF_STATUS_NULL_POINTER, "f_t is NULL");
    EXPECT_STATUS(kdfCC(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, nullptr, INFINITY, 0, ws.get(), ws.size(),
                 stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    // Shipped variant: grad_t checks.
    kdfCCParams_t s = good;
    s.variant = KDF_CC_REPDISTILLER, s.dim_teacher = 5;
    EXPECT_STATUS(call(s, nullptr, nullptr, SIZE_MAX, grad.get()), KDF_STATUS_INVALID_VALUE, "grad_s overlaps grad_t");
    EXPECT_STATUS(call(s, nullptr, nullptr, SIZE_MAX, const_cast<float*>(fs.get())), KDF_STATUS_INVALID_VALUE, "grad_t overlaps f_s");
    EXPECT_STATUS(call(s, nullptr, nullptr, SIZE_MAX, reinterpret_cast<char*>(gt.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "grad_t");
    size_t bytes = 0;
    EXPECT_STATUS(kdfCCWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    p = good, p.rows = -3;
    EXPECT_STATUS(kdfCCWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "params->rows");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_EQ(call(s, nullptr, nullptr, SIZE_MAX, gt.get()), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
