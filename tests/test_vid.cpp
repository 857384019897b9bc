// VID through the C API of libkdfuse_sim: golden data (equal sizes, pooled targets, log_scale extremes),
// one launch, accumulate/weights, NULL outputs, strided and misaligned layouts, determinism, the
// multi-layer sum of RepDistiller, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <cmath>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class VID : public kdftest::LossTest {
protected:
    struct Case {
        kdfVIDParams_t params = KDF_VID_PARAMS_INIT;
        std::vector<float> pred, target, log_scale;
        float grad_loss = 1.0f;
        bool has_grad_loss = false;
        float grad_scale = 1.0f;
        std::vector<double> loss, grad_pred, grad_log_scale;
    };

    // One case, or layer `layer` of a multi-layer case (tensors suffixed with the layer index; the loss is
    // then the case's total over the layers).
    static Case load(const GoldenCase& g, const std::string& layer = "")
    {
        Case c;
        const auto pred = g.load("pred_mean" + layer);
        c.params.pred = kdftest::dense_map(pred);
        c.params.target = kdftest::dense_map(g.load("target" + layer));
        c.params.eps = static_cast<float>(g.number("eps"));
        c.params.weight = static_cast<float>(g.number("weight" + layer));
        c.grad_scale = static_cast<float>(g.number("grad_scale"));
        c.pred = pred.as_float();
        c.target = g.load("target" + layer).as_float();
        c.log_scale = g.load("log_scale" + layer).as_float();
        if (g.has("grad_loss")) {
            c.grad_loss = g.load("grad_loss").as_float()[0];
            c.has_grad_loss = true;
        }
        c.loss = g.load("loss").values;
        c.grad_pred = g.load("grad_pred_mean" + layer).values;
        c.grad_log_scale = g.load("grad_log_scale" + layer).values;
        return c;
    }

    static bool multilayer(const GoldenCase& g) { return g.params.count("layers") != 0; }

    size_t workspace(const kdfVIDParams_t& p) { return kdftest::workspace_size(kdfVIDWorkspaceSize, p); }

    // Device copies of a case's inputs and its outputs (dense layouts).
    struct Buffers {
        DeviceBuffer<float> pred, target, log_scale, grad_loss, loss, grad_pred, grad_log_scale;
        DeviceBuffer<unsigned char> ws;
        Buffers(const Case& c, size_t ws_bytes)
            : pred(c.pred), target(c.target), log_scale(c.log_scale), grad_loss(std::vector<float>{c.grad_loss}), loss(1),
              grad_pred(c.pred.size()), grad_log_scale(c.log_scale.size()), ws(std::max<size_t>(1, ws_bytes))
        {
        }
    };

    kdfStatus_t run(const Case& c, const kdfVIDParams_t& p, Buffers& b, const float* pred, const float* target, float* loss,
                    float* grad_pred, float* grad_log_scale, int accumulate)
    {
        return kdfVID(handle, &p, pred, target, b.log_scale.get(), loss, grad_pred, grad_log_scale,
                      c.has_grad_loss ? b.grad_loss.get() : nullptr, c.grad_scale, accumulate, b.ws.get(), b.ws.size(), stream);
    }
    kdfStatus_t run(const Case& c, Buffers& b, float* loss, float* grad_pred, float* grad_log_scale, int accumulate)
    {
        return run(c, c.params, b, b.pred.get(), b.target.get(), loss, grad_pred, grad_log_scale, accumulate);
    }

    static std::vector<double> times(std::vector<double> v, double k)
    {
        for (auto& x : v) x *= k;
        return v;
    }
    static bool all_zero(const std::vector<float>& v)
    {
        return std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; });
    }
};

