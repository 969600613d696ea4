/* What every file of the CUDA backend shares: the checking macros, the
 * backend's private state, and the launchers each .cu file provides.
 *
 * Conventions
 *  - Every CUDA runtime and library call goes through CT_CUDA_CHECK /
 *    CT_CUBLAS_CHECK / CT_CUDNN_CHECK; every kernel launch is followed by
 *    CT_LAUNCH_CHECK.
 *    A failure is fatal: one line naming the call, file:line and the device.
 *  - Every launcher queues work on impl->stream and never synchronises
 *    (except the memory helpers whose contract says so); all of them are
 *    legal inside stream capture.
 *  - Reductions are deterministic: a fixed grid, fixed per-thread strides,
 *    a fixed-order tree in shared memory, and a second single-block pass over
 *    the per-block partials. No float atomics anywhere.
 *  - Launchers have the exact signatures of the vtable entries in
 *    include/cutrain/backend.h, so backend_cuda.cu puts them in the table.
 */
#ifndef CUTRAIN_KERNELS_CUDA_COMMON_H
#define CUTRAIN_KERNELS_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cutrain/backend.h"
#include "kernels/cuda/partials.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prints "cutrain: error: CUDA: <what> in <call> at <file>:<line> (device N, name)"
 * and exits with CT_EXIT_FAILURE. */
void ct_cuda_fatal(const char *what, const char *call, const char *file, int line) __attribute__((noreturn));

#define CT_CUDA_CHECK(call)                                                      \
    do {                                                                         \
        cudaError_t ct_e_ = (call);                                              \
        if (ct_e_ != cudaSuccess)                                                \
            ct_cuda_fatal(cudaGetErrorString(ct_e_), #call, __FILE__, __LINE__); \
    } while (0)

#define CT_CUBLAS_CHECK(call)                                                          \
    do {                                                                               \
        cublasStatus_t ct_s_ = (call);                                                 \
        if (ct_s_ != CUBLAS_STATUS_SUCCESS)                                            \
            ct_cuda_fatal(cublasGetStatusString(ct_s_), #call, __FILE__, __LINE__);    \
    } while (0)

#define CT_CUDNN_CHECK(call)                                                           \
    do {                                                                               \
        cudnnStatus_t ct_d_ = (call);                                                  \
        if (ct_d_ != CUDNN_STATUS_SUCCESS)                                             \
            ct_cuda_fatal(cudnnGetErrorString(ct_d_), #call, __FILE__, __LINE__);      \
    } while (0)

/* After a <<<...>>> launch: reports the kernel's name with the launch error. */
#define CT_LAUNCH_CHECK(kernel_name)                                                  \
    do {                                                                              \
        cudaError_t ct_e_ = cudaGetLastError();                                       \
        if (ct_e_ != cudaSuccess)                                                     \
            ct_cuda_fatal(cudaGetErrorString(ct_e_), "launch of " kernel_name, __FILE__, __LINE__); \
    } while (0)

typedef struct ct_cuda_impl {
    int device;
    char name[96];
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_workspace;        /* fixed, so capture and replay are deterministic */
    size_t cublas_workspace_bytes;
    cudnnHandle_t cudnn;           /* bound to stream; convolutions (conv_cuda.cu) */
    cudaEvent_t fences[CT_MAX_FENCES];
    /* scratch for reductions, allocated once at create */
    double *partials;              /* CT_CUDA_MAX_PARTIAL_BLOCKS * CT_CUDA_PARTIAL_STRIDE doubles */
    /* Blocks done, one counter per reduction (CT_CUDA_COUNTER_*): the last
     * block of a pass finishes it, and puts its counter back to zero. */
    unsigned int *done;
    /* CUTRAIN_CUDA_STEP_FINISH=on at create: step_finish runs as one kernel
     * for a small arena (step_cuda.cu). Off by default until measured. */
    int fused_finish;
} ct_cuda_impl;

#define CT_CUDA_COUNTER_STATS 0
#define CT_CUDA_COUNTER_OPTIM 1
#define CT_CUDA_COUNTERS 2

static inline ct_cuda_impl *ct_cuda(ct_backend *b) { return (ct_cuda_impl *)b->impl; }

/* gemm_cuda.cu */
void cuda_gemm(ct_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
/* activation_cuda.cu */
void cuda_bias_act_forward(ct_backend *b, ct_activation act, int rows, int cols, const float *bias, float *y);
void cuda_bias_act_backward(ct_backend *b, ct_activation act, int rows, int cols, const float *y, float *dy,
                            float *dbias);
/* conv_cuda.cu (cuDNN), pool_cuda.cu */
void *cuda_conv_plan(ct_backend *b, const ct_conv_shape *shape, int deterministic, size_t *workspace_bytes,
                     ct_error *err);
void cuda_conv_plan_free(ct_backend *b, void *plan);
void cuda_conv2d_forward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                         const float *bias, float *y, void *workspace);
void cuda_conv2d_backward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *dbias, void *workspace);
/* conv_gemm_cuda.cu (math in conv_gemm_math.h): the backward as im2col + cuBLAS. The chunk (samples
 * per pass; 0 when one sample alone needs more than cap_bytes) and its
 * workspace are planned once; the backward queues on im->stream. */
int cuda_conv_gemm_chunk(const ct_conv_shape *s, size_t cap_bytes);
/* CUTRAIN_CUDA_CONV_BACKWARD: 0 cuDNN (unset, empty, "cudnn"), N > 0 the
 * gemm backward with at most N samples per pass ("gemm": INT_MAX, "gemm:N"),
 * -1 anything else (err set: a usage error). Read at each conv plan. */
long cuda_conv_backward_setting(ct_error *err);
size_t cuda_conv_gemm_workspace(const ct_conv_shape *s, int chunk);
void cuda_conv_gemm_backward(ct_cuda_impl *im, const ct_conv_shape *s, int chunk, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, void *workspace);
void cuda_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y);
void cuda_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                           const float *dy, float *dx);

/* dense_chain_cuda.cu: a dense network's training pass in one kernel */
int cuda_dense_chain_setting(ct_error *err);
void *cuda_dense_chain_plan(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err);
void cuda_dense_chain_plan_free(ct_backend *b, void *plan);
void cuda_dense_chain_train(ct_backend *b, void *plan, const ct_dense_chain *c, int rows);
/* loss_cuda.cu */
void cuda_softmax_xent(ct_backend *b, int rows, int classes, const float *logits, const int32_t *labels,
                       float grad_scale, float *dlogits, float *row_loss, float *row_correct);
void cuda_mse_onehot(ct_backend *b, int rows, int classes, const float *pred, const int32_t *labels,
                     float grad_scale, float *dpred, float *row_loss, float *row_correct);
void cuda_loss_accumulate(ct_backend *b, int rows, const float *row_loss, const float *row_correct, double *acc);
/* dropout_cuda.cu */
void cuda_dropout_forward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer, const ct_step_ctx *ctx,
                          const float *x, float *y);
void cuda_dropout_backward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                           const ct_step_ctx *ctx, const float *dy, float *dx);
/* gather_cuda.cu */
void cuda_gather_batch(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                       const ct_step_ctx *ctx, int rows, float *x, int32_t *labels);
/* step_cuda.cu: statistics, optimizer, advance, and the three as one */
void cuda_step_stats(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring);
void cuda_optimizer_step(ct_backend *b, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                         const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring);
void cuda_step_advance(ct_backend *b, ct_step_ctx *ctx);
void cuda_step_finish(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                      const ct_health_thresholds *th, ct_step_ctx *ctx, ct_step_record *ring);

#ifdef __cplusplus
}
#endif
#endif
