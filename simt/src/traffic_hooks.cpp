// The callbacks of GCC's outline address-sanitizer instrumentation (-fsanitize=kernel-address with
// asan-instrumentation-with-call-threshold=0): in the libkdfuse_sim_traffic build every load and store of the
// instrumented code calls one of these with its address and width; they pass it on to the SIMT runtime
// (traffic.cpp), which keeps the accesses of a running launch to device memory. No sanitizer runtime is
// linked: these are the only definitions. This file itself is compiled without the instrumentation.
#include "state.h"

#define KDFUSE_TRAFFIC_HOOK extern "C" __attribute__((visibility("hidden")))

namespace {
using kdfuse::simt::detail::traffic_access;

// Marks the process as instrumented when the library is loaded.
[[maybe_unused]] const bool registered = (kdfuse::simt::detail::mark_traffic_instrumented(), true);
}  // namespace

#define KDFUSE_TRAFFIC_WIDTH(n)                                                                                  \
    KDFUSE_TRAFFIC_HOOK void __asan_load##n##_noabort(void* p) { traffic_access(p, n, false); }              \
    KDFUSE_TRAFFIC_HOOK void __asan_store##n##_noabort(void* p) { traffic_access(p, n, true); }
KDFUSE_TRAFFIC_WIDTH(1)
KDFUSE_TRAFFIC_WIDTH(2)
KDFUSE_TRAFFIC_WIDTH(4)
KDFUSE_TRAFFIC_WIDTH(8)
KDFUSE_TRAFFIC_WIDTH(16)
#undef KDFUSE_TRAFFIC_WIDTH

KDFUSE_TRAFFIC_HOOK void __asan_loadN_noabort(void* p, size_t n) { traffic_access(p, n, false); }
KDFUSE_TRAFFIC_HOOK void __asan_storeN_noabort(void* p, size_t n) { traffic_access(p, n, true); }
KDFUSE_TRAFFIC_HOOK void __asan_handle_no_return() {}
// Emitted around dynamic initialisation of globals (initialisation-order checking): nothing to do here.
KDFUSE_TRAFFIC_HOOK void __asan_before_dynamic_init(const char*) {}
KDFUSE_TRAFFIC_HOOK void __asan_after_dynamic_init() {}
