// The relational and Gram losses (SP, CC, RKD, PKT, NST, FSP, KDSVD) on the network presets. SP takes
// the last stage flattened (RepDistiller's g[-2]), RKD and PKT the penultimate embeddings, CC RepDistiller's
// 128-d embedding, NST the three stages summed into one loss, FSP the two pairs of consecutive stages, KDSVD the
// three stages in one call (on the presets whose stages it supports).
// Minimum traffic: inputs read once, the student gradients written once; FLOPs: the GEMMs
// (docs/losses/<loss>.md), plus RKD's ~100 N^3 angle evaluations.
#include "common/harness.h"
#include "common/presets.h"

namespace {

using kdfbench::Array;
using kdfbench::Case;
using kdfbench::Map;
using kdfbench::Preset;

kdfFeatureMap_t feature_map(int64_t n, const Map& m) { return {n, m.c, m.h, m.w, 0, 0}; }

// N x D_s and N x D_t embeddings and the student gradient: the inputs of SP, CC, RKD and PKT.
struct Embeddings {
    int64_t n, ds, dt;
    const float* e_s;
    const float* e_t;
    float* grad_s;
    float* loss;
    Embeddings(Case& c, int64_t n_, int64_t ds_, int64_t dt_) : n(n_), ds(ds_), dt(dt_)
    {
        e_s = c.hold(kdfbench::uniform(static_cast<size_t>(n * ds), 1));
        e_t = c.hold(kdfbench::uniform(static_cast<size_t>(n * dt), 2));
        grad_s = c.hold(std::make_unique<Array<float>>(static_cast<size_t>(n * ds)));
        loss = c.hold(std::make_unique<Array<float>>(1));
        c.model.bytes = 4.0 * static_cast<double>(n * (2 * ds + dt));
    }
    double gram_flops() const { return 2.0 * n * n * (2.0 * ds + dt); }  // G_s, G_t and grad = M e_s
};

template <typename Params>
Params embedding_params(Params p, const Embeddings& e)
{
    p.rows = e.n, p.dim_student = e.ds, p.dim_teacher = e.dt;
    return p;
}

// SP, RKD and PKT share kdfSP's signature.
template <typename Params>
using SizeFn = kdfStatus_t (*)(const Params*, size_t*);
template <typename Params>
using CallFn = kdfStatus_t (*)(kdfHandle_t, const Params*, const void*, const void*, float*, void*, const float*, float,
                               int, void*, size_t, kdfStream_t);

template <typename Params>
Case embedding_case(int64_t n, int64_t ds, int64_t dt, Params init, SizeFn<Params> size, CallFn<Params> call,
                    double extra_flops = 0.0)
{
    Case c;
    const Embeddings e(c, n, ds, dt);
    const Params q = embedding_params(init, e);
    size_t bytes = 0;
    size(&q, &bytes);
    unsigned char* ws = c.hold(kdfbench::workspace(bytes));
    c.model.flops = e.gram_flops() + extra_flops;
    c.call = [=](kdfHandle_t h, cudaStream_t s) { return call(h, &q, e.e_s, e.e_t, e.loss, e.grad_s, nullptr, 1.0f, 0, ws, bytes, s); };
    return c;
}

Case sp(const Preset& p)
{
    const auto flat = [](const Map& m) { return m.c * m.h * m.w; };
    return embedding_case<kdfSPParams_t>(p.n, flat(p.student[2]), flat(p.teacher[2]), KDF_SP_PARAMS_INIT, kdfSPWorkspaceSize, kdfSP);
}

Case cc(const Preset& p)
{
    Case c;
    const Embeddings e(c, p.n, 128, 128);
    const kdfCCParams_t q = embedding_params<kdfCCParams_t>(KDF_CC_PARAMS_INIT, e);
    size_t bytes = 0;
    kdfCCWorkspaceSize(&q, &bytes);
    unsigned char* ws = c.hold(kdfbench::workspace(bytes));
    c.model.flops = e.gram_flops();
    c.call = [=](kdfHandle_t h, cudaStream_t s) {
        return kdfCC(h, &q, e.e_s, e.e_t, e.loss, e.grad_s, nullptr, nullptr, 1.0f, 0, ws, bytes, s);
    };
    return c;
}

Case rkd(const Preset& p)
{
    const double n = static_cast<double>(p.n);
    return embedding_case<kdfRKDParams_t>(p.n, p.embed_s, p.embed_t, KDF_RKD_PARAMS_INIT, kdfRKDWorkspaceSize, kdfRKD,
                                          100.0 * n * n * n);
}

Case pkt(const Preset& p)
{
    return embedding_case<kdfPKTParams_t>(p.n, p.embed_s, p.embed_t, KDF_PKT_PARAMS_INIT, kdfPKTWorkspaceSize, kdfPKT);
}

// A stage's map of n samples and its gradient.
struct MapBuffers {
    const float* f;
    float* grad;
    MapBuffers(Case& c, int64_t n, const Map& m, unsigned seed, bool with_grad)
    {
        const size_t count = static_cast<size_t>(m.elements(n));
        f = c.hold(kdfbench::uniform(count, seed));
        grad = with_grad ? c.hold(std::make_unique<Array<float>>(count)) : nullptr;
        c.model.bytes += 4.0 * static_cast<double>(count) * (with_grad ? 2 : 1);
    }
};

Case nst(const Preset& p)
{
    Case c;
    float* loss = c.hold(std::make_unique<Array<float>>(1));
    struct Stage {
        kdfNSTParams_t q;
        const float* f_s;
        const float* f_t;
        float* grad_s;
        unsigned char* ws;
        size_t bytes;
    };
    std::vector<Stage> stages;
    for (int l = 0; l < 3; ++l) {
        const MapBuffers s(c, p.n, p.student[l], 10 + l, true), t(c, p.n, p.teacher[l], 20 + l, false);
        Stage st{KDF_NST_PARAMS_INIT, s.f, t.f, s.grad, nullptr, 0};
        st.q.student = feature_map(p.n, p.student[l]);
        st.q.teacher = feature_map(p.n, p.teacher[l]);
        kdfNSTWorkspaceSize(&st.q, &st.bytes);
        st.ws = c.hold(kdfbench::workspace(st.bytes));
        stages.push_back(st);
        // The form kdfNST takes (docs/losses/nst.md): channel (C x C Gram) or position (P x P).
        const double n = static_cast<double>(p.n), cs = static_cast<double>(p.student[l].c);
        const double cc = cs + static_cast<double>(p.teacher[l].c), hw = static_cast<double>(p.teacher[l].h * p.teacher[l].w);
        c.model.flops += 2 * hw * hw <= cc * cc ? 2 * n * cc * hw * hw + 2 * n * cs * hw * hw : 2 * n * cc * cc * hw + 2 * n * cs * cc * hw;
    }
    c.call = [=](kdfHandle_t h, cudaStream_t s) {
        kdfStatus_t st = KDF_STATUS_SUCCESS;
        for (size_t i = 0; i < stages.size() && st == KDF_STATUS_SUCCESS; ++i) {
            const Stage& g = stages[i];
            st = kdfNST(h, &g.q, g.f_s, g.f_t, loss, g.grad_s, nullptr, 1.0f, i > 0, g.ws, g.bytes, s);
        }
        return st;
    };
    return c;
}

Case fsp(const Preset& p)
{
    Case c;
    float* loss = c.hold(std::make_unique<Array<float>>(1));
    std::vector<MapBuffers> s, t;
    for (int l = 0; l < 3; ++l) {
        s.emplace_back(c, p.n, p.student[l], 10 + l, true);
        t.emplace_back(c, p.n, p.teacher[l], 20 + l, false);
    }
    struct Pair {
        kdfFSPParams_t q;
        size_t bytes;
        unsigned char* ws;
        MapBuffers s_bot, s_top, t_bot, t_top;
    };
    std::vector<Pair> pairs;
    for (int l = 0; l < 2; ++l) {
        Pair pr{KDF_FSP_PARAMS_INIT, 0, nullptr, s[l], s[l + 1], t[l], t[l + 1]};
        pr.q.student_bot = feature_map(p.n, p.student[l]);
        pr.q.student_top = feature_map(p.n, p.student[l + 1]);
        pr.q.teacher_bot = feature_map(p.n, p.teacher[l]);
        pr.q.teacher_top = feature_map(p.n, p.teacher[l + 1]);
        kdfFSPWorkspaceSize(&pr.q, &pr.bytes);
        pr.ws = c.hold(kdfbench::workspace(pr.bytes));
        pairs.push_back(pr);
        // Per network G = top bot^T / hw (N x C2 x C1 over the smaller map's hw); the student's two gradient GEMMs.
        const double hw = static_cast<double>(p.student[l + 1].h * p.student[l + 1].w);
        c.model.flops += 4.0 * 2.0 * p.n * p.student[l].c * p.student[l + 1].c * hw;
    }
    c.call = [=](kdfHandle_t h, cudaStream_t st) {
        kdfStatus_t r = KDF_STATUS_SUCCESS;
        for (size_t i = 0; i < pairs.size() && r == KDF_STATUS_SUCCESS; ++i) {
            const Pair& g = pairs[i];
            // The middle stage's gradient gets both pairs' contributions: accumulate from the second pair on.
            r = kdfFSP(h, &g.q, g.s_bot.f, g.s_top.f, g.t_bot.f, g.t_top.f, loss, g.s_bot.grad, g.s_top.grad, nullptr, 1.0f,
                       i > 0, g.ws, g.bytes, st);
        }
        return r;
    };
    return c;
}

// KDSVD on the three stages (all layers of both networks in one call, k = 1). FLOPs: the Grams (2 N n^2 max(C, P)
// per map, n = min(C, P)), the fp64 Jacobi solves (~8 n^3 per sweep, 8 sweeps modelled), the gradient (4 N C P per
// stage and live vector).
Case kdsvd(const Preset& p)
{
    Case c;
    float* loss = c.hold(std::make_unique<Array<float>>(2));
    kdfKDSVDParams_t q = KDF_KDSVD_PARAMS_INIT;
    q.num_layers = 3;
    std::vector<const void*> f_s, f_t;
    std::vector<void*> grads;
    for (int l = 0; l < 3; ++l) {
        const MapBuffers s(c, p.n, p.student[l], 10 + l, true), t(c, p.n, p.teacher[l], 20 + l, false);
        f_s.push_back(s.f), f_t.push_back(t.f), grads.push_back(s.grad);
        q.student[l] = feature_map(p.n, p.student[l]);
        q.teacher[l] = feature_map(p.n, p.teacher[l]);
        for (const Map& m : {p.student[l], p.teacher[l]}) {
            const double hw = static_cast<double>(m.h * m.w), ch = static_cast<double>(m.c);
            const double order = ch < hw ? ch : hw, len = ch < hw ? hw : ch, n = static_cast<double>(p.n);
            c.model.flops += 2.0 * n * order * order * len + n * 8.0 * 8.0 * order * order * order;
        }
        c.model.flops += 4.0 * static_cast<double>(p.n) * static_cast<double>(p.student[l].elements(1));
    }
    size_t bytes = 0;
    kdfKDSVDWorkspaceSize(&q, &bytes);
    unsigned char* ws = c.hold(kdfbench::workspace(bytes));
    c.call = [=](kdfHandle_t h, cudaStream_t st) {
        return kdfKDSVD(h, &q, f_s.data(), f_t.data(), loss, grads.data(), nullptr, 1.0f, 0, ws, bytes, st);
    };
    return c;
}

// KDSVD decomposes Grams of order min(C, h*w) <= KDF_KDSVD_MAX_RANK of square maps with equal channels.
bool kdsvd_supported(const Preset& p)
{
    for (int l = 0; l < 3; ++l)
        for (const Map& m : {p.student[l], p.teacher[l]})
            if (m.h != m.w || (m.c > KDF_KDSVD_MAX_RANK && m.h * m.w > KDF_KDSVD_MAX_RANK) || m.c != p.student[l].c)
                return false;
    return true;
}

// The traffic of a relational loss grows with the batch N as a polynomial of degree at most 3: the inputs and
// gradients (N D), the Gram and difference matrices (N^2), RKD's angles (N^3, from the N x N distances).
constexpr int kGramBatchDegree = 3;

const bool registered = [] {
    const std::pair<const char*, Case (*)(const Preset&)> losses[] = {{"sp", sp},   {"cc", cc},   {"rkd", rkd},
                                                                      {"pkt", pkt}, {"nst", nst}, {"fsp", fsp}};
    for (const auto& [name, make] : losses)
        for (const auto& preset : kdfbench::network_presets())
            kdfbench::register_case(
                name, preset.name, preset.batch(), [preset, make = make](const kdfbench::Scale& s) { return make(kdfbench::at_scale(preset, s)); },
                kGramBatchDegree);
    for (const auto& preset : kdfbench::network_presets())
        if (kdsvd_supported(preset))
            kdfbench::register_case(
                "kdsvd", preset.name, preset.batch(), [preset](const kdfbench::Scale& s) { return kdsvd(kdfbench::at_scale(preset, s)); },
                0);  // Jacobi sweeps until convergence: traffic depends on the data, measured at full size
    return true;
}();

}  // namespace

BENCHMARK_MAIN();
