// KDSVD (Lee et al., "Self-supervised knowledge distillation using singular value decomposition"; RepDistiller's
// KDSVD): all layers of both networks in one call, strided-batched cuBLAS Grams around three kernels.
//
// Math. Per layer l, network x and sample b, F is the C x P map (P = h*w) and X = F^T; the seed's torch.svd(X)
// gives the right singular vectors v_j (C-vectors) and the singular values s_j. Here v_j are the eigenvectors of
// the Gram G = F F^T (C x C, lambda_j = s_j^2) when C <= P; when P < C ("wide") the Gram is K = F^T F (P x P) with
// eigenvectors u_j, and v_j = F u_j / s_j. Then (the public header and docs/losses/kdsvd.md):
//   teacher: v_t[j], j < k, canonical sign (largest-magnitude entry positive); s_hat = s[:k] / max(|s[:k]|, 1e-12)
//   student: v_s[i], i < m = min(k + 3, n); M[i, j] = sign(cos_ij) where |cos_ij| = max_i' |cos_i'j| (cos = v_s^T v_t)
//   a_t[:, j] = s_hat_j v_t[j],  a_s[:, j] = s_hat_j sum_i M[i, j] v_s[i]
//   loss[l - 1] = weight / N sum_{b, c, c', j} (R_s - R_t)^2,  R = exp(-(a_l[c, j] - a_{l-1}[c', j])^2 / 8)
// Gradient (student only; D = R_s - R_t, delta = a_l[c, j] - a_{l-1}[c', j], K_l = weight g_l grad_scale / N):
//   dL/da_l[c, j] = -K_l / 2 sum_c' D R_s delta,   dL/da_{l-1}[c', j] = +K_l / 2 sum_c D R_s delta
//   g_i = sum_j M[i, j] s_hat_j dL/da_s[:, j]   (the normalisation's projection is absorbed below)
//   y_i = (lambda_i I - G)^+ g_i:
//     C <= P: y_i = sum_{j != i} v_j (v_j . g_i) / (lambda_i - lambda_j)
//     P < C:  r = (I - v_i v_i^T) g_i,  y_i = r / lambda_i + F sum_{j != i} u_j (u_j . F^T r) / (lambda_i (lambda_i - lambda_j))
//   gaps |lambda_i - lambda_j| <= gap_rtol lambda_0 are dropped (docs/losses/kdsvd.md gives the dropped forms)
//   dL/dF = sum_i (v_i y_i^T + y_i v_i^T) F      (over the live i: the student vectors M selects)
//
// Fusion plan:
//   1. 2 L strided-batched GEMMs: every sample's Gram of every layer and network (n = min(C, P) <= 128).
//   2. kdsvd_jacobi_kernel: one block per Gram, all 2 L N of them in one launch. Cyclic two-sided Jacobi in
//      double (an fp32 solve's rounding, ~eps ||G|| per sweep, cost 5-15x the seed's gradient accuracy on
//      RepDistiller's 128-channel maps): the packed upper triangle of G in shared memory, round-robin ordering,
//      n / 2 disjoint rotations per step, each step one pass over the 2 x 2 blocks of G (both rotations at once)
//      and one over the basis V^T (in shared memory where it fits, geo.smem_limit, else in the
//      workspace); sweeps until one rotates nothing (at most kMaxSweeps). Eigenpairs sorted by decreasing value
//      (index order on ties) overwrite the Gram in fp32. A Gram with a non-finite entry gets zero eigenpairs.
//   3. kdsvd_sample_kernel: one block per sample: vectors, alignment, a_s and a_t of every layer, the RBF of every
//      pair (loss partials, summed over samples in order by the last block), and with a gradient dL/da and y_i.
//   4. kdsvd_grad_kernel (gradient only): one block per 32-pixel tile of a sample's map: q = [y_i; v_i]^T F over
//      all channels, then dF = sum_i v_i q_y + y_i q_v, written (or accumulated) once.
//
// FLOPs: 2 N n^2 max(C, P) per Gram; Jacobi ~8 n^3 fp64 per sweep (about 6-10 sweeps); the rest O(N C P k).
// Bytes (fp32): every map read by its Gram GEMM; the student (and a wide teacher) map read again by the sample
// kernel (wide layers: v = F u, F^T r, F z) and by the gradient kernel, the gradient written once; Grams and
// eigenvectors (N n^2 per side) written twice and read a few times.
//
// Numerics: fp32 in and out (TF32 in the Gram GEMMs only when the handle allows it), the eigensolver in fp64.
// The Gram squares the condition number, but only the leading k + 3 vectors are used: their error is
// ~eps lambda_0 / gap. D = R_s - R_t is formed without cancellation (rbf_pair).
// Determinism: fixed grids, fixed reduction orders, no float atomics (one ticket for the loss).
#include "kdsvd.h"

