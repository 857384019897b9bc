// The workspace contract of every entry point (kdfuse.h: "a device workspace of at least that many bytes,
// 16-byte aligned"): a workspace that starts 16 bytes past a 256-byte boundary works and gives the same outputs,
// bit for bit, as a 256-byte aligned one. The GEMM losses hand a slice of it to cuBLAS, which refuses a workspace
// not aligned to 256 bytes (CUBLAS_STATUS_INVALID_VALUE; the SIMT cuBLAS shim refuses it too), so the library must
// align that slice itself.
#include "common/entry_points.h"
#include "common/loss_test.h"

#include <memory>

namespace {

using kdftest::Buffer;
using kdftest::Entry;
using kdftest::Pointers;

class Workspace : public kdftest::LossTest, protected kdftest::DeviceAllocations {
protected:

    // Runs `e` on buffers holding `images`, the workspace `offset` bytes past a 256-byte boundary; returns the
    // written buffers' contents (the workspace excepted), or nothing when the call fails.
    std::vector<std::vector<unsigned char>> run(const Entry& e, const std::vector<std::vector<unsigned char>>& images,
                                                size_t offset)
    {
        const int ws = e.workspace_index();
        Pointers p;
        for (size_t i = 0; i < e.buffers.size(); ++i) {
            const Buffer& b = e.buffers[i];
            if (!b.present || b.bytes == 0) p.push_back(nullptr);
            else if (static_cast<int>(i) == ws) p.push_back(alloc(b.bytes + offset) + offset);
            else p.push_back(alloc(b.bytes, images[i]));
        }
        const kdfStatus_t status = e.call(handle, p, ws < 0 ? 0 : e.buffers[ws].bytes, 1.0f, stream);
        EXPECT_EQ(status, KDF_STATUS_SUCCESS) << "workspace at offset " << offset << ": " << kdfGetLastErrorString();
        std::vector<std::vector<unsigned char>> out;
        if (status != KDF_STATUS_SUCCESS) return out;
        for (size_t i = 0; i < e.buffers.size(); ++i)
            if (e.buffers[i].written && static_cast<int>(i) != ws && p[i] != nullptr) {
                std::vector<unsigned char> bytes(e.buffers[i].bytes);
                EXPECT_EQ(cudaMemcpy(bytes.data(), p[i], bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
                out.push_back(std::move(bytes));
            }
        return out;
    }
};

// The same bytes out: kdfuse's kernels do not depend on the workspace's address. (The GEMM-based losses' cuBLAS
// calls could on a GPU, where cuBLAS may pick another algorithm for another operand alignment; the SIMT cuBLAS
// does not.)
TEST_F(Workspace, SixteenByteAlignedWorkspaceWorksForEveryEntryPoint)
{
    for (const uint64_t seed : {1, 2, 3}) {
        kdftest::Rng rng(seed);
        for (const Entry& e : kdftest::entry_points(rng, false)) {
            const int ws = e.workspace_index();
            if (ws < 0 || e.buffers[ws].bytes == 0) continue;
            SCOPED_TRACE(e.name + ", shapes of seed " + std::to_string(seed));
            std::vector<std::vector<unsigned char>> images;
            for (const Buffer& b : e.buffers) images.push_back(b.present ? kdftest::host_values(b, rng)
                                                                         : std::vector<unsigned char>{});
            const auto aligned = run(e, images, 0), shifted = run(e, images, 16);
            ASSERT_EQ(aligned.size(), shifted.size());
            for (size_t i = 0; i < aligned.size(); ++i) EXPECT_EQ(aligned[i], shifted[i]) << "output " << i;
        }
    }
}

}  // namespace
