// FSP through the C API of libkdfuse_sim: golden data (either map of a pair pooled, odd sizes, N = 1 .. 64,
// zero and duplicated channels), accumulate/weights, NULL outputs (each gradient alone), strided and
// misaligned layouts, launch and cuBLAS-call counts, determinism, RepDistiller's resnet8x4 chain of pairs
// composed with accumulate, the workspace at those shapes, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

class FSP : public kdftest::LossTest {
protected:
    struct Case {
        kdfFSPParams_t params = KDF_FSP_PARAMS_INIT;
        std::vector<float> s_bot, s_top, t_bot, t_top;
        float grad_loss = 1.0f;
        bool has_grad_loss = false;
        float grad_scale = 1.0f;
        std::vector<double> loss, grad_bot, grad_top;
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        const auto sb = g.load("s_bot"), st = g.load("s_top"), tb = g.load("t_bot"), tt = g.load("t_top");
        c.params.student_bot = kdftest::dense_map(sb);
        c.params.student_top = kdftest::dense_map(st);
        c.params.teacher_bot = kdftest::dense_map(tb);
        c.params.teacher_top = kdftest::dense_map(tt);
        c.params.weight = static_cast<float>(g.number("weight"));
        c.grad_scale = static_cast<float>(g.number("grad_scale"));
        c.s_bot = sb.as_float(), c.s_top = st.as_float(), c.t_bot = tb.as_float(), c.t_top = tt.as_float();
        if (g.has("grad_loss")) {
            c.grad_loss = g.load("grad_loss").as_float()[0];
            c.has_grad_loss = true;
        }
        c.loss = g.load("loss").values;
        c.grad_bot = g.load("grad_s_bot").values;
        c.grad_top = g.load("grad_s_top").values;
        return c;
    }

    size_t workspace(const kdfFSPParams_t& p) { return kdftest::workspace_size(kdfFSPWorkspaceSize, p); }

    kdfStatus_t run(const Case& c, const kdfFSPParams_t& p, const float* sb, const float* st, const float* tb,
                    const float* tt, float* loss, float* g_bot, float* g_top, int accumulate)
    {
        DeviceBuffer<float> gl(std::vector<float>{c.grad_loss});
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        return kdfFSP(handle, &p, sb, st, tb, tt, loss, g_bot, g_top, c.has_grad_loss ? gl.get() : nullptr, c.grad_scale,
                      accumulate, ws.get(), ws.size(), stream);
    }
};

TEST_F(FSP, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("fsp");
    ASSERT_GE(cases.size(), 11u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        if (g.has("s0")) continue;  // the chain case (below)
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        DeviceBuffer<float> sb(c.s_bot), st(c.s_top), tb(c.t_bot), tt(c.t_top), loss(1), gb(c.s_bot.size()),
            gt(c.s_top.size());
        // The shared contract on (loss, grad_s_bot) and on (loss, grad_s_top), the other gradient NULL.
        kdftest::check_outputs(
            [&](float* l, float* g_, int acc) { return run(c, c.params, sb.get(), st.get(), tb.get(), tt.get(), l, g_, nullptr, acc); },
            loss, gb, c.loss, c.grad_bot);
        kdftest::check_outputs(
            [&](float* l, float* g_, int acc) { return run(c, c.params, sb.get(), st.get(), tb.get(), tt.get(), l, nullptr, g_, acc); },
            loss, gt, c.loss, c.grad_top);
        // Both gradients in one call.
        ASSERT_EQ(run(c, c.params, sb.get(), st.get(), tb.get(), tt.get(), loss.get(), gb.get(), gt.get(), 0), KDF_STATUS_SUCCESS);
        EXPECT_CLOSE(loss.download(), c.loss, "loss");
        EXPECT_CLOSE(gb.download(), c.grad_bot, "grad_s_bot");
        EXPECT_CLOSE(gt.download(), c.grad_top, "grad_s_top");
    }
}

