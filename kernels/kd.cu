// KD (Hinton et al.; RepDistiller's DistillKL): fused forward + backward in one kernel.
//
// Math. For row i with logits s = y_s[i] / T, t = y_t[i] / T:
//   q = softmax(s), p = softmax(t), KL_i = sum_j p_j (log p_j - log q_j),
//   row loss  l_i = T^2 w_i KL_i;  loss = sum_i l_i / N (batchmean) or l_i per row (none).
// Gradients (g = grad_loss: the scalar, or g_i per row; c = grad_scale; n = N or 1):
//   dL/dy_s[i,j] = g c w_i T (q_j - p_j) / n
//   dL/dy_t[i,j] = g c w_i T p_j ((log p_j - log q_j) - KL_i) / n          (mutual learning, opt-in)
// Both follow from d log_softmax(x)_j / dx_k = delta_jk - softmax(x)_k and the chain rule through /T.
//
// Fusion plan: one block per row (grid-stride over rows), one launch for the whole batch.
//   pass 1: read y_s, y_t once; online max/sum of exp for both (no separate max pass); rows whose pair fits
//           the row cache (dynamic_smem_limit: 2 C sizeof(T) <= 162 KiB, 20736 fp32 / 41472 16-bit classes) are
//           kept in shared memory as they are (16-bit rows in 16 bits).
//   pass 2: from shared memory (or a second read for longer rows): p, q, the KL terms, grad_s.
//   pass 3: only if grad_t is requested, since it needs KL_i from pass 2.
//   Batch mean: thread 0 of each block adds its row losses in row order, and kdf::grid_sum adds the
//   block sums in block order in the last block to finish (a ticket zeroed by a 4-byte memset). No
//   float atomics: the result is bitwise reproducible.
// Element types: y_s, y_t, grad_s, grad_t are fp32, fp16 or bf16 (one kernel template, T); every value is
// converted to fp32 on load and all arithmetic, the cache and the reductions are fp32, so a 16-bit call
// computes exactly what the fp32 kernel computes on the same (16-bit-representable) inputs, up to the
// final rounding of each gradient element to T (and, when accumulating, of the fp32 sum old + new). By
// construction: every thread visits its columns in the same order whatever the rows' alignment, stride or
// type (vector or scalar loads, kdf::for_each_column_pair), and the multiply-adds whose contraction could
// differ between the instantiations are explicit (__fmul_rn for the 1/T scaling, __fmaf_rn for the KL terms
// and the log-sum-exp rescaling).
// Bytes moved (e bytes per element: 4 for fp32, 2 for fp16 / bf16): 2 e N C read + e N C written
// (grad_s) when the rows are cached, i.e. the minimum; longer rows read y_s, y_t twice (the second read
// mostly from L2 for rows of a few hundred KB, from DRAM for most LLM vocabularies in fp32).
// Numerics: logsumexp with the running maximum, so logits of +-1e4 with T down to 0.1 neither overflow
// nor lose the largest terms; KL is accumulated per element as p (log p - log q) with both log
// probabilities formed relative to their own log-sum-exp (no cancellation of two large lse values); the
// probabilities themselves (q - p, and the KL weights p) are exp(x - max) / sum, a few ulp whatever the logits'
// magnitude (exp(x - lse) carries the rounding of x - lse, an ulp of the logits);
// p_j that are 0 (underflow, or a -inf teacher logit: a masked vocabulary entry, fp16 saturating) contribute
// exactly 0 to the loss and to grad_t, as PyTorch's kl_div; a -inf student logit where p_j > 0 makes the row's
// KL +inf with finite gradients (q_j = 0), as PyTorch. -inf logits are skipped by the log-sum-exp. A +inf or
// NaN logit makes the row's gradients NaN (PyTorch's log_softmax backward spreads it over the row); a NaN
// teacher probability adds nothing to the loss (PyTorch's kl_div masks target <= 0 and NaN alike). Rows with
// weight 0 are not read at all.
#include "kd.h"

#include "common/device.cuh"
#include "common/shared_memory.h"

