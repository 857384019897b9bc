// Library-wide C API entry points of libkdfuse_sim (the same C API as libkdfuse).
#include <kdfuse/kdfuse.h>

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

TEST(Api, VersionMatchesHeader)
{
    EXPECT_EQ(kdfGetVersion(), KDFUSE_VERSION);
    EXPECT_EQ(KDFUSE_VERSION, KDFUSE_VERSION_MAJOR * 10000 + KDFUSE_VERSION_MINOR * 100 + KDFUSE_VERSION_PATCH);
    EXPECT_STREQ(kdfGetBackendName(), "simt");
}

TEST(Api, EveryStatusHasADistinctNameAndDescription)
{
    std::set<std::string> names;
    for (int s = KDF_STATUS_SUCCESS; s <= KDF_STATUS_INTERNAL_ERROR; ++s) {
        const auto status = static_cast<kdfStatus_t>(s);
        ASSERT_NE(kdfGetStatusName(status), nullptr);
        ASSERT_NE(kdfGetStatusString(status), nullptr);
        EXPECT_EQ(std::strncmp(kdfGetStatusName(status), "KDF_STATUS_", 11), 0);
        EXPECT_GT(std::strlen(kdfGetStatusString(status)), 0u);
        names.insert(kdfGetStatusName(status));
    }
    EXPECT_EQ(names.size(), 10u);
    EXPECT_STREQ(kdfGetStatusName(static_cast<kdfStatus_t>(1234)), "KDF_STATUS_UNKNOWN");
    EXPECT_STREQ(kdfGetLastErrorString(), "");
}
