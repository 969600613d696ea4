/* General matrix multiply, row-major:
 *
 *     C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C[m,n],
 *     op(X) = X (trans == 0) or X^T (trans != 0).
 *
 * A is stored [m,k] (or [k,m] when transposed) with row stride lda, B is
 * [k,n] (or [n,k]) with stride ldb, C is [m,n] with stride ldc. The work is
 * done by cblas_sgemm (OpenBLAS when available: blocked and multithreaded;
 * it splits the work over m and n, so each element's k-sum runs in one thread
 * in a fixed order and the result is reproducible for a given build, CPU and
 * thread count). The degenerate shapes are handled here rather than in BLAS,
 * whose argument checks reject lda < 1 and print an error for k == 0 - and
 * library code must not print.
 *
 * A build with no CBLAS at all (a bare GPU image, say) falls back to a plain
 * loop: slow, but the CPU backend stays the correct reference everywhere.
 */
#include "kernels/cpu/cpu_ops.h"

#ifdef CT_HAVE_CBLAS
#include <cblas.h>
#endif

static float elem(const float *X, int ld, int trans, int r, int c) {
    return trans ? X[(size_t)c * (size_t)ld + (size_t)r] : X[(size_t)r * (size_t)ld + (size_t)c];
}

/* Always compiled, so the tests check it in every build, BLAS or not. */
void cpu_gemm_loop(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++) acc += elem(A, lda, trans_a, i, p) * elem(B, ldb, trans_b, p, j);
            float *c = C + (size_t)i * (size_t)ldc + (size_t)j;
            *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
        }
}

/* C = beta * C. With beta == 0 the result must be exactly 0 even when C held
 * NaN or Inf (fresh allocations, a previous failed step): BLAS semantics say
 * C is not read when beta == 0, and 0 * NaN would break that. */
static void scale_c(int m, int n, float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++) {
        float *row = C + (size_t)i * (size_t)ldc;
        if (beta == 0.0f) {
            for (int j = 0; j < n; j++) row[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (int j = 0; j < n; j++) row[j] *= beta;
        }
    }
}

void cpu_gemm(ct_backend *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    (void)b;
    if (m <= 0 || n <= 0) return; /* C is empty: nothing to write */
    if (k <= 0 || alpha == 0.0f) {
        /* The product contributes nothing; BLAS would also skip reading A and B. */
        scale_c(m, n, beta, C, ldc);
        return;
    }
#ifdef CT_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C,
                ldc);
#else
    cpu_gemm_loop(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
