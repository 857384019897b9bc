// The student/teacher pair shared by AT and FT (host/at.cpp, host/ft.cpp): FT compares AT's attention maps,
// so both take the same pair rules, workspace and kernel arguments.
#pragma once

#include "../kernels/at.h"
#include "call.h"

namespace kdf::host {

// Valid maps with the same n, one at least as large as the other in both h and w, and launch geometry
// this build supports.
Checker& check_attention_pair(Checker& check, const kdfFeatureMap_t& s, const kdfFeatureMap_t& t);

// The workspace of an AT or FT call: a function of the two maps alone.
size_t attention_workspace_bytes(const kdfFeatureMap_t& s, const kdfFeatureMap_t& t);

// The kernel arguments of an AT or FT call on checked inputs: `p` the power of the maps (AT: p, FT: p1), `p2`
// the exponent of the difference (FT only; AT passes 2).
kdf::kernels::AttentionArgs attention_args(const kdfFeatureMap_t& s, const kdfFeatureMap_t& t, float p, float p2, float weight,
                                           const StudentTeacherIO& io, int accumulate);

}  // namespace kdf::host
