// Launcher interface of the FT kernels (internal: host/ft.cpp validates, then calls it). FT shares AT's
// attention maps, geometry, workspace and arguments (kernels/at.h); args.p is FT's p1, args.p2 its p2.
#pragma once

#include "at.h"

namespace kdf::kernels {

// Two kernels (plus a 4-byte memset of the ticket when the loss is requested).
cudaError_t ft_launch(const AttentionArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
