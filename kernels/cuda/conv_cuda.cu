/* 2-D convolution on cuDNN (the legacy convolution API of cuDNN 9):
 *
 *     y[n,k,p,q] = bias[k] + sum_{c,i,j} w[k,c,i,j] * x[n,c, p*stride - pad + i, q*stride - pad + j]
 *
 * NCHW float tensors, weight [k,c,r,s]: CUDNN_CROSS_CORRELATION (no kernel
 * flip) is exactly this formula, the CPU's and PyTorch's.
 *
 * Numerics, chosen for parity with the CPU reference over speed, like cuBLAS
 * in backend_cuda.cu:
 *  - CUDNN_FMA_MATH on the convolution descriptor. In cuDNN 8/9,
 *    CUDNN_DEFAULT_MATH *permits* TF32 tensor-core kernels for float data on
 *    Ampere and later; CUDNN_FMA_MATH restricts cuDNN to kernels that use
 *    FMA instructions, i.e. plain fp32 (cudnnMathType_t in the cuDNN 9
 *    graph-library reference).
 *    The descriptor keeps FMA math for good: an algorithm that cuDNN's list
 *    reports with a tensor-op math type is skipped, never switched to.
 *  - Only the GEMM-family algorithms: forward IMPLICIT_GEMM,
 *    IMPLICIT_PRECOMP_GEMM, GEMM, DIRECT; backward ALGO_0/ALGO_1 (and filter
 *    ALGO_3). Each is a plain fp32 sum of products, so it differs from the
 *    CPU only in summation order and FMA rounding (the dot-product error
 *    bound). FFT and Winograd are left out: their transforms add an error
 *    that depends on the spread of the inputs, which a parity tolerance
 *    cannot bound as simply.
 *  - With `deterministic`, only algorithms cuDNN reports as
 *    CUDNN_DETERMINISTIC, and never the ones documented as using atomics
 *    (backward data ALGO_0, backward filter ALGO_0 and ALGO_3). Forward
 *    algorithms and cudnnConvolutionBackwardBias are deterministic.
 *  - Every output is written with beta = 0: cuDNN does not read it, so NaN
 *    left in y, dx, dw or dbias does not propagate ("overwritten").
 *
 * The plan (cuda_conv_plan) builds the descriptors for the largest batch and
 * chooses the three algorithms once, from cuDNN's heuristic ranking
 * (cudnnGet*Algorithm_v7: host-side heuristics that run no kernel;
 * Find* would time every candidate on the GPU, with scratch memory): the first
 * acceptable one whose workspace is at most CT_CONV_WORKSPACE_CAP. The
 * workspace the caller allocates is the largest of the three.
 *
 * Smaller batches (the last partial batch, evaluation chunks): the x and y
 * descriptors are re-set to the call's n (cudnnSetTensor4dDescriptor is
 * host-only: no sync, no allocation, legal during stream capture) and the
 * planned algorithms are kept - same algorithm, same numerics - after
 * cudnnGet*WorkspaceSize confirms that each still fits in the planned
 * workspace and still supports the shape. Usually it does (the workspace of
 * these algorithms does not grow as n shrinks), but cuDNN 9 tunes each
 * algorithm's kernel per shape, so it is checked rather than assumed; when
 * one does not fit, the heuristic list for that n is searched again under
 * the planned workspace as the cap. The result for the most recent other n
 * is cached, so a steady stream of equal batches re-queries nothing.
 *
 * The backward can run instead as im2col + cuBLAS (conv_gemm_cuda.cu), when
 * CUTRAIN_CUDA_CONV_BACKWARD=gemm (or gemm:N) at plan time; the forward and the bias
 * gradient stay cuDNN's, and the workspace covers both.
 *
 * Every call is queued on the handle's stream (impl->stream); nothing here
 * syncs or allocates device memory (the workspace is the caller's). A plan is not
 * thread-safe (its descriptors follow the batch size of each call); like the
 * backend, it is driven by one thread.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

/* The most workspace any one algorithm may take at plan time. */
#define CT_CONV_WORKSPACE_CAP ((size_t)256 << 20)

typedef struct conv_algos {
    int n; /* batch rows these were checked for; 0: none yet */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
} conv_algos;

