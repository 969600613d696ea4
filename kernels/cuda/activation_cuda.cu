/* Bias + activation on the GPU: the launches. The kernels and the math are
 * in activation_kernel.cuh (and act_math.cuh). */
#include "kernels/cuda/activation_kernel.cuh"
#include "kernels/cuda/cuda_common.h"

void cuda_bias_act_forward(ct_backend *b, ct_activation act, int rows, int cols, const float *bias, float *y) {
    if (rows <= 0 || cols <= 0) return;
    cudaStream_t s = ct_cuda(b)->stream;
    if (act == CT_ACT_SOFTMAX) {
        softmax_kernel<<<act_row_blocks(rows), CT_ACT_THREADS, 0, s>>>(rows, cols, bias, y);
        CT_LAUNCH_CHECK("softmax_kernel");
        return;
    }
    if (act == CT_ACT_LINEAR && !bias) return; /* the identity */
    const size_t n = (size_t)rows * (size_t)cols;
    bias_act_kernel<<<act_elementwise_blocks(ct_cuda(b)->sm_count, n), CT_ACT_THREADS, 0, s>>>(act, n, cols, bias, y);
    CT_LAUNCH_CHECK("bias_act_kernel");
}

void cuda_bias_act_backward(ct_backend *b, ct_activation act, int rows, int cols, const float *y, float *dy,
                            float *dbias) {
    if (cols <= 0 || rows < 0) return;
    cudaStream_t s = ct_cuda(b)->stream;
    const int elementwise = act != CT_ACT_SOFTMAX && act != CT_ACT_LINEAR; /* linear: dz = dy */
    if (dbias && elementwise) {
        /* dz and dbias in one pass (with rows == 0: a zero dbias). */
        act_back_colsum_kernel<<<act_colsum_blocks(cols), COLSUM_THREADS, 0, s>>>(act, rows, cols, y, dy, dbias);
        CT_LAUNCH_CHECK("act_back_colsum_kernel");
        return;
    }
    if (rows > 0) {
        if (act == CT_ACT_SOFTMAX) {
            softmax_back_kernel<<<act_row_blocks(rows), CT_ACT_THREADS, 0, s>>>(rows, cols, y, dy);
            CT_LAUNCH_CHECK("softmax_back_kernel");
        } else if (elementwise) {
            const size_t n = (size_t)rows * (size_t)cols;
            act_back_kernel<<<act_elementwise_blocks(ct_cuda(b)->sm_count, n), CT_ACT_THREADS, 0, s>>>(act, n, y,
                                                                                                       dy);
            CT_LAUNCH_CHECK("act_back_kernel");
        }
    }
    /* Queued after dz is final (same stream). With rows == 0 every column
     * sum is 0, as on the CPU: an empty batch gives a zero dbias. */
    if (dbias) {
        column_sums_kernel<<<act_colsum_blocks(cols), COLSUM_THREADS, 0, s>>>(rows, cols, dy, dbias);
        CT_LAUNCH_CHECK("column_sums_kernel");
    }
}
