// The aliasing rule of every entry point (kdfuse.h, docs/api.md "Aliasing"): a buffer the call writes shares no
// byte with any other buffer of the call; buffers it only reads may overlap. For every entry point and every
// pair of its buffers of which one is written, the test places the two so that they share only a boundary
// element (the second starting inside the first's last 16 bytes, and the other way round), and expects
// KDF_STATUS_INVALID_VALUE naming both; read-only pairs placed the same way, and all buffers apart, succeed.
#include "common/entry_points.h"
#include "common/loss_test.h"

#include <memory>

namespace {

using kdftest::Buffer;
using kdftest::DeviceBuffer;
using kdftest::Entry;
using kdftest::Pointers;

class Aliasing : public kdftest::LossTest, protected kdftest::DeviceAllocations {
protected:
    // Every buffer in its own allocation (zeroed: valid indices, finite values), absent ones NULL.
    Pointers apart(const Entry& e)
    {
        Pointers b;
        for (const Buffer& x : e.buffers) b.push_back(x.present && x.bytes > 0 ? alloc(x.bytes) : nullptr);
        return b;
    }
};

// An offset inside the last 16 bytes of a `bytes`-long buffer, 16-byte aligned (every kdfuse pointer may be).
size_t tail(size_t bytes) { return (bytes - 1) / 16 * 16; }

TEST_F(Aliasing, EveryWrittenBufferMayNotTouchAnyOtherBuffer)
{
    for (const uint64_t seed : {1, 2, 3}) {
    kdftest::Rng rng(seed);
    for (const Entry& e : kdftest::entry_points(rng, false)) {
        SCOPED_TRACE(e.name + ", shapes of seed " + std::to_string(seed));
        const int ws = e.workspace_index();
        const size_t ws_bytes = ws < 0 ? 0 : e.buffers[ws].bytes;
        ASSERT_EQ(e.call(handle, apart(e), ws_bytes, 1.0f, stream), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
        for (size_t i = 0; i < e.buffers.size(); ++i)
            for (size_t j = i + 1; j < e.buffers.size(); ++j) {
                const Buffer &a = e.buffers[i], &b = e.buffers[j];
                if (!a.present || !b.present || a.bytes == 0 || b.bytes == 0) continue;
                for (const bool a_first : {true, false}) {
                    SCOPED_TRACE(std::string(a.name) + " and " + b.name + (a_first ? ", " : ", reversed ") +
                                 "sharing a boundary element");
                    Pointers p = apart(e);
                    unsigned char* both = alloc(a.bytes + b.bytes + 16);
                    p[i] = a_first ? both : both + tail(b.bytes);
                    p[j] = a_first ? both + tail(a.bytes) : both;
                    const kdfStatus_t got = e.call(handle, p, ws_bytes, 1.0f, stream);
                    if (!a.written && !b.written) {
                        EXPECT_EQ(got, KDF_STATUS_SUCCESS) << "inputs may overlap: " << kdfGetLastErrorString();
                        continue;
                    }
                    const std::string w = a.written ? a.name : b.name, o = a.written ? b.name : a.name;
                    EXPECT_STATUS(got, KDF_STATUS_INVALID_VALUE, w + " overlaps " + o);
                }
            }
    }
    }
}

TEST_F(Aliasing, OFDMarginFromBNMayRunInPlace)
{
    DeviceBuffer<float> gamma(std::vector<float>{1.0f, 2.0f, 0.5f}), beta(std::vector<float>{-1.0f, 0.5f, 0.0f});
    DeviceBuffer<float> apart_margin(3);
    ASSERT_EQ(kdfOFDMarginFromBN(handle, 3, gamma.get(), beta.get(), apart_margin.get(), stream), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfOFDMarginFromBN(handle, 3, gamma.get(), beta.get(), beta.get(), stream), KDF_STATUS_SUCCESS);
    EXPECT_EQ(beta.download(), apart_margin.download());
}

}  // namespace
