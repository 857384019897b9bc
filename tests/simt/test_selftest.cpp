// Kernels of the portability layer against plain loops. Built twice: against the SIMT backend (runs
// everywhere) and against the real CUDA runtime (runs where a GPU is present, skipped otherwise).
#include "selftest_kernels.h"

#include "../common/device_test.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace {

using kdftest::DeviceBuffer;
using kdftest::DeviceTest;
using kdftest::uniform;

// CUB's order for BLOCK_REDUCE_WARP_REDUCTIONS: shuffle-down tree inside each warp (offsets 1, 2, 4,
// ..., a lane adds its peer only if the peer is a valid item), then warp aggregates folded in order.
float cub_order_block_sum(const float* x, int threads, int valid)
{
    std::vector<float> lanes(x, x + threads);
    float total = 0.0f;
    for (int w = 0; w * 32 < threads; ++w) {
        std::vector<float> v(lanes.begin() + w * 32, lanes.begin() + std::min(threads, w * 32 + 32));
        const int last = valid - w * 32 - 1;
        for (int offset = 1; offset < 32; offset *= 2) {
            std::vector<float> next = v;
            for (int l = 0; l < static_cast<int>(v.size()); ++l)
                if (l + offset <= last && l + offset < static_cast<int>(v.size())) next[l] = v[l] + v[l + offset];
            v = next;
        }
        if (w == 0) total = v[0];
        else if (w * 32 < valid) total = total + v[0];
    }
    return total;
}

TEST_F(DeviceTest, BlockReduceSumMatchesCubOrderBitwise)
{
    for (int per_block : {1, 31, 32, 33, 200, 256}) {
        const int blocks = 5;
        auto x = uniform(size_t(per_block) * blocks, per_block, -100.0f, 100.0f);
        DeviceBuffer<float> dx(x), dout(blocks);
        ASSERT_EQ(selftest::block_sum(dx.get(), dout.get(), per_block, blocks, nullptr), cudaSuccess);
        auto out = dout.download();
        for (int b = 0; b < blocks; ++b) {
            std::vector<float> padded(256, 0.0f);
            std::copy_n(x.begin() + size_t(b) * per_block, per_block, padded.begin());
            const float expected = cub_order_block_sum(padded.data(), 256, per_block);
            EXPECT_EQ(std::memcmp(&out[b], &expected, sizeof(float)), 0)
                << "per_block " << per_block << " block " << b << ": " << out[b] << " vs " << expected;
            const double loop = std::accumulate(padded.begin(), padded.begin() + per_block, 0.0);
            EXPECT_NEAR(out[b], loop, 1e-3);
        }
    }
}

TEST_F(DeviceTest, BlockReduceMaxFullTile)
{
    const int blocks = 3;
    auto x = uniform(256 * blocks, 7, -5.0f, 5.0f);
    x[256 + 255] = 9.0f;  // the maximum sits in the last lane of the last warp of block 1
    DeviceBuffer<float> dx(x), dout(blocks);
    ASSERT_EQ(selftest::block_max(dx.get(), dout.get(), blocks, nullptr), cudaSuccess);
    auto out = dout.download();
    for (int b = 0; b < blocks; ++b)
        EXPECT_EQ(out[b], *std::max_element(x.begin() + 256 * b, x.begin() + 256 * (b + 1)));
    EXPECT_EQ(out[1], 9.0f);
}

TEST_F(DeviceTest, ShufflesInsideWarpZeroOnly)
{
    std::vector<float> x(128);
    std::iota(x.begin(), x.end(), 1.0f);  // exact in fp32: sum = 8256
    DeviceBuffer<float> dx(x), dout(1);
    ASSERT_EQ(selftest::warp0_sum(dx.get(), dout.get(), nullptr), cudaSuccess);
    EXPECT_EQ(dout.download()[0], 8256.0f);
}

TEST_F(DeviceTest, LogicalWarpReducePartial)
{
    for (int valid : {1, 5, 16}) {
        std::vector<float> x(96);
        std::iota(x.begin(), x.end(), 0.0f);
        DeviceBuffer<float> dx(x), dout(6);
        ASSERT_EQ(selftest::warp16_sum(dx.get(), dout.get(), valid, nullptr), cudaSuccess);
        auto out = dout.download();
        for (int g = 0; g < 6; ++g) {
            float expected = 0.0f;
            for (int l = 0; l < valid; ++l) expected += x[g * 16 + l];
            EXPECT_EQ(out[g], expected) << "valid " << valid << " logical warp " << g;
        }
    }
}

