// OFD through the C API of libkdfuse_sim: golden data for both variants and the BN margin, launch counts (seed 2,
// original 1), accumulate/weights, NULL outputs, strided and misaligned layouts (bitwise the same results),
// determinism of the split margin sums, all-negative / all-positive teachers, multi-layer sums, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <cmath>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class OFD : public kdftest::LossTest {
protected:
    struct Case {
        kdfOFDParams_t params = KDF_OFD_PARAMS_INIT;
        std::vector<float> s, t, margin;  // margin: original variant only
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
        c.params.variant = g.params.at("variant") == "original" ? KDF_OFD_ORIGINAL : KDF_OFD_SEED;
        c.grad_scale = static_cast<float>(g.number("grad_scale"));
        c.s = s.as_float();
        c.t = g.load("t").as_float();
        if (g.has("margin")) c.margin = g.load("margin").as_float();
        if (g.has("grad_loss")) {
            c.grad_loss = g.load("grad_loss").as_float()[0];
            c.has_grad_loss = true;
        }
        c.loss = g.load("loss").values;
        c.grad = g.load("grad_s").values;
        return c;
    }

    size_t workspace(const kdfOFDParams_t& p) { return kdftest::workspace_size(kdfOFDWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfOFDParams_t& p, const float* s, const float* t, float* loss, float* grad,
                    int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<float> margin(std::max<size_t>(1, c.margin.size()));
        if (!c.margin.empty()) margin.upload(c.margin);
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfOFD(handle, &p, s, t, c.margin.empty() ? nullptr : margin.get(), loss, grad,
                      c.has_grad_loss ? gl.get() : nullptr, c.grad_scale, accumulate, ws.get(), ws.size(), stream);
    }
};

TEST_F(OFD, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("ofd");
    ASSERT_GE(cases.size(), 14u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.has("s0")) continue;  // the multi-layer case: MultiLayerSum
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> s(c.s), t(c.t), loss(1), grad(c.s.size());
        const auto call = [&](float* loss_ptr, float* grad_ptr, int acc) {
            return run(c, c.params, s.get(), t.get(), loss_ptr, grad_ptr, acc);
        };
        kdftest::check_outputs(call, loss, grad, c.loss, c.grad);
    }
}