TEST_F(FSP, StridedMisalignedAndMixedLayouts)
{
    for (const char* name : {"2x3x8x8_2x5x4x4_bot_pooled", "3x2x3x3_3x4x6x6_top_pooled"}) {
        const Case c = load(kdftest::find_case("fsp", name));
        for (int64_t offset : {1, 0}) {
            SCOPED_TRACE(std::string(name) + " offset " + std::to_string(offset));
            kdftest::Strided sb(c.s_bot, c.params.student_bot, 3, 5, offset), st(c.s_top, c.params.student_top, 2, 1, offset);
            kdftest::Strided tb(c.t_bot, c.params.teacher_bot, 1, 0, offset), tt(c.t_top, c.params.teacher_top, 0, 3, 0);
            kdfFSPParams_t p = c.params;
            p.student_bot = sb.map, p.student_top = st.map, p.teacher_bot = tb.map, p.teacher_top = tt.map;
            DeviceBuffer<float> dsb(sb.buffer), dst(st.buffer), dtb(tb.buffer), dtt(tt.buffer), loss(1), gb(sb.buffer.size()),
                gt(st.buffer.size());
            ASSERT_EQ(cudaMemset(gb.get(), 0, gb.size() * 4), cudaSuccess);
            ASSERT_EQ(cudaMemset(gt.get(), 0, gt.size() * 4), cudaSuccess);
            ASSERT_EQ(run(c, p, dsb.get() + offset, dst.get() + offset, dtb.get() + offset, dtt.get(), loss.get(),
                          gb.get() + offset, gt.get() + offset, 0),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), c.loss, "loss");
            const auto b = gb.download(), t = gt.download();
            EXPECT_CLOSE(sb.extract(b), c.grad_bot, "grad_s_bot");
            EXPECT_CLOSE(st.extract(t), c.grad_top, "grad_s_top");
            EXPECT_EQ(b[offset + sb.map.h * sb.map.w], 0.0f) << "channel padding of grad_s_bot untouched";
            EXPECT_EQ(t[offset + st.map.h * st.map.w], 0.0f) << "channel padding of grad_s_top untouched";
        }
    }
}

TEST_F(FSP, LaunchAndGemmCountsNoSyncAndBitwiseReproducible)
{
    // Student bot pooled, teacher not pooled: pool kernel + difference kernel + unpool kernel; 2 + 2 GEMMs.
    const Case c = load(kdftest::find_case("fsp", "2x3x8x8_2x5x4x4_bot_pooled"));
    DeviceBuffer<float> sb(c.s_bot), st(c.s_top), tb(c.t_bot), tt(c.t_top), loss(1), gb(c.s_bot.size()), gt(c.s_top.size());
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    auto call = [&](float* l, float* b, float* t) {
        kdfuse::simt::reset_counters();
        EXPECT_EQ(kdfFSP(handle, &c.params, sb.get(), st.get(), tb.get(), tt.get(), l, b, t, nullptr, 1.0f, 0, ws.get(),
                         ws.size(), stream),
                  KDF_STATUS_SUCCESS);
    };
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        call(loss.get(), gb.get(), gt.get());
        EXPECT_CALL_WORK(3u, 4u);
        runs.push_back(kdftest::concat({loss.download(), gb.download(), gt.download()}));
    });
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));
    call(loss.get(), nullptr, nullptr);  // loss only: pool + difference, 2 GEMMs
    EXPECT_CALL_WORK(2u, 2u);
    call(nullptr, nullptr, gt.get());  // the unpooled top's gradient straight from cuBLAS: no unpool kernel
    EXPECT_CALL_WORK(2u, 3u);
    call(nullptr, gb.get(), nullptr);
    EXPECT_CALL_WORK(3u, 3u);
    call(nullptr, nullptr, nullptr);
    EXPECT_CALL_WORK(0u, 0u);

    // No map pooled (equal sizes): the difference kernel alone; 2 + 2 GEMMs.
    const Case e = load(kdftest::find_case("fsp", "2x4x5x3_2x3x5x3_zero_duplicate"));
    DeviceBuffer<float> esb(e.s_bot), est(e.s_top), etb(e.t_bot), ett(e.t_top), egb(e.s_bot.size()), egt(e.s_top.size());
    DeviceBuffer<unsigned char> ews(workspace(e.params));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfFSP(handle, &e.params, esb.get(), est.get(), etb.get(), ett.get(), loss.get(), egb.get(), egt.get(), nullptr,
                     1.0f, 0, ews.get(), ews.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_CALL_WORK(1u, 4u);
}

