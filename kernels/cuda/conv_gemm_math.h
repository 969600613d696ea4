/* The arithmetic of the im2col + cuBLAS convolution backward
 * (conv_gemm_cuda.cu), as plain functions that compile for the host too, so
 * a CPU test (tests/unit/test_conv_gemm_math.cpp) runs exactly this index
 * math and these cuBLAS arguments, with a column-major GEMM in place of
 * cuBLAS, against the CPU backend's backward on every CI run.
 *
 * With CRS = c*r*s, PQ = out_h*out_w, per sample b (row-major, as conv_cpu.c):
 *     col_b[crs, pq]  = x[b, c, p*stride - pad + i, q*stride - pad + j]  (0 outside)
 *                       crs = (c*r + i)*s + j,  pq = p*out_w + q
 *     dw[k, crs]      = sum_b sum_pq dy_b[k, pq] * col_b[crs, pq]
 *     dcol_b[crs, pq] = sum_k w[k, crs] * dy_b[k, pq]
 *     dx[b, c, h, w]  = sum of dcol_b[(c*r + i)*s + j, p*out_w + q] over the
 *                       (i, j, p, q) with p*stride - pad + i = h, q*stride - pad + j = w
 *
 * cuBLAS is column-major: it reads a row-major [m, n] matrix with row stride
 * ld as its [n, m] transpose. The memory of row-major col_b is the
 * column-major [PQ x CRS] matrix col_b^T (ld PQ), that of dy_b is [PQ x K]
 * (ld PQ), that of w is [CRS x K] (ld CRS). So, per sample:
 *     dw_b   (column-major [CRS x K], ld CRS) = (col_b^T)^T * dy_b^T
 *            = sgemm(T, N, m=CRS, n=K, k=PQ, A=col_b ld PQ, B=dy_b ld PQ)
 *     dcol_b (column-major [PQ x CRS], ld PQ) = dy_b^T * (w^T)^T
 *            = sgemm(N, T, m=PQ, n=CRS, k=K, A=dy_b ld PQ, B=w ld CRS, w shared: stride 0)
 * and column-major dw_b [CRS x K] is row-major [K, CRS], dw's layout.
 */
#ifndef CUTRAIN_KERNELS_CUDA_CONV_GEMM_MATH_H
#define CUTRAIN_KERNELS_CUDA_CONV_GEMM_MATH_H

#include <stddef.h>

#include "cutrain/backend.h"
#include "cutrain/rng.h" /* CT_HOSTDEV */

