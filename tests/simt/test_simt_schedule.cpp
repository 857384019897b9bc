// Schedule fuzzing: correct kernels give bit-identical results under every schedule; racy kernels
// (a missing barrier) give wrong results under at least one schedule, so the test suite - which runs
// under forward, reverse and random schedules - catches them.
#include "simt_expect.h"

#include "../../kernels/common/portability.cuh"
#include "../common/device_test.h"
#include "selftest_kernels.h"

#include <cstring>
#include <functional>
#include <numeric>

namespace {

using kdftest::DeviceBuffer;
using kdftest::uniform;
using kdfuse::simt::Schedule;

constexpr int kThreads = 256;

// Tree sum in shared memory WITHOUT the barrier between levels: thread t reads s[t + stride] before
// its owner may have written it. Reverse order happens to compute the right sum, forward does not.
__global__ void racy_tree_sum(const float* x, float* out)
{
    __shared__ float s[kThreads];
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2)
        if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    if (threadIdx.x == 0) out[0] = s[0];
}

__global__ void correct_tree_sum(const float* x, float* out)
{
    __shared__ float s[kThreads];
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}

// TempStorage reused for other data without the barrier CUB requires: threads overwrite the warp
// aggregates before thread 0 has folded them. Forward order hides it (thread 0 folds first).
union ReduceOrStage {
    cub::BlockReduce<float, kThreads>::TempStorage reduce;
    float stage[kThreads];
};

__global__ void racy_tempstorage_reuse(const float* x, float* out)
{
    __shared__ ReduceOrStage smem;
    const float total = cub::BlockReduce<float, kThreads>(smem.reduce).Sum(x[threadIdx.x]);
    smem.stage[threadIdx.x] = 2.0f * x[threadIdx.x];
    if (threadIdx.x == 0) {
        out[0] = total;
        out[1] = smem.stage[0];
    }
}

__global__ void correct_tempstorage_reuse(const float* x, float* out)
{
    __shared__ ReduceOrStage smem;
    const float total = cub::BlockReduce<float, kThreads>(smem.reduce).Sum(x[threadIdx.x]);
    __syncthreads();
    smem.stage[threadIdx.x] = 2.0f * x[threadIdx.x];
    if (threadIdx.x == 0) {
        out[0] = total;
        out[1] = smem.stage[0];
    }
}

struct ScheduleCase {
    Schedule schedule;
    uint64_t seed;
    const char* name;
};
const ScheduleCase kSchedules[] = {
    {Schedule::Forward, 1, "forward"}, {Schedule::Reverse, 1, "reverse"}, {Schedule::Random, 7, "random:7"},
    {Schedule::Random, 12345, "random:12345"}, {Schedule::Random, 99, "random:99"},
};

// Runs `body` under every schedule and returns the output bytes of each run; restores the schedule.
std::vector<std::vector<float>> under_all_schedules(const std::function<std::vector<float>()>& body)
{
    const Schedule saved = kdfuse::simt::schedule();
    std::vector<std::vector<float>> results;
    for (const auto& c : kSchedules) {
        kdfuse::simt::set_schedule(c.schedule, c.seed);
        results.push_back(body());
    }
    kdfuse::simt::set_schedule(saved, 1);
    return results;
}