#include "common/device.cuh"

#include <cfloat>
#include <climits>

namespace kdf::kernels {
namespace {

constexpr int kMaxSweeps = 30;
// A rotation is skipped when |G_pq| <= kRelTol sqrt(|G_pp G_qq|) (the pair is diagonal far below fp32's
// resolution) or <= kAbsTol max_i G_ii (negligible against the whole matrix).
constexpr double kRelTol = 1e-11;
constexpr double kAbsTol = 1e-14;

__device__ __forceinline__ float block_sum(float v) { return kdf::block_sum<kKDSVDBlock>(v); }
__device__ __forceinline__ float block_max(float v) { return block_reduce<kKDSVDBlock>(v, Max{}); }

// Round-robin ("circle") ordering of n (even) indices: in step s (0 <= s < n - 1), pair t (0 <= t < n / 2)
// rotates indices p and q. Index 0 stays, the others move one place per step: every pair meets once per sweep
// and the pairs of one step are disjoint.
__device__ __forceinline__ void round_robin(int t, int s, int n, int& p, int& q)
{
    const int m = n - 1;
    p = t == 0 ? 0 : 1 + (t - 1 + s) % m;
    q = 1 + (n - 2 - t + s) % m;
}

__device__ __forceinline__ const KDSVDSide& side_of(const KDSVDGeometry& g, int layer, bool teacher)
{
    return teacher ? g.layer[layer].t : g.layer[layer].s;
}

// Index of entry (i, j) of a symmetric n x n matrix stored as its packed upper triangle, row by row.
__device__ __forceinline__ int upper(int i, int j, int n)
{
    if (i > j) {
        const int t = i;
        i = j, j = t;
    }
    return i * (2 * n - i - 1) / 2 + j;
}

// Block = one Gram: blockIdx.x = (layer * 2 + teacher) * N + sample. In double: G (packed) and the rotations in
// shared memory, the accumulated basis V^T in shared memory or, for the largest orders, in the workspace.
// The larger orders' shared memory allows one block per SM, so the block may use the SM's registers (min 1 block).
__global__ void __launch_bounds__(kKDSVDBlock, 1) kdsvd_jacobi_kernel(KDSVDArgs a)
{
    const KDSVDGeometry& g = a.geo;
    const int64_t sample = blockIdx.x % g.n;
    const int which = static_cast<int>(blockIdx.x / g.n);
    const KDSVDSide& side = side_of(g, which / 2, which % 2 != 0);
    const int n = side.n;
    const int ne = n + (n & 1);  // an odd order gets a phantom index n that never rotates
    const int half = ne / 2;
    float* gram = a.ws.gram + side.gram + sample * n * n;
    float* values = a.ws.values + side.values + sample * n;

    const JacobiSmem layout = g.jacobi_layout();
    auto* base = dynamic_shared<unsigned char>();
    double* G = reinterpret_cast<double*>(base + layout.gram);
    double* Vt = side.basis_in_smem ? reinterpret_cast<double*>(base + layout.basis)
                                    : a.ws.basis + side.basis + sample * n * n;  // row j = eigenvector j
    double* cs = reinterpret_cast<double*>(base + layout.rotations);
    double* sn = cs + layout.pairs;
    int* P = reinterpret_cast<int*>(base + layout.indices);
    int* Q = P + layout.pairs;
    int* rank = Q + layout.pairs;

    float bad = 0.0f, diag = 0.0f;
    for (int i = threadIdx.x; i < n * n; i += kKDSVDBlock) {
        const int row = i / n, col = i % n;
        Vt[i] = row == col ? 1.0 : 0.0;
        if (row > col) continue;
        const float x = gram[row * n + col], y = gram[col * n + row];
        G[upper(row, col, n)] = 0.5 * (static_cast<double>(x) + static_cast<double>(y));  // exactly symmetric
        const bool finite = fabsf(x) <= FLT_MAX && fabsf(y) <= FLT_MAX;  // false for inf and NaN
        if (!finite) bad = 1.0f;
        if (row == col && finite) diag = fmaxf(diag, fabsf(x));
    }
    __syncthreads();
    if (block_sum(bad) > 0.0f) {  // a non-finite map: no vectors, no values
        for (int i = threadIdx.x; i < n * n; i += kKDSVDBlock) gram[i] = 0.0f;
        for (int i = threadIdx.x; i < n; i += kKDSVDBlock) values[i] = 0.0f;
        return;
    }
    const double abs_tol = kAbsTol * static_cast<double>(block_max(diag));

    for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
        float rotated = 0.0f;
        for (int step = 0; step < ne - 1; ++step) {
            for (int t = threadIdx.x; t < half; t += kKDSVDBlock) {
                int p, q;
                round_robin(t, step, ne, p, q);
                double c = 1.0, s = 0.0;
                if (p < n && q < n) {
                    const double app = G[upper(p, p, n)], aqq = G[upper(q, q, n)], apq = G[upper(p, q, n)];
                    if (fabs(apq) > abs_tol && fabs(apq) > kRelTol * sqrt(fabs(app) * fabs(aqq))) {
                        const double tau = (aqq - app) / (2.0 * apq);
                        const double tn = (tau >= 0.0 ? 1.0 : -1.0) / (fabs(tau) + sqrt(1.0 + tau * tau));
                        c = 1.0 / sqrt(1.0 + tn * tn);
                        s = tn * c;
                        rotated = 1.0f;
                    }
                }
                P[t] = p, Q[t] = q, cs[t] = c, sn[t] = s;
            }
            __syncthreads();
            // G <- J^T G J over the 2 x 2 blocks (rows of pair ta, columns of pair tb) of the upper triangle.
            for (int item = threadIdx.x; item < half * half; item += kKDSVDBlock) {
                const int ta = item / half, tb = item % half;
                if (ta > tb) continue;
                const int pa = P[ta], qa = Q[ta], pb = P[tb], qb = Q[tb];
                const double ca = cs[ta], sa = sn[ta], cb = cs[tb], sb = sn[tb];
                if (ta == tb) {
                    if (sa == 0.0) continue;
                    const double tn = sa / ca, apq = G[upper(pa, qa, n)];
                    G[upper(pa, pa, n)] -= tn * apq;
                    G[upper(qa, qa, n)] += tn * apq;
                    G[upper(pa, qa, n)] = 0.0;
                    continue;
                }
                if (sa == 0.0 && sb == 0.0) continue;
                const bool ok_pa = pa < n, ok_qa = qa < n, ok_pb = pb < n, ok_qb = qb < n;
                const double x11 = ok_pa && ok_pb ? G[upper(pa, pb, n)] : 0.0, x12 = ok_pa && ok_qb ? G[upper(pa, qb, n)] : 0.0;
                const double x21 = ok_qa && ok_pb ? G[upper(qa, pb, n)] : 0.0, x22 = ok_qa && ok_qb ? G[upper(qa, qb, n)] : 0.0;
                const double y11 = ca * x11 - sa * x21, y12 = ca * x12 - sa * x22;
                const double y21 = sa * x11 + ca * x21, y22 = sa * x12 + ca * x22;
                if (ok_pa && ok_pb) G[upper(pa, pb, n)] = cb * y11 - sb * y12;
                if (ok_pa && ok_qb) G[upper(pa, qb, n)] = sb * y11 + cb * y12;
                if (ok_qa && ok_pb) G[upper(qa, pb, n)] = cb * y21 - sb * y22;
                if (ok_qa && ok_qb) G[upper(qa, qb, n)] = sb * y21 + cb * y22;
            }
            // V <- V J (rows p and q of V^T; consecutive threads take consecutive entries).
            for (int item = threadIdx.x; item < n * half; item += kKDSVDBlock) {
                const int t = item / n, row = item % n;
                const double c = cs[t], s = sn[t];
                if (s == 0.0) continue;
                const int p = P[t], q = Q[t];
                const double vp = Vt[p * n + row], vq = Vt[q * n + row];
                Vt[p * n + row] = c * vp - s * vq;
                Vt[q * n + row] = s * vp + c * vq;
            }
            __syncthreads();
        }
        if (block_sum(rotated) == 0.0f) break;
    }

