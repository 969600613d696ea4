/* The backward of a 2-D convolution as im2col + cuBLAS, the CPU's method
 * (conv_cpu.c), as an alternative to cuDNN's deterministic backward
 * algorithms (conv_cuda.cu says which path runs). The math, the layouts and
 * the cuBLAS arguments are in conv_gemm_math.h, shared with a CPU test.
 *
 * Why: on the H100 the cnn step spent 732 of 919 us in the backward pass,
 * in cuDNN's CUDNN_CONVOLUTION_BWD_{DATA,FILTER}_ALGO_1, the only
 * deterministic plain-fp32 backward algorithms conv_cuda.cu accepts. The
 * same arithmetic as plain GEMMs is what cuBLAS is fastest at, and cuBLAS is
 * deterministic (fixed workspace, atomics not allowed: backend_cuda.cu).
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
 * Workspace: chunk * (CRS*PQ + K*CRS) floats and an alignment pad
 * (conv_gemm_math.h): the im2col/dcol buffer, then the per-sample dw_b.
 */
#include "kernels/cuda/conv_gemm_math.h"
#include "kernels/cuda/cuda_common.h"

int cuda_conv_gemm_chunk(const ct_conv_shape *s, size_t cap_bytes) { return ct_conv_gemm_chunk(s, cap_bytes); }

size_t cuda_conv_gemm_workspace(const ct_conv_shape *s, int chunk) {
    return chunk > 0 ? ct_conv_gemm_workspace_floats(s, (size_t)chunk) * sizeof(float) : 0;
}

static unsigned grid_for(const ct_cuda_impl *im, size_t total, unsigned threads) {
    size_t blocks = (total + threads - 1) / threads;
    const size_t cap = (size_t)im->sm_count * 16; /* grid-stride loops cover the rest */
    if (blocks > cap) blocks = cap;
    return blocks > 0 ? (unsigned)blocks : 1u;
}

static __global__ void im2col_kernel(ct_conv_shape s, size_t total, const float *__restrict__ x,
                                     float *__restrict__ col) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step)
        col[t] = ct_im2col_at(&s, x, t);
}

static __global__ void sum_samples_kernel(size_t per, int rows, int first, const float *__restrict__ part,
                                          float *dw) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < per; e += step)
        dw[e] = ct_sum_samples_at(per, rows, first, part, dw, e);
}

static __global__ void col2im_kernel(ct_conv_shape s, size_t total, const float *__restrict__ dcol,
                                     float *__restrict__ dx) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step)
        dx[t] = ct_col2im_at(&s, dcol, t);
}

static void batched_gemm(ct_cuda_impl *im, const ct_batched_gemm *g, const float *A, const float *B, float *C,
                         int batch) {
    const float one = 1.0f, zero = 0.0f; /* host pointer mode: read at call time */
    CT_CUBLAS_CHECK(cublasSgemmStridedBatched(im->cublas, g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                              g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g->m, g->n, g->k, &one, A,
                                              g->lda, g->stride_a, B, g->ldb, g->stride_b, &zero, C, g->ldc,
                                              g->stride_c, batch));
}

void cuda_conv_gemm_backward(ct_cuda_impl *im, const ct_conv_shape *s, int chunk, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, void *workspace) {
    if (chunk < 1) ct_cuda_fatal("no chunk planned", "cuda_conv_gemm_backward", __FILE__, __LINE__);
    const size_t crs = (size_t)s->c * s->r * s->s, pq = (size_t)s->out_h * s->out_w;
    const size_t x_per = (size_t)s->c * s->h * s->w, y_per = (size_t)s->k * pq, w_n = (size_t)s->k * crs;
    const ct_batched_gemm g_dw = ct_conv_gemm_dw(s), g_dcol = ct_conv_gemm_dcol(s);
    float *col = (float *)workspace;                               /* chunk * crs * pq: im2col, then dcol */
    float *part = col + ct_conv_gemm_part_offset(s, (size_t)chunk); /* chunk * k * crs: each sample's dw */
    const unsigned threads = 256;
    for (int b0 = 0; b0 < s->n; b0 += chunk) {
        const int rows = s->n - b0 < chunk ? s->n - b0 : chunk;
        const float *xb = x + (size_t)b0 * x_per, *dyb = dy + (size_t)b0 * y_per;
        if (dw) {
            const size_t total = (size_t)rows * crs * pq;
            im2col_kernel<<<grid_for(im, total, threads), threads, 0, im->stream>>>(*s, total, xb, col);
            CT_LAUNCH_CHECK("im2col_kernel");
            batched_gemm(im, &g_dw, col, dyb, part, rows);
            sum_samples_kernel<<<grid_for(im, w_n, threads), threads, 0, im->stream>>>(w_n, rows, b0 == 0, part, dw);
            CT_LAUNCH_CHECK("sum_samples_kernel");
        }
        if (dx) {
            batched_gemm(im, &g_dcol, dyb, w, col, rows);
            const size_t total = (size_t)rows * x_per;
            col2im_kernel<<<grid_for(im, total, threads), threads, 0, im->stream>>>(*s, total, col,
                                                                                    dx + (size_t)b0 * x_per);
            CT_LAUNCH_CHECK("col2im_kernel");
        }
    }
}
