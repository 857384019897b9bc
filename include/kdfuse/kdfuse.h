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

/* ---- library-wide ------------------------------------------------------------------------------ */

/* KDFUSE_VERSION of the loaded library (compare with the header's KDFUSE_VERSION). */
KDFUSE_API int kdfGetVersion(void);
/* "cuda" for libkdfuse, "simt" for libkdfuse_sim. */
KDFUSE_API const char* kdfGetBackendName(void);
/* Enumerator name ("KDF_STATUS_SHAPE_MISMATCH") and a one-line description. Never NULL. */
KDFUSE_API const char* kdfGetStatusName(kdfStatus_t status);
KDFUSE_API const char* kdfGetStatusString(kdfStatus_t status);
/* Detail of the last failed call on this thread, naming the offending argument; "" after success. At most 1023
 * characters (a longer detail is cut, ending in " [...]"). Valid until the thread's next kdf* call; every entry
 * point stays usable while a thread ends (from a thread_local destructor, say). */
KDFUSE_API const char* kdfGetLastErrorString(void);

/* ---- handle --------------------------------------------------------------------------------------
 * Per-device state only: device properties, a cuBLAS handle, the math and determinism modes. No stream
 * and no workspace live in the handle. Create it with the target device current; use a handle from one
 * host thread at a time (like a cuBLAS handle); create one per thread for concurrent use. */
typedef struct kdfContext* kdfHandle_t;

typedef enum kdfMathMode_t {
    KDF_MATH_FP32 = 0, /* default: fp32 GEMMs */
    KDF_MATH_TF32 = 1  /* opt-in: cuBLAS may use TF32 tensor cores for GEMM-based losses */
} kdfMathMode_t;

typedef enum kdfDeterminism_t {
    KDF_DETERMINISTIC = 0, /* default: bitwise reproducible run to run on the same device and build */
    KDF_FAST = 1           /* opt-in: float atomics allowed where a loss documents a faster path */
} kdfDeterminism_t;

/* The handle belongs to the device current now: a call made while another device is current is refused with
 * KDF_STATUS_INVALID_VALUE. */
KDFUSE_API kdfStatus_t kdfCreate(kdfHandle_t* handle);
/* NULL is a no-op. A handle already destroyed (or not from kdfCreate) is refused with KDF_STATUS_INVALID_VALUE
 * by every call, without reading the freed memory; as with any freed pointer, a later kdfCreate may return the
 * same address, which is then that new, live handle. */
KDFUSE_API kdfStatus_t kdfDestroy(kdfHandle_t handle);
KDFUSE_API kdfStatus_t kdfSetMathMode(kdfHandle_t handle, kdfMathMode_t mode);
KDFUSE_API kdfStatus_t kdfGetMathMode(kdfHandle_t handle, kdfMathMode_t* mode);
KDFUSE_API kdfStatus_t kdfSetDeterminism(kdfHandle_t handle, kdfDeterminism_t mode);
KDFUSE_API kdfStatus_t kdfGetDeterminism(kdfHandle_t handle, kdfDeterminism_t* mode);

/* ---- conventions shared by every loss --------------------------------------------------------------
 * - Params structs begin with `struct_size` (set by the ..._INIT macro to sizeof the struct) so they can
 *   grow without breaking callers. Shapes are int64; leading dimensions are in elements (0 = dense).
 * - kdf<Loss>WorkspaceSize(params, &bytes) depends only on the params. The call takes a device workspace
 *   of at least that many bytes (16-byte aligned); NULL is allowed when the size is 0.
 * - Every output pointer may be NULL (not computed): loss only, gradients only, or both in one pass.
 * - grad_loss: optional device pointer to the upstream gradient of the loss (NULL = 1). grad_scale: host
 *   factor applied to every gradient (not to the loss).
 * - accumulate != 0: outputs are added to (+=) instead of overwritten, the loss included, so several
 *   calls (layers, losses) can sum into one loss buffer and one gradient.
 * - Everything runs on `stream`: no allocation, no synchronisation, no host reads of device data.
 * - Aliasing: a buffer a call writes (outputs, the workspace, CRD's banks, z and index_status) shares no byte
 *   with any other buffer of the call, partial overlaps included; buffers it only reads may overlap freely.
 *   Each buffer counts as the byte range from its first to its last element, strides included. A call that
 *   breaks the rule returns KDF_STATUS_INVALID_VALUE naming both buffers. The one in-place exception is
 *   kdfOFDMarginFromBN (margin may be gamma or beta). docs/api.md, "Aliasing". */

typedef enum kdfDataType_t {
    KDF_DTYPE_FP32 = 0,
    KDF_DTYPE_FP16 = 1, /* KD only (computed in fp32); other losses: KDF_STATUS_NOT_SUPPORTED */
    KDF_DTYPE_BF16 = 2  /* KD only (computed in fp32); other losses: KDF_STATUS_NOT_SUPPORTED */
} kdfDataType_t;

typedef enum kdfReduction_t {
    KDF_REDUCTION_BATCHMEAN = 0, /* sum over rows / rows (the seed's behaviour) */
    KDF_REDUCTION_NONE = 1       /* one value per row */
} kdfReduction_t;

