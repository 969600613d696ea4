/* The CPU backend's operations: the reference every other backend is tested
 * against. Each function implements the vtable entry of the same name in
 * include/cutrain/backend.h (see the contracts there); backend_cpu.c puts
 * them in the table. They accept b == NULL, so tests can call them directly.
 * Reductions run in a fixed order with double accumulators, so results are
 * bit-reproducible for a given input; GEMM is reproducible for a given
 * OpenBLAS build, CPU kernel and thread count. */
#ifndef CUTRAIN_KERNELS_CPU_OPS_H
#define CUTRAIN_KERNELS_CPU_OPS_H

#include "cutrain/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* gemm_cpu.c; cpu_gemm_loop is the plain-loop GEMM used when no CBLAS was
 * found (m, n, k > 0; tested in every build). */
void cpu_gemm_loop(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
void cpu_gemm(ct_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* activation_cpu.c */
void cpu_bias_act_forward(ct_backend *b, ct_activation act, int rows, int cols,
                          const float *bias, float *y);
void cpu_bias_act_backward(ct_backend *b, ct_activation act, int rows, int cols,
                           const float *y, float *dy, float *dbias);

/* conv_cpu.c, pool_cpu.c */
void *cpu_conv_plan(ct_backend *b, const ct_conv_shape *shape, int deterministic, size_t *workspace_bytes,
                    ct_error *err);
void cpu_conv_plan_free(ct_backend *b, void *plan);
/* The plan with a caller-chosen number of samples per im2col chunk (0: the
 * default), so tests can drive the multi-chunk paths at small shapes. */
void *cpu_conv_plan_chunked(ct_backend *b, const ct_conv_shape *shape, int chunk, size_t *workspace_bytes,
                            ct_error *err);
void cpu_conv2d_forward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                        const float *bias, float *y, void *workspace);
void cpu_conv2d_backward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *dbias, void *workspace);
void cpu_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y);
void cpu_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                          const float *dy, float *dx);

/* loss_cpu.c */
void cpu_softmax_xent(ct_backend *b, int rows, int classes, const float *logits,
                      const int32_t *labels, float grad_scale, float *dlogits, float *row_loss,
                      float *row_correct);
void cpu_mse_onehot(ct_backend *b, int rows, int classes, const float *pred,
                    const int32_t *labels, float grad_scale, float *dpred, float *row_loss,
                    float *row_correct);
void cpu_loss_accumulate(ct_backend *b, int rows, const float *row_loss,
                         const float *row_correct, double *acc);

/* dense_chain_cpu.c: the ops one by one, as src/model/model.c composes them */
void *cpu_dense_chain_plan(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err);
void cpu_dense_chain_plan_free(ct_backend *b, void *plan);
void cpu_dense_chain_train(ct_backend *b, void *plan, const ct_dense_chain *c, int rows);

/* dropout_cpu.c */
void cpu_dropout_forward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                         const ct_step_ctx *ctx, const float *x, float *y);
void cpu_dropout_backward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                          const ct_step_ctx *ctx, const float *dy, float *dx);

/* gather_cpu.c */
void cpu_gather_batch(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                      const ct_step_ctx *ctx, int rows, float *x, int32_t *labels);

/* stats_cpu.c */
void cpu_step_stats(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring);

/* optim_cpu.c */
void cpu_optimizer_step(ct_backend *b, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                        const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring);

/* backend_cpu.c */
void cpu_step_advance(ct_backend *b, ct_step_ctx *ctx);
void cpu_step_finish(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                     const ct_health_thresholds *th, ct_step_ctx *ctx, ct_step_record *ring);

#ifdef __cplusplus
}
#endif
#endif
