// gtest main for SIMT-backend tests: every error the emulator reports (divergent barrier, bad warp
// mask, out-of-bounds copy, bad launch configuration) fails the running test, unless the test
// expects it inside a kdftest::ExpectSimtError scope.
#include "simt_expect.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace kdftest {
namespace {
ExpectSimtError* g_expecting = nullptr;

void on_simt_error(const char* message, void*)
{
    if (g_expecting != nullptr) {
        g_expecting->record(message);
        return;
    }
    ADD_FAILURE() << "SIMT backend reported an error: " << message;
}
}  // namespace

ExpectSimtError::ExpectSimtError() { g_expecting = this; }
ExpectSimtError::~ExpectSimtError() { g_expecting = nullptr; }
void ExpectSimtError::record(const std::string& message) { messages_.push_back(message); }

}  // namespace kdftest

int main(int argc, char** argv)
{
    ::testing::InitGoogleTest(&argc, argv);
    kdfuse::simt::set_error_hook(kdftest::on_simt_error, nullptr);
    std::printf("SIMT schedule: %s\n", kdfuse::simt::schedule_name());
    return RUN_ALL_TESTS();
}
