// The aliasing rule of every entry point (kdfuse.h, docs/api.md "Aliasing"): a buffer the call writes shares no
// byte with any other buffer of the call; buffers it only reads may overlap. For every entry point and every
// pair of its buffers of which one is written, the test places the two so that they share only a boundary
// element (the second starting inside the first's last 16 bytes, and the other way round), and expects
// KDF_STATUS_INVALID_VALUE naming both; read-only pairs placed the same way, and all buffers apart, succeed.
#include "common/loss_test.h"

#include <functional>
#include <memory>

namespace {

using kdftest::DeviceBuffer;
using Pointers = std::vector<void*>;

struct Buf {
    const char* name;
    size_t bytes;
    bool written;
};

// One entry point: its buffers in a fixed order and a call taking their addresses in that order.
struct Entry {
    std::string name;
    std::vector<Buf> bufs;
    std::function<kdfStatus_t(kdfHandle_t, const Pointers&, cudaStream_t)> call;
};

constexpr size_t F = sizeof(float);

kdfFeatureMap_t map(int64_t n, int64_t c, int64_t h, int64_t w)
{
    kdfFeatureMap_t m = KDF_FEATURE_MAP_INIT;
    m.n = n, m.c = c, m.h = h, m.w = w;
    return m;
}

template <typename Params>
size_t ws(kdfStatus_t (*query)(const Params*, size_t*), const Params& p)
{
    return kdftest::workspace_size(query, p);
}

float* f(void* p) { return static_cast<float*>(p); }

// The calls with one student gradient (kdfFitNet, kdfAT, kdfSP, ...): s, t, grad_loss, loss, grad_s, workspace.
template <typename Params>
void add_student_teacher(std::vector<Entry>& e, const char* name, const Params& p, const char* s_name, size_t s_bytes,
                         const char* t_name, size_t t_bytes,
                         kdfStatus_t (*query)(const Params*, size_t*),
                         kdfStatus_t (*fn)(kdfHandle_t, const Params*, const void*, const void*, float*, void*, const float*,
                                           float, int, void*, size_t, kdfStream_t))
{
    const size_t w = ws(query, p);
    e.push_back({name,
                 {{s_name, s_bytes, false}, {t_name, t_bytes, false}, {"grad_loss", F, false}, {"loss", F, true},
                  {"grad_s", s_bytes, true}, {"workspace", w, true}},
                 [p, w, fn](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                     return fn(h, &p, b[0], b[1], f(b[3]), b[4], f(b[2]), 1.0f, 0, b[5], w, s);
                 }});
}

std::vector<Entry> entries()
{
    std::vector<Entry> e;
    {
        kdfKDParams_t p = KDF_KD_PARAMS_INIT;
        p.rows = 3, p.classes = 5;
        const size_t w = ws(kdfKDWorkspaceSize, p);
        e.push_back({"kdfKD",
                     {{"y_s", 15 * F, false}, {"y_t", 15 * F, false}, {"row_weight", 3 * F, false}, {"grad_loss", F, false},
                      {"loss", F, true}, {"grad_s", 15 * F, true}, {"grad_t", 15 * F, true}, {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfKD(h, &p, b[0], b[1], f(b[2]), f(b[4]), b[5], b[6], f(b[3]), 1.0f, 0, b[7], w, s);
                     }});
    }
    {
        kdfFitNetParams_t p = KDF_FITNET_PARAMS_INIT;
        p.student = p.teacher = map(2, 3, 4, 4);
        add_student_teacher(e, "kdfFitNet", p, "f_s", 96 * F, "f_t", 96 * F, kdfFitNetWorkspaceSize, kdfFitNet);
    }
    {
        kdfATParams_t p = KDF_AT_PARAMS_INIT;
        p.student = map(2, 3, 4, 4), p.teacher = map(2, 5, 8, 8);
        add_student_teacher(e, "kdfAT", p, "f_s", 96 * F, "f_t", 640 * F, kdfATWorkspaceSize, kdfAT);
    }
    {
        kdfFTParams_t p = KDF_FT_PARAMS_INIT;
        p.student = map(2, 3, 4, 4), p.teacher = map(2, 5, 4, 4);
        add_student_teacher(e, "kdfFT", p, "f_s", 96 * F, "f_t", 160 * F, kdfFTWorkspaceSize, kdfFT);
    }
    {
        kdfABParams_t p = KDF_AB_PARAMS_INIT;
        p.student = p.teacher = map(2, 3, 4, 4);
        add_student_teacher(e, "kdfAB", p, "s", 96 * F, "t", 96 * F, kdfABWorkspaceSize, kdfAB);
    }
    {
        kdfNSTParams_t p = KDF_NST_PARAMS_INIT;
        p.student = map(2, 3, 4, 4), p.teacher = map(2, 5, 4, 4);
        add_student_teacher(e, "kdfNST", p, "f_s", 96 * F, "f_t", 160 * F, kdfNSTWorkspaceSize, kdfNST);
    }
    {
        kdfSPParams_t p = KDF_SP_PARAMS_INIT;
        p.rows = 3, p.dim_student = 4, p.dim_teacher = 6;
        add_student_teacher(e, "kdfSP", p, "f_s", 12 * F, "f_t", 18 * F, kdfSPWorkspaceSize, kdfSP);
    }
    {
        kdfPKTParams_t p = KDF_PKT_PARAMS_INIT;
        p.rows = 3, p.dim_student = 4, p.dim_teacher = 6;
        add_student_teacher(e, "kdfPKT", p, "f_s", 12 * F, "f_t", 18 * F, kdfPKTWorkspaceSize, kdfPKT);
    }
    {
        kdfRKDParams_t p = KDF_RKD_PARAMS_INIT;
        p.rows = 3, p.dim_student = 4, p.dim_teacher = 6;
        add_student_teacher(e, "kdfRKD", p, "e_s", 12 * F, "e_t", 18 * F, kdfRKDWorkspaceSize, kdfRKD);
    }
    {
        kdfCCParams_t p = KDF_CC_PARAMS_INIT;
        p.rows = 3, p.dim_student = p.dim_teacher = 4, p.variant = KDF_CC_REPDISTILLER;
        const size_t w = ws(kdfCCWorkspaceSize, p);
        e.push_back({"kdfCC",
                     {{"f_s", 12 * F, false}, {"f_t", 12 * F, false}, {"grad_loss", F, false}, {"loss", F, true},
                      {"grad_s", 12 * F, true}, {"grad_t", 12 * F, true}, {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfCC(h, &p, b[0], b[1], f(b[3]), b[4], b[5], f(b[2]), 1.0f, 0, b[6], w, s);
                     }});
    }
    {
        kdfOFDParams_t p = KDF_OFD_PARAMS_INIT;
        p.student = p.teacher = map(2, 3, 4, 4), p.variant = KDF_OFD_ORIGINAL;
        const size_t w = ws(kdfOFDWorkspaceSize, p);
        e.push_back({"kdfOFD",
                     {{"s", 96 * F, false}, {"t", 96 * F, false}, {"margin", 3 * F, false}, {"grad_loss", F, false},
                      {"loss", F, true}, {"grad_s", 96 * F, true}, {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfOFD(h, &p, b[0], b[1], f(b[2]), f(b[4]), b[5], f(b[3]), 1.0f, 0, b[6], w, s);
                     }});
    }
    e.push_back({"kdfOFDMarginFromBN",
                 {{"gamma", 5 * F, false}, {"beta", 5 * F, false}, {"margin", 5 * F, true}},
                 [](kdfHandle_t h, const Pointers& b, cudaStream_t s) { return kdfOFDMarginFromBN(h, 5, f(b[0]), f(b[1]), f(b[2]), s); }});
    {
        kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
        p.pred = map(2, 3, 4, 4), p.target = map(2, 3, 8, 8);
        const size_t w = ws(kdfVIDWorkspaceSize, p);
        e.push_back({"kdfVID",
                     {{"pred_mean", 96 * F, false}, {"target", 384 * F, false}, {"log_scale", 3 * F, false},
                      {"grad_loss", F, false}, {"loss", F, true}, {"grad_pred", 96 * F, true}, {"grad_log_scale", 3 * F, true},
                      {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfVID(h, &p, b[0], b[1], f(b[2]), f(b[4]), b[5], f(b[6]), f(b[3]), 1.0f, 0, b[7], w, s);
                     }});
    }
    {
        kdfFSPParams_t p = KDF_FSP_PARAMS_INIT;
        p.student_bot = p.teacher_bot = map(2, 3, 8, 8);
        p.student_top = p.teacher_top = map(2, 5, 4, 4);
        const size_t w = ws(kdfFSPWorkspaceSize, p);
        e.push_back({"kdfFSP",
                     {{"s_bot", 384 * F, false}, {"s_top", 160 * F, false}, {"t_bot", 384 * F, false}, {"t_top", 160 * F, false},
                      {"grad_loss", F, false}, {"loss", F, true}, {"grad_s_bot", 384 * F, true}, {"grad_s_top", 160 * F, true},
                      {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfFSP(h, &p, b[0], b[1], b[2], b[3], f(b[5]), b[6], b[7], f(b[4]), 1.0f, 0, b[8], w, s);
                     }});
    }
    {
        kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
        p.rows = 2, p.dim = 4, p.k = 3, p.n_data = 5;
        const size_t w = ws(kdfCRDWorkspaceSize, p), I = sizeof(int64_t);
        e.push_back({"kdfCRD",
                     {{"v_s", 8 * F, false}, {"v_t", 8 * F, false}, {"idx", 2 * I, false}, {"contrast_idx", 8 * I, false},
                      {"grad_loss", F, false}, {"memory_s", 20 * F, true}, {"memory_t", 20 * F, true}, {"z", 2 * F, true},
                      {"index_status", 4, true}, {"loss", F, true}, {"grad_s", 8 * F, true}, {"grad_t", 8 * F, true},
                      {"workspace", w, true}},
                     [p, w](kdfHandle_t h, const Pointers& b, cudaStream_t s) {
                         return kdfCRD(h, &p, b[0], b[1], b[5], b[6], b[2], b[3], f(b[7]), static_cast<int32_t*>(b[8]), f(b[9]),
                                       b[10], b[11], f(b[4]), 1.0f, 0, b[12], w, s);
                     }});
        e.push_back({"kdfCRDDrawContrast",
                     {{"idx", 2 * I, false}, {"contrast_idx", 8 * I, true}},
                     [p](kdfHandle_t h, const Pointers& b, cudaStream_t s) { return kdfCRDDrawContrast(h, &p, b[0], b[1], s); }});
    }
    return e;
}

class Aliasing : public kdftest::LossTest {
protected:
    // A zeroed device allocation of `bytes` (at least 1), kept until the test ends.
    unsigned char* alloc(size_t bytes)
    {
        void* p = nullptr;
        EXPECT_EQ(cudaMalloc(&p, bytes ? bytes : 1), cudaSuccess);
        EXPECT_EQ(cudaMemset(p, 0, bytes ? bytes : 1), cudaSuccess);
        owned_.emplace_back(p, [](void* q) { cudaFree(q); });
        return static_cast<unsigned char*>(p);
    }
    // Every buffer in its own allocation.
    Pointers apart(const Entry& e)
    {
        Pointers b;
        for (const Buf& x : e.bufs) b.push_back(alloc(x.bytes));
        return b;
    }

private:
    std::vector<std::unique_ptr<void, void (*)(void*)>> owned_;
};

// An offset inside the last 16 bytes of a `bytes`-long buffer, 16-byte aligned (every kdfuse pointer may be).
size_t tail(size_t bytes) { return (bytes - 1) / 16 * 16; }

TEST_F(Aliasing, EveryWrittenBufferMayNotTouchAnyOtherBuffer)
{
    for (const Entry& e : entries()) {
        SCOPED_TRACE(e.name);
        ASSERT_EQ(e.call(handle, apart(e), stream), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
        for (size_t i = 0; i < e.bufs.size(); ++i)
            for (size_t j = i + 1; j < e.bufs.size(); ++j) {
                const Buf &a = e.bufs[i], &b = e.bufs[j];
                for (const bool a_first : {true, false}) {
                    SCOPED_TRACE(std::string(a.name) + " and " + b.name + (a_first ? ", " : ", reversed ") +
                                 "sharing a boundary element");
                    Pointers p = apart(e);
                    unsigned char* both = alloc(a.bytes + b.bytes + 16);
                    p[i] = a_first ? both : both + tail(b.bytes);
                    p[j] = a_first ? both + tail(a.bytes) : both;
                    const kdfStatus_t got = e.call(handle, p, stream);
                    if (!a.written && !b.written) {
                        EXPECT_EQ(got, KDF_STATUS_SUCCESS) << "inputs may overlap: " << kdfGetLastErrorString();
                        continue;
                    }
                    const std::string w = a.written ? a.name : b.name, o = a.written ? b.name : a.name;
                    EXPECT_STATUS(got, KDF_STATUS_INVALID_VALUE, w + " overlaps " + o);
                }
            }
    }
}

TEST_F(Aliasing, OFDMarginFromBNMayRunInPlace)
{
    DeviceBuffer<float> gamma(std::vector<float>{1.0f, 2.0f, 0.5f}), beta(std::vector<float>{-1.0f, 0.5f, 0.0f});
    DeviceBuffer<float> apart_margin(3);
    ASSERT_EQ(kdfOFDMarginFromBN(handle, 3, gamma.get(), beta.get(), apart_margin.get(), stream), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfOFDMarginFromBN(handle, 3, gamma.get(), beta.get(), beta.get(), stream), KDF_STATUS_SUCCESS);
    EXPECT_EQ(beta.download(), apart_margin.download());
}

}  // namespace