TEST_F(FSP, ChainOfPairsComposedWithAccumulate)
{
    // RepDistiller's resnet32x4 -> resnet8x4 maps (N = 2): 3 pairs summed into one loss; each middle map's
    // gradient sums its two pairs through accumulate.
    const GoldenCase g = kdftest::find_case("fsp", "chain_resnet8x4_n2");
    const int maps = static_cast<int>(g.number("maps"));
    ASSERT_EQ(maps, 4);
    const float grad_scale = static_cast<float>(g.number("grad_scale"));
    std::vector<kdftest::Array> s, t;
    std::vector<std::unique_ptr<DeviceBuffer<float>>> ds, dt, grads;
    for (int i = 0; i < maps; ++i) {
        s.push_back(g.load("s" + std::to_string(i)));
        t.push_back(g.load("t" + std::to_string(i)));
        ds.push_back(std::make_unique<DeviceBuffer<float>>(s.back().as_float()));
        dt.push_back(std::make_unique<DeviceBuffer<float>>(t.back().as_float()));
        grads.push_back(std::make_unique<DeviceBuffer<float>>(std::vector<float>(s.back().values.size(), 0.0f)));
    }
    DeviceBuffer<float> loss(std::vector<float>{0.0f});
    for (int i = 0; i + 1 < maps; ++i) {
        kdfFSPParams_t p = KDF_FSP_PARAMS_INIT;
        p.student_bot = kdftest::dense_map(s[i]), p.student_top = kdftest::dense_map(s[i + 1]);
        p.teacher_bot = kdftest::dense_map(t[i]), p.teacher_top = kdftest::dense_map(t[i + 1]);
        p.weight = static_cast<float>(g.number("weight" + std::to_string(i)));
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfFSP(handle, &p, ds[i]->get(), ds[i + 1]->get(), dt[i]->get(), dt[i + 1]->get(), loss.get(),
                         grads[i]->get(), grads[i + 1]->get(), nullptr, grad_scale, 1, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
    }
    EXPECT_CLOSE(loss.download(), g.load("loss").values, "sum of the weighted pair losses");
    for (int i = 0; i < maps; ++i) EXPECT_CLOSE(grads[i]->download(), g.load("grad_s" + std::to_string(i)).values, "grad_s" + std::to_string(i));
}

TEST_F(FSP, WorkspaceAtResnet32x4Shapes)
{
    // N = 64, the pair 128x16x16 -> 256x8x8 (bot pooled to 8x8 on both sides): two pooled copies of 64 x 128 x 64,
    // D (64 x 256 x 128), the grid sum of min(1024, 2097152 / 2048) blocks + the ticket, the 4 MiB cuBLAS slice.
    // The seed's broadcast builds 64 x 256 x 128 x 64 floats (512 MiB) per network.
    kdfFSPParams_t p = KDF_FSP_PARAMS_INIT;
    p.student_bot = {64, 128, 16, 16, 0, 0};
    p.student_top = {64, 256, 8, 8, 0, 0};
    p.teacher_bot = p.student_bot, p.teacher_top = p.student_top;
    EXPECT_EQ(workspace(p), 2 * (64u * 128 * 64 * 4) + 64u * 256 * 128 * 4 + (1024u * 4 + 256) + (size_t(4) << 20));
    // 32x32x32 -> 64x32x32: nothing pooled, only D (64 x 64 x 32) besides the constant parts.
    p.student_bot = {64, 32, 32, 32, 0, 0};
    p.student_top = {64, 64, 32, 32, 0, 0};
    p.teacher_bot = p.student_bot, p.teacher_top = p.student_top;
    EXPECT_EQ(workspace(p), 64u * 64 * 32 * 4 + (64u * 4 + 256) + (size_t(4) << 20));
}

TEST_F(FSP, BadInputs)
{
    kdfFSPParams_t good = KDF_FSP_PARAMS_INIT;
    good.student_bot = {2, 3, 4, 4, 0, 0};
    good.student_top = {2, 5, 2, 2, 0, 0};
    good.teacher_bot = {2, 3, 6, 6, 0, 0};
    good.teacher_top = {2, 5, 6, 6, 0, 0};
    DeviceBuffer<float> sb(96), st(40), tb(216), tt(360), loss(1), gb(96), gt(40);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfFSPParams_t& p, const void* a = nullptr, void* g = nullptr, size_t bytes = SIZE_MAX) {
        return kdfFSP(handle, &p, a ? a : sb.get(), st.get(), tb.get(), tt.get(), loss.get(), g ? g : gb.get(), gt.get(),
                      nullptr, 1.0f, 0, ws.get(), bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfFSPParams_t p = good;
    p.teacher_top.c = 6;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student_top.c (5) != params->teacher_top.c (6)");
    p = good, p.teacher_bot.c = 1;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student_bot.c (3) != params->teacher_bot.c (1)");
    p = good, p.student_top.n = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student_bot.n (2) != params->student_top.n (3)");
    p = good, p.teacher_top.n = 1;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->teacher_top.n");
    p = good, p.student_top.h = 8, p.student_top.w = 2;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->student_bot (h x w 4x4) and params->student_top (8x2)");
    p = good, p.teacher_top.h = 2, p.teacher_top.w = 9;
    EXPECT_STATUS(call(p), KDF_STATUS_SHAPE_MISMATCH, "params->teacher_bot");
    p = good, p.student_bot.w = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student_bot.w");
    p = good, p.teacher_top.stride_c = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->teacher_top.stride_c");
    p = good, p.student_top.stride_n = 5;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->student_top.stride_n");
    p = good, p.student_bot.stride_c = int64_t(1) << 32, p.student_bot.stride_n = p.student_bot.c * (int64_t(1) << 32);
    EXPECT_STATUS(kdfFSPWorkspaceSize(&p, &*std::make_unique<size_t>()), KDF_STATUS_NOT_SUPPORTED, "2^31");
    p = good, p.weight = INFINITY;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.struct_size = 8;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_FSP_PARAMS_INIT");
    EXPECT_STATUS(kdfFSPWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    EXPECT_STATUS(kdfFSP(nullptr, &good, sb.get(), st.get(), tb.get(), tt.get(), loss.get(), nullptr, nullptr, nullptr, 1.0f, 0,
                  ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(sb.get()) + 1), KDF_STATUS_MISALIGNED_POINTER, "s_bot");
    EXPECT_STATUS(call(good, nullptr, reinterpret_cast<char*>(gb.get()) + 2), KDF_STATUS_MISALIGNED_POINTER, "grad_s_bot");
    EXPECT_STATUS(call(good, nullptr, const_cast<float*>(st.get())), KDF_STATUS_INVALID_VALUE, "grad_s_bot overlaps s_top");
    EXPECT_STATUS(call(good, nullptr, gt.get()), KDF_STATUS_INVALID_VALUE, "grad_s_bot overlaps grad_s_top");
    EXPECT_STATUS(call(good, nullptr, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfFSP(handle, &good, sb.get(), st.get(), tb.get(), nullptr, loss.get(), nullptr, nullptr, nullptr, 1.0f, 0,
                  ws.get(), ws.size(), stream),
           KDF_STATUS_NULL_POINTER, "t_top");
    EXPECT_STATUS(kdfFSP(handle, &good, sb.get(), st.get(), tb.get(), tt.get(), loss.get(), nullptr, nullptr, nullptr, NAN, 0,
                  ws.get(), ws.size(), stream),
           KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