#ifdef __cplusplus
extern "C" {
#endif

/* One cublasSgemmStridedBatched call's arguments (column-major; trans 1 is
 * CUBLAS_OP_T); the pointers are the caller's. */
typedef struct ct_batched_gemm {
    int trans_a, trans_b;
    int m, n, k;
    int lda, ldb, ldc;
    long long stride_a, stride_b, stride_c;
} ct_batched_gemm;

/* dw_b = col_b x dy_b, A = the im2col buffer, B = dy of the chunk, C = the
 * per-sample partials. */
static inline ct_batched_gemm ct_conv_gemm_dw(const ct_conv_shape *s) {
    const int crs = s->c * s->r * s->s, pq = s->out_h * s->out_w;
    ct_batched_gemm g = {1, 0, crs, s->k, pq, pq, pq, crs, (long long)crs * pq, (long long)s->k * pq,
                         (long long)s->k * crs};
    return g;
}

/* dcol_b = w^T dy_b, A = dy of the chunk, B = w (shared), C = the im2col
 * buffer. */
static inline ct_batched_gemm ct_conv_gemm_dcol(const ct_conv_shape *s) {
    const int crs = s->c * s->r * s->s, pq = s->out_h * s->out_w;
    ct_batched_gemm g = {0, 1, pq, crs, s->k, pq, crs, pq, (long long)s->k * pq, 0LL, (long long)crs * pq};
    return g;
}

/* The workspace of a chunk of `chunk` samples, in floats: the im2col (then
 * dcol) buffer [chunk, CRS, PQ], then, from ct_conv_gemm_part_offset, each
 * sample's dw partial [chunk, K, CRS]. The partials start on a 64-float
 * (256-byte) boundary, as cuBLAS's vectorised kernels want their C (the
 * workspace itself comes from cudaMalloc, 256-byte aligned). */
#define CT_CONV_GEMM_ALIGN_FLOATS 64
static inline size_t ct_conv_gemm_part_offset(const ct_conv_shape *s, size_t chunk) {
    const size_t col = chunk * (size_t)s->c * (size_t)s->r * (size_t)s->s * (size_t)s->out_h * (size_t)s->out_w;
    return (col + CT_CONV_GEMM_ALIGN_FLOATS - 1) / CT_CONV_GEMM_ALIGN_FLOATS * CT_CONV_GEMM_ALIGN_FLOATS;
}

static inline size_t ct_conv_gemm_workspace_floats(const ct_conv_shape *s, size_t chunk) {
    return ct_conv_gemm_part_offset(s, chunk) + chunk * (size_t)s->k * (size_t)s->c * (size_t)s->r * (size_t)s->s;
}

/* The most samples per pass (at most the shape's n, and what cuBLAS's int
 * batch count holds) whose workspace fits cap_bytes; 0 when one does not. */
static inline int ct_conv_gemm_chunk(const ct_conv_shape *s, size_t cap_bytes) {
    const size_t crs = (size_t)s->c * (size_t)s->r * (size_t)s->s;
    const size_t per = crs * (size_t)s->out_h * (size_t)s->out_w + (size_t)s->k * crs; /* floats a sample adds */
    const size_t cap = cap_bytes / sizeof(float);
    if (per == 0 || ct_conv_gemm_workspace_floats(s, 1) > cap) return 0;
    size_t chunk = cap / per; /* the alignment pad may take one sample back */
    const size_t n = s->n > 0 ? (size_t)s->n : 1;
    if (chunk > n) chunk = n;
    if (chunk > 2147483647u) chunk = 2147483647u;
    while (chunk > 1 && ct_conv_gemm_workspace_floats(s, chunk) > cap) --chunk;
    return (int)chunk;
}

/* Element t of a chunk's im2col buffer [rows, CRS, PQ]; x is the chunk's
 * first sample. */
CT_HOSTDEV float ct_im2col_at(const ct_conv_shape *s, const float *x, size_t t) {
    const size_t pq_n = (size_t)s->out_h * s->out_w, rs = (size_t)s->r * s->s, crs_n = (size_t)s->c * rs;
    const size_t pq = t % pq_n, crs = (t / pq_n) % crs_n, b = t / (pq_n * crs_n);
    const int c = (int)(crs / rs), i = (int)(crs % rs) / s->s, j = (int)(crs % rs) % s->s;
    const int p = (int)(pq / (size_t)s->out_w), q = (int)(pq % (size_t)s->out_w);
    const int h = p * s->stride - s->pad + i, w = q * s->stride - s->pad + j;
    if (h < 0 || h >= s->h || w < 0 || w >= s->w) return 0.0f;
    return x[((b * (size_t)s->c + (size_t)c) * (size_t)s->h + (size_t)h) * (size_t)s->w + (size_t)w];
}

/* dw[e] after a chunk of `rows` per-sample partials part[b][e]: added in
 * sample order to what dw held (nothing for the first chunk). */
CT_HOSTDEV float ct_sum_samples_at(size_t per, int rows, int first, const float *part, const float *dw, size_t e) {
    float acc = first ? part[e] : dw[e] + part[e];
    for (int b = 1; b < rows; ++b) acc += part[(size_t)b * per + e];
    return acc;
}

/* Element t of a chunk's dx [rows, C, H, W], gathered from its dcol
 * [rows, CRS, PQ] with (i, j) in increasing order. */
CT_HOSTDEV float ct_col2im_at(const ct_conv_shape *s, const float *dcol, size_t t) {
    const size_t pq_n = (size_t)s->out_h * s->out_w, crs_n = (size_t)s->c * s->r * s->s;
    const int w = (int)(t % (size_t)s->w), h = (int)((t / (size_t)s->w) % (size_t)s->h);
    const int c = (int)((t / ((size_t)s->w * s->h)) % (size_t)s->c);
    const size_t b = t / ((size_t)s->w * s->h * s->c);
    const float *base = dcol + b * crs_n * pq_n;
    float acc = 0.0f;
    for (int i = 0; i < s->r; ++i) {
        const int ph = h + s->pad - i; /* = p * stride when this i reaches row h */
        if (ph < 0 || ph % s->stride != 0 || ph / s->stride >= s->out_h) continue;
        const int p = ph / s->stride;
        for (int j = 0; j < s->s; ++j) {
            const int qw = w + s->pad - j;
            if (qw < 0 || qw % s->stride != 0 || qw / s->stride >= s->out_w) continue;
            const int q = qw / s->stride;
            const size_t crs = ((size_t)c * s->r + (size_t)i) * s->s + (size_t)j;
            acc += base[crs * pq_n + (size_t)p * s->out_w + (size_t)q];
        }
    }
    return acc;
}

#ifdef __cplusplus
}
#endif

#endif
