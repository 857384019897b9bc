// The CUDA runtime and cuBLAS as seen by kdfuse's host code and kernels: the real libraries in the
// CUDA build, the SIMT backend's emulation in the SIMT build (KDFUSE_SIMT defined by the build).
#pragma once

#if defined(KDFUSE_SIMT)
#include <kdfuse/simt/cublas.h>
#include <kdfuse/simt/runtime.h>
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif
