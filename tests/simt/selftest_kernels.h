// Self-test kernels of the portability layer, compiled by nvcc (GPU tests) and by the host compiler
// against the SIMT backend (emulator tests). Each launcher returns the launch status.
#pragma once

#include "../../kernels/common/cuda_api.h"

#include <cstddef>

namespace selftest {

inline constexpr int kBlockSumThreads = 256;

// out[b] = sum of x[b * per_block + i] for i < per_block (per_block <= 256), by cub::BlockReduce
// with num_valid = per_block.
cudaError_t block_sum(const float* x, float* out, int per_block, int blocks, cudaStream_t stream);
// out[b] = max over the block's 256 inputs, by cub::BlockReduce with kdf::Max on a full tile.
cudaError_t block_max(const float* x, float* out, int blocks, cudaStream_t stream);
// 128 threads stage x[0..128) in shared memory; only warp 0 folds it with __shfl_xor_sync.
cudaError_t warp0_sum(const float* x, float* out, cudaStream_t stream);
// Logical warps of 16 lanes sum their first `valid` inputs with cub::WarpReduce; out has one entry
// per logical warp of a 96-thread block.
cudaError_t warp16_sum(const float* x, float* out, int valid, cudaStream_t stream);
// y = reverse(x) for n <= 4096 floats through dynamic shared memory, one block of `threads`.
cudaError_t reverse_dynamic(const float* x, float* y, int n, int threads, cudaStream_t stream);
// x = 2 x in place, one thread per element.
cudaError_t scale_in_place(float* x, int n, cudaStream_t stream);
// out (cols x rows) = transpose of in (rows x cols), 32 x 32 tiles through padded shared memory.
cudaError_t transpose(const float* in, float* out, int rows, int cols, cudaStream_t stream);
// Ballot / any / all of (x[i] > 0) in each warp of one block of `threads` (multiple of 32);
// out[3 * warp + {0, 1, 2}].
cudaError_t warp_votes(const float* x, unsigned* out, int threads, cudaStream_t stream);
// cub::DeviceReduce::Sum / Max and cub::DeviceSegmentedReduce::Sum with the two-phase temp-storage
// protocol; `temp` (may be NULL) and `temp_bytes` as in CUB.
cudaError_t device_sum(void* temp, size_t& temp_bytes, const float* x, float* out, int n, cudaStream_t stream);
cudaError_t device_max(void* temp, size_t& temp_bytes, const float* x, float* out, int n, cudaStream_t stream);
cudaError_t segmented_sum(void* temp, size_t& temp_bytes, const float* x, float* out, int segments,
                          const int* begin, const int* end, cudaStream_t stream);

}  // namespace selftest