namespace kdf::kernels {
namespace {

struct RowLse {
    OnlineLse s, t;
};
struct CombineRowLse {
    __device__ __forceinline__ RowLse operator()(const RowLse& a, const RowLse& b) const
    {
        return {OnlineLse::combine(a.s, b.s), OnlineLse::combine(a.t, b.t)};
    }
};

// How a call walks its rows: vector accesses of the logits (vec) and of each gradient (vec_gs, vec_gt), and the
// row cache in shared memory.
struct KDPaths {
    bool vec, vec_gs, vec_gt, cache;
};

// At least 1024 / BLOCK blocks per SM (at most 64 registers a thread): 1024 resident threads keep enough
// 16-byte loads in flight for the memory-bound passes (the octet walk would otherwise take 79 at 512 threads,
// one block per SM).
template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK, 1024 / BLOCK) kd_kernel(KDArgs args, float inv_t, float batch_scale, KDPaths paths)
{
    using LseReduce = cub::BlockReduce<RowLse, BLOCK>;
    using SumReduce = cub::BlockReduce<float, BLOCK>;
    __shared__ union {
        typename LseReduce::TempStorage lse;
        typename SumReduce::TempStorage sum;
    } temp;
    __shared__ float row_lse_s, row_lse_t, row_max_s, row_max_t, row_inv_sum_s, row_inv_sum_t, row_kl;
    T* cached = kdf::dynamic_shared<T>();  // [2 * classes] when `paths.cache`: the rows as they are (not scaled)

    const int64_t C = args.classes;
    const bool need_kl = args.loss != nullptr || args.grad_t != nullptr;
    float block_loss = 0.0f;  // thread 0: this block's row losses, in row order (batch mean)

    for (int64_t row = blockIdx.x; row < args.rows; row += gridDim.x) {
        const float w = args.row_weight ? args.row_weight[row] : 1.0f;
        T* gs = args.grad_s ? static_cast<T*>(args.grad_s) + row * args.ld_s : nullptr;
        T* gt = args.grad_t ? static_cast<T*>(args.grad_t) + row * args.ld_t : nullptr;
        if (w == 0.0f) {
            // Masked row: nothing read, zero contribution.
            for (int64_t j = threadIdx.x; j < C; j += BLOCK) {
                if (gs) store(&gs[j], 0.0f, args.accumulate);
                if (gt) store(&gt[j], 0.0f, args.accumulate);
            }
            if (threadIdx.x == 0 && args.loss && args.per_row) store(&args.loss[row], 0.0f, args.accumulate);
            continue;
        }
        const T* ys = static_cast<const T*>(args.y_s) + row * args.ld_s;
        const T* yt = static_cast<const T*>(args.y_t) + row * args.ld_t;

        // Pass 1: online log-sum-exp of both rows.
        RowLse mine{OnlineLse::empty(), OnlineLse::empty()};
        for_each_column_pair<BLOCK>(ys, yt, C, paths.vec, [&](int64_t j, float a, float b) {
            if (paths.cache) {
                cached[j] = from_float<T>(a);  // exact: a came from a T
                cached[C + j] = from_float<T>(b);
            }
            mine.s.add(__fmul_rn(a, inv_t));
            mine.t.add(__fmul_rn(b, inv_t));
        });
        const RowLse total = LseReduce(temp.lse).Reduce(mine, CombineRowLse{});
        if (threadIdx.x == 0) {
            row_lse_s = total.s.lse();
            row_lse_t = total.t.lse();
            row_max_s = total.s.max;
            row_max_t = total.t.max;
            row_inv_sum_s = 1.0f / total.s.sum;
            row_inv_sum_t = 1.0f / total.t.sum;
        }
        __syncthreads();
        const float lse_s = row_lse_s, lse_t = row_lse_t;
        // The probabilities as exp(x - max) / sum: relative error of a few ulp whatever the logits' magnitude
        // (exp(x - lse) would carry the rounding of x - lse, an ulp of the larger of the two, e.g. 2e-6 at 20). The
        // log-probabilities of the KL terms are x - lse.
        const float max_s = row_max_s, max_t = row_max_t, inv_sum_s = row_inv_sum_s, inv_sum_t = row_inv_sum_t;
        const float g = args.grad_loss ? args.grad_loss[args.per_row ? row : 0] : 1.0f;
        // A +inf or NaN logit in either row makes its softmax NaN somewhere: the whole row's gradients are NaN,
        // as PyTorch's (the backward of log_softmax sums over the row).
        const bool poisoned = !(lse_s < INFINITY) || !(lse_t < INFINITY);
        const float coef = poisoned ? NAN : g * args.grad_scale * w * args.temperature * batch_scale;

        // Passes 2 and 3 read the cached rows or the rows again, divide by T as pass 1 did, and store f's result
        // to `out` (a gradient row).
        const auto for_each_column = [&](T* out, bool out_vec, auto&& f) {
            const auto scaled = [&](int64_t j, float a, float b) { return f(j, __fmul_rn(a, inv_t), __fmul_rn(b, inv_t)); };
            if (paths.cache)
                for_each_column_pair<BLOCK>(cached, cached + C, C, rows_aligned16<T>(cached, C), out, out_vec,
                                            args.accumulate, scaled);
            else
                for_each_column_pair<BLOCK>(ys, yt, C, paths.vec, out, out_vec, args.accumulate, scaled);
        };

        // Pass 2: KL terms and the student gradient.
        float kl_part = 0.0f;
        for_each_column(gs, paths.vec_gs, [&](int64_t, float a, float b) {
            const float log_q = a - lse_s;
            const float log_p = b - lse_t;
            const float p = expf(b - max_t) * inv_sum_t;
            const bool term = p > 0.0f;  // p = 0 (a -inf teacher logit) adds 0
            kl_part = __fmaf_rn(term ? p : 0.0f, term ? log_p - log_q : 0.0f, kl_part);
            return coef * (expf(a - max_s) * inv_sum_s - p);
        });
        if (need_kl) {
            const float kl = SumReduce(temp.sum).Sum(kl_part);
            if (threadIdx.x == 0) {
                row_kl = kl;
                const float l = args.temperature * args.temperature * w * kl;
                if (args.loss && args.per_row) store(&args.loss[row], l, args.accumulate);
                block_loss = __fadd_rn(block_loss, l);
            }
            __syncthreads();
        }

        // Pass 3 (mutual learning): the teacher gradient needs KL_i.
        if (gt) {
            const float kl = row_kl;
            for_each_column(gt, paths.vec_gt, [&](int64_t, float a, float b) {
                const float log_q = a - lse_s;
                const float log_p = b - lse_t;
                const float p = expf(b - max_t) * inv_sum_t;
                return p > 0.0f || poisoned ? coef * p * ((log_p - log_q) - kl) : 0.0f;
            });
        }
        __syncthreads();  // the next row reuses the cache and the reduction storage
    }

    if (args.loss == nullptr || args.per_row) return;
    // Batch mean: block sums in block order (deterministic), in the same launch.
    const GridSumResult r = grid_sum<BLOCK>(args.sum, block_loss);
    if (r.last && threadIdx.x == 0) store(args.loss, r.total / static_cast<float>(args.rows), args.accumulate);
}

template <int BLOCK, typename T>
cudaError_t launch_block(const KDArgs& args, cudaStream_t stream)
{
    KDPaths paths{};
    paths.vec = rows_aligned16<T>(args.y_s, args.ld_s) && rows_aligned16<T>(args.y_t, args.ld_t);
    paths.vec_gs = rows_aligned16<T>(args.grad_s, args.ld_s);
    paths.vec_gt = rows_aligned16<T>(args.grad_t, args.ld_t);
    const size_t limit = dynamic_smem_limit(args.device_optin_smem), row_bytes = size_t(2 * args.classes) * sizeof(T);
    paths.cache = row_bytes <= limit;
    const size_t smem = paths.cache ? row_bytes : 0;  // the row cache: both rows in their own type T
    // Above the default 48 KiB the kernel opts in, to the same `limit` from every call on the device.
    if (smem + kStaticSmemReserve > kDefaultSmemPerBlock) {
        const int optin = static_cast<int>(limit);
        if (cudaError_t e = cudaFuncSetAttribute(kd_kernel<BLOCK, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin))
            return e;
    }
    // 1/T and the batch mean's 1/N, divided here rather than in every block (the same IEEE quotients; a division
    // in the kernel is a call to a slow path that costs it registers).
    const float inv_t = 1.0f / args.temperature;
    const float batch_scale = args.per_row ? 1.0f : 1.0f / static_cast<float>(args.rows);
    return kdf::launch<kd_kernel<BLOCK, T>>({dim3(static_cast<unsigned>(kd_blocks(args.rows))), dim3(BLOCK), smem, stream},
                       args, inv_t, batch_scale, paths);
}

template <typename T>
cudaError_t launch_element(const KDArgs& args, cudaStream_t stream)
{
    if (args.classes <= 256) return launch_block<32, T>(args, stream);
    if (args.classes <= 4096) return launch_block<128, T>(args, stream);
    return launch_block<512, T>(args, stream);
}

}  // namespace

int64_t kd_blocks(int64_t rows) { return rows < 65535 ? rows : 65535; }

size_t kd_workspace_bytes(int64_t rows, bool per_row)
{
    return per_row ? 0 : static_cast<size_t>(GridSum::bytes(kd_blocks(rows)));
}

cudaError_t kd_launch(const KDArgs& args, cudaStream_t stream)
{
    if (args.loss != nullptr && !args.per_row)
        if (cudaError_t e = args.sum.prepare(stream)) return e;
    switch (args.dtype) {
    case KDF_DTYPE_FP16: return launch_element<__half>(args, stream);
    case KDF_DTYPE_BF16: return launch_element<__nv_bfloat16>(args, stream);
    default: return launch_element<float>(args, stream);
    }
}

}  // namespace kdf::kernels
