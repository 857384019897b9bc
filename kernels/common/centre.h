// The host side of common/centre.cuh (host-compilable: the launchers and the workspace size queries share it):
// the job of one centred copy and its bytes.
#pragma once

#include "grid_sum.h"

#include <cstdint>

namespace kdf {

// One matrix to centre: e (rows ld apart, dim columns) into out ((rows + mean_row) x dim, dense).
struct CentreJob {
    const float* e;
    int64_t ld, dim;
    float* out;
};

// Bytes of a centred copy of `rows` rows (plus the mean row when asked) of `dim` floats.
inline int64_t centred_bytes(int64_t rows, int64_t dim) { return round_up(rows * dim * int64_t(sizeof(float)), 256); }

}  // namespace kdf
