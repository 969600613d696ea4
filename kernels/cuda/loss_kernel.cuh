/* Losses over a batch of rows, value and gradient in one pass; the same math
 * as kernels/cpu/loss_cpu.c (see it for the derivations):
 *
 * Softmax cross-entropy, label y, a = argmax_c z_c, m = z_a:
 *     loss = log sum_c e^(z_c - m) + (m - z_y)        (equal logits: log C)
 *     dz_c = grad_scale * (e^(z_c - m) / sum - [c == y])
 * MSE against onehot(y), mean over the C classes:
 *     loss = (1/C) sum_c (p_c - t_c)^2,  dp_c = grad_scale * 2 (p_c - t_c) / C
 * correct = [argmax == y], ties to the lowest index. A label outside [0, C)
 * gives loss NaN, correct 0 and a zero gradient row, and nothing is read.
 *
 * Kernels
 *  - softmax_xent, mse_onehot: one warp per row (the row's math is in
 *    loss_rows.cuh, shared with the fused dense chain) (8 rows per 256-thread
 *    block), lane l over columns l, l+32, ...; argmax and the double sums
 *    are combined by a butterfly of warp shuffles, leaving the same value in
 *    every lane. All arithmetic is in double as on the CPU, with the same
 *    expressions; what differs is the order of each row's sum (a tree over
 *    lanes against a left-to-right loop) and, for cross-entropy, the last
 *    bit of a double exp/log (CUDA's against glibc's). Both are far below a
 *    float's rounding, so the float outputs almost always match exactly;
 *    argmax/correct and the MSE gradient match bit for bit.
 *  - loss_accumulate: one block of 256 threads; thread t sums rows t, t+256,
 *    ... in double, then a fixed shared-memory tree; thread 0 adds the batch
 *    sums to acc. Deterministic; no atomics.
 *
 * The device code (loss_cuda.cu launches it; tests/emu runs it on the CPU).
 */
#ifndef CUTRAIN_KERNELS_CUDA_LOSS_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_LOSS_KERNEL_CUH

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/loss_rows.cuh"

#define CT_LOSS_THREADS 256
#define CT_WARP 32

/* ------------------------------------------------------------------------ */
/* Softmax cross-entropy                                                     */

static __global__ void softmax_xent_kernel(int rows, int classes, const float *logits, const int32_t *labels,
                                           float grad_scale, float *dlogits, float *row_loss, float *row_correct) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return; /* the whole warp leaves together */
    const size_t off = r * (size_t)classes;
    ct_xent_row(lane, r, classes, logits + off, labels[r], grad_scale, dlogits ? dlogits + off : NULL, row_loss,
                row_correct);
}

/* ------------------------------------------------------------------------ */
/* Mean squared error against one-hot targets                                */

static __global__ void mse_onehot_kernel(int rows, int classes, const float *pred, const int32_t *labels,
                                         float grad_scale, float *dpred, float *row_loss, float *row_correct) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return;
    const size_t off = r * (size_t)classes;
    ct_mse_row(lane, r, classes, pred + off, labels[r], grad_scale, dpred ? dpred + off : NULL, row_loss,
               row_correct);
}

/* ------------------------------------------------------------------------ */
/* Batch sums into an accumulator                                            */

/* One block; CT_LOSS_THREADS is a power of two (the tree halves it). The
 * batch sums are complete before acc is touched, so an epoch total is a sum
 * of per-batch sums, as on the CPU. One thread does the read-modify-write
 * of acc: no atomics. */
static __global__ void loss_accumulate_kernel(int rows, const float *row_loss, const float *row_correct,
                                              double *acc) {
    __shared__ double s_loss[CT_LOSS_THREADS];
    __shared__ double s_corr[CT_LOSS_THREADS];
    const unsigned t = threadIdx.x;
    double l = 0.0, c = 0.0;
    for (size_t r = t; r < (size_t)rows; r += CT_LOSS_THREADS) {
        l += (double)row_loss[r];
        c += (double)row_correct[r];
    }
    s_loss[t] = l;
    s_corr[t] = c;
    __syncthreads();
    for (unsigned half = CT_LOSS_THREADS / 2; half > 0; half >>= 1) {
        if (t < half) {
            s_loss[t] += s_loss[t + half];
            s_corr[t] += s_corr[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        acc[0] += s_loss[0];
        acc[1] += s_corr[0];
    }
}

/* One warp per row: blocks for `rows` rows (host). */
static inline unsigned loss_row_blocks(int rows) {
    const int per_block = CT_LOSS_THREADS / CT_WARP;
    return (unsigned)(((size_t)rows + per_block - 1) / per_block);
}

#endif
