/* General matrix multiply, row-major, on cuBLAS:
 *
 *     C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C[m,n]
 *
 * cuBLAS is column-major. A row-major matrix with row stride ld is, read
 * column-major, its transpose with leading dimension ld. So the row-major
 * C is the column-major C^T, and
 *
 *     C^T[n,m] = op(B)^T[n,k] * op(A)^T[k,m]
 *
 * is one column-major sgemm with the operands swapped and each keeping its
 * own transpose flag: row-major B untransposed is already B^T column-major
 * (CUBLAS_OP_N gives op(B)^T = B^T); row-major B transposed, stored [n,k],
 * reads as the [k,n] matrix B^T, and CUBLAS_OP_T turns it into B. Same for A.
 *
 * The degenerate shapes are handled here, as on the CPU: no work for an
 * empty C, and C = beta*C when the product contributes nothing (k == 0 or
 * alpha == 0), with beta == 0 giving exact zeros even over NaN.
 */
#include "kernels/cuda/cuda_common.h"

/* C[i,j] *= beta for a general beta (0 and 1 never get here). One float
 * multiply per element, as on the CPU, so the result is bit-identical. */
static __global__ void scale_c_kernel(int m, int n, float beta, float *C, int ldc) {
    const size_t total = (size_t)m * (size_t)n;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        const size_t r = i / (size_t)n, c = i % (size_t)n;
        float *p = C + r * (size_t)ldc + c;
        *p = *p * beta;
    }
}

static void scale_c(ct_backend *b, int m, int n, float beta, float *C, int ldc) {
    ct_cuda_impl *im = ct_cuda(b);
    if (beta == 1.0f) return;
    if (beta == 0.0f) {
        /* All-zero bits are +0.0f; memset never reads C, so NaN is dropped. */
        CT_CUDA_CHECK(cudaMemset2DAsync(C, (size_t)ldc * sizeof(float), 0, (size_t)n * sizeof(float), (size_t)m,
                                        im->stream));
        return;
    }
    const unsigned threads = 256;
    const size_t total = (size_t)m * (size_t)n;
    size_t blocks = (total + threads - 1) / threads;
    const size_t cap = (size_t)im->sm_count * 8; /* the grid-stride loop covers the rest */
    if (blocks > cap) blocks = cap;
    scale_c_kernel<<<(unsigned)blocks, threads, 0, im->stream>>>(m, n, beta, C, ldc);
    CT_LAUNCH_CHECK("scale_c_kernel");
}

void cuda_gemm(ct_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return; /* C is empty: nothing to write */
    if (k <= 0 || alpha == 0.0f) {
        /* The product contributes nothing; A and B are not read. */
        scale_c(b, m, n, beta, C, ldc);
        return;
    }
    /* Pointer mode is host (set at create): alpha and beta are read here,
     * at call time, and a captured graph keeps their values. */
    CT_CUBLAS_CHECK(cublasSgemm(ct_cuda(b)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc));
}
