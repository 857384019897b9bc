// Measured global-memory traffic (kdfuse::simt::traffic) of the instrumented build (libkdfuse_sim_traffic, and
// the self-test kernels compiled with the same instrumentation into this executable). The numbers pinned here are
// derived from the kernels' code, not copied from a run: a change in any of them is a change in what the kernels
// move, to be explained.
#include <kdfuse/kdfuse.h>

#include "common/device_test.h"
#include "common/loss_test.h"
#include "simt/selftest_kernels.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using kdftest::DeviceBuffer;
using kdfuse::simt::LaunchTraffic;

constexpr int kFloat = 4;

// Records one call's traffic: recording on, counters reset, off again afterwards.
class Traffic : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(kdfuse::simt::traffic_instrumented()) << "this executable must link the instrumented build";
        ASSERT_EQ(kdfCreate(&handle), KDF_STATUS_SUCCESS);
        ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
        kdfuse::simt::reset_counters();
        kdfuse::simt::set_traffic_recording(true);
    }
    void TearDown() override
    {
        kdfuse::simt::set_traffic_recording(false);
        EXPECT_EQ(kdfDestroy(handle), KDF_STATUS_SUCCESS);
        EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    }
    static std::vector<LaunchTraffic> kernels()
    {
        std::vector<LaunchTraffic> out;
        for (const LaunchTraffic& t : kdfuse::simt::traffic())
            if (t.name.find("kernel") != std::string::npos) out.push_back(t);
        return out;
    }
    static uint64_t sectors(uint64_t bytes) { return (bytes + 31) / 32; }  // of a 256-byte aligned buffer
    kdfHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
};

// An in-place update loads and stores each element: both count (AddressSanitizer's instrumentation, used before,
// checked an address once per basic block and reported the load alone).
TEST_F(Traffic, InPlaceUpdatesCountTheirLoadAndStore)
{
    const int n = 1000;
    DeviceBuffer<float> x(kdftest::uniform(n, 1));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(selftest::scale_in_place(x.get(), n, nullptr), cudaSuccess);
    const std::vector<LaunchTraffic> t = kdfuse::simt::traffic();
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0].bytes_loaded, uint64_t(n) * kFloat);
    EXPECT_EQ(t[0].bytes_stored, uint64_t(n) * kFloat);
    EXPECT_EQ(t[0].unique_bytes, uint64_t(n) * kFloat);
}

// Each element read once and written once; the shared-memory tile in between is not global traffic.
TEST_F(Traffic, TransposeMovesEachElementOnceAndSharedMemoryDoesNotCount)
{
    const int rows = 37, cols = 45;
    DeviceBuffer<float> in(kdftest::uniform(rows * cols, 1)), out(rows * cols);
    kdfuse::simt::reset_counters();  // the uploads above are copies from the host: not a launch's traffic
    ASSERT_EQ(selftest::transpose(in.get(), out.get(), rows, cols, nullptr), cudaSuccess);
    const std::vector<LaunchTraffic> t = kdfuse::simt::traffic();
    ASSERT_EQ(t.size(), 1u);
    const uint64_t bytes = uint64_t(rows) * cols * kFloat;
    EXPECT_EQ(t[0].name, "selftest::(anonymous namespace)::transpose_kernel");
    EXPECT_FALSE(t[0].modelled);
    EXPECT_EQ(t[0].bytes_loaded, bytes);
    EXPECT_EQ(t[0].bytes_stored, bytes);
    EXPECT_EQ(t[0].unique_bytes, 2 * bytes);
    EXPECT_EQ(t[0].sectors, 2 * sectors(bytes));
    EXPECT_EQ(t[0].loads_by_width[2], uint64_t(rows) * cols);  // 4-byte accesses only
    EXPECT_EQ(t[0].stores_by_width[2], uint64_t(rows) * cols);
    EXPECT_EQ(t[0].loads_by_width[0] + t[0].loads_by_width[1] + t[0].loads_by_width[3] + t[0].loads_by_width[4], 0u);
    const kdfuse::simt::Counters c = kdfuse::simt::counters();
    EXPECT_EQ(c.bytes_loaded, bytes);
    EXPECT_EQ(c.bytes_stored, bytes);
}

