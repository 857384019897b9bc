// CRD (Tian, Krishnan & Isola, "Contrastive Representation Distillation"; RepDistiller's CRDLoss with
// ContrastMemory and ContrastLoss): gathers of memory-bank rows dotted on the fly, three kernels.
//
// Math (two symmetric sides; side s: v = v_s scored against the teacher bank M = memory_t with Z = Z_s,
// side t: v = v_t against memory_s with Z_t). With c[i, k] the contrast indices (k = 0 the positive),
// s_ik = <M[c[i, k]], v_i> / T, s'_ik = s_ik - log Z, P_ik = exp(s'_ik), m = K, Pn = 1 / n_data,
// c = m Pn + 1e-7:
//   nce = -(1/N) (sum_i log(P_i0 / (P_i0 + c)) + sum_{i, k >= 1} log(m Pn / (P_ik + c)))
//   loss = weight * (nce_s + nce_t)
// In log space (nothing overflows for any s: exp(1/0.07) = 1.6e6 never appears as such):
//   log D1 = -softplus(log c - s'),              d/ds' = sigmoid(log c - s')
//   log D0 = log(m Pn) - log c - softplus(s' - log c),   d/ds' = -sigmoid(s' - log c)
// Z is a detached constant: dL/dv_i = -weight g grad_scale / (N T) sum_k (d log D / ds')_ik M[c[i, k]]
// (g = grad_loss); with normalize_inputs, v = u / ||u|| and dL/du = (dL/dv - v <v, dL/dv>) / ||u||.
// Z: unset (< 0) -> mean_ik exp(s_ik) * n_data from this batch; KDF_CRD_Z_EMA then updates it as
// z_momentum Z + (1 - z_momentum) mean exp(s) n_data on every later call. The estimate is a log-sum-exp:
// log(mean exp(s) n_data) = lse(s) - log(N (K+1)) + log n_data.
// Bank update (after the scoring, from the pre-update rows): M[idx_i] = normalize(momentum M[idx_i] +
// (1 - momentum) v_i), memory_s with v_s and memory_t with v_t; the last row i holding a value of idx wins.
//
// Fusion plan. The loss needs Z and, in the first batch (or every batch with the EMA), Z needs every score
// of the batch: a grid-wide dependency. Storing the N (K+1) scores would cost 4 N (K+1) bytes per side;
// instead the scores are computed twice in that case and once otherwise:
//   1. crd_z_kernel (grid: 2 sides x N rows x ceil((K+1) / 1024) chunks; 8 warps, a warp per contrast): every
//      block checks its contrast indices (and its row's idx) against [0, n_data) and counts a bad block in the
//      workspace's invalid flag; for a side that needs an estimate, it gathers each bank row (coalesced: lane l
//      reads elements l + 32 j), dots it with v_i (in registers, normalised in the warp when asked), and keeps a
//      running {max, sum exp(s - max)}; the last block of the side (a ticket) writes index_status (side 0) and,
//      unless an index was bad, combines the blocks' states in block order and writes the new Z. For a side
//      whose Z is set in KDF_CRD_Z_ONCE mode (the steady state), a block only reads its indices.
//   2. crd_nce_kernel (same grid): gathers and scores again with the final Z, adds the NCE terms (block sums
//      in warp order, kdf::grid_sum across blocks) and, for a side whose gradient is requested, accumulates
//      sum_k (d log D / ds') M[c[i, k]] per lane, reduced over the warps in warp order into one D-vector of
//      partials per block.
//   3. crd_finish_kernel (2 x N blocks): adds a row's chunk partials in chunk order, scales, goes back through
//      the normalisation, writes the gradient (with accumulate); then the bank update of the row (skipped when
//      a later row has the same idx).
// Bad input never touches the state: when any index of the call is outside [0, n_data), Z and both banks are
// left as they were, the loss and every gradient row are written as NaN, and index_status (when given) is 1.
// The gathered N x (K+1) x D tensor never exists: a bank row lives in one warp's registers for one contrast.
// Why a gather and not a GEMM against the whole bank: docs/losses/crd.md (memory and bandwidth model).
//
// Contrast indices: given (int32 or int64), or drawn here: c[i, 0] = idx[i], c[i, k >= 1] = the high 64 bits
// of x * n_data for x the first output of Philox4x64-10 with key (seed, 0) at counter (i (K+1) + k,
// offset, 0, 0) (numpy.random.Philox's generator; uniform up to a bias below n_data / 2^64). An index
// outside [0, n_data) is never dereferenced (its score is NaN) and invalidates the call, as above.
//
// Bytes (steady state, fp32): N (K+1) gathered rows of 4 D bytes per side in kernel 2 (2 x 537 MB at
// N = 64, K = 16384, D = 128; the banks are 25.6 MB each at CIFAR size and stay in a 50 MB L2 only in
// part), plus the same again in kernel 1 when Z is estimated; indices 4 or 8 bytes per contrast, read twice
// (the check in kernel 1, the scoring in kernel 2; none when drawn); the gradient partials 4 D bytes per
// block written once and read once.
// Numerics: fp32; scores and terms in log space; warp sums by a fixed butterfly (every lane gets the same
// bits), block sums in warp order, the chunks in chunk order, the loss across blocks in block order.
// Determinism: grids depend only on the shapes; no float atomics (integer tickets only).
#include "crd.h"

