// The weak-memory check (kdfuse::simt::set_memory_check, instrumented build): every cross-block protocol of the
// library (the grid sums' tickets, CRD's Z and bank update, OFD's margin, VID's channel reduction, ...) publishes
// its stores with a fence or an atomic before another block reads them, for every entry point; and a protocol with
// its fence removed is caught.
#include "common/entry_points.h"
#include "common/loss_test.h"
#include "simt/simt_expect.h"

#include "../kernels/common/portability.cuh"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::Buffer;
using kdftest::DeviceBuffer;
using kdftest::Entry;
using kdftest::Pointers;

// The last-block sum of one value per block: each block's thread 0 stores its value, (optionally) fences, takes a
// ticket; the last block to arrive adds the values. Without the fence a GPU may show the last block stale values.
__global__ void ticketed_sum(const float* x, float* partials, unsigned* ticket, float* out, bool fence)
{
    if (threadIdx.x != 0) return;
    partials[blockIdx.x] = 2.0f * x[blockIdx.x];
    if (fence) __threadfence();
    if (atomicAdd(ticket, 1u) != gridDim.x - 1) return;
    float sum = 0.0f;
    for (unsigned b = 0; b < gridDim.x; ++b) sum += partials[b];
    *out = sum;
    *ticket = 0;
}

class WeakMemory : public kdftest::LossTest, protected kdftest::DeviceAllocations {
protected:
    void SetUp() override
    {
        LossTest::SetUp();
        ASSERT_TRUE(kdfuse::simt::traffic_instrumented()) << "this executable must link the instrumented build";
        kdfuse::simt::set_memory_check(true);
    }
    void TearDown() override
    {
        kdfuse::simt::set_memory_check(false);
        LossTest::TearDown();
    }
};

TEST_F(WeakMemory, AProtocolWithoutItsFenceIsCaught)
{
    DeviceBuffer<float> x(std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}), partials(4), out(1);
    DeviceBuffer<unsigned> ticket(std::vector<unsigned>{0});
    ASSERT_EQ(kdf::launch<ticketed_sum>({dim3(4), dim3(32)}, x.get(), partials.get(), ticket.get(), out.get(), true),
              cudaSuccess);
    EXPECT_EQ(out.download()[0], 20.0f);
    {
        kdftest::ExpectSimtError expect;
        EXPECT_EQ(kdf::launch<ticketed_sum>({dim3(4), dim3(32)}, x.get(), partials.get(), ticket.get(), out.get(), false),
                  cudaErrorLaunchFailure);
        // The last block to run (which one depends on the schedule) reads another block's partial.
        EXPECT_THAT(expect.only(), ::testing::MatchesRegex(
                                       ".*weak memory in \\(anonymous namespace\\)::ticketed_sum: block [0-3], thread 0 loads "
                                       "byte [0-9]+ of the 16-byte allocation at .* that block [0-3], thread 0 stored "
                                       "without a __threadfence\\(\\).*"));
    }
    (void)cudaGetLastError();
    // Off, the same launch is not checked.
    kdfuse::simt::set_memory_check(false);
    ASSERT_EQ(cudaMemset(ticket.get(), 0, sizeof(unsigned)), cudaSuccess);
    EXPECT_EQ(kdf::launch<ticketed_sum>({dim3(4), dim3(32)}, x.get(), partials.get(), ticket.get(), out.get(), false),
              cudaSuccess);
}

// VID's two-level sum across blocks (the entry points' random shapes fit in one block): planes reduced by 8-lane
// groups, by warps and by whole blocks, each shape spread over several blocks.
TEST_F(WeakMemory, VIDChannelSumsAcrossBlocks)
{
    const int64_t shapes[][3] = {{8, 16, 4}, {4, 6, 16}, {3, 2, 80}};  // n, c, h = w
    for (const auto& [n, c, hw] : shapes) {
        SCOPED_TRACE(std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(hw));
        kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
        p.pred = {n, c, hw, hw, 0, 0};
        p.target = p.pred;
        const size_t m = static_cast<size_t>(n * c * hw * hw);
        DeviceBuffer<float> pred(kdftest::uniform(m, 1)), target(kdftest::uniform(m, 2)), log_scale(kdftest::uniform(c, 3));
        DeviceBuffer<float> loss(1), grad_pred(m), grad_log_scale(c);
        DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfVIDWorkspaceSize, p));
        EXPECT_EQ(kdfVID(handle, &p, pred.get(), target.get(), log_scale.get(), loss.get(), grad_pred.get(), grad_log_scale.get(),
                         nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
    }
}

// AT's samples are finished by the block that completes their two maps, reading the values other blocks wrote
// (the entry points' random shapes put a sample in one block): samples across many blocks, and blocks across
// samples (h*w below the 32 positions of a block).
TEST_F(WeakMemory, ATSamplesFinishedAcrossBlocks)
{
    const int64_t shapes[][3] = {{4, 8, 16}, {5, 3, 3}, {3, 2, 7}};  // n, c, h = w
    for (const auto& [n, c, hw] : shapes) {
        SCOPED_TRACE(std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(hw));
        kdfATParams_t p = KDF_AT_PARAMS_INIT;
        p.student = {n, c, hw, hw, 0, 0};
        p.teacher = {n, c + 1, hw, hw, 0, 0};
        const size_t ms = static_cast<size_t>(n * c * hw * hw), mt = static_cast<size_t>(n * (c + 1) * hw * hw);
        DeviceBuffer<float> fs(kdftest::uniform(ms, 1)), ft(kdftest::uniform(mt, 2)), loss(1), grad(ms);
        DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfATWorkspaceSize, p));
        EXPECT_EQ(kdfAT(handle, &p, fs.get(), ft.get(), loss.get(), grad.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
    }
}

TEST_F(WeakMemory, EveryEntryPointPublishesWhatOtherBlocksRead)
{
    for (const uint64_t seed : {1, 2, 3, 4, 5}) {
        kdftest::Rng rng(seed);
        for (const Entry& e : kdftest::entry_points(rng, true)) {
            SCOPED_TRACE(e.name + ", params of seed " + std::to_string(seed));
            Pointers p;
            std::string buffers;
            for (const Buffer& b : e.buffers) {
                p.push_back(b.present && b.bytes > 0 ? alloc(b.bytes, kdftest::host_values(b, rng)) : nullptr);
                buffers += " " + b.name + "@" + std::to_string(reinterpret_cast<uintptr_t>(p.back()));
            }
            SCOPED_TRACE("buffers:" + buffers);
            const int ws = e.workspace_index();
            EXPECT_EQ(e.call(handle, p, ws < 0 ? 0 : e.buffers[ws].bytes, 1.0f, stream), KDF_STATUS_SUCCESS)
                << kdfGetLastErrorString();
        }
    }
}

}  // namespace
