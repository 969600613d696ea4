/* The backward of a 2-D convolution as im2col + cuBLAS, the CPU's method
 * (conv_cpu.c), as an alternative to cuDNN's deterministic backward
 * algorithms (conv_cuda.cu says which path runs).
 *
 * Why: on the H100 the cnn step spent 732 of 919 us in the backward pass,
 * in cuDNN's CUDNN_CONVOLUTION_BWD_{DATA,FILTER}_ALGO_1, the only
 * deterministic plain-fp32 backward algorithms conv_cuda.cu accepts. The
 * same arithmetic as plain GEMMs is what cuBLAS is fastest at, and cuBLAS is
 * deterministic (fixed workspace, atomics not allowed: backend_cuda.cu).
 *
 * With CRS = c*r*s, PQ = out_h*out_w and, per sample b, the im2col matrix
 *     col_b[crs, pq] = x[b, c, p*stride - pad + i, q*stride - pad + j]  (0 outside)
 * (crs = (c*r + i)*s + j, pq = p*out_w + q; row-major, like conv_cpu.c):
 *     dw[k, crs]    = sum_b sum_pq dy_b[k, pq] * col_b[crs, pq]
 *     dcol_b[crs, pq] = sum_k w[k, crs] * dy_b[k, pq]
 *     dx[b, c, h, w] = sum of dcol_b[(c*r + i)*s + j, p*out_w + q] over the
 *                      (i, j, p, q) with p*stride - pad + i = h, q*stride - pad + j = w
 *
 * Samples go in chunks of `chunk` (planned so the workspace stays bounded).
 * Per chunk: im2col; one strided-batched GEMM gives each sample's dw_b into
 * the workspace; a fixed-order sum adds them to dw (dw = dw_0 + ... in
 * sample order, continuing over chunks); a second strided-batched GEMM
 * (w shared: batch stride 0) gives dcol into the im2col buffer, which the
 * first GEMM has finished with (one stream); col2im gathers dx, each element
 * summing its (i, j) terms in a fixed order. No atomics: the same bits on
 * every run for a given shape, chunk and GPU.
 *
 * Column-major cuBLAS reads a row-major [m, n] matrix with row stride ld as
 * its [n, m] transpose (gemm_cuda.cu). Per sample, in column-major terms
 * (the memory of row-major col_b is the column-major [PQ x CRS] matrix
 * col_b^T, that of dy_b is [PQ x K], that of w is [CRS x K]):
 *   dw_b   (column-major [CRS x K], ld CRS) = (col_b^T)^T * dy_b^T
 *          = sgemm(T, N, m=CRS, n=K, k=PQ, A=col_b ld PQ, B=dy_b ld PQ)
 *   dcol_b (column-major [PQ x CRS], ld PQ) = dy_b^T * (w^T)^T
 *          = sgemm(N, T, m=PQ, n=CRS, k=K, A=dy_b ld PQ, B=w ld CRS)
 *
 * Workspace: chunk * (CRS*PQ + K*CRS) floats: the im2col/dcol buffer, then
 * the per-sample dw_b.
 */
#include "kernels/cuda/cuda_common.h"

/* Floats of workspace one sample of a chunk needs. */
static size_t floats_per_sample(const ct_conv_shape *s) {
    const size_t crs = (size_t)s->c * (size_t)s->r * (size_t)s->s;
    const size_t pq = (size_t)s->out_h * (size_t)s->out_w;
    return crs * pq + (size_t)s->k * crs;
}

int cuda_conv_gemm_chunk(const ct_conv_shape *s, size_t cap_bytes) {
    const size_t per = floats_per_sample(s) * sizeof(float);
    if (per == 0 || per > cap_bytes) return 0;
    size_t chunk = cap_bytes / per;
    const size_t n = s->n > 0 ? (size_t)s->n : 1;
    if (chunk > n) chunk = n;
    /* cuBLAS takes the batch count and the per-sample sizes as int. */
    if (chunk > (size_t)INT32_MAX) chunk = (size_t)INT32_MAX;
    return (int)chunk;
}

size_t cuda_conv_gemm_workspace(const ct_conv_shape *s, int chunk) {
    return chunk > 0 ? (size_t)chunk * floats_per_sample(s) * sizeof(float) : 0;
}

static unsigned grid_for(const ct_cuda_impl *im, size_t total, unsigned threads) {
    size_t blocks = (total + threads - 1) / threads;
    const size_t cap = (size_t)im->sm_count * 16; /* grid-stride loops cover the rest */
    if (blocks > cap) blocks = cap;
    return blocks > 0 ? (unsigned)blocks : 1u;
}