    // Sort by decreasing eigenvalue, index order on ties.
    for (int i = threadIdx.x; i < n; i += kKDSVDBlock) {
        const double li = G[upper(i, i, n)];
        int k = 0;
        for (int j = 0; j < n; ++j) {
            const double lj = G[upper(j, j, n)];
            k += lj > li || (lj == li && j < i);
        }
        rank[i] = k;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += kKDSVDBlock) values[rank[i]] = static_cast<float>(G[upper(i, i, n)]);
    for (int item = threadIdx.x; item < n * n; item += kKDSVDBlock) {
        const int j = item / n, row = item % n;
        gram[rank[j] * n + row] = static_cast<float>(Vt[j * n + row]);
    }
}

// The per-sample slots of one layer in the vector region (KDSVDVecSlots).
struct VecLayout {
    float* live;  // [count, i_0, i_1, ...]: the student vectors with a gradient
    float* as;    // a_s: vector j at as + j C
    float* at;    // v_t, then a_t
    float* da;    // dL/da_s
    float* v;     // student vectors, vector i at v + i C
    float* y;     // their y_i (live ones only)

    __device__ static VecLayout of(const KDSVDArgs& a, int layer, int64_t sample)
    {
        const KDSVDGeometry& g = a.geo;
        const KDSVDVecSlots slots = KDSVDVecSlots::of(g.layer[layer].c, g.k);
        float* base = a.ws.vec + g.layer[layer].vec + sample * slots.floats;
        return {base, base + slots.as, base + slots.at, base + slots.da, base + slots.v, base + slots.y};
    }
};

struct SampleShared {
    float s_hat[kKDSVDMaxLayers][kKDSVDMaxK];
    float mask[kKDSVDMaxLayers][kKDSVDMaxVectors][kKDSVDMaxK];
    float cos[kKDSVDMaxVectors][kKDSVDMaxK];
    float scratch[kKDSVDMaxRank];   // F^T r (wide layers)
    float coef[kKDSVDMaxRank];      // per eigenvector
    float z[kKDSVDMaxRank];         // sum_j u_j coef_j (wide layers)
};

// Right singular vector j of one side of a layer (sample b) into out[0, C), normalised (F.normalize, eps 1e-12);
// 0 when lambda_j <= 0 or the map's largest eigenvalue is 0 (a zero or non-finite map).
__device__ void singular_vector(const KDSVDArgs& a, const KDSVDSide& side, const float* f, const Map4d& m, int64_t b,
                                int j, int64_t c, float* out)
{
    const int n = side.n;
    const float* vals = a.ws.values + side.values + b * n;
    const float* evec = a.ws.gram + side.gram + b * n * n + int64_t(j) * n;
    const bool zero = !(vals[0] > 0.0f) || !(vals[j] > 0.0f);
    float sq = 0.0f;
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) {
        float x = 0.0f;
        if (!zero) {
            if (side.wide) {
                const float* row = f + m.offset(b, ch);
                for (int p = 0; p < n; ++p) x += row[p] * evec[p];
            } else {
                x = evec[ch];
            }
        }
        out[ch] = x;
        sq += x * x;
    }
    const float norm = sqrtf(block_sum(sq));
    const float inv = 1.0f / nan_max(norm, 1e-12f);
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) out[ch] *= inv;
    __syncthreads();
}

