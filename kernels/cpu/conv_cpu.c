/* 2-D convolution on the CPU: im2col, then one GEMM per chunk of samples.
 *
 * Index conventions (NCHW, row-major, batch outermost; P = out_h, Q = out_w,
 * CRS = C*R*S, PQ = P*Q):
 *     x [N, C, H, W]   w [K, C, R, S] (read as a [K, CRS] matrix)   bias [K]
 *     y [N, K, P, Q]
 *     y[n,k,p,q] = bias[k] + sum_{c,i,j} w[k,c,i,j] * x[n,c, p*st - pad + i, q*st - pad + j]
 * with x zero outside the image.
 *
 * im2col lays a chunk of B samples n0 .. n0+B-1 out as a [CRS, B*PQ] matrix
 *     col[(c*R + i)*S + j,  b*PQ + p*Q + q] = x[n0+b, c, p*st - pad + i, q*st - pad + j]
 * so that the convolution of the whole chunk is one product:
 *     forward    yt[K, B*PQ]   = w[K, CRS] * col[CRS, B*PQ]
 *                y[n0+b, k, :] = yt[k, b*PQ .. b*PQ+PQ-1] + bias[k]
 *     backward   dyt[K, B*PQ]  gathered from dy the same way
 *                dw[K, CRS]   += dyt * col^T         (chunks in ascending n0)
 *                dcol          = w^T * dyt           [CRS, B*PQ]
 *                dx[n0+b, c, ih, iw] += dcol[(c*R + i)*S + j, b*PQ + p*Q + q]
 *                               (col2im: zeroed first, then (c, i, j, p, q) in order)
 *                dbias[k]      = sum_{n,p,q} dy[n,k,p,q]  (double; n, then p, then q)
 *
 * Why chunks rather than one GEMM per sample: conv2 of the MNIST CNN is a
 * 64 x 576 x 288 product per sample, too small for OpenBLAS to split well
 * over threads, and W is re-packed on every call. One [K, B*PQ] product per
 * chunk gives BLAS a long n dimension to thread over. The price is the
 * yt/dyt staging matrix, but each (b, k) row segment is contiguous in both
 * layouts, so moving between them is a block copy, not a transpose.
 *
 * Why not the whole batch in one chunk: col would be CRS*N*PQ floats (42 MB
 * for conv2 at n = 64), written by im2col and read back by the GEMM from
 * memory; a chunk whose col stays in cache is cheaper, and the GEMM is
 * already large at a few samples. The plan picks B (see CHUNK_COL_BYTES).
 * Measured, conv2 forward + backward at n = 64 on 2 threads: 31 ms with
 * B = 3 (the default), 35 ms with B = 1, 53 ms with B = 64.
 *
 * Determinism: every loop here runs in a fixed order on the calling thread;
 * the only other threads are OpenBLAS's, which split a GEMM over m and n,
 * not over the summed k (see gemm_cpu.c), so a result depends on the inputs,
 * the plan's chunk and the BLAS build/thread count only - not on timing, nor
 * on the workspace's previous content (every workspace float is written
 * before it is read). dw sums its chunks in ascending n0 (beta = 1).
 *
 * The calls allocate nothing: the caller's workspace holds col (also used for
 * dcol) followed by yt (also used for dyt), sized by cpu_conv_plan for the
 * planned maximum n. (OpenBLAS 0.3.21 itself mallocs a small job array in
 * each multithreaded GEMM call, and its small-matrix NN kernel scratch even
 * on one thread; unit.StepAllocs counts every allocation but those.)
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Target size of one chunk's col matrix. Measured on the MNIST conv2 (n = 64,
 * AVX-512 OpenBLAS 0.3.21, forward + backward): on one thread, chunks of 1
 * to 4 samples (0.7 to 2.7 MB of col) are equally fast, 8 samples 5% slower,
 * the whole batch (42 MB) 50% slower - col no longer stays in cache between
 * im2col writing it and the GEMM reading it; on two threads, 1 sample is 10%
 * slower than 2 to 6 (a 576-column GEMM splits poorly). 2 MB is 3 samples. */
#define CHUNK_COL_BYTES ((size_t)2 << 20)

typedef struct cpu_conv_plan_s {
    ct_conv_shape shape; /* as planned; shape.n is the maximum batch */
    int chunk;           /* samples per im2col/GEMM round */
} cpu_conv_plan_s;

/* Sizes derived from a shape, as size_t so no product overflows int. */
typedef struct conv_dims {
    size_t crs, pq, chw, kpq;
} conv_dims;

static conv_dims dims_of(const ct_conv_shape *s) {
    conv_dims d;
    d.crs = (size_t)s->c * (size_t)s->r * (size_t)s->s;
    d.pq = (size_t)s->out_h * (size_t)s->out_w;
    d.chw = (size_t)s->c * (size_t)s->h * (size_t)s->w;
    d.kpq = (size_t)s->k * d.pq;
    return d;
}

