/* Bias + activation, forward and backward, on a row-major [rows, cols] block:
 * the device code (activation_cuda.cu launches it; tests/emu runs it on the
 * CPU).
 * The same math as kernels/cpu/activation_cpu.c (see it for the formulas):
 *
 * Forward, in place on y (z = X W^T on entry):
 *     z = y + bias[c];  y = act(z)                      elementwise
 *     softmax: y[r,c] = e^(z[r,c] - m_r) / sum_j e^(z[r,j] - m_r)
 * Backward, from the output y; dy holds dL/dy on entry and dL/dz on return:
 *     relu dz = dy [y > 0], sigmoid dz = dy y (1 - y), tanh dz = dy (1 - y^2)
 *     softmax dz[r,c] = y[r,c] (dy[r,c] - sum_j dy[r,j] y[r,j])
 *     dbias[c] = sum_r dz[r,c]   (overwritten; 0 for an empty batch)
 *
 * Kernels
 *  - elementwise (bias, relu, sigmoid, tanh and their derivatives): a
 *    grid-stride loop over rows*cols with a capped grid.
 *  - softmax, both directions: one warp per row (8 rows per 256-thread
 *    block); lane l takes columns l, l+32, ...; the row max and the double
 *    sums are combined by a butterfly of warp shuffles, which leaves the
 *    identical value in every lane.
 *  - dbias: one thread per column, summing its column in double in row
 *    order - exactly the CPU's order, so dbias matches it bit for bit
 *    whenever dz does. Adjacent threads read adjacent columns of a row, so
 *    each row is read coalesced; 32 rows are loaded before they are added.
 *    For relu, sigmoid and tanh with a dbias, the same thread computes its
 *    column's dz as well (act_back_colsum_kernel): one launch, not two.
 *
 * The elementwise math is in act_math.cuh, shared with the fused dense chain.
 */
#ifndef CUTRAIN_KERNELS_CUDA_ACTIVATION_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_ACTIVATION_KERNEL_CUH

#include <math.h>
#include <stddef.h>

#include "kernels/cuda/act_math.cuh"

#define CT_ACT_THREADS 256
#define CT_WARP 32
#define CT_FULL_MASK 0xffffffffu

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */

static __global__ void bias_act_kernel(ct_activation act, size_t n, int cols, const float *bias, float *y) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        float z = y[i];
        /* Only when there is a bias: adding 0 would turn -0 into +0. */
        if (bias) z = z + bias[i % (size_t)cols];
        y[i] = ct_act_forward_one(act, z); /* linear: z (softmax has its own kernel) */
    }
}

/* One warp per row. Three passes over the row, each lane over its own
 * columns, so a lane only ever reads back what it wrote itself. */
static __global__ void softmax_kernel(int rows, int cols, const float *bias, float *y) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return; /* the whole warp leaves together */
    float *row = y + r * (size_t)cols;

    /* Row max of z. fmaxf ignores NaN, which cannot change the result: a
     * NaN anywhere makes the sum NaN and so the whole row NaN, as on the
     * CPU. Without NaN the max is exact, so z - m is the CPU's value. */
    float m = -INFINITY;
    for (int c = lane; c < cols; c += CT_WARP) {
        float z = row[c];
        if (bias) {
            z = z + bias[c];
            row[c] = z;
        }
        m = fmaxf(m, z);
    }
    for (int off = CT_WARP / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(CT_FULL_MASK, m, off));

    /* e^(z - m) in float (every exponent <= 0), summed in double. */
    double sum = 0.0;
    for (int c = lane; c < cols; c += CT_WARP) {
        const float e = expf(row[c] - m);
        row[c] = e;
        sum += (double)e;
    }
    for (int off = CT_WARP / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(CT_FULL_MASK, sum, off);

    for (int c = lane; c < cols; c += CT_WARP) row[c] = (float)((double)row[c] / sum);
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                  */

static __global__ void act_back_kernel(ct_activation act, size_t n, const float *y, float *dy) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        dy[i] = ct_act_backward_one(act, y[i], dy[i]);
    }
}

/* The softmax Jacobian contracted with dy: y * (dy - <dy, y>), one dot per
 * row, in double (the subtraction cancels when dy is nearly constant). A
 * float times a float is exact in double, so each term equals the CPU's
 * whether or not the multiply-add is fused; only the order of the sum
 * differs (the warp's tree against the CPU's left-to-right loop). */