// Flips v (C floats) so that its entry of largest magnitude (the first on ties) is >= 0.
__device__ void canonical_sign(float* v, int64_t c)
{
    float big = 0.0f;
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) big = fmaxf(big, fabsf(v[ch]));
    const float top = block_max(big);
    int first = INT_MAX;
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock)
        if (fabsf(v[ch]) == top && ch < first) first = static_cast<int>(ch);
    const int idx = block_reduce<kKDSVDBlock>(first, Min{});
    const bool flip = idx != INT_MAX && v[idx] < 0.0f;
    __syncthreads();
    if (flip)
        for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) v[ch] = -v[ch];
    __syncthreads();
}

// Vectors, alignment and the scaled a_s, a_t of one layer for sample b.
__device__ void layer_vectors(const KDSVDArgs& a, int l, int64_t b, SampleShared& sh)
{
    const KDSVDGeometry& g = a.geo;
    const KDSVDLayer& L = g.layer[l];
    const VecLayout o = VecLayout::of(a, l, b);
    const int k = g.k, m = L.s.vectors;
    for (int j = 0; j < k; ++j) {
        singular_vector(a, L.t, a.f_t[l], a.mt[l], b, j, L.c, o.at + j * L.c);
        canonical_sign(o.at + j * L.c, L.c);
    }
    for (int i = 0; i < m; ++i) singular_vector(a, L.s, a.f_s[l], a.ms[l], b, i, L.c, o.v + i * L.c);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < k; ++j) {
            float d = 0.0f;
            for (int64_t ch = threadIdx.x; ch < L.c; ch += kKDSVDBlock) d += o.v[i * L.c + ch] * o.at[j * L.c + ch];
            const float cij = block_sum(d);
            if (threadIdx.x == 0) sh.cos[i][j] = cij;
        }
    if (threadIdx.x == 0) {
        const float* vals = a.ws.values + L.t.values + b * L.t.n;
        float ss = 0.0f;
        for (int j = 0; j < k; ++j) ss += fmaxf(vals[j], 0.0f);
        const float denom = nan_max(sqrtf(ss), 1e-12f);
        for (int j = 0; j < k; ++j) sh.s_hat[l][j] = vals[0] > 0.0f ? sqrtf(fmaxf(vals[j], 0.0f)) / denom : 0.0f;
        for (int j = 0; j < k; ++j) {
            float top = 0.0f;
            for (int i = 0; i < m; ++i) top = fmaxf(top, fabsf(sh.cos[i][j]));
            for (int i = 0; i < kKDSVDMaxVectors; ++i) {
                const float cij = i < m ? sh.cos[i][j] : 0.0f;
                sh.mask[l][i][j] = i < m && fabsf(cij) == top ? (cij > 0.0f ? 1.0f : cij < 0.0f ? -1.0f : 0.0f) : 0.0f;
            }
        }
    }
    __syncthreads();
    for (int64_t ch = threadIdx.x; ch < L.c; ch += kKDSVDBlock)
        for (int j = 0; j < k; ++j) {
            float w = 0.0f;
            for (int i = 0; i < m; ++i) w += sh.mask[l][i][j] * o.v[i * L.c + ch];
            o.as[j * L.c + ch] = sh.s_hat[l][j] * w;
            o.at[j * L.c + ch] *= sh.s_hat[l][j];
        }
    __syncthreads();
}