/* col's float count, rounded up to 16 floats so yt starts 64-byte aligned. */
static size_t col_floats(const conv_dims *d, int chunk) {
    size_t n = d->crs * d->pq * (size_t)chunk;
    return (n + 15) & ~(size_t)15;
}

/* ---------------------------------------------------------------------------
 * im2col and col2im */

/* Output positions q in [*lo, *hi) read an input column inside [0, W):
 * 0 <= q*st + off < W with off = j - pad. Empty when *lo >= *hi. */
static void valid_range(int off, int width, int stride, int out, int *lo, int *hi) {
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = width - 1 - off < 0 ? 0 : (width - 1 - off) / stride + 1;
    if (l > out) l = out; /* a pad wider than the kernel's reach */
    if (h > out) h = out;
    *lo = l;
    *hi = h > l ? h : l;
}

/* One col row segment (fixed c, i, j, sample): dst[p*Q + q] = plane[ih, iw]. */
static void im2col_row(const ct_conv_shape *s, const float *plane, int i, int j, float *dst) {
    const int Q = s->out_w, off_w = j - s->pad;
    int lo, hi;
    valid_range(off_w, s->w, s->stride, Q, &lo, &hi);
    for (int p = 0; p < s->out_h; p++, dst += Q) {
        const int ih = p * s->stride - s->pad + i;
        if (ih < 0 || ih >= s->h || lo >= hi) {
            memset(dst, 0, (size_t)Q * sizeof *dst);
            continue;
        }
        const float *src = plane + (size_t)ih * (size_t)s->w;
        for (int q = 0; q < lo; q++) dst[q] = 0.0f;
        if (s->stride == 1) {
            memcpy(dst + lo, src + lo + off_w, (size_t)(hi - lo) * sizeof *dst);
        } else {
            for (int q = lo; q < hi; q++) dst[q] = src[q * s->stride + off_w];
        }
        for (int q = hi; q < Q; q++) dst[q] = 0.0f;
    }
}

/* col[CRS, nb*PQ] from samples x[0 .. nb-1]. */
static void im2col(const ct_conv_shape *s, const conv_dims *d, const float *x, int nb, float *col) {
    const size_t ld = (size_t)nb * d->pq;
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < s->c; c++) {
            const float *plane = x + (size_t)b * d->chw + (size_t)c * s->h * s->w;
            for (int i = 0; i < s->r; i++)
                for (int j = 0; j < s->s; j++) {
                    size_t row = ((size_t)c * s->r + i) * s->s + j;
                    im2col_row(s, plane, i, j, col + row * ld + (size_t)b * d->pq);
                }
        }
}

/* dst[t] += src[t]: a separate function with restrict so that the compiler
 * vectorises it (elementwise adds: no reassociation, same result). */
static void add_row(int len, const float *restrict src, float *restrict dst) {
    for (int t = 0; t < len; t++) dst[t] += src[t];
}

/* The adjoint of im2col_row: plane[ih, iw] += src[p*Q + q] over the valid q. */
static void col2im_row(const ct_conv_shape *s, const float *src, int i, int j, float *plane) {
    const int Q = s->out_w, off_w = j - s->pad;
    int lo, hi;
    valid_range(off_w, s->w, s->stride, Q, &lo, &hi);
    for (int p = 0; p < s->out_h; p++, src += Q) {
        const int ih = p * s->stride - s->pad + i;
        if (ih < 0 || ih >= s->h) continue;
        float *row = plane + (size_t)ih * (size_t)s->w;
        if (s->stride == 1) {
            add_row(hi - lo, src + lo, row + lo + off_w); /* iw = q + off_w >= 0 for q >= lo */
        } else {
            for (int q = lo; q < hi; q++) row[q * s->stride + off_w] += src[q];
        }
    }
}

/* dx[0 .. nb-1] = col2im(dcol): zeroed, then scatter-added in (c, i, j, p, q)
 * order, so each dx element sums its (i, j) contributions in row-major order. */
static void col2im(const ct_conv_shape *s, const conv_dims *d, const float *dcol, int nb, float *dx) {
    const size_t ld = (size_t)nb * d->pq;
    memset(dx, 0, (size_t)nb * d->chw * sizeof *dx);
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < s->c; c++) {
            float *plane = dx + (size_t)b * d->chw + (size_t)c * s->h * s->w;
            for (int i = 0; i < s->r; i++)
                for (int j = 0; j < s->s; j++) {
                    size_t row = ((size_t)c * s->r + i) * s->s + j;
                    col2im_row(s, dcol + row * ld + (size_t)b * d->pq, i, j, plane);
                }
        }
}

