/* The backend vtable: the only door between host code and kernels.
 *
 * Host code (src/) owns the model, the data, the loop and the logs; it never
 * touches a float of a tensor and never asks which device it runs on. It calls
 * these operations on pointers obtained from `alloc`. The CPU backend
 * (kernels/cpu) is the reference; the CUDA backend (kernels/cuda) must agree
 * with it op by op (tests/parity).
 *
 * Conventions
 *  - Matrices are row-major float32. A dense layer's weight is [out, in]
 *    (PyTorch's layout), so Y[N,out] = X[N,in] * W^T + b.
 *  - Every pointer argument of an op is backend memory, except where a comment
 *    says "host", and except the argument structs (ds, a, cfg, buf, th): those
 *    are host structs, read when the op is called, whose pointer fields are
 *    backend memory. ctx and ring are always backend memory.
 *  - Ops are asynchronous with respect to the host on devices that can be;
 *    `download` and `sync` are the only points where the host waits.
 *  - Ops cannot fail on valid arguments; a device fault is fatal and reported
 *    with file, line and call by the backend itself.
 */
#ifndef CUTRAIN_BACKEND_H
#define CUTRAIN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/error.h"
#include "cutrain/optim.h"
#include "cutrain/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CT_DEVICE_CPU = 0, CT_DEVICE_CUDA = 1 } ct_device_kind;

typedef enum {
    CT_ACT_LINEAR = 0,
    CT_ACT_RELU,
    CT_ACT_SIGMOID,
    CT_ACT_TANH,
    CT_ACT_SOFTMAX, /* over each row */
} ct_activation;

typedef enum { CT_ELEM_U8 = 0x08, CT_ELEM_F32 = 0x0D } ct_elem_type; /* IDX type codes */

/* A dataset resident in backend memory. */
typedef struct ct_device_dataset {
    const void *images;     /* count x sample_elems of elem_type */
    const uint8_t *labels;  /* count                             */
    ct_elem_type elem_type;
    size_t count;
    size_t sample_elems;
    float scale;            /* applied while gathering (1/255 for MNIST bytes) */
} ct_device_dataset;

/* Where the step is, in backend memory. Every per-step value an op needs
 * (which batch to gather, the dropout stream, the record's step number and
 * ring slot) is read from here rather than passed by value, so one captured
 * step (a CUDA graph) replays correctly step after step; `step_advance`
 * moves it on, on the device, at the end of each step. */
typedef struct ct_step_ctx {
    uint64_t step;     /* global step, 1-based                          */
    uint32_t epoch;    /* 1-based                                       */
    uint32_t batch;    /* batch index within the epoch, 0-based         */
    uint32_t slot;     /* ring slot for this step's record              */
    uint32_t ring_len; /* slots in the ring; slot wraps to 0 after it   */
} ct_step_ctx;

/* Arguments of the step-statistics reduction. */
typedef struct ct_stats_args {
    const float *grads;        /* the gradient arena                          */
    size_t n;                  /* its length in floats                        */
    uint32_t n_layers;         /* parametric layers, <= CT_MAX_PARAM_LAYERS   */
    const size_t *layer_begin; /* host: n_layers+1 offsets into the arena     */
    const float *row_loss;     /* per-row loss of this batch                  */
    const float *row_correct;  /* per-row 1/0                                 */
    uint32_t rows;             /* real rows (0: empty batch)                  */
    ct_health_thresholds th;
} ct_stats_args;

/* The buffers an optimizer step works on. */
typedef struct ct_optim_buffers {
    float *params;
    const float *grads;
    float *state;   /* ct_optim_state_slots(cfg) * n floats, slot-major */
    uint64_t *t;    /* updates applied so far; the kernel increments it  */
    size_t n;
} ct_optim_buffers;

/* A 2-D convolution over NCHW tensors (row-major, batch outermost), with a
 * weight [k, c, r, s] (PyTorch's layout) and a bias [k]:
 *   y[n,k,p,q] = bias[k] + sum_{c,i,j} w[k,c,i,j] * x[n,c, p*stride - pad + i, q*stride - pad + j]
 * (zero outside the image), p < out_h = (h + 2 pad - r) / stride + 1, likewise q. */
typedef struct ct_conv_shape {
    int n;           /* batch rows this call works on (<= the planned maximum) */
    int c, h, w;     /* input channels, height, width */
    int k, r, s;     /* output channels, kernel height, kernel width */
    int stride, pad;
    int out_h, out_w;
} ct_conv_shape;

