// Host-side status helpers: every C entry point reports failures through these, so the thread-local
// detail string always names the offending argument and nothing is printed or thrown.
#pragma once

#include <kdfuse/kdfuse.h>

#include <cstring>
#include <string>

namespace kdf::host {

// The integer a C caller stored in an enum field. Read through memcpy: a C enum may hold any int, but
// loading an out-of-range value as a C++ enum is undefined behaviour (UBSan reports it).
template <typename E>
int enum_value(const E& e)
{
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

// Records `detail` as this thread's last error and returns `status`.
kdfStatus_t fail(kdfStatus_t status, std::string detail);
// Clears the last error and returns KDF_STATUS_SUCCESS.
kdfStatus_t succeed();
// This thread's last error detail ("" after a success).
const char* last_error();

}  // namespace kdf::host