/* ---------------------------------------------------------------------------
 * NCHW <-> [K, nb*PQ] staging: contiguous PQ-long segments either way. */

/* y[b, k, :] = yt[k, b*PQ ..] + bias[k]; the bias is one rounding of its own. */
static void scatter_y(const conv_dims *d, int K, int nb, const float *yt, const float *bias, float *y) {
    const size_t ld = (size_t)nb * d->pq;
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < K; k++) {
            const float *src = yt + (size_t)k * ld + (size_t)b * d->pq;
            float *dst = y + (size_t)b * d->kpq + (size_t)k * d->pq;
            if (bias) {
                const float bk = bias[k];
                for (size_t t = 0; t < d->pq; t++) dst[t] = src[t] + bk;
            } else {
                memcpy(dst, src, d->pq * sizeof *dst);
            }
        }
}

/* dyt[k, b*PQ ..] = dy[b, k, :]. */
static void gather_dy(const conv_dims *d, int K, int nb, const float *dy, float *dyt) {
    const size_t ld = (size_t)nb * d->pq;
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < K; k++)
            memcpy(dyt + (size_t)k * ld + (size_t)b * d->pq, dy + (size_t)b * d->kpq + (size_t)k * d->pq,
                   d->pq * sizeof *dyt);
}

/* dbias[k] = sum over n, then p*Q + q, in double; one rounding at the end.
 * One double accumulator is add-latency bound, so DBIAS_BLOCK channels are
 * summed side by side: each still adds its own terms in exactly that order,
 * so the result is the same as one channel at a time, only faster. */
#define DBIAS_BLOCK 8
static void bias_grad(const conv_dims *d, int N, int K, const float *dy, float *dbias) {
    double acc[DBIAS_BLOCK];
    for (int k0 = 0; k0 < K; k0 += DBIAS_BLOCK) {
        const int kb = K - k0 < DBIAS_BLOCK ? K - k0 : DBIAS_BLOCK;
        for (int j = 0; j < kb; j++) acc[j] = 0.0;
        for (int n = 0; n < N; n++) {
            const float *seg = dy + (size_t)n * d->kpq + (size_t)k0 * d->pq;
            for (size_t t = 0; t < d->pq; t++)
                for (int j = 0; j < kb; j++) acc[j] += seg[(size_t)j * d->pq + t];
        }
        for (int j = 0; j < kb; j++) dbias[k0 + j] = (float)acc[j];
    }
}

/* ---------------------------------------------------------------------------
 * plan */

static int shape_ok(const ct_conv_shape *s, ct_error *err) {
    if (s->n < 1 || s->c < 1 || s->h < 1 || s->w < 1 || s->k < 1 || s->r < 1 || s->s < 1 || s->stride < 1 ||
        s->pad < 0) {
        ct_fail(err, CT_EXIT_FAILURE,
                "conv plan: invalid shape n=%d c=%d h=%d w=%d k=%d r=%d s=%d stride=%d pad=%d", s->n, s->c, s->h,
                s->w, s->k, s->r, s->s, s->stride, s->pad);
        return 0;
    }
    /* In 64 bits, so that h + 2 pad cannot overflow here; the loops then
     * compute p*stride - pad + i in int, which these bounds keep in range. */
    long long eh = (long long)s->h + 2LL * s->pad - s->r, ew = (long long)s->w + 2LL * s->pad - s->s;
    if (eh + s->r + s->stride > 0x7fffffffLL || ew + s->s + s->stride > 0x7fffffffLL) {
        ct_fail(err, CT_EXIT_FAILURE, "conv plan: padded input too large");
        return 0;
    }
    if (eh < 0 || ew < 0 || s->out_h != eh / s->stride + 1 || s->out_w != ew / s->stride + 1) {
        ct_fail(err, CT_EXIT_FAILURE,
                "conv plan: output %dx%d does not match input %dx%d, kernel %dx%d, stride %d, pad %d "
                "(want (h + 2 pad - r) / stride + 1, likewise w)",
                s->out_h, s->out_w, s->h, s->w, s->r, s->s, s->stride, s->pad);
        return 0;
    }
    return 1;
}

/* Samples per chunk: as many as keep col within CHUNK_COL_BYTES (at least
 * one), at most the planned batch. */
static int pick_chunk(const ct_conv_shape *s, const conv_dims *d) {
    size_t per_sample = d->crs * d->pq * sizeof(float);
    size_t fit = per_sample ? CHUNK_COL_BYTES / per_sample : (size_t)s->n;
    if (fit < 1) fit = 1;
    return fit < (size_t)s->n ? (int)fit : s->n;
}