/* A network of dense layers only (flatten layers are views and do not
 * count), handed to a backend as one op: the whole forward, loss and
 * backward of a training step, and optionally the batch's gather before
 * them. Layer i maps dim[i] to dim[i+1] values per row: y_i = act_i(x_i
 * W_i^T + b_i), x_0 = x, x_{i+1} = y_i. The buffers are the model's own
 * (the same arenas the ops one by one would use), so the step statistics
 * and the optimizer that follow read the same places. */
#define CT_DENSE_CHAIN_MAX 8
typedef struct ct_dense_chain {
    int n_layers;                          /* 1 .. CT_DENSE_CHAIN_MAX                    */
    int dim[CT_DENSE_CHAIN_MAX + 1];       /* dim[0] inputs; dim[i+1] outputs of layer i */
    ct_activation act[CT_DENSE_CHAIN_MAX]; /* as applied (LINEAR for a fused softmax)    */
    int mse;                               /* 0: softmax cross-entropy on the last y     */
                                           /*    as logits; 1: MSE against one-hot       */
    float *x;                              /* [rows, dim[0]]                             */
    int32_t *labels;                       /* [rows]                                     */
    const float *w[CT_DENSE_CHAIN_MAX];    /* [dim[i+1], dim[i]]                         */
    const float *bias[CT_DENSE_CHAIN_MAX]; /* [dim[i+1]]                                 */
    float *dw[CT_DENSE_CHAIN_MAX], *dbias[CT_DENSE_CHAIN_MAX];
    float *y[CT_DENSE_CHAIN_MAX];          /* [rows, dim[i+1]]                           */
    float *dy[CT_DENSE_CHAIN_MAX];         /* [rows, dim[i+1]]                           */
    float *row_loss, *row_correct;         /* [rows]                                     */
    /* The gather, when gather_order is non-NULL: first x and labels as
     * gather_batch(&gather_ds, gather_order, gather_stride, gather_ctx, rows,
     * x, labels) assembles them (gather_ds.sample_elems == dim[0]); else x
     * and labels are inputs. */
    ct_device_dataset gather_ds;
    const int32_t *gather_order;
    size_t gather_stride;
    const ct_step_ctx *gather_ctx;
} ct_dense_chain;

typedef struct ct_backend ct_backend;

#define CT_MAX_FENCES 4