#include "common/device.cuh"

#include <cmath>

namespace kdf::kernels {
namespace {

constexpr int kWarps = kCRDBlock / 32;

// ---- Philox4x64-10 (Salmon et al., SC'11; the constants of Random123 and numpy.random.Philox) ----------
__device__ __forceinline__ uint64_t philox4x64_first(uint64_t c0, uint64_t c1, uint64_t c2, uint64_t c3, uint64_t k0,
                                                     uint64_t k1)
{
    constexpr uint64_t kM0 = 0xD2E7470EE14C6C93ull, kM1 = 0xCA5A826395121157ull;
    constexpr uint64_t kW0 = 0x9E3779B97F4A7C15ull, kW1 = 0xBB67AE8584CAA73Bull;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) k0 += kW0, k1 += kW1;
        const uint64_t hi0 = __umul64hi(kM0, c0), lo0 = kM0 * c0;
        const uint64_t hi1 = __umul64hi(kM1, c2), lo1 = kM1 * c2;
        const uint64_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    }
    return c0;
}

__device__ __forceinline__ int64_t load_index(const void* p, int64_t i, bool index64)
{
    return index64 ? static_cast<const int64_t*>(p)[i] : static_cast<int64_t>(static_cast<const int32_t*>(p)[i]);
}

// c[i, k] as given or drawn (no range check).
__device__ __forceinline__ int64_t raw_contrast(const CRDArgs& a, int64_t i, int64_t k)
{
    if (!a.draw) return load_index(a.contrast, i * a.geo.k1 + k, a.index64);
    if (k == 0) return load_index(a.idx, i, a.index64);
    const uint64_t x = philox4x64_first(static_cast<uint64_t>(i * a.geo.k1 + k), a.offset, 0, 0, a.seed, 0);
    return static_cast<int64_t>(__umul64hi(x, static_cast<uint64_t>(a.n_data)));
}

// c[i, k], or -1 when it is outside [0, n_data).
__device__ __forceinline__ int64_t contrast_index(const CRDArgs& a, int64_t i, int64_t k)
{
    const int64_t c = raw_contrast(a, i, k);
    return c >= 0 && c < a.n_data ? c : -1;
}

__device__ __forceinline__ float softplus(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
__device__ __forceinline__ float sigmoid(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

struct Side {
    const float* v;     // N x D, rows ld apart
    int64_t ld;
    const float* bank;  // scored against (the other network's bank)
    float* grad;        // nullable
    float* own_bank;    // updated with v
};

__device__ __forceinline__ Side side_of(const CRDArgs& a, int side)
{
    if (side == 0) return {a.v_s, a.ld_s, a.memory_t, a.grad_s, a.memory_s};
    return {a.v_t, a.ld_t, a.memory_s, a.grad_t, a.memory_t};
}

// (side, row, chunk) of a block of the scoring kernels.
struct ScoreBlock {
    int side;
    int64_t row, chunk, k_begin, k_end;
};

__device__ __forceinline__ ScoreBlock score_block(const CRDGeometry& g)
{
    const int64_t b = blockIdx.x, per_side = g.n * g.chunks;
    ScoreBlock s{};
    s.side = static_cast<int>(b / per_side);
    s.row = (b % per_side) / g.chunks;
    s.chunk = b % g.chunks;
    s.k_begin = s.chunk * kCRDChunk;
    s.k_end = s.k_begin + kCRDChunk < g.k1 ? s.k_begin + kCRDChunk : g.k1;
    return s;
}

// One row of D floats in a warp's registers: lane l holds elements l + 32 j, j < PER_LANE (0 beyond D).
template <int PER_LANE>
struct WarpRow {
    float x[PER_LANE];

    __device__ __forceinline__ void load(const float* row, int64_t d, int lane)
    {
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const int64_t e = lane + 32 * j;
            x[j] = e < d ? row[e] : 0.0f;
        }
    }
    // v / ||v|| without eps, as the seed's Normalize (a zero row gives NaN).
    __device__ __forceinline__ void normalize()
    {
        float sq = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) sq += x[j] * x[j];
        const float norm = sqrtf(warp_sum(sq));
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) x[j] /= norm;
    }
    __device__ __forceinline__ float dot(const WarpRow& o) const
    {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) s += x[j] * o.x[j];
        return warp_sum(s);
    }
};

