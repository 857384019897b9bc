// NST through the C API of libkdfuse_sim: golden data (pooling either map, odd sizes, N = 1 .. 64, zero and
// duplicated channels, full_loss = 0), accumulate/weights, NULL outputs, strided and misaligned layouts,
// launch and cuBLAS-call counts, determinism, RepDistiller's shapes, three layers summed into one loss,
// bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class NST : public kdftest::LossTest {
protected:
    struct Case : kdftest::PairCase<kdfNSTParams_t> {
        Case() { params = KDF_NST_PARAMS_INIT; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto fs = g.load("f_s"), ft = g.load("f_t");
        c.params.student = kdftest::dense_map(fs);
        c.params.teacher = kdftest::dense_map(ft);
        c.params.weight = static_cast<float>(g.number("weight"));
        c.params.full_loss = static_cast<int>(g.number("full_loss"));
        c.f_s = fs.as_float();
        c.f_t = ft.as_float();
        kdftest::load_expected(c, g);
        return c;
    }

    size_t workspace(const kdfNSTParams_t& p) { return kdftest::workspace_size(kdfNSTWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfNSTParams_t& p, const float* f_s, const float* f_t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfNST(handle, &p, f_s, f_t, loss, grad, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate,
                      ws.get(), ws.size(), stream);
    }
};

TEST_F(NST, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("nst");
    ASSERT_GE(cases.size(), 20u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.has("f_s0")) continue;  // the multi-layer case (below)
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, fs.get(), ft.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TEST_F(NST, StridedMisalignedAndMixedLayouts)
{
    // Student pooled (the adjoint writes through the strided layout) and teacher pooled.
    for (const char* name : {"3x6x14x18_vs_3x5x7x9", "3x5x7x9_vs_3x6x14x18"}) {
        const Case c = load(kdftest::find_case("nst", name));
        const kdfNSTParams_t params = c.params;
        for (int64_t offset : {1, 0}) {
            SCOPED_TRACE(std::string(name) + " offset " + std::to_string(offset));
            kdftest::Strided s(c.f_s, params.student, 3, 5, offset);
            kdftest::Strided t(c.f_t, params.teacher, 2, 7, offset ? 1 : 0);
            kdfNSTParams_t p = params;
            p.student = s.map;
            p.teacher = t.map;
            DeviceBuffer<float> fs(s.buffer), ft(t.buffer), loss(1), grad(s.buffer.size());
            ASSERT_EQ(cudaMemset(grad.get(), 0, grad.size() * 4), cudaSuccess);
            ASSERT_EQ(run(c, p, fs.get() + s.offset, ft.get() + t.offset, loss.get(), grad.get() + s.offset, 0),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), c.loss, "loss");
            const auto gr = grad.download();
            EXPECT_CLOSE(s.extract(gr), c.grad, "grad_s");
            EXPECT_EQ(gr[s.offset + s.map.h * s.map.w], 0.0f) << "channel padding of grad_s untouched";
        }
    }
}

TEST_F(NST, ThreeLaunchesTwoGemmsNoSyncAndBitwiseReproducible)
{
    const Case c = load(kdftest::find_case("nst", "2x4x11x13_vs_2x3x4x5_overlapping"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        ASSERT_EQ(kdfNST(handle, &c.params, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(),
                         ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_CALL_WORK(3u, 2u);  // normalise, the Grams (accumulated in double), finish; the two dA GEMMs
        runs.push_back(kdftest::concat({loss.download(), grad.download()}));
    });
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));

    // Loss only: no GEMM; gradient only: both.
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfNST(handle, &c.params, fs.get(), ft.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 3u);
    EXPECT_EQ(kdfuse::simt::counters().cublas_calls, 0u);
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfNST(handle, &c.params, fs.get(), ft.get(), nullptr, grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 3u);
    EXPECT_EQ(kdfuse::simt::counters().cublas_calls, 2u);
    EXPECT_EQ(kdfuse::simt::counters().synchronizations, 0u);
    // Neither output: nothing runs.
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfNST(handle, &c.params, fs.get(), ft.get(), nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
    EXPECT_EQ(kdfuse::simt::counters().cublas_calls, 0u);
}

TEST_F(NST, PositionFormCountsAndDeterminism)
{
    // 2 x (2x3)^2 <= (10 + 8)^2: D = S - T (and T, for a loss without the teacher term) in the Gram kernel, dA
    // one GEMM.
    const Case c = load(kdftest::find_case("nst", "2x10x4x6_vs_2x8x2x3_positions_student_pooled"));
    DeviceBuffer<float> fs(c.f_s), ft(c.f_t), loss(1), grad(c.f_s.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    struct Expect {
        bool loss, grad;
        int full_loss;
        unsigned gemms;
    };
    for (const Expect e : {Expect{true, true, 1, 1}, Expect{true, false, 1, 0}, Expect{false, true, 1, 1},
                           Expect{true, true, 0, 1}, Expect{true, false, 0, 0}, Expect{false, true, 0, 1}}) {
        SCOPED_TRACE("loss " + std::to_string(e.loss) + " grad " + std::to_string(e.grad) + " full_loss " +
                     std::to_string(e.full_loss));
        kdfNSTParams_t p = c.params;
        p.full_loss = e.full_loss;
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule([&] {
            ASSERT_EQ(kdfNST(handle, &p, fs.get(), ft.get(), e.loss ? loss.get() : nullptr, e.grad ? grad.get() : nullptr,
                             nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_CALL_WORK(3u, e.gemms);
            runs.push_back(e.loss ? loss.download() : grad.download());
        });
        ASSERT_EQ(runs.size(), 3u);
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
    }
}

TEST_F(NST, WorkspaceAtResnet32x4Shapes)
{
    // RepDistiller's three NST layers for resnet32x4 -> resnet8x4 at N = 64 (feat[1:-1], the same shapes on
    // both sides). Each call's workspace: X = [a; b] (N x c x P, c = C_s + C_t), the norms (N x c), the
    // per-sample matrices (G: N x c x c, or D and T: 2 x N x P x P in the position form), dA (N x C_s x P),
    // one grid-sum partial per row of X + the ticket, and the 4 MiB cuBLAS slice. Calls on one stream can
    // share one workspace, so the three layers need the largest of the three: under 64 MB, where the seed's
    // broadcast needs N x C x C x P floats per poly_kernel (1 GiB at 256x8x8).
    struct Layer {
        int64_t c, hw;
        bool positions;
    };
    size_t largest = 0;
    for (const Layer l : {Layer{64, 32, false}, Layer{128, 16, false}, Layer{256, 8, true}}) {
        kdfNSTParams_t p = KDF_NST_PARAMS_INIT;
        p.student = {64, l.c, l.hw, l.hw, 0, 0};
        p.teacher = p.student;
        const size_t n = 64, c = 2 * size_t(l.c), hw = size_t(l.hw * l.hw);
        const size_t matrices = l.positions ? 2 * n * hw * hw : n * c * c;
        const size_t expected = n * c * hw * 4 + n * c * 4 + matrices * 4 + n * size_t(l.c) * hw * 4 +
                                (n * c * 4 + 256) + (size_t(4) << 20);
        SCOPED_TRACE("layer " + std::to_string(l.c) + "x" + std::to_string(l.hw) + "x" + std::to_string(l.hw));
        EXPECT_EQ(workspace(p), expected);
        largest = std::max(largest, workspace(p));
    }
    EXPECT_LT(largest, size_t(64'000'000));
    EXPECT_EQ(largest, 64u * 128 * 1024 * 4 + 64u * 128 * 4 + 64u * 128 * 128 * 4 + 64u * 64 * 1024 * 4 +
                           (8192u * 4 + 256) + (size_t(4) << 20));  // the first layer: about 56 MiB
}

TEST_F(NST, ThreeLayersSummedIntoOneLoss)
{
    const GoldenCase g = kdftest::find_case("nst", "multilayer_resnet8x4_n2");
    const int layers = static_cast<int>(g.number("layers"));
    ASSERT_EQ(layers, 3);
    const float grad_scale = static_cast<float>(g.number("grad_scale"));
    DeviceBuffer<float> loss(std::vector<float>{0.0f});
    for (int l = 0; l < layers; ++l) {
        SCOPED_TRACE("layer " + std::to_string(l));
        const auto fs = g.load("f_s" + std::to_string(l)), ft = g.load("f_t" + std::to_string(l));
        kdfNSTParams_t p = KDF_NST_PARAMS_INIT;
        p.student = kdftest::dense_map(fs);
        p.teacher = kdftest::dense_map(ft);
        p.weight = static_cast<float>(g.number("weight" + std::to_string(l)));
        DeviceBuffer<float> d_fs(fs.as_float()), d_ft(ft.as_float()), grad(std::vector<float>(fs.values.size(), 0.0f));
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfNST(handle, &p, d_fs.get(), d_ft.get(), loss.get(), grad.get(), nullptr, grad_scale, l > 0 ? 1 : 0,
                         ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(grad.download(), g.load("grad_f_s" + std::to_string(l)).values, "grad_s");
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum of the weighted layer losses");
}

TEST_F(NST, BadInputs)
{
    kdfNSTParams_t good = KDF_NST_PARAMS_INIT;
    good.student = {2, 3, 4, 5, 0, 0};
    good.teacher = {2, 6, 8, 10, 0, 0};
    DeviceBuffer<float> fs(120), ft(960), loss(1), grad(120);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfNSTParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfNST(handle, &p, a ? a : fs.get(), ft.get(), loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                      bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfNSTParams_t p = good;
    p.teacher.n = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student.n (2) != params->teacher.n (3)");
    p = good, p.teacher.h = 2, p.teacher.w = 12;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "each larger in one dimension");
    p = good, p.student.c = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.c");
    p = good, p.student.stride_c = 19;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.stride_c");
    p = good, p.teacher.stride_n = 50;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.stride_n");
    p = good, p.student.c = 30000, p.teacher.c = 30000;
    EXPECT_STATUS(kdfNSTWorkspaceSize(&p, &*std::make_unique<size_t>()), KDF_STATUS_NOT_SUPPORTED, "46340");
    p = good, p.weight = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.full_loss = 2;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->full_loss");
    p = good, p.dtype = KDF_DTYPE_BF16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "bf16");
    p = good, p.dtype = static_cast<kdfDataType_t>(7);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dtype");
    p = good, p.struct_size = 4;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_NST_PARAMS_INIT");
    EXPECT_STATUS(kdfNST(handle, nullptr, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "params");
    EXPECT_STATUS(kdfNST(nullptr, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(kdfNSTWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(fs.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "f_s");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(grad.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "grad_s");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(ft.get())), KDF_STATUS_INVALID_VALUE, " overlaps");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfNST(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace");
    EXPECT_STATUS(kdfNST(handle, &good, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, NAN, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_STATUS(kdfNST(handle, &good, nullptr, ft.get(), loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_s");
    EXPECT_STATUS(kdfNST(handle, &good, fs.get(), nullptr, loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "f_t");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