typedef struct conv_plan {
    ct_conv_shape shape;    /* as planned; shape.n is the largest batch */
    int deterministic;
    size_t workspace_bytes; /* told to the caller; every call fits in it */
    cudnnTensorDescriptor_t x_desc, y_desc, bias_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
    int desc_n;             /* the batch rows x_desc and y_desc describe now */
    conv_algos planned;     /* for shape.n, chosen by cuda_conv_plan */
    conv_algos other;       /* for the most recent other batch size */
    int gemm_chunk;         /* > 0: the backward runs as im2col + cuBLAS (conv_gemm_cuda.cu) */
} conv_plan;

/* Which backward CUTRAIN_CUDA_CONV_BACKWARD asks for, read at plan time (once
 * per model build): 0 for cuDNN (unset or "cudnn"); for im2col + cuBLAS
 * ("gemm", or "gemm:N" to take at most N samples per pass, which the tests
 * use to cover several passes at small shapes) the most samples per pass;
 * -1 for anything else. cuDNN stays the default until the two have been
 * measured against each other on a GPU (docs/gpu.md). */
long cuda_conv_backward_setting(ct_error *err) {
    const char *v = getenv("CUTRAIN_CUDA_CONV_BACKWARD");
    if (!v || !*v || strcmp(v, "cudnn") == 0) return 0;
    if (strcmp(v, "gemm") == 0) return INT_MAX;
    if (strncmp(v, "gemm:", 5) == 0 && v[5] >= '1' && v[5] <= '9') {
        char *end = NULL;
        const long n = strtol(v + 5, &end, 10);
        if (*end == '\0' && n >= 1 && n < INT_MAX) return n;
    }
    ct_fail(err, CT_EXIT_USAGE,
            "cuda: CUTRAIN_CUDA_CONV_BACKWARD=%.40s: expected cudnn, gemm or gemm:N (N >= 1 samples per pass)", v);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Which algorithms are acceptable                                           */

/* Plain fp32: the descriptor is CUDNN_FMA_MATH; an entry cuDNN ranks with a
 * tensor-op math type would not be what runs, so it is skipped. */
static int math_ok(cudnnMathType_t m) {
    return m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

/* The GEMM family (see the top of the file); all forward ones are deterministic. */
static int fwd_algo_ok(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

/* ALGO_0 accumulates with atomics (cudnn_ops.h: "non-deterministic"). */
static int bwd_data_algo_ok(cudnnConvolutionBwdDataAlgo_t a, int deterministic) {
    if (a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) return 1;
    return !deterministic && a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
}

/* ALGO_0 and ALGO_3 accumulate with atomics. */
static int bwd_filter_algo_ok(cudnnConvolutionBwdFilterAlgo_t a, int deterministic) {
    if (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) return 1;
    return !deterministic && (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3);
}

/* ------------------------------------------------------------------------ */
/* Choosing, for the descriptors as they are set now                         */

/* Each pick_* walks cuDNN's heuristic ranking (best first), then a fallback
 * that is always deterministic and normally always supported (in case the
 * ranking leaves it out), and takes the first candidate that is acceptable,
 * supported for this shape (its workspace query succeeds) and needs at most
 * `cap` bytes. Returns 0 and sets *algo, *ws; -1 when none qualifies. The
 * queries are host-side only. */

static int pick_fwd(cudnnHandle_t h, const conv_plan *p, size_t cap, cudnnConvolutionFwdAlgo_t *algo, size_t *ws) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    if (cudnnGetConvolutionForwardAlgorithm_v7(h, p->x_desc, p->w_desc, p->conv_desc, p->y_desc,
                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                               perf) != CUDNN_STATUS_SUCCESS)
        got = 0;
    if (got > CUDNN_CONVOLUTION_FWD_ALGO_COUNT) got = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    for (int i = 0; i <= got; i++) {
        cudnnConvolutionFwdAlgo_t a = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM; /* i == got: the fallback */
        if (i < got) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || !math_ok(perf[i].mathType)) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            a = perf[i].algo;
        }
        if (!fwd_algo_ok(a)) continue;
        size_t need = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(h, p->x_desc, p->w_desc, p->conv_desc, p->y_desc, a, &need) !=
            CUDNN_STATUS_SUCCESS)
            continue;
        if (need > cap) continue;
        *algo = a;
        *ws = need;
        return 0;
    }
    return -1;
}

