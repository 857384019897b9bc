// Shared memory per block: the limits the library's kernels size their dynamic shared memory by.
//
// The library runs on compute capability 8.0 and up (sm_80 and sm_90 code; sm_86, sm_89, sm_100 and sm_120 run one
// of them). A block gets 48 KiB without asking; beyond, the launcher opts in (cudaFuncSetAttribute), up to the
// device's maximum: 163 KiB on sm_80 and sm_87, 227 KiB on sm_90 and sm_100, but only 99 KiB on sm_86, sm_89 and
// sm_120. Every kernel that opts in sets the attribute to one value per kernel and device (never a per-call size:
// a call lowering it could race with another stream's launch of a larger block).
#pragma once

#include <cstddef>

namespace kdf::kernels {

// What every device gives a block without opting in.
constexpr size_t kDefaultSmemPerBlock = 48 * 1024;
// What every device the library runs on lets a block opt in to (sm_86 / sm_89 / sm_120): the bound for a kernel
// whose dynamic shared memory follows from the shapes alone (the workspace size may not depend on the device).
constexpr size_t kPortableOptinSmemPerBlock = 99 * 1024;
// The most any kernel opts in to: sm_80's maximum (sm_90's extra 64 KiB are not used yet).
constexpr size_t kMaxOptinSmemPerBlock = 163 * 1024;
// Room left for a kernel's static shared memory beside its dynamic shared memory (the largest static use of an
// opting-in kernel is 416 bytes on sm_80 / sm_90: docs/benchmarking.md's SASS table).
constexpr size_t kStaticSmemReserve = 1024;

// Bytes of dynamic shared memory a kernel may use on a device whose opt-in maximum is `device_optin` bytes
// (0 or less: not known, the default 48 KiB).
inline size_t dynamic_smem_limit(int device_optin)
{
    const size_t optin = device_optin > 0 ? static_cast<size_t>(device_optin) : kDefaultSmemPerBlock;
    return (optin < kMaxOptinSmemPerBlock ? optin : kMaxOptinSmemPerBlock) - kStaticSmemReserve;
}

// The same on every device the library runs on.
constexpr size_t kPortableDynamicSmem = kPortableOptinSmemPerBlock - kStaticSmemReserve;

}  // namespace kdf::kernels
