// CUB shim for the SIMT backend: the subset of CUB that kdfuse kernels use, with CUB's contracts.
//
// Real CUB does not compile with a host compiler (inline PTX, device-only intrinsics) and its
// device-wide algorithms launch kernels of their own, so this header re-implements:
//   - cub::WarpReduce  : Reduce/Sum, full and partial; result valid in lane 0 only. Shuffle-down tree
//                        with offsets 1, 2, 4, ... and `output = op(output, peer)` as CUB's
//                        WarpReduceShfl does, so the summation order is CUB's.
//   - cub::BlockReduce : BLOCK_REDUCE_WARP_REDUCTIONS (CUB's default): warp reductions, lane 0 of each
//                        warp stores its aggregate, one barrier, thread 0 folds the aggregates in warp
//                        order. Result valid in thread 0 only; no trailing barrier, so reusing
//                        TempStorage needs a __syncthreads first (schedule fuzzing catches a missing one).
//                        The block's shape must match the template arguments (checked).
//   - cub::DeviceReduce / cub::DeviceSegmentedReduce : Sum, Max, Min, Reduce with the two-phase
//                        temp-storage protocol (d_temp_storage == nullptr returns the size and does no
//                        work; too little storage is cudaErrorInvalidValue), on the given stream,
//                        deterministic. They run as emulator kernels (one block per segment, a strided
//                        per-thread fold then a BlockReduce), which is a fixed tree order but not the
//                        exact order of a given GPU's CUB tuning: compare with a tolerance.
// Reduction operators: anything callable as op(a, b); kdfuse kernels use kdf::Sum / kdf::Max.
#pragma once

#include <kdfuse/simt/runtime.h>

#include <limits>
#include <source_location>

namespace cub {

enum BlockReduceAlgorithm {
    BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY,
    BLOCK_REDUCE_RAKING,
    BLOCK_REDUCE_WARP_REDUCTIONS,
};

namespace shim {
struct Plus {
    template <typename T>
    T operator()(const T& a, const T& b) const { return a + b; }
};
struct Maximum {
    template <typename T>
    T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
struct Minimum {
    template <typename T>
    T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};
inline unsigned linear_tid()
{
    return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
}
// Shuffles any trivially copyable T, 4 bytes at a time when it is wider than 8 bytes (as CUB does).
template <typename T>
T shuffle_down(unsigned mask, const T& value, int offset, int width)
{
    if constexpr (sizeof(T) <= 8) {
        return __shfl_down_sync(mask, value, offset, width);
    } else {
        constexpr int kWords = (sizeof(T) + 3) / 4;
        unsigned words[kWords] = {};
        std::memcpy(words, &value, sizeof(T));
        for (int w = 0; w < kWords; ++w) words[w] = __shfl_down_sync(mask, words[w], offset, width);
        T out;
        std::memcpy(&out, words, sizeof(T));
        return out;
    }
}
}  // namespace shim

template <typename T, int LOGICAL_WARP_THREADS = 32, int LEGACY_PTX_ARCH = 0>
class WarpReduce {
    static_assert(LOGICAL_WARP_THREADS >= 1 && LOGICAL_WARP_THREADS <= 32 &&
                      (LOGICAL_WARP_THREADS & (LOGICAL_WARP_THREADS - 1)) == 0,
                  "the WarpReduce shim supports power-of-two logical warps");

public:
    struct TempStorage {};  // the shuffle implementation needs no shared memory

    explicit WarpReduce(TempStorage&) {}