static int pick_bwd_data(cudnnHandle_t h, const conv_plan *p, size_t cap, cudnnConvolutionBwdDataAlgo_t *algo,
                         size_t *ws) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int got = 0;
    if (cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w_desc, p->y_desc, p->conv_desc, p->x_desc,
                                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got,
                                                    perf) != CUDNN_STATUS_SUCCESS)
        got = 0;
    if (got > CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT) got = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    for (int i = 0; i <= got; i++) {
        cudnnConvolutionBwdDataAlgo_t a = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1; /* i == got: the fallback */
        if (i < got) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || !math_ok(perf[i].mathType)) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            a = perf[i].algo;
        }
        if (!bwd_data_algo_ok(a, p->deterministic)) continue;
        size_t need = 0;
        if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w_desc, p->y_desc, p->conv_desc, p->x_desc, a,
                                                         &need) != CUDNN_STATUS_SUCCESS)
            continue;
        if (need > cap) continue;
        *algo = a;
        *ws = need;
        return 0;
    }
    return -1;
}

static int pick_bwd_filter(cudnnHandle_t h, const conv_plan *p, size_t cap, cudnnConvolutionBwdFilterAlgo_t *algo,
                           size_t *ws) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    if (cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x_desc, p->y_desc, p->conv_desc, p->w_desc,
                                                      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got,
                                                      perf) != CUDNN_STATUS_SUCCESS)
        got = 0;
    if (got > CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT) got = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    for (int i = 0; i <= got; i++) {
        cudnnConvolutionBwdFilterAlgo_t a = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1; /* i == got: the fallback */
        if (i < got) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || !math_ok(perf[i].mathType)) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            a = perf[i].algo;
        }
        if (!bwd_filter_algo_ok(a, p->deterministic)) continue;
        size_t need = 0;
        if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x_desc, p->y_desc, p->conv_desc, p->w_desc, a,
                                                           &need) != CUDNN_STATUS_SUCCESS)
            continue;
        if (need > cap) continue;
        *algo = a;
        *ws = need;
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Plan                                                                      */

static void free_plan(conv_plan *p) {
    if (!p) return;
    /* Errors ignored: this also unwinds a half-built plan. */
    if (p->conv_desc) (void)cudnnDestroyConvolutionDescriptor(p->conv_desc);
    if (p->w_desc) (void)cudnnDestroyFilterDescriptor(p->w_desc);
    if (p->bias_desc) (void)cudnnDestroyTensorDescriptor(p->bias_desc);
    if (p->y_desc) (void)cudnnDestroyTensorDescriptor(p->y_desc);
    if (p->x_desc) (void)cudnnDestroyTensorDescriptor(p->x_desc);
    free(p);
}

