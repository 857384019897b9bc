// Validation of the student/teacher pair shared by AT and FT (host/at.cpp, host/ft.cpp).
#pragma once

#include "validate.h"

namespace kdf::host {

// Valid maps with the same n, one at least as large as the other in both h and w, and launch geometry
// this build supports.
Checker& check_attention_pair(Checker& check, const kdfFeatureMap_t& s, const kdfFeatureMap_t& t);

}  // namespace kdf::host