template <int PER_LANE>
__device__ __forceinline__ WarpRow<PER_LANE> load_v(const CRDArgs& a, const Side& s, int64_t row, int lane)
{
    WarpRow<PER_LANE> v;
    v.load(s.v + row * s.ld, a.geo.d, lane);
    if (a.normalize) v.normalize();
    return v;
}

// The score s_ik = <M[c], v_i> / T of a warp's contrast (NaN for an out-of-range index); w gets the bank row.
template <int PER_LANE>
__device__ __forceinline__ float score(const CRDArgs& a, const Side& s, const WarpRow<PER_LANE>& v, int64_t row,
                                       int64_t k, int lane, WarpRow<PER_LANE>& w)
{
    const int64_t c = contrast_index(a, row, k);
    if (c < 0) {
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) w.x[j] = NAN;
        return NAN;
    }
    w.load(s.bank + c * a.geo.d, a.geo.d, lane);
    return v.dot(w) / a.temperature;
}

// True in some thread when an index of this block's contrasts (given ones; drawn ones are in range by
// construction except c[i, 0] = idx[i]) or, in a row's first chunk, the row's idx (read by the bank update
// or the draw) is outside [0, n_data).
__device__ __forceinline__ bool has_bad_index(const CRDArgs& a, const ScoreBlock& blk)
{
    const auto out_of_range = [&](int64_t c) { return c < 0 || c >= a.n_data; };
    bool bad = false;
    if (!a.draw)
        for (int64_t k = blk.k_begin + threadIdx.x; k < blk.k_end; k += kCRDBlock) bad |= out_of_range(raw_contrast(a, blk.row, k));
    if ((a.update || a.draw) && blk.chunk == 0 && threadIdx.x == 0) bad |= out_of_range(load_index(a.idx, blk.row, a.index64));
    return bad;
}

