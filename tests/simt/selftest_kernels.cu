// Self-test kernels: see selftest_kernels.h.
#include "selftest_kernels.h"

#include "../../kernels/common/portability.cuh"

namespace selftest {
namespace {

__global__ void block_sum_kernel(const float* x, float* out, int per_block)
{
    using Reduce = cub::BlockReduce<float, kBlockSumThreads>;
    __shared__ typename Reduce::TempStorage storage;
    const int t = threadIdx.x;
    const float v = t < per_block ? x[size_t(blockIdx.x) * per_block + t] : 0.0f;
    const float total = Reduce(storage).Sum(v, per_block);
    if (t == 0) out[blockIdx.x] = total;
}

__global__ void block_max_kernel(const float* x, float* out)
{
    using Reduce = cub::BlockReduce<float, kBlockSumThreads>;
    __shared__ typename Reduce::TempStorage storage;
    const float m = Reduce(storage).Reduce(x[size_t(blockIdx.x) * kBlockSumThreads + threadIdx.x], kdf::Max{});
    if (threadIdx.x == 0) out[blockIdx.x] = m;
}

__global__ void warp0_sum_kernel(const float* x, float* out)
{
    __shared__ float staged[128];
    staged[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = staged[threadIdx.x] + staged[threadIdx.x + 32] + staged[threadIdx.x + 64] + staged[threadIdx.x + 96];
        for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (threadIdx.x == 0) out[0] = v;
    }
}

__global__ void warp16_sum_kernel(const float* x, float* out, int valid)
{
    using Reduce = cub::WarpReduce<float, 16>;
    __shared__ typename Reduce::TempStorage storage[6];
    const int logical = threadIdx.x / 16, lane = threadIdx.x % 16;
    const float v = lane < valid ? x[threadIdx.x] : 0.0f;
    const float total = Reduce(storage[logical]).Sum(v, valid);
    if (lane == 0) out[logical] = total;
}

__global__ void reverse_dynamic_kernel(const float* x, float* y, int n)
{
    float* buf = kdf::dynamic_shared<float>();
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = buf[n - 1 - i];
}

constexpr int kTile = 32, kRows = 8;

__global__ void transpose_kernel(const float* in, float* out, int rows, int cols)
{
    __shared__ float tile[kTile][kTile + 1];
    const int c0 = blockIdx.x * kTile, r0 = blockIdx.y * kTile;
    for (int j = threadIdx.y; j < kTile; j += kRows) {
        const int r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[j][threadIdx.x] = in[size_t(r) * cols + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < kTile; j += kRows) {
        const int c = c0 + j, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[size_t(c) * rows + r] = tile[threadIdx.x][j];
    }
}

// x[i] = 2 x[i]: a load and a store of the same address in one basic block.
__global__ void scale_in_place_kernel(float* x, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 2.0f * x[i];
}

__global__ void warp_votes_kernel(const float* x, unsigned* out)
{
    const int pred = x[threadIdx.x] > 0.0f;
    const unsigned ballot = __ballot_sync(0xffffffffu, pred);
    const int any = __any_sync(0xffffffffu, pred);
    const int all = __all_sync(0xffffffffu, pred);
    if (threadIdx.x % 32 == 0) {
        const int w = threadIdx.x / 32;
        out[3 * w] = ballot;
        out[3 * w + 1] = any;
        out[3 * w + 2] = all;
    }
}

}  // namespace

cudaError_t block_sum(const float* x, float* out, int per_block, int blocks, cudaStream_t stream)
{
    return kdf::launch<block_sum_kernel>({dim3(blocks), dim3(kBlockSumThreads), 0, stream}, x, out, per_block);
}

cudaError_t block_max(const float* x, float* out, int blocks, cudaStream_t stream)
{
    return kdf::launch<block_max_kernel>({dim3(blocks), dim3(kBlockSumThreads), 0, stream}, x, out);
}

cudaError_t warp0_sum(const float* x, float* out, cudaStream_t stream)
{
    return kdf::launch<warp0_sum_kernel>({dim3(1), dim3(128), 0, stream}, x, out);
}

cudaError_t warp16_sum(const float* x, float* out, int valid, cudaStream_t stream)
{
    return kdf::launch<warp16_sum_kernel>({dim3(1), dim3(96), 0, stream}, x, out, valid);
}

cudaError_t reverse_dynamic(const float* x, float* y, int n, int threads, cudaStream_t stream)
{
    return kdf::launch<reverse_dynamic_kernel>({dim3(1), dim3(threads), n * sizeof(float), stream}, x, y, n);
}

cudaError_t transpose(const float* in, float* out, int rows, int cols, cudaStream_t stream)
{
    const dim3 grid((cols + kTile - 1) / kTile, (rows + kTile - 1) / kTile);
    return kdf::launch<transpose_kernel>({grid, dim3(kTile, kRows), 0, stream}, in, out, rows, cols);
}

cudaError_t scale_in_place(float* x, int n, cudaStream_t stream)
{
    return kdf::launch<scale_in_place_kernel>({dim3((n + 127) / 128), dim3(128), 0, stream}, x, n);
}

cudaError_t warp_votes(const float* x, unsigned* out, int threads, cudaStream_t stream)
{
    return kdf::launch<warp_votes_kernel>({dim3(1), dim3(threads), 0, stream}, x, out);
}

cudaError_t device_sum(void* temp, size_t& temp_bytes, const float* x, float* out, int n, cudaStream_t stream)
{
    return cub::DeviceReduce::Sum(temp, temp_bytes, x, out, n, stream);
}

cudaError_t device_max(void* temp, size_t& temp_bytes, const float* x, float* out, int n, cudaStream_t stream)
{
    return cub::DeviceReduce::Max(temp, temp_bytes, x, out, n, stream);
}

cudaError_t segmented_sum(void* temp, size_t& temp_bytes, const float* x, float* out, int segments, const int* begin,
                          const int* end, cudaStream_t stream)
{
    return cub::DeviceSegmentedReduce::Sum(temp, temp_bytes, x, out, segments, begin, end, stream);
}

}  // namespace selftest
