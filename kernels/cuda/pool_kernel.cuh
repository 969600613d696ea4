/* Max pooling, size x size windows with stride size and no padding, over
 * NCHW [n, c, h, w] -> [n, c, h/size, w/size] (floor: the last h % size rows
 * and w % size columns belong to no window).
 *
 * Forward: y = the window's max; a NaN anywhere in the window makes y NaN.
 * Backward: dx gets dy at the first position of the window, in row-major
 * order, where x == y - or, when y is NaN, where x is NaN (the CPU
 * reference's rule, and PyTorch's, whose argmax is the first NaN); 0
 * everywhere else, including the cut-off rows and columns and a window
 * where nothing matches (y not this window's max).
 *
 * Hand-written rather than cuDNN, whose tie-breaking and NaN rules are not
 * the CPU reference's. Both kernels take one output (one window) per thread
 * in a grid-stride loop. Windows do not overlap (stride == size), so the
 * backward kernel writes each dx element of a window exactly once: dy at
 * the routed element, 0 at the others; a memset zeroes dx first only when
 * rows or columns are cut off. No atomics, no arithmetic: both directions
 * are exact, bit for bit the CPU's values.
 *
 * The device code (pool_cuda.cu launches it; tests/emu runs it on the CPU).
 */
#ifndef CUTRAIN_KERNELS_CUDA_POOL_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_POOL_KERNEL_CUH

#include <stddef.h>

#define CT_POOL_THREADS 256

/* Output o = ((plane * oh) + oy) * ow + ox, plane = image * c + channel; its
 * window starts at row oy*size, column ox*size of that plane of x. */
static __device__ __forceinline__ size_t window_start(size_t o, int h, int w, int size, int oh, int ow) {
    const size_t ox = o % (size_t)ow;
    const size_t t = o / (size_t)ow;
    const size_t oy = t % (size_t)oh;
    const size_t plane = t / (size_t)oh;
    return plane * (size_t)h * (size_t)w + oy * (size_t)size * (size_t)w + ox * (size_t)size;
}

static __global__ void maxpool_forward_kernel(size_t total, int h, int w, int size, int oh, int ow, const float *x,
                                              float *y) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        const float *win = x + window_start(o, h, w, size, oh, ow);
        /* The first element, then strictly greater ones: on ties the first
         * stays. Once m is NaN nothing replaces it (v > NaN is false and a
         * later NaN would be NaN anyway); a NaN v always replaces m. */
        float m = win[0];
        for (int i = 0; i < size; i++) {
            const float *row = win + (size_t)i * (size_t)w;
            for (int j = 0; j < size; j++) {
                const float v = row[j];
                if (v > m || v != v) m = v;
            }
        }
        y[o] = m;
    }
}

/* Each window writes all of its dx: dy at the routed position, 0 elsewhere
 * (windows do not overlap), so dx needs no zeroing first except in the
 * cut-off rows and columns, which no window covers. */
static __global__ void maxpool_backward_kernel(size_t total, int h, int w, int size, int oh, int ow, const float *x,
                                               const float *y, const float *dy, float *dx) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        const size_t start = window_start(o, h, w, size, oh, ow);
        const float *win = x + start;
        const float m = y[o];
        const bool m_nan = m != m;
        /* The first row-major position holding the max (a NaN, if m is NaN). */
        size_t routed = (size_t)-1;
        for (int i = 0; i < size && routed == (size_t)-1; i++) {
            for (int j = 0; j < size; j++) {
                const size_t off = (size_t)i * (size_t)w + (size_t)j;
                const float v = win[off];
                if (v == m || (m_nan && v != v)) {
                    routed = off;
                    break;
                }
            }
        }
        const float g = dy[o];
        for (int i = 0; i < size; i++)
            for (int j = 0; j < size; j++) {
                const size_t off = (size_t)i * (size_t)w + (size_t)j;
                dx[start + off] = off == routed ? g : 0.0f;
            }
    }
}

/* Blocks for a grid-stride loop over n items on a GPU of sm_count SMs: a
 * few waves, never more than needed (host). */
static inline unsigned pool_blocks(int sm_count, size_t n) {
    size_t blocks = (n + CT_POOL_THREADS - 1) / CT_POOL_THREADS;
    const size_t cap = (size_t)sm_count * 8;
    return (unsigned)(blocks < cap ? blocks : cap);
}

#endif