template <int PER_LANE>
__global__ void __launch_bounds__(kCRDBlock) crd_z_kernel(CRDArgs a)
{
    const ScoreBlock blk = score_block(a.geo);
    const bool bad = __syncthreads_or(has_bad_index(a, blk));
    const float z = a.z[blk.side];
    const bool estimating = a.step && (z < 0.0f || a.z_ema);  // else Z is set and fixed (the steady state)
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __shared__ OnlineLse warps[kWarps];
    __shared__ bool last;
    if (estimating) {
        const Side s = side_of(a, blk.side);
        const WarpRow<PER_LANE> v = load_v<PER_LANE>(a, s, blk.row, lane);
        OnlineLse acc = OnlineLse::empty();
        WarpRow<PER_LANE> w;
        for (int64_t k = blk.k_begin + warp; k < blk.k_end; k += kWarps) acc.add(score(a, s, v, blk.row, k, lane, w));
        if (lane == 0) warps[warp] = acc;
    }
    __syncthreads();
    const int64_t per_side = a.geo.n * a.geo.chunks;
    if (threadIdx.x == 0) {
        if (bad) atomicAdd(&a.ws.tickets[3], 1u);
        if (estimating) {
            OnlineLse t = OnlineLse::empty();
            for (int i = 0; i < kWarps; ++i) t = OnlineLse::combine(t, warps[i]);
            a.ws.z_partials[2 * blockIdx.x] = t.max;
            a.ws.z_partials[2 * blockIdx.x + 1] = t.sum;
        }
        __threadfence();
        last = atomicAdd(&a.ws.tickets[1 + blk.side], 1u) == static_cast<unsigned>(per_side - 1);
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Every block of this side has checked its indices (each side covers all of them).
    const bool invalid = atomicAdd(&a.ws.tickets[3], 0u) != 0;
    if (blk.side == 0 && threadIdx.x == 0 && a.index_status != nullptr) *a.index_status = invalid ? 1 : 0;
    if (!estimating || invalid) return;  // bad input leaves Z as it was
    // The side's block states: thread t combines a contiguous stripe, thread 0 the stripes, both in order.
    __shared__ OnlineLse stripes[kCRDBlock];
    const float* part = a.ws.z_partials + 2 * blk.side * per_side;
    const int64_t stripe = (per_side + kCRDBlock - 1) / kCRDBlock;
    OnlineLse t = OnlineLse::empty();
    for (int64_t p = threadIdx.x * stripe; p < per_side && p < (threadIdx.x + 1) * stripe; ++p)
        t = OnlineLse::combine(t, {__ldcg(&part[2 * p]), __ldcg(&part[2 * p + 1])});
    stripes[threadIdx.x] = t;
    __syncthreads();
    if (threadIdx.x != 0) return;
    OnlineLse all = OnlineLse::empty();
    for (int i = 0; i < kCRDBlock; ++i) all = OnlineLse::combine(all, stripes[i]);
    const float log_estimate = all.lse() - logf(static_cast<float>(a.geo.n * a.geo.k1)) + logf(static_cast<float>(a.n_data));
    const float estimate = expf(log_estimate);
    a.z[blk.side] = z < 0.0f ? estimate : a.z_momentum * z + (1.0f - a.z_momentum) * estimate;
}

template <int PER_LANE>
__global__ void __launch_bounds__(kCRDBlock) crd_nce_kernel(CRDArgs a, float log_c, float log_mpn)
{
    const ScoreBlock blk = score_block(a.geo);
    const Side s = side_of(a, blk.side);
    const bool grad = s.grad != nullptr;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float log_z = logf(a.z[blk.side]);
    const WarpRow<PER_LANE> v = load_v<PER_LANE>(a, s, blk.row, lane);
    WarpRow<PER_LANE> acc{}, w;
    float terms = 0.0f;
    for (int64_t k = blk.k_begin + warp; k < blk.k_end; k += kWarps) {
        const float x = score(a, s, v, blk.row, k, lane, w) - log_z;  // s'
        float h;
        if (k == 0) {
            terms -= softplus(log_c - x);
            h = sigmoid(log_c - x);
        } else {
            terms += log_mpn - log_c - softplus(x - log_c);
            h = -sigmoid(x - log_c);
        }
        if (grad) {
#pragma unroll
            for (int j = 0; j < PER_LANE; ++j) acc.x[j] += h * w.x[j];
        }
    }
    __shared__ float warp_terms[kWarps];
    __shared__ float warp_acc[kWarps][32 * PER_LANE];
    if (lane == 0) warp_terms[warp] = terms;
    if (grad) {
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) warp_acc[warp][lane + 32 * j] = acc.x[j];
    }
    __syncthreads();
    if (grad) {
        float* out = a.ws.grad_partials + blockIdx.x * a.geo.d;
        for (int64_t e = threadIdx.x; e < a.geo.d; e += kCRDBlock) {
            float sum = 0.0f;
            for (int i = 0; i < kWarps; ++i) sum += warp_acc[i][e];
            out[e] = sum;
        }
    }
    if (a.loss == nullptr) return;
    float block_terms = 0.0f;
    if (threadIdx.x == 0)
        for (int i = 0; i < kWarps; ++i) block_terms += warp_terms[i];
    const GridSumResult r = grid_sum<kCRDBlock>(a.ws.loss_sum, block_terms);
    if (r.last && threadIdx.x == 0)
        store(a.loss, a.ws.invalid() ? NAN : -a.weight / static_cast<float>(a.geo.n) * r.total, a.accumulate);
}