template <auto Kernel>
std::vector<float> run2(const std::vector<float>& x)
{
    DeviceBuffer<float> dx(x), dout(2);
    EXPECT_EQ(cudaMemset(dout.get(), 0, 2 * sizeof(float)), cudaSuccess);
    EXPECT_EQ(kdf::launch<Kernel>({dim3(1), dim3(kThreads)}, dx.get(), dout.get()), cudaSuccess);
    return dout.download();
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(SimtSchedule, RacyTreeSumIsCaught)
{
    std::vector<float> x(kThreads);
    std::iota(x.begin(), x.end(), 1.0f);  // exact sum 32896
    auto results = under_all_schedules([&] { return run2<racy_tree_sum>(x); });
    int wrong = 0;
    for (size_t i = 0; i < results.size(); ++i) wrong += results[i][0] != 32896.0f;
    EXPECT_GT(wrong, 0) << "no schedule exposed the missing barrier";
    EXPECT_EQ(results[1][0], 32896.0f) << "reverse order is expected to hide this race";
    EXPECT_NE(results[0][0], 32896.0f) << "forward order is expected to expose this race";
}

TEST(SimtSchedule, RacyTempStorageReuseIsCaught)
{
    auto x = uniform(kThreads, 5);
    auto reference = under_all_schedules([&] { return run2<correct_tempstorage_reuse>(x); });
    auto results = under_all_schedules([&] { return run2<racy_tempstorage_reuse>(x); });
    int wrong = 0;
    for (size_t i = 0; i < results.size(); ++i) wrong += !bit_identical(results[i], reference[0]);
    EXPECT_GT(wrong, 0) << "no schedule exposed the TempStorage reuse race";
    EXPECT_TRUE(bit_identical(results[0], reference[0])) << "forward order is expected to hide this race";
    EXPECT_FALSE(bit_identical(results[1], reference[0])) << "reverse order is expected to expose this race";
}

TEST(SimtSchedule, CorrectKernelsAreBitIdenticalUnderAllSchedules)
{
    const std::vector<float> values = uniform(kThreads, 11, -1e3f, 1e3f);
    for (const auto& results : {under_all_schedules([&] { return run2<correct_tree_sum>(values); }),
                                under_all_schedules([&] { return run2<correct_tempstorage_reuse>(values); })})
        for (size_t i = 1; i < results.size(); ++i)
            EXPECT_TRUE(bit_identical(results[i], results[0])) << "schedule " << kSchedules[i].name;
    // The portability self-test kernels too (block reduce, transpose, device reduce).
    auto x2 = uniform(3 * 200, 3, -50.0f, 50.0f);
    auto sums = under_all_schedules([&] {
        DeviceBuffer<float> dx(x2), dout(3);
        EXPECT_EQ(selftest::block_sum(dx.get(), dout.get(), 200, 3, nullptr), cudaSuccess);
        return dout.download();
    });
    auto big = uniform(5000, 9);
    auto totals = under_all_schedules([&] {
        DeviceBuffer<float> dx(big), dout(1);
        size_t bytes = 0;
        EXPECT_EQ(selftest::device_sum(nullptr, bytes, dx.get(), dout.get(), 5000, nullptr), cudaSuccess);
        DeviceBuffer<unsigned char> temp(bytes);
        EXPECT_EQ(selftest::device_sum(temp.get(), bytes, dx.get(), dout.get(), 5000, nullptr), cudaSuccess);
        return dout.download();
    });
    for (size_t i = 1; i < sums.size(); ++i) {
        EXPECT_TRUE(bit_identical(sums[i], sums[0])) << "schedule " << kSchedules[i].name;
        EXPECT_TRUE(bit_identical(totals[i], totals[0])) << "schedule " << kSchedules[i].name;
    }
}

TEST(SimtSchedule, RandomScheduleIsReproducibleForASeed)
{
    // An order-dependent kernel (the racy one) gives the same answer for the same seed.
    std::vector<float> x(kThreads);
    std::iota(x.begin(), x.end(), 1.0f);
    const Schedule saved = kdfuse::simt::schedule();
    kdfuse::simt::set_schedule(Schedule::Random, 4242);
    auto first = run2<racy_tree_sum>(x);
    kdfuse::simt::set_schedule(Schedule::Random, 4242);
    auto second = run2<racy_tree_sum>(x);
    kdfuse::simt::set_schedule(saved, 1);
    EXPECT_TRUE(bit_identical(first, second));
}

TEST(SimtSchedule, ScheduleValuesAreParsedStrictly)
{
    Schedule schedule;
    uint64_t seed = 0;
    std::string error;
    const auto ok = [&](const char* text, Schedule want, uint64_t want_seed) {
        SCOPED_TRACE(text ? text : "NULL");
        EXPECT_TRUE(kdfuse::simt::parse_schedule(text, schedule, seed, error));
        EXPECT_EQ(schedule, want);
        EXPECT_EQ(seed, want_seed);
        EXPECT_EQ(error, "");
    };
    ok(nullptr, Schedule::Forward, 1);
    ok("", Schedule::Forward, 1);
    ok("forward", Schedule::Forward, 1);
    ok("reverse", Schedule::Reverse, 1);
    ok("random", Schedule::Random, 1);
    ok("random:0", Schedule::Random, 0);
    ok("random:18446744073709551615", Schedule::Random, UINT64_MAX);
    for (const char* bad : {"foo", "random:", "random:abc", "random:12x", "random:-3", "random: 5", "random:18446744073709551616",
                            "Reverse", "randomx", "forward "}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(kdfuse::simt::parse_schedule(bad, schedule, seed, error));
        EXPECT_NE(error.find(std::string("KDFUSE_SIMT_SCHEDULE='") + bad + "'"), std::string::npos) << error;
    }
}

}  // namespace
