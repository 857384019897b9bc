// CRD (kdfCRD) at CIFAR-100 (RepDistiller: n_data 50,000, N 64) and ImageNet (n_data 1,281,167, N 256)
// sizes, K = 16384, D = 128, indices given (int64), banks updated. "crd" is the steady state of the seed's
// schedule (Z set: one gather pass); "crd_ema" estimates Z on every call (two passes). Minimum traffic:
// the gathered bank rows (4 D bytes per contrast and side, per pass; docs/losses/crd.md), the indices, the
// embeddings and gradients, the updated bank rows read and written.
#include "common/harness.h"
#include "common/presets.h"

namespace {

using kdfbench::Array;
using kdfbench::Case;
using kdfbench::CRDPreset;

Case crd_case(const CRDPreset& p, bool ema)
{
    Case c;
    kdfCRDParams_t q = KDF_CRD_PARAMS_INIT;
    q.rows = p.n, q.dim = p.d, q.n_data = p.n_data, q.k = p.k;
    q.z_mode = ema ? KDF_CRD_Z_EMA : KDF_CRD_Z_ONCE;
    const size_t nd = static_cast<size_t>(p.n * p.d), bank = static_cast<size_t>(p.n_data * p.d);
    const size_t contrasts = static_cast<size_t>(p.n * (p.k + 1));
    const float* v_s = c.hold(kdfbench::uniform(nd, 1, -0.1f, 0.1f));
    const float* v_t = c.hold(kdfbench::uniform(nd, 2, -0.1f, 0.1f));
    float* m_s = c.hold(kdfbench::uniform(bank, 3, -0.1f, 0.1f));
    float* m_t = c.hold(kdfbench::uniform(bank, 4, -0.1f, 0.1f));
    float* grad_s = c.hold(std::make_unique<Array<float>>(nd));
    float* grad_t = c.hold(std::make_unique<Array<float>>(nd));
    float* loss = c.hold(std::make_unique<Array<float>>(1));
    auto z = std::make_unique<Array<float>>(2);
    z->upload({1e4f, 1e4f});  // set: the steady state (the EMA updates it every call anyway)
    float* z_ptr = c.hold(std::move(z));
    std::vector<int64_t> idx_h(static_cast<size_t>(p.n)), cidx_h(contrasts);
    uint64_t x = 88172645463325252ull;
    for (size_t e = 0; e < contrasts; ++e) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        cidx_h[e] = static_cast<int64_t>(x % static_cast<uint64_t>(p.n_data));
    }
    for (int64_t i = 0; i < p.n; ++i) idx_h[i] = cidx_h[i * (p.k + 1)] = (i * 7919) % p.n_data;
    auto idx_a = std::make_unique<Array<int64_t>>(idx_h.size());
    idx_a->upload(idx_h);
    auto cidx_a = std::make_unique<Array<int64_t>>(cidx_h.size());
    cidx_a->upload(cidx_h);
    const int64_t* idx = c.hold(std::move(idx_a));
    const int64_t* cidx = c.hold(std::move(cidx_a));
    size_t bytes = 0;
    kdfCRDWorkspaceSize(&q, &bytes);
    unsigned char* ws = c.hold(kdfbench::workspace(bytes));
    const double passes = ema ? 2.0 : 1.0;
    c.model.bytes = passes * 2.0 * 4.0 * static_cast<double>(contrasts * p.d) + 8.0 * static_cast<double>(contrasts) +
                    4.0 * 4.0 * static_cast<double>(nd) + 2.0 * 2.0 * 4.0 * static_cast<double>(nd);
    c.call = [=](kdfHandle_t h, cudaStream_t s) {
        return kdfCRD(h, &q, v_s, v_t, m_s, m_t, idx, cidx, z_ptr, nullptr, loss, grad_s, grad_t, nullptr, 1.0f, 0, ws, bytes, s);
    };
    return c;
}

const bool registered = [] {
    for (const CRDPreset& preset : kdfbench::crd_presets())
        for (const bool ema : {false, true})
            kdfbench::register_case(ema ? "crd_ema" : "crd", preset.name, preset.batch(),
                                    [preset, ema](const kdfbench::Scale& s) { return crd_case(kdfbench::at_scale(preset, s), ema); });
    return true;
}();

}  // namespace

BENCHMARK_MAIN();