// R_s = exp(-ds^2 / 8) and D = R_s - R_t for the student's and the teacher's differences ds, dt. D is formed as
// R_t expm1((dt - ds)(dt + ds) / 8): subtracting the two exponentials, both near 1 for the small differences of
// unit vectors, would leave D an absolute error of ~eps, i.e. a relative one of eps / |D| (1e-4 and worse at
// RepDistiller's shapes).
struct RbfPair {
    float rs, d;
};
__device__ __forceinline__ RbfPair rbf_pair(float ds, float dt)
{
    return {expf(-0.125f * ds * ds), expf(-0.125f * dt * dt) * expm1f(0.125f * (dt - ds) * (dt + ds))};
}

// Pair l (layers l - 1, l) of sample b: returns this thread's part of sum (R_s - R_t)^2; with `grad`, adds
// -K/2 sum_c' D R_s delta to dL/da_l and +K/2 sum_c D R_s delta to dL/da_{l-1}.
__device__ float pair_rbf(const KDSVDArgs& a, int l, int64_t b, bool grad, float kl)
{
    const KDSVDGeometry& g = a.geo;
    const int k = g.k;
    const int64_t c1 = g.layer[l].c, c0 = g.layer[l - 1].c;
    const VecLayout cur = VecLayout::of(a, l, b), prev = VecLayout::of(a, l - 1, b);
    float part = 0.0f;
    for (int64_t c = threadIdx.x; c < c1; c += kKDSVDBlock)
        for (int j = 0; j < k; ++j) {
            const float xs = cur.as[j * c1 + c], xt = cur.at[j * c1 + c];
            float acc = 0.0f;
            for (int64_t cp = 0; cp < c0; ++cp) {
                const float ys = prev.as[j * c0 + cp], yt = prev.at[j * c0 + cp];
                const RbfPair r = rbf_pair(xs - ys, xt - yt);
                part += r.d * r.d;
                acc += r.d * r.rs * (xs - ys);
            }
            if (grad) cur.da[j * c1 + c] += -0.5f * kl * acc;
        }
    if (!grad) return part;
    __syncthreads();
    for (int64_t cp = threadIdx.x; cp < c0; cp += kKDSVDBlock)
        for (int j = 0; j < k; ++j) {
            const float ys = prev.as[j * c0 + cp], yt = prev.at[j * c0 + cp];
            float acc = 0.0f;
            for (int64_t c = 0; c < c1; ++c) {
                const float xs = cur.as[j * c1 + c], xt = cur.at[j * c1 + c];
                const RbfPair r = rbf_pair(xs - ys, xt - yt);
                acc += r.d * r.rs * (xs - ys);
            }
            prev.da[j * c0 + cp] += 0.5f * kl * acc;
        }
    __syncthreads();
    return part;
}

