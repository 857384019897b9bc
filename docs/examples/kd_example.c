/* Complete C example: KD loss and student gradient for a batch of logits with libkdfuse.
 * Build: cc kd_example.c -lkdfuse -lcudart (CMake: target_link_libraries(app kdfuse::kdfuse CUDA::cudart)). */
#include <kdfuse/kdfuse.h>

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK_KDF(call)                                                                          \
    do {                                                                                         \
        kdfStatus_t s_ = (call);                                                                 \
        if (s_ != KDF_STATUS_SUCCESS) {                                                          \
            fprintf(stderr, "%s failed: %s: %s\n", #call, kdfGetStatusName(s_), kdfGetLastErrorString()); \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

int main(void)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        fprintf(stderr, "no CUDA device\n");
        return 77; /* "skipped" for ctest */
    }
    const int64_t rows = 64, classes = 100;
    const size_t bytes = (size_t)(rows * classes) * sizeof(float);
    float* host = (float*)malloc(bytes);
    for (int64_t i = 0; i < rows * classes; ++i) host[i] = (float)((i * 7919) % 101) / 25.0f;

    /* Device buffers: student and teacher logits, the student gradient, the loss. */
    float *y_s, *y_t, *grad_s, *loss;
    cudaMalloc((void**)&y_s, bytes);
    cudaMalloc((void**)&y_t, bytes);
    cudaMalloc((void**)&grad_s, bytes);
    cudaMalloc((void**)&loss, sizeof(float));
    cudaMemcpy(y_s, host, bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(y_t, host + 1, bytes - sizeof(float), cudaMemcpyHostToDevice); /* a shifted copy */
    cudaMemcpy(y_t + rows * classes - 1, host, sizeof(float), cudaMemcpyHostToDevice);

    cudaStream_t stream;
    cudaStreamCreate(&stream);

    /* 1. A handle per device. */
    kdfHandle_t handle;
    CHECK_KDF(kdfCreate(&handle));

    /* 2. Parameters: start from the INIT macro, set the shapes. */
    kdfKDParams_t params = KDF_KD_PARAMS_INIT; /* T = 4, batch mean, fp32, dense rows */
    params.rows = rows;
    params.classes = classes;

    /* 3. Workspace: the size depends only on the params; allocate it once and reuse it. */
    size_t ws_bytes = 0;
    CHECK_KDF(kdfKDWorkspaceSize(&params, &ws_bytes));
    void* workspace = NULL;
    if (ws_bytes > 0) cudaMalloc(&workspace, ws_bytes);

    /* 4. Loss and gradient in one fused call on our stream (grad_loss NULL = 1, scale 1, overwrite). */
    CHECK_KDF(kdfKD(handle, &params, y_s, y_t, NULL, loss, grad_s, NULL, NULL, 1.0f, 0, workspace, ws_bytes, stream));

    /* 5. Read the loss (the library never synchronises; we do, once, here). */
    float value = 0.0f;
    cudaMemcpyAsync(&value, loss, sizeof(float), cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    printf("KD loss over %lld x %lld logits: %f\n", (long long)rows, (long long)classes, value);

    CHECK_KDF(kdfDestroy(handle));
    cudaFree(workspace);
    cudaFree(y_s);
    cudaFree(y_t);
    cudaFree(grad_s);
    cudaFree(loss);
    cudaStreamDestroy(stream);
    free(host);
    return 0;
}