/* ---- KD: Hinton et al., RepDistiller's DistillKL -------------------------------------------------
 * loss = T^2 / N * sum_i w_i * KL(softmax(y_t[i] / T) || softmax(y_s[i] / T))       (batchmean)
 * loss[i] = T^2 * w_i * KL_i                                                        (none)
 * w_i = row_weight[i] (NULL = all 1). Rows with weight exactly 0 are skipped: their logits are not read,
 * they add 0 to the loss and get zero gradients. docs/losses/kd.md has the math and numerics. */
typedef struct kdfKDParams_t {
    size_t struct_size;
    int64_t rows;            /* N >= 1 */
    int64_t classes;         /* C >= 1 */
    int64_t ld_student;      /* elements between rows of y_s and grad_s (0 = classes) */
    int64_t ld_teacher;      /* elements between rows of y_t and grad_t (0 = classes) */
    kdfDataType_t dtype;     /* of y_s, y_t, grad_s, grad_t (fp32, fp16 or bf16; the math is fp32);
                                loss, row_weight, grad_loss are fp32 */
    float temperature;       /* T > 0, default 4 */
    kdfReduction_t reduction;
} kdfKDParams_t;

#define KDF_KD_PARAMS_INIT {sizeof(kdfKDParams_t), 0, 0, 0, 0, KDF_DTYPE_FP32, 4.0f, KDF_REDUCTION_BATCHMEAN}

KDFUSE_API kdfStatus_t kdfKDWorkspaceSize(const kdfKDParams_t* params, size_t* bytes);

/* y_s, y_t: N x C student / teacher logits. row_weight: N or NULL.
 * loss: 1 value (batchmean) or N values (none), or NULL.
 * grad_s: gradient w.r.t. y_s, or NULL. grad_t: gradient w.r.t. y_t (mutual learning), or NULL.
 * grad_loss: device scalar (batchmean) or N values (none), or NULL for 1. */
KDFUSE_API kdfStatus_t kdfKD(kdfHandle_t handle, const kdfKDParams_t* params, const void* y_s, const void* y_t,
                             const float* row_weight, float* loss, void* grad_s, void* grad_t,
                             const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                             size_t workspace_bytes, kdfStream_t stream);

/* ---- feature-map losses (FitNet, AT, FT, AB, OFD, VID) ------------------------------------------------
 * Inputs are NCHW feature maps. Each H x W plane is contiguous (rows W elements apart); samples and
 * channels are stride_n / stride_c elements apart (0 = dense: C*H*W and H*W), so channel or batch slices
 * of a larger tensor can be passed directly. Planes and samples may not overlap: stride_c >= H*W, and
 * stride_n >= (C-1)*stride_c + H*W (stride_n = 0 with a wider stride_c is refused: give stride_n). A gradient has the layout of its input.
 * `weight` multiplies the loss and its gradients (a layer's weight, such as RepDistiller's beta), so
 * several layers summed into one loss buffer with `accumulate` give sum_l weight_l * loss_l.
 * Where a loss compares maps of different spatial size, the larger map is adaptive-average-pooled
 * (PyTorch's window rule) to the smaller one's size inside the kernel; no pooled tensor is written. */
typedef struct kdfFeatureMap_t {
    int64_t n, c, h, w;
    int64_t stride_n; /* elements between samples, 0 = c*h*w */
    int64_t stride_c; /* elements between channels, 0 = h*w */
} kdfFeatureMap_t;

#define KDF_FEATURE_MAP_INIT {0, 0, 0, 0, 0, 0}

/* ---- FitNet (HintLoss): loss = weight * mean((f_s - f_t)^2), f_s and f_t of one shape ------------------ */
typedef struct kdfFitNetParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* f_s: the regressor's output */
    kdfFeatureMap_t teacher; /* f_t: same n, c, h, w */
    kdfDataType_t dtype;
    float weight;            /* default 1 */
} kdfFitNetParams_t;

#define KDF_FITNET_PARAMS_INIT {sizeof(kdfFitNetParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 1.0f}