// y_i = (lambda_i I - G)^+ g_i of the student's vector i of layer l, sample b; g_i is in y on entry.
__device__ void vector_derivative(const KDSVDArgs& a, int l, int64_t b, int i, float* y, const float* v, SampleShared& sh)
{
    const KDSVDLayer& L = a.geo.layer[l];
    const KDSVDSide& side = L.s;
    const int n = side.n;
    const float* vals = a.ws.values + side.values + b * n;
    const float* evec = a.ws.gram + side.gram + b * n * n;
    const float li = vals[i], tol = a.gap_rtol * vals[0];
    const int64_t c = L.c;
    if (!side.wide) {
        for (int j = threadIdx.x; j < n; j += kKDSVDBlock) {
            const float gap = li - vals[j];
            float d = 0.0f;
            if (j != i && fabsf(gap) > tol) {
                for (int64_t ch = 0; ch < c; ++ch) d += evec[int64_t(j) * n + ch] * y[ch];
                d /= gap;
            }
            sh.coef[j] = d;
        }
        __syncthreads();
        for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) {
            float x = 0.0f;
            for (int j = 0; j < n; ++j) x += evec[int64_t(j) * n + ch] * sh.coef[j];
            y[ch] = x;
        }
        __syncthreads();
        return;
    }
    // Wide: r = (I - v_i v_i^T) g_i, then y_i = r / lambda_i + F z, z = sum_{j != i} u_j coef_j (u_j . F^T r).
    const float* f = a.f_s[l];
    const Map4d& m = a.ms[l];
    float d = 0.0f;
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) d += v[ch] * y[ch];
    const float vg = block_sum(d);
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) y[ch] -= v[ch] * vg;
    __syncthreads();
    for (int p = threadIdx.x; p < n; p += kKDSVDBlock) {
        float x = 0.0f;
        for (int64_t ch = 0; ch < c; ++ch) x += f[m.offset(b, ch) + p] * y[ch];
        sh.scratch[p] = x;
    }
    __syncthreads();
    const bool keep = li > tol;
    for (int j = threadIdx.x; j < n; j += kKDSVDBlock) {
        const float lj = vals[j], gap = li - lj;
        const bool live = fabsf(gap) > tol;
        float w = 0.0f;
        if (j != i && lj > 0.0f && (live || keep)) {
            for (int p = 0; p < n; ++p) w += evec[int64_t(j) * n + p] * sh.scratch[p];
            const float cj = live && keep ? 1.0f / (li * gap) : live ? 1.0f / (gap * lj) : -1.0f / (li * lj);
            w *= cj;
        }
        sh.coef[j] = w;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < n; p += kKDSVDBlock) {
        float x = 0.0f;
        for (int j = 0; j < n; ++j) x += evec[int64_t(j) * n + p] * sh.coef[j];
        sh.z[p] = x;
    }
    __syncthreads();
    for (int64_t ch = threadIdx.x; ch < c; ch += kKDSVDBlock) {
        const float* row = f + m.offset(b, ch);
        float x = keep ? y[ch] / li : 0.0f;
        for (int p = 0; p < n; ++p) x += row[p] * sh.z[p];
        y[ch] = x;
    }
    __syncthreads();
}

// The gradient's per-sample part of layer l: g_i of every live student vector, then y_i; the live list.
__device__ void layer_derivatives(const KDSVDArgs& a, int l, int64_t b, SampleShared& sh)
{
    const KDSVDGeometry& g = a.geo;
    const KDSVDLayer& L = g.layer[l];
    const VecLayout o = VecLayout::of(a, l, b);
    const int k = g.k, m = L.s.vectors;
    int live = 0;
    for (int i = 0; i < m; ++i) {
        bool selected = false;
        for (int j = 0; j < k; ++j) selected = selected || sh.mask[l][i][j] != 0.0f;
        if (!selected) continue;
        float* y = o.y + int64_t(live) * L.c;
        float* v = o.v + int64_t(live) * L.c;
        const float* vi = o.v + int64_t(i) * L.c;
        for (int64_t ch = threadIdx.x; ch < L.c; ch += kKDSVDBlock) {
            float x = 0.0f;
            for (int j = 0; j < k; ++j) x += sh.mask[l][i][j] * sh.s_hat[l][j] * o.da[j * L.c + ch];
            y[ch] = x;
            v[ch] = vi[ch];  // compacted: live <= i, and vector i is not read again after this
        }
        __syncthreads();
        vector_derivative(a, l, b, i, y, v, sh);
        if (threadIdx.x == 0) o.live[1 + live] = static_cast<float>(i);
        ++live;
    }
    if (threadIdx.x == 0) o.live[0] = static_cast<float>(live);
    __syncthreads();
}