TEST_F(OFD, AllMaskedGivesExactZerosAndAllPositiveTeacherIsMSE)
{
    // Teacher all negative and the student below t' everywhere: every element masked, loss and gradient 0.
    for (const char* name : {"2x4x3x3_all_masked"}) {
        const Case c = load(kdftest::find_case("ofd", name));
        DeviceBuffer<float> s(c.s), t(c.t), loss(std::vector<float>{1.0f}), grad(std::vector<float>(c.s.size(), 1.0f));
        ASSERT_EQ(run(c, c.params, s.get(), t.get(), loss.get(), grad.get(), 0), KDF_STATUS_SUCCESS);
        EXPECT_EQ(loss.download()[0], 0.0f);
        const auto g = grad.download();
        EXPECT_TRUE(std::all_of(g.begin(), g.end(), [](float v) { return v == 0.0f; }));
    }
    // Teacher all positive: every margin is 0 (not NaN: the seed's 0 / (0 + 1e-6)), t' = t, nothing masked,
    // so the loss is the plain MSE of s against t (computed here in double).
    const Case c = load(kdftest::find_case("ofd", "3x5x4x4_all_positive"));
    double mse = 0.0;
    for (size_t i = 0; i < c.s.size(); ++i) mse += (double(c.s[i]) - c.t[i]) * (double(c.s[i]) - c.t[i]);
    mse /= static_cast<double>(c.s.size());
    DeviceBuffer<float> s(c.s), t(c.t), loss(1);
    ASSERT_EQ(run(c, c.params, s.get(), t.get(), loss.get(), nullptr, 0), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(loss.download(), std::vector<double>{mse}, "all-positive teacher: MSE");
}

TEST_F(OFD, StridedMisalignedAndMixedLayoutsGiveBitwiseTheSameResults)
{
    // 5x3x41x43: H*W odd, margin kernel split 3 ways over 5 samples (scalar loads there); 16x8x32x32: H*W a
    // multiple of 4 (16-byte loads inside planes when the strides allow), margin split 4 ways; the original
    // variant with the caller's margin.
    for (const char* name : {"5x3x41x43_uneven_split", "16x8x32x32_split", "3x5x7x9_original"}) {
        SCOPED_TRACE(name);
        const Case c = load(kdftest::find_case("ofd", name));
        kdftest::check_pair_layouts(c.s, c.params.student, c.t, c.params.teacher, c.loss, c.grad,
                                    [&](const kdfFeatureMap_t& ms, const kdfFeatureMap_t& mt, const float* s, const float* t,
                                        float* loss, float* grad) {
                                        kdfOFDParams_t p = c.params;
                                        p.student = ms;
                                        p.teacher = mt;
                                        return run(c, p, s, t, loss, grad, 0);
                                    });
    }
}

TEST_F(OFD, LaunchCountsNoSyncAndBitwiseReproducible)
{
    // Seed variant: 2 kernels (per-channel batch margin, then the fused loss and gradient), whatever the outputs;
    // 16x8x32x32 splits every channel's margin over 4 blocks, so the per-channel tickets are exercised under
    // every block order. Original variant: 1 kernel. All on `stream`, no synchronisation.
    const Case seed = load(kdftest::find_case("ofd", "16x8x32x32_split"));
    const Case original = load(kdftest::find_case("ofd", "4x32x8x8_original_weighted"));
    for (const Case* c : {&seed, &original}) {
        const bool is_seed = c == &seed;
        SCOPED_TRACE(is_seed ? "seed" : "original");
        DeviceBuffer<float> s(c->s), t(c->t), loss(1), grad(c->s.size());
        DeviceBuffer<float> margin(std::max<size_t>(1, c->margin.size()));
        if (!is_seed) margin.upload(c->margin);
        DeviceBuffer<unsigned char> ws(workspace(c->params));
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule([&] {
            for (int outputs = 0; outputs < 3; ++outputs) {  // both, loss only, gradient only
                kdfuse::simt::reset_counters();
                ASSERT_EQ(kdfOFD(handle, &c->params, s.get(), t.get(), is_seed ? nullptr : margin.get(),
                                 outputs == 2 ? nullptr : loss.get(), outputs == 1 ? nullptr : grad.get(), nullptr, 1.0f, 0,
                                 ws.get(), ws.size(), stream),
                          KDF_STATUS_SUCCESS)
                    << kdfGetLastErrorString();
                EXPECT_CALL_WORK(is_seed ? 2u : 1u, 0u);
            }
            runs.push_back(kdftest::concat({loss.download(), grad.download()}));
        });
        ASSERT_EQ(runs.size(), 3u);
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
        EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
    }
}

TEST_F(OFD, ManyChannelsLoopOverTheMarginGrid)
{
    // 4500 channels of 3 values (N = 3, an N x D feature): more (channel, split) items than the margin kernel's
    // 4096 blocks, so some blocks compute two channels. Expected values from the seed's formulas in double.
    const int64_t n = 3, c = 4500;
    const auto s = kdftest::uniform(size_t(n * c), 11, -1.0f, 1.0f), t = kdftest::uniform(size_t(n * c), 12, -1.0f, 1.0f);
    std::vector<double> margin(size_t(c), 0.0), grad(size_t(n * c));
    for (int64_t j = 0; j < c; ++j) {
        double sum = 0.0, count = 0.0;
        for (int64_t i = 0; i < n; ++i)
            if (t[i * c + j] < 0.0f) sum += t[i * c + j], count += 1.0;
        margin[j] = count > 0 ? sum / (count + 1e-6) : 0.0;
    }
    double loss = 0.0;
    for (int64_t i = 0; i < n * c; ++i) {
        const double tm = std::max<double>(t[i], double(static_cast<float>(margin[i % c])));
        const double keep = (s[i] <= tm && tm <= 0.0) ? 0.0 : 1.0;
        loss += (s[i] - tm) * (s[i] - tm) * keep / double(n * c);
        grad[i] = 2.0 * (s[i] - tm) * keep / double(n * c);
    }
    kdfOFDParams_t p = KDF_OFD_PARAMS_INIT;
    p.student = {n, c, 1, 1, 0, 0};
    p.teacher = p.student;
    DeviceBuffer<float> ds(s), dt(t), dloss(1), dgrad(s.size());
    DeviceBuffer<unsigned char> ws(workspace(p));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfOFD(handle, &p, ds.get(), dt.get(), nullptr, dloss.get(), dgrad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(),
                     stream),
              KDF_STATUS_SUCCESS)
        << kdfGetLastErrorString();
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 2u);
    EXPECT_CLOSE(dloss.download(), std::vector<double>{loss}, "loss");
    EXPECT_CLOSE(dgrad.download(), grad, "grad_s");
}