/* Set-up steps that may fail: the failure becomes err and a NULL plan. */
#define PLAN_CUDNN(call)                                                                                    \
    do {                                                                                                    \
        cudnnStatus_t d_ = (call);                                                                          \
        if (d_ != CUDNN_STATUS_SUCCESS) {                                                                   \
            ct_fail(err, CT_EXIT_FAILURE, "cuda: planning a convolution: %s failed: %s", #call,            \
                    cudnnGetErrorString(d_));                                                               \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)

static int fits_int(size_t a, size_t b, size_t c, size_t d) {
    /* Each factor is < 2^31, so the products below cannot wrap a 64-bit size_t
     * before the comparison fails. */
    const size_t lim = (size_t)INT_MAX;
    if (a > lim || b > lim || c > lim || d > lim) return 0;
    if (a * b > lim) return 0;
    if (a * b * c > lim) return 0;
    return a * b * c * d <= lim;
}

void *cuda_conv_plan(ct_backend *b, const ct_conv_shape *shape, int deterministic, size_t *workspace_bytes,
                     ct_error *err) {
    ct_cuda_impl *im = ct_cuda(b);
    if (workspace_bytes) *workspace_bytes = 0;
    if (!shape || !workspace_bytes) {
        ct_fail(err, CT_EXIT_FAILURE, "cuda: conv_plan: no shape or no workspace_bytes");
        return NULL;
    }
    const ct_conv_shape *s = shape;
    if (s->n < 0 || s->c < 1 || s->h < 1 || s->w < 1 || s->k < 1 || s->r < 1 || s->s < 1 || s->stride < 1 ||
        s->pad < 0 || s->h + 2 * s->pad < s->r || s->w + 2 * s->pad < s->s ||
        s->out_h != (s->h + 2 * s->pad - s->r) / s->stride + 1 ||
        s->out_w != (s->w + 2 * s->pad - s->s) / s->stride + 1) {
        ct_fail(err, CT_EXIT_FAILURE,
                "cuda: conv_plan: invalid shape n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d out=%dx%d", s->n,
                s->c, s->h, s->w, s->k, s->r, s->s, s->stride, s->pad, s->out_h, s->out_w);
        return NULL;
    }
    /* Plan for at least one row: cuDNN descriptors need n >= 1, and an
     * n == 0 call never reaches cuDNN. */
    const int n_max = s->n > 0 ? s->n : 1;
    /* cuDNN's legacy API indexes a tensor with 32-bit integers. */
    if (!fits_int((size_t)n_max, (size_t)s->c, (size_t)s->h, (size_t)s->w) ||
        !fits_int((size_t)n_max, (size_t)s->k, (size_t)s->out_h, (size_t)s->out_w) ||
        !fits_int((size_t)s->k, (size_t)s->c, (size_t)s->r, (size_t)s->s)) {
        ct_fail(err, CT_EXIT_FAILURE,
                "cuda: conv_plan: a tensor of this convolution has 2^31 elements or more (n=%d c=%d h=%d w=%d k=%d)",
                s->n, s->c, s->h, s->w, s->k);
        return NULL;
    }

    conv_plan *p = (conv_plan *)calloc(1, sizeof *p);
    if (!p) {
        ct_fail(err, CT_EXIT_FAILURE, "cuda: out of memory planning a convolution");
        return NULL;
    }
    p->shape = *s;
    p->shape.n = n_max;
    p->deterministic = deterministic ? 1 : 0;

    PLAN_CUDNN(cudnnCreateTensorDescriptor(&p->x_desc));
    PLAN_CUDNN(cudnnCreateTensorDescriptor(&p->y_desc));
    PLAN_CUDNN(cudnnCreateTensorDescriptor(&p->bias_desc));
    PLAN_CUDNN(cudnnCreateFilterDescriptor(&p->w_desc));
    PLAN_CUDNN(cudnnCreateConvolutionDescriptor(&p->conv_desc));

    PLAN_CUDNN(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n_max, s->c, s->h, s->w));
    PLAN_CUDNN(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n_max, s->k, s->out_h,
                                          s->out_w));
    PLAN_CUDNN(cudnnSetTensor4dDescriptor(p->bias_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s->k, 1, 1));
    PLAN_CUDNN(cudnnSetFilter4dDescriptor(p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->k, s->c, s->r, s->s));
    PLAN_CUDNN(cudnnSetConvolution2dDescriptor(p->conv_desc, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    PLAN_CUDNN(cudnnSetConvolutionMathType(p->conv_desc, CUDNN_FMA_MATH));
    p->desc_n = n_max;

    {
        /* cuDNN must agree with the shape's output size (the formula in backend.h). */
        int on = 0, ok = 0, oh = 0, ow = 0;
        PLAN_CUDNN(cudnnGetConvolution2dForwardOutputDim(p->conv_desc, p->x_desc, p->w_desc, &on, &ok, &oh, &ow));
        if (on != n_max || ok != s->k || oh != s->out_h || ow != s->out_w) {
            ct_fail(err, CT_EXIT_FAILURE,
                    "cuda: conv_plan: cuDNN computes an output of %dx%dx%dx%d, the shape says %dx%dx%dx%d", on, ok,
                    oh, ow, n_max, s->k, s->out_h, s->out_w);
            goto fail;
        }
    }

    {
        const char *setting = getenv("CUTRAIN_CUDA_CONV_BACKWARD");
        const long choice = cuda_conv_backward_setting(err);
        if (choice < 0) goto fail;
        /* The gemm backward runs no cuDNN backward algorithm, so it needs none. */
        size_t ws_fwd = 0, ws_data = 0, ws_filter = 0;
        const char *which = NULL;
        if (pick_fwd(im->cudnn, p, CT_CONV_WORKSPACE_CAP, &p->planned.fwd, &ws_fwd) != 0)
            which = "forward";
        else if (choice == 0 &&
                 pick_bwd_data(im->cudnn, p, CT_CONV_WORKSPACE_CAP, &p->planned.bwd_data, &ws_data) != 0)
            which = "backward-data";
        else if (choice == 0 &&
                 pick_bwd_filter(im->cudnn, p, CT_CONV_WORKSPACE_CAP, &p->planned.bwd_filter, &ws_filter) != 0)
            which = "backward-filter";
        if (which) {
            ct_fail(err, CT_EXIT_FAILURE,
                    "cuda: conv_plan: cuDNN offers no %sGEMM-family fp32 %s algorithm within %zu MiB of workspace "
                    "for n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d",
                    p->deterministic ? "deterministic " : "", which, CT_CONV_WORKSPACE_CAP >> 20,
                    n_max, s->c, s->h, s->w, s->k, s->r, s->s, s->stride, s->pad);
            goto fail;
        }
        size_t ws = ws_fwd;
        if (ws_data > ws) ws = ws_data;
        if (ws_filter > ws) ws = ws_filter;
        if (choice > 0) {
            p->gemm_chunk = cuda_conv_gemm_chunk(&p->shape, CT_CONV_WORKSPACE_CAP);
            if (p->gemm_chunk > choice) p->gemm_chunk = (int)choice;
            if (p->gemm_chunk < 1) {
                ct_fail(err, CT_EXIT_FAILURE,
                        "cuda: CUTRAIN_CUDA_CONV_BACKWARD=%.40s: one sample of this convolution needs more than "
                        "the %zu MiB workspace cap (c=%d h=%d w=%d k=%d r=%d s=%d); unset it to use cuDNN",
                        setting, CT_CONV_WORKSPACE_CAP >> 20, s->c, s->h, s->w, s->k, s->r, s->s);
                goto fail;
            }
            const size_t ws_gemm = cuda_conv_gemm_workspace(&p->shape, p->gemm_chunk);
            if (ws_gemm > ws) ws = ws_gemm;
        }
        p->workspace_bytes = ws;
        p->planned.n = n_max;
    }

    *workspace_bytes = p->workspace_bytes;
    return p;

fail:
    free_plan(p);
    return NULL;
}

void cuda_conv_plan_free(ct_backend *b, void *plan) { free_plan((conv_plan *)plan); }

/* ------------------------------------------------------------------------ */
/* Per call                                                                  */

/* A misuse of the plan by the caller: fatal, like a device fault. */
#define CONV_FATAL(what, op) ct_cuda_fatal(what, op, __FILE__, __LINE__)

/* Points the x and y descriptors at a batch of shape->n rows (1 ..
 * planned) and returns the algorithms to use for it, all fitting in the
 * planned workspace. Host-side only. */
static const conv_algos *use_batch(ct_cuda_impl *im, conv_plan *p, const ct_conv_shape *shape, const char *op) {
    const ct_conv_shape *q = &p->shape;
    const int n = shape->n;
    if (n < 1 || n > q->n)
        CONV_FATAL("batch rows outside 1 .. the planned maximum", op);
    if (shape->c != q->c || shape->h != q->h || shape->w != q->w || shape->k != q->k || shape->r != q->r ||
        shape->s != q->s || shape->stride != q->stride || shape->pad != q->pad || shape->out_h != q->out_h ||
        shape->out_w != q->out_w)
        CONV_FATAL("convolution shape differs from its plan", op);

    if (p->desc_n != n) {
        CT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, q->c, q->h, q->w));
        CT_CUDNN_CHECK(
            cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, q->k, q->out_h, q->out_w));
        p->desc_n = n;
    }
    if (n == p->planned.n) return &p->planned;
    if (n == p->other.n) return &p->other;

    /* A new batch size: keep each planned algorithm if it still supports
     * this shape within the planned workspace, else search again under it. */
    cudnnHandle_t h = im->cudnn;
    const size_t cap = p->workspace_bytes;
    conv_algos a = p->planned;
    size_t need = 0;
    if (cudnnGetConvolutionForwardWorkspaceSize(h, p->x_desc, p->w_desc, p->conv_desc, p->y_desc, a.fwd, &need) !=
            CUDNN_STATUS_SUCCESS ||
        need > cap) {
        if (pick_fwd(h, p, cap, &a.fwd, &need) != 0)
            CONV_FATAL("no forward algorithm for this batch size fits the planned workspace", op);
    }
    if (p->gemm_chunk > 0) goto done; /* the gemm backward uses no cuDNN backward algorithm */
    if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w_desc, p->y_desc, p->conv_desc, p->x_desc, a.bwd_data,
                                                     &need) != CUDNN_STATUS_SUCCESS ||
        need > cap) {
        if (pick_bwd_data(h, p, cap, &a.bwd_data, &need) != 0)
            CONV_FATAL("no backward-data algorithm for this batch size fits the planned workspace", op);
    }
    if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x_desc, p->y_desc, p->conv_desc, p->w_desc,
                                                       a.bwd_filter, &need) != CUDNN_STATUS_SUCCESS ||
        need > cap) {
        if (pick_bwd_filter(h, p, cap, &a.bwd_filter, &need) != 0)
            CONV_FATAL("no backward-filter algorithm for this batch size fits the planned workspace", op);
    }