// KD, loss + grad_s, batch mean: rows whose two rows fit in 162 KiB of shared memory in their own type are read
// once (up to 20736 fp32 classes, 41472 bf16 ones), longer rows twice. Plus the batch-mean sum: each of the N blocks
// (one per row) stores its partial and takes a ticket (an atomic add, which the instrumentation reports as one
// 4-byte store), the last block reads the N partials, writes the loss and resets the ticket; and the 4-byte memset
// that zeroes the ticket before the launch.
TEST_F(Traffic, KDReadsRowsOnceUpToTheCacheLimitAndTwiceBeyond)
{
    struct Size {
        kdfDataType_t dtype;
        int64_t classes;
        bool cached;
    };
    for (const Size& z : {Size{KDF_DTYPE_FP32, 100, true}, Size{KDF_DTYPE_FP32, 20736, true}, Size{KDF_DTYPE_FP32, 20737, false},
                          Size{KDF_DTYPE_BF16, 41472, true}, Size{KDF_DTYPE_BF16, 41473, false}}) {
        const int64_t classes = z.classes;
        const bool bf16 = z.dtype == KDF_DTYPE_BF16;
        const uint64_t element = bf16 ? 2 : kFloat;
        SCOPED_TRACE(std::to_string(classes) + (bf16 ? " bf16" : " fp32"));
        const int64_t n = 3;
        kdfKDParams_t p = KDF_KD_PARAMS_INIT;
        p.rows = n;
        p.classes = classes;
        p.dtype = z.dtype;
        // bf16 logits: the high halves of floats (any bits do for counting bytes)
        DeviceBuffer<float> ys(kdftest::uniform(n * classes, 2)), yt(kdftest::uniform(n * classes, 3));
        DeviceBuffer<float> loss(1), gs(n * classes);
        DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfKDWorkspaceSize, p));
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfKD(handle, &p, ys.get(), yt.get(), nullptr, loss.get(), gs.get(), nullptr, nullptr, 1.0f, 0,
                        ws.get(), ws.size(), stream),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        const std::vector<LaunchTraffic> all = kdfuse::simt::traffic();
        ASSERT_EQ(all.size(), 2u);
        EXPECT_EQ(all[0].name, "cudaMemsetAsync");
        EXPECT_EQ(all[0].bytes_stored, 4u);
        const LaunchTraffic& k = all[1];
        EXPECT_EQ(k.name, "kdf::kernels::(anonymous namespace)::kd_kernel<" + std::string(classes <= 256 ? "32" : "512") +
                              (bf16 ? ", __nv_bfloat16>" : ", float>"));
        const uint64_t logits = uint64_t(n * classes) * element, reads = z.cached ? 1 : 2;
        const uint64_t sum_loads = n * kFloat, sum_stores = n * kFloat + n * 4 + 4 + 4;
        EXPECT_EQ(k.bytes_loaded, 2 * reads * logits + sum_loads);
        EXPECT_EQ(k.bytes_stored, logits + sum_stores);
        EXPECT_EQ(k.unique_bytes, 3 * logits + n * kFloat + 4 + 4);
    }
}

// FitNet, loss + grad_s: f_s and f_t read once, grad_s written once (the minimum), plus the batch sum as for KD.
// Accumulating (out = out + x) also loads every gradient element and the loss before storing them.
TEST_F(Traffic, FitNetMovesTheMinimumAndAccumulatingReadsTheOldValues)
{
    kdfFitNetParams_t p = KDF_FITNET_PARAMS_INIT;
    p.student = {2, 3, 5, 7, 0, 0};
    p.teacher = p.student;
    const int64_t count = 2 * 3 * 5 * 7;
    DeviceBuffer<float> fs(kdftest::uniform(count, 4)), ft(kdftest::uniform(count, 5)), loss(1), gs(count);
    DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfFitNetWorkspaceSize, p));
    for (const int accumulate : {0, 1}) {
        SCOPED_TRACE("accumulate " + std::to_string(accumulate));
        kdfuse::simt::reset_counters();
        ASSERT_EQ(kdfFitNet(handle, &p, fs.get(), ft.get(), loss.get(), gs.get(), nullptr, 1.0f, accumulate, ws.get(),
                            ws.size(), stream),
                  KDF_STATUS_SUCCESS);
        const std::vector<LaunchTraffic> k = kernels();
        ASSERT_EQ(k.size(), 1u);
        // 210 elements: one block, so the batch sum adds one partial (stored, read back), one ticket and its reset,
        // and the loss.
        const uint64_t bytes = uint64_t(count) * kFloat, old_values = accumulate ? bytes + 4 : 0;
        EXPECT_EQ(k[0].bytes_loaded, 2 * bytes + 4 + old_values);
        EXPECT_EQ(k[0].bytes_stored, bytes + 4 + 4 + 4 + 4);
        EXPECT_EQ(k[0].unique_bytes, 3 * bytes + 4 + 4 + 4);
    }
}

