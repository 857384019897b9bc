// Host-side status helpers: every C entry point reports failures through these, so the thread-local
// detail string always names the offending argument and nothing is printed or thrown.
#pragma once

#include <kdfuse/kdfuse.h>

#include <string>

namespace kdf::host {

// Records `detail` as this thread's last error and returns `status`.
kdfStatus_t fail(kdfStatus_t status, std::string detail);
// Clears the last error and returns KDF_STATUS_SUCCESS.
kdfStatus_t succeed();
// This thread's last error detail ("" after a success).
const char* last_error();

}  // namespace kdf::host