TEST_F(VID, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("vid");
    ASSERT_GE(cases.size(), 15u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (multilayer(g)) continue;
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        Buffers b(c, workspace(c.params));
        ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(b.loss.download(), c.loss, "loss");
        EXPECT_CLOSE(b.grad_pred.download(), c.grad_pred, "grad_pred");
        EXPECT_CLOSE(b.grad_log_scale.download(), c.grad_log_scale, "grad_log_scale");

        // Accumulate adds to every output, the loss included.
        ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 1), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(b.loss.download(), times(c.loss, 2.0), "accumulated loss");
        EXPECT_CLOSE(b.grad_pred.download(), times(c.grad_pred, 2.0), "accumulated grad_pred");
        EXPECT_CLOSE(b.grad_log_scale.download(), times(c.grad_log_scale, 2.0), "accumulated grad_log_scale");

        // Each output alone; the others are not written.
        ASSERT_EQ(cudaMemset(b.grad_pred.get(), 0, b.grad_pred.size() * 4), cudaSuccess);
        ASSERT_EQ(cudaMemset(b.grad_log_scale.get(), 0, b.grad_log_scale.size() * 4), cudaSuccess);
        ASSERT_EQ(run(c, b, b.loss.get(), nullptr, nullptr, 0), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(b.loss.download(), c.loss, "loss only");
        EXPECT_TRUE(all_zero(b.grad_pred.download())) << "grad_pred untouched";
        EXPECT_TRUE(all_zero(b.grad_log_scale.download())) << "grad_log_scale untouched";
        ASSERT_EQ(cudaMemset(b.loss.get(), 0, 4), cudaSuccess);
        ASSERT_EQ(run(c, b, nullptr, b.grad_pred.get(), nullptr, 0), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(b.grad_pred.download(), c.grad_pred, "grad_pred only");
        EXPECT_TRUE(all_zero(b.grad_log_scale.download())) << "grad_log_scale untouched";
        ASSERT_EQ(run(c, b, nullptr, nullptr, b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(b.grad_log_scale.download(), c.grad_log_scale, "grad_log_scale only");
        EXPECT_TRUE(all_zero(b.loss.download())) << "loss untouched";
    }
}

TEST_F(VID, LogScaleExtremesStayFinite)
{
    // log_scale = +-20, +-80 (softplus and sigmoid saturated; the seed's log(1 + exp(x)) overflows at 89).
    for (const char* name : {"2x6x5x5_extreme_log_scale", "2x4x4x4_extreme_log_scale_pooled"}) {
        SCOPED_TRACE(name);
        const Case c = load(kdftest::find_case("vid", name));
        Buffers b(c, workspace(c.params));
        ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS);
        const auto loss = b.loss.download(), gp = b.grad_pred.download(), gl = b.grad_log_scale.download();
        for (const auto* v : {&loss, &gp, &gl})
            EXPECT_TRUE(std::all_of(v->begin(), v->end(), [](float x) { return std::isfinite(x); }));
        EXPECT_CLOSE(loss, c.loss, "loss");
        EXPECT_CLOSE(gp, c.grad_pred, "grad_pred");
        EXPECT_CLOSE(gl, c.grad_log_scale, "grad_log_scale");
    }
}

TEST_F(VID, StridedAndMisalignedLayoutsMatchDenseBitwise)
{
    // 8x64x16x16: the dense call takes the 16-byte path; strided/misaligned ones the scalar path with the
    // same summation order. 2x3x5x7: 8-lane groups. 3x5x7x9 vs 10x13: pooled.
    for (const char* name : {"8x64x16x16", "2x3x5x7", "3x5x7x9_pool_10x13"}) {
        SCOPED_TRACE(name);
        const Case c = load(kdftest::find_case("vid", name));
        Buffers b(c, workspace(c.params));
        ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS);
        const auto dense_loss = b.loss.download(), dense_gp = b.grad_pred.download(), dense_gl = b.grad_log_scale.download();
        EXPECT_CLOSE(dense_loss, c.loss, "dense loss");

        // {pred pad_c, pad_n, offset, target pad_c, pad_n, offset}: misaligned pred with a dense target, both
        // strided and misaligned, both strided with 16-byte aligned planes (pad_c -1: stride_c = h*w rounded up
        // to 4 floats, plus 4; the 16-byte path then has a scalar tail when h*w is not a multiple of 4).
        struct Layout {
            int64_t pc, pn, po, tc, tn, to;
        };
        const auto aligned_pad = [](const kdfFeatureMap_t& m) { return (4 - m.h * m.w % 4) % 4 + 4; };
        for (Layout l : {Layout{3, 5, 1, 0, 0, 0}, Layout{1, 2, 3, 5, 7, 1}, Layout{-1, 8, 0, -1, 12, 0}}) {
            if (l.pc < 0) l.pc = aligned_pad(c.params.pred);
            if (l.tc < 0) l.tc = aligned_pad(c.params.target);
            SCOPED_TRACE("pred pad " + std::to_string(l.pc) + "/" + std::to_string(l.pn) + " offset " + std::to_string(l.po) +
                         ", target pad " + std::to_string(l.tc) + "/" + std::to_string(l.tn) + " offset " +
                         std::to_string(l.to));
            kdftest::Strided s(c.pred, c.params.pred, l.pc, l.pn, l.po);
            kdftest::Strided t(c.target, c.params.target, l.tc, l.tn, l.to);
            kdfVIDParams_t p = c.params;
            p.pred = s.map;
            p.target = t.map;
            DeviceBuffer<float> ps(s.buffer), ts(t.buffer), gp(s.buffer.size());
            ASSERT_EQ(cudaMemset(gp.get(), 0, gp.size() * 4), cudaSuccess);
            ASSERT_EQ(run(c, p, b, ps.get() + s.offset, ts.get() + t.offset, b.loss.get(), gp.get() + s.offset,
                          b.grad_log_scale.get(), 0),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            const auto g = gp.download();
            EXPECT_TRUE(kdftest::bitwise_equal(b.loss.download(), dense_loss)) << "loss";
            EXPECT_TRUE(kdftest::bitwise_equal(s.extract(g), dense_gp)) << "grad_pred";
            EXPECT_TRUE(kdftest::bitwise_equal(b.grad_log_scale.download(), dense_gl)) << "grad_log_scale";
            if (l.pc > 0) EXPECT_EQ(g[s.offset + s.map.h * s.map.w], 0.0f) << "channel padding of grad_pred untouched";
        }
    }
}

TEST_F(VID, OneLaunchNoSyncAndBitwiseReproducible)
{
    // Every group size (8 lanes, a warp, a block per plane), equal-size and pooled.
    for (const char* name : {"4x32x8x8_weighted", "8x64x16x16", "2x3x72x72_block_planes", "2x2x65x70_block_planes_pool_130x141",
                             "3x5x7x9_pool_10x13"}) {
        SCOPED_TRACE(name);
        const Case c = load(kdftest::find_case("vid", name));
        Buffers b(c, workspace(c.params));
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule(
            [&] {
                ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS);
                EXPECT_CALL_WORK(1u, 0u);  // loss, grad_pred and grad_log_scale come from one kernel
                EXPECT_EQ(kdfuse::simt::counters().cub_calls, 0u);
                runs.push_back(kdftest::concat({b.loss.download(), b.grad_pred.download(), b.grad_log_scale.download()}));
            },
            {{kdfuse::simt::Schedule::Forward, 1}, {kdfuse::simt::Schedule::Reverse, 1}, {kdfuse::simt::Schedule::Random, 3},
             {kdfuse::simt::Schedule::Random, 11}});
        ASSERT_EQ(runs.size(), 4u);
        for (size_t i = 1; i < runs.size(); ++i) EXPECT_TRUE(kdftest::bitwise_equal(runs[i], runs[0])) << "run " << i;

        // Gradient of pred_mean alone: still one launch (no ticket, no memset).
        kdfuse::simt::reset_counters();
        ASSERT_EQ(run(c, b, nullptr, b.grad_pred.get(), nullptr, 0), KDF_STATUS_SUCCESS);
        EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 1u);
        EXPECT_EQ(kdfuse::simt::counters().synchronizations, 0u);
    }
}

