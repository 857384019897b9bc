// The feature-map losses (FitNet, AT, FT, AB, OFD, VID) on the network presets' stage outputs. A loss
// that RepDistiller applies per stage (AT, AB, OFD, VID) is timed as the three stages summed into one loss
// with accumulate, as a training step runs them. Minimum traffic per stage: both maps read once, the
// student gradient written once (VID's C floats of log_scale are negligible).
#include "common/harness.h"
#include "common/presets.h"

namespace {

using kdfbench::Array;
using kdfbench::Case;
using kdfbench::Preset;

kdfFeatureMap_t feature_map(int64_t n, const kdfbench::Map& m) { return {n, m.c, m.h, m.w, 0, 0}; }

// One stage's buffers (log_scale: VID's per-channel parameter, nullptr for the others).
struct Stage {
    const float* f_s;
    const float* f_t;
    float* grad_s;
    unsigned char* ws;
    size_t bytes;
    const float* log_scale;
};

// Stages [first, last] of a preset (student stage l against teacher stage l), called in order into one
// loss. Loss provides Params, INIT, size(params, &bytes) and call(h, params, stage, loss, accumulate, s).
template <typename Loss>
Case stages_case(const Preset& p, int first, int last)
{
    Case c;
    float* loss = c.hold(std::make_unique<Array<float>>(1));
    std::vector<std::pair<typename Loss::Params, Stage>> stages;
    for (int l = first; l <= last; ++l) {
        typename Loss::Params q = Loss::init();
        q.student = feature_map(p.n, Loss::student_map(p, l));
        q.teacher = feature_map(p.n, p.teacher[l]);
        const size_t ns = static_cast<size_t>(Loss::student_map(p, l).elements(p.n));
        const size_t nt = static_cast<size_t>(p.teacher[l].elements(p.n));
        Stage s{c.hold(kdfbench::uniform(ns, 10 + l)), c.hold(kdfbench::uniform(nt, 20 + l)),
                c.hold(std::make_unique<Array<float>>(ns)), nullptr, 0, nullptr};
        if constexpr (Loss::kHasLogScale) s.log_scale = c.hold(kdfbench::uniform(static_cast<size_t>(p.teacher[l].c), 30 + l));
        Loss::size(&q, &s.bytes);
        s.ws = c.hold(kdfbench::workspace(s.bytes));
        stages.emplace_back(q, s);
        c.model.bytes += 4.0 * static_cast<double>(2 * ns + nt);
    }
    c.call = [=](kdfHandle_t h, cudaStream_t s) {
        kdfStatus_t st = KDF_STATUS_SUCCESS;
        for (size_t i = 0; i < stages.size() && st == KDF_STATUS_SUCCESS; ++i)
            st = Loss::call(h, stages[i].first, stages[i].second, loss, i > 0, s);
        return st;
    };
    return c;
}

// Student and teacher stages of the same shape (after a regressor or connector where the method has one).
struct SameShape {
    static constexpr bool kHasLogScale = false;
    static const kdfbench::Map& student_map(const Preset& p, int l) { return p.teacher[l]; }
};

struct FitNet : SameShape {
    using Params = kdfFitNetParams_t;
    static Params init() { return KDF_FITNET_PARAMS_INIT; }
    static kdfStatus_t size(const Params* q, size_t* b) { return kdfFitNetWorkspaceSize(q, b); }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        return kdfFitNet(h, &q, s.f_s, s.f_t, loss, s.grad_s, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

struct AT {
    using Params = kdfATParams_t;
    static constexpr bool kHasLogScale = false;
    static const kdfbench::Map& student_map(const Preset& p, int l) { return p.student[l]; }
    static Params init() { return KDF_AT_PARAMS_INIT; }
    static kdfStatus_t size(const Params* q, size_t* b) { return kdfATWorkspaceSize(q, b); }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        return kdfAT(h, &q, s.f_s, s.f_t, loss, s.grad_s, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

struct FT : SameShape {
    using Params = kdfFTParams_t;
    static Params init() { return KDF_FT_PARAMS_INIT; }
    static kdfStatus_t size(const Params* q, size_t* b) { return kdfFTWorkspaceSize(q, b); }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        return kdfFT(h, &q, s.f_s, s.f_t, loss, s.grad_s, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

struct AB : SameShape {
    using Params = kdfABParams_t;
    static Params init() { return KDF_AB_PARAMS_INIT; }
    static kdfStatus_t size(const Params* q, size_t* b) { return kdfABWorkspaceSize(q, b); }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        return kdfAB(h, &q, s.f_s, s.f_t, loss, s.grad_s, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

struct OFD : SameShape {
    using Params = kdfOFDParams_t;
    static Params init() { return KDF_OFD_PARAMS_INIT; }
    static kdfStatus_t size(const Params* q, size_t* b) { return kdfOFDWorkspaceSize(q, b); }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        return kdfOFD(h, &q, s.f_s, s.f_t, nullptr, loss, s.grad_s, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

// VID: pred_mean (the regressor's output, the teacher's shape) against the teacher's map; kdfVID names the
// maps pred and target, so Params has those fields instead of student/teacher.
struct VIDParams {
    kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
    kdfFeatureMap_t student, teacher;
};

struct VID : SameShape {
    using Params = VIDParams;
    static constexpr bool kHasLogScale = true;
    static Params init() { return {}; }
    static kdfVIDParams_t resolve(const Params& q)
    {
        kdfVIDParams_t p = q.p;
        p.pred = q.student;
        p.target = q.teacher;
        return p;
    }
    static kdfStatus_t size(const Params* q, size_t* b)
    {
        const kdfVIDParams_t p = resolve(*q);
        return kdfVIDWorkspaceSize(&p, b);
    }
    static kdfStatus_t call(kdfHandle_t h, const Params& q, const Stage& s, float* loss, int acc, cudaStream_t st)
    {
        const kdfVIDParams_t p = resolve(q);
        return kdfVID(h, &p, s.f_s, s.f_t, s.log_scale, loss, s.grad_s, nullptr, nullptr, 1.0f, acc, s.ws, s.bytes, st);
    }
};

template <typename Loss>
void register_loss(const char* name, int first, int last)
{
    for (const auto& preset : kdfbench::network_presets())
        kdfbench::register_case(name, preset.name, preset.batch(), [preset, first, last](const kdfbench::Scale& s) {
            return stages_case<Loss>(kdfbench::at_scale(preset, s), first, last);
        });
}

const bool registered = [] {
    register_loss<FitNet>("fitnet", 1, 1);  // RepDistiller's hint layer
    register_loss<AT>("at", 0, 2);
    register_loss<FT>("ft", 2, 2);          // the last stage, as RepDistiller's FactorTransfer
    register_loss<AB>("ab", 0, 2);
    register_loss<OFD>("ofd", 0, 2);
    register_loss<VID>("vid", 0, 2);
    return true;
}();

}  // namespace

BENCHMARK_MAIN();