static __global__ void softmax_back_kernel(int rows, int cols, const float *y, float *dy) {
    const int lane = threadIdx.x % CT_WARP;
    const size_t r = (size_t)blockIdx.x * (blockDim.x / CT_WARP) + threadIdx.x / CT_WARP;
    if (r >= (size_t)rows) return;
    const float *yr = y + r * (size_t)cols;
    float *dr = dy + r * (size_t)cols;

    double dot = 0.0;
    for (int c = lane; c < cols; c += CT_WARP) dot += (double)dr[c] * (double)yr[c];
    for (int off = CT_WARP / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(CT_FULL_MASK, dot, off);

    for (int c = lane; c < cols; c += CT_WARP) dr[c] = (float)((double)yr[c] * ((double)dr[c] - dot));
}

/* dbias[c] = sum_r dz[r,c], one thread per column, in double and in row
 * order: the CPU's order exactly. rows is a batch (thousands at most).
 * The additions are serial, the loads need not be: a thread loads
 * COLSUM_BATCH rows into registers, all in flight at once, before adding
 * them in order - a batch of 128 rows waits on memory 4 times, not 128
 * (nvcc never reassociates the double adds, so the order stays). */
#define COLSUM_THREADS 64
#define COLSUM_BATCH 32
static __global__ void __launch_bounds__(COLSUM_THREADS)
    column_sums_kernel(int rows, int cols, const float *dz, float *dbias) {
    const size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= (size_t)cols) return;
    const float *p = dz + c;
    const size_t ld = (size_t)cols;
    double acc = 0.0;
    int r = 0;
    for (; r + COLSUM_BATCH <= rows; r += COLSUM_BATCH) {
        float v[COLSUM_BATCH];
#pragma unroll
        for (int k = 0; k < COLSUM_BATCH; ++k) v[k] = p[(size_t)(r + k) * ld];
#pragma unroll
        for (int k = 0; k < COLSUM_BATCH; ++k) acc += (double)v[k];
    }
    for (; r < rows; ++r) acc += (double)p[(size_t)r * ld];
    dbias[c] = (float)acc;
}

/* dz = act'(y) dy in place and dbias[c] = sum_r dz[r,c] in one pass, for
 * the elementwise activations: column_sums_kernel's threads and order, each
 * thread computing its column's dz as act_back_kernel would before adding
 * it. One launch instead of two, and dz is read once. The loads of a batch
 * of rows (y and dy) are issued before any of them is used. */
static __global__ void __launch_bounds__(COLSUM_THREADS)
    act_back_colsum_kernel(ct_activation act, int rows, int cols, const float *y, float *dz, float *dbias) {
    const size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= (size_t)cols) return;
    const float *py = y + c;
    float *pd = dz + c;
    const size_t ld = (size_t)cols;
    double acc = 0.0;
    int r = 0;
    for (; r + COLSUM_BATCH <= rows; r += COLSUM_BATCH) {
        float yv[COLSUM_BATCH], dv[COLSUM_BATCH];
#pragma unroll
        for (int k = 0; k < COLSUM_BATCH; ++k) {
            yv[k] = py[(size_t)(r + k) * ld];
            dv[k] = pd[(size_t)(r + k) * ld];
        }
#pragma unroll
        for (int k = 0; k < COLSUM_BATCH; ++k) {
            const float d = ct_act_backward_one(act, yv[k], dv[k]);
            pd[(size_t)(r + k) * ld] = d;
            acc += (double)d;
        }
    }
    for (; r < rows; ++r) {
        const float d = ct_act_backward_one(act, py[(size_t)r * ld], pd[(size_t)r * ld]);
        pd[(size_t)r * ld] = d;
        acc += (double)d;
    }
    dbias[c] = (float)acc;
}

/* Launch shapes (host). */

/* Blocks for a grid-stride loop over n elements: enough to fill a GPU of
 * sm_count SMs a few times over, never more than the data needs. */
static inline unsigned act_elementwise_blocks(int sm_count, size_t n) {
    size_t blocks = (n + CT_ACT_THREADS - 1) / CT_ACT_THREADS;
    const size_t cap = (size_t)sm_count * 8;
    return (unsigned)(blocks < cap ? blocks : cap);
}

/* One warp per row: blocks for `rows` rows. */
static inline unsigned act_row_blocks(int rows) {
    const int per_block = CT_ACT_THREADS / CT_WARP;
    return (unsigned)(((size_t)rows + per_block - 1) / per_block);
}

/* One thread per column. */
static inline unsigned act_colsum_blocks(int cols) {
    return (unsigned)(((size_t)cols + COLSUM_THREADS - 1) / COLSUM_THREADS);
}

#endif