done:
    a.n = n;
    p->other = a;
    return &p->other;
}

static conv_plan *checked_plan(void *plan, const ct_conv_shape *shape, const void *workspace, const char *op) {
    conv_plan *p = (conv_plan *)plan;
    if (!p || !shape) CONV_FATAL("no plan or no shape", op);
    if (p->workspace_bytes && !workspace) CONV_FATAL("no workspace for a plan that needs one", op);
    return p;
}

void cuda_conv2d_forward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                         const float *bias, float *y, void *workspace) {
    ct_cuda_impl *im = ct_cuda(b);
    conv_plan *p = checked_plan(plan, shape, workspace, "cuda_conv2d_forward");
    if (shape->n == 0) return; /* y is empty */
    const conv_algos *a = use_batch(im, p, shape, "cuda_conv2d_forward");
    const float one = 1.0f, zero = 0.0f; /* host scalars, read at call time */
    CT_CUDNN_CHECK(cudnnConvolutionForward(im->cudnn, &one, p->x_desc, x, p->w_desc, w, p->conv_desc, a->fwd,
                                           workspace, p->workspace_bytes, &zero, p->y_desc, y));
    /* y = 1 * bias (broadcast over n, p, q) + 1 * y: one fp32 add per element. */
    if (bias) CT_CUDNN_CHECK(cudnnAddTensor(im->cudnn, &one, p->bias_desc, bias, &one, p->y_desc, y));
}

