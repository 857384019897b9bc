// SIMT-backend checks shared by the per-loss tests: the work one C API call issued (from the backend's
// counters) and the same call repeated under several fiber schedules to prove bitwise determinism.
#pragma once

#include <kdfuse/simt/runtime.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace kdftest {

// Since the last kdfuse::simt::reset_counters(): exactly `kernels` kernel launches and `gemms` cuBLAS calls,
// nothing issued on the legacy default stream and no synchronisation (the API's stream contract).
inline void expect_call_work(uint64_t kernels, uint64_t gemms)
{
    const auto c = kdfuse::simt::counters();
    EXPECT_EQ(c.kernel_launches, kernels) << "kernel launches";
    EXPECT_EQ(c.cublas_calls, gemms) << "cuBLAS calls";
    EXPECT_EQ(c.null_stream_ops, 0u) << "work on stream 0";
    EXPECT_EQ(c.synchronizations, 0u) << "synchronisations";
}

// A macro, so a failure points at the test's line.
#define EXPECT_CALL_WORK(kernels, gemms)                                       \
    do {                                                                       \
        SCOPED_TRACE("EXPECT_CALL_WORK(" #kernels ", " #gemms ")");            \
        kdftest::expect_call_work((kernels), (gemms));                         \
    } while (0)

using ScheduleRun = std::pair<kdfuse::simt::Schedule, uint64_t>;  // a schedule and its random seed

// The default set: forward, reverse and one random order.
inline const std::initializer_list<ScheduleRun> kEverySchedule = {
    {kdfuse::simt::Schedule::Forward, 1}, {kdfuse::simt::Schedule::Reverse, 1}, {kdfuse::simt::Schedule::Random, 3}};

// Runs `body` once per schedule in `runs`, the counters reset before each; stops at a fatal failure in `body`
// (an ASSERT_*) and restores the process's schedule in any case.
template <typename Body>
void for_each_schedule(Body&& body, std::initializer_list<ScheduleRun> runs = kEverySchedule)
{
    struct Restore {
        kdfuse::simt::Schedule saved = kdfuse::simt::schedule();
        ~Restore() { kdfuse::simt::set_schedule(saved, 1); }
    } restore;
    for (const auto& [schedule, seed] : runs) {
        kdfuse::simt::set_schedule(schedule, seed);
        kdfuse::simt::reset_counters();
        body();
        if (::testing::Test::HasFatalFailure()) return;
    }
}

// The host copies of several outputs, one after the other (one vector to compare bitwise across runs).
inline std::vector<float> concat(std::initializer_list<std::vector<float>> parts)
{
    std::vector<float> all;
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
}

}  // namespace kdftest
