/* Losses on the GPU: the launches. The kernels and the math are in
 * loss_kernel.cuh and loss_rows.cuh. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/loss_kernel.cuh"

void cuda_softmax_xent(ct_backend *b, int rows, int classes, const float *logits, const int32_t *labels,
                       float grad_scale, float *dlogits, float *row_loss, float *row_correct) {
    /* classes == 0 still runs: every label is out of range, every row bad. */
    if (rows <= 0 || classes < 0) return;
    softmax_xent_kernel<<<loss_row_blocks(rows), CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(
        rows, classes, logits, labels, grad_scale, dlogits, row_loss, row_correct);
    CT_LAUNCH_CHECK("softmax_xent_kernel");
}

void cuda_mse_onehot(ct_backend *b, int rows, int classes, const float *pred, const int32_t *labels,
                     float grad_scale, float *dpred, float *row_loss, float *row_correct) {
    if (rows <= 0 || classes < 0) return;
    mse_onehot_kernel<<<loss_row_blocks(rows), CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(
        rows, classes, pred, labels, grad_scale, dpred, row_loss, row_correct);
    CT_LAUNCH_CHECK("mse_onehot_kernel");
}

void cuda_loss_accumulate(ct_backend *b, int rows, const float *row_loss, const float *row_correct, double *acc) {
    if (rows <= 0) return; /* adding 0 would change nothing */
    loss_accumulate_kernel<<<1, CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(rows, row_loss, row_correct, acc);
    CT_LAUNCH_CHECK("loss_accumulate_kernel");
}
