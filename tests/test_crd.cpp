// CRD through the C API of libkdfuse_sim: multi-step golden sequences from the reference (banks and Z
// carried from step to step; both Z modes, fused normalisation, evaluation mode, duplicated indices,
// K = 1, N = 1, odd D), int32 and int64 indices, strided rows, the output contract (accumulate, NULL
// outputs), device-drawn contrast indices (range, reproducibility, uniformity, Philox counters), out-of-range
// indices, launch counts, determinism, workspace at ImageNet shapes, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;

std::vector<int64_t> as_index(const kdftest::Array& a) { return {a.values.begin(), a.values.end()}; }
std::vector<int32_t> narrow(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

// One golden case: the params, the initial state and the steps.
struct Steps {
    kdfCRDParams_t params = KDF_CRD_PARAMS_INIT;
    float grad_scale = 1.0f;
    int steps = 0;
    GoldenCase g;

    explicit Steps(const GoldenCase& c) : g(c)
    {
        const auto v = g.load("v_s0"), cidx = g.load("cidx0"), mem = g.load("mem_s");
        params.rows = v.dim(0);
        params.dim = v.dim(1);
        params.n_data = mem.dim(0);
        params.k = cidx.dim(1) - 1;
        params.temperature = static_cast<float>(g.number("temperature"));
        params.momentum = static_cast<float>(g.number("momentum"));
        params.z_mode = g.number("z_mode") != 0 ? KDF_CRD_Z_EMA : KDF_CRD_Z_ONCE;
        params.z_momentum = static_cast<float>(g.number("z_momentum"));
        params.normalize_inputs = static_cast<int>(g.number("normalize_inputs"));
        params.update_memory = static_cast<int>(g.number("update_memory"));
        params.weight = static_cast<float>(g.number("weight"));
        grad_scale = static_cast<float>(g.number("grad_scale"));
        steps = static_cast<int>(g.number("steps"));
        EXPECT_EQ(params.k, static_cast<int64_t>(g.number("k")));
        EXPECT_EQ(params.n_data, static_cast<int64_t>(g.number("n_data")));
    }
    std::string at(const char* name, int step) const { return name + std::to_string(step); }
};

class CRD : public kdftest::LossTest {
protected:
    size_t workspace(const kdfCRDParams_t& p) { return kdftest::workspace_size(kdfCRDWorkspaceSize, p); }

    // Runs every step of a golden case from its initial state with indices of type Index and checks every
    // output and the state after each step.
    template <typename Index>
    void run_steps(const Steps& c)
    {
        kdfCRDParams_t p = c.params;
        p.index_type = sizeof(Index) == 8 ? KDF_INDEX_INT64 : KDF_INDEX_INT32;
        DeviceBuffer<float> ms(c.g.load("mem_s").as_float()), mt(c.g.load("mem_t").as_float()), z(c.g.load("z").as_float());
        DeviceBuffer<unsigned char> ws(std::max<size_t>(1, workspace(p)));
        for (int s = 0; s < c.steps; ++s) {
            SCOPED_TRACE("step " + std::to_string(s));
            const auto vs = c.g.load(c.at("v_s", s)).as_float(), vt = c.g.load(c.at("v_t", s)).as_float();
            const auto idx64 = as_index(c.g.load(c.at("idx", s))), cidx64 = as_index(c.g.load(c.at("cidx", s)));
            DeviceBuffer<float> d_vs(vs), d_vt(vt), loss(1), gs(vs.size()), gt(vt.size());
            DeviceBuffer<Index> idx(std::vector<Index>(idx64.begin(), idx64.end()));
            DeviceBuffer<Index> cidx(std::vector<Index>(cidx64.begin(), cidx64.end()));
            std::unique_ptr<DeviceBuffer<float>> gl;
            if (c.g.has(c.at("grad_loss", s))) gl = std::make_unique<DeviceBuffer<float>>(c.g.load(c.at("grad_loss", s)).as_float());
            ASSERT_EQ(kdfCRD(handle, &p, d_vs.get(), d_vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                             gs.get(), gt.get(), gl ? gl->get() : nullptr, c.grad_scale, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            EXPECT_CLOSE(loss.download(), c.g.load(c.at("loss", s)).values, "loss");
            EXPECT_CLOSE(gs.download(), c.g.load(c.at("grad_v_s", s)).values, "grad_s");
            EXPECT_CLOSE(gt.download(), c.g.load(c.at("grad_v_t", s)).values, "grad_t");
            EXPECT_CLOSE(ms.download(), c.g.load(c.at("mem_s", s)).values, "memory_s after the step");
            EXPECT_CLOSE(mt.download(), c.g.load(c.at("mem_t", s)).values, "memory_t after the step");
            EXPECT_CLOSE(z.download(), c.g.load(c.at("z", s)).values, "Z after the step");
        }
    }

    // A small stateless setup (Z set, no bank update): every call gives the same outputs.
    struct Fixed {
        kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
        std::vector<float> vs, vt, ms, mt;
        std::vector<int64_t> idx, cidx;
    };
    static Fixed fixed(int64_t n, int64_t d, int64_t k, int64_t n_data)
    {
        Fixed f;
        f.p.rows = n, f.p.dim = d, f.p.k = k, f.p.n_data = n_data, f.p.update_memory = 0, f.p.normalize_inputs = 1;
        f.vs = kdftest::uniform(size_t(n * d), 1);
        f.vt = kdftest::uniform(size_t(n * d), 2);
        f.ms = kdftest::uniform(size_t(n_data * d), 3, -0.2f, 0.2f);
        f.mt = kdftest::uniform(size_t(n_data * d), 4, -0.2f, 0.2f);
        for (int64_t i = 0; i < n; ++i) f.idx.push_back((i * 7) % n_data);
        for (int64_t e = 0; e < n * (k + 1); ++e) f.cidx.push_back(e % (k + 1) == 0 ? f.idx[e / (k + 1)] : (e * 13) % n_data);
        return f;
    }
};

TEST_F(CRD, GoldenStepsFromTheReference)
{
    const auto cases = kdftest::golden_cases("crd");
    ASSERT_GE(cases.size(), 10u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        SCOPED_TRACE("case " + g.name);
        const Steps c(g);
        {
            SCOPED_TRACE("int64 indices");
            run_steps<int64_t>(c);
        }
        {
            SCOPED_TRACE("int32 indices");
            run_steps<int32_t>(c);
        }
    }
}

TEST_F(CRD, StridedRowsMatchDenseBitwise)
{
    Fixed f = fixed(5, 37, 9, 40);
    f.p.update_memory = 1;
    const int64_t ls = 37 + 3, lt = 37 + 8;
    std::vector<float> vs_wide(5 * ls, 7.0f), vt_wide(5 * lt, -7.0f);
    for (int64_t i = 0; i < 5; ++i)
        for (int64_t e = 0; e < 37; ++e) vs_wide[i * ls + e] = f.vs[i * 37 + e], vt_wide[i * lt + e] = f.vt[i * 37 + e];
    std::vector<std::vector<float>> results;
    for (const bool strided : {false, true}) {
        kdfCRDParams_t p = f.p;
        p.ld_student = strided ? ls : 0;
        p.ld_teacher = strided ? lt : 0;
        DeviceBuffer<float> vs(strided ? vs_wide : f.vs), vt(strided ? vt_wide : f.vt), ms(f.ms), mt(f.mt);
        DeviceBuffer<float> z(std::vector<float>{-1.0f, -1.0f}), loss(1);
        DeviceBuffer<float> gs(std::vector<float>(5 * (strided ? ls : 37), 0.5f)), gt(std::vector<float>(5 * (strided ? lt : 37), 0.5f));
        DeviceBuffer<int64_t> idx(f.idx), cidx(f.cidx);
        DeviceBuffer<unsigned char> ws(workspace(p));
        ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        std::vector<float> r = loss.download();
        const auto g_s = gs.download(), g_t = gt.download();
        for (int64_t i = 0; i < 5; ++i) {
            const int64_t ps = strided ? ls : 37, pt = strided ? lt : 37;
            r.insert(r.end(), g_s.begin() + i * ps, g_s.begin() + i * ps + 37);
            r.insert(r.end(), g_t.begin() + i * pt, g_t.begin() + i * pt + 37);
            if (strided) {
                EXPECT_EQ(g_s[i * ps + 37], 0.5f) << "padding of grad_s untouched";
                EXPECT_EQ(g_t[i * pt + 40], 0.5f) << "padding of grad_t untouched";
            }
        }
        for (const auto& b : {ms.download(), mt.download(), z.download()}) r.insert(r.end(), b.begin(), b.end());
        results.push_back(r);
    }
    EXPECT_TRUE(kdftest::bitwise_equal(results[0], results[1]));
}

TEST_F(CRD, AccumulateAndNullOutputs)
{
    const Fixed f = fixed(3, 20, 5, 30);
    DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{25.0f, 40.0f});
    DeviceBuffer<int64_t> idx(f.idx), cidx(f.cidx);
    DeviceBuffer<unsigned char> ws(workspace(f.p));
    DeviceBuffer<float> gl(std::vector<float>{-0.5f});
    const auto call = [&](float* loss, float* gs, float* gt, int acc) {
        return kdfCRD(handle, &f.p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss, gs, gt,
                      gl.get(), 3.0f, acc, ws.get(), ws.size(), stream);
    };
    DeviceBuffer<float> loss(1), gs(60), gt(60);
    ASSERT_EQ(call(loss.get(), gs.get(), gt.get(), 0), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    const auto l0 = loss.download(), s0 = gs.download(), t0 = gt.download();
    EXPECT_TRUE(std::isfinite(l0[0]));
    EXPECT_EQ(z.download(), (std::vector<float>{25.0f, 40.0f})) << "a set Z is fixed in KDF_CRD_Z_ONCE mode";

    // One output at a time: the same bits.
    DeviceBuffer<float> l1(1), s1(60), t1(60);
    ASSERT_EQ(call(l1.get(), nullptr, nullptr, 0), KDF_STATUS_SUCCESS);
    ASSERT_EQ(call(nullptr, s1.get(), nullptr, 0), KDF_STATUS_SUCCESS);
    ASSERT_EQ(call(nullptr, nullptr, t1.get(), 0), KDF_STATUS_SUCCESS);
    EXPECT_TRUE(kdftest::bitwise_equal(l1.download(), l0));
    EXPECT_TRUE(kdftest::bitwise_equal(s1.download(), s0));
    EXPECT_TRUE(kdftest::bitwise_equal(t1.download(), t0));

    // Accumulate adds to what is there, the loss included.
    const std::vector<float> base = kdftest::uniform(60, 9);
    DeviceBuffer<float> la(std::vector<float>{2.0f}), sa(base), ta(base);
    ASSERT_EQ(call(la.get(), sa.get(), ta.get(), 1), KDF_STATUS_SUCCESS);
    EXPECT_EQ(la.download()[0], 2.0f + l0[0]);
    const auto sa_h = sa.download(), ta_h = ta.download();
    for (size_t e = 0; e < 60; ++e) {
        EXPECT_EQ(sa_h[e], base[e] + s0[e]) << e;
        EXPECT_EQ(ta_h[e], base[e] + t0[e]) << e;
    }

    // grad_loss and grad_scale scale the gradients only: 3 * -0.5 against 1 * 1.
    DeviceBuffer<float> s2(60);
    ASSERT_EQ(kdfCRD(handle, &f.p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, nullptr, s2.get(),
                     nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    const auto s2_h = s2.download();
    // Not bitwise: -1.5 is not a power of two, and the normalisation's (dv - v dot) cancels, so the roundings of
    // the two scales differ by a few ulps of the largest element (more under multiply-add contraction).
    float largest = 0.0f;
    for (const float v : s0) largest = std::max(largest, std::abs(v));
    for (size_t e = 0; e < 60; ++e) EXPECT_NEAR(s0[e], -1.5f * s2_h[e], 1e-6f * std::abs(s0[e]) + 1e-6f * largest) << e;
}

TEST_F(CRD, DrawnContrastIndices)
{
    kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
    p.rows = 64, p.dim = 16, p.k = 999, p.n_data = 97, p.seed = 0x5eed, p.offset = 3;
    std::vector<int64_t> idx_h(64);
    for (int64_t i = 0; i < 64; ++i) idx_h[i] = (i * 5) % 97;
    DeviceBuffer<int64_t> idx(idx_h), out(64 * 1000), again(64 * 1000);
    ASSERT_EQ(kdfCRDDrawContrast(handle, &p, idx.get(), out.get(), stream), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    ASSERT_EQ(kdfCRDDrawContrast(handle, &p, idx.get(), again.get(), stream), KDF_STATUS_SUCCESS);
    const auto c = out.download();
    EXPECT_EQ(c, again.download()) << "reproducible for one seed and offset";

    // Column 0 is idx; the rest lie in [0, n_data) and are uniform: chi-square over the 97 values with 96
    // degrees of freedom (mean 96, sd 13.9; the bound is mean + 6 sd, the draw is fixed so this cannot flake).
    std::vector<double> counts(97, 0.0);
    for (int64_t i = 0; i < 64; ++i) {
        EXPECT_EQ(c[i * 1000], idx_h[i]);
        for (int64_t k = 1; k < 1000; ++k) {
            const int64_t v = c[i * 1000 + k];
            ASSERT_TRUE(v >= 0 && v < 97) << v;
            counts[v] += 1.0;
        }
    }
    const double expected = 64.0 * 999.0 / 97.0;
    double chi2 = 0.0;
    for (double n : counts) chi2 += (n - expected) * (n - expected) / expected;
    EXPECT_LT(chi2, 96.0 + 6.0 * std::sqrt(2.0 * 96.0));
    EXPECT_GT(chi2, 96.0 - 5.0 * std::sqrt(2.0 * 96.0)) << "too uniform to be random";

    // Another offset or seed gives other indices; int32 gives the same values.
    for (auto [seed, offset] : {std::pair<uint64_t, uint64_t>{0x5eed, 4}, {0x5eee, 3}}) {
        kdfCRDParams_t q = p;
        q.seed = seed, q.offset = offset;
        ASSERT_EQ(kdfCRDDrawContrast(handle, &q, idx.get(), again.get(), stream), KDF_STATUS_SUCCESS);
        const auto d = again.download();
        size_t same = 0;
        for (size_t e = 0; e < d.size(); ++e) same += d[e] == c[e];
        EXPECT_LT(same, d.size() / 20) << "seed " << seed << " offset " << offset;
    }
    kdfCRDParams_t q32 = p;
    q32.index_type = KDF_INDEX_INT32;
    DeviceBuffer<int32_t> idx32(narrow(idx_h)), out32(64 * 1000);
    ASSERT_EQ(kdfCRDDrawContrast(handle, &q32, idx32.get(), out32.get(), stream), KDF_STATUS_SUCCESS);
    EXPECT_EQ(out32.download(), narrow(c));
}

TEST_F(CRD, DrawnIndicesScoreLikeTheSameIndicesGiven)
{
    for (const int update : {0, 1}) {
        SCOPED_TRACE("update_memory " + std::to_string(update));
        Fixed f = fixed(4, 24, 33, 50);
        f.p.update_memory = update;
        f.p.seed = 11, f.p.offset = 2;
        DeviceBuffer<int64_t> idx(f.idx), drawn(f.cidx.size());
        ASSERT_EQ(kdfCRDDrawContrast(handle, &f.p, idx.get(), drawn.get(), stream), KDF_STATUS_SUCCESS);
        std::vector<std::vector<float>> results;
        for (const int draw : {0, 1}) {
            kdfCRDParams_t p = f.p;
            p.draw_contrast = draw;
            DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{-1.0f, -1.0f}), loss(1), gs(96),
                gt(96);
            DeviceBuffer<unsigned char> ws(workspace(p));
            ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), draw ? nullptr : drawn.get(),
                             z.get(), nullptr, loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
            std::vector<float> r;
            for (const auto& b : {loss.download(), gs.download(), gt.download(), ms.download(), mt.download(), z.download()})
                r.insert(r.end(), b.begin(), b.end());
            results.push_back(r);
        }
        EXPECT_TRUE(kdftest::bitwise_equal(results[0], results[1]));
    }
}

TEST_F(CRD, OutOfRangeIndicesLeaveTheStateAloneAndReportOnTheDevice)
{
    const Fixed f = fixed(3, 8, 4, 10);
    struct Bad {
        const char* what;
        bool contrast;  // a contrast index (else an idx to update)
        kdfCRDZMode_t z_mode;
        float z0;       // the Z the call finds (< 0 = unset: this call would set it)
    };
    for (const int64_t bad : {int64_t(10), int64_t(-1), int64_t(1) << 40}) {
        for (const Bad b : {Bad{"contrast, Z unset", true, KDF_CRD_Z_ONCE, -1.0f}, Bad{"contrast, Z set", true, KDF_CRD_Z_ONCE, 5.0f},
                            Bad{"contrast, EMA", true, KDF_CRD_Z_EMA, 5.0f}, Bad{"idx, Z unset", false, KDF_CRD_Z_ONCE, -1.0f},
                            Bad{"idx, EMA", false, KDF_CRD_Z_EMA, 5.0f}}) {
            SCOPED_TRACE(std::string(b.what) + ", index " + std::to_string(bad));
            kdfCRDParams_t p = f.p;
            p.update_memory = 1;
            p.z_mode = b.z_mode;
            std::vector<int64_t> idx = f.idx, cidx = f.cidx;
            (b.contrast ? cidx[1 * 5 + 2] : idx[2]) = bad;
            DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{b.z0, b.z0});
            DeviceBuffer<float> loss(std::vector<float>{0.0f}), gs(24), gt(24);
            DeviceBuffer<int64_t> d_idx(idx), d_cidx(cidx);
            DeviceBuffer<int32_t> status(std::vector<int32_t>{-7});
            DeviceBuffer<unsigned char> ws(workspace(p));
            ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), d_idx.get(), d_cidx.get(), z.get(), status.get(),
                             loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_EQ(status.download()[0], 1) << "reported on the device";
            EXPECT_EQ(z.download(), (std::vector<float>{b.z0, b.z0})) << "Z untouched";
            EXPECT_EQ(ms.download(), f.ms) << "memory_s untouched";
            EXPECT_EQ(mt.download(), f.mt) << "memory_t untouched";
            EXPECT_TRUE(std::isnan(loss.download()[0])) << "the loss is marked invalid";
            for (const auto& g : {gs.download(), gt.download()})
                for (float x : g) ASSERT_TRUE(std::isnan(x)) << "every gradient row is marked invalid";

            // The next call with good indices runs from the untouched state: finite, status 0.
            DeviceBuffer<int64_t> good_idx(f.idx), good_cidx(f.cidx);
            ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), good_idx.get(), good_cidx.get(), z.get(),
                             status.get(), loss.get(), gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_EQ(status.download()[0], 0);
            EXPECT_TRUE(std::isfinite(loss.download()[0]));
            const auto zs = z.download();
            EXPECT_TRUE(std::isfinite(zs[0]) && zs[0] > 0.0f && std::isfinite(zs[1]) && zs[1] > 0.0f);
            for (float x : gs.download()) ASSERT_TRUE(std::isfinite(x));
        }
    }
}

TEST_F(CRD, IndexStatusAloneChecksWithoutTouchingAnything)
{
    const Fixed f = fixed(2, 8, 3, 10);
    std::vector<int64_t> cidx = f.cidx;
    DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{-1.0f, -1.0f});
    DeviceBuffer<int32_t> status(std::vector<int32_t>{-7});
    DeviceBuffer<unsigned char> ws(workspace(f.p));
    for (const int64_t last : {int64_t(9), int64_t(10)}) {
        cidx.back() = last;
        DeviceBuffer<int64_t> idx(f.idx), d_cidx(cidx);
        ASSERT_EQ(kdfCRD(handle, &f.p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), d_cidx.get(), z.get(), status.get(),
                         nullptr, nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        EXPECT_EQ(status.download()[0], last == 10 ? 1 : 0);
        EXPECT_EQ(z.download(), (std::vector<float>{-1.0f, -1.0f})) << "a check alone does not set Z";
        EXPECT_EQ(ms.download(), f.ms);
        EXPECT_EQ(mt.download(), f.mt);
    }
}

TEST_F(CRD, ThreeLaunchesNoSyncAndBitwiseReproducible)
{
    Fixed f = fixed(2, 128, 2100, 500);  // 3 chunks of contrasts per row
    f.p.update_memory = 1;
    f.p.z_mode = KDF_CRD_Z_EMA;
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule(
        [&] {
            DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{-1.0f, 30.0f}), loss(1), gs(256),
                gt(256);
            DeviceBuffer<int64_t> idx(f.idx), cidx(f.cidx);
            DeviceBuffer<unsigned char> ws(workspace(f.p));
            kdfuse::simt::reset_counters();
            ASSERT_EQ(kdfCRD(handle, &f.p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                             gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                      KDF_STATUS_SUCCESS);
            EXPECT_CALL_WORK(3u, 0u);  // Z estimate, NCE scoring, finish (+ the ticket memset)
            runs.push_back(
                kdftest::concat({loss.download(), gs.download(), gt.download(), ms.download(), mt.download(), z.download()}));
        },
        {{kdfuse::simt::Schedule::Forward, 1}, {kdfuse::simt::Schedule::Reverse, 1}, {kdfuse::simt::Schedule::Random, 7}});
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[1]));
    EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[2]));

    // Evaluation (no update) with the loss only: the finish kernel is not needed; nothing requested: nothing runs.
    kdfCRDParams_t p = f.p;
    p.update_memory = 0;
    DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{20.0f, 30.0f}), loss(1);
    DeviceBuffer<int64_t> idx(f.idx), cidx(f.cidx);
    DeviceBuffer<unsigned char> ws(workspace(p));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(), nullptr,
                     nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 2u);
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, nullptr, nullptr,
                     nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    EXPECT_EQ(kdfuse::simt::counters().kernel_launches, 0u);
}

