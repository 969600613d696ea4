/* One row of a loss, computed by one warp: the device functions behind
 * loss_cuda.cu's kernels and the fused dense chain (dense_chain_cuda.cu), so
 * both give the same bits. The math is kernels/cpu/loss_cpu.c's; see
 * loss_cuda.cu for how it differs from the CPU (the order of a row's sum and
 * the last bit of a double exp/log). Every lane of the warp must call these
 * with the same row. */
#ifndef CUTRAIN_KERNELS_CUDA_LOSS_ROWS_CUH
#define CUTRAIN_KERNELS_CUDA_LOSS_ROWS_CUH

#include <stdint.h>

#define CT_ROW_WARP 32
#define CT_ROW_FULL_MASK 0xffffffffu

/* The CPU's argmax, computed by a warp. The CPU scans from best = 0 and
 * moves only on z[c] > z[best]: a NaN is never chosen, a NaN z[0] is never
 * left, and among equal maxima (-0 == +0 included) the first index stays.
 * So: 0 when z[0] is NaN, else the lowest index of the largest non-NaN
 * value. Each lane finds its candidate (its columns ascend, so a strict >
 * keeps its lowest index); candidates are combined by (value, then lower
 * index), a total order, so every lane ends with the same answer.
 * classes >= 1. */
static __device__ int ct_warp_argmax(int classes, const float *z, int lane) {
    float bv = 0.0f;
    int bi = -1; /* no candidate yet */
    for (int c = lane; c < classes; c += CT_ROW_WARP) {
        const float v = z[c];
        if (!isnan(v) && (bi < 0 || v > bv)) {
            bv = v;
            bi = c;
        }
    }
    for (int off = CT_ROW_WARP / 2; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(CT_ROW_FULL_MASK, bv, off);
        const int oi = __shfl_xor_sync(CT_ROW_FULL_MASK, bi, off);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
            bv = ov;
            bi = oi;
        }
    }
    return isnan(z[0]) ? 0 : bi;
}

/* The quiet NaN the CPU's NAN macro gives (0x7fc00000), bit for bit. */
static __device__ __forceinline__ float ct_quiet_nan(void) { return __int_as_float(0x7fc00000); }

/* A row whose label is out of range: loss NaN (the health checks flag the
 * step), not correct, gradient 0. The logits are not read. */
static __device__ void ct_bad_row(int lane, size_t r, int classes, float *g, float *row_loss, float *row_correct) {
    if (lane == 0) {
        row_loss[r] = ct_quiet_nan();
        row_correct[r] = 0.0f;
    }
    if (g)
        for (int c = lane; c < classes; c += CT_ROW_WARP) g[c] = 0.0f;
}

static __device__ __forceinline__ double ct_warp_sum(double v) {
    for (int off = CT_ROW_WARP / 2; off > 0; off >>= 1) v += __shfl_xor_sync(CT_ROW_FULL_MASK, v, off);
    return v;
}

/* Softmax cross-entropy of row r (logits z, its gradient row g or NULL). */
static __device__ void ct_xent_row(int lane, size_t r, int classes, const float *z, int32_t label, float grad_scale,
                                   float *g, float *row_loss, float *row_correct) {
    if (label < 0 || label >= classes) {
        ct_bad_row(lane, r, classes, g, row_loss, row_correct);
        return;
    }
    const int amax = ct_warp_argmax(classes, z, lane);
    const double m = (double)z[amax];
    double sum = 0.0;
    for (int c = lane; c < classes; c += CT_ROW_WARP) sum += exp((double)z[c] - m);
    sum = ct_warp_sum(sum);

    if (lane == 0) {
        /* log(sum) plus the label's distance below the max, never lse - z_y:
         * equal logits give sum == C exactly and a loss of exactly log C. */
        row_loss[r] = (float)(log(sum) + (m - (double)z[label]));
        row_correct[r] = amax == label ? 1.0f : 0.0f;
    }
    if (!g) return;
    for (int c = lane; c < classes; c += CT_ROW_WARP) {
        const double p = exp((double)z[c] - m) / sum;
        g[c] = (float)((double)grad_scale * (p - (c == label ? 1.0 : 0.0)));
    }
}

/* MSE against onehot(label) of row r (predictions p, gradient row g or NULL). */
static __device__ void ct_mse_row(int lane, size_t r, int classes, const float *p, int32_t label, float grad_scale,
                                  float *g, float *row_loss, float *row_correct) {
    if (label < 0 || label >= classes) {
        ct_bad_row(lane, r, classes, g, row_loss, row_correct);
        return;
    }
    double sq = 0.0;
    for (int c = lane; c < classes; c += CT_ROW_WARP) {
        const double d = (double)p[c] - (c == label ? 1.0 : 0.0);
        /* __dmul_rn: d*d rounded on its own, as on the CPU, not fused into
         * the add. */
        sq += __dmul_rn(d, d);
        if (g) g[c] = (float)((double)grad_scale * 2.0 * d / classes);
    }
    sq = ct_warp_sum(sq);
    const int amax = ct_warp_argmax(classes, p, lane);
    if (lane == 0) {
        row_loss[r] = (float)(sq / classes);
        row_correct[r] = amax == label ? 1.0f : 0.0f;
    }
}

#endif