TEST_F(VID, GridStrideOverMorePlanesThanTheGrid)
{
    // More planes than one grid covers (1024 blocks of 32 8-lane groups, 8 warps or 1 block-wide group),
    // so groups go round the plane loop and reuse their reduction storage; checked against a float64
    // evaluation of the formula here and across schedules (a missing barrier would show).
    const struct {
        int64_t n, c, h, w;
    } shapes[] = {{2, 16500, 1, 1}, {3, 2800, 5, 13}, {1, 1030, 64, 65}};
    for (const auto& sh : shapes) {
        const std::string name = std::to_string(sh.n) + "x" + std::to_string(sh.c) + "x" + std::to_string(sh.h) + "x" +
                                 std::to_string(sh.w);
        SCOPED_TRACE(name);
        const int64_t hw = sh.h * sh.w, M = sh.n * sh.c * hw;
        Case c;
        c.params.pred = {sh.n, sh.c, sh.h, sh.w, 0, 0};
        c.params.target = c.params.pred;
        c.params.weight = 0.75f;
        c.grad_scale = -1.5f;
        c.pred = kdftest::uniform(static_cast<size_t>(M), 1, -2.0f, 2.0f);
        c.target = kdftest::uniform(static_cast<size_t>(M), 2, -2.0f, 2.0f);
        c.log_scale = kdftest::uniform(static_cast<size_t>(sh.c), 3, -4.0f, 4.0f);
        // float64 reference
        const double w = c.params.weight, k = c.grad_scale, eps = c.params.eps, nhw = double(sh.n * hw);
        std::vector<double> S(static_cast<size_t>(sh.c), 0.0), var(S.size());
        c.grad_pred.resize(static_cast<size_t>(M));
        for (int64_t ch = 0; ch < sh.c; ++ch) {
            const double x = c.log_scale[ch];
            var[ch] = std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))) + eps;
        }
        for (int64_t i = 0; i < M; ++i) {
            const int64_t ch = i / hw % sh.c;
            const double d = double(c.pred[i]) - double(c.target[i]);
            S[ch] += d * d;
            c.grad_pred[i] = k * w * d / (double(M) * var[ch]);
        }
        double loss = 0.0;
        for (int64_t ch = 0; ch < sh.c; ++ch) {
            loss += S[ch] / var[ch] + nhw * std::log(var[ch]);
            const double sig = 1.0 / (1.0 + std::exp(-double(c.log_scale[ch])));
            c.grad_log_scale.push_back(k * w / (2.0 * double(M)) * sig * (nhw - S[ch] / var[ch]) / var[ch]);
        }
        c.loss = {0.5 * w * loss / double(M)};

        Buffers b(c, workspace(c.params));
        std::vector<std::vector<float>> runs;
        kdftest::for_each_schedule(
            [&] {
                ASSERT_EQ(run(c, b, b.loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 0), KDF_STATUS_SUCCESS);
                const auto r = b.loss.download(), gp = b.grad_pred.download(), gl = b.grad_log_scale.download();
                EXPECT_CLOSE(r, c.loss, "loss");
                EXPECT_CLOSE(gp, c.grad_pred, "grad_pred");
                EXPECT_CLOSE(gl, c.grad_log_scale, "grad_log_scale");
                runs.push_back(kdftest::concat({r, gp, gl}));
            },
            {{kdfuse::simt::Schedule::Forward, 1}, {kdfuse::simt::Schedule::Reverse, 1}, {kdfuse::simt::Schedule::Random, 7}});
        ASSERT_EQ(runs.size(), 3u);
        for (size_t i = 1; i < runs.size(); ++i) EXPECT_TRUE(kdftest::bitwise_equal(runs[i], runs[0])) << "run " << i;
    }
}