    template <typename ReductionOp>
    T Reduce(T input, ReductionOp op) { return reduce(input, op, LOGICAL_WARP_THREADS); }
    template <typename ReductionOp>
    T Reduce(T input, ReductionOp op, int valid_items) { return reduce(input, op, valid_items); }
    T Sum(T input) { return reduce(input, shim::Plus{}, LOGICAL_WARP_THREADS); }
    T Sum(T input, int valid_items) { return reduce(input, shim::Plus{}, valid_items); }

private:
    template <typename ReductionOp>
    T reduce(T input, ReductionOp op, int valid_items)
    {
        const unsigned tid = shim::linear_tid();
        const unsigned lane = tid % 32;
        const unsigned logical_lane = lane % LOGICAL_WARP_THREADS;
        // The logical warp's lanes that exist in this block (the last warp of a block may be short).
        const unsigned warp_base = tid - lane;
        const unsigned block_threads = blockDim.x * blockDim.y * blockDim.z;
        const unsigned present = block_threads - warp_base >= 32 ? 32 : block_threads - warp_base;
        const unsigned existing = present == 32 ? 0xffffffffu : ((1u << present) - 1u);
        const unsigned group = lane - logical_lane;
        const unsigned group_bits = LOGICAL_WARP_THREADS == 32 ? 0xffffffffu : ((1u << LOGICAL_WARP_THREADS) - 1u) << group;
        const unsigned mask = group_bits & existing;
        const int last_lane = valid_items - 1;
        T output = input;
        for (int offset = 1; offset < LOGICAL_WARP_THREADS; offset *= 2) {
            T peer = shim::shuffle_down(mask, output, offset, LOGICAL_WARP_THREADS);
            if (static_cast<int>(logical_lane) + offset <= last_lane) output = op(output, peer);
        }
        return output;
    }
};

template <typename T, int BLOCK_DIM_X, BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS,
          int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockReduce {
    static_assert(ALGORITHM == BLOCK_REDUCE_WARP_REDUCTIONS,
                  "the CUB shim implements BLOCK_REDUCE_WARP_REDUCTIONS (CUB's default) only");
    static constexpr int BLOCK_THREADS = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;
    static constexpr int WARPS = (BLOCK_THREADS + 31) / 32;

public:
    struct TempStorage {
        T warp_aggregates[WARPS];
    };

    explicit BlockReduce(TempStorage& storage, std::source_location where = std::source_location::current())
        : storage_(storage)
    {
        check_shape(where);
    }
    BlockReduce(std::source_location where = std::source_location::current()) : storage_(private_storage())
    {
        check_shape(where);
    }

    template <typename ReductionOp>
    T Reduce(T input, ReductionOp op) { return reduce(input, op, BLOCK_THREADS); }
    template <typename ReductionOp>
    T Reduce(T input, ReductionOp op, int num_valid) { return reduce(input, op, num_valid); }
    T Sum(T input) { return reduce(input, shim::Plus{}, BLOCK_THREADS); }
    T Sum(T input, int num_valid) { return reduce(input, shim::Plus{}, num_valid); }

private:
    static TempStorage& private_storage()
    {
        __shared__ TempStorage storage;
        return storage;
    }

    static void check_shape(const std::source_location& where)
    {
        if (blockDim.x != BLOCK_DIM_X || blockDim.y != BLOCK_DIM_Y || blockDim.z != BLOCK_DIM_Z)
            ::kdfuse::simt::detail::kernel_fail(
                "cub::BlockReduce<BLOCK_DIM_X=" + std::to_string(BLOCK_DIM_X) + ", Y=" + std::to_string(BLOCK_DIM_Y) +
                    ", Z=" + std::to_string(BLOCK_DIM_Z) + "> used in a block of (" + std::to_string(blockDim.x) + "," +
                    std::to_string(blockDim.y) + "," + std::to_string(blockDim.z) + ") threads",
                where);
    }

    template <typename ReductionOp>
    T reduce(T input, ReductionOp op, int num_valid)
    {
        const int tid = static_cast<int>(shim::linear_tid());
        const int warp = tid / 32, lane = tid % 32;
        const int warp_valid = num_valid - warp * 32;
        typename WarpReduce<T>::TempStorage unused;
        T aggregate = WarpReduce<T>(unused).Reduce(input, op, warp_valid < 32 ? warp_valid : 32);
        if (lane == 0) storage_.warp_aggregates[warp] = aggregate;
        __syncthreads();
        if (tid == 0)
            for (int w = 1; w < WARPS; ++w)
                if (w * 32 < num_valid) aggregate = op(aggregate, storage_.warp_aggregates[w]);
        return aggregate;
    }

    TempStorage& storage_;
};

namespace shim {
inline constexpr int kReduceThreads = 256;
inline constexpr size_t kTempBytes = 16;

// Two-phase protocol shared by the device-wide shims. Returns true when the caller should run.
inline bool temp_storage_ready(void* d_temp_storage, size_t& temp_storage_bytes, cudaError_t& status)
{
    status = cudaSuccess;
    if (d_temp_storage == nullptr) {
        temp_storage_bytes = kTempBytes;
        return false;
    }
    if (temp_storage_bytes < kTempBytes) {
        status = cudaErrorInvalidValue;
        return false;
    }
    return true;
}

template <typename InputIt, typename OutputIt, typename OffsetIt, typename Op, typename T>
void segmented_reduce_kernel(InputIt in, OutputIt out, OffsetIt begin, OffsetIt end, Op op, T init)
{
    using Reduce = BlockReduce<T, kReduceThreads>;
    __shared__ typename Reduce::TempStorage storage;
    const long long first = static_cast<long long>(begin[blockIdx.x]);
    const long long last = static_cast<long long>(end[blockIdx.x]);
    const long long n = last > first ? last - first : 0;
    T acc = init;
    bool any = false;
    for (long long i = first + threadIdx.x; i < last; i += kReduceThreads) {
        acc = any ? op(acc, static_cast<T>(in[i])) : static_cast<T>(in[i]);
        any = true;
    }
    const int valid = n < kReduceThreads ? static_cast<int>(n) : kReduceThreads;
    T total = Reduce(storage).Reduce(acc, op, valid);
    if (threadIdx.x == 0) out[blockIdx.x] = n == 0 ? init : op(init, total);
}

template <typename InputIt, typename OutputIt, typename OffsetIt, typename Op, typename T>
cudaError_t segmented(void* d_temp_storage, size_t& temp_storage_bytes, InputIt in, OutputIt out, long long segments,
                      OffsetIt begin, OffsetIt end, Op op, T init, cudaStream_t stream)
{
    cudaError_t status;
    if (!temp_storage_ready(d_temp_storage, temp_storage_bytes, status)) return status;
    if (segments < 0 || segments > 2147483647) return cudaErrorInvalidValue;
    ::kdfuse::simt::detail::count_cub_call();
    if (segments == 0) return cudaSuccess;
    return ::kdfuse::simt::launch(&segmented_reduce_kernel<InputIt, OutputIt, OffsetIt, Op, T>,
                                  dim3(static_cast<unsigned>(segments)), dim3(kReduceThreads), 0, stream,
                                  std::source_location::current(), nullptr, false, in, out, begin, end, op, init);
}

// A whole-array reduction is one segment [0, n).
template <typename InputIt, typename OutputIt, typename NumItemsT, typename Op, typename T>
cudaError_t whole(void* d_temp_storage, size_t& temp_storage_bytes, InputIt in, OutputIt out, NumItemsT num_items,
                  Op op, T init, cudaStream_t stream)
{
    if (num_items < 0) return cudaErrorInvalidValue;
    const long long offsets[2] = {0, static_cast<long long>(num_items)};
    return segmented(d_temp_storage, temp_storage_bytes, in, out, 1, offsets, offsets + 1, op, init, stream);
}

template <typename It>
using value_t = std::remove_cv_t<std::remove_reference_t<decltype(*std::declval<It>())>>;
}  // namespace shim

struct DeviceReduce {
    template <typename InputIt, typename OutputIt, typename NumItemsT, typename ReductionOp, typename T>
    static cudaError_t Reduce(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                              NumItemsT num_items, ReductionOp op, T init, cudaStream_t stream = nullptr)
    {
        return shim::whole(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, op, init, stream);
    }
    template <typename InputIt, typename OutputIt, typename NumItemsT>
    static cudaError_t Sum(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           NumItemsT num_items, cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::whole(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, shim::Plus{}, T(0), stream);
    }
    template <typename InputIt, typename OutputIt, typename NumItemsT>
    static cudaError_t Max(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           NumItemsT num_items, cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::whole(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, shim::Maximum{},
                           std::numeric_limits<T>::lowest(), stream);
    }
    template <typename InputIt, typename OutputIt, typename NumItemsT>
    static cudaError_t Min(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           NumItemsT num_items, cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::whole(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, shim::Minimum{},
                           std::numeric_limits<T>::max(), stream);
    }
};

struct DeviceSegmentedReduce {
    template <typename InputIt, typename OutputIt, typename BeginIt, typename EndIt, typename ReductionOp, typename T>
    static cudaError_t Reduce(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                              long long num_segments, BeginIt d_begin_offsets, EndIt d_end_offsets, ReductionOp op,
                              T init, cudaStream_t stream = nullptr)
    {
        static_assert(std::is_same_v<BeginIt, EndIt>, "the shim takes begin and end offsets of one type");
        return shim::segmented(d_temp_storage, temp_storage_bytes, d_in, d_out, num_segments, d_begin_offsets,
                               d_end_offsets, op, init, stream);
    }
    template <typename InputIt, typename OutputIt, typename OffsetIt>
    static cudaError_t Sum(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           long long num_segments, OffsetIt d_begin_offsets, OffsetIt d_end_offsets,
                           cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::segmented(d_temp_storage, temp_storage_bytes, d_in, d_out, num_segments, d_begin_offsets,
                               d_end_offsets, shim::Plus{}, T(0), stream);
    }
    template <typename InputIt, typename OutputIt, typename OffsetIt>
    static cudaError_t Max(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           long long num_segments, OffsetIt d_begin_offsets, OffsetIt d_end_offsets,
                           cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::segmented(d_temp_storage, temp_storage_bytes, d_in, d_out, num_segments, d_begin_offsets,
                               d_end_offsets, shim::Maximum{}, std::numeric_limits<T>::lowest(), stream);
    }
    template <typename InputIt, typename OutputIt, typename OffsetIt>
    static cudaError_t Min(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                           long long num_segments, OffsetIt d_begin_offsets, OffsetIt d_end_offsets,
                           cudaStream_t stream = nullptr)
    {
        using T = shim::value_t<InputIt>;
        return shim::segmented(d_temp_storage, temp_storage_bytes, d_in, d_out, num_segments, d_begin_offsets,
                               d_end_offsets, shim::Minimum{}, std::numeric_limits<T>::max(), stream);
    }
};

}  // namespace cub