TEST_F(OFD, WorkspaceAtResnet32x4Shapes)
{
    // RepDistiller's resnet32x4 -> resnet8x4 feature maps at N = 64. Every piece is rounded up to 256 bytes.
    // Original: the loss's grid sum, one float per block (2048 elements a block, at most 1024 blocks) + ticket.
    // Seed, in addition: C + 1 tickets (instead of 1), C margins, and when a channel's margin is split over
    // k blocks (k = min(ceil(512 / C), ceil(N*H*W / 4096), N)) C x k partial sums (fp32) and counts (64-bit):
    //   32x32x32:  k = 16: 4096 + 256 (33 tickets) + 256 + 2048 + 4096      = 10752
    //   64x32x32:  k = 8:  4096 + 512 (65 tickets) + 256 + 2048 + 4096      = 11008
    //   128x16x16: k = 4:  4096 + 768 (129 tickets) + 512 + 2048 + 4096     = 11520
    //   256x8x8:   k = 1 (4096 values a channel): 2048 + 256 + 1024         = 3328
    const int64_t shapes[][4] = {{64, 32, 32, 32}, {64, 64, 32, 32}, {64, 128, 16, 16}, {64, 256, 8, 8}};
    const size_t original[] = {4352, 4352, 4352, 2304};
    const size_t seed[] = {10752, 11008, 11520, 3328};
    for (int i = 0; i < 4; ++i) {
        kdfOFDParams_t p = KDF_OFD_PARAMS_INIT;
        p.student = {shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 0, 0};
        p.teacher = p.student;
        EXPECT_EQ(workspace(p), seed[i]) << "layer " << i;
        p.variant = KDF_OFD_ORIGINAL;
        EXPECT_EQ(workspace(p), original[i]) << "layer " << i;
    }
}

