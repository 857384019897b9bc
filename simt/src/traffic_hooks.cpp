// The callbacks of GCC's ThreadSanitizer instrumentation (-fsanitize=thread with
// tsan-instrument-func-entry-exit=0): in the libkdfuse_sim_traffic build every load, store and atomic operation of
// the instrumented code calls one of these with its address and width; they pass it on to the SIMT runtime
// (traffic.cpp), which keeps the accesses of a running launch to device memory. No sanitizer runtime is linked:
// these are the only definitions. This file itself is compiled without the instrumentation.
//
// Why ThreadSanitizer's callbacks and not AddressSanitizer's: ASan checks an address once per basic block, so the
// store of an in-place update (x = f(x)) reported nothing beyond the load. TSan reports every read and write.
//
// Atomics: the instrumented code calls __tsan_atomicN_<op> instead of executing the atomic instruction, so these
// perform it (sequentially consistent, whatever order was asked: at least as strong). An atomic read-modify-write
// counts as one store, an atomic load as a load.
#include "state.h"

#include <cstdint>

#define KDFUSE_TRAFFIC_HOOK extern "C" __attribute__((visibility("hidden")))

namespace {
using kdfuse::simt::detail::traffic_access;

// Marks the process as instrumented when the library is loaded.
[[maybe_unused]] const bool registered = (kdfuse::simt::detail::mark_traffic_instrumented(), true);

template <typename T>
T* plain(volatile T* a)
{
    return const_cast<T*>(a);
}
}  // namespace

// Plain accesses: aligned, unaligned, and ranges of other sizes (e.g. a 12-byte struct copy).
#define KDFUSE_TRAFFIC_WIDTH(n)                                                                                  \
    KDFUSE_TRAFFIC_HOOK void __tsan_read##n(void* p) { traffic_access(p, n, false); }                          \
    KDFUSE_TRAFFIC_HOOK void __tsan_write##n(void* p) { traffic_access(p, n, true); }                          \
    KDFUSE_TRAFFIC_HOOK void __tsan_unaligned_read##n(void* p) { traffic_access(p, n, false); }                \
    KDFUSE_TRAFFIC_HOOK void __tsan_unaligned_write##n(void* p) { traffic_access(p, n, true); }
KDFUSE_TRAFFIC_WIDTH(1)
KDFUSE_TRAFFIC_WIDTH(2)
KDFUSE_TRAFFIC_WIDTH(4)
KDFUSE_TRAFFIC_WIDTH(8)
KDFUSE_TRAFFIC_WIDTH(16)
#undef KDFUSE_TRAFFIC_WIDTH
KDFUSE_TRAFFIC_HOOK void __tsan_read_range(void* p, unsigned long n) { traffic_access(p, n, false); }
KDFUSE_TRAFFIC_HOOK void __tsan_write_range(void* p, unsigned long n) { traffic_access(p, n, true); }

// What the instrumentation emits besides accesses: the module constructor's call, and virtual-table pointer
// updates and reads (host code's classes): nothing to do.
KDFUSE_TRAFFIC_HOOK void __tsan_init() {}
KDFUSE_TRAFFIC_HOOK void __tsan_vptr_update(void**, void*) {}
KDFUSE_TRAFFIC_HOOK void __tsan_vptr_read(void**) {}

// Atomics of 1, 2, 4 and 8 bytes (T), with the builtins' semantics; `mo` (the memory order) is not needed.
#define KDFUSE_TRAFFIC_ATOMIC(n, T)                                                                              \
    KDFUSE_TRAFFIC_HOOK T __tsan_atomic##n##_load(const volatile T* a, int)                                    \
    {                                                                                                          \
        traffic_access(const_cast<const T*>(a), sizeof(T), false);                                             \
        return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                           \
    }                                                                                                          \
    KDFUSE_TRAFFIC_HOOK void __tsan_atomic##n##_store(volatile T* a, T v, int)                                 \
    {                                                                                                          \
        traffic_access(plain(a), sizeof(T), true);                                                             \
        __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                              \
    }                                                                                                          \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, exchange, __atomic_exchange_n)                                             \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_add, __atomic_fetch_add)                                             \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_sub, __atomic_fetch_sub)                                             \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_and, __atomic_fetch_and)                                             \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_or, __atomic_fetch_or)                                               \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_xor, __atomic_fetch_xor)                                             \
    KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, fetch_nand, __atomic_fetch_nand)                                           \
    KDFUSE_TRAFFIC_HOOK int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* expected, T v, int, int) \
    {                                                                                                          \
        traffic_access(plain(a), sizeof(T), true);                                                             \
        return __atomic_compare_exchange_n(a, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);         \
    }                                                                                                          \
    /* a strong exchange is a valid weak one */                                                                \
    KDFUSE_TRAFFIC_HOOK int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* expected, T v, int mo, int f) \
    {                                                                                                          \
        return __tsan_atomic##n##_compare_exchange_strong(a, expected, v, mo, f);                             \
    }                                                                                                          \
    KDFUSE_TRAFFIC_HOOK T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T expected, T v, int, int)    \
    {                                                                                                          \
        traffic_access(plain(a), sizeof(T), true);                                                             \
        __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);               \
        return expected;                                                                                       \
    }
#define KDFUSE_TRAFFIC_ATOMIC_RMW(n, T, op, builtin)                                                           \
    KDFUSE_TRAFFIC_HOOK T __tsan_atomic##n##_##op(volatile T* a, T v, int)                                     \
    {                                                                                                          \
        traffic_access(plain(a), sizeof(T), true);                                                             \
        return builtin(a, v, __ATOMIC_SEQ_CST);                                                                \
    }
KDFUSE_TRAFFIC_ATOMIC(8, int8_t)
KDFUSE_TRAFFIC_ATOMIC(16, int16_t)
KDFUSE_TRAFFIC_ATOMIC(32, int32_t)
KDFUSE_TRAFFIC_ATOMIC(64, int64_t)
#undef KDFUSE_TRAFFIC_ATOMIC_RMW
#undef KDFUSE_TRAFFIC_ATOMIC

KDFUSE_TRAFFIC_HOOK void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
KDFUSE_TRAFFIC_HOOK void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