KDFUSE_API kdfStatus_t kdfFitNetWorkspaceSize(const kdfFitNetParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfFitNet(kdfHandle_t handle, const kdfFitNetParams_t* params, const void* f_s, const void* f_t,
                                 float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                                 void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- AT (Attention) and FT (FactorTransfer): attention maps of a student and a teacher feature map -----
 * a(f)[n] = F.normalize(mean_C f^p) over the h*w positions of sample n (eps 1e-12: a map whose norm is
 * below 1e-12 is divided by 1e-12). Channel counts may differ; n must match. When the spatial sizes differ,
 * the larger map (at least as large in both h and w) is adaptive-average-pooled (before the power) to the
 * smaller map's h x w inside the kernel; a pair where one map is larger in h and the other in w returns
 * KDF_STATUS_SHAPE_MISMATCH. The seed pools to (h_min, h_min): the same whenever the smaller map is square,
 * as in every RepDistiller network. With d = a(f_s) - a(f_t) over M = N*h*w compared positions:
 *   AT: loss = weight * sum d^2 / M                    (RepDistiller's Attention, one layer pair per call)
 *   FT: loss = weight * sum |d| / M          (p2 = 1)  (RepDistiller's FactorTransfer)
 *       loss = weight * sum d^p2 / M         (p2 != 1: no abs, as the seed)
 * Gradients flow to f_s only. docs/losses/at.md and docs/losses/ft.md. */
typedef struct kdfATParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* f_s */
    kdfFeatureMap_t teacher; /* f_t: same n; c, h, w may differ */
    kdfDataType_t dtype;
    float p;                 /* power of the attention map, > 0, default 2 */
    float weight;            /* default 1 (RepDistiller's beta: 1000) */
} kdfATParams_t;

#define KDF_AT_PARAMS_INIT {sizeof(kdfATParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 2.0f, 1.0f}

KDFUSE_API kdfStatus_t kdfATWorkspaceSize(const kdfATParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfAT(kdfHandle_t handle, const kdfATParams_t* params, const void* f_s, const void* f_t,
                             float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                             void* workspace, size_t workspace_bytes, kdfStream_t stream);

typedef struct kdfFTParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* f_s: the student translator's factor */
    kdfFeatureMap_t teacher; /* f_t: the teacher paraphraser's factor; same n; c, h, w may differ */
    kdfDataType_t dtype;
    float p1;                /* power of the factor map, > 0, default 2 */
    float p2;                /* exponent of the difference, > 0, default 1 (L1) */
    float weight;            /* default 1 (RepDistiller's beta: 200) */
} kdfFTParams_t;

#define KDF_FT_PARAMS_INIT {sizeof(kdfFTParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 2.0f, 1.0f, 1.0f}

KDFUSE_API kdfStatus_t kdfFTWorkspaceSize(const kdfFTParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfFT(kdfHandle_t handle, const kdfFTParams_t* params, const void* f_s, const void* f_t,
                             float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                             void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- AB (Heo et al., activation boundaries; RepDistiller's ABLoss): one layer per call ----------------
 * With m = margin, s the connector's pre-ReLU output and t the teacher's pre-ReLU map (same shape):
 *   L = sum over all elements of (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0]
 *   loss = weight * L / N * 3 / 1000   (seed_scaling = 1: the seed's scaling)   or   weight * L   (0)
 * The seed's layer weights w_i = 2^(i - L + 1) (layer i of L) go in `weight`: summing the layers into one
 * loss buffer with `accumulate` gives the seed's sum(ABLoss(L)(g_s, g_t)). docs/losses/ab.md. */
typedef struct kdfABParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* s: the connector's pre-ReLU output */
    kdfFeatureMap_t teacher; /* t: the teacher's pre-ReLU map, same n, c, h, w */
    kdfDataType_t dtype;
    float margin;            /* m >= 0, default 1 */
    float weight;            /* default 1 */
    int seed_scaling;        /* 1 (default): divide by N and multiply by 3/1000 as the seed; 0: the raw sum */
} kdfABParams_t;

#define KDF_AB_PARAMS_INIT {sizeof(kdfABParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 1.0f, 1.0f, 1}

KDFUSE_API kdfStatus_t kdfABWorkspaceSize(const kdfABParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfAB(kdfHandle_t handle, const kdfABParams_t* params, const void* s, const void* t, float* loss,
                             void* grad_s, const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                             size_t workspace_bytes, kdfStream_t stream);

/* ---- OFD (Heo et al., "A Comprehensive Overhaul of Feature Distillation"): one layer per call --------
 * s: the connector's output, t: the teacher's pre-ReLU map (same shape); with a margin m_c per channel:
 *   t' = max(t, m_c),  mask = NOT(s <= t' and t' <= 0),  L = sum over all elements of (s - t')^2 * mask
 *   KDF_OFD_SEED:     m_c = (sum of channel c's negative values of t over N, H, W) / (their count + 1e-6),
 *                     from this batch on the device (0 for a channel without negative values);
 *                     loss = weight * L / (N*C*H*W)                                    (the seed's mean)
 *   KDF_OFD_ORIGINAL: m_c given by the caller (C floats on the device, see kdfOFDMarginFromBN);
 *                     loss = weight * L / (N * 1000)                           (clovaai's training script)
 * The margin is a constant: gradients flow to s only. docs/losses/ofd.md. */
typedef enum kdfOFDVariant_t {
    KDF_OFD_SEED = 0,    /* margin from the batch's teacher statistics, mean over elements (default) */
    KDF_OFD_ORIGINAL = 1 /* the caller's margin, sum / (N * 1000) */
} kdfOFDVariant_t;

typedef struct kdfOFDParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* s: the connector's output */
    kdfFeatureMap_t teacher; /* t: the teacher's pre-ReLU map, same n, c, h, w */
    kdfDataType_t dtype;
    kdfOFDVariant_t variant; /* default KDF_OFD_SEED */
    float weight;            /* default 1 */
} kdfOFDParams_t;

#define KDF_OFD_PARAMS_INIT {sizeof(kdfOFDParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, KDF_OFD_SEED, 1.0f}

KDFUSE_API kdfStatus_t kdfOFDWorkspaceSize(const kdfOFDParams_t* params, size_t* bytes);
/* margin: C device floats for KDF_OFD_ORIGINAL, must be NULL for KDF_OFD_SEED. loss: 1 float or NULL;
 * grad_s: layout of s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfOFD(kdfHandle_t handle, const kdfOFDParams_t* params, const void* s, const void* t,
                              const float* margin, float* loss, void* grad_s, const float* grad_loss, float grad_scale,
                              int accumulate, void* workspace, size_t workspace_bytes, kdfStream_t stream);
/* The original paper's margin from the teacher's BatchNorm before the ReLU (weight gamma, bias beta, C device
 * floats each), for KDF_OFD_ORIGINAL: with s = |gamma_c| and m = beta_c, margin_c = m - s phi(m/s) / Phi(-m/s)
 * (the mean of the BN output given that it is negative) when Phi(-m/s) > 1e-3, else -3 s; gamma_c = 0 gives
 * m if m < 0, else 0. Evaluated in double precision; one kernel. margin: C device floats (may be gamma or beta). */
KDFUSE_API kdfStatus_t kdfOFDMarginFromBN(kdfHandle_t handle, int64_t channels, const float* gamma, const float* beta,
                                          float* margin, kdfStream_t stream);

/* ---- VID (variational information distillation; RepDistiller's VIDLoss after the regressor) -----------
 * var_c = softplus(log_scale[c]) + eps, M = N*C*H*W (pred's shape):
 *   loss = weight * sum_{n,c,h,w} 0.5 * ((pred_mean - t)^2 / var_c + log var_c) / M
 * t is the target, adaptive-average-pooled (PyTorch's window rule) to pred's H x W inside the kernel when
 * it is larger (the seed pools to (H, H); the same for square maps). softplus is evaluated stably
 * (max(x, 0) + log1p(exp(-|x|))), so any finite log_scale is fine. docs/losses/vid.md has the math. */
typedef struct kdfVIDParams_t {
    size_t struct_size;
    kdfFeatureMap_t pred;   /* pred_mean: the regressor's output (N, C, H, W) */
    kdfFeatureMap_t target; /* the teacher's feature: same n and c; h >= pred.h, w >= pred.w */
    kdfDataType_t dtype;    /* of pred_mean, target, grad_pred; log_scale, loss, grad_log_scale are fp32 */
    float eps;              /* > 0, default 1e-5 */
    float weight;           /* default 1 */
} kdfVIDParams_t;

#define KDF_VID_PARAMS_INIT {sizeof(kdfVIDParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 1e-5f, 1.0f}

KDFUSE_API kdfStatus_t kdfVIDWorkspaceSize(const kdfVIDParams_t* params, size_t* bytes);
/* log_scale: C floats. loss: 1 float or NULL; grad_pred: layout of pred_mean, or NULL; grad_log_scale: C floats
 * or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfVID(kdfHandle_t handle, const kdfVIDParams_t* params, const void* pred_mean, const void* target,
                              const float* log_scale, float* loss, void* grad_pred, float* grad_log_scale,
                              const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                              size_t workspace_bytes, kdfStream_t stream);

/* ---- relational and Gram losses (SP, CC, RKD, PKT, FSP, NST) ----------------------------------------
 * Gram and similarity matrices go through cuBLAS GEMMs on `stream`, with the handle's math mode (fp32
 * unless kdfSetMathMode allows TF32) and a slice of the caller's workspace for cuBLAS (so cuBLAS never
 * allocates). No N x C x C x HW, N x N x D or N^3 tensor is materialised. */

/* ---- SP (Tung & Mori, similarity-preserving KD; RepDistiller's Similarity): one layer pair per call ---
 * f_s: N x D_s, f_t: N x D_t (features flattened per sample; rows ld_student / ld_teacher elements apart,
 * 0 = dense). G = f f^T per network (N x N), every row of G L2-normalised as F.normalize does (a row whose
 * norm is below 1e-12 is divided by 1e-12, so a zero feature row gives a zero row, never NaN):
 *   loss = weight * sum_ij (Q_t - Q_s)_ij^2 / N^2,    Q = normalize_rows(f f^T)
 * Gradients flow to f_s only. D_s and D_t may differ; N <= 46339. docs/losses/sp.md. */
typedef struct kdfSPParams_t {
    size_t struct_size;
    int64_t rows;        /* N >= 1 */
    int64_t dim_student; /* D_s >= 1 */
    int64_t dim_teacher; /* D_t >= 1 */
    int64_t ld_student;  /* elements between rows of f_s and grad_s (0 = dim_student) */
    int64_t ld_teacher;  /* elements between rows of f_t (0 = dim_teacher) */
    kdfDataType_t dtype;
    float weight;        /* default 1 (RepDistiller's beta: 3000) */
} kdfSPParams_t;

#define KDF_SP_PARAMS_INIT {sizeof(kdfSPParams_t), 0, 0, 0, 0, 0, KDF_DTYPE_FP32, 1.0f}

KDFUSE_API kdfStatus_t kdfSPWorkspaceSize(const kdfSPParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: N x D_s (rows ld_student apart), or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfSP(kdfHandle_t handle, const kdfSPParams_t* params, const void* f_s, const void* f_t,
                             float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                             void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- CC (Peng et al., correlation congruence; RepDistiller's Correlation) ------------------------------
 * KDF_CC_SEED (default): f_s N x D_s, f_t N x D_t; G = f f^T, Q = G / ||G||_F (no eps: an all-zero input
 *   gives NaN, as the seed); loss = weight * sum_ij (Q_t - Q_s)_ij^2 / N^2. Gradients flow to f_s only
 *   (grad_t must be NULL); D_s and D_t may differ; N <= 46339. (The Gram matrices are built from mean-centred
 *   rows plus the mean, which keeps near-duplicate rows accurate; docs/losses/cc.md.)
 * KDF_CC_REPDISTILLER (RepDistiller's shipped distiller_zoo/CC.py): f_s, f_t N x D (D_s == D_t, the CC
 *   embeddings), delta = |f_s - f_t|, loss = weight * mean_{i < N-1} sum_d delta[i,d] delta[i+1,d]
 *   (consecutive rows: batch-order dependent; N = 1 gives NaN and zero gradients, as the shipped code).
 *   Both embeddings train there: grad_s and grad_t (d|x|/dx at 0 is 0). docs/losses/cc.md. */
typedef enum kdfCCVariant_t {
    KDF_CC_SEED = 0,        /* Gram matrices normalised by their Frobenius norm (default) */
    KDF_CC_REPDISTILLER = 1 /* products of consecutive rows of |f_s - f_t| */
} kdfCCVariant_t;

typedef struct kdfCCParams_t {
    size_t struct_size;
    int64_t rows;           /* N >= 1 */
    int64_t dim_student;    /* D_s >= 1 */
    int64_t dim_teacher;    /* D_t >= 1 (== D_s for KDF_CC_REPDISTILLER) */
    int64_t ld_student;     /* elements between rows of f_s and grad_s (0 = dim_student) */
    int64_t ld_teacher;     /* elements between rows of f_t and grad_t (0 = dim_teacher) */
    kdfDataType_t dtype;
    kdfCCVariant_t variant; /* default KDF_CC_SEED */
    float weight;           /* default 1 (RepDistiller's beta: 0.02) */
} kdfCCParams_t;

#define KDF_CC_PARAMS_INIT {sizeof(kdfCCParams_t), 0, 0, 0, 0, 0, KDF_DTYPE_FP32, KDF_CC_SEED, 1.0f}

KDFUSE_API kdfStatus_t kdfCCWorkspaceSize(const kdfCCParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_t: layout of f_t, or NULL (must be NULL for
 * KDF_CC_SEED); grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfCC(kdfHandle_t handle, const kdfCCParams_t* params, const void* f_s, const void* f_t,
                             float* loss, void* grad_s, void* grad_t, const float* grad_loss, float grad_scale,
                             int accumulate, void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- RKD and PKT: relational losses of two batches of embeddings -----------------------------------
 * e_s (N x D_s) and e_t (N x D_t): row i of each describes sample i (flatten feature maps first, as the
 * seed's view(N, -1)); rows are ld_student / ld_teacher elements apart (0 = dense), columns contiguous.
 * grad_s has the layout of e_s. Only N x N matrices are formed (Gram matrices by cuBLAS GEMM); the
 * workspace is O(N^2) plus the constant cuBLAS slice, plus N D_s floats for PKT (a masked copy of e_s for the
 * gradient GEMM) and N (D_s + D_t) for RKD (Gram matrices of mean-centred copies: accuracy on near-duplicate rows). Gradients flow to e_s only (the
 * teacher is a constant, as the seed's no_grad). `weight` multiplies the loss and its gradients.
 *
 * PKT (Passalis & Tefas; RepDistiller's PKT), eps = 1e-7:
 *   x_i = e_i / (||e_i|| + eps) (a row with a non-finite norm becomes 0, the seed's NaN -> 0),
 *   S = (x x^T + 1) / 2, rows of S normalised to sum 1 (s for the student, t for the teacher),
 *   loss = weight * mean over the N^2 entries of t log((t + eps) / (s + eps)).
 *   An all-zero student row gets a zero gradient (the seed's is NaN there). docs/losses/pkt.md. */
typedef struct kdfPKTParams_t {
    size_t struct_size;
    int64_t rows;        /* N >= 1 */
    int64_t dim_student; /* D_s >= 1 */
    int64_t dim_teacher; /* D_t >= 1 */
    int64_t ld_student;  /* elements between rows of f_s and grad_s (0 = dim_student) */
    int64_t ld_teacher;  /* elements between rows of f_t (0 = dim_teacher) */
    kdfDataType_t dtype;
    float weight;        /* default 1 (RepDistiller's beta: 30000) */
} kdfPKTParams_t;

#define KDF_PKT_PARAMS_INIT {sizeof(kdfPKTParams_t), 0, 0, 0, 0, 0, KDF_DTYPE_FP32, 1.0f}

KDFUSE_API kdfStatus_t kdfPKTWorkspaceSize(const kdfPKTParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfPKT(kdfHandle_t handle, const kdfPKTParams_t* params, const void* f_s, const void* f_t,
                              float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                              void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* RKD (Park et al.; RepDistiller's RKDLoss): loss = weight * (w_d L_d + w_a L_a).
 *   d_ij = sqrt(max(|e_i - e_j|^2, 1e-12)) for i != j, d_ii = 0, from the Gram matrix G = e e^T;
 *   L_d = mean over N^2 of smooth_l1(d_s / mu_s - d_t / mu_t), mu = mean of the positive d (the N(N-1)
 *         off-diagonal entries; the student's mu is differentiated through, not detached);
 *   L_a = mean over N^3 of smooth_l1(a_s - a_t), a_ijk = <u_ij, u_ik>, u_ij = (e_j - e_i) / max(|e_j - e_i|, 1e-12)
 *         (a zero difference gives u = 0, so angles with j = i, k = i or duplicate rows are 0);
 *   smooth_l1 with beta 1. N = 1: there is no positive distance; L_d is defined as 0 (the seed's is NaN)
 *   and L_a = 0, so the loss and gradient are 0. docs/losses/rkd.md. */
typedef struct kdfRKDParams_t {
    size_t struct_size;
    int64_t rows;          /* N >= 1 */
    int64_t dim_student;   /* D_s >= 1 */
    int64_t dim_teacher;   /* D_t >= 1 */
    int64_t ld_student;    /* elements between rows of e_s and grad_s (0 = dim_student) */
    int64_t ld_teacher;    /* elements between rows of e_t (0 = dim_teacher) */
    kdfDataType_t dtype;
    float distance_weight; /* w_d, finite, default 25 */
    float angle_weight;    /* w_a, finite, default 50 */
    float weight;          /* default 1 (RepDistiller's beta: 1) */
} kdfRKDParams_t;

#define KDF_RKD_PARAMS_INIT {sizeof(kdfRKDParams_t), 0, 0, 0, 0, 0, KDF_DTYPE_FP32, 25.0f, 50.0f, 1.0f}

KDFUSE_API kdfStatus_t kdfRKDWorkspaceSize(const kdfRKDParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of e_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfRKD(kdfHandle_t handle, const kdfRKDParams_t* params, const void* e_s, const void* e_t,
                              float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                              void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- NST (Huang & Wang, neuron selectivity transfer; RepDistiller's NSTLoss): one layer pair per call ---
 * With the compared maps pooled to the common size h x w (as AT: the larger map, at least as large in both h
 * and w, is adaptive-average-pooled to the smaller one's h x w; one larger in h and the other in w returns
 * KDF_STATUS_SHAPE_MISMATCH; the seed pools to (h_min, h_min), the same whenever the smaller map is square),
 * a[n, i] = F.normalize(f_s[n, i] over the h*w positions) (eps 1e-12), b[n, k] likewise for f_t, and
 * k(x, y) = <x, y>^2:
 *   loss = weight * (mean_{n,k,l} k(b_k, b_l) + mean_{n,i,j} k(a_i, a_j) - 2 mean_{n,i,k} k(a_i, b_k))
 * (each mean over its own count: N C_t^2, N C_s^2, N C_s C_t). full_loss = 0 drops the teacher-teacher term
 * (a constant: the seed's other branch). Channel counts may differ; gradients flow to f_s only.
 * docs/losses/nst.md. */
typedef struct kdfNSTParams_t {
    size_t struct_size;
    kdfFeatureMap_t student; /* f_s */
    kdfFeatureMap_t teacher; /* f_t: same n; c, h, w may differ */
    kdfDataType_t dtype;
    int full_loss;           /* 1 (default): include the constant teacher-teacher term, as the seed */
    float weight;            /* default 1 (RepDistiller's beta: 50) */
} kdfNSTParams_t;

#define KDF_NST_PARAMS_INIT {sizeof(kdfNSTParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 1, 1.0f}

KDFUSE_API kdfStatus_t kdfNSTWorkspaceSize(const kdfNSTParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s: layout of f_s, or NULL; grad_loss: device scalar or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfNST(kdfHandle_t handle, const kdfNSTParams_t* params, const void* f_s, const void* f_t,
                              float* loss, void* grad_s, const float* grad_loss, float grad_scale, int accumulate,
                              void* workspace, size_t workspace_bytes, kdfStream_t stream);

/* ---- FSP (Yim et al., flow of solution procedure; RepDistiller's FSP): one pair of consecutive maps ------
 * For each network, bot (N, C1, H, W) and top (N, C2, H', W') are pooled to a common size h x w (the larger
 * map of the pair, at least as large in both h and w, adaptive-average-pooled to the smaller one's; the seed
 * pools to (h_min, h_min), the same whenever the smaller map is square), and
 *   G[n, c2, c1] = mean_{hw} top[n, c2, hw] * bot[n, c1, hw]               (N x C2 x C1)
 *   loss = weight * mean_{n, c2, c1} (G_s - G_t)^2
 * Student and teacher must have the same C1 and the same C2 (else KDF_STATUS_SHAPE_MISMATCH, as the seed
 * raises); the student pair and the teacher pair may have different spatial sizes. Gradients flow to both
 * student maps. The seed's loss list over L maps is L - 1 calls, one per consecutive pair: with accumulate,
 * a middle map's gradient (the top of one pair and the bottom of the next) sums both contributions.
 * docs/losses/fsp.md. */
typedef struct kdfFSPParams_t {
    size_t struct_size;
    kdfFeatureMap_t student_bot; /* the student's map i */
    kdfFeatureMap_t student_top; /* the student's map i + 1: same n */
    kdfFeatureMap_t teacher_bot; /* the teacher's map i: same n and c as student_bot */
    kdfFeatureMap_t teacher_top; /* the teacher's map i + 1: same n and c as student_top */
    kdfDataType_t dtype;
    float weight;                /* default 1 (RepDistiller's beta: 50) */
} kdfFSPParams_t;

#define KDF_FSP_PARAMS_INIT \
    {sizeof(kdfFSPParams_t), KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_FEATURE_MAP_INIT, KDF_DTYPE_FP32, 1.0f}

KDFUSE_API kdfStatus_t kdfFSPWorkspaceSize(const kdfFSPParams_t* params, size_t* bytes);
/* loss: 1 float or NULL; grad_s_bot / grad_s_top: layouts of s_bot / s_top, or NULL; grad_loss: device scalar or
 * NULL (= 1). */
KDFUSE_API kdfStatus_t kdfFSP(kdfHandle_t handle, const kdfFSPParams_t* params, const void* s_bot, const void* s_top,
                              const void* t_bot, const void* t_top, float* loss, void* grad_s_bot, void* grad_s_top,
                              const float* grad_loss, float grad_scale, int accumulate, void* workspace,
                              size_t workspace_bytes, kdfStream_t stream);

/* ---- CRD (Tian et al., contrastive representation distillation; RepDistiller's CRDLoss) ---------------
 * State owned by the caller, on the device: the memory banks memory_s (student features) and memory_t
 * (teacher features), n_data x D each (rows D elements apart), and z = {Z_s, Z_t} (2 floats; < 0 = unset).
 * With v_s, v_t the N x D embeddings (L2-normalised here, without eps as the seed's Normalize, when
 * normalize_inputs = 1; then gradients are w.r.t. the raw rows) and c[i, k] the contrast indices (column 0
 * the positive), with the PRE-update banks:
 *   out_s[i, k] = exp(<memory_t[c[i, k]], v_s[i]> / T) / Z_s,   out_t[i, k] = exp(<memory_s[c[i, k]], v_t[i]> / T) / Z_t
 *   loss = weight * (nce(out_s) + nce(out_t)),  nce(x) = -(sum_i log(x_i0 / (x_i0 + K/n_data + 1e-7))
 *                                                   + sum_{i, k >= 1} log((K/n_data) / (x_ik + K/n_data + 1e-7))) / N
 * Z: unset -> mean(exp(s)) * n_data from this batch (the seed); KDF_CRD_Z_ONCE keeps it from then on;
 * KDF_CRD_Z_EMA updates it on every later call, Z = z_momentum Z + (1 - z_momentum) mean(exp(s)) n_data,
 * before using it. The new Z is written back to z. Then, with update_memory = 1, for every row i:
 * memory[idx[i]] = normalize(momentum * memory[idx[i]] + (1 - momentum) * v[i]) (memory_s with v_s,
 * memory_t with v_t; from the pre-update rows; when idx holds a value twice the LAST row wins).
 * Contrast indices: given (draw_contrast = 0; N x (K+1), any values in [0, n_data)) or drawn on the
 * device (draw_contrast = 1): c[i, 0] = idx[i], c[i, k >= 1] uniform in [0, n_data) from Philox4x64-10
 * with key (seed, 0) and counter (i (K+1) + k, offset, 0, 0): use a new offset every step.
 * Bad indices never corrupt the state: when any contrast index, or any idx the call reads (update_memory or
 * draw_contrast), is outside [0, n_data), the call leaves memory_s, memory_t and z untouched, writes NaN to
 * the loss and to every gradient row it was asked for, and writes 1 to *index_status (0 when every index is
 * in range). The indices live on the device, so this is found there: read index_status whenever convenient
 * (it is written on `stream`; no synchronisation happens in the call).
 * No N x (K+1) x D tensor exists; nothing is synchronised. docs/losses/crd.md. */
typedef enum kdfIndexType_t {
    KDF_INDEX_INT32 = 0,
    KDF_INDEX_INT64 = 1
} kdfIndexType_t;

typedef enum kdfCRDZMode_t {
    KDF_CRD_Z_ONCE = 0, /* the seed: set from the first batch, then fixed (default) */
    KDF_CRD_Z_EMA = 1   /* updated with z_momentum on every call (CMC issue #23) */
} kdfCRDZMode_t;

typedef struct kdfCRDParams_t {
    size_t struct_size;
    int64_t rows;             /* N >= 1 */
    int64_t dim;              /* D, 1 .. 1024 (RepDistiller's feat_dim: 128) */
    int64_t ld_student;       /* elements between rows of v_s and grad_s (0 = dim) */
    int64_t ld_teacher;       /* elements between rows of v_t and grad_t (0 = dim) */
    int64_t n_data;           /* rows of each bank, the dataset size (Pn = 1 / n_data) */
    int64_t k;                /* negatives per row, K >= 1 (RepDistiller's nce_k: 16384) */
    kdfDataType_t dtype;      /* of v_s, v_t, grad_s, grad_t, the banks */
    kdfIndexType_t index_type;/* of idx and contrast_idx */
    float temperature;        /* T, 1/64 <= T, default 0.07 (a smaller T could overflow the fp32 Z) */
    float momentum;           /* bank momentum in [0, 1], default 0.5 */
    kdfCRDZMode_t z_mode;     /* default KDF_CRD_Z_ONCE */
    float z_momentum;         /* in [0, 1], default 0.99 (KDF_CRD_Z_EMA only) */
    int normalize_inputs;     /* 0 (default): v_s, v_t are normalised already; 1: normalise them here */
    int update_memory;        /* 1 (default): update the banks at idx; 0: evaluation, banks untouched */
    int draw_contrast;        /* 0 (default): contrast_idx given; 1: drawn on the device (contrast_idx NULL) */
    uint64_t seed;            /* Philox key of the draw */
    uint64_t offset;          /* Philox counter offset of the draw (a new one per step) */
    float weight;             /* default 1 (RepDistiller's beta: 0.8) */
} kdfCRDParams_t;

#define KDF_CRD_PARAMS_INIT {sizeof(kdfCRDParams_t), 0, 128, 0, 0, 0, 16384, KDF_DTYPE_FP32, KDF_INDEX_INT64, 0.07f, \
                             0.5f, KDF_CRD_Z_ONCE, 0.99f, 0, 1, 0, 0, 0, 1.0f}

KDFUSE_API kdfStatus_t kdfCRDWorkspaceSize(const kdfCRDParams_t* params, size_t* bytes);
/* v_s, v_t: N x D. memory_s, memory_t: n_data x D, read and (update_memory) written. idx: N dataset indices
 * (required when update_memory or draw_contrast is set, else may be NULL). contrast_idx: N x (K+1) or NULL
 * (draw_contrast). z: 2 device floats {Z_s, Z_t}, read and written. index_status: 1 device int32 (0 = every
 * index in range, 1 = an index out of range: state untouched, outputs NaN), or NULL (not reported). loss: 1
 * float or NULL; grad_s, grad_t: layouts of v_s, v_t, or NULL; grad_loss: device scalar or NULL (= 1). A call
 * with no loss, no gradient and update_memory = 0 only checks the indices into index_status (Z, banks untouched),
 * or does nothing when index_status is NULL. */
KDFUSE_API kdfStatus_t kdfCRD(kdfHandle_t handle, const kdfCRDParams_t* params, const void* v_s, const void* v_t,
                              void* memory_s, void* memory_t, const void* idx, const void* contrast_idx, float* z,
                              int32_t* index_status, float* loss, void* grad_s, void* grad_t, const float* grad_loss,
                              float grad_scale, int accumulate, void* workspace, size_t workspace_bytes,
                              kdfStream_t stream);
/* Writes the N x (K+1) contrast indices a draw_contrast = 1 call with these params uses (params->index_type;
 * column 0 = idx), for inspection and tests. One kernel on `stream`. */
KDFUSE_API kdfStatus_t kdfCRDDrawContrast(kdfHandle_t handle, const kdfCRDParams_t* params, const void* idx,
                                          void* contrast_idx, kdfStream_t stream);


/* ---- KDSVD (Lee et al., SVD-based self-supervised distillation; RepDistiller's KDSVD) ----------------
 * All layers of both networks in one call. For layer l, network x and sample b, F = the C_l x P map
 * (P = h*w; square maps only, h == w) and v_j its right singular vectors (the eigenvectors of F F^T, by
 * decreasing singular value s_j; a vector of a zero singular value, and every vector of a map that is
 * zero or holds a non-finite value, is 0):
 *   teacher: v_t[j], j < k, each signed so that its entry of largest magnitude (the first on ties) is
 *            positive; s_hat[j] = s_j / max(|s_0..s_{k-1}|, 1e-12)
 *   student: the first min(k + 3, C, P) vectors; w[j] = sum of the student vectors whose |cos| with
 *            v_t[j] equals the largest (exact ties add), each times the sign of its cosine
 *   a_t[:, j] = s_hat[j] v_t[j],  a_s[:, j] = s_hat[j] w[j]       (both scaled by the TEACHER's s_hat)
 *   loss[l - 1] = weight / N * sum_{b, c, c', j} (R_s - R_t)^2,  R_x = exp(-(a_x,l[b, c, j] - a_x,l-1[b, c', j])^2 / 8)
 * for l = 1 .. L-1. Only the student gets a gradient (through its singular vectors; each needed vector is
 * differentiated alone, dropping eigenvalue gaps |s_i^2 - s_j^2| <= gap_rtol * s_0^2). Limits: 2 <= L <=
 * KDF_KDSVD_MAX_LAYERS, 1 <= k <= KDF_KDSVD_MAX_K, k <= min(C_l, P) for every teacher map, min(C_l, P)
 * <= KDF_KDSVD_MAX_RANK for every map (KDF_STATUS_NOT_SUPPORTED above). docs/losses/kdsvd.md. */
#define KDF_KDSVD_MAX_LAYERS 8
#define KDF_KDSVD_MAX_K 8
#define KDF_KDSVD_MAX_RANK 128

typedef struct kdfKDSVDParams_t {
    size_t struct_size;
    int num_layers;                                /* L */
    kdfFeatureMap_t student[KDF_KDSVD_MAX_LAYERS]; /* the first L used: same n in every layer, h == w */
    kdfFeatureMap_t teacher[KDF_KDSVD_MAX_LAYERS]; /* same n and c as student[l]; h == w (may differ from the student's) */
    kdfDataType_t dtype;
    int k;                                         /* teacher vectors, default 1 (RepDistiller's) */
    float gap_rtol;                                /* >= 0, default 1e-5 */
    float weight;                                  /* default 1 (RepDistiller's beta: 1) */
} kdfKDSVDParams_t;

#define KDF_KDSVD_PARAMS_INIT {sizeof(kdfKDSVDParams_t), 0, {KDF_FEATURE_MAP_INIT}, {KDF_FEATURE_MAP_INIT}, KDF_DTYPE_FP32, 1, 1e-5f, 1.0f}

KDFUSE_API kdfStatus_t kdfKDSVDWorkspaceSize(const kdfKDSVDParams_t* params, size_t* bytes);
/* f_s, f_t: host arrays of L device pointers (the maps). loss: L - 1 device floats (one per consecutive pair)
 * or NULL. grad_s: a host array of L device pointers (each the layout of its f_s[l], or NULL: not computed), or
 * NULL (no gradient). grad_loss: L - 1 device floats (the upstream gradient of each pair loss) or NULL (= 1). */
KDFUSE_API kdfStatus_t kdfKDSVD(kdfHandle_t handle, const kdfKDSVDParams_t* params, const void* const* f_s,
                                const void* const* f_t, float* loss, void* const* grad_s, const float* grad_loss,
                                float grad_scale, int accumulate, void* workspace, size_t workspace_bytes,
                                kdfStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KDFUSE_KDFUSE_H */