void cuda_conv2d_backward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *dbias, void *workspace) {
    ct_cuda_impl *im = ct_cuda(b);
    conv_plan *p = checked_plan(plan, shape, workspace, "cuda_conv2d_backward");
    if (shape->n == 0) {
        /* An empty batch: dw and dbias are sums over nothing, i.e. 0 (dx is empty). */
        const ct_conv_shape *q = &p->shape;
        if (dw)
            CT_CUDA_CHECK(cudaMemsetAsync(
                dw, 0, (size_t)q->k * (size_t)q->c * (size_t)q->r * (size_t)q->s * sizeof(float), im->stream));
        if (dbias) CT_CUDA_CHECK(cudaMemsetAsync(dbias, 0, (size_t)q->k * sizeof(float), im->stream));
        return;
    }
    const conv_algos *a = use_batch(im, p, shape, "cuda_conv2d_backward");
    const float one = 1.0f, zero = 0.0f;
    if (dbias) CT_CUDNN_CHECK(cudnnConvolutionBackwardBias(im->cudnn, &one, p->y_desc, dy, &zero, p->bias_desc, dbias));
    if (p->gemm_chunk > 0) {
        cuda_conv_gemm_backward(im, shape, p->gemm_chunk, x, w, dy, dx, dw, workspace);
        return;
    }
    if (dw)
        CT_CUDNN_CHECK(cudnnConvolutionBackwardFilter(im->cudnn, &one, p->x_desc, x, p->y_desc, dy, p->conv_desc,
                                                      a->bwd_filter, workspace, p->workspace_bytes, &zero, p->w_desc,
                                                      dw));
    /* After the filter gradient on the same stream: they share the workspace. */
    if (dx)
        CT_CUDNN_CHECK(cudnnConvolutionBackwardData(im->cudnn, &one, p->w_desc, w, p->y_desc, dy, p->conv_desc,
                                                    a->bwd_data, workspace, p->workspace_bytes, &zero, p->x_desc, dx));
}