TEST_F(OFD, MultiLayerSum)
{
    // Three layers at the resnet8x4 shapes (N = 2, seed variant) summed into one loss buffer with accumulate
    // and per-call weights 1/4, 1/2, 1, against the reference's sum of weight_i * ofd_loss_i.
    const GoldenCase g = kdftest::find_case("ofd", "resnet8x4_3layers_n2");
    DeviceBuffer<float> loss(std::vector<float>{0.0f});
    for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("layer " + std::to_string(i));
        const std::string k = std::to_string(i);
        const auto s = g.load("s" + k);
        kdfOFDParams_t p = KDF_OFD_PARAMS_INIT;
        p.student = kdftest::dense_map(s);
        p.teacher = p.student;
        p.weight = static_cast<float>(g.number("weight" + k));
        DeviceBuffer<float> ds(s.as_float()), dt(g.load("t" + k).as_float()),
            grad(std::vector<float>(ds.size(), 0.0f));  // accumulate adds into it too
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfOFD(handle, &p, ds.get(), dt.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 1, ws.get(),
                         ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(grad.download(), g.load("grad_s" + k).values, "grad_s");
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum of the weighted layer losses");
}

TEST_F(OFD, MarginFromBNGoldenOneLaunchAndInPlace)
{
    const auto cases = kdftest::golden_cases("ofd_bn");
    ASSERT_GE(cases.size(), 2u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        SCOPED_TRACE("case " + g.name);
        const auto gamma = g.load("gamma").as_float(), beta = g.load("beta").as_float();
        const auto want = g.load("margin").values;
        const int64_t channels = static_cast<int64_t>(gamma.size());
        DeviceBuffer<float> dg(gamma), db(beta), margin(gamma.size());
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfOFDMarginFromBN(handle, channels, dg.get(), db.get(), margin.get(), stream), KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CALL_WORK(1u, 0u);
        EXPECT_CLOSE(margin.download(), want, "margin");
        // In place over beta.
        ASSERT_EQ(kdfOFDMarginFromBN(handle, channels, dg.get(), db.get(), db.get(), stream), KDF_STATUS_SUCCESS);
        EXPECT_TRUE(kdftest::bitwise_equal(db.download(), margin.download()));
    }
    // The BN margin feeds the original variant: 3x5x7x9_original stores the same function's float margin.
    const GoldenCase g = kdftest::find_case("ofd_bn", "10_edges");
    const auto want = g.load("margin").values;
    EXPECT_EQ(want[0], double(-0.7f)) << "gamma = 0, beta < 0: the constant beta";
    EXPECT_EQ(want[1], 0.0);
    EXPECT_EQ(want[7], -3.0) << "deep tail: -3 |gamma|";
}

TEST_F(OFD, BadInputs)
{
    kdfOFDParams_t good = KDF_OFD_PARAMS_INIT;
    good.student = {2, 3, 4, 5, 0, 0};
    good.teacher = good.student;
    kdfOFDParams_t orig = good;
    orig.variant = KDF_OFD_ORIGINAL;
    DeviceBuffer<float> s(120), t(120), loss(1), grad(120), margin(std::vector<float>{-0.5f, -1.0f, 0.0f});
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfOFDParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX,
                    const float* m = nullptr) {
        return kdfOFD(handle, &p, a ? a : s.get(), t.get(), m, loss.get(), g ? g : grad.get(), nullptr, 1.0f, 0, ws.get(),
                      bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfOFDParams_t p = good;
    p.teacher.h = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "kdfOFD: params->student.h (4) != params->teacher.h (3)");
    p = good, p.teacher.c = 4;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student.c (3) != params->teacher.c (4)");
    p = good, p.student.n = -1, p.teacher.n = -1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.n");
    p = good, p.student.stride_c = 19;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student.stride_c");
    p = good, p.teacher.stride_n = 50;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher.stride_n");
    p = good, p.weight = INFINITY;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.variant = static_cast<kdfOFDVariant_t>(2);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->variant is not a kdfOFDVariant_t (got 2)");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.struct_size = sizeof(kdfOFDParams_t) + 8;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_OFD_PARAMS_INIT");
    EXPECT_STATUS(call(good, nullptr, nullptr, SIZE_MAX, margin.get()), KDF_STATUS_INVALID_VALUE, "margin must be NULL with KDF_OFD_SEED");
    DeviceBuffer<unsigned char> ws_orig(workspace(orig));
    EXPECT_STATUS(kdfOFD(handle, &orig, s.get(), t.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws_orig.get(),
                  ws_orig.size(), stream),
           KDF_STATUS_NULL_POINTER, "kdfOFD: margin (C floats, required with KDF_OFD_ORIGINAL) is NULL");
    EXPECT_STATUS(kdfOFD(handle, &orig, s.get(), t.get(), reinterpret_cast<const float*>(reinterpret_cast<const char*>(margin.get()) + 2),
                  loss.get(), grad.get(), nullptr, 1.0f, 0, ws_orig.get(), ws_orig.size(), stream),
           KDF_STATUS_MISALIGNED_POINTER, "margin");
    EXPECT_STATUS(kdfOFD(handle, &orig, s.get(), t.get(), margin.get(), loss.get(), margin.get(), nullptr, 1.0f, 0, ws_orig.get(),
                  ws_orig.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_s overlaps margin");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(s.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "kdfOFD: s is not 4-byte");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(t.get())), KDF_STATUS_INVALID_VALUE, "grad_s overlaps t");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfOFD(handle, &good, s.get(), t.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, nullptr, ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    EXPECT_STATUS(kdfOFD(handle, &good, nullptr, t.get(), nullptr, loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "kdfOFD: s is NULL");
    EXPECT_STATUS(kdfOFD(handle, &good, s.get(), nullptr, nullptr, loss.get(), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "kdfOFD: t is NULL");
    EXPECT_STATUS(kdfOFD(handle, &good, s.get(), t.get(), nullptr, loss.get(), grad.get(), nullptr, INFINITY, 0, ws.get(), ws.size(),
                  stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_STATUS(kdfOFD(nullptr, &good, s.get(), t.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(kdfOFD(handle, nullptr, s.get(), t.get(), nullptr, loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "params");
    size_t bytes = 0;
    EXPECT_STATUS(kdfOFDWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "kdfOFDWorkspaceSize: bytes");
    p = good, p.variant = static_cast<kdfOFDVariant_t>(-1);
    EXPECT_STATUS(kdfOFDWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "kdfOFDWorkspaceSize: params->variant");

    // kdfOFDMarginFromBN
    DeviceBuffer<float> out(3);
    EXPECT_STATUS(kdfOFDMarginFromBN(handle, 0, margin.get(), margin.get(), out.get(), stream), KDF_STATUS_INVALID_VALUE,
           "kdfOFDMarginFromBN: channels must be >= 1 (got 0)");
    EXPECT_STATUS(kdfOFDMarginFromBN(handle, 3, nullptr, margin.get(), out.get(), stream), KDF_STATUS_NULL_POINTER, "gamma is NULL");
    EXPECT_STATUS(kdfOFDMarginFromBN(handle, 3, margin.get(), nullptr, out.get(), stream), KDF_STATUS_NULL_POINTER, "beta is NULL");
    EXPECT_STATUS(kdfOFDMarginFromBN(handle, 3, margin.get(), margin.get(), nullptr, stream), KDF_STATUS_NULL_POINTER, "margin is NULL");
    EXPECT_STATUS(kdfOFDMarginFromBN(handle, 3, margin.get(), margin.get(),
                              reinterpret_cast<float*>(reinterpret_cast<char*>(out.get()) + 1), stream),
           KDF_STATUS_MISALIGNED_POINTER, "margin is not 4-byte");
    EXPECT_STATUS(kdfOFDMarginFromBN(nullptr, 3, margin.get(), margin.get(), out.get(), stream), KDF_STATUS_NULL_POINTER, "handle");

    {
        // Launches (or memsets) the runtime rejects (an invalid stream) are CUDA errors, not crashes: the seed
        // variant's gradient-only call stops at its first kernel, the original's at its only one.
        const cudaStream_t bad = reinterpret_cast<cudaStream_t>(0x4321);
        kdftest::ExpectSimtError simt_error;
        EXPECT_EQ(kdfOFD(handle, &good, s.get(), t.get(), nullptr, nullptr, grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), bad),
                  KDF_STATUS_CUDA_ERROR);
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("cudaErrorInvalidResourceHandle"));
        EXPECT_EQ(kdfOFD(handle, &orig, s.get(), t.get(), margin.get(), nullptr, grad.get(), nullptr, 1.0f, 0, ws_orig.get(),
                         ws_orig.size(), bad),
                  KDF_STATUS_CUDA_ERROR);
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("kdfOFD"));
        EXPECT_EQ(kdfOFDMarginFromBN(handle, 3, margin.get(), margin.get(), out.get(), bad), KDF_STATUS_CUDA_ERROR);
        EXPECT_THAT(kdfGetLastErrorString(), HasSubstr("kdfOFDMarginFromBN"));
        EXPECT_EQ(simt_error.messages().size(), 3u);
    }
    // All outputs NULL: a successful no-op (no launch).
    kdfuse::simt::reset_counters();
    EXPECT_EQ(kdfOFD(handle, &good, s.get(), t.get(), nullptr, nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
    EXPECT_STREQ(kdfGetLastErrorString(), "");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfOFD(handle, &orig, s.get(), t.get(), margin.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws_orig.get(),
                     ws_orig.size(), stream),
              KDF_STATUS_SUCCESS);
}

}  // namespace