__device__ __forceinline__ float pair_grad_scale(const KDSVDArgs& a, int l)
{
    const float gl = a.grad_loss != nullptr ? a.grad_loss[l - 1] : 1.0f;
    return a.weight * gl * a.grad_scale / static_cast<float>(a.geo.n);
}

// Block = one sample (N blocks: occupancy is not what limits it, so the block may use the SM's registers).
__global__ void __launch_bounds__(kKDSVDBlock, 1) kdsvd_sample_kernel(KDSVDArgs a)
{
    __shared__ SampleShared sh;
    const KDSVDGeometry& g = a.geo;
    const int64_t b = blockIdx.x;
    for (int l = 0; l < g.layers; ++l) layer_vectors(a, l, b, sh);
    if (a.any_grad)
        for (int l = 0; l < g.layers; ++l) {
            const VecLayout o = VecLayout::of(a, l, b);
            for (int64_t i = threadIdx.x; i < g.layer[l].c * g.k; i += kKDSVDBlock) o.da[i] = 0.0f;
        }
    __syncthreads();
    for (int l = 1; l < g.layers; ++l) {
        const float part = pair_rbf(a, l, b, a.any_grad, pair_grad_scale(a, l));
        const float total = block_sum(part);
        if (a.loss != nullptr && threadIdx.x == 0) a.ws.sum.partials[(l - 1) * g.n + b] = total;
    }
    if (a.any_grad)
        for (int l = 0; l < g.layers; ++l)
            if (a.grad_s[l] != nullptr) layer_derivatives(a, l, b, sh);
    if (a.loss == nullptr) return;

    // The last block to finish sums every pair's partials in sample order.
    if (!last_block(a.ws.sum.ticket)) return;
    for (int l = 1; l < g.layers; ++l) {
        float part = 0.0f;
        for (int64_t s = threadIdx.x; s < g.n; s += kKDSVDBlock) part += __ldcg(&a.ws.sum.partials[(l - 1) * g.n + s]);
        const float total = block_sum(part);
        if (threadIdx.x == 0) store(a.loss + (l - 1), a.weight * total / static_cast<float>(g.n), a.accumulate);
    }
    if (threadIdx.x == 0) *a.ws.sum.ticket = 0;
}

// Block = one 32-pixel tile of one sample's map of one layer with a gradient (layers in order, then samples,
// then tiles). Threads: 8 groups of 32 lanes; lane = pixel, groups split the channels.
// Two blocks per SM at least (25 KiB of shared memory each): ptxas may use up to 128 registers for the unrolled
// accumulators, which sm_90's default budget for this block size (64) would spill.
__global__ void __launch_bounds__(kKDSVDBlock, 2) kdsvd_grad_kernel(KDSVDArgs a)
{
    constexpr int kGroups = kKDSVDBlock / kKDSVDTile;
    __shared__ float part[kGroups][2][kKDSVDMaxVectors][kKDSVDTile];
    __shared__ float q[2][kKDSVDMaxVectors][kKDSVDTile];
    const KDSVDGeometry& g = a.geo;
    int64_t block = blockIdx.x;
    int l = 0;
    for (; l < g.layers; ++l) {
        if (a.grad_s[l] == nullptr) continue;
        const int64_t tiles = g.n * ((g.layer[l].s.p + kKDSVDTile - 1) / kKDSVDTile);
        if (block < tiles) break;
        block -= tiles;
    }
    const KDSVDLayer& L = g.layer[l];
    const int64_t tiles = (L.s.p + kKDSVDTile - 1) / kKDSVDTile;
    const int64_t b = block / tiles, p0 = (block % tiles) * kKDSVDTile;
    const VecLayout o = VecLayout::of(a, l, b);
    const int live = static_cast<int>(o.live[0]);
    const int lane = threadIdx.x % kKDSVDTile, grp = threadIdx.x / kKDSVDTile;
    const int64_t p = p0 + lane;
    const bool in = p < L.s.p;
    const float* f = a.f_s[l] + a.ms[l].offset(b, 0);
    float* grad = a.grad_s[l] + a.ms[l].offset(b, 0);
    const int64_t sc = a.ms[l].sc;

    // Fully unrolled over the largest live count, so that qy and qv stay in registers.
    float qy[kKDSVDMaxVectors], qv[kKDSVDMaxVectors];
#pragma unroll
    for (int i = 0; i < kKDSVDMaxVectors; ++i) qy[i] = qv[i] = 0.0f;
    if (in)
        for (int64_t c = grp; c < L.c; c += kGroups) {
            const float x = f[c * sc + p];
#pragma unroll
            for (int i = 0; i < kKDSVDMaxVectors; ++i)
                if (i < live) {
                    qy[i] += o.y[i * L.c + c] * x;
                    qv[i] += o.v[i * L.c + c] * x;
                }
        }
#pragma unroll
    for (int i = 0; i < kKDSVDMaxVectors; ++i)
        if (i < live) part[grp][0][i][lane] = qy[i], part[grp][1][i][lane] = qv[i];
    __syncthreads();
    if (grp == 0)
        for (int i = 0; i < live; ++i) {
            float sy = 0.0f, sv = 0.0f;
            for (int r = 0; r < kGroups; ++r) sy += part[r][0][i][lane], sv += part[r][1][i][lane];
            q[0][i][lane] = sy, q[1][i][lane] = sv;
        }
    __syncthreads();
    if (!in) return;
    for (int64_t c = grp; c < L.c; c += kGroups) {
        float x = 0.0f;
        for (int i = 0; i < live; ++i) x += o.v[i * L.c + c] * q[0][i][lane] + o.y[i * L.c + c] * q[1][i][lane];
        store(grad + c * sc + p, x, a.accumulate);
    }
}

}  // namespace