TEST_F(DeviceTest, DynamicSharedMemory)
{
    for (int n : {1, 100, 4096}) {
        auto x = uniform(n, n);
        DeviceBuffer<float> dx(x), dy(n);
        ASSERT_EQ(selftest::reverse_dynamic(dx.get(), dy.get(), n, 96, nullptr), cudaSuccess);
        auto y = dy.download();
        std::reverse(x.begin(), x.end());
        EXPECT_EQ(y, x) << "n = " << n;
    }
}

TEST_F(DeviceTest, TiledTransposeOddShapes)
{
    for (auto [rows, cols] : {std::pair{1, 1}, {33, 65}, {70, 5}, {64, 96}}) {
        auto in = uniform(size_t(rows) * cols, rows * 1000 + cols);
        DeviceBuffer<float> din(in), dout(size_t(rows) * cols);
        ASSERT_EQ(selftest::transpose(din.get(), dout.get(), rows, cols, nullptr), cudaSuccess);
        auto out = dout.download();
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < cols; ++c)
                ASSERT_EQ(out[size_t(c) * rows + r], in[size_t(r) * cols + c]) << rows << "x" << cols;
    }
}

TEST_F(DeviceTest, WarpVotes)
{
    std::vector<float> x(64, -1.0f);
    x[3] = 1.0f;
    x[31] = 2.0f;                                       // warp 0: lanes 3 and 31
    std::fill(x.begin() + 32, x.end(), 1.0f);           // warp 1: every lane
    DeviceBuffer<float> dx(x);
    DeviceBuffer<unsigned> dout(6);
    ASSERT_EQ(selftest::warp_votes(dx.get(), dout.get(), 64, nullptr), cudaSuccess);
    auto out = dout.download();
    EXPECT_EQ(out[0], (1u << 3) | (1u << 31));
    EXPECT_EQ(out[1], 1u);
    EXPECT_EQ(out[2], 0u);
    EXPECT_EQ(out[3], 0xffffffffu);
    EXPECT_EQ(out[4], 1u);
    EXPECT_EQ(out[5], 1u);
}

TEST_F(DeviceTest, DeviceReduceTwoPhase)
{
    for (int n : {1, 255, 256, 1000, 70001}) {
        auto x = uniform(n, n, 0.0f, 1.0f);
        x[n / 2] = 3.5f;
        DeviceBuffer<float> dx(x), dout(2);
        size_t bytes = 0;
        ASSERT_EQ(selftest::device_sum(nullptr, bytes, dx.get(), dout.get(), n, nullptr), cudaSuccess);
        ASSERT_GT(bytes, 0u);
        DeviceBuffer<unsigned char> temp(bytes);
        ASSERT_EQ(selftest::device_sum(temp.get(), bytes, dx.get(), dout.get(), n, nullptr), cudaSuccess);
        ASSERT_EQ(selftest::device_max(nullptr, bytes, dx.get(), dout.get() + 1, n, nullptr), cudaSuccess);
        DeviceBuffer<unsigned char> temp2(bytes);
        ASSERT_EQ(selftest::device_max(temp2.get(), bytes, dx.get(), dout.get() + 1, n, nullptr), cudaSuccess);
        auto out = dout.download();
        const double loop = std::accumulate(x.begin(), x.end(), 0.0);
        EXPECT_NEAR(out[0], loop, 1e-5 * n) << "n = " << n;
        EXPECT_EQ(out[1], 3.5f);
    }
}

TEST_F(DeviceTest, SegmentedReduceWithEmptySegments)
{
    auto x = uniform(1000, 3);
    const std::vector<int> begin = {0, 10, 10, 500, 999};
    const std::vector<int> end = {10, 10, 500, 999, 1000};
    DeviceBuffer<float> dx(x), dout(5);
    DeviceBuffer<int> db(begin), de(end);
    size_t bytes = 0;
    ASSERT_EQ(selftest::segmented_sum(nullptr, bytes, dx.get(), dout.get(), 5, db.get(), de.get(), nullptr), cudaSuccess);
    DeviceBuffer<unsigned char> temp(bytes);
    ASSERT_EQ(selftest::segmented_sum(temp.get(), bytes, dx.get(), dout.get(), 5, db.get(), de.get(), nullptr),
              cudaSuccess);
    auto out = dout.download();
    for (int s = 0; s < 5; ++s) {
        const double loop = std::accumulate(x.begin() + begin[s], x.begin() + end[s], 0.0);
        EXPECT_NEAR(out[s], loop, 1e-4) << "segment " << s;
    }
    EXPECT_EQ(out[1], 0.0f);
}

}  // namespace