typedef struct ct_backend_ops {
    /* --- lifetime ----------------------------------------------------- */
    void (*destroy)(ct_backend *b); /* frees impl; NULL when there is none */

    /* --- memory ------------------------------------------------------- */
    /* NULL with err set (how much was asked, how much is free) on failure. */
    void *(*alloc)(ct_backend *b, size_t bytes, ct_error *err);
    void (*free)(ct_backend *b, void *p);
    void (*upload)(ct_backend *b, void *dst, const void *host_src, size_t bytes);
    void (*download)(ct_backend *b, void *host_dst, const void *src, size_t bytes);
    void (*zero)(ct_backend *b, void *dst, size_t bytes);
    void (*sync)(ct_backend *b);

    /* --- asynchronous read-back ---------------------------------------- */
    /* Host memory the device can copy into without staging (pinned). */
    void *(*host_alloc)(ct_backend *b, size_t bytes, ct_error *err);
    void (*host_free)(ct_backend *b, void *p);
    /* Queues a copy into host_alloc memory behind the work already queued;
     * the data is there once a later fence_wait on a fence set after it returns. */
    void (*download_async)(ct_backend *b, void *host_dst, const void *src, size_t bytes);
    /* Fence `id` (0 .. CT_MAX_FENCES-1) marks the current end of the queue;
     * fence_wait blocks the host until the work before that mark is done. */
    void (*fence)(ct_backend *b, int id);
    void (*fence_wait)(ct_backend *b, int id);

    /* --- capture and replay (optional: NULL where unsupported) --------- */
    /* Between capture_begin and capture_end, ops are recorded, not run;
     * capture_end returns a handle that graph_launch replays as a whole. */
    int (*capture_begin)(ct_backend *b, ct_error *err);
    void *(*capture_end)(ct_backend *b, ct_error *err);
    void (*graph_launch)(ct_backend *b, void *graph);
    void (*graph_destroy)(ct_backend *b, void *graph);

    /* --- dense algebra ------------------------------------------------ */
    /* C[m,n] = alpha * op(A) op(B) + beta * C, row-major; op(X) = X or X^T.
     * With beta == 0, C is not read (NaN in C does not propagate). */
    void (*gemm)(ct_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

    /* y[r,c] = act(y[r,c] + bias[c]) in place (bias may be NULL). */
    void (*bias_act_forward)(ct_backend *b, ct_activation act, int rows, int cols,
                             const float *bias, float *y);
    /* From the layer's output y and dL/dy (in dy), writes dL/dz into dy in
     * place and, when dbias is non-NULL, dbias[c] = sum_r dL/dz[r,c]
     * (overwritten, not accumulated). ReLU keeps NaN forward; its derivative
     * is 0 wherever y is not positive. */
    void (*bias_act_backward)(ct_backend *b, ct_activation act, int rows, int cols,
                              const float *y, float *dy, float *dbias);

    /* --- convolution and pooling ----------------------------------------- */
    /* Plans a convolution for batches of up to shape->n rows: chooses the
     * algorithm once (a deterministic one when `deterministic`), and says how
     * many bytes of workspace its calls need (*workspace_bytes; the caller
     * allocates it with the other arenas). Returns a plan handle (may be a
     * non-NULL dummy), or NULL with err set. */
    void *(*conv_plan)(ct_backend *b, const ct_conv_shape *shape, int deterministic, size_t *workspace_bytes,
                       ct_error *err);
    void (*conv_plan_free)(ct_backend *b, void *plan);
    /* y = conv(x, w) + bias (bias may be NULL). */
    void (*conv2d_forward)(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                           const float *bias, float *y, void *workspace);
    /* From dy: dw and dbias (overwritten; dbias may be NULL; zeroed when
     * n == 0) and, when dx is non-NULL, dx (overwritten). Every conv call's
     * shape equals its plan's except n (0 up to the planned maximum), and its
     * workspace has the plan's bytes (NULL only when that is 0). */
    void (*conv2d_backward)(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *dbias, void *workspace);
    /* Max pooling over size x size windows with stride size, no padding, over
     * NCHW [n, c, h, w] -> [n, c, h/size, w/size] (floor). A NaN in a window
     * makes that output NaN. */
    void (*maxpool_forward)(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y);
    /* dx (overwritten) gets dy at the first position (row-major within the
     * window) where x equals the window's max (where the max is NaN: the
     * first NaN, as PyTorch routes it); 0 elsewhere. */
    void (*maxpool_backward)(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                             const float *dy, float *dx);

    /* --- a dense network's training pass as one op (optional) ---------- */
    /* Plans dense_chain_train for batches of up to max_rows rows. Returns a
     * handle; NULL with err untouched when the backend does not offer the op
     * for this chain (the model then calls the ops one by one); NULL with
     * err set when a setting the backend reads is wrong. The entries may
     * be NULL where a backend has no such op. */
    void *(*dense_chain_plan)(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err);
    void (*dense_chain_plan_free)(ct_backend *b, void *plan);
    /* What the ops one by one compute for 1 <= rows <= max_rows: the
     * gather when the description asks for it (gather_order), then for each
     * layer gemm + bias_act_forward; then softmax_xent (or mse_onehot) with
     * grad_scale (float)(1/rows) into the last dy; then, last layer first,
     * bias_act_backward (dy becomes dL/dz, dbias), dw = dz^T x and, for
     * i > 0, dy[i-1] = dz W. Writes every y, dy, dw, dbias, row_loss and
     * row_correct; values agree with the ops within their tolerances. */
    void (*dense_chain_train)(ct_backend *b, void *plan, const ct_dense_chain *c, int rows);

    /* --- losses: value and gradient in one pass ------------------------ */
    /* Softmax cross-entropy on logits with integer labels, stable for any
     * logit size. row_loss[r] = logsumexp(z_r) - z_r[label]; row_correct[r]
     * = argmax==label (ties go to the lowest index); dlogits (may be NULL) =
     * grad_scale*(softmax - onehot). A label outside [0, classes) is never
     * read through: its row loss is NaN, correct 0, gradient row 0. */
    void (*softmax_xent)(ct_backend *b, int rows, int classes, const float *logits,
                         const int32_t *labels, float grad_scale, float *dlogits,
                         float *row_loss, float *row_correct);
    /* Mean squared error against one-hot targets (Keras: mean over classes).
     * row_loss[r] = mean_c (p - t)^2; dpred = grad_scale * 2 (p - t) / classes. */
    void (*mse_onehot)(ct_backend *b, int rows, int classes, const float *pred,
                       const int32_t *labels, float grad_scale, float *dpred,
                       float *row_loss, float *row_correct);
    /* acc[0] += sum row_loss, acc[1] += sum row_correct (acc: 2 doubles);
     * the batch is summed first (in double, row order), then added. */
    void (*loss_accumulate)(ct_backend *b, int rows, const float *row_loss,
                            const float *row_correct, double *acc);

    /* --- dropout (inverted; the mask is recomputed, never stored) ------ */
    /* keep element i when ct_rng_uniform(seed, stream, i) >= rate, scaled by
     * (float)(1/(1-rate)) rounded once; rate 0 is an exact copy; in place is
     * allowed. The model validates rate in [0, 1). */
    /* The stream is CT_STREAM_DROPOUT(ctx->step, layer). */
    void (*dropout_forward)(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                            const ct_step_ctx *ctx, const float *x, float *y);
    void (*dropout_backward)(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                             const ct_step_ctx *ctx, const float *dy, float *dx);

    /* --- data --------------------------------------------------------- */
    /* With indices = order + ctx->batch * stride:
     * x[r,:] = scale * images[indices[r],:], labels[r] = ds.labels[indices[r]].
     * An index outside the set gives a NaN row and label -1, so the step's
     * health flags catch it instead of a read out of bounds. */
    void (*gather_batch)(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                         const ct_step_ctx *ctx, int rows, float *x, int32_t *labels);

    /* --- the step ----------------------------------------------------- */
    /* One pass over the gradients and the per-row losses that fills the
     * record ring[ctx->slot] (step and epoch from ctx): loss, accuracy,
     * norms, counts and the flags NONFINITE_LOSS, NONFINITE_GRAD, ZERO_GRAD,
     * EXPLODING_GRAD, EMPTY_BATCH. Deterministic: fixed order, no float atomics. */
    void (*step_stats)(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring);
    /* The optimizer over the whole arena. Reads rec = ring[ctx->slot]
     * (grad_sumsq for clipping, flags for skipping), writes param_sumsq,
     * update_sumsq, clip_scale and the flags SKIPPED_UPDATE, CLIPPED,
     * VANISHING_UPDATE. An empty batch and, when cfg->skip_nonfinite, a
     * non-finite step leave w, state and *t untouched. */
    void (*optimizer_step)(ct_backend *b, const ct_optim_config *cfg,
                           const ct_optim_buffers *buf, const ct_health_thresholds *th,
                           const ct_step_ctx *ctx, ct_step_record *ring);
    /* ctx->step += 1, ctx->batch += 1, ctx->slot = (slot + 1) % ring_len. */
    void (*step_advance)(ct_backend *b, ct_step_ctx *ctx);
    /* step_stats(a), optimizer_step(cfg, buf, th) and step_advance, in that
     * order, as one op: the same record, parameters, state, t and ctx bits
     * as the three calls. A backend may run them as one kernel (the CUDA
     * backend does for a small arena: step_finish_kernel.cuh). */
    void (*step_finish)(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg,
                        const ct_optim_buffers *buf, const ct_health_thresholds *th, ct_step_ctx *ctx,
                        ct_step_record *ring);
} ct_backend_ops;

struct ct_backend {
    const ct_backend_ops *ops;
    ct_device_kind kind;
    char description[160]; /* e.g. "cpu (OpenBLAS, 2 threads)" */
    int threads;           /* CPU threads used by the backend   */
    void *impl;
};

/* Creates a backend of `kind`; threads <= 0 means the CPUs this process may
 * run on, up to OpenBLAS's limit (CPU). */
ct_backend *ct_backend_create(ct_device_kind kind, int threads, ct_error *err);
/* Last: models and uploaded data free their memory through the backend, so
 * ct_model_free and ct_device_data_free of everything built on it come
 * first (a model freed after its backend is a use after free). */
void ct_backend_destroy(ct_backend *b);

/* Per-backend constructors, used by ct_backend_create. */
ct_backend *ct_backend_cpu_create(int threads, ct_error *err);
ct_backend *ct_backend_cuda_create(ct_error *err);
/* 1 when a CUDA device is usable; else 0 and why in `reason`. */
int ct_cuda_available(char *reason, size_t reason_len);

const char *ct_activation_name(ct_activation act);
/* -1 when unknown. */
int ct_activation_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