TEST_F(CRD, WorkspaceFarUnderThePyTorchGather)
{
    // ImageNet-style N = 256, K = 16384, D = 128: 17 chunks of 1024 contrasts per (side, row) = 8704 blocks,
    // each with a loss partial, a {max, sum} pair and D gradient partials: about 4.5 MB. The PyTorch
    // reference gathers N x (K+1) x D floats per bank: 2 x 2.1 GB.
    kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
    p.rows = 256, p.n_data = 1281167;
    const size_t blocks = 2 * 256 * 17;
    const size_t bytes = workspace(p);
    EXPECT_EQ(bytes, 256 + blocks * 4 + blocks * 8 + blocks * 128 * 4);
    const double gather = 2.0 * 256 * 16385 * 128 * 4;
    EXPECT_LT(static_cast<double>(bytes), gather / 400.0);
    // CIFAR: N = 64 -> 2176 blocks, about 1.1 MB.
    p.rows = 64, p.n_data = 50000;
    EXPECT_EQ(workspace(p), 256 + 2176 * 4 + 2176 * 8 + 2176 * 128 * 4);
}

TEST_F(CRD, BadInputs)
{
    const Fixed f = fixed(2, 8, 3, 10);
    const kdfCRDParams_t good = f.p;
    DeviceBuffer<float> vs(f.vs), vt(f.vt), ms(f.ms), mt(f.mt), z(std::vector<float>{-1.0f, -1.0f}), loss(1), gs(16), gt(16);
    DeviceBuffer<int64_t> idx(f.idx), cidx(f.cidx);
    DeviceBuffer<unsigned char> ws(workspace(good));
    auto call = [&](const kdfCRDParams_t& p, const void* c = nullptr, size_t bytes = SIZE_MAX) {
        return kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), c ? c : cidx.get(), z.get(), nullptr, loss.get(),
                      gs.get(), gt.get(), nullptr, 1.0f, 0, ws.get(), bytes == SIZE_MAX ? ws.size() : bytes, stream);
    };
    kdfCRDParams_t p = good;
    p.rows = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->rows");
    p = good, p.dim = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->dim");
    p = good, p.dim = 1025;
    size_t bytes = 0;
    EXPECT_STATUS(kdfCRDWorkspaceSize(&p, &bytes), KDF_STATUS_NOT_SUPPORTED, "1024");
    p = good, p.k = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->k");
    p = good, p.n_data = 0;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->n_data");
    p = good, p.ld_student = 5;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->ld_student");
    p = good, p.temperature = 0.0f;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->temperature");
    p = good, p.temperature = 0.01f;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "overflow");
    p = good, p.momentum = 1.5f;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->momentum");
    p = good, p.z_momentum = NAN;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->z_momentum");
    p = good, p.z_mode = static_cast<kdfCRDZMode_t>(2);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->z_mode");
    p = good, p.index_type = static_cast<kdfIndexType_t>(5);
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->index_type");
    p = good, p.index_type = KDF_INDEX_INT32, p.n_data = int64_t(1) << 32;
    EXPECT_STATUS(kdfCRDWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE, "KDF_INDEX_INT32");
    p = good, p.normalize_inputs = 2;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->normalize_inputs");
    p = good, p.update_memory = -1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->update_memory");
    p = good, p.draw_contrast = 3;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->draw_contrast");
    p = good, p.weight = INFINITY;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    EXPECT_STATUS(call(p), KDF_STATUS_NOT_SUPPORTED, "fp16");
    p = good, p.struct_size = 8;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "KDF_CRD_PARAMS_INIT");
    p = good, p.draw_contrast = 1;
    EXPECT_STATUS(call(p), KDF_STATUS_INVALID_VALUE, "contrast_idx must be NULL");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), nullptr, z.get(), nullptr, loss.get(),
                         nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_NULL_POINTER, "contrast_idx");
    p = good, p.update_memory = 1;
    EXPECT_STATUS(kdfCRD(handle, &p, vs.get(), vt.get(), ms.get(), mt.get(), nullptr, cidx.get(), z.get(), nullptr, loss.get(),
                         nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_NULL_POINTER, "idx");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), nullptr, nullptr, loss.get(),
                         nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_NULL_POINTER, "z");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), ms.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_INVALID_VALUE, "memory_s overlaps");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         gs.get(), gs.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_INVALID_VALUE, "grad_s overlaps grad_t");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         const_cast<float*>(vs.get()), nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_INVALID_VALUE, "grad_s overlaps v_s");
    EXPECT_STATUS(call(good, reinterpret_cast<const char*>(cidx.get()) + 4), KDF_STATUS_MISALIGNED_POINTER, "contrast_idx");
    EXPECT_STATUS(call(good, nullptr, 16), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    EXPECT_STATUS(kdfCRD(handle, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         nullptr, nullptr, nullptr, NAN, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_INVALID_VALUE, "grad_scale");
    EXPECT_STATUS(kdfCRD(nullptr, &good, vs.get(), vt.get(), ms.get(), mt.get(), idx.get(), cidx.get(), z.get(), nullptr, loss.get(),
                         nullptr, nullptr, nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_NULL_POINTER, "handle");
    EXPECT_STATUS(kdfCRDWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    EXPECT_STATUS(kdfCRDDrawContrast(handle, &good, idx.get(), nullptr, stream), KDF_STATUS_NULL_POINTER, "contrast_idx");
    EXPECT_STATUS(kdfCRDDrawContrast(handle, &good, idx.get(), const_cast<int64_t*>(idx.get()), stream), KDF_STATUS_INVALID_VALUE,
                  " overlaps");
    EXPECT_EQ(call(good), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}

}  // namespace
