// AT (Zagoruyko & Komodakis, "Paying more attention to attention"; RepDistiller's Attention), one layer
// pair: two kernels (one for the loss alone), shared with FT (kernels/common/attention_map.cuh).
//
// Math. f_s is N x C_s x H_s x W_s, f_t is N x C_t x H_t x W_t. The compared maps have the smaller map's
// size h x w (HW = h*w positions o); P is the adaptive average pooling (PyTorch's windows) of the larger
// map to it, the identity for the smaller one. w is the layer weight, eps = 1e-12 (F.normalize's).
//   v[n, o]  = (1/C) sum_c (P f)[n, c, o]^p                      (each map; p = 2 by default)
//   a[n]     = v[n] / max(||v[n]||_2, eps)                        (over the HW positions of sample n)
//   loss     = w * sum_{n,o} phi(a_s[n, o] - a_t[n, o]) / (N HW),   phi(d) = d^2
// Gradient (per sample; g = grad_loss, c = grad_scale, D[o] = phi'(d[o]) = 2 d[o]; f_t is a constant):
//   dL/dv_s[o]  = g c w / (N HW) * (D[o] - a_s[o] dot) / ||v_s||,   dot = sum_o a_s[o] D[o]   (||v_s|| >= eps)
//               = g c w / (N HW) * D[o] / eps                     (||v_s|| < eps: clamp_min passes nothing
//                                                                  to the norm, as in autograd)
//   dL/du[c, o] = dL/dv_s[o] * p u[c, o]^(p-1) / C_s              (u = P f_s; = f_s when not pooled)
//   dL/df_s[c, y, x] = sum over the windows o containing (y, x) of dL/du[c, o] / |window o|
// FT (kernels/ft.cu) is the same with phi(d) = |d| (p2 = 1) or d^p2.
//
// Fusion plan. Every gradient element needs its sample's ||v_s|| and dot: statistics over all channels
// and positions of the sample, i.e. a grid-wide dependency between reading f_s and writing grad_s, so
// two kernels are the minimum with a gradient (a block cannot wait for other blocks). A memset zeroes N + 1
// tickets, then:
//   K1 attention_map_kernel: reads f_s and f_t once, pooling the larger map inside the loop, and writes
//      v_s, v_t (N x HW floats each, in the workspace); the block completing a sample's maps (per-sample
//      tickets) finishes it: norms, dot and loss term from its 2 HW values, and with a gradient
//      G[o] = dL/dv_s[o] p / C_s (N x HW floats); the block finishing the last sample writes the loss (sample
//      terms in sample order). The loss alone is this kernel.
//   K2 attention_grad_kernel (gradient only): one block per (sample, chunk of ~16384 student elements and at
//      least 16 channels) stages its sample's G in shared memory, reads f_s again and writes grad_s.
// No pooled tensor is written: a pooled teacher exists only inside K1's loop; for a pooled student K2
// recomputes each window's mean and stages per-window factors in shared memory, row tile by row tile.
// Bytes moved (fp32; S, T = bytes of f_s, f_t; V = 4 N HW): K1 reads S + T and 6V (v, L2-resident), writes 3V;
// K2 reads S and V per block of a sample (G), writes S. Total 3S + T + O(V) against the fused minimum 2S + T:
// f_s is read twice, the price of the per-sample dependency. E.g. resnet8x4's 64 x 64 x 32 x 32 layer against
// an equal teacher: 70.5 MB (~21 us at 3.35 TB/s, modelled) against 50.3 MB. Loss only: S + T + 5V.
// Not measured on a GPU yet.
// Numerics: fp32. K1 adds C/8 powers per thread, then 8 channel groups in order; the norms are sums of
// HW squares (they overflow only for ||v||^2 > 3.4e38, i.e. |f| beyond ~1e9 at p = 2); a norm below eps
// scales the gradient by 1/eps = 1e12, exactly as PyTorch. The loss adds N per-sample sums in sample order.
// Equal student and teacher maps give d = 0 exactly (loss and gradient 0): both maps take the same arithmetic,
// with the squared norms as explicit FMAs and a = v / ||v|| as __fmul_rn, so no contraction can round one side
// differently (a fused v_s * inv_s - v_t * inv_t would not be 0).
// Determinism: grids depend only on the shapes, every sum has a fixed order, no float atomics.
#include "at.h"

#include "common/attention_map.cuh"

namespace kdf::kernels {

cudaError_t at_launch(const AttentionArgs& args, cudaStream_t stream)
{
    return attention::launch<attention::Diff::Square>(args, stream);
}

}  // namespace kdf::kernels
