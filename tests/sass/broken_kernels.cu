// Kernels for the SASS audit's own test (audit_broken_kernels.py): what the audit must find in a real build.
// Compiled by nvcc only, never linked into anything.
#include <cstdint>

// A per-thread array indexed at run time lives in local memory: a stack frame.
__global__ void stack_array_kernel(const float* in, const int* index, float* out)
{
    float scratch[128];
    for (int i = 0; i < 128; ++i) scratch[i] = in[i * blockDim.x + threadIdx.x];
    out[threadIdx.x] = scratch[index[threadIdx.x] & 127];
}

// Clean: no local memory; 16-byte loads and stores, and a 64-bit integer division (a slow-path call).
__global__ void __launch_bounds__(256) clean_kernel(const float4* in, float4* out, int64_t n, int64_t d)
{
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) {
        float4 v = in[i / d];
        v.x += 1.0f;
        out[i] = v;
    }
}