TEST_F(VID, NothingRequestedIsANoOp)
{
    const Case c = load(kdftest::find_case("vid", "2x3x5x7"));
    Buffers b(c, workspace(c.params));
    kdfuse::simt::reset_counters();
    EXPECT_EQ(run(c, b, nullptr, nullptr, nullptr, 0), KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
    EXPECT_EQ(kdfuse::simt::counters().synchronizations, 0u);
}

TEST_F(VID, WorkspaceAtResnet32x4Shapes)
{
    // resnet32x4 -> resnet8x4, N = 64, feature maps 32x32x32, 64x32x32, 128x16x16, 256x8x8: one float per
    // (n, c) plane, one loss term per channel and C + 1 tickets, each part rounded up to 256 bytes; independent of
    // H, W and of the target's size.
    kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
    const struct {
        int64_t c, hw;
        size_t bytes;
    } layers[] = {{32, 32, 8192u + 256u + 256u}, {64, 32, 16384u + 256u + 512u}, {128, 16, 32768u + 512u + 768u},
                  {256, 8, 65536u + 1024u + 1280u}};
    for (const auto& l : layers) {
        p.pred = {64, l.c, l.hw, l.hw, 0, 0};
        p.target = p.pred;
        EXPECT_EQ(workspace(p), l.bytes) << "C = " << l.c;
        p.target.h = p.target.w = 2 * l.hw;  // a teacher of twice the resolution: pooled, same workspace
        EXPECT_EQ(workspace(p), l.bytes) << "C = " << l.c << ", pooled";
    }
    EXPECT_EQ(workspace(p), 67840u);
    p.pred = {256, 512, 7, 7, 0, 0};  // ImageNet ResNet34 -> ResNet18 last stage
    p.target = p.pred;
    EXPECT_EQ(workspace(p), 256u * 512u * 4u + 2048u + 2304u);
}

TEST_F(VID, MultiLayerSumIntoOneLoss)
{
    // RepDistiller sums VID over the intermediate layer pairs (resnet8x4: 64x32x32, 128x16x16, 256x8x8),
    // here with per-layer weights 1, 0.5, 2 and N = 2, into one loss buffer with accumulate.
    for (const char* name : {"multilayer_resnet8x4_n2", "multilayer_pooled_n2"}) {
        SCOPED_TRACE(name);
        const GoldenCase g = kdftest::find_case("vid", name);
        ASSERT_TRUE(multilayer(g));
        const int layers = static_cast<int>(g.number("layers"));
        ASSERT_EQ(layers, 3);
        DeviceBuffer<float> loss(std::vector<float>{0.0f});
        for (int l = 0; l < layers; ++l) {
            SCOPED_TRACE("layer " + std::to_string(l));
            const Case c = load(g, std::to_string(l));
            Buffers b(c, workspace(c.params));
            ASSERT_EQ(cudaMemset(b.grad_pred.get(), 0, b.grad_pred.size() * 4), cudaSuccess);
            ASSERT_EQ(cudaMemset(b.grad_log_scale.get(), 0, b.grad_log_scale.size() * 4), cudaSuccess);
            ASSERT_EQ(run(c, b, loss.get(), b.grad_pred.get(), b.grad_log_scale.get(), 1), KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(b.grad_pred.download(), c.grad_pred, "grad_pred");
            EXPECT_CLOSE(b.grad_log_scale.download(), c.grad_log_scale, "grad_log_scale");
        }
        EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum over the layers of weight * loss");
    }
}

TEST_F(VID, BadInputs)
{
    kdfVIDParams_t good = KDF_VID_PARAMS_INIT;
    good.pred = {2, 3, 4, 5, 0, 0};
    good.target = {2, 3, 8, 10, 0, 0};
    DeviceBuffer<float> pred(120), target(480), ls(3), loss(1), gp(120), gls(3);
    DeviceBuffer<unsigned char> ws(workspace(good));
    struct Ptrs {
        const void* pred;
        const void* target;
        const float* ls;
        float* loss;
        void* gp;
        float* gls;
        const float* grad_loss;
    };
    const Ptrs ok{pred.get(), target.get(), ls.get(), loss.get(), gp.get(), gls.get(), nullptr};
    auto call = [&](const kdfVIDParams_t* p, Ptrs x, float grad_scale = 1.0f, void* w = nullptr, size_t bytes = SIZE_MAX) {
        return kdfVID(handle, p, x.pred, x.target, x.ls, x.loss, x.gp, x.gls, x.grad_loss, grad_scale, 0, w ? w : ws.get(),
                      bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    auto expect_params = [&](const kdfVIDParams_t& p, kdfStatus_t want, const char* needle) {
        EXPECT_STATUS(call(&p, ok), want, needle);
        size_t bytes = 0;
        EXPECT_STATUS(kdfVIDWorkspaceSize(&p, &bytes), want, needle);
    };
    auto misaligned = [](const void* p) { return static_cast<const char*>(p) + 2; };

    // Params.
    kdfVIDParams_t p = good;
    p.target.n = 3;
    expect_params(p, KDF_STATUS_SHAPE_MISMATCH, "params->pred.n (2) != params->target.n (3)");
    p = good, p.target.c = 4;
    expect_params(p, KDF_STATUS_SHAPE_MISMATCH, "params->pred.c (3) != params->target.c (4)");
    p = good, p.target.h = 3;
    expect_params(p, KDF_STATUS_SHAPE_MISMATCH, "params->target.h (3) < params->pred.h (4)");
    p = good, p.target.w = 4;
    expect_params(p, KDF_STATUS_SHAPE_MISMATCH, "params->target.w (4) < params->pred.w (5)");
    p = good, p.pred.c = 0, p.target.c = 0;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->pred.c must be >= 1");
    p = good, p.target.w = 0;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->target.w must be >= 1");
    p = good, p.pred.stride_c = 19;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->pred.stride_c");
    p = good, p.target.stride_n = 200;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->target.stride_n");
    p = good, p.pred.h = int64_t(1) << 40;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->pred: shape too large");
    for (float eps : {0.0f, -1e-5f, NAN, INFINITY}) {
        p = good, p.eps = eps;
        expect_params(p, KDF_STATUS_INVALID_VALUE, "params->eps must be finite and > 0");
    }
    p = good, p.weight = NAN;
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    expect_params(p, KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.dtype = KDF_DTYPE_BF16;
    expect_params(p, KDF_STATUS_NOT_SUPPORTED, "bf16");
    p = good, p.dtype = static_cast<kdfDataType_t>(7);
    expect_params(p, KDF_STATUS_INVALID_VALUE, "params->dtype is not a kdfDataType_t");
    p = good, p.struct_size = sizeof(kdfFitNetParams_t);
    expect_params(p, KDF_STATUS_INVALID_VALUE, "KDF_VID_PARAMS_INIT");
    EXPECT_STATUS(call(nullptr, ok), KDF_STATUS_NULL_POINTER, "params is NULL");
    size_t bytes = 0;
    EXPECT_STATUS(kdfVIDWorkspaceSize(nullptr, &bytes), KDF_STATUS_NULL_POINTER, "params is NULL");
    EXPECT_STATUS(kdfVIDWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes is NULL");

    // Handle.
    EXPECT_STATUS(kdfVID(nullptr, &good, ok.pred, ok.target, ok.ls, ok.loss, ok.gp, ok.gls, nullptr, 1.0f, 0, ws.get(), ws.size(),
                  stream),
           KDF_STATUS_NULL_POINTER, "handle is NULL");

    // Pointers.
    Ptrs x = ok;
    x.pred = nullptr;
    EXPECT_STATUS(call(&good, x), KDF_STATUS_NULL_POINTER, "pred_mean is NULL");
    x = ok, x.target = nullptr;
    EXPECT_STATUS(call(&good, x), KDF_STATUS_NULL_POINTER, "target is NULL");
    x = ok, x.ls = nullptr;
    EXPECT_STATUS(call(&good, x), KDF_STATUS_NULL_POINTER, "log_scale is NULL");
    x = ok, x.pred = misaligned(pred.get());
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "pred_mean is not 4-byte aligned");
    x = ok, x.target = misaligned(target.get());
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "target is not 4-byte aligned");
    x = ok, x.ls = reinterpret_cast<const float*>(misaligned(ls.get()));
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "log_scale is not 4-byte aligned");
    x = ok, x.loss = reinterpret_cast<float*>(const_cast<char*>(misaligned(loss.get())));
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "loss is not 4-byte aligned");
    x = ok, x.gp = const_cast<char*>(misaligned(gp.get()));
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "grad_pred is not 4-byte aligned");
    x = ok, x.gls = reinterpret_cast<float*>(const_cast<char*>(misaligned(gls.get())));
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "grad_log_scale is not 4-byte aligned");
    x = ok, x.grad_loss = reinterpret_cast<const float*>(misaligned(loss.get()));
    EXPECT_STATUS(call(&good, x), KDF_STATUS_MISALIGNED_POINTER, "grad_loss is not 4-byte aligned");
    x = ok, x.gp = pred.get();
    EXPECT_STATUS(call(&good, x), KDF_STATUS_INVALID_VALUE, "grad_pred overlaps pred_mean");
    x = ok, x.gp = target.get();
    EXPECT_STATUS(call(&good, x), KDF_STATUS_INVALID_VALUE, "grad_pred overlaps target");
    x = ok, x.gls = ls.get();
    EXPECT_STATUS(call(&good, x), KDF_STATUS_INVALID_VALUE, "grad_log_scale overlaps log_scale");
    EXPECT_STATUS(call(&good, ok, INFINITY), KDF_STATUS_INVALID_VALUE, "grad_scale must be finite");

    // Workspace.
    EXPECT_STATUS(call(&good, ok, 1.0f, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes is 16");
    EXPECT_STATUS(kdfVID(handle, &good, ok.pred, ok.target, ok.ls, ok.loss, ok.gp, ok.gls, nullptr, 1.0f, 0, nullptr, ws.size(),
                  stream),
           KDF_STATUS_NULL_POINTER, "workspace is NULL");
    DeviceBuffer<unsigned char> big(ws.size() + 16);
    EXPECT_STATUS(call(&good, ok, 1.0f, big.get() + 8, ws.size()), KDF_STATUS_MISALIGNED_POINTER, "workspace is not 16-byte aligned");

    EXPECT_EQ(call(&good, ok), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_STREQ(kdfGetLastErrorString(), "");
}

}  // namespace