// Block (side, row): the gradient (chunk partials in chunk order), then the bank update of the row.
__global__ void __launch_bounds__(kCRDBlock) crd_finish_kernel(CRDArgs a)
{
    constexpr int kPerThread = static_cast<int>(kCRDMaxDim / kCRDBlock);
    const int side = static_cast<int>(blockIdx.x / a.geo.n);
    const int64_t row = blockIdx.x % a.geo.n, d = a.geo.d;
    const Side s = side_of(a, side);
    const float* u = s.v + row * s.ld;
    if (a.ws.invalid()) {  // an index out of range: NaN gradients, banks untouched
        for (int64_t e = threadIdx.x; s.grad != nullptr && e < d; e += kCRDBlock) store(s.grad + row * s.ld + e, NAN, a.accumulate);
        return;
    }

    // v = u (/ ||u||): element e = threadIdx.x + kCRDBlock j of this thread.
    float v[kPerThread];
    float sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
        const int64_t e = threadIdx.x + kCRDBlock * j;
        v[j] = e < d ? u[e] : 0.0f;
        sq += v[j] * v[j];
    }
    const float norm = a.normalize ? sqrtf(block_sum<kCRDBlock>(sq)) : 1.0f;
    if (a.normalize) {
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) v[j] /= norm;
    }

    if (s.grad != nullptr) {
        const float g = a.grad_loss ? *a.grad_loss : 1.0f;
        const float scale = -a.weight * g * a.grad_scale / (a.temperature * static_cast<float>(a.geo.n));
        const float* part = a.ws.grad_partials + (side * a.geo.n + row) * a.geo.chunks * d;
        float dv[kPerThread];
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) {
            const int64_t e = threadIdx.x + kCRDBlock * j;
            float sum = 0.0f;
            if (e < d)
                for (int64_t c = 0; c < a.geo.chunks; ++c) sum += part[c * d + e];
            dv[j] = scale * sum;
            dot += v[j] * dv[j];
        }
        if (a.normalize) dot = block_sum<kCRDBlock>(dot);
        float* out = s.grad + row * s.ld;
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) {
            const int64_t e = threadIdx.x + kCRDBlock * j;
            if (e < d) store(out + e, a.normalize ? (dv[j] - v[j] * dot) / norm : dv[j], a.accumulate);
        }
    }

    if (!a.update) return;
    const int64_t c = load_index(a.idx, row, a.index64);
    int later = 0;  // a later row with the same index wins
    for (int64_t r = row + 1 + threadIdx.x; r < a.geo.n && !later; r += kCRDBlock)
        later = load_index(a.idx, r, a.index64) == c;
    if (__syncthreads_or(later)) return;
    float* bank = s.own_bank + c * d;
    float pos[kPerThread];
    sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
        const int64_t e = threadIdx.x + kCRDBlock * j;
        pos[j] = e < d ? bank[e] * a.momentum + v[j] * (1.0f - a.momentum) : 0.0f;
        sq += pos[j] * pos[j];
    }
    const float pos_norm = sqrtf(block_sum<kCRDBlock>(sq));
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
        const int64_t e = threadIdx.x + kCRDBlock * j;
        if (e < d) bank[e] = pos[j] / pos_norm;
    }
}

template <typename Index>
__global__ void __launch_bounds__(kCRDBlock) crd_draw_kernel(CRDArgs a, Index* out)
{
    const int64_t total = a.geo.n * a.geo.k1;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * kCRDBlock + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * kCRDBlock)
        out[e] = static_cast<Index>(raw_contrast(a, e / a.geo.k1, e % a.geo.k1));
}

template <int PER_LANE>
LaunchResult crd_launch_lanes(const CRDArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const LaunchConfig score_cfg{dim3(static_cast<unsigned>(a.geo.blocks)), dim3(kCRDBlock), 0, stream};
    if ((r.cuda = a.ws.prepare(stream))) return r;
    if ((r.cuda = kdf::launch<crd_z_kernel<PER_LANE>>(score_cfg, a))) return r;
    if (a.loss != nullptr || a.grad_s != nullptr || a.grad_t != nullptr) {
        const double k_pn = static_cast<double>(a.geo.k1 - 1) / static_cast<double>(a.n_data);
        const float log_c = static_cast<float>(std::log(k_pn + 1e-7)), log_mpn = static_cast<float>(std::log(k_pn));
        if ((r.cuda = kdf::launch<crd_nce_kernel<PER_LANE>>(score_cfg, a, log_c, log_mpn))) return r;
    }
    if (a.grad_s != nullptr || a.grad_t != nullptr || a.update)
        r.cuda = kdf::launch<crd_finish_kernel>({dim3(static_cast<unsigned>(2 * a.geo.n)), dim3(kCRDBlock), 0, stream}, a);
    return r;
}

}  // namespace

LaunchResult crd_launch(const CRDArgs& a, cudaStream_t stream)
{
    return a.geo.d <= 128 ? crd_launch_lanes<4>(a, stream) : crd_launch_lanes<32>(a, stream);
}

cudaError_t crd_draw_launch(const CRDArgs& a, void* out, cudaStream_t stream)
{
    const int64_t total = a.geo.n * a.geo.k1;
    const int64_t blocks = (total + kCRDBlock - 1) / kCRDBlock;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535)), dim3(kCRDBlock), 0, stream};
    if (a.index64) return kdf::launch<crd_draw_kernel<int64_t>>(cfg, a, static_cast<int64_t*>(out));
    return kdf::launch<crd_draw_kernel<int32_t>>(cfg, a, static_cast<int32_t*>(out));
}

}  // namespace kdf::kernels
