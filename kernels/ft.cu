// FT (Kim et al., "Paraphrasing complex network: network compression via factor transfer"; RepDistiller's
// FactorTransfer): the attention-map kernels of AT (kernels/at.cu has the math, fusion plan, bytes moved
// and numerics; kernels/common/attention_map.cuh the kernels) with FT's comparison term.
//
// Math. factor(f) = a(f) of at.cu with p = p1 (2 by default); with d = a_s - a_t over the N HW positions:
//   p2 = 1 (default):  loss = w * sum |d| / (N HW),     phi'(d) = sign(d), sign(0) = 0 (autograd's abs)
//   p2 != 1:           loss = w * sum d^p2 / (N HW),    phi'(d) = p2 d^(p2-1)
// The seed applies no abs for p2 != 1: an odd p2 gives signed terms, a non-integer p2 NaN for d < 0
// (torch.pow); reproduced. The gradient is at.cu's with D[o] = phi'(d[o]).
// Launches, bytes moved, workspace and determinism: as AT.
#include "ft.h"

#include "common/attention_map.cuh"

namespace kdf::kernels {

cudaError_t ft_launch(const AttentionArgs& args, cudaStream_t stream)
{
    return attention::launch<attention::Diff::Power>(args, stream);
}

}  // namespace kdf::kernels
