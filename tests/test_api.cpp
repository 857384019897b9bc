// Library-wide C API entry points of libkdfuse_sim (the same C API as libkdfuse).
#include <kdfuse/kdfuse.h>

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>

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

TEST(Api, DestroyedHandleIsRefusedWithoutReadingIt)
{
    kdfHandle_t handle = nullptr;
    ASSERT_EQ(kdfCreate(&handle), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfSetMathMode(handle, KDF_MATH_TF32), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfDestroy(handle), KDF_STATUS_SUCCESS);
    // Under AddressSanitizer a read of the freed context would abort the test here.
    kdfMathMode_t mode = KDF_MATH_FP32;
    EXPECT_EQ(kdfGetMathMode(handle, &mode), KDF_STATUS_INVALID_VALUE);
    EXPECT_NE(std::string(kdfGetLastErrorString()).find("not a live kdfHandle_t"), std::string::npos) << kdfGetLastErrorString();
    EXPECT_EQ(kdfSetDeterminism(handle, KDF_FAST), KDF_STATUS_INVALID_VALUE);
    EXPECT_EQ(kdfDestroy(handle), KDF_STATUS_INVALID_VALUE) << "a second destroy is refused, not a double free";
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = 1, p.classes = 1;
    float x = 0.0f;
    EXPECT_EQ(kdfKD(handle, &p, &x, &x, nullptr, nullptr, nullptr, nullptr, nullptr, 1.0f, 0, nullptr, 0, nullptr),
              KDF_STATUS_INVALID_VALUE);
    // A pointer that never came from kdfCreate is refused the same way.
    EXPECT_EQ(kdfGetMathMode(reinterpret_cast<kdfHandle_t>(&x), &mode), KDF_STATUS_INVALID_VALUE);
}

// A caller's thread_local object that owns a handle and releases it when its thread ends, constructed before the
// thread's first failed call (so it is destroyed after anything the library set up for that thread).
struct ThreadHandle {
    ThreadHandle() { kdfCreate(&handle); }
    ~ThreadHandle()
    {
        destroyed = kdfDestroy(handle);
        detail_after_destroy = kdfGetLastErrorString();
    }
    kdfHandle_t handle = nullptr;
    static inline kdfStatus_t destroyed = KDF_STATUS_INTERNAL_ERROR;
    static inline std::string detail_after_destroy = "unset";
};

TEST(Api, EntryPointsWorkWhileAThreadEnds)
{
    std::thread([] {
        thread_local ThreadHandle owner;
        ASSERT_NE(owner.handle, nullptr);
        size_t bytes = 0;
        EXPECT_EQ(kdfKDWorkspaceSize(nullptr, &bytes), KDF_STATUS_NULL_POINTER);
        EXPECT_STRNE(kdfGetLastErrorString(), "");
    }).join();
    // Under AddressSanitizer a write to storage the thread had already released would abort here.
    EXPECT_EQ(ThreadHandle::destroyed, KDF_STATUS_SUCCESS);
    EXPECT_EQ(ThreadHandle::detail_after_destroy, "");
}

TEST(Api, FeatureMapSizesAndStridesAreOverflowChecked)
{
    // Strides and sizes near INT64_MAX: every product is checked (the sanitizer build aborts on signed
    // overflow), and each map is refused with a detail naming it.
    const int64_t big = INT64_MAX, near = INT64_MAX / 2 + 1;
    struct Case {
        int64_t n, c, h, w, stride_n, stride_c;
    };
    for (const Case m : {Case{2, 3, 4, 4, 0, big}, Case{2, 3, 4, 4, big, 0}, Case{2, 3, 4, 4, big, near}, Case{2, 2, 4, 4, 16, near},
                         Case{big, 1, 1, 1, 0, 0}, Case{1, big, 1, 1, 0, 0}, Case{2, 2, 65536, 65536, 0, 0},
                         Case{near, 2, 1, 1, 0, 0}, Case{3, big / 4, 2, 2, 0, 0}, Case{2, 3, 4, 4, big, big / 2}}) {
        SCOPED_TRACE("n " + std::to_string(m.n) + " c " + std::to_string(m.c) + " stride_n " + std::to_string(m.stride_n) +
                     " stride_c " + std::to_string(m.stride_c));
        kdfFitNetParams_t p = KDF_FITNET_PARAMS_INIT;
        p.student = {m.n, m.c, m.h, m.w, m.stride_n, m.stride_c};
        p.teacher = p.student;
        size_t bytes = 0;
        EXPECT_EQ(kdfFitNetWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE);
        EXPECT_NE(std::string(kdfGetLastErrorString()).find("params->student"), std::string::npos) << kdfGetLastErrorString();
    }
}

TEST(Api, ZeroSampleStrideThatWouldOverlapSamplesIsRefused)
{
    // stride_n = 0 means c*h*w; with channels further apart than h*w the samples would overlap.
    kdfFitNetParams_t p = KDF_FITNET_PARAMS_INIT;
    p.student = {2, 3, 2, 2, 0, 8};
    p.teacher = p.student;
    size_t bytes = 0;
    EXPECT_EQ(kdfFitNetWorkspaceSize(&p, &bytes), KDF_STATUS_INVALID_VALUE);
    EXPECT_NE(std::string(kdfGetLastErrorString()).find("overlaps samples"), std::string::npos) << kdfGetLastErrorString();
    p.student.stride_n = 2 * 8 + 4;  // (c-1)*stride_c + h*w: the tightest non-overlapping layout
    p.teacher = p.student;
    EXPECT_EQ(kdfFitNetWorkspaceSize(&p, &bytes), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
}