LaunchResult kdsvd_launch(const KDSVDArgs& a, cudaStream_t stream)
{
    LaunchResult r;
    const KDSVDGeometry& g = a.geo;
    if (a.loss)
        if ((r.cuda = a.ws.sum.prepare(stream))) return r;
    if ((r.cublas = gemm_bind(a.cublas, stream, a.ws.cublas, a.allow_tf32))) return r;
    const int batch = static_cast<int>(g.n);
    for (int l = 0; l < g.layers; ++l) {
        const KDSVDLayer& L = g.layer[l];
        for (int t = 0; t < 2; ++t) {
            const KDSVDSide& s = t ? L.t : L.s;
            const Map4d& m = t ? a.mt[l] : a.ms[l];
            const float* f = t ? a.f_t[l] : a.f_s[l];
            const int ld = static_cast<int>(m.sc), n = s.n, len = static_cast<int>(s.wide ? L.c : s.p);
            const long long sf = static_cast<long long>(m.sn), sg = static_cast<long long>(n) * n;
            float* out = a.ws.gram + s.gram;
            // C <= P: G = F F^T (C x C); P < C: K = F^T F (P x P).
            if ((r.cublas = gemm_rm_batched(a.cublas, s.wide, !s.wide, n, n, len, 1.0f, f, ld, sf, f, ld, sf, 0.0f, out, n,
                                            sg, batch)))
                return r;
        }
    }
    // Above the default 48 KiB the kernel opts in, always to the device's limit (see common/shared_memory.h).
    const size_t smem = static_cast<size_t>(g.jacobi_layout().bytes);
    if (smem + kStaticSmemReserve > kDefaultSmemPerBlock &&
        (r.cuda = cudaFuncSetAttribute(kdsvd_jacobi_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(g.smem_limit))))
        return r;
    const unsigned grams = static_cast<unsigned>(2 * g.layers * g.n);
    if ((r.cuda = kdf::launch<kdsvd_jacobi_kernel>({dim3(grams), dim3(kKDSVDBlock), smem, stream}, a))) return r;
    if ((r.cuda = kdf::launch<kdsvd_sample_kernel>({dim3(static_cast<unsigned>(g.n)), dim3(kKDSVDBlock), 0, stream}, a)))
        return r;
    if (!a.any_grad) return r;
    int64_t tiles = 0;
    for (int l = 0; l < g.layers; ++l)
        if (a.grad_s[l] != nullptr) tiles += g.n * ((g.layer[l].s.p + kKDSVDTile - 1) / kKDSVDTile);
    r.cuda = kdf::launch<kdsvd_grad_kernel>({dim3(static_cast<unsigned>(tiles)), dim3(kKDSVDBlock), 0, stream}, a);
    return r;
}

}  // namespace kdf::kernels