void *cpu_conv_plan_chunked(ct_backend *b, const ct_conv_shape *shape, int chunk, size_t *workspace_bytes,
                            ct_error *err) {
    (void)b;
    if (!shape_ok(shape, err)) return NULL;
    const conv_dims d = dims_of(shape);
    if (chunk <= 0) chunk = pick_chunk(shape, &d);
    if (chunk > shape->n) chunk = shape->n;
    /* The GEMM dimensions are ints: B*PQ and CRS must fit. */
    if (d.crs > (size_t)0x7fffffff || d.pq * (size_t)chunk > (size_t)0x7fffffff) {
        ct_fail(err, CT_EXIT_FAILURE, "conv plan: layer too large for an int GEMM dimension");
        return NULL;
    }
    cpu_conv_plan_s *p = malloc(sizeof *p);
    if (!p) {
        ct_fail(err, CT_EXIT_FAILURE, "conv plan: out of memory");
        return NULL;
    }
    p->shape = *shape;
    p->chunk = chunk;
    if (workspace_bytes)
        *workspace_bytes = (col_floats(&d, chunk) + (size_t)shape->k * d.pq * (size_t)chunk) * sizeof(float);
    return p;
}

/* The CPU path is always deterministic, so `deterministic` changes nothing. */
void *cpu_conv_plan(ct_backend *b, const ct_conv_shape *shape, int deterministic, size_t *workspace_bytes,
                    ct_error *err) {
    (void)deterministic;
    return cpu_conv_plan_chunked(b, shape, 0, workspace_bytes, err);
}

void cpu_conv_plan_free(ct_backend *b, void *plan) {
    (void)b;
    free(plan);
}

/* ---------------------------------------------------------------------------
 * forward and backward. `shape` must be the planned one, with n <= planned n. */

/* Samples per round for a call on n rows. The workspace was sized for the
 * planned geometry; a call with another one would overrun it (checked in
 * debug builds: an op has no way to report a misuse). */
static int chunk_of(const void *plan, const ct_conv_shape *s) {
    const cpu_conv_plan_s *p = plan;
    assert(s->n <= p->shape.n && s->c == p->shape.c && s->h == p->shape.h && s->w == p->shape.w &&
           s->k == p->shape.k && s->r == p->shape.r && s->s == p->shape.s && s->stride == p->shape.stride &&
           s->pad == p->shape.pad && s->out_h == p->shape.out_h && s->out_w == p->shape.out_w);
    return p->chunk < s->n ? p->chunk : s->n;
}

void cpu_conv2d_forward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                        const float *bias, float *y, void *workspace) {
    if (shape->n <= 0) return;
    const conv_dims d = dims_of(shape);
    const int chunk = chunk_of(plan, shape), K = shape->k, crs = (int)d.crs;
    float *col = workspace, *yt = col + col_floats(&d, chunk);
    for (int n0 = 0; n0 < shape->n; n0 += chunk) {
        const int nb = shape->n - n0 < chunk ? shape->n - n0 : chunk, cols = nb * (int)d.pq;
        im2col(shape, &d, x + (size_t)n0 * d.chw, nb, col);
        cpu_gemm(b, 0, 0, K, cols, crs, 1.0f, w, crs, col, cols, 0.0f, yt, cols);
        scatter_y(&d, K, nb, yt, bias, y + (size_t)n0 * d.kpq);
    }
}

void cpu_conv2d_backward(ct_backend *b, void *plan, const ct_conv_shape *shape, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *dbias, void *workspace) {
    const conv_dims d = dims_of(shape);
    const int N = shape->n > 0 ? shape->n : 0, K = shape->k, crs = (int)d.crs;
    if (dbias) bias_grad(&d, N, K, dy, dbias);
    if (N == 0) { /* overwritten even for an empty batch: zero */
        memset(dw, 0, (size_t)K * d.crs * sizeof *dw);
        return;
    }
    const int chunk = chunk_of(plan, shape);
    float *col = workspace, *dyt = col + col_floats(&d, chunk);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nb = N - n0 < chunk ? N - n0 : chunk, cols = nb * (int)d.pq;
        im2col(shape, &d, x + (size_t)n0 * d.chw, nb, col);
        gather_dy(&d, K, nb, dy + (size_t)n0 * d.kpq, dyt);
        /* The first chunk overwrites dw (beta 0 also ignores NaN in it). */
        cpu_gemm(b, 0, 1, K, crs, cols, 1.0f, dyt, cols, col, cols, n0 == 0 ? 0.0f : 1.0f, dw, crs);
        if (!dx) continue;
        /* col has served dw; it now receives dcol. */
        cpu_gemm(b, 1, 0, crs, cols, K, 1.0f, w, crs, dyt, cols, 0.0f, col, cols);
        col2im(shape, &d, col, nb, dx + (size_t)n0 * d.chw);
    }
}