/* col[b, crs, pq] for the chunk's `rows` samples starting at x. */
static __global__ void im2col_kernel(ct_conv_shape s, int rows, const float *__restrict__ x, float *__restrict__ col) {
    const size_t pq_n = (size_t)s.out_h * s.out_w, rs = (size_t)s.r * s.s, crs_n = (size_t)s.c * rs;
    const size_t total = (size_t)rows * crs_n * pq_n;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const size_t pq = t % pq_n, crs = (t / pq_n) % crs_n, b = t / (pq_n * crs_n);
        const int c = (int)(crs / rs), i = (int)(crs % rs) / s.s, j = (int)(crs % rs) % s.s;
        const int p = (int)(pq / (size_t)s.out_w), q = (int)(pq % (size_t)s.out_w);
        const int h = p * s.stride - s.pad + i, w = q * s.stride - s.pad + j;
        float v = 0.0f;
        if (h >= 0 && h < s.h && w >= 0 && w < s.w) v = x[(((b * (size_t)s.c) + c) * s.h + h) * (size_t)s.w + w];
        col[t] = v;
    }
}

/* dw[e] = (first ? 0 : dw[e]) + part[0][e] + part[1][e] + ..., in sample order. */
static __global__ void sum_samples_kernel(size_t per, int rows, int first, const float *__restrict__ part,
                                          float *__restrict__ dw) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < per; e += step) {
        float acc = first ? part[e] : dw[e] + part[e];
        for (int b = 1; b < rows; ++b) acc += part[(size_t)b * per + e];
        dw[e] = acc;
    }
}

/* dx[b, c, h, w] gathered from dcol[b, crs, pq], (i, j) in increasing order. */
static __global__ void col2im_kernel(ct_conv_shape s, int rows, const float *__restrict__ dcol, float *__restrict__ dx) {
    const size_t pq_n = (size_t)s.out_h * s.out_w, crs_n = (size_t)s.c * s.r * s.s;
    const size_t total = (size_t)rows * s.c * s.h * s.w;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        const int w = (int)(t % (size_t)s.w), h = (int)((t / (size_t)s.w) % (size_t)s.h);
        const int c = (int)((t / ((size_t)s.w * s.h)) % (size_t)s.c);
        const size_t b = t / ((size_t)s.w * s.h * s.c);
        const float *base = dcol + b * crs_n * pq_n;
        float acc = 0.0f;
        for (int i = 0; i < s.r; ++i) {
            const int ph = h + s.pad - i; /* = p * stride when this i touches (h, .) */
            if (ph < 0 || ph % s.stride != 0 || ph / s.stride >= s.out_h) continue;
            const int p = ph / s.stride;
            for (int j = 0; j < s.s; ++j) {
                const int qw = w + s.pad - j;
                if (qw < 0 || qw % s.stride != 0 || qw / s.stride >= s.out_w) continue;
                const int q = qw / s.stride;
                const size_t crs = ((size_t)c * s.r + i) * s.s + j;
                acc += base[crs * pq_n + (size_t)p * s.out_w + q];
            }
        }
        dx[t] = acc;
    }
}

void cuda_conv_gemm_backward(ct_cuda_impl *im, const ct_conv_shape *s, int chunk, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, void *workspace) {
    if (chunk < 1) ct_cuda_fatal("no chunk planned", "cuda_conv_gemm_backward", __FILE__, __LINE__);
    const int crs = s->c * s->r * s->s, pq = s->out_h * s->out_w, k = s->k;
    const size_t x_per = (size_t)s->c * s->h * s->w, y_per = (size_t)k * pq, w_n = (size_t)k * crs;
    float *col = (float *)workspace;                  /* chunk * crs * pq: im2col, then dcol */
    float *part = col + (size_t)chunk * crs * pq;     /* chunk * k * crs: each sample's dw */
    const float one = 1.0f, zero = 0.0f;
    const unsigned threads = 256;
    for (int b0 = 0; b0 < s->n; b0 += chunk) {
        const int rows = s->n - b0 < chunk ? s->n - b0 : chunk;
        const float *xb = x + (size_t)b0 * x_per, *dyb = dy + (size_t)b0 * y_per;
        if (dw) {
            im2col_kernel<<<grid_for(im, (size_t)rows * crs * pq, threads), threads, 0, im->stream>>>(*s, rows, xb, col);
            CT_LAUNCH_CHECK("im2col_kernel");
            CT_CUBLAS_CHECK(cublasSgemmStridedBatched(im->cublas, CUBLAS_OP_T, CUBLAS_OP_N, crs, k, pq, &one, col, pq,
                                                      (long long)crs * pq, dyb, pq, (long long)y_per, &zero, part,
                                                      crs, (long long)w_n, rows));
            sum_samples_kernel<<<grid_for(im, w_n, threads), threads, 0, im->stream>>>(w_n, rows, b0 == 0, part, dw);
            CT_LAUNCH_CHECK("sum_samples_kernel");
        }
        if (dx) {
            CT_CUBLAS_CHECK(cublasSgemmStridedBatched(im->cublas, CUBLAS_OP_N, CUBLAS_OP_T, pq, crs, k, &one, dyb, pq,
                                                      (long long)y_per, w, crs, 0LL, &zero, col, pq,
                                                      (long long)crs * pq, rows));
            col2im_kernel<<<grid_for(im, (size_t)rows * x_per, threads), threads, 0, im->stream>>>(
                *s, rows, col, dx + (size_t)b0 * x_per);
            CT_LAUNCH_CHECK("col2im_kernel");
        }
    }
}