// A GEMM of the cuBLAS shim is a modelled record (its minimum traffic) and adds 2 m n k FLOPs.
TEST_F(Traffic, GemmsAreModelledRecordsWithTheirFlops)
{
    kdfSPParams_t p = KDF_SP_PARAMS_INIT;
    p.rows = 4;
    p.dim_student = 6;
    p.dim_teacher = 10;
    DeviceBuffer<float> fs(kdftest::uniform(4 * 6, 6)), ft(kdftest::uniform(4 * 10, 7)), loss(1), gs(4 * 6);
    DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfSPWorkspaceSize, p));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfSP(handle, &p, fs.get(), ft.get(), loss.get(), gs.get(), nullptr, 1.0f, 0, ws.get(), ws.size(),
                    stream),
              KDF_STATUS_SUCCESS);
    uint64_t gemms = 0;
    for (const LaunchTraffic& t : kdfuse::simt::traffic())
        if (t.name == "cublas GEMM") {
            EXPECT_TRUE(t.modelled);
            ++gemms;
        }
    EXPECT_EQ(gemms, kdfuse::simt::counters().cublas_calls);
    EXPECT_GT(kdfuse::simt::counters().gemm_flops, 0u);
}

}  // namespace

// AT (and FT, the same kernels): the map kernel reads both maps once and finishes each sample from its h*w map
// values; the gradient kernel reads f_s again (the per-sample norms are a grid-wide dependency) and each block
// its sample's G once. 2 x 64 x 32 x 32 maps: 4 gradient blocks of 16 channels per sample.
TEST_F(Traffic, ATReadsBothMapsOnceAndTheStudentAgainForItsGradient)
{
    constexpr uint64_t n = 2, c = 64, hw = 32 * 32;
    kdfATParams_t p = KDF_AT_PARAMS_INIT;
    p.student = {int64_t(n), int64_t(c), 32, 32, 0, 0};
    p.teacher = p.student;
    DeviceBuffer<float> fs(kdftest::uniform(n * c * hw, 4)), ft(kdftest::uniform(n * c * hw, 5)), loss(1), gs(n * c * hw);
    DeviceBuffer<unsigned char> ws(kdftest::workspace_size(kdfATWorkspaceSize, p));
    kdfuse::simt::reset_counters();
    ASSERT_EQ(kdfAT(handle, &p, fs.get(), ft.get(), loss.get(), gs.get(), nullptr, 1.0f, 0, ws.get(), ws.size(), stream),
              KDF_STATUS_SUCCESS);
    const std::vector<LaunchTraffic> all = kdfuse::simt::traffic(), k = kernels();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].name, "cudaMemsetAsync");
    EXPECT_EQ(all[0].bytes_stored, (n + 1) * 4) << "the sample tickets and the batch's";
    ASSERT_EQ(k.size(), 2u);
    const uint64_t S = n * c * hw * kFloat, V = n * hw * kFloat;  // a map; the v (or G) of every sample
    // Map kernel: loads f_s and f_t, and each sample's v_s and v_t three times (norms; dot and loss term; G), then
    // the N loss terms. Stores v_s, v_t and G, one ticket per block and sample (2 x 32 blocks per sample), one per
    // finished sample, the N terms and the loss.
    const uint64_t arrivals = 2 * n * hw / 32;
    EXPECT_EQ(k[0].bytes_loaded, 2 * S + 3 * 2 * V + n * kFloat);
    EXPECT_EQ(k[0].bytes_stored, 3 * V + kFloat * (arrivals + n + n + 1));
    EXPECT_EQ(k[0].unique_bytes, 2 * S + 3 * V + kFloat * ((n + 1) + n + 1));
    // Gradient kernel: f_s again and G once per block; grad_s written once.
    const uint64_t blocks = n * (c / 16);
    EXPECT_EQ(k[1].bytes_loaded, S + blocks * hw * kFloat);
    EXPECT_EQ(k[1].bytes_stored, S);
    EXPECT_EQ(k[1].unique_bytes, 2 * S + V);
}
