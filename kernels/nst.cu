// NST (Huang & Wang, "Like what you like: knowledge distill via neuron selectivity transfer"; RepDistiller's
// NSTLoss): two kernels around strided-batched cuBLAS GEMMs.
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
// normalise -> GEMMs -> dA GEMM(s) -> finish; two kernels is the minimum around the GEMMs:
//   1. nst_normalize_kernel: one block per row of X (n x (C_s + C_t) blocks): pools the plane inside the load,
//      writes the row, reduces its norm, rescales the row in place and stores the norm.
//   2. Channel form: G = X X^T (one strided-batched call; Gtt only feeds the loss, and computing it with the
//      rest keeps it one call). Position form: D = -C_s b^T b, then D += C_t a^T a (two calls; D = C_s C_t
//      (S - T), integer factors so that D is exactly 0 where S = T), and C_s b^T b (one more) only when the
//      loss drops the teacher term.
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
// FLOPs: channel form 2 N (C_s + C_t)^2 P for G, 2 N C_s (C_s + C_t) P for dA; position form 2 N (C_s + C_t) P^2
// for D (+ 2 N C_t P^2 for T), 2 N C_s P^2 for dA. Bytes (fp32): inputs read once (4 N C_s H W + 4 N C_t H' W'),
// X written once and read by each GEMM, G (or D) written once and read twice, dA written once and read once
// (twice when pooled), grad_s written once.
//
// Numerics: fp32 throughout (TF32 in the GEMMs only when the handle allows it); norms and the per-row loss
// terms are block-tree sums; the loss is added over blocks in block order.
// Determinism: grids depend only on the shapes; cuBLAS GEMMs are deterministic for a fixed configuration; no
// float atomics.
#include "nst.h"

#include "common/gram_pool.cuh"

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

// G = X X^T, then (gradient) dA = alpha1 Gss a + alpha2 Gst b.
cublasStatus_t channel_gemms(const NSTArgs& a)
{
    const NSTGeometry& g = a.geo;
    const int c = static_cast<int>(g.c), cs = static_cast<int>(g.cs), ct = static_cast<int>(g.ct), p = static_cast<int>(g.p);
    const int batch = static_cast<int>(g.n);
    const long long sx = g.c * g.p, sg = g.c * g.c, sd = g.cs * g.p;
    const float* xa = a.ws.x;
    const float* xb = a.ws.x + g.cs * g.p;
    cublasStatus_t st = gemm_rm_batched(a.cublas, false, true, c, c, p, 1.0f, a.ws.x, p, sx, a.ws.x, p, sx, 0.0f,
                                        a.ws.gram, c, sg, batch);
    if (st != CUBLAS_STATUS_SUCCESS || a.grad_s == nullptr) return st;
    const float nf = static_cast<float>(g.n), csf = static_cast<float>(g.cs), ctf = static_cast<float>(g.ct);
    const float alpha1 = 4.0f * a.weight * a.grad_scale / (nf * csf * csf);
    const float alpha2 = -4.0f * a.weight * a.grad_scale / (nf * csf * ctf);
    st = gemm_rm_batched(a.cublas, false, false, cs, p, cs, alpha1, a.ws.gram, c, sg, xa, p, sx, 0.0f, a.ws.da, p, sd,
                         batch);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    return gemm_rm_batched(a.cublas, false, false, cs, p, ct, alpha2, a.ws.gram + g.cs, c, sg, xb, p, sx, 1.0f, a.ws.da,
                           p, sd, batch);
}

// D = C_s C_t (S - T) = C_t a^T a - C_s b^T b and C_s C_t T = C_s b^T b (loss without full_loss), then
// (gradient) dA = alpha a D. The integer factors keep D exact where S = T exactly (e.g. 1 x 1 maps).
cublasStatus_t position_gemms(const NSTArgs& a)
{
    const NSTGeometry& g = a.geo;
    const int cs = static_cast<int>(g.cs), ct = static_cast<int>(g.ct), p = static_cast<int>(g.p);
    const int batch = static_cast<int>(g.n);
    const long long sx = g.c * g.p, sm = g.p * g.p, sd = g.cs * g.p;
    const float* xa = a.ws.x;
    const float* xb = a.ws.x + g.cs * g.p;
    float* d = a.ws.gram;
    float* t = a.ws.gram + g.n * g.p * g.p;
    const float csf = static_cast<float>(g.cs), ctf = static_cast<float>(g.ct);
    cublasStatus_t st = gemm_rm_batched(a.cublas, true, false, p, p, ct, -csf, xb, p, sx, xb, p, sx, 0.0f, d, p, sm, batch);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = gemm_rm_batched(a.cublas, true, false, p, p, cs, ctf, xa, p, sx, xa, p, sx, 1.0f, d, p, sm, batch);
    if (st == CUBLAS_STATUS_SUCCESS && a.loss != nullptr && !a.full_loss)
        st = gemm_rm_batched(a.cublas, true, false, p, p, ct, csf, xb, p, sx, xb, p, sx, 0.0f, t, p, sm, batch);
    if (st != CUBLAS_STATUS_SUCCESS || a.grad_s == nullptr) return st;
    const float alpha = 4.0f * a.weight * a.grad_scale / (static_cast<float>(g.n) * csf * csf * ctf);
    return gemm_rm_batched(a.cublas, false, false, cs, p, p, alpha, xa, p, sx, d, p, sm, 0.0f, a.ws.da, p, sd, batch);
}

}  // namespace

LaunchResult nst_launch(const NSTArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const NSTGeometry& g = a.geo;
    const LaunchConfig cfg{dim3(static_cast<unsigned>(g.blocks)), dim3(kGramBlock), 0, stream};
    if (a.loss)
        if ((r.cuda = a.ws.sum.prepare(stream))) return r;
    if ((r.cuda = kdf::launch(nst_normalize_kernel<kGramBlock>, cfg, a))) return r;
    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    if ((r.cublas = g.positions ? position_gemms(a) : channel_gemms(a))) return r;
    if (g.pool.pool_a)
        r.cuda = kdf::launch(nst_finish_kernel<kGramBlock, true>, cfg, a);
    else
        r.cuda = kdf::launch(nst_finish_kernel<kGramBlock, false>, cfg, a);
    return r;
}

}  // namespace kdf::kernels
