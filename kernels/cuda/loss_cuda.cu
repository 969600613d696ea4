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
 *  - softmax_xent, mse_onehot: one warp per row (8 rows per 256-thread
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
 */
#include "kernels/cuda/cuda_common.h"

#define CT_LOSS_THREADS 256
#define CT_WARP 32
#define CT_FULL_MASK 0xffffffffu

/* One warp per row: blocks for `rows` rows. */
static unsigned row_blocks(int rows) {
    const int per_block = CT_LOSS_THREADS / CT_WARP;
    return (unsigned)(((size_t)rows + per_block - 1) / per_block);
}

/* The CPU's argmax, computed by a warp. The CPU scans from best = 0 and
 * moves only on z[c] > z[best]: a NaN is never chosen, a NaN z[0] is never
 * left, and among equal maxima (-0 == +0 included) the first index stays.
 * So: 0 when z[0] is NaN, else the lowest index of the largest non-NaN
 * value. Each lane finds its candidate (its columns ascend, so a strict >
 * keeps its lowest index); candidates are combined by (value, then lower
 * index), a total order, so every lane ends with the same answer.
 * classes >= 1. */
static __device__ int warp_argmax(int classes, const float *z, int lane) {
    float bv = 0.0f;
    int bi = -1; /* no candidate yet */
    for (int c = lane; c < classes; c += CT_WARP) {
        const float v = z[c];
        if (!isnan(v) && (bi < 0 || v > bv)) {
            bv = v;
            bi = c;
        }
    }
    for (int off = CT_WARP / 2; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(CT_FULL_MASK, bv, off);
        const int oi = __shfl_xor_sync(CT_FULL_MASK, bi, off);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
            bv = ov;
            bi = oi;
        }
    }
    return isnan(z[0]) ? 0 : bi;
}

/* The quiet NaN the CPU's NAN macro gives (0x7fc00000), bit for bit. */
static __device__ __forceinline__ float quiet_nan(void) { return __int_as_float(0x7fc00000); }

/* A row whose label is out of range: loss NaN (the health checks flag the
 * step), not correct, gradient 0. The logits are not read. */
static __device__ void bad_row(int lane, size_t r, int classes, float *g, float *row_loss, float *row_correct) {
    if (lane == 0) {
        row_loss[r] = quiet_nan();
        row_correct[r] = 0.0f;
    }
    if (g)
        for (int c = lane; c < classes; c += CT_WARP) g[c] = 0.0f;
}

static __device__ __forceinline__ double warp_sum(double v) {
    for (int off = CT_WARP / 2; off > 0; off >>= 1) v += __shfl_xor_sync(CT_FULL_MASK, v, off);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Softmax cross-entropy                                                     */

static __global__ void softmax_xent_kernel(int rows, int classes, const float *logits, const int32_t *labels,
                                           float grad_scale, float *dlogits, float *row_loss, float *row_correct) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return; /* the whole warp leaves together */
    const size_t off = r * (size_t)classes;
    float *g = dlogits ? dlogits + off : NULL;
    const int32_t label = labels[r];
    if (label < 0 || label >= classes) {
        bad_row(lane, r, classes, g, row_loss, row_correct);
        return;
    }
    const float *z = logits + off;

    const int amax = warp_argmax(classes, z, lane);
    const double m = (double)z[amax];
    double sum = 0.0;
    for (int c = lane; c < classes; c += CT_WARP) sum += exp((double)z[c] - m);
    sum = warp_sum(sum);

    if (lane == 0) {
        /* log(sum) plus the label's distance below the max, never lse - z_y:
         * equal logits give sum == C exactly and a loss of exactly log C. */
        row_loss[r] = (float)(log(sum) + (m - (double)z[label]));
        row_correct[r] = amax == label ? 1.0f : 0.0f;
    }
    if (!g) return;
    for (int c = lane; c < classes; c += CT_WARP) {
        const double p = exp((double)z[c] - m) / sum;
        g[c] = (float)((double)grad_scale * (p - (c == label ? 1.0 : 0.0)));
    }
}

void cuda_softmax_xent(ct_backend *b, int rows, int classes, const float *logits, const int32_t *labels,
                       float grad_scale, float *dlogits, float *row_loss, float *row_correct) {
    /* classes == 0 still runs: every label is out of range, every row bad. */
    if (rows <= 0 || classes < 0) return;
    softmax_xent_kernel<<<row_blocks(rows), CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(
        rows, classes, logits, labels, grad_scale, dlogits, row_loss, row_correct);
    CT_LAUNCH_CHECK("softmax_xent_kernel");
}

/* ------------------------------------------------------------------------ */
/* Mean squared error against one-hot targets                                */

static __global__ void mse_onehot_kernel(int rows, int classes, const float *pred, const int32_t *labels,
                                         float grad_scale, float *dpred, float *row_loss, float *row_correct) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return;
    const size_t off = r * (size_t)classes;
    float *g = dpred ? dpred + off : NULL;
    const int32_t label = labels[r];
    if (label < 0 || label >= classes) {
        bad_row(lane, r, classes, g, row_loss, row_correct);
        return;
    }
    const float *p = pred + off;

    double sq = 0.0;
    for (int c = lane; c < classes; c += CT_WARP) {
        const double d = (double)p[c] - (c == label ? 1.0 : 0.0);
        /* __dmul_rn: d*d rounded on its own, as on the CPU, not fused into
         * the add. */
        sq += __dmul_rn(d, d);
        if (g) g[c] = (float)((double)grad_scale * 2.0 * d / classes);
    }
    sq = warp_sum(sq);
    const int amax = warp_argmax(classes, p, lane);
    if (lane == 0) {
        row_loss[r] = (float)(sq / classes);
        row_correct[r] = amax == label ? 1.0f : 0.0f;
    }
}

void cuda_mse_onehot(ct_backend *b, int rows, int classes, const float *pred, const int32_t *labels,
                     float grad_scale, float *dpred, float *row_loss, float *row_correct) {
    if (rows <= 0 || classes < 0) return;
    mse_onehot_kernel<<<row_blocks(rows), CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(
        rows, classes, pred, labels, grad_scale, dpred, row_loss, row_correct);
    CT_LAUNCH_CHECK("mse_onehot_kernel");
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

void cuda_loss_accumulate(ct_backend *b, int rows, const float *row_loss, const float *row_correct, double *acc) {
    if (rows <= 0) return; /* adding 0 would change nothing */
    loss_accumulate_kernel<<<1, CT_LOSS_THREADS, 0, ct_cuda(b)->stream>>>(rows, row_loss, row_correct, acc);
    CT_LAUNCH_CHECK("loss_accumulate_kernel");
}
