/* kdfuse: fused forward+backward CUDA kernels for knowledge-distillation losses.
 *
 * Plain C API, identical in the CUDA library (libkdfuse) and the CPU SIMT build (libkdfuse_sim).
 * Conventions (docs/api.md): every call returns a kdfStatus_t; the library never prints, exits or
 * throws across this boundary; the detail of the last failure on the calling thread is available
 * from kdfGetLastErrorString(). */
#ifndef KDFUSE_KDFUSE_H
#define KDFUSE_KDFUSE_H

#include <stddef.h>
#include <stdint.h>

#define KDFUSE_VERSION_MAJOR 0
#define KDFUSE_VERSION_MINOR 1
#define KDFUSE_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as returned by kdfGetVersion(). */
#define KDFUSE_VERSION (KDFUSE_VERSION_MAJOR * 10000 + KDFUSE_VERSION_MINOR * 100 + KDFUSE_VERSION_PATCH)

#if defined(_WIN32)
#define KDFUSE_API __declspec(dllexport)
#else
#define KDFUSE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Same type as cudaStream_t, without including the CUDA headers. NULL is the legacy default stream. */
typedef struct CUstream_st* kdfStream_t;

typedef enum kdfStatus_t {
    KDF_STATUS_SUCCESS = 0,
    KDF_STATUS_INVALID_VALUE = 1,      /* an argument is out of its valid range */
    KDF_STATUS_NULL_POINTER = 2,       /* a required pointer is NULL */
    KDF_STATUS_MISALIGNED_POINTER = 3, /* a pointer is not aligned to its element type */
    KDF_STATUS_SHAPE_MISMATCH = 4,     /* shapes of related tensors do not agree */
    KDF_STATUS_WORKSPACE_TOO_SMALL = 5,/* workspace smaller than the size query returned */
    KDF_STATUS_NOT_SUPPORTED = 6,      /* valid request this build does not implement (e.g. a dtype) */
    KDF_STATUS_CUDA_ERROR = 7,         /* the CUDA runtime reported an error */
    KDF_STATUS_CUBLAS_ERROR = 8,       /* cuBLAS reported an error */
    KDF_STATUS_INTERNAL_ERROR = 9      /* a bug in kdfuse: please report it */
} kdfStatus_t;

/* KDFUSE_VERSION of the loaded library (compare with the header's KDFUSE_VERSION). */
KDFUSE_API int kdfGetVersion(void);
/* "cuda" for libkdfuse, "simt" for libkdfuse_sim. */
KDFUSE_API const char* kdfGetBackendName(void);
/* Enumerator name ("KDF_STATUS_SHAPE_MISMATCH") and a one-line description. Never NULL. */
KDFUSE_API const char* kdfGetStatusName(kdfStatus_t status);
KDFUSE_API const char* kdfGetStatusString(kdfStatus_t status);
/* Detail of the last failed call on this thread, naming the offending argument; "" after success. */
KDFUSE_API const char* kdfGetLastErrorString(void);

#ifdef __cplusplus
}
#endif

#endif /* KDFUSE_KDFUSE_H */
