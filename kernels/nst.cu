// NST (Huang & Wang, "Like what you like: knowledge distill via neuron selectivity transfer"; RepDistiller's
// NSTLoss): three kernels (the per-sample Grams accumulated in double) and, for the gradient, strided-batched
// cuBLAS GEMMs.
//
// Math. Both maps are pooled to the common h x w (the larger one inside the load, see PoolPair) and viewed as
// C x P rows (P = h*w). Rows are L2-normalised as F.normalize (eps 1e-12): a_i = u_i / max(||u_i||, eps) for
// the student's C_s rows u_i, b_k likewise for the teacher's C_t rows. Per sample, with X = [a; b]
// ((C_s + C_t) x P) and G = X X^T (its blocks Gss = a a^T, Gst = a b^T, Gtt = b b^T):
//   loss = w * (sum Gtt^2 / (N C_t^2) [full_loss] + sum Gss^2 / (N C_s^2) - 2 sum Gst^2 / (N C_s C_t))
// Gradient (g = grad_loss, c = grad_scale; Gtt is a constant, the teacher gets no gradient):
//   dL/da = g c w (4 / (N C_s^2) Gss a - 4 / (N C_s C_t) Gst b)            (d/da_i sum_jl (a_j.a_l)^2 = 4 sum_j Gss_ij a_j)
//   dL/du_i = (dL/da_i - a_i <a_i, dL/da_i>) / ||u_i||    (||u_i|| > eps; else dL/da_i / eps, clamp_min's gradient)
//   dL/df_s = the adjoint of the pooling applied to dL/du (identity when the student is not pooled).
//
// The position form. Per sample, with S = a^T a / C_s and T = b^T b / C_t (P x P, P = h*w), since
// sum Gss^2 = ||a^T a||_F^2, sum Gtt^2 = ||b^T b||_F^2 and sum Gst^2 = <a^T a, b^T b>_F:
//   loss = w / N sum_n ||S - T||_F^2 [- w / N sum_n ||T||_F^2 without full_loss],  dL/da = g c w 4 / (N C_s) a (S - T)
// (the same dL/da: 4 / C_s a (a^T a / C_s - b^T b / C_t) = 4 / C_s^2 Gss a - 4 / (C_s C_t) Gst b).
// The launcher takes it when its two P x P matrices are no larger than G (2 P^2 <= (C_s + C_t)^2): the deep
// layers (resnet8x4's 256x8x8: P = 64 against C = 512; 2 MiB instead of 64 MiB at N = 64) and it then needs
// fewer FLOPs too. With full_loss the loss is a sum of squares of S - T, so it does not cancel.
//
// Fusion plan. The loss needs all of G (or D = S - T) and dL/da needs it too, so the dependency chain is
// normalise -> Grams -> dA GEMM(s) -> finish:
//   1. nst_normalize_kernel: one block per row of X (n x (C_s + C_t) blocks): pools the plane inside the load,
//      writes the row, reduces its norm, rescales the row in place and stores the norm.
//   2. nst_gram_kernel: the per-sample matrices, every entry summed in double and rounded once (fp32 GEMMs'
//      sums over 1024 pixels or 512 channels left the gradient 1.6-2.1x the seed's error on RepDistiller's
//      maps). Channel form: G = X X^T (Gtt only feeds the loss). Position form: D = C_t a^T a - C_s b^T b
//      (= C_s C_t (S - T), combined in double: exactly 0 where S = T), and C_s b^T b only when the loss drops
//      the teacher term. A block per upper tile, the samples along grid z.
//   3. (gradient) dA = dL/da / g. Channel form: alpha1 G[:, :C_s] a + alpha2 G[:, C_s:] b, two calls into one
//      buffer (beta 0, then beta 1). Position form: alpha a D, one call. The host constants are in alpha; g (a
//      device scalar) is applied in 4.
//   4. nst_finish_kernel: one block per row of X. Every block adds a share of the loss (channel form: row i of
//      Gss and Gst for a student row, of Gtt for a teacher row; position form: the first N P blocks take a row
//      of D and of T each), kdf::grid_sum adds the blocks' values in block order. Student rows then
//      backpropagate through the normalisation (one block reduction for <a_i, dA_i>) and, when the student is
//      pooled, stage dL/du in dA and gather each input pixel from the (at most 2 x 2) windows that contain it;
//      the gradient is written once, with accumulate.
// No N x C x C x HW tensor (the seed's broadcast: 1 GiB per layer at CIFAR batch 64) exists: the largest
// buffers are X (N (C_s + C_t) P floats) and G (N (C_s + C_t)^2 floats) or D and T (2 N P^2 floats).
//
// FLOPs: channel form N (C_s + C_t)^2 P fp64 FMAs for G (upper tiles), 2 N C_s (C_s + C_t) P for dA; position form
// N (C_s + C_t) P^2 fp64 FMAs
// for D and T, 2 N C_s P^2 for dA. Bytes (fp32): inputs read once (4 N C_s H W + 4 N C_t H' W'),
// X written once and read by the Gram kernel and each GEMM, G (or D) written once and read twice, dA written once and read once
// (twice when pooled), grad_s written once.
//
// Numerics: fp32 except the Grams (double accumulation; TF32 in the gradient GEMMs only when the handle allows it); norms and the per-row loss
// terms are block-tree sums; the loss is added over blocks in block order.
// Determinism: grids depend only on the shapes; cuBLAS GEMMs are deterministic for a fixed configuration; no
// float atomics.
#include "nst.h"

#include "common/gram_pool.cuh"
#include "common/gram_split.cuh"

namespace kdf::kernels {
namespace {

constexpr float kNormEps = 1e-12f;

// The plane of row r of sample n: the student's channel r (r < cs) or the teacher's channel r - cs.
struct RowSource {
    const float* plane;
    int64_t H, W;
};

__device__ __forceinline__ RowSource row_source(const NSTArgs& a, int64_t in, int64_t r)
{
    if (r < a.geo.cs) return {a.f_s + a.s.offset(in, r), a.s.h, a.s.w};
    return {a.f_t + a.t.offset(in, r - a.geo.cs), a.t.h, a.t.w};
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) nst_normalize_kernel(NSTArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float s_inv;

    const int64_t b = blockIdx.x;
    const int64_t in = b / a.geo.c, r = b % a.geo.c;
    const RowSource src = row_source(a, in, r);
    const int64_t h = a.geo.pool.h, w = a.geo.pool.w, p = a.geo.p;
    const bool pooled = src.H != h || src.W != w;
    float* x = a.ws.x + b * p;

    float sq = 0.0f;
    for (int64_t o = threadIdx.x; o < p; o += BLOCK) {
        const float u = pooled ? gram::pool_at(src.plane, src.H, src.W, h, w, o / w, o % w) : src.plane[o];
        x[o] = u;
        sq += u * u;
    }
    const float total = Reduce(temp).Sum(sq);
    if (threadIdx.x == 0) {
        const float norm = sqrtf(total);
        a.ws.norms[b] = norm;
        s_inv = 1.0f / nan_max(norm, kNormEps);
    }
    __syncthreads();
    const float inv = s_inv;
    for (int64_t o = threadIdx.x; o < p; o += BLOCK) x[o] *= inv;  // the values this thread wrote
}

// POOLED: the student is pooled (the gradient goes through the pooling's adjoint).
template <int BLOCK, bool POOLED>
__global__ void __launch_bounds__(BLOCK) nst_finish_kernel(NSTArgs a)
{
    using Reduce = cub::BlockReduce<float, BLOCK>;
    __shared__ typename Reduce::TempStorage temp;
    __shared__ float s_dot;

    const int64_t b = blockIdx.x;
    const int64_t c = a.geo.c, cs = a.geo.cs, ct = a.geo.ct;
    const int64_t in = b / c, r = b % c;
    const bool student = r < cs;

    if (a.grad_s != nullptr && student) {
        const int64_t p = a.geo.p;
        const float* xa = a.ws.x + b * p;
        float* da = a.ws.da + (in * cs + r) * p;
        float dot = 0.0f;
        for (int64_t o = threadIdx.x; o < p; o += BLOCK) dot += xa[o] * da[o];
        dot = Reduce(temp).Sum(dot);
        if (threadIdx.x == 0) s_dot = dot;
        __syncthreads();
        dot = s_dot;
        const float norm = a.ws.norms[b];
        const float g = a.grad_loss ? *a.grad_loss : 1.0f;
        const bool clamped = !(norm > kNormEps);
        const float inv = g / (clamped ? kNormEps : norm);
        float* gs = a.grad_s + a.s.offset(in, r);
        for (int64_t o = threadIdx.x; o < p; o += BLOCK) {
            const float du = clamped ? da[o] * inv : (da[o] - xa[o] * dot) * inv;
            if constexpr (POOLED)
                da[o] = du;  // staged for the gather below
            else
                store(gs + o, du, a.accumulate);
        }
        if constexpr (POOLED) {
            __syncthreads();
            const int64_t H = a.s.h, W = a.s.w, h = a.geo.pool.h, w = a.geo.pool.w;
            for (int64_t i = threadIdx.x; i < H * W; i += BLOCK)
                store(gs + i, gram::unpool_at(da, H, W, h, w, i / W, i % W), a.accumulate);
        }
        __syncthreads();  // temp is reused below
    }

    if (a.loss == nullptr) return;
    const float nf = static_cast<float>(a.geo.n);
    float part = 0.0f;
    if (a.geo.positions) {
        // Row b of D (and of T without full_loss) for the first N P blocks: sum D^2 / N [- sum T^2 / N].
        const int64_t m = a.geo.m;
        const float csf = static_cast<float>(cs), ctf = static_cast<float>(ct);
        if (b < a.geo.n * m) {
            const float* d = a.ws.gram + b * m;
            const float* t = a.ws.gram + a.geo.n * m * m + b * m;
            for (int64_t j = threadIdx.x; j < m; j += BLOCK)
                part += a.full_loss ? d[j] * d[j] : d[j] * d[j] - t[j] * t[j];
            part *= 1.0f / (nf * csf * csf * ctf * ctf);  // D = C_s C_t (S - T)
        }
    } else if (student) {
        // Row r of Gss and Gst (student) or of Gtt (teacher, full_loss).
        const float* row = a.ws.gram + b * c;
        const float wss = 1.0f / (nf * static_cast<float>(cs) * static_cast<float>(cs));
        const float wst = -2.0f / (nf * static_cast<float>(cs) * static_cast<float>(ct));
        for (int64_t j = threadIdx.x; j < c; j += BLOCK) part += row[j] * row[j] * (j < cs ? wss : wst);
    } else if (a.full_loss) {
        const float* row = a.ws.gram + b * c;
        const float wtt = 1.0f / (nf * static_cast<float>(ct) * static_cast<float>(ct));
        for (int64_t j = cs + threadIdx.x; j < c; j += BLOCK) part += row[j] * row[j] * wtt;
    }
    const GridSumResult res = grid_sum<BLOCK>(a.ws.sum, Reduce(temp).Sum(part));
    if (res.last && threadIdx.x == 0) store(a.loss, a.weight * res.total, a.accumulate);
}

// The per-sample matrices, accumulated in double (gram_split.cuh's gram_tile): blockIdx.z walks the samples,
// (blockIdx.y, blockIdx.x) is an upper tile of the m x m matrix. Channel form: G = X X^T. Position form:
// D = C_t a^T a - C_s b^T b, combined in double and rounded once (exactly 0 where S = T exactly), and
// C_s b^T b when the loss drops the teacher term.
__global__ void __launch_bounds__(gram_detail::kTile * gram_detail::kTile) nst_gram_kernel(NSTArgs a)
{
    constexpr int T = gram_detail::kTile, K = gram_detail::kChunk;
    if (blockIdx.x < blockIdx.y) return;
    const NSTGeometry& g = a.geo;
    const int64_t m = g.m, i0 = int64_t(blockIdx.y) * T, j0 = int64_t(blockIdx.x) * T;
    const int64_t i = i0 + threadIdx.x / T, j = j0 + threadIdx.x % T;
    const bool mirror = blockIdx.x != blockIdx.y, in = i < m && j < m;
    const bool teacher_term = a.loss != nullptr && !a.full_loss;
    for (int64_t n = blockIdx.z; n < g.n; n += gridDim.z) {
        const float* x = a.ws.x + n * g.c * g.p;
        if (!g.positions) {
            const double v = gram_detail::gram_tile<T, K>(x, g.p, 1, m, 0, g.p, i0, j0);
            if (in) gram_detail::store_symmetric(a.ws.gram + n * m * m, m, i, j, mirror, static_cast<float>(v));
            continue;
        }
        const double aa = gram_detail::gram_tile<T, K>(x, 1, g.p, m, 0, g.cs, i0, j0);
        const double bb = gram_detail::gram_tile<T, K>(x + g.cs * g.p, 1, g.p, m, 0, g.ct, i0, j0);
        if (!in) continue;
        const double cs = static_cast<double>(g.cs), ct = static_cast<double>(g.ct);
        gram_detail::store_symmetric(a.ws.gram + n * m * m, m, i, j, mirror, static_cast<float>(ct * aa - cs * bb));
        if (teacher_term)
            gram_detail::store_symmetric(a.ws.gram + (g.n + n) * m * m, m, i, j, mirror, static_cast<float>(cs * bb));
    }
}

// (gradient, channel form) dA = alpha1 Gss a + alpha2 Gst b.
cublasStatus_t channel_gemms(const NSTArgs& a)
{
    const NSTGeometry& g = a.geo;
    const int c = static_cast<int>(g.c), cs = static_cast<int>(g.cs), ct = static_cast<int>(g.ct), p = static_cast<int>(g.p);
    const int batch = static_cast<int>(g.n);
    const long long sx = g.c * g.p, sg = g.c * g.c, sd = g.cs * g.p;
    const float* xa = a.ws.x;
    const float* xb = a.ws.x + g.cs * g.p;
    const float nf = static_cast<float>(g.n), csf = static_cast<float>(g.cs), ctf = static_cast<float>(g.ct);
    const float alpha1 = 4.0f * a.weight * a.grad_scale / (nf * csf * csf);
    const float alpha2 = -4.0f * a.weight * a.grad_scale / (nf * csf * ctf);
    const cublasStatus_t st = gemm_rm_batched(a.cublas, false, false, cs, p, cs, alpha1, a.ws.gram, c, sg, xa, p, sx, 0.0f,
                                              a.ws.da, p, sd, batch);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return gemm_rm_batched(a.cublas, false, false, cs, p, ct, alpha2, a.ws.gram + g.cs, c, sg, xb, p, sx, 1.0f, a.ws.da,
                           p, sd, batch);
}

// (gradient, position form) dA = alpha a D.
cublasStatus_t position_gemms(const NSTArgs& a)
{
    const NSTGeometry& g = a.geo;
    const int cs = static_cast<int>(g.cs), p = static_cast<int>(g.p);
    const int batch = static_cast<int>(g.n);
    const long long sx = g.c * g.p, sm = g.p * g.p, sd = g.cs * g.p;
    const float csf = static_cast<float>(g.cs), ctf = static_cast<float>(g.ct);
    const float alpha = 4.0f * a.weight * a.grad_scale / (static_cast<float>(g.n) * csf * csf * ctf);
    return gemm_rm_batched(a.cublas, false, false, cs, p, p, alpha, a.ws.x, p, sx, a.ws.gram, p, sm, 0.0f, a.ws.da, p, sd,
                           batch);
}

}  // namespace

LaunchResult nst_launch(const NSTArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const NSTGeometry& g = a.geo;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(g.blocks)), dim3(kGramBlock), 0, stream};
    if (a.loss)
        if ((r.cuda = a.ws.sum.prepare(stream))) return r;
    if ((r.cuda = kdf::launch<nst_normalize_kernel<kGramBlock>>(cfg, a))) return r;
    const unsigned tiles = static_cast<unsigned>((g.m + gram_detail::kTile - 1) / gram_detail::kTile);
    const dim3 gram_grid(tiles, tiles, static_cast<unsigned>(g.n < 65535 ? g.n : 65535));
    if ((r.cuda = kdf::launch<nst_gram_kernel>({gram_grid, dim3(gram_detail::kTile * gram_detail::kTile), 0, stream}, a)))
        return r;
    if (a.grad_s != nullptr) {
        if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
        if ((r.cublas = g.positions ? position_gemms(a) : channel_gemms(a))) return r;
    }
    if (g.pool.pool_a)
        r.cuda = kdf::launch<nst_finish_kernel<kGramBlock, true>>(cfg, a);
    else
        r.cuda = kdf::launch<nst_finish_kernel<kGramBlock, false>>(cfg, a);
    return r;
}

}  // namespace kdf::kernels
